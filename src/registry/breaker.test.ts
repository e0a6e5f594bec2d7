/**
 * The circuit breaker on an injected clock: it opens after N unknown answers in a row, refuses
 * at once while open, lets one trial through after the cool-down, honours Retry-After (bounded),
 * and tracks a bounded number of hosts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CircuitBreaker } from "./breaker.ts";
import { MAX_RETRY_AFTER_MS } from "./client.ts";

const T0 = Date.parse("2026-12-01T10:00:00.000Z");

function breaker(options: { failures?: number; coolDownMs?: number; maxHosts?: number } = {}) {
  const clock = { now: T0 };
  return { clock, breaker: new CircuitBreaker({ ...options, now: () => clock.now }) };
}

describe("CircuitBreaker", () => {
  test("closed until N unknown answers in a row; a definite answer in between starts the count again", () => {
    const { breaker: b } = breaker({ failures: 3 });
    b.failure("a.io");
    b.failure("a.io");
    b.success("a.io");
    b.failure("a.io");
    b.failure("a.io");
    assert.equal(b.state("a.io"), "closed");
    assert.deepEqual(b.allow("a.io"), { allowed: true });
    b.failure("a.io");
    assert.equal(b.state("a.io"), "open");
    assert.equal(b.state("b.io"), "closed", "per host");
    assert.deepEqual(b.allow("b.io"), { allowed: true });
  });

  test("open: refused at once with the host, the count and when it retries; late failures change nothing", () => {
    const { breaker: b, clock } = breaker({ failures: 2, coolDownMs: 10_000 });
    b.failure("a.io");
    b.failure("a.io");
    const refused = {
      allowed: false,
      reason: "circuit open for a.io after 2 failures; retrying after 2026-12-01T10:00:10.000Z",
    };
    assert.deepEqual(b.allow("a.io"), refused);
    clock.now += 5_000;
    b.failure("a.io", 60_000);
    assert.deepEqual(b.allow("a.io"), refused, "an answer to a request sent before it opened");
    assert.deepEqual(b.openHosts(), ["a.io"]);
  });

  test("half-open after the cool-down: one trial goes; a definite answer closes the circuit", () => {
    const { breaker: b, clock } = breaker({ failures: 1, coolDownMs: 10_000 });
    b.failure("a.io");
    clock.now += 10_000;
    assert.equal(b.state("a.io"), "half-open");
    assert.deepEqual(b.openHosts(), [], "half-open is not open");
    assert.deepEqual(b.allow("a.io"), { allowed: true }, "the trial");
    assert.deepEqual(b.allow("a.io"), {
      allowed: false,
      reason: "circuit half-open for a.io after 1 failures; a trial request is in flight",
    });
    b.success("a.io");
    assert.equal(b.state("a.io"), "closed");
    assert.deepEqual(b.allow("a.io"), { allowed: true });
  });

  test("a failed trial opens it again for a full cool-down", () => {
    const { breaker: b, clock } = breaker({ failures: 2, coolDownMs: 10_000 });
    b.failure("a.io");
    b.failure("a.io");
    clock.now += 10_000;
    assert.deepEqual(b.allow("a.io"), { allowed: true });
    b.failure("a.io");
    assert.equal(b.state("a.io"), "open");
    assert.deepEqual(b.allow("a.io"), {
      allowed: false,
      reason: "circuit open for a.io after 3 failures; retrying after 2026-12-01T10:00:20.000Z",
    });
  });

  test("a trial that never answers lets another through after a cool-down", () => {
    const { breaker: b, clock } = breaker({ failures: 1, coolDownMs: 10_000 });
    b.failure("a.io");
    clock.now += 10_000;
    assert.equal(b.allow("a.io").allowed, true);
    clock.now += 9_999;
    assert.equal(b.allow("a.io").allowed, false);
    clock.now += 1;
    assert.equal(b.allow("a.io").allowed, true);
  });

  test("Retry-After longer than the cool-down is honoured, at most 300 s; shorter is not", () => {
    const { breaker: b, clock } = breaker({ failures: 1, coolDownMs: 30_000 });
    b.failure("long.io", 120_000);
    b.failure("short.io", 1_000);
    b.failure("huge.io", 86_400_000);
    clock.now += 30_000;
    assert.equal(b.state("short.io"), "half-open");
    assert.equal(b.state("long.io"), "open");
    clock.now += 90_000;
    assert.equal(b.state("long.io"), "half-open");
    assert.equal(b.state("huge.io"), "open");
    clock.now = T0 + MAX_RETRY_AFTER_MS;
    assert.equal(b.state("huge.io"), "half-open");
  });

  test("defaults: 5 failures, 30 s; the host least recently seen is forgotten past maxHosts", () => {
    const { breaker: b, clock } = breaker({ maxHosts: 2 });
    for (let i = 0; i < 5; i++) b.failure("a.io");
    assert.equal(b.state("a.io"), "open");
    clock.now += 29_999;
    assert.equal(b.state("a.io"), "open");
    clock.now += 1;
    assert.equal(b.state("a.io"), "half-open");
    b.failure("b.io");
    b.failure("c.io");
    assert.equal(b.state("a.io"), "closed", "forgotten: closed");
    assert.deepEqual(new CircuitBreaker().allow("x"), { allowed: true });
  });
});
