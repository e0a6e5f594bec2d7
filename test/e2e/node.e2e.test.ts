/**
 * ImageShift on a real node, as users run it (harness/node.ts: control plane, controller-manager,
 * scheduler, a kubelet with containerd and runc, a bridge network, local registries): its image
 * (built from the Dockerfile, harness/image.ts) pushed to a local registry, the chart installed
 * with `helm install` unchanged, pods rewritten to a mirror registry and pulled from it, replicas
 * killed, an upgrade rolled, and the release uninstalled.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { helmPath } from "../../scripts/helm.ts";
import { buildImage, podman, type Registry, runOk, tidyPodmanCgroups } from "./harness/image.ts";
import { type Cluster, nodeImages, startCluster } from "./harness/node.ts";
import { waitUntil } from "./harness/operator.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const CHART = path.join(repoRoot, "charts", "imageshift");
const SEEDS = path.join(repoRoot, "test", "fixtures", "seeds");
const RELEASE = "imageshift";
const NAMESPACE = "imageshift-system";
/** Namespaces: served (enabled) and strict, both also `env: dev` for the seed's development rule. */
const ENABLED = "team-dev";
const STRICT = "team-strict";

let cluster: Cluster;
let mirror: Registry;
/** Where the verified rule's images come from (the original registry when the mirror lacks one). */
let upstream: Registry;
/** The mirror and upstream as pods and the node both reach them (`<gateway>:<port>`, harness/node.ts). */
let mirrorOnBridge = "";
let upstreamOnBridge = "";
let imageRepository = "";

before(async () => {
  const image = await buildImage();
  cluster = await startCluster({ keepTempDir: process.env.IMAGESHIFT_E2E_KEEP === "1" });
  const pushed = await cluster.registry.push(image, "imageshift/imageshift:e2e");
  imageRepository = pushed.replace(/:e2e$/, "");
  // The mirror: a second registry holding busybox where the seed's development rule sends
  // docker.io images (`localhost:5000` in the seed, this registry here).
  mirror = await cluster.addRegistry("mirror");
  // Its own image (busybox labelled as the mirror's copy), so that what the kubelet reports can
  // only come from the mirror.
  await mirror.push(`localhost/${nodeImages.mirrorBusybox}`, "library/busybox:1.36-e2e");
  // Upstream holds its own copy under two names, of which the mirror has only the first.
  upstream = await cluster.addRegistry("upstream");
  for (const repository of ["library/busybox:1.36-e2e", "team/tool:1"])
    await upstream.push(`localhost/${nodeImages.upstreamBusybox}`, repository);
  mirrorOnBridge = await cluster.exposeRegistry(mirror);
  upstreamOnBridge = await cluster.exposeRegistry(upstream);
  await podman(["rmi", `${cluster.registry.host}/imageshift/imageshift:e2e`]).catch(() => "");
});

after(async () => {
  await cluster?.stop();
  tidyPodmanCgroups();
});

const helm = async (args: string[], timeoutMs = 180_000) =>
  runOk(await helmPath(), ["--kubeconfig", cluster.kubeconfigPath, ...args], { timeoutMs });

interface Admission {
  admitted: boolean;
  image?: string;
  error?: string;
}

/** One entry of the pod's `imageshift.dev/original-images` record. */
interface RecordEntry {
  original: string;
  image: string;
  rule: string;
  check?: string;
}

interface DetailedAdmission extends Admission {
  /** The admitted pod's record of `containers/app`, if any. */
  record?: RecordEntry;
  /** What kubectl printed on stderr (admission warnings, or the refusal). */
  stderr: string;
}

/** A server-side dry-run create of a pod: admission runs (webhooks included), nothing is stored. */
async function admitDetailed(namespace: string, image: string): Promise<DetailedAdmission> {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "probe-", namespace },
    spec: { containers: [{ name: "app", image }] },
  };
  const result = await cluster.kubectl.run(["create", "--dry-run=server", "-o", "json", "-f", "-"], {
    stdin: JSON.stringify(pod),
  });
  if (result.code !== 0) return { admitted: false, error: result.stderr.trim(), stderr: result.stderr };
  const created = JSON.parse(result.stdout) as PodManifest;
  return {
    admitted: true,
    image: created.spec.containers[0]?.image ?? "",
    ...recordOf(created),
    stderr: result.stderr,
  };
}

