/**
 * What the webhook benchmarks share (webhook.bench.ts, verify.bench.ts): the production build,
 * a serving certificate, the real `imageshift serve` process started as the container runs it
 * (NODE_OPTIONS, malloc setting), its metrics, pod AdmissionReviews, and the load generators.
 * One copy, so that the rows of both benchmarks measure the server the same way.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { cpus } from "node:os";
import { join } from "node:path";
import { podCreateReview } from "../src/admission/testing.ts";
import { createCertificateAuthority, createServingCertificate } from "../src/certs/authority.ts";
import { loopbackFlags } from "../src/testing.ts";
import { freePorts } from "../test/e2e/harness/controlplane.ts";

/** The container's NODE_OPTIONS (the Dockerfile's and the chart's `nodeOptions`). */
export const DEPLOYED_NODE_OPTIONS = "--max-semi-space-size=2 --max-old-space-size=96";

/** The pod the webhook benchmarks send: three containers. */
export const BENCH_IMAGES = ["nginx:1.25", "org3/app:v3", "registry.k8s.io/pause:3.10"] as const;

/** `# <title>, <date>, node <version>, <cpu> x<count>`: the first line of every report. */
export function machineLine(title: string): string {
  return `# ${title}, ${new Date().toISOString()}, node ${process.version}, ${cpus()[0]?.model} x${cpus().length}`;
}

/** Builds the production `build/` (type-erased), which is what the container runs. */
export function buildProduction(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    stdio: "inherit",
  });
}

/** A throwaway CA's serving certificate for 127.0.0.1, written to `dir`; the files' paths. */
export async function writeServingCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const ca = await createCertificateAuthority({ commonName: "bench CA", validityDays: 1 });
  const leaf = await createServingCertificate(ca, {
    commonName: "localhost",
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  const cert = join(dir, "tls.crt");
  const key = join(dir, "tls.key");
  writeFileSync(cert, leaf.certPem);
  writeFileSync(key, leaf.keyPem);
  return { cert, key };
}

/** The resident memory of a process, or 0 once it is gone (a server that ran out of heap). */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

export interface Serve {
  readonly port: number;
  readonly metricsPort: number;
  readonly pid: number;
  readonly process: ChildProcess;
  /** The text of `/metrics`. */
  metrics(): Promise<string>;
  /** Stops it (SIGTERM) and waits; a server that already exited is not waited for. */
  stop(): Promise<void>;
}

// Servers still running when the benchmark exits are killed, not orphaned.
const servers = new Set<ChildProcess>();
process.once("exit", () => {
  for (const server of servers) server.kill("SIGKILL");
});

/**
 * Starts `build/main.js serve` on free loopback ports with the certificate and `args`, as
 * deployed (NODE_OPTIONS and the Dockerfile's malloc setting, unless `BENCH_NODE_OPTIONS` or
 * `BENCH_MALLOC_DEFAULTS` say otherwise), and waits until it is ready.
 */
export async function startServe(options: {
  tls: { cert: string; key: string };
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
}): Promise<Serve> {
  const [port, metricsPort] = (await freePorts(2)) as [number, number];
  const child = spawn(
    process.execPath,
    [
      "build/main.js",
      "serve",
      ...options.args,
      "--tls-cert-file",
      options.tls.cert,
      "--tls-key-file",
      options.tls.key,
      ...loopbackFlags(port, metricsPort),
    ],
    {
      stdio: ["ignore", "ignore", "inherit"],
      env: {
        ...process.env,
        NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS ?? DEPLOYED_NODE_OPTIONS,
        // The Dockerfile's malloc setting; BENCH_MALLOC_DEFAULTS=1 leaves glibc's defaults, to compare.
        ...(process.env.BENCH_MALLOC_DEFAULTS ? {} : { MALLOC_MMAP_THRESHOLD_: "32768" }),
        ...options.env,
      },
    },
  );
  servers.add(child);
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async () => {
    if (!exited()) {
      const exit = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exit;
    }
    servers.delete(child);
  };
  try {
    for (let i = 0; ; i++) {
      if (i > 300) throw new Error("the server did not become ready within 30 s");
      if (exited())
        throw new Error(`the server exited before it was ready (${child.exitCode ?? child.signalCode})`);
      const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    metricsPort,
    pid: child.pid as number,
    process: child,
    metrics: () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()),
    stop,
  };
}

/**
 * The sum of a metric's samples in Prometheus text whose labels include `labels`
 * (`name` exactly: `imageshift_registry_requests_total`, not its `_created` sibling).
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const set = match[2] ?? "";
    if (Object.entries(labels).every(([key, value]) => set.includes(`${key}="${value}"`)))
      sum += Number(match[3]);
  }
  return sum;
}

/** A pod-CREATE AdmissionReview for a pod running `images`, one container each. */
export function podReview(images: readonly string[], uid = "bench-0001"): string {
  const containers = Object.fromEntries(
    images.map((image, i) => [["app", "tool", "pause"][i] ?? `c${i}`, image]),
  );
  return JSON.stringify(podCreateReview(containers, { uid, namespace: "bench", labels: { app: "web" } }));
}

/** The value at quantile `p` of ascending `sorted` (0 when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

/** One review's answer: the status (0 on a connection error), the time from the send, the body. */
export interface Answer {
  status: number;
  ms: number;
  body: string;
}

/** A keep-alive HTTPS client for the webhook's `/mutate`; `close` when done. */
export function webhookClient(port: number, maxSockets = 32) {
  const agent = new Agent({ keepAlive: true, maxSockets, rejectUnauthorized: false });
  const send = (body: string) =>
    new Promise<Answer>((resolve) => {
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
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - sent, body: text }),
        );
      });
      req.on("error", () => resolve({ status: 0, ms: performance.now() - sent, body: "" }));
      req.end(body);
    });
  return { send, close: () => agent.destroy() };
}

