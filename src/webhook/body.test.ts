import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BodyBudget, checkStructure, HttpError, STRUCTURE_LIMITS } from "./body.ts";

const small = { containers: 3, values: 6, depth: 2 };

function refused(text: string, limits = small): string {
  try {
    checkStructure(Buffer.from(text), limits);
  } catch (error) {
    assert.ok(error instanceof HttpError);
    assert.equal(error.status, 413);
    return error.message;
  }
  return "accepted";
}

describe("checkStructure", () => {
  const rows: [string, string, RegExp | "accepted"][] = [
    ["three containers", `{"a":[],"b":{}}`, "accepted"],
    ["a fourth container", `[{},{},{}]`, /over 3 JSON objects and arrays/],
    ["depth 2", `[[1]]`, "accepted"],
    ["depth 3", `[[[]]]`, /deeper than 2 levels/],
    ["six values (a number counts once)", `[12345,-1.5e+10,true,null,"x"]`, "accepted"],
    ["seven values", `[1,2,3,4,5,6]`, /over 6 JSON values/],
    ["brackets inside a string", `["{{{[[[ {} [] ]]]}}}"]`, "accepted"],
    ["an escaped quote inside a string", `["a\\"{[{[{["]`, "accepted"],
    ["an escaped backslash ends the string", `["a\\\\",[[[]]]]`, /deeper than 2 levels/],
    ["an unterminated string", `["{{{{{{`, "accepted"],
    ["closing brackets do not go below zero harmfully", `]]]]][[`, "accepted"],
    ["non-ASCII text in strings", `["é{ü[", "日本"]`, "accepted"],
  ];
  for (const [name, text, expected] of rows) {
    it(name, () => {
      const message = refused(text);
      if (expected === "accepted") assert.equal(message, "accepted");
      else assert.match(message, expected);
    });
  }

  it("refuses 7 MiB of `{},` with the default limits, in one linear pass", () => {
    const body = Buffer.from(`[${"{},".repeat(2_400_000)}{}]`);
    const started = performance.now();
    assert.match(refused(body.toString(), STRUCTURE_LIMITS), /over 200000 JSON objects and arrays/);
    assert.ok(performance.now() - started < 2000);
  });

  it("accepts a review whose strings are full of brackets and escapes", () => {
    const annotation = `{"a":[${'\\"{[\\\\'.repeat(100_000)}]}`;
    const review = JSON.stringify({ request: { object: { metadata: { annotations: { a: annotation } } } } });
    assert.doesNotThrow(() => checkStructure(Buffer.from(review)));
  });
});

describe("BodyBudget", () => {
  it("lends bytes up to its limit and takes them back on release", () => {
    const budget = new BodyBudget(10);
    const first = budget.lease();
    const second = budget.lease();
    assert.equal(first.take(6), true);
    assert.equal(second.take(5), false, "no room: nothing reserved");
    assert.equal(budget.inFlight, 6);
    assert.equal(second.take(4), true);
    assert.equal(budget.inFlight, 10);
    first.release();
    first.release();
    assert.equal(budget.inFlight, 4, "release is idempotent");
    second.release();
    assert.equal(budget.inFlight, 0);
  });

  it("defaults to 32 MiB", () => {
    assert.equal(new BodyBudget().limit, 32 * 1024 * 1024);
  });
});
