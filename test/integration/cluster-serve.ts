/**
 * For integration tests of `imageshift serve` in cluster mode against a scripted API server:
 * a kubeconfig for it, the process started with its JSON log lines collected, and a bounded
 * wait. Each test scripts its own API server.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { loopbackFlags } from "../../src/testing.ts";

export const ROOT = join(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "imageshift.js");

export type LogLine = { msg?: string; [key: string]: unknown };

/** Polls `probe` every 20 ms until it gives a value; throws after `ms`. */
export async function until<T>(
  what: string,
  ms: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A kubeconfig (as an object, to edit) for an API server listening on plain HTTP. */
export function kubeconfigFor(server: Server) {
  const { port } = server.address() as AddressInfo;
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "scripted", cluster: { server: `http://127.0.0.1:${port}` } }],
    users: [{ name: "scripted", user: { token: "t" } }],
    contexts: [{ name: "scripted", context: { cluster: "scripted", user: "scripted" } }],
    "current-context": "scripted",
  };
}

export async function writeKubeconfig(path: string, kubeconfig: object): Promise<void> {
  await writeFile(path, JSON.stringify(kubeconfig));
}

export interface ServeProcess {
  child: ChildProcess;
  lines: LogLine[];
  exited: Promise<number | null>;
  /** The "serving" log line, whose `metrics` is the probes' URL. */
  serving: Promise<LogLine>;
}

/** `imageshift serve` in cluster mode on free loopback ports, its CA under `temp`. */
export function startClusterServe(temp: string, extraArgs: string[], env: NodeJS.ProcessEnv): ServeProcess {
  const lines: LogLine[] = [];
  const child = spawn(
    process.execPath,
    [
      BIN,
      "serve",
      ...loopbackFlags(),
      ...["--self-signed-dir", join(temp, "ca"), "--leader-election-namespace", "imageshift-system"],
      ...extraArgs,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } },
  );
  createInterface({ input: child.stdout! }).on("line", (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ msg: `(not JSON) ${text}` });
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const serving = until("serving", 20_000, () => lines.find((line) => line.msg === "serving"));
  return { child, lines, exited, serving };
}

/** Reads a request's body, then calls `answer` with it and a JSON `send`. */
export function withBody(
  req: IncomingMessage,
  res: ServerResponse,
  answer: (body: string, send: (status: number, value: unknown) => void) => void,
): void {
  let body = "";
  req.on("data", (chunk: Buffer) => {
    body += chunk.toString();
  });
  req.on("end", () =>
    answer(body, (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    }),
  );
}
