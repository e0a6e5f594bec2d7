/**
 * Registry-check benchmark (`npm run bench:verify`, issue 13): what presence checks cost a pod,
 * against a real registry (Debian's docker-registry on loopback, holding the pod's three target
 * images) and behind a fault proxy that never answers. Issue 13's performance targets, other
 * than the warm-cache one (`BENCH_VERIFY=warm npm run bench:webhook`):
 *
 * 1. In process, through `planMutation` with a real `PresenceChecker`: a 3-image pod checked
 *    cold (a new checker per pod: no cache, no connection), with a cold cache but warm
 *    connections, and warm; next to the same plan without verification.
 * 2. Through the webhook (the production build, as deployed): a cold check of the 3-image pod
 *    per admission (`--verify-positive-ttl` and `--verify-stale` of 1 ms, sequential reviews),
 *    next to a server with the same rules without verification, in turn.
 * 3. Repeated images within the TTL: admissions against registry requests, counted at the
 *    registry (its access log) and by the server (`imageshift_registry_requests_total`).
 * 4. A registry that never answers (fault proxy, blackhole): the webhook's answer time with
 *    `--verify-deadline 0.5s` and a breaker that does not open, then once the breaker has opened.
 *
 * The rules are one small object (three rules, one per image of the pod): what a check costs
 * does not depend on the rule count (bench:webhook measures that). Everything it starts (the
 * registry, the proxy, servers, temp files) is stopped and removed whatever happens.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planMutation } from "../src/admission/plan.ts";
import { decodePod, type PodView } from "../src/admission/pod-view.ts";
import { decodeReview } from "../src/admission/review.ts";
import type { Verification } from "../src/admission/verify.ts";
import { compileDocuments } from "../src/engine/rules/load.ts";
import { PresenceChecker } from "../src/registry/presence.ts";
import {
  type FaultProxy,
  pushImage,
  type Registry,
  startFaultProxy,
  startRegistry,
} from "../test/e2e/harness/registries.ts";
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
  type Serve,
  sequential,
  startServe,
  webhookClient,
  writeServingCertificate,
} from "./harness.ts";

const PODS = Number(process.env.BENCH_VERIFY_PODS ?? 200);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

/** Where the rules send the pod's three images at `host`, pushed there before the runs. */
const MIRRORED = [
  ["hub/library/nginx", "1.25"],
  ["pinned/app3", "v1"],
  ["k8s/pause", "3.10"],
] as const;

/** One object, one rule per image of the pod, targets at `host`; verifying when `verify`. */
function rules(host: string, verify: boolean): Record<string, unknown> {
  return {
    apiVersion: "imageshift.dev/v1",
    kind: "Imageshift",
    metadata: { name: "mirror" },
    spec: {
      ...(verify ? { verify: { mode: "Presence", insecureRegistries: [host] } } : {}),
      mappings: {
        swap: [
          { registry: "docker.io", target: `${host}/hub` },
          { registry: "registry.k8s.io", target: `${host}/k8s` },
        ],
        exactSwap: [{ reference: "org3/app:v3", target: `${host}/pinned/app3:v1` }],
      },
    },
  };
}

const ms = (value: number, digits = 2) => value.toFixed(digits);

/** `p50 | p99 | max` of ascending samples, in ms. */
function spread(sorted: readonly number[], digits = 2): string {
  const at = (p: number) => ms(percentile(sorted, p), digits);
  return `${at(0.5)} | ${at(0.99)} | ${ms(sorted.at(-1) ?? 0, digits)}`;
}

const heads = (registry: Registry) => registry.requests().filter((r) => r.method === "HEAD").length;

/** The registry's HEAD count once its access log has caught up (it writes after it answers). */
async function settledHeads(registry: Registry): Promise<number> {
  let count = heads(registry);
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = heads(registry);
    if (now === count && i >= 4) break;
    count = now;
  }
  return count;
}

function assertChecks(body: string, pattern: RegExp, what: string): void {
  const checks = checksOf(body);
  if (checks.length !== 3 || !checks.every((check) => pattern.test(check)))
    throw new Error(`${what}: expected three checks matching ${pattern}, got ${JSON.stringify(checks)}`);
}

