import assert from "node:assert/strict";
import { test } from "node:test";
import { ruleField, StringTable } from "./compact.ts";

test("StringTable gives one shared copy of equal strings, and keeps every part of a reference", () => {
  const strings = new StringTable();
  const a = strings.get(["mirror", ".corp"].join(""));
  assert.equal(strings.get(`mirror${".corp"}`), a);
  assert.equal(a, "mirror.corp");
  const digest = `sha256:${"a".repeat(64)}`;
  for (const reference of [
    { domain: "docker.io", path: "library/nginx" },
    { domain: "docker.io", path: "library/nginx", tag: "1.25" },
    { domain: "docker.io", path: "library/nginx", digest },
    { domain: "docker.io", path: "library/nginx", tag: "1.25", digest },
  ]) {
    const copy = strings.reference(reference);
    assert.deepEqual(copy, reference);
    assert.equal(copy.domain, strings.get("docker.io"));
  }
});

test("ruleField builds the field path of a rule", () => {
  assert.equal(ruleField("mappings.swap", 12), "spec.mappings.swap[12]");
  assert.equal(ruleField("rules", 0), "spec.rules[0]");
});
