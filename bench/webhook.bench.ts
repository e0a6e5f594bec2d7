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
 *
 * `BENCH_VERIFY=warm` (issue 13) measures what presence checks with a warm cache cost: the same
 * rows against a server without verification and one whose rule object verifies, in turn (see
 * `verifyComparison`). Cold checks, a registry that never answers and request counts are
 * verify.bench.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { startControlPlane } from "../test/e2e/harness/controlplane.ts";
import { kubectlFor } from "../test/e2e/harness/operator.ts";
import { pushImage, type Registry, startRegistry } from "../test/e2e/harness/registries.ts";
import { generalRegexes, regexes, swapAndExact } from "./fixtures.ts";
import {
  BENCH_IMAGES,
  buildProduction,
  checksOf,
  fixedRate,
  type Load,
  machineLine,
  metricValue,
  percentile,
  podReview,
  rssMb,
  type Serve,
  startServe,
  writeServingCertificate,
} from "./harness.ts";

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const CLUSTER_MODE = process.env.BENCH_MODE === "cluster";
const CRDS = join(import.meta.dirname, "..", "charts", "imageshift", "crds", "crds.yaml");

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

/**
 * `BENCH_VERIFY=warm` (issue 13): the cost of presence checks with a warm cache. Two servers
 * with the same rule set (the swap+exact set, its targets moved to a local docker-registry and
 * one swap added for registry.k8s.io, so all three of the pod's images are rewritten there), one
 * object plain and one with `verify: { mode: Presence }`. The registry holds the three target
 * images; the first reviews fill the cache, then the same rows run against each server in turn.
 */
const VERIFY = process.env.BENCH_VERIFY;
if (VERIFY !== undefined && VERIFY !== "warm") throw new Error("BENCH_VERIFY must be warm (or unset)");
if (VERIFY && (CLUSTER_MODE || !(process.env.BENCH_RULES ?? "swap").startsWith("swap")))
  throw new Error("BENCH_VERIFY=warm runs standalone, with a swap+exact rule set (BENCH_RULES=swap*)");

type Row = {
  label: string;
  rps: number;
  p50: string;
  p99: string;
  max?: string;
  errors: number;
  peakRss: string;
};

/** Samples the server's RSS every 200 ms while `load` runs. */
async function withPeakRss<T>(
  server: Serve,
  load: () => Promise<T>,
): Promise<{ result: T; peakRss: string }> {
  let peakRss = rssMb(server.pid);
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, rssMb(server.pid));
  }, 200);
  try {
    return { result: await load(), peakRss: peakRss.toFixed(0) };
  } finally {
    clearInterval(sampler);
  }
}

/** A closed-loop autocannon row (latencies at 1 ms resolution). */
async function autocannonRow(server: Serve, label: string, body: string, connections: number): Promise<Row> {
  const { result, peakRss } = await withPeakRss(server, () =>
    autocannon({
      url: `https://127.0.0.1:${server.port}/mutate`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duration: DURATION_S,
      connections,
    }),
  );
  return {
    label,
    rps: Math.round(result["2xx"] / DURATION_S),
    p50: String(result.latency.p50),
    p99: String(result.latency.p99),
    max: String(result.latency.max),
    errors: result.errors + result.non2xx + result.timeouts,
    peakRss,
  };
}

/** An open-loop row at a fixed rate (µs resolution). */
async function fixedRateRow(server: Serve, label: string, body: string, rate: number): Promise<Row> {
  const { result, peakRss } = await withPeakRss(server, () => fixedRate(server.port, body, rate, DURATION_S));
  return { label, ...summary(result), peakRss };
}

function summary(load: Load) {
  const at = (p: number) => percentile(load.latencies, p).toFixed(2);
  return {
    rps: Math.round(load.latencies.length / load.seconds),
    p50: at(0.5),
    p99: at(0.99),
    max: (load.latencies.at(-1) ?? 0).toFixed(2),
    errors: load.errors,
  };
}

