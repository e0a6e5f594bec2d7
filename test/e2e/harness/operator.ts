/**
 * Helpers for the operator e2e tests: `imageshift serve` in cluster mode as a child process
 * (bounded readiness wait on `/readyz`), a kubectl wrapper bound to one kubeconfig, a bounded
 * wait-until, webhook certificates for 127.0.0.1, and a tiny sidecar-injecting webhook (to
 * make the API server re-invoke ImageShift).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { helmPath } from "../../../scripts/helm.ts";
import { createCertificateAuthority, createServingCertificate } from "../../../src/certs/authority.ts";
import { captureLogger, type LogLine } from "../../../src/telemetry/testing.ts";
import { loopbackFlags } from "../../../src/testing.ts";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const imageshiftBin = path.join(repoRoot, "bin", "imageshift.js");
const loopback = "127.0.0.1";

// Children still running when the test process exits without stop() are killed, not orphaned.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

// ---------------------------------------------------------------------------------------------
// Waiting

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
}

/** Thrown by a probe to end a wait at once (say, the process it waits on has exited). */
export class WaitAborted extends Error {}

/**
 * Calls `probe` until it returns something other than `undefined`/`false`, and returns that.
 * Errors thrown by `probe` count as "not yet", except `WaitAborted`. On timeout, throws an error naming `description`
 * and the last value or error seen.
 */
export async function waitUntil<T>(
  description: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions,
): Promise<T> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let last = "nothing yet";
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = `probe returned ${String(value)}`;
    } catch (error) {
      if (error instanceof WaitAborted) throw error;
      last = `probe threw: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${Date.now() - started} ms waiting for ${description}; ${last}`);
    }
    await sleep(options.intervalMs ?? 200);
  }
}

// ---------------------------------------------------------------------------------------------
// kubectl

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Kubectl {
  /** Runs kubectl; never rejects on a non-zero exit (only on a timeout or spawn failure). */
  run(args: string[], options?: { stdin?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Runs kubectl and returns stdout; rejects with stderr on a non-zero exit. */
  ok(args: string[], stdin?: string): Promise<string>;
  /** `ok` with `-o json`, parsed. */
  json<T = Record<string, unknown>>(args: string[], stdin?: string): Promise<T>;
}

export function kubectlFor(kubeconfigPath: string, bin = process.env.KUBECTL ?? "kubectl"): Kubectl {
  const run: Kubectl["run"] = (args, options = {}) =>
    new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? 30_000;
      const full = ["--kubeconfig", kubeconfigPath, "--request-timeout=20s", ...args];
      const child = spawn(bin, full, { stdio: ["pipe", "pipe", "pipe"] });
      children.add(child);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(
          new Error(`kubectl ${args.join(" ")} did not finish within ${timeoutMs} ms; stderr: ${stderr}`),
        );
      }, timeoutMs);
      child.on("error", (error) => {
        clearTimeout(timer);
        children.delete(child);
        reject(error);
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code: code ?? -1, stdout, stderr });
      });
      child.stdin.on("error", () => {}); // kubectl may exit before reading stdin
      child.stdin.end(options.stdin ?? "");
    });
  const ok: Kubectl["ok"] = async (args, stdin) => {
    const result = await run(args, stdin === undefined ? {} : { stdin });
    if (result.code !== 0) {
      throw new Error(`kubectl ${args.join(" ")} exited with ${result.code}: ${result.stderr.trim()}`);
    }
    return result.stdout;
  };
  return {
    run,
    ok,
    json: async <T>(args: string[], stdin?: string) =>
      JSON.parse(await ok([...args, "-o", "json"], stdin)) as T,
  };
}

// ---------------------------------------------------------------------------------------------
// Certificates

export interface WebhookCertificates {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  caPem: string;
  /** Base64 of the CA PEM, for a webhook configuration's `caBundle`. */
  caBundle: string;
}

/** A CA and a serving certificate for 127.0.0.1 and localhost, written to `dir`. */
export async function makeWebhookCertificates(dir: string): Promise<WebhookCertificates> {
  const ca = await createCertificateAuthority({ commonName: "imageshift-e2e-webhook-ca", validityDays: 2 });
  const serving = await createServingCertificate(ca, {
    commonName: "imageshift-e2e-webhook",
    dnsNames: ["localhost"],
    ipAddresses: [loopback],
    validityDays: 2,
  });
  const certFile = path.join(dir, "webhook.crt");
  const keyFile = path.join(dir, "webhook.key");
  await writeFile(certFile, serving.certPem);
  await writeFile(keyFile, serving.keyPem, { mode: 0o600 });
  return {
    certFile,
    keyFile,
    certPem: serving.certPem,
    keyPem: serving.keyPem,
    caPem: ca.certPem,
    caBundle: Buffer.from(ca.certPem).toString("base64"),
  };
}

