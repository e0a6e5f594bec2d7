import assert from "node:assert/strict";
import { test } from "node:test";
import { cachedParses, parseCached } from "./parse-cache.ts";
import { parseReference } from "./reference.ts";

test("parseCached gives what parseReference gives, for valid and invalid input", () => {
  for (const input of ["nginx", "nginx:1.25", `quay.io/a/b@sha256:${"a".repeat(64)}`, "Bad", ""]) {
    assert.deepEqual(parseCached(input), parseReference(input));
    assert.equal(parseCached(input), parseCached(input), "the second call is served from the memo");
  }
});

test("parseCached stays bounded: past its size it starts over and still answers right", () => {
  const first = parseCached("registry.corp/bound/first");
  for (let i = 0; i < 5000; i++) parseCached(`registry.corp/bound/image-${i}`);
  const again = parseCached("registry.corp/bound/first");
  assert.deepEqual(again, first);
  assert.notEqual(again, first, "the memo was emptied and refilled");
});

test("an oversized image is refused without being cached (it would keep the string alive)", () => {
  const before = cachedParses();
  const huge = `registry.corp/${"a".repeat(1024 * 1024)}`;
  const result = parseCached(huge);
  assert.equal(result.ok, false);
  assert.match(result.ok ? "" : result.error, /too long/);
  assert.ok(!result.ok && result.error.length < 200, "the error does not carry the input");
  assert.equal(cachedParses(), before);
  const limit = `registry.corp/${"a".repeat(1024 - 14)}`;
  assert.equal(limit.length, 1024);
  parseCached(limit);
  assert.equal(cachedParses(), before + 1, "input at the limit is still memoized");
});
