/**
 * charts/imageshift/README.md is generated from values.yaml's comments by scripts/chart-readme.ts:
 * it is fresh, it lists every value with its default, and comments land on the value they sit above.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { CHART_DIR, README_FILE, renderReadme, valueRows } from "../../scripts/chart-readme.ts";

const VALUES_TEXT = readFileSync(join(CHART_DIR, "values.yaml"), "utf8");

describe("charts/imageshift/README.md", () => {
  it("is what scripts/chart-readme.ts renders from values.yaml (run it after changing values.yaml)", () => {
    assert.ok(
      readFileSync(README_FILE, "utf8") === renderReadme(),
      "charts/imageshift/README.md is stale: run `node scripts/chart-readme.ts`",
    );
  });

  it("has a row with the default of every value in values.yaml", () => {
    const rows = new Map(valueRows(VALUES_TEXT).map((row) => [row.key, row]));
    const walk = (value: unknown, path: string): void => {
      if (
        value !== null &&
        typeof value === "object" &&
        !Array.isArray(value) &&
        Object.keys(value).length > 0
      ) {
        for (const [key, child] of Object.entries(value)) walk(child, path ? `${path}.${key}` : key);
        return;
      }
      assert.equal(rows.get(path)?.default, JSON.stringify(value), path);
      assert.ok(renderReadme().includes(`| \`${path}\` | \`${JSON.stringify(value)}\` |`), path);
    };
    walk(parse(VALUES_TEXT), "");
  });
});

describe("valueRows: which comment describes which value", () => {
  const rows = (source: string) => valueRows(source).map((row) => [row.key, row.default, row.description]);

  it("the file's header is not the first value's description; the comment after the blank line is", () => {
    assert.deepEqual(rows("# Header.\n\n# First.\nfirst: 1\n# Second,\n# on two lines.\nsecond: b\n"), [
      ["first", "1", "First."],
      ["second", '"b"', "Second, on two lines."],
    ]);
    assert.deepEqual(rows("# Header only.\n\nfirst: 1\n"), [["first", "1", ""]]);
  });

  it("a comment above a map describes the map; above a map's first key, that key", () => {
    assert.deepEqual(
      rows("top: 0\n# The group.\ngroup:\n  # Its first.\n  a: x\n  b: []\n  c: {}\nplain:\n  d: true\n"),
      [
        ["top", "0", ""],
        ["group", undefined, "The group."],
        ["group.a", '"x"', "Its first."],
        ["group.b", "[]", ""],
        ["group.c", "{}", ""],
        ["plain.d", "true", ""],
      ],
    );
  });

  it("pipes are escaped, and < > outside code spans", () => {
    const readme = renderReadme();
    assert.match(readme, /\(&lt;release&gt;-imageshift, or &lt;release&gt;/);
    assert.match(readme, /`<namespaceLabel>=enabled`/);
  });
});