/** The webhook under load as it always ran: one server, warm-up, fixed rates, saturation. */
async function standardRun(dir: string, tls: { cert: string; key: string }, kubeconfig: string | undefined) {
  const server = await startServe({
    tls,
    args: kubeconfig ? ["--leader-election-namespace", "default"] : ["--rules", join(dir, "rules.json")],
    ...(kubeconfig ? { env: { KUBECONFIG: kubeconfig } } : {}),
  });
  try {
    // Settled: watches synced, leader elected, status written (cluster mode).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const idleRss = rssMb(server.pid);
    const body = podReview(BENCH_IMAGES);
    const rows = [
      await autocannonRow(server, "warm-up (autocannon, 8 connections)", body, 8),
      await fixedRateRow(server, "open loop, fixed 500/s", body, 500),
      await fixedRateRow(server, "open loop, fixed 2,000/s", body, 2000),
      await autocannonRow(server, "saturation (autocannon, 8 connections)", body, 8),
      await autocannonRow(server, "saturation (autocannon, 32 connections)", body, 32),
    ];
    console.log(machineLine("webhook benchmark"));
    console.log(
      `${CLUSTER_MODE ? "cluster mode (Imageshift objects of 1,000 rules in kube-apiserver)" : "standalone (rule file)"}, ${RULES?.label}, 3-container pod, ${DURATION_S} s per row, load generator on the same 2 cores; autocannon latencies have 1 ms resolution; idle RSS ${idleRss.toFixed(0)} MB`,
    );
    console.log("| load | reviews/s | p50 ms | p99 ms | errors | peak RSS MB |");
    console.log("|---|---|---|---|---|---|");
    for (const r of rows)
      console.log(`| ${r.label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.peakRss} |`);
  } finally {
    await server.stop();
  }
}

/** Where the bench pod's three images go once the rules point at `host` (see `retarget`). */
const MIRRORED = [
  ["hub/library/nginx", "1.25"],
  ["pinned/app3", "v1"],
  ["k8s/pause", "3.10"],
] as const;

/** The swap+exact rule object with its targets at `host`, plus a swap for registry.k8s.io. */
function retarget(value: unknown, host: string): { spec: Record<string, unknown> } {
  const object = JSON.parse(JSON.stringify(value).replaceAll('"mirror.corp/', `"${host}/`)) as {
    spec: { mappings: { swap: unknown[] } };
  };
  object.spec.mappings.swap.push({ registry: "registry.k8s.io", target: `${host}/k8s` });
  return object;
}

