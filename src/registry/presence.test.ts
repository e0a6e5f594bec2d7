/**
 * `PresenceChecker`: the cache policy on an injected clock against a fake client (TTLs, the
 * shorter negative TTL, stale-while-revalidate, single-flight, the LRU bound, the breaker and
 * Retry-After, last errors), and against a scripted registry over HTTP (one request for ten
 * concurrent checks, credentials sources kept apart in the cache and in tokens, stop() closing
 * connections), with the metrics each records.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { Metrics } from "../telemetry/metrics.ts";
import { type Credentials, type ManifestRef, type Presence, RegistryClient } from "./client.ts";
import type { Keyring } from "./credentials.ts";
import {
  type CheckTarget,
  MAX_ERROR_HOSTS,
  PresenceChecker,
  type PresenceCheckerOptions,
} from "./presence.ts";
import { DIGEST, PRESENT, ScriptedRegistry } from "./testing.ts";

const T0 = Date.parse("2026-12-01T10:00:00.000Z");
const PRESENT_ANSWER: Presence = { state: "present", digest: DIGEST };

/** A client that records its calls and answers what the test says, when it says. */
class FakeClient extends RegistryClient {
  readonly calls: { ref: ManifestRef; credentials: Credentials | undefined }[] = [];
  answer: (ref: ManifestRef) => Presence | Promise<Presence> = () => PRESENT_ANSWER;
  override async checkManifest(ref: ManifestRef, credentials?: Credentials): Promise<Presence> {
    this.calls.push({ ref, credentials });
    return this.answer(ref);
  }
}

function setup(options: PresenceCheckerOptions = {}) {
  const clock = { now: T0 };
  const client = new FakeClient();
  const metrics = new Metrics();
  metrics.stop();
  const checker = new PresenceChecker({ client, metrics, now: () => clock.now, ...options });
  return { clock, client, metrics, checker };
}

const target = (repository = "library/nginx", reference = "1.25", host = "mirror.corp"): CheckTarget => ({
  host,
  repository,
  reference,
});

/** One sample of a metric, by its labels; 0 when it was never recorded. */
async function sample(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const want = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort()
    .join(",");
  for (const line of (await metrics.registry.metrics()).split("\n")) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? "").split(",").filter(Boolean).sort().join(",");
    if (have === want) return Number(match[3]);
  }
  return 0;
}

