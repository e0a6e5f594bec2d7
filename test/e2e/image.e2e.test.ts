/**
 * ImageShift's container image, built from the repository's Dockerfile without a Docker engine
 * (podman with runc, a stand-in base image; test/e2e/image/build.sh), run as users run it: the
 * CLI's help, `serve` as uid 1000 on a read-only root file system with nothing writable, its
 * probes and webhook, a clean exit on SIGTERM, and a round trip through a local registry.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { freePorts } from "./harness/controlplane.ts";
import { buildImage, httpGet, podman, podmanRun, startRegistry, tidyPodmanCgroups } from "./harness/image.ts";
import { makeWebhookCertificates, waitUntil } from "./harness/operator.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const name = `imageshift-e2e-${process.pid}`;
let image = "";
let dir = "";

before(async () => {
  image = await buildImage();
  dir = await mkdtemp(path.join(tmpdir(), "imageshift-image-e2e-"));
});

after(async () => {
  await podmanRun(["rm", "-f", "-t", "0", name]);
  if (dir) await rm(dir, { recursive: true, force: true });
  tidyPodmanCgroups();
});

interface ImageConfig {
  Config: { User: string; Labels: Record<string, string>; Entrypoint: string[]; Cmd: string[] };
  Id: string;
  Size: number;
}

async function inspect(ref: string): Promise<ImageConfig> {
  const [config] = JSON.parse(await podman(["image", "inspect", ref])) as ImageConfig[];
  assert.ok(config, `no image ${ref}`);
  return config;
}

describe("the container image", { timeout: 10 * 60_000 }, () => {
  it("runs the production build as uid 1000, with OCI labels and nothing of the build's npm set-up", async () => {
    const config = await inspect(image);
    assert.equal(config.Config.User, "1000:1000");
    assert.deepEqual(config.Config.Entrypoint, ["node", "build/main.js"]);
    assert.deepEqual(config.Config.Cmd, ["serve"]);
    const labels = config.Config.Labels;
    assert.equal(labels["org.opencontainers.image.title"], "ImageShift");
    assert.equal(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
    assert.equal(labels["org.opencontainers.image.version"], pkg.version);
    // The CA bundle and npmrc were mounted into the build, never copied; no sources, no tests, no dev dependencies.
    const listing = await podman([
      "run",
      "--rm",
      "--pull=never",
      "--network=none",
      "--entrypoint=node",
      image,
      "-e",
      `const fs = require("node:fs");
       console.log(JSON.stringify({
         npmrc: fs.existsSync("/usr/local/etc/npmrc"),
         buildMount: fs.existsSync("/run/imageshift-build"),
         app: fs.readdirSync("/app").sort(),
         typescript: fs.existsSync("/app/node_modules/typescript"),
         tests: fs.readdirSync("/app/build", { recursive: true }).filter((f) => String(f).endsWith(".test.js")).length,
         uid: process.getuid(),
       }));`,
    ]);
    assert.deepEqual(JSON.parse(listing), {
      npmrc: false,
      buildMount: false,
      app: ["build", "node_modules", "package.json"],
      typescript: false,
      tests: 0,
      uid: 1000,
    });
  });

  it("answers --help", async () => {
    const result = await podmanRun(["run", "--rm", "--pull=never", "--network=none", image, "--help"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Usage: imageshift COMMAND/m);
    assert.match(result.stdout, /serve +serve the admission webhooks/);
  });

  it("serves as uid 1000 with a read-only root and nothing writable, answers probes and the webhook, and exits cleanly on SIGTERM", async () => {
    const certs = await makeWebhookCertificates(dir);
    // The container's uid 1000 reads them through a read-only bind mount.
    await chmod(dir, 0o755);
    await chmod(certs.keyFile, 0o644);
    const [port, metricsPort] = await freePorts(2);
    await podman([
      "run",
      "-d",
      "--pull=never",
      "--name",
      name,
      "--network=host",
      "--read-only",
      "--read-only-tmpfs=false",
      "--cap-drop=all",
      "--security-opt=no-new-privileges",
      "-v",
      `${path.join(repoRoot, "examples")}:/rules:ro`,
      "-v",
      `${dir}:/certs:ro`,
      image,
      "serve",
      "--rules=/rules",
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      `--metrics-port=${metricsPort}`,
      "--metrics-bind-address=127.0.0.1",
      `--tls-cert-file=/certs/${path.basename(certs.certFile)}`,
      `--tls-key-file=/certs/${path.basename(certs.keyFile)}`,
    ]);
    await waitUntil(
      "the container's /readyz",
      async () => {
        const state = (await podman(["inspect", "-f", "{{.State.Status}}", name])).trim();
        if (state !== "running") throw new Error(`container is ${state}: ${await podman(["logs", name])}`);
        return (await httpGet(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    assert.equal((await httpGet(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
    const metrics = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^imageshift_/m);

    // The process in the container runs as uid and gid 1000, on a read-only root.
    const pid = (await podman(["inspect", "-f", "{{.State.Pid}}", name])).trim();
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    assert.match(status, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
    assert.match(status, /^Gid:\s+1000\s+1000\s+1000\s+1000$/m);
    assert.match(status, /^CapEff:\s+0+$/m);
    const mounts = readFileSync(`/proc/${pid}/mounts`, "utf8").split("\n");
    const root = mounts.find((line) => line.split(" ")[1] === "/");
    assert.match(root ?? "", / ro[ ,]/, `root mount: ${root}`);
    // Nothing to write to: not the root, the app, /tmp, /var/tmp, /run or the node user's home.
    const writes = await podman([
      "exec",
      name,
      "node",
      "-e",
      `const fs = require("node:fs");
       const dirs = ["/", "/app", "/app/build", "/tmp", "/var/tmp", "/run", "/home/node"];
       console.log(JSON.stringify(dirs.map((dir) => {
         try { fs.writeFileSync(dir + "/.probe", "x"); return dir + ": written"; }
         catch (error) { return dir + ": " + error.code; }
       })));`,
    ]);
    for (const outcome of JSON.parse(writes) as string[]) assert.match(outcome, /: (EROFS|EACCES)$/);

    // The webhook rewrites a pod with the example rules (docker.io -> internal-registry.corp/dockerhub).
    const uid = randomUUID();
    const reply = await postReview(port as number, certs.caPem, {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid,
        kind: { group: "", version: "v1", kind: "Pod" },
        resource: { group: "", version: "v1", resource: "pods" },
        namespace: "default",
        operation: "CREATE",
        userInfo: { username: "e2e" },
        object: {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "p", namespace: "default" },
          spec: { containers: [{ name: "c", image: "busybox:1.36" }] },
        },
      },
    });
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, true);
    const patch = JSON.parse(Buffer.from(reply.response.patch ?? "", "base64").toString()) as {
      value: unknown;
    }[];
    assert.match(JSON.stringify(patch), /internal-registry\.corp\/dockerhub\/library\/busybox:1\.36/);

    // SIGTERM (podman stop's signal): a clean exit, well before podman's own SIGKILL.
    const started = Date.now();
    await podman(["stop", "-t", "20", name], { timeoutMs: 30_000 });
    const elapsed = Date.now() - started;
    const exit = (await podman(["inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", name])).trim();
    assert.equal(exit, "0 false");
    assert.ok(elapsed < 15_000, `stopped in ${elapsed} ms`);
    const logs = await podmanRun(["logs", name]);
    assert.doesNotMatch(logs.stdout + logs.stderr, /"level":(50|60)/, "no error or fatal log lines");
  });

  it("is pushed to a local registry and pulled back unchanged", async () => {
    const registry = await startRegistry();
    try {
      const pushed = await registry.push(image, "imageshift/imageshift:e2e");
      assert.deepEqual(await registry.catalog(), ["imageshift/imageshift"]);
      const original = await inspect(image);
      await podman(["rmi", pushed]).catch(() => "");
      await podman(["pull", "--tls-verify=false", pushed], { timeoutMs: 5 * 60_000 });
      const pulled = await inspect(pushed);
      assert.equal(pulled.Id, original.Id);
      const result = await podmanRun(["run", "--rm", "--pull=never", "--network=none", pushed, "--help"]);
      assert.equal(result.code, 0, result.stderr);
      await podman(["rmi", pushed]);
    } finally {
      await registry.stop();
    }
  });
});

interface AdmissionReview {
  response: { uid: string; allowed: boolean; patch?: string };
}

function postReview(port: number, ca: string, review: unknown): Promise<AdmissionReview> {
  const body = JSON.stringify(review);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
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
            resolve(JSON.parse(text) as AdmissionReview);
          } catch (error) {
            reject(new Error(`status ${res.statusCode}: ${text}`, { cause: error }));
          }
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}