/** Part 1: `planMutation` in process, with a real checker against the real registry. */
async function inProcess(host: string): Promise<string[]> {
  const compile = (verify: boolean) => {
    const compiled = compileDocuments([
      { location: { source: "bench", document: 0 }, value: rules(host, verify) },
    ]);
    if (compiled.issues.some((issue) => issue.severity === "error"))
      throw new Error("the bench rules do not compile");
    return compiled.ruleSet;
  };
  const plain = compile(false);
  const verifying = compile(true);
  const decoded = decodeReview(JSON.parse(podReview(BENCH_IMAGES)));
  if (!decoded.ok) throw new Error(decoded.error);
  const view = decodePod(decoded.request) as PodView;
  const context = { namespace: view.namespace };
  const deadlineMs = 2_000;

  /** Times `count` plans, sorted; `setup` gives each plan's verification, `after` tidies it away. */
  const time = async (
    count: number,
    setup: () => Verification | undefined,
    after: (verification: Verification | undefined) => Promise<void>,
    expect: RegExp | undefined,
  ) => {
    const samples: number[] = [];
    for (let i = 0; i < count; i++) {
      const verification = setup();
      const started = performance.now();
      const plan = await planMutation(view, verification ? verifying : plain, context, false, verification);
      samples.push(performance.now() - started);
      await after(verification);
      if (plan.outcome !== "patched") throw new Error(`plan ${i}: ${plan.outcome}`);
      if (expect) {
        const checks = plan.events.flatMap((event) => (event.type === "check" ? [event.check] : []));
        const text = checks.map((check) => `${check.detail}${check.cached ? " (cached)" : ""}`);
        if (checks.length !== 3 || !text.every((t) => expect.test(t)))
          throw new Error(`plan ${i}: expected three checks matching ${expect}, got ${JSON.stringify(text)}`);
      }
    }
    return samples.sort((a, b) => a - b);
  };
  const none = async () => {};
  /** The mean per plan over a batch of 5,000, best of three: the steady CPU cost. */
  const batchMeanUs = async (verification: Verification | undefined) => {
    let best = Number.POSITIVE_INFINITY;
    for (let batch = 0; batch < 3; batch++) {
      const started = performance.now();
      for (let i = 0; i < 5_000; i++)
        await planMutation(view, verification ? verifying : plain, context, false, verification);
      best = Math.min(best, ((performance.now() - started) * 1000) / 5_000);
    }
    return best.toFixed(1);
  };
  const rows: string[] = [];
  // Warm the code paths first (JIT), not counted.
  await time(500, () => undefined, none, undefined);
  const plainSamples = await time(PODS * 10, () => undefined, none, undefined);
  rows.push(
    `| no verification | ${PODS * 10} | ${spread(plainSamples, 3)} | ${await batchMeanUs(undefined)} |`,
  );

  const warm = new PresenceChecker({ timeoutMs: 5_000 });
  try {
    const verification = { checker: warm, deadlineMs };
    await time(500, () => verification, none, undefined);
    const samples = await time(PODS * 10, () => verification, none, /^present \(cached\)$/);
    rows.push(
      `| warm cache (one checker, answers cached) | ${PODS * 10} | ${spread(samples, 3)} | ${await batchMeanUs(verification)} |`,
    );
  } finally {
    await warm.stop();
  }

  // A new checker (new client, new connections) per pod: nothing cached at all.
  const fresh = () => ({ checker: new PresenceChecker({ timeoutMs: 5_000 }), deadlineMs });
  const stop = async (verification: Verification | undefined) =>
    (verification?.checker as PresenceChecker | undefined)?.stop();
  await time(20, fresh, stop, /^present$/);
  rows.push(
    `| cold: a new checker per pod (no cache, new connections) | ${PODS} | ${spread(await time(PODS, fresh, stop, /^present$/), 3)} | - |`,
  );

  // One checker whose answers expire at once: every check asks, over kept-alive connections.
  const expiring = new PresenceChecker({ timeoutMs: 5_000, positiveTtlMs: 0, staleMs: 0 });
  try {
    await time(20, () => ({ checker: expiring, deadlineMs }), none, /^present$/);
    rows.push(
      `| cold cache, warm connections (TTL 0) | ${PODS} | ${spread(await time(PODS, () => ({ checker: expiring, deadlineMs }), none, /^present$/), 3)} | - |`,
    );
  } finally {
    await expiring.stop();
  }
  return rows;
}

