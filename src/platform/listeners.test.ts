import assert from "node:assert/strict";
import { test } from "node:test";
import { Listeners } from "./listeners.ts";

test("listeners are called in the order they were added, with each value", () => {
  const listeners = new Listeners<number>();
  const seen: string[] = [];
  listeners.emit(0);
  listeners.add((n) => seen.push(`a${n}`));
  listeners.add((n) => seen.push(`b${n}`));
  listeners.emit(1);
  listeners.emit(2);
  assert.deepEqual(seen, ["a1", "b1", "a2", "b2"]);
});
