/** `createLogger` and `componentLogger` (src/telemetry/logger.ts): the `err` serializer, component children and the cached timestamp. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import { KubeApiError } from "../errors.ts";
import { componentLogger, isoTimeCached, serializeError } from "./logger.ts";
import { captureLogger } from "./testing.ts";

describe("logged errors", () => {
  test("an Error under err keeps its type, message and stack", () => {
    const { logger, lines } = captureLogger();
    logger.warn({ err: new TypeError("boom") }, "failed");
    const err = lines[0]?.err as { type: string; message: string; stack: string };
    assert.equal(err.type, "TypeError");
    assert.equal(err.message, "boom");
    assert.match(err.stack, /^TypeError: boom\n\s+at /);
  });

  test("a KubeApiError: its code kept, its raw body left out", () => {
    const { logger, lines } = captureLogger();
    const body = JSON.stringify({ kind: "Status", message: 'leases "x" is forbidden', code: 403 });
    logger.warn({ err: new KubeApiError("GET", "/apis/x", 403, body) }, "failed");
    const err = lines[0]?.err as Record<string, unknown>;
    assert.equal(err.type, "KubeApiError");
    assert.equal(err.message, 'GET /apis/x: HTTP 403: leases "x" is forbidden');
    assert.equal(err.code, 403);
    assert.equal("body" in err, false);
    assert.match(String(err.stack), /KubeApiError/);
  });

  test("a cause is kept; anything not an Error is logged as it is", () => {
    const error = new Error("outer", { cause: new Error("inner") });
    assert.match(String((serializeError(error) as { message: string }).message), /outer/);
    assert.match(JSON.stringify(serializeError(error)), /inner/);
    assert.equal(serializeError("a message"), "a message");
    assert.deepEqual(serializeError({ code: 410 }), { code: 410 });
  });
});

describe("componentLogger", () => {
  test("adds component to every line, once, the outer component winning", () => {
    const { logger, lines } = captureLogger();
    const rules = componentLogger(logger, "rules");
    rules.info("one");
    const inner = componentLogger(rules, "informer");
    assert.equal(inner, rules, "no second child, so no second component key");
    inner.info("two");
    assert.equal(lines[0]?.component, "rules");
    assert.equal(lines[1]?.component, "rules");
  });
});

describe("isoTimeCached", () => {
  test("writes what pino's isoTime writes, formatted again only when the millisecond changes", (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: Date.parse("2026-11-30T23:59:59.998Z") });
    const time = isoTimeCached();
    assert.equal(time(), pino.stdTimeFunctions.isoTime());
    assert.equal(time(), ',"time":"2026-11-30T23:59:59.998Z"');
    t.mock.timers.tick(1);
    assert.equal(time(), ',"time":"2026-11-30T23:59:59.999Z"');
    t.mock.timers.tick(1);
    assert.equal(time(), ',"time":"2026-12-01T00:00:00.000Z"');
    assert.equal(time(), pino.stdTimeFunctions.isoTime());
  });

  test("a logged line carries it as `time`", () => {
    const { logger, lines } = captureLogger();
    const before = Date.now();
    logger.info("hello");
    const at = Date.parse(String(lines[0]?.time));
    assert.ok(at >= before && at <= Date.now(), String(lines[0]?.time));
  });
});
