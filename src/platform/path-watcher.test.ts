import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PathWatcher } from "./path-watcher.ts";

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await sleep(10);
  assert.ok(check(), what);
}

test("a burst of changes in a watched folder gives one call, after the quiet time", async () => {
  const dir = await mkdtemp(join(tmpdir(), "imageshift-watch-"));
  let calls = 0;
  const watcher = new PathWatcher({
    folders: [dir, dir],
    pollMs: 60_000,
    debounceMs: 50,
    onChange: () => calls++,
    onWatchError: () => assert.fail("the folder can be watched"),
  });
  watcher.start();
  try {
    for (let i = 0; i < 5; i++) await writeFile(join(dir, "a.yaml"), `v${i}`);
    await until("the burst is reported", () => calls > 0);
    await sleep(120);
    assert.equal(calls, 1);
  } finally {
    watcher.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a folder that cannot be watched is reported, and the poll still calls", async () => {
  const errors: string[] = [];
  let calls = 0;
  const watcher = new PathWatcher({
    folders: [join(tmpdir(), "imageshift-absent-folder", "x")],
    pollMs: 20,
    onChange: () => calls++,
    onWatchError: (folder) => errors.push(folder),
  });
  watcher.start();
  try {
    await until("the poll calls", () => calls >= 2);
    assert.equal(errors.length, 1);
  } finally {
    watcher.stop();
  }
  const after = calls;
  await sleep(60);
  assert.equal(calls, after, "stopped: no more calls");
});
