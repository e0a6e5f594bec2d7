/**
 * `imageshift serve --rules` as a child process for the e2e suites of registry checks
 * (mirrors.e2e.test.ts): started over real TLS with given flags, AdmissionReviews POSTed to
 * `/mutate` or `/mutate/strict` and their JSON Patch applied as the API server would, metrics
 * and logs read back; plus small readers of what registries saw.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import jsonpatch, { type Operation } from "fast-json-patch";
import { podCreateReview } from "../../../src/admission/testing.ts";
import { loopbackFlags } from "../../../src/testing.ts";
import { httpGet, readResponse, type TextResponse, type WebhookCertificates, waitUntil } from "./operator.ts";
import type { Registry } from "./registries.ts";

export const BIN = fileURLToPath(new URL("../../../bin/imageshift.js", import.meta.url));
export const ORIGINAL_IMAGES = "imageshift.dev/original-images";
export const alice = { username: "alice", password: "alice-secret" };
export const bob = { username: "bob", password: "bob-secret" };
export const TOKEN_LIFE_SECONDS = 2;
/** A registry that is down: refused, or (a pooled connection it closed) reset. */
export const REFUSED = "(ECONNREFUSED|ECONNRESET|socket hang up)";
export const SLOW_MS = 3000;

// ---------------------------------------------------------------------------------------------
// imageshift serve, standalone, as a child process

export interface RecordEntry {
  original: string;
  image: string;
  rule: string;
  check?: string;
}

/** What one admission answered, with the pod as the API server would store it. */
export interface Admission {
  allowed: boolean;
  /** Container name -> image, after the patch. */
  images: Record<string, string>;
  /** The `imageshift.dev/original-images` record after the patch. */
  record: Record<string, RecordEntry>;
  warnings: string[];
  /** A refusal's status. */
  status?: { code: number; message: string };
  /** From sending the review to the whole answer, TLS handshake included. */
  ms: number;
}

export interface Served {
  name: string;
  /** POSTs a review for a pod with these containers (name -> image) to /mutate or /mutate/strict. */
  admit(
    containers: Record<string, string>,
    options?: { strict?: boolean; namespace?: string },
  ): Promise<Admission>;
  /** The sum of the series of `name` whose labels include `labels`; 0 when there is none. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Parsed JSON log lines so far. */
  logs(): { msg?: string; [key: string]: unknown }[];
  stop(): Promise<void>;
}

export const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

let reviews = 0;

export async function startServe(name: string, certs: WebhookCertificates, args: string[]): Promise<Served> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "serve",
      ...loopbackFlags(),
      "--tls-cert-file",
      certs.certFile,
      "--tls-key-file",
      certs.keyFile,
      "--shutdown-timeout",
      "2",
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_OPTIONS: "" } },
  );
  children.add(child);
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("close", (code, signal) => {
      exited = signal ? `killed by ${signal}` : `exited with ${code}`;
      children.delete(child);
      resolve();
    });
  });
  const logs = () =>
    output.split("\n").flatMap((line) => {
      try {
        return line.startsWith("{") ? [JSON.parse(line) as { msg?: string; [key: string]: unknown }] : [];
      } catch {
        return [];
      }
    });
  const stop = async () => {
    if (exited) return;
    child.kill("SIGTERM");
    await Promise.race([exit, sleep(10_000, undefined, { ref: false })]);
    if (!exited) {
      child.kill("SIGKILL");
      await exit;
    }
  };
  let webhook: URL;
  let metricsUrl: URL;
  try {
    const serving = await waitUntil(
      `${name} to log "serving"`,
      () => {
        if (exited) throw new Error(`${name} ${exited}: ${output}`);
        return logs().find((line) => line.msg === "serving");
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    webhook = new URL(String(serving.webhook));
    metricsUrl = new URL(String(serving.metrics));
    await waitUntil(
      `${name} /readyz`,
      async () => (await httpGet(new URL("/readyz", metricsUrl).href)).status === 200,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  } catch (error) {
    await stop();
    throw error;
  }

  const scrape = async () => {
    const { status, body } = await httpGet(new URL("/metrics", metricsUrl).href);
    assert.equal(status, 200);
    return body;
  };

  return {
    name,
    logs,
    stop,
    async metric(metric, labels = {}) {
      return sample(await scrape(), metric, labels);
    },
    async admit(containers, options = {}) {
      const namespace = options.namespace ?? (options.strict ? "team-strict" : "team-a");
      const uid = `00000000-0000-4000-8000-${String(++reviews).padStart(12, "0")}`;
      const review = podCreateReview(containers, { uid, namespace, name: `pod-${reviews}`, annotations: {} });
      const pod = review.request.object;
      const started = performance.now();
      const { status, body } = await postJson(
        new URL(options.strict ? "/mutate/strict" : "/mutate", webhook),
        certs.caPem,
        review,
      );
      const ms = performance.now() - started;
      assert.equal(status, 200, body);
      const response = (JSON.parse(body) as { response: AdmissionResponse }).response;
      assert.equal(response.uid, review.request.uid);
      let stored = pod as typeof pod & { metadata: { annotations: Record<string, string> } };
      if (response.patch !== undefined) {
        assert.equal(response.patchType, "JSONPatch");
        const patch = JSON.parse(Buffer.from(response.patch, "base64").toString("utf8")) as Operation[];
        // validateOperation: a patch that does not apply cleanly fails the test.
        stored = jsonpatch.applyPatch(structuredClone(stored), patch, true, false).newDocument;
      }
      const record = stored.metadata.annotations[ORIGINAL_IMAGES];
      return {
        allowed: response.allowed,
        images: Object.fromEntries(stored.spec.containers.map((c) => [c.name, c.image])),
        record: record === undefined ? {} : (JSON.parse(record) as Record<string, RecordEntry>),
        warnings: response.warnings ?? [],
        ...(response.status ? { status: response.status } : {}),
        ms,
      };
    },
  };
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: string;
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string };
}

/** One HTTPS POST (10 s bound), trusting `ca`; no connection reuse. */
export function postJson(url: URL, ca: string, value: unknown): Promise<TextResponse> {
  const payload = JSON.stringify(value);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: "POST",
        ca,
        agent: false,
        timeout: 10_000,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => readResponse(res, resolve, reject),
    );
    req.on("timeout", () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** The sum of the samples of `name` whose labels include every one of `labels`. */
export function sample(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = match[2] ?? "";
    if (Object.entries(labels).every(([key, value]) => have.includes(`${key}="${value}"`)))
      sum += Number(match[3]);
  }
  return sum;
}

/** Polls `read` (bounded, 3 s) until it returns `expected`; a registry logs after it answers. */
export async function eventually<T>(read: () => T, expected: T): Promise<T> {
  const deadline = Date.now() + 3000;
  let value = read();
  while (value !== expected && Date.now() < deadline) {
    await sleep(20);
    value = read();
  }
  return value;
}

/** HEAD requests a registry answered for one repository's manifests. */
export const headsFor = (registry: Registry, repository: string) =>
  registry.requests().filter((r) => r.method === "HEAD" && r.path.startsWith(`/v2/${repository}/manifests/`))
    .length;
