import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import type { CertificatePair, CertificateSource } from "../certs/certificates.ts";
import { localhostCertificate } from "../certs/testing.ts";
import { type CompiledRules, loadRules } from "../engine/rules/load.ts";
import type { RuleSource } from "../engine/rules/source.ts";
import { type Logger, silentLogger } from "../telemetry/logger.ts";
import { ADMISSION_OUTCOMES, Metrics } from "../telemetry/metrics.ts";
import { captureLogger } from "../telemetry/testing.ts";
import { within } from "../testing.ts";
import { type AppOptions, type RunningApp, startApp } from "./app.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const FIXTURE = readFileSync(join(ROOT, "test", "fixtures", "admission", "pod-create.json"), "utf8");
const FIXTURE_UID = "705ab4f5-6393-11e8-b7cc-42010a800002";
const TIMEOUT_MS = 10_000;

/** A rule source the test drives: nothing loaded until `load()`. */
class FakeRules implements RuleSource {
  private compiled: CompiledRules | undefined;
  private readonly listeners: ((rules: CompiledRules) => void)[] = [];
  stopped = false;

  async start(): Promise<void> {}

  current(): CompiledRules | undefined {
    return this.compiled;
  }

  onChange(listener: (rules: CompiledRules) => void): void {
    this.listeners.push(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  load(rules: CompiledRules): void {
    this.compiled = rules;
    for (const listener of this.listeners) listener(rules);
  }
}

function staticCertificate(pair: CertificatePair): CertificateSource & { stopped: boolean } {
  return {
    stopped: false,
    start: async () => {},
    current: () => pair,
    onChange: () => {},
    async stop() {
      this.stopped = true;
    },
  };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

function collect(
  res: http.IncomingMessage,
  resolve: (reply: Reply) => void,
  reject: (e: Error) => void,
): void {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    text += chunk;
  });
  res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
  res.on("error", reject);
}

/** GET on the plain-HTTP probes port. */
function probe(port: number, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) =>
      collect(res, resolve, reject),
    );
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("probe timed out")));
    req.on("error", reject);
  });
}

function mutate(
  port: number,
  ca: string,
  body = FIXTURE,
  path = "/mutate",
  contentType = "application/json",
  agent: https.Agent | false = false,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        ca,
        agent,
        method: "POST",
        path,
        headers: { "content-type": contentType, "content-length": Buffer.byteLength(body) },
      },
      (res) => collect(res, resolve, reject),
    );
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

/** Resolves with the error code of a TCP connection attempt (undefined when it connected). */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.setTimeout(TIMEOUT_MS, () =>
      socket.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })),
    );
    socket.on("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a POST /mutate whose body arrives in two parts: the headers and the first part now,
 * the rest when `finish()` is called. `sent` resolves once the first part is on the wire.
 */
function slowMutate(
  port: number,
  ca: string,
  agent: https.Agent | false = false,
): { sent: Promise<void>; finish: () => void; reply: Promise<Reply> } {
  let finish: () => void = () => {};
  let sent: Promise<void> = Promise.resolve();
  const reply = new Promise<Reply>((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        ca,
        agent,
        method: "POST",
        path: "/mutate",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(FIXTURE) },
      },
      (res) => collect(res, resolve, reject),
    );
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    const cut = 200;
    sent = new Promise<void>((resolveSent) => req.write(FIXTURE.slice(0, cut), () => resolveSent()));
    finish = () => req.end(FIXTURE.slice(cut));
  });
  return { sent, finish, reply };
}

let caPem = "";
let pair: CertificatePair;
let examples: CompiledRules;

before(async () => {
  ({ caPem, pair } = await localhostCertificate("app test CA"));
  examples = await loadRules(join(ROOT, "examples"));
});

async function start(
  rules: RuleSource,
  logger: Logger = silentLogger,
  options: Partial<AppOptions> = {},
): Promise<RunningApp> {
  return startApp({
    rules,
    certificates: staticCertificate(pair),
    logger,
    host: "127.0.0.1",
    port: 0,
    metricsHost: "127.0.0.1",
    metricsPort: 0,
    ...options,
  });
}

