import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCached } from "./parse-cache.ts";
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