/** Polls `read` (at most `ms`) until it is true. */
async function until(read: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await read())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const dir = mkdtempSync(join(tmpdir(), "imageshift-bench-verify-"));
const servers: Serve[] = [];
let registry: Registry | undefined;
let proxy: FaultProxy | undefined;
try {
  buildProduction();
  const tls = await writeServingCertificate(dir);
  registry = await startRegistry("bench-verify");
  for (const [repository, tag] of MIRRORED) await pushImage(registry, repository, tag);
  proxy = await startFaultProxy(registry);
  const mirror = registry;
  const hole = proxy;
  const rulesFile = (name: string, host: string, verify: boolean) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(rules(host, verify)));
    return file;
  };
  const serve = async (name: string, host: string, verify: boolean, flags: string[] = []) => {
    const server = await startServe({ tls, args: ["--rules", rulesFile(name, host, verify), ...flags] });
    servers.push(server);
    return server;
  };
  const body = podReview(BENCH_IMAGES);
  const out: string[] = [];

  // 1. In process.
  out.push(
    `### planMutation in process (a real PresenceChecker against ${mirror.host}; deadline 2 s)`,
    "",
    "| plan of the 3-image pod | pods | p50 ms | p99 ms | max ms | mean µs (best batch of 5,000) |",
    "|---|---|---|---|---|---|",
    ...(await inProcess(mirror.host)),
    "",
  );

  // 2. Cold checks through the webhook.
  const plain = await serve("plain", mirror.host, false);
  const cold = await serve("cold", mirror.host, true, [
    "--verify-positive-ttl",
    "0.001s",
    "--verify-stale",
    "0.001s",
  ]);
  const coldRows: string[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const base = await sequential(plain.port, () => body, PODS, 5);
    const before = await settledHeads(mirror);
    const checked = await sequential(cold.port, () => body, PODS, 5);
    const sent = (await settledHeads(mirror)) - before;
    assertChecks(checked.lastBody, /: present \[/, "cold webhook");
    const [p50, p50base] = [percentile(checked.latencies, 0.5), percentile(base.latencies, 0.5)];
    coldRows.push(
      `| ${round} | no verification | ${base.latencies.length} | ${spread(base.latencies)} | ${base.errors} | - |`,
      `| ${round} | cold check, 3 images | ${checked.latencies.length} | ${spread(checked.latencies)} | ${checked.errors} | ${sent} for ${PODS + 1} admissions (p50 ${ms(p50 - p50base)} ms over no verification) |`,
    );
  }
  out.push(
    `### Cold checks through the webhook (${PODS} sequential reviews 5 ms apart; verify server with --verify-positive-ttl 0.001s --verify-stale 0.001s; servers in turn)`,
    "",
    "| round | server | reviews timed | p50 ms | p99 ms | max ms | errors | HEADs at the registry (one more review opens the connection) |",
    "|---|---|---|---|---|---|---|---|",
    ...coldRows,
    "",
  );
  await plain.stop();
  await cold.stop();

  // 3. Repeated images within the TTL, counted at the registry.
  const repeat = await serve("repeat", mirror.host, true);
  const start = await settledHeads(mirror);
  const burst = webhookClient(repeat.port, 32);
  const rollout = await Promise.all(Array.from({ length: 50 }, () => burst.send(body)));
  burst.close();
  if (rollout.some((answer) => answer.status !== 200)) throw new Error("the rollout burst had errors");
  const afterBurst = await settledHeads(mirror);
  const steady = await fixedRate(repeat.port, body, 500, DURATION_S);
  assertChecks(steady.lastBody, /: present \(cached\) \[/, "repeated images");
  const afterSteady = await settledHeads(mirror);
  const metrics = await repeat.metrics();
  // fixedRate opens 8 connections with one review each before its timed load.
  const steadyAdmissions = steady.latencies.length + 8;
  out.push(
    "### Repeated images within the TTL (default TTLs; requests counted at the registry's access log)",
    "",
    "| phase | admissions | checks | HEADs at the registry | imageshift_registry_requests_total |",
    "|---|---|---|---|---|",
    `| a rollout: 50 reviews at once, cold | 50 | 150 | ${afterBurst - start} | - |`,
    `| then 500/s for ${DURATION_S} s (open loop) | ${steadyAdmissions} | ${steadyAdmissions * 3} | ${afterSteady - afterBurst} | - |`,
    `| total | ${50 + steadyAdmissions} | ${metricValue(metrics, "imageshift_registry_checks_total")} (${metricValue(metrics, "imageshift_registry_checks_total", { outcome: "cached" })} cached, ${metricValue(metrics, "imageshift_registry_checks_total", { outcome: "present" })} answered by a request, shared in flight) | ${afterSteady - start} | ${metricValue(metrics, "imageshift_registry_requests_total")} |`,
    "",
    `500/s row: ${spread(steady.latencies)} (p50 | p99 | max ms), ${steady.errors} errors`,
    "",
  );
  await repeat.stop();

  // 4. A registry that never answers.
  await hole.blackhole();
  const deadlineRows: string[] = [];
  const holeRate = 20;
  const waiting = await serve("blackhole", hole.host, true, [
    "--verify-deadline",
    "0.5s",
    "--breaker-failures",
    "1000",
  ]);
  const proxied0 = hole.requests;
  const waited = await fixedRate(waiting.port, body, holeRate, DURATION_S);
  assertChecks(waited.lastBody, /unknown: no answer within the 500 ms admission deadline/, "blackhole");
  deadlineRows.push(
    `| deadline 0.5 s, breaker does not open (--breaker-failures 1000) | ${holeRate}/s for ${DURATION_S} s | ${waited.latencies.length} | ${spread(waited.latencies)} | ${waited.errors} | ${hole.requests - proxied0} |`,
  );
  await waiting.stop();

  const breaking = await serve("breaker", hole.host, true, [
    "--verify-deadline",
    "0.5s",
    "--registry-timeout",
    "1s",
    "--breaker-cool-down",
    "5m",
  ]);
  const proxied1 = hole.requests;
  const opening: number[] = [];
  const client = webhookClient(breaking.port, 1);
  await until(
    async () => {
      const answer = await client.send(body);
      if (answer.status === 200) opening.push(answer.ms);
      const text = await breaking.metrics();
      return metricValue(text, "imageshift_registry_breaker_open") > 0;
    },
    30_000,
    "the breaker opening",
  );
  client.close();
  const proxied2 = hole.requests;
  const open: Load = await fixedRate(breaking.port, body, 100, DURATION_S);
  assertChecks(open.lastBody, /unknown: .*circuit/i, "breaker open");
  deadlineRows.push(
    `| until the breaker opens (--breaker-failures 5, --registry-timeout 1s), sequential | - | ${opening.length} | ${spread(opening.sort((a, b) => a - b))} | 0 | ${proxied2 - proxied1} |`,
    `| breaker open (--breaker-cool-down 5m) | 100/s for ${DURATION_S} s | ${open.latencies.length} | ${spread(open.latencies)} | ${open.errors} | ${hole.requests - proxied2} |`,
  );
  await breaking.stop();
  out.push(
    "### A registry that never answers (fault proxy in blackhole mode; --verify-deadline 0.5s; whenUnknown: Rewrite)",
    "",
    "| run | load | reviews | p50 ms | p99 ms | max ms | errors | requests reaching the proxy |",
    "|---|---|---|---|---|---|---|---|",
    ...deadlineRows,
    "",
    `last review's checks with the breaker open: ${checksOf(open.lastBody)[0]}`,
  );

  console.log(machineLine("registry-check benchmark"));
  console.log(
    `standalone servers (the production build, as deployed), one rule object of 3 rules, a 3-container pod whose images all go to a local docker-registry (${mirror.host}); load generator and registry on the same 2 cores`,
  );
  console.log("");
  console.log(out.join("\n"));
} finally {
  for (const server of servers) await server.stop();
  await proxy?.stop();
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
}