async function admit(namespace: string, image: string): Promise<Admission> {
  const { admitted, image: admittedImage, error } = await admitDetailed(namespace, image);
  return admitted ? { admitted, image: admittedImage ?? "" } : { admitted, ...(error ? { error } : {}) };
}

interface PodManifest {
  metadata: { annotations?: Record<string, string> };
  spec: { containers: { image: string }[] };
}

function recordOf(pod: PodManifest): { record?: RecordEntry } {
  const raw = pod.metadata.annotations?.["imageshift.dev/original-images"];
  const entry = raw ? (JSON.parse(raw) as Record<string, RecordEntry>)["containers/app"] : undefined;
  return entry ? { record: entry } : {};
}

interface DeploymentStatus {
  metadata: { generation: number };
  status: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
  };
}

async function deploymentSettled(): Promise<boolean> {
  const deployment = await cluster.kubectl.json<DeploymentStatus>([
    "get",
    "deployment",
    RELEASE,
    "-n",
    NAMESPACE,
  ]);
  const { status } = deployment;
  return (
    status.observedGeneration === deployment.metadata.generation &&
    status.replicas === 2 &&
    status.readyReplicas === 2 &&
    status.updatedReplicas === 2 &&
    status.availableReplicas === 2
  );
}

async function imageshiftPods(): Promise<{ name: string; ready: boolean; deleting: boolean }[]> {
  const list = await cluster.kubectl.json<{
    items: {
      metadata: { name: string; deletionTimestamp?: string };
      status: { conditions?: { type: string; status: string }[] };
    }[];
  }>(["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=imageshift"]);
  return list.items.map((pod) => ({
    name: pod.metadata.name,
    ready: pod.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    deleting: pod.metadata.deletionTimestamp !== undefined,
  }));
}

/** Ready addresses behind the webhook Service (what the API server calls, without kube-proxy). */
async function readyEndpoints(): Promise<number> {
  const slices = await cluster.kubectl.json<{
    items: { endpoints?: { conditions?: { ready?: boolean } }[] }[];
  }>(["get", "endpointslices", "-n", NAMESPACE, "-l", `kubernetes.io/service-name=${RELEASE}`]);
  return slices.items.flatMap((slice) => slice.endpoints ?? []).filter((e) => e.conditions?.ready !== false)
    .length;
}