describe("PresenceChecker: the cache", () => {
  test("a present answer is served from the cache for the positive TTL, then refreshed", async () => {
    const { clock, client, checker, metrics } = setup();
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: false });
    clock.now += 299_999;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: true });
    assert.equal(client.calls.length, 1);
    clock.now += 1;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: true }, "stale, served");
    assert.equal(client.calls.length, 2, "and refreshed");
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "present",
      }),
      1,
    );
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "cached",
      }),
      2,
    );
    assert.equal(await sample(metrics, "imageshift_registry_cache_lookups_total", { result: "miss" }), 1);
    assert.equal(await sample(metrics, "imageshift_registry_cache_lookups_total", { result: "hit" }), 1);
    assert.equal(await sample(metrics, "imageshift_registry_cache_lookups_total", { result: "stale" }), 1);
    assert.equal(await sample(metrics, "imageshift_registry_cache_hit_ratio"), 2 / 3);
  });

  test("an absent answer is kept for the shorter negative TTL and never served stale", async () => {
    const { clock, client, checker, metrics } = setup();
    client.answer = () => ({ state: "absent" });
    assert.deepEqual(await checker.check(target()), { state: "absent", cached: false });
    clock.now += 29_999;
    assert.deepEqual(await checker.check(target()), { state: "absent", cached: true });
    clock.now += 1;
    client.answer = () => PRESENT_ANSWER;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: false }, "synced since");
    assert.equal(client.calls.length, 2);
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "absent",
      }),
      1,
    );
  });

  test("an unknown answer is never cached", async () => {
    const { client, checker, metrics } = setup();
    client.answer = () => ({ state: "unknown", reason: "HTTP 500" });
    for (let i = 0; i < 2; i++)
      assert.deepEqual(await checker.check(target()), {
        state: "unknown",
        reason: "HTTP 500",
        cached: false,
      });
    assert.equal(client.calls.length, 2);
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "unknown",
      }),
      2,
    );
  });

  test("stale-while-revalidate: served at once while one refresh runs; the refresh's answer is kept", async () => {
    const { clock, client, checker } = setup();
    await checker.check(target());
    clock.now += 300_000;
    const refresh = Promise.withResolvers<Presence>();
    client.answer = () => refresh.promise;
    const stale = await Promise.all([
      checker.check(target()),
      checker.check(target()),
      checker.check(target()),
    ]);
    assert.deepEqual(
      stale,
      Array(3).fill({ ...PRESENT_ANSWER, cached: true }),
      "none waited for the registry",
    );
    assert.equal(client.calls.length, 2, "one refresh");
    const newer = `sha256:${"e".repeat(64)}`;
    refresh.resolve({ state: "present", digest: newer });
    await tick();
    client.answer = () => assert.fail("fresh again: no request");
    assert.deepEqual(await checker.check(target()), { state: "present", digest: newer, cached: true });
    clock.now += 299_999;
    assert.deepEqual(await checker.check(target()), { state: "present", digest: newer, cached: true });
  });

  test("a refresh that answers unknown leaves the stale answer serving until staleMs ends", async () => {
    const { clock, client, checker } = setup({ staleMs: 60_000 });
    await checker.check(target());
    client.answer = () => ({ state: "unknown", reason: "HTTP 503" });
    clock.now += 300_000;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: true });
    await tick();
    clock.now += 59_999;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: true });
    await tick();
    assert.equal(client.calls.length, 3, "each stale check after a finished refresh starts one");
    clock.now += 1;
    assert.deepEqual(await checker.check(target()), { state: "unknown", reason: "HTTP 503", cached: false });
  });

  test("a refresh that answers absent replaces the stale answer", async () => {
    const { clock, client, checker } = setup();
    await checker.check(target());
    client.answer = () => ({ state: "absent" });
    clock.now += 300_000;
    assert.deepEqual(await checker.check(target()), { ...PRESENT_ANSWER, cached: true });
    await tick();
    assert.deepEqual(await checker.check(target()), { state: "absent", cached: true });
    assert.equal(client.calls.length, 2);
  });

  test("single-flight: concurrent checks of one key share one request", async () => {
    const { client, checker, metrics } = setup();
    const answer = Promise.withResolvers<Presence>();
    client.answer = () => answer.promise;
    const checks = Array.from({ length: 10 }, () => checker.check(target()));
    answer.resolve(PRESENT_ANSWER);
    assert.deepEqual(await Promise.all(checks), Array(10).fill({ ...PRESENT_ANSWER, cached: false }));
    assert.equal(client.calls.length, 1);
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "present",
      }),
      10,
    );
    assert.equal(await sample(metrics, "imageshift_registry_cache_lookups_total", { result: "miss" }), 10);
  });

  test("the key is host, repository, reference, credentials source and insecure", async () => {
    const { client, checker } = setup();
    const base = target();
    for (const variant of [
      base,
      { ...base, host: "other.corp" },
      { ...base, repository: "library/redis" },
      { ...base, reference: DIGEST },
      { ...base, credentials: "team-a" },
      { ...base, insecure: true },
    ])
      await checker.check(variant);
    assert.equal(client.calls.length, 6);
    assert.deepEqual(client.calls[5]?.ref, { ...base, insecure: true }, "insecure passed to the client");
    assert.equal(client.calls[0]?.ref.insecure, false);
    await checker.check(base);
    await checker.check({ ...base, credentials: "team-a" });
    assert.equal(client.calls.length, 6);
  });

  test("at most maxEntries answers, the least recently used dropped", async () => {
    const { client, checker } = setup({ maxEntries: 2 });
    await checker.check(target("a"));
    await checker.check(target("b"));
    await checker.check(target("a"));
    await checker.check(target("c"));
    assert.equal(client.calls.length, 3);
    await checker.check(target("a"));
    await checker.check(target("c"));
    assert.equal(client.calls.length, 3, "a and c kept");
    await checker.check(target("b"));
    assert.equal(client.calls.length, 4, "b was dropped");
  });
});

