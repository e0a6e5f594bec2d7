import assert from "node:assert/strict";
import path from "node:path";
import { before, describe, test } from "node:test";
import fc from "fast-check";
import { type ImageReference, parseReference } from "../image/reference.ts";
import { compileDocuments, loadRules } from "./load.ts";
import type { EvaluationContext } from "./rule.ts";
import type { RewriteResult, RuleSet } from "./ruleset.ts";

const RUNS = { numRuns: 250 } as const;
const EXAMPLES = path.join(import.meta.dirname, "..", "..", "..", "examples");

// ---------------------------------------------------------------------------
// Rule sets under test.
// ---------------------------------------------------------------------------

let examples: RuleSet;

/** An Imageshift catch-all over the canonical reference. */
const catchAll = compileDocuments([
  {
    location: { source: "catch-all" },
    value: {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name: "catch-all" },
      spec: { mappings: { regexSwap: [{ expression: "^(.*)$", target: "mirror.local/$1" }] } },
    },
  },
]);

/** RegistryRewriteRule catch-alls over the image as written, one with a leading ^(?!…). */
const compatCatchAll = compileDocuments([
  {
    location: { source: "compat-catch-all" },
    value: {
      apiVersion: "dev.flemzord.fr/v1alpha1",
      kind: "RegistryRewriteRule",
      metadata: { name: "compat-catch-all" },
      spec: {
        rules: [
          {
            match: "^(?!internal-registry\\.)(?P<image>.*)$",
            replace: "internal-registry.corp/${image}",
            priority: 1,
          },
          { match: "^(.*)$", replace: "mirror.local/$1" },
        ],
      },
    },
  },
]);

before(async () => {
  const loaded = await loadRules(EXAMPLES);
  assert.deepEqual(
    loaded.issues.filter((issue) => issue.severity === "error"),
    [],
  );
  examples = loaded.ruleSet;
  assert.deepEqual(catchAll.issues, []);
  assert.equal(catchAll.ruleSet.size, 1);
  assert.deepEqual(compatCatchAll.issues, []);
  assert.equal(compatCatchAll.ruleSet.size, 2);
});

// ---------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------

const chars = (text: string): fc.Arbitrary<string> => fc.constantFrom(...text.split(""));
const LOWER = "abcdefghijklmnopqrstuvwxyz";
const DIGITS = "0123456789";

const component = fc
  .tuple(
    fc.string({ unit: chars(LOWER + DIGITS), minLength: 1, maxLength: 6 }),
    fc.option(
      fc.tuple(
        fc.constantFrom(".", "_", "__", "-", "--"),
        fc.string({ unit: chars(LOWER + DIGITS), minLength: 1, maxLength: 4 }),
      ),
    ),
  )
  .map(([head, tail]) => (tail ? head + tail[0] + tail[1] : head));

const domain = fc.constantFrom(
  "",
  "docker.io/",
  "index.docker.io/",
  "gcr.io/",
  "ghcr.io/",
  "quay.io/",
  "registry.k8s.io/",
  "localhost:5000/",
  "[::1]:5000/",
  "internal-registry.corp/",
  "internal-registry.company.com/",
  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
  "42.dkr.ecr.us-east-2.amazonaws.com/",
  "Registry.Example:443/",
);

const tag = fc.oneof(
  fc.constantFrom("latest", "1.25", "1.25-alpine", "v2.53.0", "nonroot", "3.10"),
  fc
    .string({ unit: chars(`${LOWER}${DIGITS}._-`), minLength: 1, maxLength: 10 })
    .filter((t) => /^\w/.test(t)),
);
const digest = fc
  .string({ unit: chars("0123456789abcdef"), minLength: 64, maxLength: 64 })
  .map((hex) => `sha256:${hex}`);

/** Mostly valid references in the shapes pods use, including the examples' registries. */
const plausibleImage = fc
  .tuple(
    domain,
    fc.array(component, { minLength: 1, maxLength: 3 }),
    fc.option(tag, { nil: undefined }),
    fc.option(digest, { nil: undefined }),
  )
  .map(
    ([d, parts, t, g]) =>
      `${d}${parts.join("/")}${t === undefined ? "" : `:${t}`}${g === undefined ? "" : `@${g}`}`,
  );

/** Near misses: strings over the reference alphabet, most of them invalid. */
const imageAlphabetString = fc.string({ unit: chars("abcAB019:/@._-[]"), maxLength: 40 });

const anyInput = fc.oneof(
  { weight: 4, arbitrary: plausibleImage },
  { weight: 2, arbitrary: imageAlphabetString },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 60 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("", " ", "nginx ", "a".repeat(300), "a".repeat(2000), `${"a/".repeat(200)}a`),
  },
);

const labels = fc.dictionary(
  fc.constantFrom("team", "tier", "env", "app"),
  fc.constantFrom("a", "web", "prod", ""),
  {
    maxKeys: 3,
  },
);
const context: fc.Arbitrary<EvaluationContext> = fc.record(
  {
    namespace: fc.constantFrom("default", "prod", "kube-system"),
    namespaceLabels: labels,
    podLabels: labels,
  },
  { requiredKeys: [] },
);

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

