import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { countRules } from "./budget.ts";
import { compileDocuments, RULE_SET_LOCATION, type RuleDocument } from "./load.ts";

function regexDocument(name: string, expressions: string[], exclude: string[] = []): RuleDocument {
  return {
    location: { source: name },
    value: {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name },
      spec: {
        exclude,
        mappings: { regexSwap: expressions.map((expression) => ({ expression, target: "m.corp/$1" })) },
      },
    },
  };
}

function swapDocument(name: string, n: number): RuleDocument {
  const swap = Array.from({ length: n }, (_, i) => ({ registry: `r${i}.corp`, target: `m.corp/r${i}` }));
  return {
    location: { source: name },
    value: {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name },
      spec: { mappings: { swap } },
    },
  };
}

describe("rule-set budget", () => {
  test("10,000 regex rules fit; one more is refused as a whole, with one error naming the limit", () => {
    const rules = (n: number) => Array.from({ length: n }, (_, i) => `^r${i}\\.corp/(.*)$`);
    const fits = compileDocuments([regexDocument("a", rules(6_000)), regexDocument("b", rules(4_000))]);
    assert.equal(fits.overBudget, undefined);
    assert.equal(fits.ruleSet.size, 10_000);

    const over = compileDocuments([regexDocument("a", rules(6_000)), regexDocument("b", rules(4_001))]);
    assert.equal(over.ruleSet.size, 0);
    assert.match(
      over.overBudget ?? "",
      /^the rule set has 10001 regular-expression rules, more than 10000; the rule set is refused as a whole/,
    );
    const errors = over.issues.filter((issue) => issue.severity === "error");
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0]?.location, RULE_SET_LOCATION);
  });

  test("more than 100,000 rules are refused before any is compiled", () => {
    const over = compileDocuments([swapDocument("a", 60_000), swapDocument("b", 40_001)]);
    assert.match(over.overBudget ?? "", /^the rule set has 100001 rules, more than 100000/);
    assert.deepEqual(over.objects, [], "nothing was compiled");
  });

  test("patterns tried on every image are budgeted: unindexed regular expressions and excludes", () => {
    const unindexed = Array.from({ length: 200 }, (_, i) => `([a-z]+)\\.r${i}/`);
    const excludes = Array.from({ length: 57 }, (_, i) => `^x${i}`);
    const compiled = compileDocuments([regexDocument("a", unindexed, excludes)]);
    assert.match(compiled.overBudget ?? "", /257 patterns tried on every image/);
    const objects = compileDocuments([regexDocument("a", unindexed, excludes.slice(1))]);
    assert.equal(objects.overBudget, undefined);
    const rules = objects.objects.flatMap((object) => [...object.rules]);
    assert.deepEqual(countRules(rules), { rules: 200, regex: 200, alwaysTried: 256 });
  });
});