describe("PresenceChecker: the breaker and last errors", () => {
  test("opens after N unknown answers: answered at once, without a request; cached answers still served", async () => {
    const { client, checker, metrics } = setup({ failures: 3, coolDownMs: 10_000 });
    await checker.check(target("good"));
    client.answer = (ref) =>
      ref.repository === "bad" ? { state: "unknown", reason: "HTTP 500" } : PRESENT_ANSWER;
    for (let i = 0; i < 3; i++) assert.equal((await checker.check(target("bad"))).state, "unknown");
    assert.equal(client.calls.length, 4);
    assert.equal(checker.breakerState("mirror.corp"), "open");
    assert.deepEqual(await checker.check(target("bad")), {
      state: "unknown",
      reason: "circuit open for mirror.corp after 3 failures; retrying after 2026-12-01T10:00:10.000Z",
      cached: false,
    });
    assert.equal((await checker.check(target("other"))).state, "unknown", "every key of the host");
    assert.equal(client.calls.length, 4, "no request");
    assert.deepEqual(await checker.check(target("good")), { ...PRESENT_ANSWER, cached: true });
    assert.equal(await sample(metrics, "imageshift_registry_breaker_open", { registry: "mirror.corp" }), 1);
    assert.deepEqual([...checker.lastErrors()], [["mirror.corp", { message: "HTTP 500", at: T0 }]]);
    assert.equal(
      await sample(metrics, "imageshift_registry_checks_total", {
        registry: "mirror.corp",
        outcome: "unknown",
      }),
      5,
    );
  });

  test("half-open after the cool-down: one trial; its definite answer closes it and clears the last error", async () => {
    const { clock, client, checker, metrics } = setup({ failures: 1, coolDownMs: 10_000 });
    client.answer = () => ({ state: "unknown", reason: "connect ECONNREFUSED" });
    await checker.check(target("a"));
    clock.now += 10_000;
    assert.equal(checker.breakerState("mirror.corp"), "half-open");
    assert.equal(await sample(metrics, "imageshift_registry_breaker_open", { registry: "mirror.corp" }), 0);
    const trial = Promise.withResolvers<Presence>();
    client.answer = () => trial.promise;
    const first = checker.check(target("a"));
    assert.deepEqual(await checker.check(target("b")), {
      state: "unknown",
      reason: "circuit half-open for mirror.corp after 1 failures; a trial request is in flight",
      cached: false,
    });
    trial.resolve({ state: "absent" });
    assert.deepEqual(await first, { state: "absent", cached: false });
    assert.equal(checker.breakerState("mirror.corp"), "closed");
    assert.deepEqual([...checker.lastErrors()], []);
    client.answer = () => PRESENT_ANSWER;
    assert.equal((await checker.check(target("b"))).state, "present");
  });

  test("a stale answer is served without a refresh while the breaker is open", async () => {
    const { clock, client, checker } = setup({ failures: 1, coolDownMs: 600_000 });
    await checker.check(target("good"));
    client.answer = () => ({ state: "unknown", reason: "HTTP 502" });
    await checker.check(target("bad"));
    clock.now += 300_000;
    assert.deepEqual(await checker.check(target("good")), { ...PRESENT_ANSWER, cached: true });
    assert.equal(client.calls.length, 2, "the breaker refused the refresh");
  });

  test("Retry-After longer than the cool-down keeps the breaker open that long", async () => {
    const { clock, client, checker } = setup({ failures: 1, coolDownMs: 30_000 });
    client.answer = () => ({ state: "unknown", reason: "HTTP 429", retryAfterMs: 120_000 });
    assert.deepEqual(await checker.check(target()), {
      state: "unknown",
      reason: "HTTP 429",
      retryAfterMs: 120_000,
      cached: false,
    });
    clock.now += 30_000;
    assert.deepEqual(await checker.check(target()), {
      state: "unknown",
      reason: "circuit open for mirror.corp after 1 failures; retrying after 2026-12-01T10:02:00.000Z",
      cached: false,
    });
    assert.equal(checker.breakerState("mirror.corp"), "open");
    assert.equal(client.calls.length, 1);
    clock.now += 90_000;
    assert.equal(checker.breakerState("mirror.corp"), "half-open");
  });

  test("last errors: one per host, the newest kept, at most MAX_ERROR_HOSTS", async () => {
    const { clock, client, checker } = setup();
    client.answer = (ref) => ({ state: "unknown", reason: `down: ${ref.host}` });
    for (let i = 0; i <= MAX_ERROR_HOSTS; i++) await checker.check(target("a", "1", `r${i}.corp`));
    clock.now += 5;
    await checker.check(target("a", "1", "r1.corp"));
    const errors = checker.lastErrors();
    assert.equal(errors.size, MAX_ERROR_HOSTS);
    assert.equal(errors.has("r0.corp"), false, "the oldest dropped");
    assert.deepEqual(errors.get("r1.corp"), { message: "down: r1.corp", at: T0 + 5 });
    assert.equal([...errors.keys()].at(-1), "r1.corp", "the newest last");
  });

  test("a keyring that throws makes an unknown answer, not a rejection", async () => {
    const keyring: Keyring = {
      credentials: () => {
        throw new Error("keyring broken");
      },
    };
    const { checker } = setup({ keyring });
    assert.deepEqual(await checker.check(target()), {
      state: "unknown",
      reason: "keyring broken",
      cached: false,
    });
  });
});