// ---------------------------------------------------------------------------------------------
// imageshift serve (cluster mode)

export type { LogLine };
export { captureLogger };

export interface OperatorOptions {
  /** Label for messages and the log file name. */
  name: string;
  kubeconfigPath: string;
  /** Serving certificate files; omitted for self-managed certificates (pass `--tls-secret` in extraArgs). */
  certFile?: string;
  keyFile?: string;
  leaseNamespace: string;
  /** Folder for `<name>.log` (stdout and stderr). */
  logDir: string;
  /** Webhook port; 0 (default) lets the OS choose. */
  port?: number;
  /** Probes/metrics port; 0 (default) lets the OS choose. */
  metricsPort?: number;
  extraArgs?: string[];
  /** Bound on the process serving and `/readyz` answering 200; default 30 s. */
  readyTimeoutMs?: number;
}

export interface OperatorProcess {
  readonly name: string;
  readonly pid: number;
  readonly webhookPort: number;
  readonly metricsPort: number;
  readonly logPath: string;
  /** Undefined while running, else how it ended. */
  readonly exitDescription: string | undefined;
  /** Raw stdout + stderr so far. */
  logText(): string;
  /** Parsed JSON log lines so far (other lines are skipped). */
  logs(): LogLine[];
  /**
   * The sum of the series of metric `name` whose labels include `labels` (all series when
   * omitted), from `/metrics`; undefined when there is none.
   */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  /** Throws (with the last log lines) when the process is no longer running. */
  assertRunning(): void;
  /** Sends `signal` (default SIGTERM), SIGKILL after `timeoutMs` (default 15 s); resolves on exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<string>;
}

/** Starts `imageshift serve` without `--rules` and waits (bounded) for `/readyz` to answer 200. */
export async function startOperator(options: OperatorOptions): Promise<OperatorProcess> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const logPath = path.join(options.logDir, `${options.name}.log`);
  const logFile: WriteStream = createWriteStream(logPath, { flags: "a" });
  const args = [
    imageshiftBin,
    "serve",
    ...loopbackFlags(options.port, options.metricsPort),
    ...(options.certFile && options.keyFile
      ? ["--tls-cert-file", options.certFile, "--tls-key-file", options.keyFile]
      : []),
    "--leader-election-namespace",
    options.leaseNamespace,
    "--shutdown-timeout",
    "5",
    ...(options.extraArgs ?? []),
  ];
  // process.execPath: the Node 24 running the tests (node_modules/.bin/node).
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { ...process.env, KUBECONFIG: options.kubeconfigPath },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let text = "";
  const onData = (chunk: Buffer) => {
    text += chunk.toString();
    logFile.write(chunk);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exitDescription: string | undefined;
  const exited = new Promise<string>((resolve) => {
    const done = (description: string) => {
      if (exitDescription !== undefined) return;
      exitDescription = description;
      children.delete(child);
      logFile.end();
      resolve(description);
    };
    child.once("error", (error) => done(`failed to start: ${error.message}`));
    // "close", not "exit": by then its output has been read to the end.
    child.once("close", (code, signal) => done(signal ? `killed by ${signal}` : `exited with code ${code}`));
  });

  const logs = (): LogLine[] =>
    text.split("\n").flatMap((line) => {
      if (!line.startsWith("{")) return [];
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return [];
      }
    });
  const tail = () => text.trimEnd().split("\n").slice(-25).join("\n");