describe("probes", () => {
  it("/readyz is 503 until rules are loaded, then 200; /healthz is 200 throughout", async () => {
    const rules = new FakeRules();
    const app = await start(rules);
    try {
      assert.notEqual(app.metricsPort, app.webhookPort);
      const notReady = await probe(app.metricsPort, "/readyz");
      assert.equal(notReady.status, 503);
      assert.equal(notReady.text, "not ready: no rule set loaded yet\n");
      assert.equal((await probe(app.metricsPort, "/healthz")).status, 200);
      assert.equal((await probe(app.metricsPort, "/healthz")).text, "ok\n");

      // A pod arriving before the rules: admitted unchanged (fail open), with a warning.
      const early = await mutate(app.webhookPort, caPem);
      assert.equal(early.status, 200);
      const review = JSON.parse(early.text) as {
        response: { uid: string; allowed: boolean; patch?: string; warnings?: string[] };
      };
      assert.equal(review.response.uid, FIXTURE_UID);
      assert.equal(review.response.allowed, true);
      assert.equal(review.response.patch, undefined);
      assert.match(review.response.warnings?.[0] ?? "", /no rule set is loaded yet/);

      rules.load(examples);
      const ready = await probe(app.metricsPort, "/readyz");
      assert.equal(ready.status, 200);
      assert.equal(ready.text, "ok\n");
      assert.equal((await probe(app.metricsPort, "/healthz")).status, 200);
      assert.equal((await probe(app.metricsPort, "/readyz?verbose")).status, 200);
    } finally {
      await app.stop(1000);
    }
  });

  it("starts after a rule source whose start() resolves later, and is ready at once", async () => {
    const rules = new FakeRules();
    let release: () => void = () => {};
    rules.start = () =>
      new Promise<void>((resolve) => {
        release = () => {
          rules.load(examples);
          resolve();
        };
      });
    const starting = start(rules);
    let started = false;
    void starting.then(() => {
      started = true;
    });
    await sleep(100);
    assert.equal(started, false, "startApp waits for the rule source");
    release();
    const app = await within(starting, TIMEOUT_MS, "startApp");
    try {
      assert.equal((await probe(app.metricsPort, "/readyz")).status, 200);
    } finally {
      await app.stop(1000);
    }
  });

  it("/metrics has the rules gauge and counts a mutate request by webhook, operation and outcome", async () => {
    const rules = new FakeRules();
    const app = await start(rules);
    try {
      const empty = await probe(app.metricsPort, "/metrics");
      assert.equal(empty.status, 200);
      assert.match(String(empty.headers["content-type"]), /^text\/plain/);
      assert.match(empty.text, /^imageshift_rules_loaded 0$/m);
      // The process's memory, as read at scrape time (this test process's own figures).
      const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(empty.text)?.[1]);
      const rss = gauge("process_resident_memory_bytes");
      assert.ok(rss > 10e6 && rss < 4e9, `process_resident_memory_bytes ${rss}`);
      const used = gauge("nodejs_heap_size_used_bytes");
      const total = gauge("nodejs_heap_size_total_bytes");
      assert.ok(used > 1e6 && used <= total && total < rss, `heap used ${used}, total ${total}, rss ${rss}`);

      rules.load(examples);
      const loaded = await probe(app.metricsPort, "/metrics");
      assert.match(loaded.text, /^# TYPE imageshift_rules_loaded gauge$/m);
      assert.match(loaded.text, new RegExp(`^imageshift_rules_loaded ${examples.ruleSet.size}$`, "m"));
      const reloadedAt = /^imageshift_rules_last_reload_timestamp_seconds (\S+)$/m.exec(loaded.text);
      assert.ok(reloadedAt && Math.abs(Number(reloadedAt[1]) - Date.now() / 1000) < 60, "reload timestamp");
      assert.doesNotMatch(loaded.text, /outcome="patched"/);

      const reply = await mutate(app.webhookPort, caPem);
      assert.equal(reply.status, 200);
      const after = await probe(app.metricsPort, "/metrics");
      assert.ok(
        after.text
          .split("\n")
          .includes(
            'imageshift_admission_requests_total{webhook="mutate",operation="CREATE",outcome="patched"} 1',
          ),
        after.text,
      );
      assert.match(after.text, /^imageshift_admission_duration_seconds_count\{webhook="mutate"\} 1$/m);
      assert.match(
        after.text,
        /^imageshift_rewrites_total\{rule_kind="Imageshift",rule_name="airgap",source_registry="docker.io",target_registry="internal-registry.corp"\} 1$/m,
      );
    } finally {
      await app.stop(1000);
    }
  });

  it("/metrics has the serving certificate's expiry; stop() ends the default metrics' monitors", async () => {
    const app = await start(new FakeRules());
    try {
      const text = (await probe(app.metricsPort, "/metrics")).text;
      const notAfter = Date.parse(new X509Certificate(pair.cert).validTo) / 1000;
      assert.match(text, new RegExp(`^imageshift_certificate_expiry_timestamp_seconds ${notAfter}$`, "m"));
      assert.match(text, /^imageshift_leader 0$/m);
      assert.match(text, /^nodejs_eventloop_lag_seconds /m);
    } finally {
      await app.stop(1000);
    }
    assert.deepEqual(app.metrics.stop(), [false, false], "already stopped by app.stop()");
  });

  it("a failed start stops the default metrics' monitors too", async () => {
    const metrics = new Metrics();
    const rules = new FakeRules();
    rules.start = () => Promise.reject(new Error("unreadable"));
    await assert.rejects(start(rules, silentLogger, { metrics }), /unreadable/);
    assert.deepEqual(metrics.stop(), [false, false]);
  });

  it("with mrwMetrics, also the Mutating Registry Webhook's metric names; without, none", async () => {
    const rules = new FakeRules();
    const app = await start(rules, silentLogger, { mrwMetrics: true });
    try {
      const before = await probe(app.metricsPort, "/metrics");
      assert.match(before.text, /^registry_rewriter_rules_count 0$/m);
      await mutate(app.webhookPort, caPem);
      rules.load(examples);
      await mutate(app.webhookPort, caPem);
      const after = (await probe(app.metricsPort, "/metrics")).text;
      assert.match(after, new RegExp(`^registry_rewriter_rules_count ${examples.ruleSet.size}$`, "m"));
      assert.match(after, /^registry_rewriter_cache_misses_total 1$/m, "the pod before the rules");
      assert.match(after, /^registry_rewriter_cache_hits_total 1$/m);
      assert.match(after, /^registry_rewriter_mutation_duration_seconds_count\{namespace="team-a"\} 2$/m);
      assert.match(
        after,
        /^registry_rewriter_mutations_total\{namespace="team-a",source_registry="docker.io",target_registry="internal-registry.corp",status="success"\} 1$/m,
      );
    } finally {
      await app.stop(1000);
    }
    const plain = await start(rules);
    try {
      await mutate(plain.webhookPort, caPem);
      assert.doesNotMatch((await probe(plain.metricsPort, "/metrics")).text, /registry_rewriter_/);
    } finally {
      await plain.stop(1000);
    }
  });

  it("answers an unknown probe path with 404", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const app = await start(rules);
    try {
      const reply = await probe(app.metricsPort, "/nope");
      assert.equal(reply.status, 404);
      assert.match(reply.text, /use \/healthz, \/readyz or \/metrics/);
    } finally {
      await app.stop(1000);
    }
  });

  it("uses the Metrics it is given", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const metrics = new Metrics();
    const app = await start(rules, silentLogger, { metrics });
    try {
      assert.equal(app.metrics, metrics);
      await mutate(app.webhookPort, caPem);
      const text = await metrics.registry.getSingleMetricAsString("imageshift_admission_requests_total");
      assert.match(text, /outcome="patched"\} 1/);
    } finally {
      await app.stop(1000);
    }
  });
});

