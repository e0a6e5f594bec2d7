import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { crdsYaml } from "../api/crds.ts";
import { CRDS_HELP } from "./crds.ts";
import { mainHelp } from "./main.ts";
import { runCaptured } from "./testing.ts";

const cli = runCaptured;

const names = (yaml: string) =>
  parseAllDocuments(yaml).map((doc) => (doc.toJS() as { metadata: { name: string } }).metadata.name);

describe("imageshift crds", () => {
  test("prints both CRDs, the same YAML as crdsYaml()", async () => {
    const { code, stdout, stderr } = await cli("crds");
    assert.equal(code, 0);
    assert.equal(stderr, "");
    assert.equal(stdout, crdsYaml());
    assert.deepEqual(names(stdout), ["imageshifts.imageshift.dev", "registryrewriterules.dev.flemzord.fr"]);
  });

  test("--disable-compat-kind prints only ImageShift's own CRD", async () => {
    const { code, stdout } = await cli("crds", "--disable-compat-kind");
    assert.equal(code, 0);
    assert.equal(stdout, crdsYaml({ compat: false }));
    assert.deepEqual(names(stdout), ["imageshifts.imageshift.dev"]);
  });

  test("--help and -h print the usage and no YAML", async () => {
    for (const flag of ["--help", "-h"]) {
      const { code, stdout, stderr } = await cli("crds", flag);
      assert.equal(code, 0);
      assert.equal(stderr, "");
      assert.equal(stdout, CRDS_HELP);
      assert.match(stdout, /^Usage: imageshift crds \[--disable-compat-kind\]/);
      assert.match(stdout, /kubectl apply -f -/);
      assert.doesNotMatch(stdout, /CustomResourceDefinition\n/);
    }
  });

  test("an unknown flag or an argument is a usage error (exit 2)", async () => {
    const unknown = await cli("crds", "--bogus");
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, "");
    assert.match(unknown.stderr, /bogus/);
    const positional = await cli("crds", "extra");
    assert.equal(positional.code, 2);
    assert.match(positional.stderr, /extra/);
  });

  test("the main help lists the command", () => {
    assert.match(mainHelp(), /^ {2}crds {7}print the CustomResourceDefinitions \(YAML\)$/m);
  });
});