function parsed(image: string): ImageReference {
  const result = parseReference(image);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(image)} to parse, got: ${result.error}`);
  return result.reference;
}

/** The invariants every result must satisfy; returns the result for further checks. */
function checked(ruleSet: RuleSet, input: string, ctx?: EvaluationContext): RewriteResult {
  let result: RewriteResult;
  assert.doesNotThrow(() => {
    result = ruleSet.rewrite(input, ctx);
  });
  result = result!;
  assert.equal(result.input, input);
  assert.equal(typeof result.changed, "boolean");
  if (!result.changed) {
    assert.equal(result.output, input, "output === input when unchanged");
  } else {
    assert.equal(result.error, undefined);
    assert.ok(result.rule, "a change names its rule");
    assert.notEqual(result.output, input);
    assert.ok(parseReference(result.output).ok, `output ${JSON.stringify(result.output)} must parse`);
  }
  if (result.error === undefined && result.rule === null) assert.equal(result.changed, false);
  if (!parseReference(input).ok) {
    assert.equal(result.changed, false);
    assert.equal(result.rule, null);
    assert.match(result.error ?? "", /invalid image reference/);
  }
  return result;
}

/** Tag and digest survive the rewrite. */
function keepsTagAndDigest(result: RewriteResult): void {
  const before = parsed(result.input);
  const after = parsed(result.output);
  assert.equal(after.tag, before.tag, `tag of ${result.input} -> ${result.output}`);
  assert.equal(after.digest, before.digest, `digest of ${result.input} -> ${result.output}`);
}

describe("RuleSet.rewrite properties", () => {
  test("examples: never throws, unchanged means output === input, changes parse", () => {
    fc.assert(
      fc.property(anyInput, fc.option(context, { nil: undefined }), (input, ctx) => {
        checked(examples, input, ctx);
      }),
      RUNS,
    );
  });

  test("examples: swap and regex rules keep the input's tag and digest", () => {
    let changes = 0;
    fc.assert(
      fc.property(plausibleImage, (input) => {
        const result = checked(examples, input);
        if (!result.changed) return;
        changes++;
        assert.ok(result.rule);
        if (result.rule.field.startsWith("spec.mappings.exactSwap")) {
          // The one exactSwap pins its own tag.
          assert.equal(result.output, "internal-registry.corp/approved/nginx:1.25-alpine");
        } else {
          keepsTagAndDigest(result);
        }
        assert.match(result.output, /^internal-registry\.corp\//);
      }),
      RUNS,
    );
    assert.ok(changes > 0, "the generator reaches the example rules");
  });

  test("Imageshift catch-all ^(.*)$ -> mirror.local/$1: never throws, changes parse and keep tag and digest", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const result = checked(catchAll.ruleSet, input);
        if (!result.changed) return;
        keepsTagAndDigest(result);
        assert.equal(result.output, `mirror.local/${formatted(result.input)}`);
      }),
      RUNS,
    );
  });

  test("RegistryRewriteRule catch-alls (with a leading ^(?!…)): never throws, changes parse", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const result = checked(compatCatchAll.ruleSet, input);
        if (!result.changed) return;
        keepsTagAndDigest(result);
        // The rules see the Mutating Registry Webhook's normalized name (docs/rules.md).
        const seen = mrwName(input);
        if (seen.startsWith("internal-registry.")) {
          assert.equal(result.output, `mirror.local/${seen}`);
          assert.equal(result.rule?.field, "spec.rules[1]");
        } else {
          assert.equal(result.output, `internal-registry.corp/${seen}`);
          assert.equal(result.rule?.field, "spec.rules[0]");
        }
      }),
      RUNS,
    );
  });

  test("the Imageshift catch-all decides every valid image: a change, or an error naming the rule", () => {
    fc.assert(
      fc.property(plausibleImage, (input) => {
        if (!parseReference(input).ok) return;
        const result = checked(catchAll.ruleSet, input);
        assert.deepEqual(result.rule, {
          kind: "Imageshift",
          name: "catch-all",
          field: "spec.mappings.regexSwap[0]",
        });
        // "mirror.local/localhost:5000/x" is no reference: the port lands in the path.
        if (!result.changed)
          assert.match(result.error ?? "", /catch-all spec\.mappings\.regexSwap\[0\] produced invalid/);
      }),
      RUNS,
    );
  });
});

/** Docker Hub images in canonical form; every other image (and index.docker.io/…) as written. */
function mrwName(image: string): string {
  const { domain } = parsed(image);
  return domain === "docker.io" && !image.startsWith("index.docker.io/") ? formatted(image) : image;
}

/** The canonical form of a valid reference. */
function formatted(image: string): string {
  const reference = parsed(image);
  let text = `${reference.domain}/${reference.path}`;
  if (reference.tag !== undefined) text += `:${reference.tag}`;
  if (reference.digest !== undefined) text += `@${reference.digest}`;
  return text;
}
