/**
 * Webhook load benchmark (`npm run bench:webhook`): the real `imageshift serve` process with
 * 10,000 rules, a 3-container pod AdmissionReview, autocannon over HTTPS with keep-alive.
 * Reports throughput and latency at fixed rates and at saturation, and the server's RSS.
 * The load generator shares the machine's two cores with the server; say so with the figures.
 *
 * `BENCH_MODE=cluster` (`npm run bench:webhook:cluster`) runs the server as the chart does, in
 * cluster mode: the same rules as ten `Imageshift` objects in a real kube-apiserver + etcd
 * (test/e2e/harness), so the Kubernetes client, its watches and leader election are in the
 * figures. The control plane runs on the same two cores too.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { createCertificateAuthority, createServingCertificate } from "../src/certs/authority.ts";
import { freePorts, startControlPlane } from "../test/e2e/harness/controlplane.ts";
import { kubectlFor } from "../test/e2e/harness/operator.ts";
import { generalRegexes, regexes, swapAndExact } from "./fixtures.ts";

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const CLUSTER_MODE = process.env.BENCH_MODE === "cluster";
const CRDS = join(import.meta.dirname, "..", "charts", "imageshift", "crds", "crds.yaml");

/** The process's resident memory, or 0 once it is gone (a server that ran out of heap). */
function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

function review(): string {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "bench-0001",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      namespace: "bench",
      operation: "CREATE",
      object: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { generateName: "web-", namespace: "bench", labels: { app: "web" } },
        spec: {
          containers: [
            { name: "app", image: "nginx:1.25" },
            { name: "tool", image: "org3/app:v3" },
            { name: "pause", image: "registry.k8s.io/pause:3.10" },
          ],
        },
      },
    },
  });
}

/**
 * An open-loop load at a fixed rate: requests leave on an even schedule (not in bursts, as
 * autocannon's rate limit sends them) whether or not earlier ones were answered, so a stall
 * shows up in the percentiles instead of slowing the load down. Latency counts from the send.
 */
async function fixedRate(port: number, body: string, rate: number, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 32, rejectUnauthorized: false });
  const latencies: number[] = [];
  let errors = 0;
  /** One review; resolves with the status (0 on a connection error) and the time from the send. */
  const send = () =>
    new Promise<{ status: number; ms: number }>((resolve) => {
      const sent = performance.now();
      const options = {
        host: "127.0.0.1",
        port,
        path: "/mutate",
        method: "POST",
        agent,
        headers: { "content-type": "application/json" },
      };
      const req = httpsRequest(options, (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - sent }));
      });
      req.on("error", () => resolve({ status: 0, ms: performance.now() - sent }));
      req.end(body);
    });
  // Open the connections first: TLS handshakes are not what this measures.
  await Promise.all(Array.from({ length: 8 }, send));
  const start = performance.now();
  const total = rate * seconds;
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    inFlight.push(
      send().then(({ status, ms }) => {
        if (status === 200) latencies.push(ms);
        else errors++;
      }),
    );
  }
  await Promise.all(inFlight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (p: number) =>
    (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0).toFixed(2);
  return { rps: Math.round(latencies.length / seconds), p50: at(0.5), p99: at(0.99), errors };
}

/**
 * The rules as Imageshift objects of at most 1,000 rules each (one object of 10,000 would pass
 * etcd's 1.5 MiB limit): every mapping list is dealt out round-robin.
 */
function splitIntoObjects(rules: {
  spec: { mappings: Record<string, unknown[]> };
}): Record<string, unknown>[] {
  const lists = Object.entries(rules.spec.mappings);
  const total = lists.reduce((n, [, list]) => n + list.length, 0);
  const count = Math.ceil(total / 1000);
  return Array.from({ length: count }, (_, i) => ({
    apiVersion: "imageshift.dev/v1",
    kind: "Imageshift",
    metadata: { name: `bench-${i}` },
    spec: {
      mappings: Object.fromEntries(lists.map(([key, list]) => [key, list.filter((_, j) => j % count === i)])),
    },
  }));
}

/** BENCH_RULES picks the rule set: 10,000 swap+exact (default), 10,000 regex, or 100,000 swap+exact. */
const RULE_SETS: Record<string, { label: string; build: () => ReturnType<typeof swapAndExact> }> = {
  swap: { label: "10,000 swap+exact rules", build: () => swapAndExact(10_000) },
  regex: { label: "10,000 regex rules (^literal(.*)$)", build: () => regexes(10_000) },
  "regex-general": { label: "10,000 general regex rules", build: () => generalRegexes(10_000) },
  swap100k: { label: "100,000 swap+exact rules", build: () => swapAndExact(100_000) },
  swap50k: { label: "50,000 swap+exact rules", build: () => swapAndExact(50_000) },
};
const RULES = RULE_SETS[process.env.BENCH_RULES ?? "swap"];
if (!RULES) throw new Error(`BENCH_RULES must be one of ${Object.keys(RULE_SETS).join(", ")}`);