/** BENCH_VERIFY=warm: the same rows against a plain and a verifying server, in turn. */
async function verifyComparison(
  dir: string,
  tls: { cert: string; key: string },
  value: unknown,
  track: { registry?: Registry; servers: Serve[] },
) {
  const registry = await startRegistry("bench-mirror");
  track.registry = registry;
  for (const [repository, tag] of MIRRORED) await pushImage(registry, repository, tag);
  const plainRules = retarget(value, registry.host);
  const verifyRules = {
    ...plainRules,
    spec: { verify: { mode: "Presence", insecureRegistries: [registry.host] }, ...plainRules.spec },
  };
  writeFileSync(join(dir, "plain.json"), JSON.stringify(plainRules));
  writeFileSync(join(dir, "verify.json"), JSON.stringify(verifyRules));
  const plain = await startServe({ tls, args: ["--rules", join(dir, "plain.json")] });
  track.servers.push(plain);
  const verify = await startServe({ tls, args: ["--rules", join(dir, "verify.json")] });
  track.servers.push(verify);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idle = [rssMb(plain.pid), rssMb(verify.pid)];
  const body = podReview(BENCH_IMAGES);

  // The first reviews (nine at once: fixedRate opens eight connections with one each) fill the
  // cache: three checks, each present. The plain server rewrites the same three.
  const first = await fixedRate(verify.port, body, 1, 1);
  const checks = checksOf(first.lastBody);
  if (checks.length !== 3 || !checks.every((check) => /: present( \(cached\))? \[/.test(check)))
    throw new Error(`the verifying server did not find the three images present: ${JSON.stringify(checks)}`);
  const plainFirst = await fixedRate(plain.port, body, 1, 1);
  if (checksOf(plainFirst.lastBody).length !== 3)
    throw new Error("the plain server did not rewrite three images");
  const headsBefore = registry.requests().filter((r) => r.method === "HEAD").length;

  /** One row per server, in turn (the verifying one first when `verifyFirst`), labelled by server. */
  const both = async (make: (server: Serve) => Promise<Row>, verifyFirst = false) => {
    const order: [Serve, string][] = [
      [plain, "plain"],
      [verify, "verify"],
    ];
    if (verifyFirst) order.reverse();
    const rows: Row[] = [];
    for (const [server, name] of order) rows.push({ ...(await make(server)), label: name });
    return rows;
  };
  const sections: { load: string; rows: Row[] }[] = [];
  sections.push({
    load: "warm-up (autocannon, 8 connections)",
    rows: await both((server) => autocannonRow(server, "", body, 8)),
  });
  for (let round = 0; round < 3; round++)
    sections.push({
      load: `open loop, fixed 500/s, round ${round + 1}`,
      rows: await both((server) => fixedRateRow(server, "", body, 500), round % 2 === 1),
    });
  sections.push({
    load: "open loop, fixed 2,000/s",
    rows: await both((server) => fixedRateRow(server, "", body, 2000)),
  });
  sections.push({
    load: "saturation (autocannon, 8 connections)",
    rows: await both((server) => autocannonRow(server, "", body, 8)),
  });
  const last = await fixedRate(verify.port, body, 1, 1);
  const metrics = await verify.metrics();
  // The registry writes its access log line after it answers.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const headsAfter = registry.requests().filter((r) => r.method === "HEAD").length;

  console.log(machineLine("webhook benchmark, BENCH_VERIFY=warm"));
  console.log(
    `standalone (rule file), ${RULES?.label} + 1 swap (registry.k8s.io), targets at a local docker-registry (${registry.host}); plain: no verify; verify: the object has verify: { mode: Presence }. 3-container pod, all three images rewritten (and checked); ${DURATION_S} s per row, servers in turn, load generator on the same 2 cores; autocannon latencies have 1 ms resolution; idle RSS plain ${idle[0]?.toFixed(0)} MB, verify ${idle[1]?.toFixed(0)} MB`,
  );
  console.log("| load | server | reviews/s | p50 ms | p99 ms | max ms | errors | peak RSS MB |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const { load, rows } of sections)
    for (const r of rows)
      console.log(
        `| ${load} | ${r.label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.max ?? ""} | ${r.errors} | ${r.peakRss} |`,
      );
  for (const { load, rows } of sections.filter((s) => s.load.includes("500/s"))) {
    const p99 = (name: string) => Number(rows.find((r) => r.label === name)?.p99);
    console.log(`${load}: p99 verify - plain = ${(p99("verify") - p99("plain")).toFixed(2)} ms`);
  }
  const checksTotal = metricValue(metrics, "imageshift_registry_checks_total");
  const cached = metricValue(metrics, "imageshift_registry_checks_total", { outcome: "cached" });
  console.log(
    `verify server: ${checksTotal} checks, ${cached} from the cache; imageshift_registry_requests_total ${metricValue(metrics, "imageshift_registry_requests_total")}; cache hit ratio ${metricValue(metrics, "imageshift_registry_cache_hit_ratio")}; HEADs at the registry: ${headsBefore} for the first nine reviews, ${headsAfter - headsBefore} during the rows`,
  );
  console.log(`last review's checks: ${checksOf(last.lastBody).join("; ")}`);
}

const dir = mkdtempSync(join(tmpdir(), "imageshift-bench-"));
const track: { registry?: Registry; servers: Serve[] } = { servers: [] };
let controlPlane: Awaited<ReturnType<typeof startControlPlane>> | undefined;
try {
  const [document] = RULES.build();
  writeFileSync(join(dir, "rules.json"), JSON.stringify(document?.value));
  controlPlane = CLUSTER_MODE ? await startControlPlane() : undefined;
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
    await kubectl.ok(
      ["create", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
    );
  }
  // As deployed: the production build (build/), certificate files, the container's NODE_OPTIONS and malloc setting.
  buildProduction();
  const tls = await writeServingCertificate(dir);
  if (VERIFY) await verifyComparison(dir, tls, document?.value, track);
  else await standardRun(dir, tls, controlPlane?.kubeconfigPath);
} finally {
  // Cleaned up whatever happened: a server that already exited (out of heap, say) is not waited for.
  for (const server of track.servers) await server.stop();
  await track.registry?.stop();
  await controlPlane?.stop();
  rmSync(dir, { recursive: true, force: true });
}