describe("PresenceChecker against a scripted registry", () => {
  const registry = new ScriptedRegistry();
  before(() => registry.start());
  after(() => registry.stop());

  const at = (repository: string, reference: string, credentials?: string): CheckTarget => ({
    host: registry.host,
    repository,
    reference,
    insecure: true,
    ...(credentials === undefined ? {} : { credentials }),
  });

  test("ten concurrent checks send one request, counted at the registry and in the metrics", async () => {
    registry.manifests.set("team/app:1", PRESENT);
    const metrics = new Metrics();
    metrics.stop();
    const checker = new PresenceChecker({ metrics });
    try {
      const before = registry.requests.length;
      const results = await Promise.all(Array.from({ length: 10 }, () => checker.check(at("team/app", "1"))));
      assert.deepEqual(results, Array(10).fill({ state: "present", digest: DIGEST, cached: false }));
      assert.equal(registry.requests.length - before, 1);
      assert.equal((await checker.check(at("team/app", "1"))).cached, true);
      assert.deepEqual(await checker.check(at("team/app", "2")), { state: "absent", cached: false });
      assert.equal(registry.requests.length - before, 2);
      const labels = { registry: registry.host };
      assert.equal(await sample(metrics, "imageshift_registry_requests_total", labels), 2);
      assert.equal(await sample(metrics, "imageshift_registry_check_duration_seconds_count", labels), 2);
      assert.equal(
        await sample(metrics, "imageshift_registry_checks_total", { ...labels, outcome: "present" }),
        10,
      );
      assert.equal(
        await sample(metrics, "imageshift_registry_checks_total", { ...labels, outcome: "cached" }),
        1,
      );
      assert.equal(
        await sample(metrics, "imageshift_registry_checks_total", { ...labels, outcome: "absent" }),
        1,
      );
      assert.equal(await sample(metrics, "imageshift_registry_breaker_open", labels), 0);
    } finally {
      await checker.stop();
    }
  });

  test("each credentials source has its own cache entries and its own token", async () => {
    registry.tokenAuth = true;
    registry.manifests.set("private/app:1", PRESENT);
    const asked: (string | undefined)[] = [];
    const keyring: Keyring = {
      credentials(source, host) {
        asked.push(source);
        assert.equal(host, registry.host);
        return source === undefined ? undefined : { username: source, password: `${source}-password` };
      },
    };
    const metrics = new Metrics();
    metrics.stop();
    const checker = new PresenceChecker({ keyring, metrics });
    const basic = (user: string) => `Basic ${Buffer.from(`${user}:${user}-password`).toString("base64")}`;
    try {
      const tokens = registry.tokenRequests.length;
      const before = registry.requests.length;
      for (const source of ["team-a", "team-b", undefined])
        assert.equal((await checker.check(at("private/app", "1", source))).cached, false);
      assert.deepEqual(registry.tokenRequests.slice(tokens), [basic("team-a"), basic("team-b"), "none"]);
      for (const source of ["team-a", "team-b", undefined])
        assert.equal((await checker.check(at("private/app", "1", source))).cached, true);
      assert.equal(registry.requests.length - before, 6, "a 401 and a HEAD with the token, per source");
      assert.deepEqual(asked, ["team-a", "team-b", undefined]);
      // team-b's token is sent at once for another tag: no 401, no token request.
      assert.deepEqual(await checker.check(at("private/app", "2", "team-b")), {
        state: "absent",
        cached: false,
      });
      assert.equal(registry.tokenRequests.length, tokens + 3);
      assert.equal(registry.requests.at(-1)?.authorization, `Bearer tok.${tokens + 2}`);
      assert.equal(
        await sample(metrics, "imageshift_registry_requests_total", { registry: registry.host }),
        10,
      );
    } finally {
      registry.tokenAuth = false;
      await checker.stop();
    }
  });

  test("stop() ends requests in flight and closes keep-alive connections; later checks answer unknown", async () => {
    registry.manifests.set("team/app:1", PRESENT);
    registry.manifests.set("team/hang:1", { status: 0, hang: true });
    const checker = new PresenceChecker({ timeoutMs: 10_000 });
    await checker.start();
    assert.equal((await checker.check(at("team/app", "1"))).state, "present");
    assert.ok((await registry.connections()) >= 1, "kept alive");
    const hanging = checker.check(at("team/hang", "1"));
    for (let i = 0; i < 1_000 && registry.requests.at(-1)?.path !== "/v2/team/hang/manifests/1"; i++)
      await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(
      registry.requests.at(-1)?.path,
      "/v2/team/hang/manifests/1",
      "the request reached the registry",
    );
    const started = performance.now();
    await checker.stop();
    const ended = await hanging;
    assert.equal(ended.state, "unknown");
    assert.ok(performance.now() - started < 2_000, "not the 10 s timeout");
    for (let i = 0; i < 100 && (await registry.connections()) > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(await registry.connections(), 0);
    const requests = registry.requests.length;
    assert.deepEqual(await checker.check(at("team/app", "1")), {
      state: "unknown",
      reason: "presence checks are stopped",
      cached: false,
    });
    assert.equal(registry.requests.length, requests);
  });

  test("defaults: an anonymous check over HTTPS to a host that refuses is unknown", async () => {
    const checker = new PresenceChecker();
    try {
      const result = await checker.check({ host: "127.0.0.1:1", repository: "a", reference: "1" });
      assert.equal(result.state, "unknown");
      assert.equal(result.cached, false);
      assert.equal(checker.breakerState("127.0.0.1:1"), "closed", "one failure is not five");
      assert.equal(checker.lastErrors().has("127.0.0.1:1"), true);
    } finally {
      await checker.stop();
    }
  });
});