/** Pids of the host's processes whose command line (NUL-separated) matches. */
function hostProcesses(match: (cmdline: string) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (match(readFileSync(`/proc/${entry}/cmdline`, "utf8"))) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

/** Whether a process's root file system is a snapshot of this cluster's containerd (another run may share the host). */
function inThisCluster(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/mountinfo`, "utf8").includes(`${cluster.dir}/containerd/`);
  } catch {
    return false;
  }
}

/** A string matched literally in a RegExp. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const source = "busybox:1.36-e2e";
const rewritten = () => `${mirror.host}/library/busybox:1.36-e2e`;

interface PodStatus {
  status: {
    phase?: string;
    podIP?: string;
    containerStatuses?: {
      image: string;
      imageID: string;
      ready: boolean;
      state: { waiting?: { reason?: string }; running?: unknown; terminated?: { exitCode: number } };
    }[];
  };
}

describe("a cluster with one node", { timeout: 10 * 60_000 }, () => {
  it("runs a busybox pod from the local registry", async () => {
    const { kubectl } = cluster;
    await kubectl.ok(["create", "namespace", "smoke"]);
    await kubectl.ok(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "busybox", namespace: "smoke" },
        spec: {
          containers: [{ name: "busybox", image: cluster.busyboxImage, command: ["sleep", "3600"] }],
          terminationGracePeriodSeconds: 0,
        },
      }),
    );
    const pod = await waitUntil(
      "the busybox pod to run",
      async () => {
        const pod = await kubectl.json<PodStatus>(["get", "pod", "busybox", "-n", "smoke"]);
        return pod.status.containerStatuses?.[0]?.state.running ? pod : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(pod.status.phase, "Running");
    assert.equal(pod.status.containerStatuses?.[0]?.image, cluster.busyboxImage);
    assert.match(
      pod.status.podIP ?? "",
      new RegExp(`^${cluster.network.gateway.replace(/\.1$/, "").replaceAll(".", "\\.")}\\.`),
    );
  });
});

describe("ImageShift installed with Helm on the node", { timeout: 15 * 60_000 }, () => {
  it("helm install: both replicas Ready from the local registry's image, certificates self-managed, caBundles filled", async () => {
    const { kubectl } = cluster;
    const started = Date.now();
    await helm([
      "install",
      RELEASE,
      CHART,
      "--namespace",
      NAMESPACE,
      "--create-namespace",
      "--set",
      `image.repository=${imageRepository}`,
      "--set",
      "image.tag=e2e",
    ]);
    await waitUntil("both ImageShift replicas Ready", deploymentSettled, {
      timeoutMs: 180_000,
      intervalMs: 500,
    });
    const pods = await kubectl.json<{
      items: {
        spec: { containers: { image: string; securityContext: { readOnlyRootFilesystem: boolean } }[] };
        status: { containerStatuses: { image: string; imageID: string; ready: boolean }[] };
      }[];
    }>(["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=imageshift"]);
    assert.equal(pods.items.length, 2);
    for (const pod of pods.items) {
      assert.equal(pod.spec.containers[0]?.image, `${imageRepository}:e2e`);
      assert.equal(pod.spec.containers[0]?.securityContext.readOnlyRootFilesystem, true);
      assert.equal(pod.status.containerStatuses[0]?.image, `${imageRepository}:e2e`);
      assert.match(pod.status.containerStatuses[0]?.imageID ?? "", new RegExp(`^${imageRepository}@sha256:`));
    }
    const secret = await kubectl.json<{ data: Record<string, string> }>([
      "get",
      "secret",
      `${RELEASE}-tls`,
      "-n",
      NAMESPACE,
    ]);
    assert.ok(
      secret.data["tls.crt"] && secret.data["tls.key"] && secret.data["ca.crt"],
      Object.keys(secret.data).join(),
    );
    const caBundles = await waitUntil(
      "both webhook configurations' caBundles",
      async () => {
        const bundles: string[] = [];
        for (const kind of ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"]) {
          const config = await kubectl.json<{ webhooks: { clientConfig: { caBundle?: string } }[] }>([
            "get",
            kind,
            RELEASE,
          ]);
          for (const webhook of config.webhooks) bundles.push(webhook.clientConfig.caBundle ?? "");
        }
        return bundles.every((bundle) => bundle !== "") ? bundles : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const pem = (base64: string | undefined) =>
      Buffer.from(base64 ?? "", "base64")
        .toString()
        .trim();
    for (const bundle of caBundles)
      assert.equal(pem(bundle), pem(secret.data["ca.crt"]), "caBundle is the Secret's CA");
    // The chart's securityContext in force on the host's view of both processes: uid and gid
    // 1000, no capabilities, no_new_privs, a seccomp filter (RuntimeDefault), a read-only root.
    const processes = hostProcesses(
      (cmdline) => cmdline.includes("build/main.js") && cmdline.includes(`--tls-secret=${RELEASE}-tls`),
    ).filter((pid) => inThisCluster(pid));
    assert.equal(processes.length, 2, "two ImageShift processes on the node");
    for (const pid of processes) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      assert.match(status, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
      assert.match(status, /^Gid:\s+1000\s+1000\s+1000\s+1000$/m);
      assert.match(status, /^CapEff:\s+0+$/m);
      assert.match(status, /^NoNewPrivs:\s+1$/m);
      assert.match(status, /^Seccomp:\s+2$/m);
      const root = readFileSync(`/proc/${pid}/mounts`, "utf8")
        .split("\n")
        .find((line) => line.split(" ")[1] === "/");
      assert.match(root ?? "", /\sro[\s,]/, `root mount: ${root}`);
    }
    // The API server reaches the kubelet (logs): its own client certificate, node named localhost.
    const logs = await kubectl.ok(["logs", "-n", NAMESPACE, "deployment/imageshift", "--tail=-1"]);
    assert.match(logs, /"level":30/);
    console.log(`helm install to both replicas Ready: ${Date.now() - started} ms`);
  });

  it("the seed's rules rewrite a labelled namespace's pod to the mirror, which runs from there", async () => {
    const { kubectl } = cluster;
    for (const [name, label] of [
      [ENABLED, "enabled"],
      [STRICT, "strict"],
    ] as const) {
      await kubectl.ok(["create", "namespace", name]);
      await kubectl.ok(["label", "namespace", name, `imageshift.dev=${label}`, "env=dev"]);
    }
    // ImageShift's introduction, its development mirror (localhost:5000) being the local mirror here.
    const seeds = readFileSync(path.join(SEEDS, "imageshift-introduction.yaml"), "utf8");
    assert.match(seeds, /target: localhost:5000/);
    await kubectl.ok(["apply", "-f", "-"], seeds.replaceAll("localhost:5000", mirror.host));
    await waitUntil(
      "the rules to be served",
      async () => (await admit(ENABLED, source)).image === rewritten(),
      {
        timeoutMs: 60_000,
        intervalMs: 500,
      },
    );

    const started = Date.now();
    await kubectl.ok(
      ["create", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "app", namespace: ENABLED },
        spec: {
          containers: [{ name: "app", image: source, command: ["sleep", "3600"] }],
          terminationGracePeriodSeconds: 0,
        },
      }),
    );
    const pod = await waitUntil(
      "the rewritten pod to run",
      async () => {
        const pod = await kubectl.json<PodStatus & { spec: { containers: { image: string }[] } }>([
          "get",
          "pod",
          "app",
          "-n",
          ENABLED,
        ]);
        return pod.status.containerStatuses?.[0]?.state.running ? pod : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(pod.spec.containers[0]?.image, rewritten());
    // What the kubelet ran, as it reports it: the mirror's reference and digest.
    assert.equal(pod.status.containerStatuses?.[0]?.image, rewritten());
    assert.match(
      pod.status.containerStatuses?.[0]?.imageID ?? "",
      new RegExp(`^${mirror.host}/library/busybox@sha256:`),
    );
    console.log(`rewritten pod created to Running: ${Date.now() - started} ms`);
  });

  it("a pod whose rewritten image the mirror lacks ends in ErrImagePull", async () => {
    const { kubectl } = cluster;
    await kubectl.ok(
      ["create", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "missing", namespace: ENABLED },
        spec: { containers: [{ name: "app", image: "busybox:absent" }], terminationGracePeriodSeconds: 0 },
      }),
    );
    const pod = await waitUntil(
      "the pod's ErrImagePull",
      async () => {
        const pod = await kubectl.json<PodStatus & { spec: { containers: { image: string }[] } }>([
          "get",
          "pod",
          "missing",
          "-n",
          ENABLED,
        ]);
        return pod.status.containerStatuses?.[0]?.state.waiting?.reason === "ErrImagePull" ? pod : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    assert.equal(pod.spec.containers[0]?.image, `${mirror.host}/library/busybox:absent`);
    await kubectl.ok(["delete", "pod", "missing", "-n", ENABLED, "--grace-period=0", "--force"]);
  });

  it("with verification on, a pod whose mirror lacks the image falls back and runs from the original registry, its neighbour from the mirror", async () => {
    const { kubectl } = cluster;
    // Named by their bridge addresses: the webhook (a pod) asks the mirror, the node pulls.
    const present = `${upstreamOnBridge}/library/busybox:1.36-e2e`;
    const lacking = `${upstreamOnBridge}/team/tool:1`;
    const mirrored = `${mirrorOnBridge}/library/busybox:1.36-e2e`;
    const askedFor = `${mirrorOnBridge}/team/tool:1`;
    assert.deepEqual((await mirror.catalog()).sort(), ["library/busybox"]);
    assert.deepEqual((await upstream.catalog()).sort(), ["library/busybox", "team/tool"]);
    const rule = "Imageshift/verified-mirror spec.mappings.swap[0]";
    const object = {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name: "verified-mirror" },
      spec: {
        // Above the seed's objects (at most 30); only these pods name the upstream registry.
        priority: 40,
        verify: { mode: "Presence", insecureRegistries: [mirrorOnBridge, upstreamOnBridge] },
        mappings: { swap: [{ registry: upstreamOnBridge, target: mirrorOnBridge }] },
      },
    };
    const pods = { "from-mirror": present, fallback: lacking };
    await kubectl.ok(["apply", "-f", "-"], JSON.stringify(object));
    try {
      // Served by both replicas (each watches the objects itself): several answers in a row, each
      // asking the mirror through the bridge: the present image rewritten, the lacking one kept.
      let inARow = 0;
      await waitUntil(
        "the verified rule to be served",
        async () => {
          const [rewrittenProbe, keptProbe] = await Promise.all([
            admitDetailed(ENABLED, present),
            admitDetailed(ENABLED, lacking),
          ]);
          const served =
            rewrittenProbe.image === mirrored &&
            keptProbe.image === lacking &&
            keptProbe.record?.check?.startsWith(`${askedFor}: absent`) === true;
          inARow = served ? inARow + 1 : 0;
          return inARow >= 4;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );

      const started = Date.now();
      const created: Record<string, { stderr: string; ms: number }> = {};
      for (const [name, image] of Object.entries(pods)) {
        const at = Date.now();
        const result = await kubectl.run(["create", "-f", "-"], {
          stdin: JSON.stringify({
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name, namespace: ENABLED },
            spec: {
              containers: [{ name: "app", image, command: ["sleep", "3600"] }],
              terminationGracePeriodSeconds: 0,
            },
          }),
        });
        assert.equal(result.code, 0, result.stderr);
        created[name] = { stderr: result.stderr, ms: Date.now() - at };
      }
      const running = async (name: string) =>
        waitUntil(
          `pod ${name} to run`,
          async () => {
            const pod = await kubectl.json<PodStatus & PodManifest>(["get", "pod", name, "-n", ENABLED]);
            return pod.status.containerStatuses?.[0]?.state.running ? pod : undefined;
          },
          { timeoutMs: 120_000, intervalMs: 250 },
        );
      const [fromMirror, fallback] = await Promise.all([running("from-mirror"), running("fallback")]);
      const elapsed = Date.now() - started;

      // The neighbour: rewritten, checked present, run from the mirror's copy.
      assert.equal(fromMirror.spec.containers[0]?.image, mirrored);
      assert.equal(fromMirror.status.containerStatuses?.[0]?.image, mirrored);
      assert.match(
        fromMirror.status.containerStatuses?.[0]?.imageID ?? "",
        new RegExp(`^${literal(mirrorOnBridge)}/library/busybox@sha256:`),
      );
      const neighbour = recordOf(fromMirror).record;
      assert.equal(neighbour?.original, present);
      assert.equal(neighbour?.image, mirrored);
      assert.equal(neighbour?.rule, rule);
      assert.match(
        neighbour?.check ?? "",
        new RegExp(`^${literal(mirrored)}: present( \\(cached\\))? \\[${literal(rule)}\\]$`),
      );
      assert.doesNotMatch(created["from-mirror"]?.stderr ?? "", /kept/);

      // The fallback: its image kept, the check recorded, a warning, run from upstream's copy.
      assert.equal(fallback.spec.containers[0]?.image, lacking);
      assert.equal(fallback.status.containerStatuses?.[0]?.image, lacking);
      assert.match(
        fallback.status.containerStatuses?.[0]?.imageID ?? "",
        new RegExp(`^${literal(upstreamOnBridge)}/team/tool@sha256:`),
      );
      assert.notEqual(
        fallback.status.containerStatuses?.[0]?.imageID.split("@")[1],
        fromMirror.status.containerStatuses?.[0]?.imageID.split("@")[1],
        "the upstream copy is another image than the mirror's",
      );
      const kept = recordOf(fallback).record;
      assert.equal(kept?.original, lacking);
      assert.equal(kept?.image, lacking);
      assert.equal(kept?.rule, rule);
      assert.match(
        kept?.check ?? "",
        new RegExp(`^${literal(askedFor)}: absent( \\(cached\\))? \\[${literal(rule)}\\]$`),
      );
      assert.match(
        created.fallback?.stderr ?? "",
        new RegExp(
          `Warning: imageshift: containers/app: ${literal(lacking)} kept, as its mirror cannot be used: ${literal(askedFor)}: absent`,
        ),
      );
      // The registries' side: the webhook asked the mirror (404), the node pulled from upstream
      // and never from the mirror.
      const mirrorAsked = mirror.requests();
      assert.ok(
        mirrorAsked.some(
          (r) => r.method === "HEAD" && r.path === "/v2/team/tool/manifests/1" && r.status === 404,
        ),
        "the webhook's HEAD at the mirror",
      );
      assert.ok(!mirrorAsked.some((r) => r.method === "GET" && r.path.startsWith("/v2/team/tool/")));
      assert.ok(
        upstream
          .requests()
          .some((r) => r.method === "GET" && r.path.startsWith("/v2/team/tool/blobs/") && r.status === 200),
        "the node pulled the fallback's layers from upstream",
      );

      // A strict namespace refuses it instead, naming the image and the mirror image asked for.
      const refused = await admitDetailed(STRICT, lacking);
      assert.equal(refused.admitted, false);
      assert.match(refused.error ?? "", /pod refused in strict namespace team-strict/);
      assert.match(
        refused.error ?? "",
        new RegExp(
          `image "${literal(lacking)}" not rewritten, as its mirror cannot be used: ${literal(askedFor)}: absent`,
        ),
      );
      assert.equal((await admitDetailed(STRICT, present)).image, mirrored);
      console.log(
        `verified pods created to Running: ${elapsed} ms (admissions: ${created["from-mirror"]?.ms} ms, fallback ${created.fallback?.ms} ms)`,
      );
    } finally {
      await kubectl.run([
        "delete",
        "pod",
        ...Object.keys(pods),
        "-n",
        ENABLED,
        "--grace-period=0",
        "--force",
      ]);
      await kubectl.run(["delete", "imageshift", "verified-mirror"]);
    }
  });

  it("one ImageShift pod killed: it serves on while the API server still calls it, the other keeps serving, no admission fails", async () => {
    const [victim] = await imageshiftPods();
    assert.ok(victim);
    const outcomes: Admission[] = [];
    // The controllers frozen, the victim stays in the endpoints after its SIGTERM, as on a busy
    // control plane: the API server goes on calling it. It must serve those calls (the chart's
    // shutdownDelaySeconds, 5) instead of refusing them (with Ignore, pods admitted unchanged).
    const thaw = cluster.pauseControllers();
    let served: number;
    let signalledAt = 0;
    try {
      await cluster.kubectl.ok(["delete", "pod", victim.name, "-n", NAMESPACE, "--wait=false"]);
      const victimLog = async () =>
        (await cluster.kubectl.run(["logs", victim.name, "-n", NAMESPACE])).stdout
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => JSON.parse(line) as { msg?: string });
      await waitUntil(
        "the victim's SIGTERM",
        async () => (await victimLog()).some((line) => line.msg === "signal received"),
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      signalledAt = Date.now();
      // Four at a time, so that enough calls reach the victim, well within its 5 s.
      const windowEnd = Date.now() + 1500;
      while (Date.now() < windowEnd)
        outcomes.push(
          ...(await Promise.all([ENABLED, STRICT, ENABLED, STRICT].map((ns) => admit(ns, source)))),
        );
      assert.equal(await readyEndpoints(), 2, "the victim is still in the endpoints");
      const log = await victimLog();
      const signalled = log.findIndex((line) => line.msg === "signal received");
      served = log.slice(signalled).filter((line) => line.msg === "image rewritten").length;
    } finally {
      thaw();
    }
    const thawedAt = Date.now();
    await waitUntil("the victim out of the endpoints", async () => (await readyEndpoints()) < 2, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    // Within the victim's 5 s, or calls routed to it meanwhile would time out.
    console.log(
      `the victim served ${served} of ${outcomes.length} admissions after its SIGTERM; it left the endpoints ${Date.now() - signalledAt} ms after (${Date.now() - thawedAt} ms after the thaw)`,
    );
    assert.deepEqual(
      outcomes.filter((outcome) => outcome.image !== rewritten()),
      [],
      `all ${outcomes.length} admissions after the SIGTERM rewritten`,
    );
    assert.ok(served > 0, "the API server called the victim after its SIGTERM");
    let minEndpoints = Number.POSITIVE_INFINITY;
    await waitUntil(
      "the replacement to be Ready",
      async () => {
        outcomes.push(await admit(ENABLED, source), await admit(STRICT, source));
        minEndpoints = Math.min(minEndpoints, await readyEndpoints());
        const pods = await imageshiftPods();
        return (
          pods.filter((pod) => pod.ready && !pod.deleting).length === 2 &&
          !pods.some((p) => p.name === victim.name)
        );
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    assert.ok(outcomes.length >= 4);
    assert.deepEqual(
      outcomes.filter((outcome) => outcome.image !== rewritten()),
      [],
      `all ${outcomes.length} admissions rewritten`,
    );
    assert.ok(minEndpoints >= 1, "one endpoint ready throughout");
  });

  it("both killed: strict refuses, enabled admits unchanged, the Deployment restarts them", async () => {
    const pods = await imageshiftPods();
    assert.equal(pods.length, 2);
    // The node cordoned first, so that the replacements wait (Pending) until it is uncordoned:
    // the outage is certain to last, however fast they would otherwise start.
    await cluster.kubectl.ok(["cordon", cluster.nodeName]);
    await cluster.kubectl.ok([
      "delete",
      "pod",
      ...pods.map((pod) => pod.name),
      "-n",
      NAMESPACE,
      "--grace-period=0",
      "--force",
      "--wait=false",
    ]);
    const strict: Admission[] = [];
    const enabled: Admission[] = [];
    await waitUntil(
      "a strict refusal and an unchanged admission",
      async () => {
        strict.push(await admit(STRICT, source));
        enabled.push(await admit(ENABLED, source));
        return (
          strict.some((outcome) => !outcome.admitted) && enabled.some((outcome) => outcome.image === source)
        );
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const pending = await imageshiftPods();
    assert.equal(pending.filter((pod) => pod.ready).length, 0, "the replacements wait for the node");
    const refused = strict.find((outcome) => !outcome.admitted);
    assert.match(refused?.error ?? "", /strict-pods\.imageshift\.dev/);
    // Every outcome is one of the two: served and rewritten, or the failure policy's.
    for (const outcome of strict)
      assert.ok(!outcome.admitted || outcome.image === rewritten(), JSON.stringify(outcome));
    for (const outcome of enabled)
      assert.ok(outcome.image === source || outcome.image === rewritten(), JSON.stringify(outcome));

    await cluster.kubectl.ok(["uncordon", cluster.nodeName]);
    await waitUntil("the Deployment to restart both", deploymentSettled, {
      timeoutMs: 180_000,
      intervalMs: 500,
    });
    await waitUntil(
      "admissions rewritten again",
      async () =>
        (await admit(STRICT, source)).image === rewritten() &&
        (await admit(ENABLED, source)).image === rewritten(),
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  });

  it("helm upgrade rolls the pods with one serving throughout and no failed admission", async () => {
    const pdb = await cluster.kubectl.json<{ spec: { minAvailable: number } }>([
      "get",
      "pdb",
      RELEASE,
      "-n",
      NAMESPACE,
    ]);
    assert.equal(pdb.spec.minAvailable, 1);
    const before = new Set((await imageshiftPods()).map((pod) => pod.name));
    await helm([
      "upgrade",
      RELEASE,
      CHART,
      "--namespace",
      NAMESPACE,
      "--reuse-values",
      "--set",
      "logLevel=debug",
    ]);
    const outcomes: Admission[] = [];
    let minEndpoints = Number.POSITIVE_INFINITY;
    await waitUntil(
      "the rollout to finish",
      async () => {
        outcomes.push(await admit(ENABLED, source), await admit(STRICT, source));
        minEndpoints = Math.min(minEndpoints, await readyEndpoints());
        const pods = await imageshiftPods();
        return (await deploymentSettled()) && pods.length === 2 && pods.every((pod) => !before.has(pod.name));
      },
      { timeoutMs: 240_000, intervalMs: 100 },
    );
    assert.deepEqual(
      outcomes.filter((outcome) => outcome.image !== rewritten()),
      [],
      `all ${outcomes.length} admissions rewritten`,
    );
    assert.ok(minEndpoints >= 1, "one endpoint ready throughout");
  });

  it("helm uninstall leaves no webhook configuration that blocks pods", async () => {
    await helm(["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"]);
    for (const kind of ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]) {
      const list = await cluster.kubectl.json<{ items: { metadata: { name: string } }[] }>(["get", kind]);
      assert.deepEqual(
        list.items.map((item) => item.metadata.name),
        [],
        kind,
      );
    }
    // The strict namespace admits pods again, unchanged.
    assert.deepEqual(await admit(STRICT, source), { admitted: true, image: source });
  });
});
