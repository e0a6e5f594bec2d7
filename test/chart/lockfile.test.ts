/**
 * The Dockerfile and `.ci/run` install with `npm ci`, which refuses a lock file out of step
 * with package.json (a lock once lacked Biome's non-Linux platform packages, and the image
 * could not be built from the committed tree). `npm ci --dry-run` runs that same check
 * without installing; `--offline` with an empty cache proves it needs no network.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");

/** The commands of the README's "Set up" block, comments removed. */
function setUpCommands(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const block = /## Set up[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  return block
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line !== "");
}

describe("package-lock.json", () => {
  const dir = mkdtempSync(join(tmpdir(), "imageshift-lock-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("is accepted by npm ci", () => {
    for (const file of ["package.json", "package-lock.json"]) copyFileSync(join(ROOT, file), join(dir, file));
    const args = ["ci", "--dry-run", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"];
    const result = spawnSync("npm", [...args, "--cache", join(dir, "cache")], {
      cwd: dir,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(result.status, 0, `npm ci refuses the lock file:\n${result.stderr}`);
  });
});

describe("set-up commands", () => {
  it("are two: the main job on the example rules and the tests, both installing with npm ci", () => {
    assert.deepEqual(setUpCommands(), ["npm ci && npm start", "npm ci && npm test"]);
  });

  it("include the one .ci/run runs", () => {
    const ci = readFileSync(join(ROOT, ".ci", "run"), "utf8").split("\n");
    assert.ok(ci.includes(setUpCommands()[1] as string), ".ci/run runs the README's test command");
  });
});
