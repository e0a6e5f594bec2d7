import assert from "node:assert/strict";
import { test } from "node:test";
import { RE2JS } from "re2js";
import { cachedProgram, cachedPrograms, remember } from "./programs.ts";

test("the program cache stays at 512: the oldest goes first, and a dropped program is compiled again", () => {
  const first = "^first-evicted\\.example/(.*)$";
  remember(first, RE2JS.compile(first));
  for (let i = 0; i < 600; i++) remember(`^r${i}\\.example/x`, RE2JS.compile(`^r${i}\\.example/x`));
  assert.equal(cachedPrograms(), 512);
  const again = cachedProgram(first);
  assert.ok(again.matches("first-evicted.example/app"));
  assert.equal(cachedProgram(first), again, "kept once compiled again");
  assert.equal(cachedPrograms(), 512);
});
