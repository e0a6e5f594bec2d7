/**
 * Webhook load benchmark (`npm run bench:webhook`): the real `imageshift serve` process with
 * 10,000 rules, a 3-container pod AdmissionReview, autocannon over HTTPS with keep-alive.
 * Reports throughput and latency at fixed rates and at saturation, and the server's RSS.
 * The load generator shares the machine's two cores with the server; say so with the figures.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { swapAndExact } from "./fixtures.ts";

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
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

const dir = mkdtempSync(join(tmpdir(), "imageshift-bench-"));
const [document] = swapAndExact(10_000);
writeFileSync(join(dir, "rules.json"), JSON.stringify(document?.value));
const [port, metricsPort] = [await freePort(), await freePort()];
const server = spawn(
  process.execPath,
  [
    "bin/imageshift.js",
    "serve",
    "--rules",
    dir,
    "--bind-address",
    "127.0.0.1",
    "--metrics-bind-address",
    "127.0.0.1",
    "--port",
    String(port),
    "--metrics-port",
    String(metricsPort),
    "--self-signed-dir",
    join(dir, "tls"),
  ],
  { stdio: ["ignore", "ignore", "inherit"] },
);
const pid = server.pid as number;

try {
  for (let i = 0; ; i++) {
    if (i > 300) throw new Error("the server did not become ready within 30 s");
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
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
  const rows = [
    await run("warm-up, saturation", { connections: 8 }),
    await run("fixed 500/s", { connections: 4, overallRate: 500 }),
    await run("fixed 2,000/s", { connections: 8, overallRate: 2000 }),
    await run("saturation, 8 connections", { connections: 8 }),
    await run("saturation, 32 connections", { connections: 32 }),
  ];
  console.log(
    `# webhook benchmark, ${new Date().toISOString()}, node ${process.version}, ${cpus()[0]?.model} x${cpus().length}`,
  );
  console.log(
    `10,000 rules, 3-container pod, ${DURATION_S} s per row, autocannon on the same 2 cores; idle RSS ${idleRss.toFixed(0)} MB`,
  );
  console.log("| load | reviews/s | p50 ms | p99 ms | errors | peak RSS MB |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows)
    console.log(`| ${r.label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.peakRss} |`);
} finally {
  server.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