  const stop = async (signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<string> => {
    if (exitDescription !== undefined) return exitDescription;
    child.kill(signal);
    const timer = new AbortController();
    const inTime = await Promise.race([
      exited.then(() => true),
      sleep(timeoutMs, false, { signal: timer.signal }).catch(() => true),
    ]);
    timer.abort();
    if (!inTime) {
      child.kill("SIGKILL");
      await exited;
      return `did not exit within ${timeoutMs} ms of ${signal}; ${exitDescription}`;
    }
    return exitDescription ?? "exited";
  };

  try {
    // The "serving" line carries the ports actually bound (the OS picks them for port 0).
    const serving = await waitUntil(
      `${options.name} to log "serving"`,
      () => {
        if (exitDescription !== undefined) throw new WaitAborted(`${options.name} ${exitDescription}`);
        return logs().find((line) => line.msg === "serving");
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 100 },
    ).catch(rethrowWith(tail));
    const webhookPort = Number(new URL(String(serving.webhook)).port);
    const metricsPort = Number(new URL(String(serving.metrics)).port);
    await waitUntil(
      `${options.name} /readyz on port ${metricsPort} to answer 200`,
      async () => {
        if (exitDescription !== undefined) throw new WaitAborted(`${options.name} ${exitDescription}`);
        return (await httpGet(`http://${loopback}:${metricsPort}/readyz`)).status === 200;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 200 },
    ).catch(rethrowWith(tail));
    return {
      name: options.name,
      pid: child.pid ?? -1,
      webhookPort,
      metricsPort,
      logPath,
      get exitDescription() {
        return exitDescription;
      },
      logText: () => text,
      assertRunning() {
        if (exitDescription !== undefined) {
          throw new Error(
            `${options.name} (pid ${child.pid}) is not running: ${exitDescription}\nlast log lines:\n${tail()}`,
          );
        }
      },
      logs,
      async metric(name: string, labels: Record<string, string> = {}) {
        const { status, body } = await httpGet(`http://${loopback}:${metricsPort}/metrics`);
        if (status !== 200) throw new Error(`/metrics answered ${status}`);
        const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
        let sum: number | undefined;
        for (const line of body.split("\n")) {
          const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
          if (!match || match[1] !== name) continue;
          const labelText = match[2] ?? "";
          if (!wanted.every((pair) => labelText.includes(pair))) continue;
          sum = (sum ?? 0) + Number(match[3]);
        }
        return sum;
      },
      stop,
    };
  } catch (error) {
    await stop("SIGKILL");
    throw error;
  }
}

function rethrowWith(tail: () => string) {
  return (error: unknown): never => {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${message}\nlast log lines:\n${tail()}`);
  };
}

export interface TextResponse {
  status: number;
  body: string;
}

/** Reads a response whole: `resolve` gets its status and text, `reject` its error. */
export function readResponse(
  res: http.IncomingMessage,
  resolve: (response: TextResponse) => void,
  reject: (error: Error) => void,
): void {
  let body = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    body += chunk;
  });
  res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
  res.on("error", reject);
}

/** GET with a 2 s bound; a connection error rejects. */
export function httpGet(url: string): Promise<TextResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 2000, agent: false }, (res) => readResponse(res, resolve, reject));
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
  });
}

// ---------------------------------------------------------------------------------------------
// A sidecar injector webhook (a second mutating webhook, so the API server re-invokes ImageShift)

export interface SidecarInjector {
  /** https://127.0.0.1:PORT/inject */
  url: string;
  /** Admission requests answered so far. */
  calls(): number;
  stop(): Promise<void>;
}

/**
 * Adds container `name` with `image` to every pod that lacks it (JSON Patch), and allows
 * everything else unchanged.
 */
export async function startSidecarInjector(
  tls: { certPem: string; keyPem: string },
  sidecar: { name: string; image: string },
): Promise<SidecarInjector> {
  let calls = 0;
  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => {
      calls++;
      const review = JSON.parse(body) as {
        request: { uid: string; object?: { spec?: { containers?: { name: string }[] } } };
      };
      const containers = review.request.object?.spec?.containers ?? [];
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true };
      if (!containers.some((container) => container.name === sidecar.name)) {
        response.patchType = "JSONPatch";
        response.patch = Buffer.from(
          JSON.stringify([{ op: "add", path: "/spec/containers/-", value: sidecar }]),
        ).toString("base64");
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, loopback, () => resolve());
  });
  const address = server.address();
  const port = address && typeof address === "object" ? address.port : 0;
  return {
    url: `https://${loopback}:${port}/inject`,
    calls: () => calls,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// The chart's own webhook configurations

/**
 * The Helm chart's rendered Mutating- and ValidatingWebhookConfiguration (release
 * `imageshift` in `namespace`), with only `clientConfig` swapped to the operator running on
 * this host: what is tested is what ships.
 */
export async function chartWebhookConfigurations(options: {
  port: number;
  caBundle?: string;
  namespace: string;
  set?: string[];
}): Promise<Record<string, unknown>[]> {
  const chart = fileURLToPath(new URL("../../../charts/imageshift", import.meta.url));
  const args = [
    "template",
    "imageshift",
    chart,
    "--namespace",
    options.namespace,
    "--show-only",
    "templates/webhooks.yaml",
  ];
  for (const value of options.set ?? []) args.push("--set", value);
  const rendered = execFileSync(await helmPath(), args, { encoding: "utf8" });
  const documents = parseAllDocuments(rendered).map((document) => document.toJS() as Record<string, unknown>);
  for (const configuration of documents) {
    for (const webhook of configuration.webhooks as { clientConfig: { service: { path: string } } }[]) {
      const endpoint = webhook.clientConfig.service.path;
      (webhook as { clientConfig: unknown }).clientConfig = {
        url: `https://${loopback}:${options.port}${endpoint}`,
        ...(options.caBundle ? { caBundle: options.caBundle } : {}),
      };
    }
  }
  return documents;
}

// ---------------------------------------------------------------------------------------------
// For the in-process suites

/** `waitUntil` for a truthy result, polling every `intervalMs`. */
export function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | Promise<T>,
  intervalMs = 50,
): Promise<NonNullable<T>> {
  return waitUntil(what, async () => (await probe()) || undefined, { timeoutMs, intervalMs }) as Promise<
    NonNullable<T>
  >;
}
