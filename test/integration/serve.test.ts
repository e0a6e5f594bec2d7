/**
 * `imageshift serve` as a user runs it: the real CLI in a child process, on ports the OS
 * chooses, trusting the CA it writes, stopped with SIGTERM.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import jsonpatch, { type Operation } from "fast-json-patch";
import { loopbackFlags } from "../../src/testing.ts";
import { freePorts } from "../e2e/harness/controlplane.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "imageshift.js");
const FIXTURE_FILE = join(ROOT, "test", "fixtures", "admission", "pod-create.json");
const START_MS = 20_000;
const EXIT_MS = 10_000;
const RELOAD_MS = 15_000;

type LogLine = { level?: number; msg?: string; [key: string]: unknown };

interface Served {
  child: ChildProcess;
  lines: LogLine[];
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `predicate`, from the start; fails after `ms`. */
  waitForLine(predicate: (line: LogLine) => boolean, ms: number, what: string): Promise<LogLine>;
}

const children = new Set<ChildProcess>();

function serve(args: string[], env: NodeJS.ProcessEnv = {}): Served {
  const child = spawn(process.execPath, [BIN, "serve", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NODE_OPTIONS: "", ...env },
  });
  children.add(child);
  const lines: LogLine[] = [];
  let stderr = "";
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on("line", (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ msg: `(not JSON) ${text}` });
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      for (const wake of waiters) wake();
      resolve({ code, signal });
    });
  });
  let exited = false;
  void exit.then(() => {
    exited = true;
  });
  return {
    child,
    lines,
    stderr: () => stderr,
    exit,
    waitForLine(predicate, ms, what) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(predicate);
          if (found) return done(() => resolve(found));
          if (exited)
            return done(() =>
              reject(
                new Error(
                  `${what}: the process exited first\nstdout: ${JSON.stringify(lines)}\nstderr: ${stderr}`,
                ),
              ),
            );
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`${what}: not within ${ms} ms\nstderr: ${stderr}`))),
          ms,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/** Resolves with the exit of a process, killing it (SIGKILL) if it outlives `ms`. */
async function exitWithin(
  served: Served,
  ms: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  const result = await Promise.race([served.exit, timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    served.child.kill("SIGKILL");
    assert.fail(`the process did not exit within ${ms} ms\nstderr: ${served.stderr()}`);
  }
  return result;
}

interface Endpoints {
  webhook: URL;
  metrics: URL;
}

async function started(served: Served): Promise<Endpoints> {
  const line = await served.waitForLine((l) => l.msg === "serving", START_MS, 'the "serving" log line');
  const webhook = new URL(String(line.webhook));
  const metrics = new URL(String(line.metrics));
  assert.equal(webhook.protocol, "https:");
  assert.equal(webhook.hostname, "127.0.0.1");
  assert.ok(Number(webhook.port) > 0, "the OS chose the webhook port");
  assert.equal(metrics.protocol, "http:");
  assert.ok(Number(metrics.port) > 0, "the OS chose the metrics port");
  assert.notEqual(webhook.port, metrics.port);
  return { webhook, metrics };
}

interface AdmissionReply {
  status: number;
  review: {
    apiVersion: string;
    kind: string;
    response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[] };
  };
}

function postReview(webhook: URL, ca: string, body: string): Promise<AdmissionReply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: webhook.hostname,
        port: Number(webhook.port),
        path: "/mutate",
        method: "POST",
        ca,
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode ?? 0, review: JSON.parse(text) as AdmissionReply["review"] });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

function get(url: URL): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

interface Pod {
  metadata: { annotations: Record<string, string> };
  spec: {
    initContainers: { name: string; image: string }[];
    containers: { name: string; image: string }[];
    volumes: { name: string; image: { reference: string; pullPolicy: string } }[];
  };
}

