import assert from "node:assert/strict";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createLogger } from "../../telemetry/logger.ts";
import { captureLogger, type LogLine } from "../../telemetry/testing.ts";
import { FileRuleSource } from "./file-source.ts";
import type { CompiledRules } from "./load.ts";

const WAIT_MS = 5_000;
/** Far enough that only the watcher (or an explicit reload) can act within a test. */
const NO_POLL = 600_000;

/** An Imageshift object that swaps one registry. */
function swap(name: string, registry: string, target: string, extra = ""): string {
  return `apiVersion: imageshift.dev/v1
kind: Imageshift
metadata:
  name: ${name}
spec:${extra}
  mappings:
    swap:
      - registry: ${registry}
        target: ${target}
`;
}

/** What the active rules make of an image. */
function rewrite(source: FileRuleSource, image: string): string {
  const rules = source.current();
  assert.ok(rules, "a rule set is loaded");
  return rules.ruleSet.rewrite(image, {}).output;
}

const names = (rules: CompiledRules | undefined) =>
  (rules?.objects ?? []).map((o) => `${o.kind}/${o.name}`).sort();

async function waitFor(what: string, check: () => boolean, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let temp = "";
let count = 0;

before(async () => {
  temp = await mkdtemp(join(tmpdir(), "imageshift-rules-"));
});

after(async () => {
  await rm(temp, { recursive: true, force: true });
});

/** A fresh folder holding `files`. */
async function folder(files: Record<string, string>): Promise<string> {
  const dir = join(temp, `case-${++count}`);
  await mkdir(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

/** Writes beside the target, then renames over it. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

/** Runs `fn` with a started source, always stopping it. */
async function withSource(
  path: string,
  fn: (source: FileRuleSource, lines: LogLine[]) => Promise<void>,
  pollMs = NO_POLL,
): Promise<void> {
  const { logger, lines } = captureLogger();
  const source = new FileRuleSource({ path, logger, pollMs });
  await source.start();
  try {
    await fn(source, lines);
  } finally {
    await source.stop();
  }
}

const DOCKER = swap("hub", "docker.io", "mirror-a.corp/dockerhub");
const QUAY = swap("quay", "quay.io", "quay-a.corp/quay");

describe("FileRuleSource", () => {
  it("loads the folder's rules on start", async () => {
    const dir = await folder({
      "a.yaml": DOCKER,
      "b.yml": QUAY,
      "notes.txt": "not rules",
      ".hidden.yaml": "x: [",
    });
    await withSource(dir, async (source, lines) => {
      assert.deepEqual(names(source.current()), ["Imageshift/hub", "Imageshift/quay"]);
      assert.equal(source.current()?.ruleSet.size, 2);
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25");
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-a.corp/quay/org/app:1");
      assert.ok(lines.some((line) => line.msg === "rules loaded" && line.rules === 2));
    });
  });

  it("loads a single file", async () => {
    const dir = await folder({ "rules.yaml": `${DOCKER}---\n${QUAY}` });
    await withSource(join(dir, "rules.yaml"), async (source) => {
      assert.deepEqual(names(source.current()), ["Imageshift/hub", "Imageshift/quay"]);
    });
  });

  it("picks up an edit that changes a rule's target on reload()", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source) => {
      const before = source.current();
      await replaceFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
      assert.equal(await source.reload(), true);
      assert.notEqual(source.current(), before, "a new rule set was swapped in");
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-b.corp/dockerhub/library/nginx:1.25");
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-a.corp/quay/org/app:1");
    });
  });

  it("picks up an edit through the folder watcher (bounded wait)", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(dir, async (source) => {
      // In place, like an editor.
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
      await waitFor(
        "in-place edit picked up",
        () => rewrite(source, "nginx:1.25") === "mirror-b.corp/dockerhub/library/nginx:1.25",
      );
      // Atomically, like a deployment tool.
      await replaceFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-c.corp/dockerhub"));
      await waitFor(
        "renamed-over edit picked up",
        () => rewrite(source, "nginx:1.25") === "mirror-c.corp/dockerhub/library/nginx:1.25",
      );
      // A new file in the folder.
      await writeFile(join(dir, "b.yaml"), QUAY);
      await waitFor(
        "new file picked up",
        () => rewrite(source, "quay.io/org/app:1") === "quay-a.corp/quay/org/app:1",
      );
    });
  });

  it("follows a ConfigMap volume's ..data symlink swap through the watcher", async () => {
    const dir = join(temp, `case-${++count}`);
    await mkdir(join(dir, "..2026_01_01"), { recursive: true });
    await writeFile(join(dir, "..2026_01_01", "rules.yaml"), DOCKER);
    await symlink("..2026_01_01", join(dir, "..data"));
    await symlink("..data/rules.yaml", join(dir, "rules.yaml"));
    await withSource(dir, async (source) => {
      assert.deepEqual(names(source.current()), ["Imageshift/hub"]);
      await mkdir(join(dir, "..2026_01_02"));
      await writeFile(
        join(dir, "..2026_01_02", "rules.yaml"),
        swap("hub", "docker.io", "mirror-b.corp/dockerhub"),
      );
      await symlink("..2026_01_02", join(dir, "..data_tmp"));
      await rename(join(dir, "..data_tmp"), join(dir, "..data"));
      await waitFor(
        "..data swap picked up",
        () => rewrite(source, "nginx:1.25") === "mirror-b.corp/dockerhub/library/nginx:1.25",
      );
      assert.deepEqual(
        names(source.current()),
        ["Imageshift/hub"],
        "the ..data folders are not read as rules",
      );
    });
  });

  it("picks up edits through the poll when there is no watcher event", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(
      dir,
      async (source) => {
        // Stop the folder watches' influence: only the poll (every 50 ms) can act.
        const { watcher } = source as unknown as { watcher: { watchers: { close(): void }[] } };
        for (const watch of watcher.watchers) watch.close();
        await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-p.corp/dockerhub"));
        await waitFor(
          "poll picked up the edit",
          () => rewrite(source, "nginx:1.25") === "mirror-p.corp/dockerhub/library/nginx:1.25",
        );
      },
      50,
    );
  });

  it("refuses an edit that puts the rule set over budget, and keeps serving the last good set", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(dir, async (source, lines) => {
      const swaps = Array.from({ length: 100_001 }, (_, i) => ({
        registry: `r${i}.corp`,
        target: "m.corp/x",
      }));
      const json = {
        apiVersion: "imageshift.dev/v1",
        kind: "Imageshift",
        metadata: { name: "big" },
        spec: { mappings: { swap: swaps } },
      };
      await writeFile(join(dir, "b.json"), JSON.stringify(json));
      assert.equal(await source.reload(), false);
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25");
      const line = lines.find((l) => l.msg === "rules not reloaded; keeping the last good rule set");
      assert.match(JSON.stringify(line), /100002 rules, more than 100000/, "a.yaml and b.json together");
    });
  });

  it("does not start on a rule set over budget, and says why", async () => {
    const regexSwap = Array.from({ length: 10_001 }, (_, i) => ({
      expression: `^r${i}\\.corp/(.*)$`,
      target: "m.corp/$1",
    }));
    const json = {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name: "big" },
      spec: { mappings: { regexSwap } },
    };
    const dir = await folder({ "big.json": JSON.stringify(json) });
    const source = new FileRuleSource({ path: dir, logger: captureLogger().logger });
    await assert.rejects(
      source.start(),
      /no usable rules in .*: the rule set has 10001 regular-expression rules, more than 10000/,
    );
    await source.stop();
  });

  it("keeps serving the last good rules when an edit adds an alias bomb or a 100,000-deep document", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source, lines) => {
      const bomb = `a: &a [x]\nb: [${Array.from({ length: 150 }, () => "*a").join(", ")}]\n`;
      await writeFile(join(dir, "b.yaml"), `${QUAY}---\n${bomb}`);
      await source.reload();
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-a.corp/quay/org/app:1");
      assert.ok(
        lines.some((line) => /Excessive alias count/.test(JSON.stringify(line))),
        "logged",
      );
      await writeFile(join(dir, "b.yaml"), `${QUAY}x: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`);
      await source.reload();
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-a.corp/quay/org/app:1");
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25");
      assert.ok(
        lines.some((line) => /nested 100000 deep/.test(JSON.stringify(line))),
        "logged",
      );
    });
  });

  it("keeps the last good objects of a file with a YAML syntax error; other files' edits apply", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source, lines) => {
      // One change: a valid edit in a.yaml and a syntax error in b.yaml.
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
      await writeFile(join(dir, "b.yaml"), `${QUAY}  extra: [unclosed\n`);
      assert.equal(await source.reload(), true);
      assert.equal(
        rewrite(source, "nginx:1.25"),
        "mirror-b.corp/dockerhub/library/nginx:1.25",
        "a.yaml's edit applies",
      );
      assert.equal(
        rewrite(source, "quay.io/org/app:1"),
        "quay-a.corp/quay/org/app:1",
        "b.yaml's objects are kept",
      );
      const kept = lines.find(
        (line) => line.msg === "file has YAML errors; keeping the object's last good version",
      );
      assert.ok(kept, "the fallback is logged");
      assert.match(JSON.stringify(kept), /b\.yaml/);

      // Fixed: both edits take effect together.
      await writeFile(join(dir, "b.yaml"), swap("quay", "quay.io", "quay-b.corp/quay"));
      assert.equal(await source.reload(), true);
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-b.corp/dockerhub/library/nginx:1.25");
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-b.corp/quay/org/app:1");
    });
  });

  it("keeps an object's last good version when it becomes invalid, while another object's edit takes effect", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source, lines) => {
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "'NOT VALID!!'"));
      await writeFile(join(dir, "b.yaml"), swap("quay", "quay.io", "quay-b.corp/quay"));
      await source.reload();
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25", "hub kept");
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-b.corp/quay/org/app:1", "quay edited");
      assert.deepEqual(names(source.current()), ["Imageshift/hub", "Imageshift/quay"]);
      assert.ok(
        source
          .current()
          ?.issues.some((issue) => issue.severity === "error" && /NOT VALID/.test(issue.message)),
        "the error is reported",
      );
      assert.ok(
        lines.some(
          (line) =>
            line.msg === "object has errors; keeping its last good version" &&
            line.object === "Imageshift/hub",
        ),
      );

      // Fixed later: the fix takes effect.
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-c.corp/dockerhub"));
      await source.reload();
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-c.corp/dockerhub/library/nginx:1.25");
      assert.equal(source.current()?.issues.filter((issue) => issue.severity === "error").length, 0);
    });
  });

  it("keeps an object's last good version on an object-level error (spec.priority: high)", async () => {
    const dir = await folder({ "rules.yaml": `${DOCKER}---\n${QUAY}` });
    await withSource(dir, async (source) => {
      await writeFile(
        join(dir, "rules.yaml"),
        `${swap("hub", "docker.io", "mirror-b.corp/dockerhub", "\n  priority: high")}---\n${swap("quay", "quay.io", "quay-b.corp/quay")}`,
      );
      await source.reload();
      assert.deepEqual(names(source.current()), ["Imageshift/hub", "Imageshift/quay"]);
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25", "hub kept");
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-b.corp/quay/org/app:1", "quay edited");
      assert.ok(
        source
          .current()
          ?.issues.some((issue) => issue.location.field === "spec.priority" && issue.severity === "error"),
      );
    });
  });

  it("drops a new object that is invalid (there is no last good version of it)", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(dir, async (source) => {
      await writeFile(join(dir, "b.yaml"), swap("quay", "quay.io", "quay-b.corp/quay", "\n  priority: high"));
      await source.reload();
      assert.deepEqual(names(source.current()), ["Imageshift/hub"]);
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay.io/org/app:1");
    });
  });

  it("removes the objects of a deleted file", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source) => {
      await rm(join(dir, "b.yaml"));
      assert.equal(await source.reload(), true);
      assert.deepEqual(names(source.current()), ["Imageshift/hub"]);
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay.io/org/app:1");
      assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25");
    });
  });

  it("removes a deleted file's objects even when they were kept as last good versions", async () => {
    const dir = await folder({ "a.yaml": DOCKER, "b.yaml": QUAY });
    await withSource(dir, async (source) => {
      await writeFile(join(dir, "b.yaml"), swap("quay", "quay.io", "quay-b.corp/quay", "\n  priority: high"));
      await source.reload();
      assert.equal(rewrite(source, "quay.io/org/app:1"), "quay-a.corp/quay/org/app:1", "kept");
      await rm(join(dir, "b.yaml"));
      await source.reload();
      assert.deepEqual(names(source.current()), ["Imageshift/hub"]);
    });
  });

  it("keeps the last good rule set when the path disappears", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(dir, async (source, lines) => {
      const good = source.current();
      await rm(dir, { recursive: true });
      assert.equal(await source.reload(), false);
      assert.equal(source.current(), good);
      assert.ok(lines.some((line) => line.msg === "rules not reloaded; keeping the last good rule set"));
    });
  });

  it("start() rejects for a missing path", async () => {
    const missing = join(temp, "does-not-exist");
    const source = new FileRuleSource({ path: missing, logger: createLogger("silent") });
    await assert.rejects(source.start(), (error: Error) => {
      assert.equal(error.name, "RuleSourceError");
      assert.match(error.message, /does-not-exist.*ENOENT/);
      return true;
    });
    assert.equal(source.current(), undefined);
    await source.stop();
  });

  it("calls onChange listeners once per effective change, not for an identical rewrite", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    const { logger } = captureLogger();
    const source = new FileRuleSource({ path: dir, logger, pollMs: NO_POLL });
    const seen: CompiledRules[] = [];
    source.onChange((rules) => seen.push(rules));
    await source.start();
    try {
      assert.equal(seen.length, 1, "the initial load is announced");
      assert.equal(seen[0], source.current());

      // Identical rewrite, through reload() and through the watcher.
      await writeFile(join(dir, "a.yaml"), DOCKER);
      assert.equal(await source.reload(), false);
      await sleep(400);
      assert.equal(seen.length, 1);

      // Comments and formatting only: the same documents.
      await writeFile(join(dir, "a.yaml"), `# a comment\n${DOCKER.replace("spec:", "spec:   ")}\n\n`);
      assert.equal(await source.reload(), false);
      await sleep(400);
      assert.equal(seen.length, 1);

      // A real change through the watcher: exactly one call, even after the event burst settles.
      await replaceFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
      await waitFor("the change is announced", () => seen.length >= 2);
      await sleep(400);
      assert.equal(seen.length, 2);
      assert.equal(seen[1], source.current());

      // A real change through reload().
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-c.corp/dockerhub"));
      assert.equal(await source.reload(), true);
      assert.equal(await source.reload(), false);
      await sleep(400);
      assert.equal(seen.length, 3);
    } finally {
      await source.stop();
    }
  });

  it("runs one reload at a time: concurrent reloads agree and announce once", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    await withSource(dir, async (source) => {
      let calls = 0;
      source.onChange(() => calls++);
      await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
      const results = await Promise.all([source.reload(), source.reload(), source.reload()]);
      assert.deepEqual(
        results.filter((changed) => changed),
        [true],
      );
      assert.equal(calls, 1);
    });
  });

  it("stops watching on stop()", async () => {
    const dir = await folder({ "a.yaml": DOCKER });
    const source = new FileRuleSource({ path: dir, logger: createLogger("silent"), pollMs: 50 });
    await source.start();
    await source.stop();
    let calls = 0;
    source.onChange(() => calls++);
    await writeFile(join(dir, "a.yaml"), swap("hub", "docker.io", "mirror-b.corp/dockerhub"));
    await sleep(400);
    assert.equal(calls, 0);
    assert.equal(rewrite(source, "nginx:1.25"), "mirror-a.corp/dockerhub/library/nginx:1.25");
  });
});