/** A review of `request` (merged over the pod-create fixture's request). */
function reviewOf(request: Record<string, unknown>): string {
  const fixture = JSON.parse(FIXTURE) as { request: Record<string, unknown> };
  return JSON.stringify({ ...fixture, request: { ...fixture.request, ...request } });
}

/** A rule object to validate, as the API server would send it to /validate. */
function ruleReview(uid: string, spec: unknown): string {
  return reviewOf({
    uid,
    resource: { group: "imageshift.dev", version: "v1", resource: "imageshifts" },
    object: { apiVersion: "imageshift.dev/v1", kind: "Imageshift", metadata: { name: uid }, spec },
  });
}

describe("imageshift_admission_requests_total", () => {
  it("its HELP lists exactly the outcomes the server records", async () => {
    const rules = new FakeRules();
    const app = await start(rules);
    try {
      const post = (body: string, path = "/mutate", type = "application/json") =>
        mutate(app.webhookPort, caPem, body, path, type);
      // One request per outcome the handlers and the server can give.
      await post(FIXTURE); // failed_open: no rule set loaded yet
      rules.load(examples);
      await post(FIXTURE); // patched
      const pause = { name: "pause", image: "registry.k8s.io/pause:3.10" };
      await post(
        reviewOf({ object: { kind: "Pod", metadata: { name: "p" }, spec: { containers: [pause] } } }),
      );
      await post(reviewOf({ resource: { group: "", version: "v1", resource: "configmaps" } })); // skipped
      await post(
        ruleReview("good", { mappings: { swap: [{ registry: "a.io", target: "b.io" }] } }),
        "/validate",
      );
      await post(ruleReview("bad", { priority: "high" }), "/validate"); // denied
      await post(FIXTURE, "/mutate", "text/plain"); // invalid

      const text = (await probe(app.metricsPort, "/metrics")).text;
      const help = /^# HELP imageshift_admission_requests_total .*\(([^)]*)\)\.$/m.exec(text);
      assert.ok(help, "the HELP line names the outcomes in parentheses");
      const listed = (help[1] ?? "").split(", ").sort();
      const recorded = [
        ...new Set(
          [...text.matchAll(/^imageshift_admission_requests_total\{.*outcome="([^"]+)"\}/gm)].map(
            (m) => m[1],
          ),
        ),
      ].sort();
      // Every outcome the handlers' types allow was seen (this test gives each one)…
      assert.deepEqual(recorded, [...ADMISSION_OUTCOMES].sort());
      // …and HELP lists exactly those.
      assert.deepEqual(listed, recorded);
      // docs/webhook.md's metrics table lists the same outcomes.
      const docs = readFileSync(join(ROOT, "docs", "webhook.md"), "utf8");
      const row = /^\| `imageshift_admission_requests_total` \| .*\(([^)]*)\) \|$/m.exec(docs);
      assert.ok(row, "docs/webhook.md has the metric's row");
      assert.deepEqual((row[1] ?? "").split(", ").sort(), recorded);
    } finally {
      await app.stop(1000);
    }
  });
});