const dir = mkdtempSync(join(tmpdir(), "imageshift-bench-"));
const [document] = RULES.build();
writeFileSync(join(dir, "rules.json"), JSON.stringify(document?.value));
const controlPlane = CLUSTER_MODE ? await startControlPlane() : undefined;
if (controlPlane) {
  const kubectl = kubectlFor(controlPlane.kubeconfigPath);
  await kubectl.ok(["apply", "-f", CRDS]);
  await kubectl.ok([
    "wait",
    "--for=condition=Established",
    "crd/imageshifts.imageshift.dev",
    "--timeout=60s",
  ]);
  await kubectl.ok(["create", "namespace", "bench"]);
  await kubectl.ok(["label", "namespace", "bench", "imageshift.dev=enabled"]);
  const objects = splitIntoObjects(document?.value as Parameters<typeof splitIntoObjects>[0]);
  // create, not apply: apply would copy each object into an annotation, over its 256 KiB limit.
  await kubectl.ok(["create", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
}
// As deployed: the production build (build/), certificate files, the container's NODE_OPTIONS and malloc setting.
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
  stdio: "inherit",
});
const ca = await createCertificateAuthority({ commonName: "bench CA", validityDays: 1 });
const leaf = await createServingCertificate(ca, {
  commonName: "localhost",
  ipAddresses: ["127.0.0.1"],
  validityDays: 1,
});
writeFileSync(join(dir, "tls.crt"), leaf.certPem);
writeFileSync(join(dir, "tls.key"), leaf.keyPem);
const DEPLOYED_NODE_OPTIONS = "--max-semi-space-size=2 --max-old-space-size=96";
const [port, metricsPort] = (await freePorts(2)) as [number, number];
const server = spawn(
  process.execPath,
  [
    "build/main.js",
    "serve",
    ...(controlPlane ? ["--leader-election-namespace", "default"] : ["--rules", join(dir, "rules.json")]),
    "--tls-cert-file",
    join(dir, "tls.crt"),
    "--tls-key-file",
    join(dir, "tls.key"),
    "--bind-address",
    "127.0.0.1",
    "--metrics-bind-address",
    "127.0.0.1",
    "--port",
    String(port),
    "--metrics-port",
    String(metricsPort),
  ],
  // NODE_OPTIONS as deployed (see docs/performance.md); BENCH_NODE_OPTIONS overrides it to compare.
  {
    stdio: ["ignore", "ignore", "inherit"],
    env: {
      ...process.env,
      NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS ?? DEPLOYED_NODE_OPTIONS,
      // The Dockerfile's malloc setting; BENCH_MALLOC_DEFAULTS=1 leaves glibc's defaults, to compare.
      ...(process.env.BENCH_MALLOC_DEFAULTS ? {} : { MALLOC_MMAP_THRESHOLD_: "32768" }),
      ...(controlPlane ? { KUBECONFIG: controlPlane.kubeconfigPath } : {}),
    },
  },
);
const pid = server.pid as number;

try {
  for (let i = 0; ; i++) {
    if (i > 300) throw new Error("the server did not become ready within 30 s");
    if (server.exitCode !== null || server.signalCode !== null)
      throw new Error(`the server exited before it was ready (${server.exitCode ?? server.signalCode})`);
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // Settled: watches synced, leader elected, status written (cluster mode).
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idleRss = rssMb(pid);
  const body = review();
  const run = async (label: string, options: { connections: number; overallRate?: number }) => {
    let peakRss = rssMb(pid);
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMb(pid));
    }, 200);
    const result = await autocannon({
      url: `https://127.0.0.1:${port}/mutate`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duration: DURATION_S,
      ...options,
    });
    clearInterval(sampler);
    const ok = result["2xx"];
    return {
      label,
      rps: Math.round(ok / DURATION_S),
      p50: result.latency.p50,
      p99: result.latency.p99,
      errors: result.errors + result.non2xx + result.timeouts,
      peakRss: peakRss.toFixed(0),
    };
  };
  const measured = async (
    label: string,
    load: () => Promise<{ rps: number; p50: string; p99: string; errors: number }>,
  ) => {
    let peakRss = rssMb(pid);
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMb(pid));
    }, 200);
    const result = await load();
    clearInterval(sampler);
    return { label, ...result, peakRss: peakRss.toFixed(0) };
  };
  const rows = [
    await run("warm-up (autocannon, 8 connections)", { connections: 8 }),
    await measured("open loop, fixed 500/s", () => fixedRate(port, body, 500, DURATION_S)),
    await measured("open loop, fixed 2,000/s", () => fixedRate(port, body, 2000, DURATION_S)),
    await run("saturation (autocannon, 8 connections)", { connections: 8 }),
    await run("saturation (autocannon, 32 connections)", { connections: 32 }),
  ];
  console.log(
    `# webhook benchmark, ${new Date().toISOString()}, node ${process.version}, ${cpus()[0]?.model} x${cpus().length}`,
  );
  console.log(
    `${CLUSTER_MODE ? "cluster mode (Imageshift objects of 1,000 rules in kube-apiserver)" : "standalone (rule file)"}, ${RULES.label}, 3-container pod, ${DURATION_S} s per row, load generator on the same 2 cores; autocannon latencies have 1 ms resolution; idle RSS ${idleRss.toFixed(0)} MB`,
  );
  console.log("| load | reviews/s | p50 ms | p99 ms | errors | peak RSS MB |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows)
    console.log(`| ${r.label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.peakRss} |`);
} finally {
  // Cleaned up whatever happened: a server that already exited (out of heap, say) is not waited for.
  if (server.exitCode === null && server.signalCode === null) {
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve));
  }
  await controlPlane?.stop();
  rmSync(dir, { recursive: true, force: true });
}
