/**
 * docs/install.md's local registry example, run through the real engine with
 * `imageshift rewrite`: the rule as printed, every row of its table, and the extra swap its text
 * suggests for images outside `docker.io/library`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { runCaptured } from "./testing.ts";

const DOC = readFileSync(join(import.meta.dirname, "..", "..", "docs", "install.md"), "utf8");
const SECTION =
  /## Example: Docker Hub's official images from a local registry\n([\s\S]*?)\n## /.exec(DOC)?.[1] ?? "";

interface Swaps {
  spec: { mappings: { swap: { registry: string; target: string }[] } };
}

/** `[input, output]` from the table rows: two backquoted images, the rest is commentary. */
function tableRows(): [string, string][] {
  return [...SECTION.matchAll(/^\| `([^`]+)` \| `([^`]+)`.*\|$/gm)].map(([, input, output]) => [
    input as string,
    output as string,
  ]);
}

async function rewrite(rules: Swaps, images: string[]): Promise<string[]> {
  const file = join(dir, "local-registry.yaml");
  writeFileSync(file, stringify(rules));
  const { code, stdout, stderr } = await runCaptured(
    "rewrite",
    "--rules",
    file,
    "--output",
    "json",
    ...images,
  );
  assert.equal(code, 0, stderr);
  return (JSON.parse(stdout) as { output: string }[]).map((result) => result.output);
}

const dir = mkdtempSync(join(tmpdir(), "imageshift-install-doc-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("docs/install.md, local registry example", () => {
  const yaml = /```yaml\n([\s\S]*?)```/.exec(SECTION)?.[1] ?? "";
  const rules = parse(yaml) as Swaps;

  it("swaps docker.io/library to localhost:5000", () => {
    assert.deepEqual(rules.spec.mappings.swap, [{ registry: "docker.io/library", target: "localhost:5000" }]);
  });

  it("rewrites every image of the table as the table says", async () => {
    const rows = tableRows();
    assert.ok(rows.length >= 5, `table rows found: ${JSON.stringify(rows)}`);
    assert.ok(rows.some(([input, output]) => input === "bitnami/redis:7.2" && output === input));
    assert.deepEqual(
      await rewrite(
        rules,
        rows.map(([input]) => input),
      ),
      rows.map(([, output]) => output),
    );
  });

  it("moves bitnami/redis with the extra swap the text suggests", async () => {
    const suggested = /such as\s+`(\{registry: [^`]+\})`/.exec(SECTION)?.[1] ?? "";
    const extra = parse(suggested) as { registry: string; target: string };
    assert.deepEqual(extra, { registry: "docker.io/bitnami", target: "localhost:5000/bitnami" });
    const both = { spec: { mappings: { swap: [...rules.spec.mappings.swap, extra] } } };
    assert.deepEqual(await rewrite({ ...rules, ...both }, ["bitnami/redis:7.2", "nginx:1.25"]), [
      "localhost:5000/bitnami/redis:7.2",
      "localhost:5000/nginx:1.25",
    ]);
  });
});