describe("strict namespaces", () => {
  const OPT_OUT = readFileSync(
    join(ROOT, "test", "fixtures", "admission", "pod-create-opt-out-skip.json"),
    "utf8",
  );
  type Answer = { response: { allowed: boolean; patch?: string; warnings?: string[] } };

  it("/mutate/strict serves the strict entry: the opt-out is ignored there, honoured on /mutate", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const app = await start(rules);
    try {
      const strict = await mutate(app.webhookPort, caPem, OPT_OUT, "/mutate/strict");
      assert.equal(strict.status, 200);
      const strictAnswer = JSON.parse(strict.text) as Answer;
      assert.equal(strictAnswer.response.allowed, true);
      assert.ok(strictAnswer.response.patch, "the pod is rewritten");
      assert.deepEqual(strictAnswer.response.warnings, [
        'imageshift: annotation imageshift.dev/skip: "true" is ignored in strict namespace team-b; images are rewritten as usual',
      ]);
      const plain = JSON.parse((await mutate(app.webhookPort, caPem, OPT_OUT)).text) as Answer;
      assert.equal(plain.response.patch, undefined, "opted out on /mutate");

      const text = (await probe(app.metricsPort, "/metrics")).text.split("\n");
      for (const line of [
        'imageshift_admission_requests_total{webhook="mutate/strict",operation="CREATE",outcome="patched"} 1',
        'imageshift_admission_requests_total{webhook="mutate",operation="CREATE",outcome="skipped"} 1',
        'imageshift_skips_total{reason="opt_out_ignored"} 1',
        'imageshift_skips_total{reason="opt_out"} 1',
      ])
        assert.ok(text.includes(line), line);
    } finally {
      await app.stop(1000);
    }
  });

  it("a namespace labelled <namespaceLabel>=strict is strict on /mutate too (cluster mode)", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const app = await startApp({
      rules,
      certificates: staticCertificate(pair),
      logger: silentLogger,
      namespaceLabels: (namespace) =>
        namespace === "team-b" ? { "example.com/shift": "strict" } : undefined,
      namespaceLabel: "example.com/shift",
      host: "127.0.0.1",
      port: 0,
      metricsHost: "127.0.0.1",
      metricsPort: 0,
    });
    try {
      const answer = JSON.parse((await mutate(app.webhookPort, caPem, OPT_OUT)).text) as Answer;
      assert.ok(answer.response.patch, "the pod is rewritten");
      assert.match(answer.response.warnings?.[0] ?? "", /is ignored in strict namespace team-b/);
    } finally {
      await app.stop(1000);
    }
  });
});

