/**
 * The files a user of an open-source project looks for at the top of the repository: the
 * licence package.json names, how to contribute, how to report a vulnerability.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");
const read = (file: string) => readFileSync(join(ROOT, file), "utf8");

describe("repository files", () => {
  it("LICENSE is the licence package.json names (Apache-2.0), in full", () => {
    assert.equal(JSON.parse(read("package.json")).license, "Apache-2.0");
    const license = read("LICENSE");
    assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
    assert.match(license, /END OF TERMS AND CONDITIONS/);
    assert.match(license, /Copyright \d{4} The ImageShift Authors/);
  });

  it("CONTRIBUTING.md gives the quick loop and the full suite with scripts that exist", () => {
    const contributing = read("CONTRIBUTING.md");
    const scripts = JSON.parse(read("package.json")).scripts as Record<string, string>;
    const named = [...contributing.matchAll(/npm run ([\w:]+)/g)].map((match) => match[1] as string);
    assert.ok(named.includes("test:unit") && named.includes("typecheck") && named.includes("lint"));
    for (const script of named) assert.ok(scripts[script], `package.json has a "${script}" script`);
    assert.match(contributing, /^npm test$/m);
    for (const script of [...contributing.matchAll(/node(?:_modules\/\.bin\/node)? (scripts\/[\w-]+\.ts)/g)])
      assert.doesNotThrow(() => read(script[1] as string), `${script[1]} exists`);
  });

  it("SECURITY.md says how to report a vulnerability privately", () => {
    assert.match(read("SECURITY.md"), /Report a\s+vulnerability/);
  });
});