/** The fixture's pod with the answer's JSON Patch applied, as the API server would. */
function patchedPod(fixture: string, reply: AdmissionReply): Pod {
  assert.equal(reply.status, 200);
  assert.equal(reply.review.response.patchType, "JSONPatch");
  const patch = JSON.parse(
    Buffer.from(reply.review.response.patch ?? "", "base64").toString("utf8"),
  ) as Operation[];
  const pod = (JSON.parse(fixture) as { request: { object: Pod } }).request.object;
  // validateOperation: true makes fast-json-patch refuse a patch that does not apply cleanly.
  return jsonpatch.applyPatch(pod, patch, true, false).newDocument;
}

async function sigterm(served: Served): Promise<void> {
  served.child.kill("SIGTERM");
  const { code, signal } = await exitWithin(served, EXIT_MS);
  assert.equal(signal, null, `exited by itself, not killed (stderr: ${served.stderr()})`);
  assert.equal(code, 0, `exit code 0 (stderr: ${served.stderr()})`);
  const messages = served.lines.map((line) => line.msg);
  assert.ok(
    served.lines.some((line) => line.msg === "signal received" && line.signal === "SIGTERM"),
    JSON.stringify(messages),
  );
  assert.ok(messages.includes("stopped"), `logged "stopped": ${JSON.stringify(messages)}`);
}

let temp = "";
let fixture = "";

before(async () => {
  temp = await mkdtemp(join(tmpdir(), "imageshift-serve-"));
  fixture = await readFile(FIXTURE_FILE, "utf8");
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await rm(temp, { recursive: true, force: true });
});

function standardFlags(rules: string, selfSigned: string): string[] {
  return ["--rules", rules, ...loopbackFlags(), "--self-signed-dir", selfSigned];
}