describe("start failures", () => {
  it("rejects when the webhook port is taken", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const rules = new FakeRules();
      rules.load(examples);
      await assert.rejects(
        startApp({
          rules,
          certificates: staticCertificate(pair),
          logger: silentLogger,
          host: "127.0.0.1",
          port: busy,
          metricsHost: "127.0.0.1",
          metricsPort: 0,
        }),
        { name: "ListenError", server: "webhook", port: busy, code: "EADDRINUSE" },
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("rejects naming the metrics server when the metrics port is taken", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const rules = new FakeRules();
      rules.load(examples);
      await assert.rejects(
        startApp({
          rules,
          certificates: staticCertificate(pair),
          logger: silentLogger,
          host: "127.0.0.1",
          port: 0,
          metricsHost: "127.0.0.1",
          metricsPort: busy,
        }),
        { name: "ListenError", server: "metrics", port: busy, reason: "address already in use" },
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("stops the rule and certificate sources it started when it cannot listen", {}, async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const rules = new FakeRules();
      rules.load(examples);
      const certificates = staticCertificate(pair);
      await assert.rejects(
        startApp({
          rules,
          certificates,
          logger: silentLogger,
          host: "127.0.0.1",
          port: busy,
          metricsHost: "127.0.0.1",
          metricsPort: 0,
        }),
      );
      assert.equal(rules.stopped, true, "rules.stop() was called");
      assert.equal(certificates.stopped, true, "certificates.stop() was called");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe("graceful stop", () => {
  it("turns unready at once, finishes the request in flight, refuses new connections, then resolves", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const { logger, lines } = captureLogger();
    const certificates = staticCertificate(pair);
    const app = await startApp({
      rules,
      certificates,
      logger,
      host: "127.0.0.1",
      port: 0,
      metricsHost: "127.0.0.1",
      metricsPort: 0,
    });
    assert.equal((await probe(app.metricsPort, "/readyz")).status, 200);

    const slow = slowMutate(app.webhookPort, caPem);
    await within(slow.sent, TIMEOUT_MS, "first part of the body");
    // Let the server parse the headers: the request is then in flight, not an idle connection.
    await sleep(300);

    const startedAt = Date.now();
    let stopped = false;
    const stopping = app.stop(5000).then(() => {
      stopped = true;
    });

    const readyz = await probe(app.metricsPort, "/readyz");
    assert.equal(readyz.status, 503);
    assert.equal(readyz.text, "not ready: shutting down\n");
    assert.equal((await probe(app.metricsPort, "/healthz")).status, 200, "still alive while draining");
    assert.equal(await connectError(app.webhookPort), "ECONNREFUSED", "new webhook connections are refused");
    assert.equal(stopped, false, "stop waits for the request in flight");

    slow.finish();
    const reply = await within(slow.reply, TIMEOUT_MS, "the request in flight");
    assert.equal(reply.status, 200);
    const review = JSON.parse(reply.text) as { response: { uid: string; patchType?: string } };
    assert.equal(review.response.uid, FIXTURE_UID);
    assert.equal(review.response.patchType, "JSONPatch");

    await within(stopping, 5000, "stop()");
    assert.ok(Date.now() - startedAt < 4000, "stop did not wait for the grace period to run out");
    assert.equal(await connectError(app.metricsPort), "ECONNREFUSED", "the probes server is closed too");
    assert.equal(rules.stopped, true);
    assert.equal(certificates.stopped, true);
    const messages = lines.map((line) => line.msg);
    const shutting = messages.indexOf("shutting down: finishing requests in flight");
    assert.ok(shutting >= 0);
    assert.ok(messages.indexOf("stopped") > shutting);
    assert.equal(lines[shutting]?.graceMs, 5000);

    // A second stop is a no-op.
    await within(app.stop(5000), 1000, "second stop()");
  });

  it("with a shutdown delay, serves on (not ready, each response closing its connection) until the delay ends, then refuses", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const { logger, lines } = captureLogger();
    const app = await start(rules, logger, { shutdownDelayMs: 1500 });
    // A client that keeps connections alive, as the API server does.
    const agent = new https.Agent({ keepAlive: true });
    const call = () => mutate(app.webhookPort, caPem, FIXTURE, "/mutate", "application/json", agent);
    try {
      assert.equal((await call()).headers.connection, "keep-alive");
      const startedAt = Date.now();
      const stopping = app.stop(1000);

      // Within the delay: not ready, yet served, and each response closes its connection.
      assert.equal((await probe(app.metricsPort, "/readyz")).status, 503);
      for (let i = 0; i < 2; i++) {
        const during = await call();
        assert.equal(during.status, 200);
        const { response } = JSON.parse(during.text) as { response: { patchType?: string } };
        assert.equal(response.patchType, "JSONPatch");
        assert.equal(during.headers.connection, "close");
      }
      assert.ok(Date.now() - startedAt < 1500, "answered within the delay");

      await within(stopping, 5000, "stop()");
      const elapsed = Date.now() - startedAt;
      assert.ok(elapsed >= 1450, `stop() waited for the delay (${elapsed} ms)`);
      assert.equal(await connectError(app.webhookPort), "ECONNREFUSED", "refused after the delay");
      const messages = lines.map((line) => line.msg);
      const delayed = messages.indexOf("shutting down: serving on while the API server drops this endpoint");
      assert.ok(delayed >= 0 && delayed < messages.indexOf("shutting down: finishing requests in flight"));
      assert.equal(lines[delayed]?.delayMs, 1500);
    } finally {
      agent.destroy();
      await app.stop(0);
    }
  });

  it("closes a request that does not finish within the grace period", async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const app = await start(rules);
    const slow = slowMutate(app.webhookPort, caPem);
    await within(slow.sent, TIMEOUT_MS, "first part of the body");
    await sleep(300);
    const startedAt = Date.now();
    await within(app.stop(300), 5000, "stop()");
    const elapsed = Date.now() - startedAt;
    assert.ok(elapsed >= 250, `stop waited for the grace period (${elapsed} ms)`);
    // The client never sent the rest: its connection was closed under it.
    await assert.rejects(within(slow.reply, TIMEOUT_MS, "the stuck request"), /socket hang up|ECONNRESET/);
  });

  it("resolves soon after the request in flight finishes when the client keeps connections alive (as the API server does)", {}, async () => {
    const rules = new FakeRules();
    rules.load(examples);
    const app = await start(rules);
    const agent = new https.Agent({ keepAlive: true });
    try {
      const slow = slowMutate(app.webhookPort, caPem, agent);
      await within(slow.sent, TIMEOUT_MS, "first part of the body");
      await sleep(300);
      const stopping = app.stop(3000);
      slow.finish();
      const reply = await within(slow.reply, TIMEOUT_MS, "the request in flight");
      assert.equal(reply.status, 200);
      const finishedAt = Date.now();
      await within(stopping, 5000, "stop()");
      const lingered = Date.now() - finishedAt;
      assert.ok(lingered < 1000, `stop() resolved ${lingered} ms after the last request finished`);
    } finally {
      agent.destroy();
    }
  });
});