/** What a load measured: answered latencies (ms, ascending) and the rest. */
export interface Load {
  /** Latencies of the 200 answers, ascending. */
  latencies: number[];
  errors: number;
  seconds: number;
  /** The last answer's body (to check what the server did). */
  lastBody: string;
}

/**
 * An open-loop load at a fixed rate: requests leave on an even schedule (not in bursts, as
 * autocannon's rate limit sends them) whether or not earlier ones were answered, so a stall
 * shows up in the percentiles instead of slowing the load down. Latency counts from the send.
 * `body(i)` may differ per request.
 */
export async function fixedRate(
  port: number,
  body: string | ((i: number) => string),
  rate: number,
  seconds: number,
): Promise<Load> {
  const client = webhookClient(port);
  const bodyOf = typeof body === "string" ? () => body : body;
  const latencies: number[] = [];
  let errors = 0;
  let lastBody = "";
  // Open the connections first: TLS handshakes are not what this measures.
  await Promise.all(Array.from({ length: 8 }, () => client.send(bodyOf(-1))));
  const start = performance.now();
  const total = Math.round(rate * seconds);
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    inFlight.push(
      client.send(bodyOf(i)).then(({ status, ms, body: text }) => {
        if (status === 200) {
          latencies.push(ms);
          lastBody = text;
        } else errors++;
      }),
    );
  }
  await Promise.all(inFlight);
  client.close();
  latencies.sort((a, b) => a - b);
  return { latencies, errors, seconds, lastBody };
}

/** `count` reviews one after another, `gapMs` apart (from one answer to the next send). */
export async function sequential(
  port: number,
  body: (i: number) => string,
  count: number,
  gapMs: number,
): Promise<Load> {
  const client = webhookClient(port, 1);
  await client.send(body(-1)); // the TLS handshake
  const latencies: number[] = [];
  let errors = 0;
  let lastBody = "";
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    const answer = await client.send(body(i));
    if (answer.status === 200) {
      latencies.push(answer.ms);
      lastBody = answer.body;
    } else errors++;
  }
  client.close();
  latencies.sort((a, b) => a - b);
  return { latencies, errors, seconds: (performance.now() - start) / 1000, lastBody };
}

/** The AdmissionResponse's patch, decoded (empty when none). */
export function patchOf(reviewBody: string): { op: string; path: string; value?: unknown }[] {
  const response = (JSON.parse(reviewBody) as { response?: { patch?: string } }).response;
  return response?.patch ? JSON.parse(Buffer.from(response.patch, "base64").toString()) : [];
}

/** The `check` text of each image in the patch's original-images record. */
export function checksOf(reviewBody: string): string[] {
  const record = patchOf(reviewBody).find((op) => op.path.startsWith("/metadata/annotations"));
  const value = record?.value;
  const text =
    typeof value === "string"
      ? value
      : ((value as Record<string, string> | undefined)?.["imageshift.dev/original-images"] ?? "{}");
  const entries = JSON.parse(text) as Record<string, { check?: string }>;
  return Object.values(entries).map((entry) => entry.check ?? "(no check)");
}