describe("imageshift serve", () => {
  it("rewrites the fixture pod's images with the example rules, then stops on SIGTERM", async () => {
    const selfSigned = join(temp, "self-signed-1");
    const served = serve(standardFlags("examples/", selfSigned));
    try {
      const { webhook, metrics } = await started(served);
      const ca = await readFile(join(selfSigned, "ca.pem"), "utf8");
      assert.equal((await get(new URL("/readyz", metrics))).status, 200);

      const reply = await postReview(webhook, ca, fixture);
      assert.equal(reply.review.kind, "AdmissionReview");
      assert.equal(reply.review.response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
      assert.equal(reply.review.response.allowed, true);
      const pod = patchedPod(fixture, reply);

      assert.equal(pod.spec.containers[0]?.image, "internal-registry.corp/dockerhub/library/nginx:1.25");
      assert.equal(
        pod.spec.containers[1]?.image,
        "internal-registry.corp/quay/prometheus/node-exporter:v1.8.1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "the quay sidecar keeps its tag and its digest",
      );
      assert.equal(
        pod.spec.containers[2]?.image,
        "registry.k8s.io/pause:3.10",
        "no rule for registry.k8s.io",
      );
      assert.equal(pod.spec.initContainers[0]?.image, "internal-registry.corp/gcr/distroless/static:nonroot");
      assert.deepEqual(pod.spec.volumes[0]?.image, {
        reference: "internal-registry.corp/ghcr/org/models:v2",
        pullPolicy: "IfNotPresent",
      });

      assert.equal(pod.metadata.annotations["kubectl.kubernetes.io/default-container"], "app", "kept");
      const record = JSON.parse(pod.metadata.annotations["imageshift.dev/original-images"] ?? "{}") as Record<
        string,
        { original: string; image: string; rule: string }
      >;
      assert.deepEqual(Object.keys(record).sort(), [
        "containers/app",
        "containers/sidecar",
        "initContainers/migrate",
        "volumes/models",
      ]);
      assert.deepEqual(record["containers/app"], {
        original: "nginx:1.25",
        image: "internal-registry.corp/dockerhub/library/nginx:1.25",
        rule: "Imageshift/airgap spec.mappings.swap[0]",
      });
      assert.equal(
        record["containers/sidecar"]?.original,
        "quay.io/prometheus/node-exporter:v1.8.1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
      );
      assert.match(
        record["containers/sidecar"]?.rule ?? "",
        /^RegistryRewriteRule\/docker-hub-to-ecr spec\.rules\[0\]$/,
      );
      assert.equal(record["volumes/models"]?.image, "internal-registry.corp/ghcr/org/models:v2");

      const scraped = await get(new URL("/metrics", metrics));
      assert.ok(
        scraped.text
          .split("\n")
          .includes(
            'imageshift_admission_requests_total{webhook="mutate",operation="CREATE",outcome="patched"} 1',
          ),
      );

      await sigterm(served);
    } finally {
      served.child.kill("SIGKILL");
    }
  });

  it("--mrw-metrics: the Mutating Registry Webhook's metric names too", async () => {
    const selfSigned = join(temp, "self-signed-mrw");
    const served = serve([...standardFlags("examples/", selfSigned), "--mrw-metrics"]);
    try {
      const { webhook, metrics } = await started(served);
      const ca = await readFile(join(selfSigned, "ca.pem"), "utf8");
      assert.equal((await postReview(webhook, ca, fixture)).status, 200);
      const scraped = (await get(new URL("/metrics", metrics))).text.split("\n");
      assert.ok(
        scraped.includes(
          'registry_rewriter_mutations_total{namespace="team-a",source_registry="quay.io",target_registry="internal-registry.corp",status="success"} 1',
        ),
        scraped.filter((line) => line.startsWith("registry_rewriter")).join("\n"),
      );
      assert.ok(scraped.includes("registry_rewriter_cache_hits_total 1"));
      assert.ok(scraped.some((line) => /^registry_rewriter_rules_count [1-9]\d*$/.test(line)));
      await sigterm(served);
    } finally {
      served.child.kill("SIGKILL");
    }
  });

  it("hot-reloads an edited copy of the rules folder", async () => {
    const rules = join(temp, "rules");
    await cp(join(ROOT, "examples"), rules, { recursive: true });
    const selfSigned = join(temp, "self-signed-2");
    const served = serve(standardFlags(rules, selfSigned));
    try {
      const { webhook } = await started(served);
      const ca = await readFile(join(selfSigned, "ca.pem"), "utf8");
      const before = patchedPod(fixture, await postReview(webhook, ca, fixture));
      assert.equal(before.spec.containers[0]?.image, "internal-registry.corp/dockerhub/library/nginx:1.25");

      const file = join(rules, "imageshift-airgap.yaml");
      const text = await readFile(file, "utf8");
      const edited = text.replace(
        "target: internal-registry.corp/dockerhub\n",
        "target: mirror.example.com/hub\n",
      );
      assert.notEqual(edited, text, "the edit applies");
      await writeFile(`${file}.tmp`, edited);
      await rename(`${file}.tmp`, file);

      // The watcher (or, failing that, the 5 s poll) swaps the rules in: the next answers change.
      const deadline = Date.now() + RELOAD_MS;
      let image: string | undefined = before.spec.containers[0]?.image;
      while (image !== "mirror.example.com/hub/library/nginx:1.25") {
        assert.ok(Date.now() < deadline, `rules not reloaded within ${RELOAD_MS} ms; still ${image}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        image = patchedPod(fixture, await postReview(webhook, ca, fixture)).spec.containers[0]?.image;
      }
      const after = patchedPod(fixture, await postReview(webhook, ca, fixture));
      assert.equal(after.spec.containers[0]?.image, "mirror.example.com/hub/library/nginx:1.25");
      assert.equal(
        after.spec.initContainers[0]?.image,
        "internal-registry.corp/gcr/distroless/static:nonroot",
        "the other rules are unchanged",
      );
      assert.equal(served.lines.filter((line) => line.msg === "rules loaded").length >= 2, true);

      await sigterm(served);
    } finally {
      served.child.kill("SIGKILL");
    }
  });

  it("exits 2 naming the flags when --tls-cert-file comes without --tls-key-file", async () => {
    const served = serve(["--rules", "examples/", "--tls-cert-file", join(temp, "tls.crt")]);
    const { code } = await exitWithin(served, EXIT_MS);
    assert.equal(code, 2);
    assert.match(served.stderr(), /--tls-cert-file and --tls-key-file go together/);
    assert.equal(served.lines.length, 0, "nothing was started");
  });

  it("exits 2 when --namespace-label is empty", async () => {
    const served = serve(["--rules", "examples/", "--namespace-label", ""]);
    const { code } = await exitWithin(served, EXIT_MS);
    assert.equal(code, 2);
    assert.match(served.stderr(), /--namespace-label must be a label key/);
    assert.equal(served.lines.length, 0, "nothing was started");
  });

  it("exits 2 without --rules when no Kubernetes configuration is found either", async () => {
    const served = serve(["--port", "0", "--metrics-port", "0", "--bind-address", "127.0.0.1"], {
      KUBECONFIG: "",
      HOME: temp,
      KUBERNETES_SERVICE_HOST: "",
    });
    const { code } = await exitWithin(served, EXIT_MS);
    assert.equal(code, 2);
    assert.match(served.stderr(), /no --rules PATH and no Kubernetes configuration/);
    assert.doesNotMatch(served.stderr(), /\n\s+at /, "no stack trace");
  });

  it("exits 2 with one line naming --port when the webhook port is in use", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busy = (blocker.address() as AddressInfo).port;
    try {
      const flags = standardFlags("examples/", join(temp, "self-signed-busy"));
      flags[flags.indexOf("--port") + 1] = String(busy);
      const served = serve(flags);
      const { code } = await exitWithin(served, EXIT_MS);
      assert.equal(code, 2);
      assert.equal(
        served.stderr(),
        `imageshift serve: --bind-address 127.0.0.1 --port ${busy}: address already in use\n`,
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("gives two servers on different ports a CA file each, each trusted by its own server", async () => {
    const [first, second] = (await freePorts(2)) as [number, number];
    // Without --self-signed-dir: the default folder under $TMPDIR, here the test's temp folder.
    const env = { TMPDIR: temp };
    const servers = [first, second].map((port) =>
      serve(["--rules", "examples/", ...loopbackFlags(port)], env),
    );
    try {
      const endpoints = [];
      for (const served of servers) endpoints.push(await started(served));
      const caFiles = servers.map((served) => String(served.lines.find((line) => line.caFile)?.caFile));
      assert.deepEqual(caFiles, [
        join(temp, "imageshift", String(first), "ca.pem"),
        join(temp, "imageshift", String(second), "ca.pem"),
      ]);
      for (const [i, endpoint] of endpoints.entries()) {
        const ca = await readFile(caFiles[i] as string, "utf8");
        assert.equal(
          (await postReview(endpoint.webhook, ca, fixture)).status,
          200,
          `server ${i} trusts its own CA file`,
        );
        const other = await readFile(caFiles[1 - i] as string, "utf8");
        await assert.rejects(
          postReview(endpoint.webhook, other, fixture),
          /self-signed certificate|unable to verify/,
        );
      }
      for (const served of servers) await sigterm(served);
    } finally {
      for (const served of servers) served.child.kill("SIGKILL");
    }
  });

  it("exits 2 with a one-line message when the --rules path does not exist", {}, async () => {
    const served = serve(standardFlags(join(temp, "no-such-rules"), join(temp, "self-signed-3")));
    const { code } = await exitWithin(served, EXIT_MS);
    assert.equal(code, 2);
    assert.match(served.stderr(), /no-such-rules/);
    assert.doesNotMatch(served.stderr(), /\n\s+at /, "no stack trace");
  });
});
