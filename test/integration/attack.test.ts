/**
 * Attacks on a real `imageshift serve` in a child process, with the chart's heap settings
 * (`--max-old-space-size=96 --max-semi-space-size=2`): bodies built to exhaust the heap when
 * parsed, and many large bodies at once. The server must answer (413, 429 or 200) and keep
 * serving. Loopback only; every loop is bounded.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { loopbackFlags } from "../../src/testing.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "imageshift.js");
const FIXTURE_FILE = join(ROOT, "test", "fixtures", "admission", "pod-create.json");
const HEAP_FLAGS = ["--max-old-space-size=96", "--max-semi-space-size=2"];
const START_MS = 20_000;
const REQUEST_MS = 60_000;
const SEVEN_MIB = 7 * 1024 * 1024;

interface Reply {
  status: number;
  text: string;
  error?: string;
}

/** One POST; a connection error after the response arrived does not hide the response. */
function post(port: number, ca: string, body: Buffer): Promise<Reply> {
  return new Promise((resolve) => {
    let reply: Reply | undefined;
    let settled = false;
    const settle = (value: Reply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path: "/mutate",
        method: "POST",
        ca,
        agent: false,
        headers: { "content-type": "application/json", "content-length": body.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        reply = { status: res.statusCode ?? 0, text: "" };
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => settle({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on("error", () => settle(reply as Reply));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error("request timed out")), REQUEST_MS);
    req.on("error", (error) => settle(reply ?? { status: 0, text: "", error: error.message }));
    req.end(body);
  });
}

let temp = "";
let child: ChildProcess | undefined;
let port = 0;
let ca = "";
let fixture = "";
let stderr = "";
let metricsUrl = "";

function alive(): boolean {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** The server's resident memory in MB (Linux), 0 where /proc is not there. */
async function rssMb(): Promise<number> {
  const status = await readFile(`/proc/${child?.pid}/status`, "utf8").catch(() => "");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/**
 * The environment the container image gives the server (Dockerfile `ENV`; the heap flags are
 * HEAP_FLAGS), since the memory bound is the chart's limit on that image. Without V8 coverage,
 * which `npm test` turns on for child processes through NODE_V8_COVERAGE: it costs the server
 * tens of MB, and put it over the bound in CI (261 MB) while the product stayed under.
 */
function imageEnvironment(): NodeJS.ProcessEnv {
  const { NODE_V8_COVERAGE: _coverage, ...env } = process.env;
  return { ...env, NODE_OPTIONS: "", NODE_ENV: "production", MALLOC_MMAP_THRESHOLD_: "32768" };
}

async function normalReview(): Promise<void> {
  const reply = await post(port, ca, Buffer.from(fixture));
  assert.equal(reply.status, 200, `a normal review is served (stderr: ${stderr})`);
  assert.match(reply.text, /"allowed":true/);
}

before(async () => {
  temp = await mkdtemp(join(tmpdir(), "imageshift-attack-"));
  fixture = await readFile(FIXTURE_FILE, "utf8");
  const selfSigned = join(temp, "ca");
  child = spawn(
    process.execPath,
    [
      ...HEAP_FLAGS,
      BIN,
      "serve",
      "--rules",
      join(ROOT, "examples"),
      ...loopbackFlags(),
      "--self-signed-dir",
      selfSigned,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: imageEnvironment() },
  );
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const url = await new Promise<URL>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`not serving within ${START_MS} ms: ${stderr}`)),
      START_MS,
    );
    child?.on("exit", () => reject(new Error(`exited before serving: ${stderr}`)));
    createInterface({ input: child?.stdout as NodeJS.ReadableStream }).on("line", (text) => {
      try {
        const line = JSON.parse(text) as { msg?: string; webhook?: string; metrics?: string };
        if (line.msg === "serving" && line.webhook) {
          metricsUrl = line.metrics ?? "";
          clearTimeout(timer);
          resolve(new URL(line.webhook));
        }
      } catch {
        // not a log line
      }
    });
  });
  port = Number(url.port);
  ca = await readFile(join(selfSigned, "ca.pem"), "utf8");
});

after(async () => {
  child?.kill("SIGKILL");
  await rm(temp, { recursive: true, force: true });
});

describe("imageshift serve under attack (96 MB heap)", () => {
  for (const item of ["{}", "[]"]) {
    it(`survives 7 MiB of \`${item},\` three times, answering 413`, async () => {
      const count = Math.floor((SEVEN_MIB - 2) / 3);
      const body = Buffer.from(`[${`${item},`.repeat(count - 1)}${item}]`);
      assert.ok(body.length <= SEVEN_MIB);
      for (let round = 0; round < 3; round++) {
        const reply = await post(port, ca, body);
        assert.equal(reply.status, 413, `round ${round + 1}: ${reply.error ?? reply.text} ${stderr}`);
        assert.ok(alive(), `alive after round ${round + 1}: ${stderr}`);
      }
      await normalReview();
    });
  }

  it("survives 30 concurrent 7 MiB valid reviews, answering 200 or 429, and keeps serving", async (t) => {
    const review = JSON.parse(fixture) as { request: { object: { metadata: { annotations: object } } } };
    const filler = SEVEN_MIB - Buffer.byteLength(JSON.stringify(review)) - 64;
    review.request.object.metadata.annotations = { filler: "x".repeat(filler) };
    const body = Buffer.from(JSON.stringify(review));
    assert.ok(body.length <= SEVEN_MIB && body.length > SEVEN_MIB - 1024);
    const replies = await Promise.all(Array.from({ length: 30 }, () => post(port, ca, body)));
    const statuses = replies.map((reply) => reply.status);
    const answered = statuses.filter((status) => status === 200 || status === 429);
    assert.equal(
      answered.length,
      30,
      `every request answered 200 or 429: ${JSON.stringify(replies.map((r) => r.error ?? r.status))}`,
    );
    assert.ok(statuses.includes(200), "some were served");
    assert.ok(statuses.includes(429), "the rest were told to retry");
    assert.ok(alive(), stderr);
    const rss = await rssMb();
    t.diagnostic(`resident memory after the burst: ${rss.toFixed(1)} MB`);
    const m = await (await fetch(`${metricsUrl}/metrics`)).text();
    t.diagnostic(
      m
        .split("\n")
        .filter((l) =>
          /^nodejs_(heap_size_used|heap_size_total|external_memory)_bytes|^process_resident/.test(l),
        )
        .join(" | "),
    );
    await normalReview();
    // Before the in-flight budget this left 451 MB resident; 4 bodies of 7 MiB fit the 32 MiB
    // budget at once, and the process must stay under the chart's 256 Mi limit.
    assert.ok(rss < 256, `resident memory ${rss} MB`);
  });
});
