import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatIssue } from "../../errors.ts";
import { rulesFromYaml } from "./testing.ts";
import { compileVerify, compileVerifyAnnotation } from "./verify.ts";

const errorsOf = (yaml: string) =>
  rulesFromYaml(yaml, { allowErrors: true })
    .issues.filter((issue) => issue.severity === "error")
    .map(formatIssue);

const imageshift = (verify: string) => `apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: checked }
spec:
  verify: ${verify}
  mappings:
    swap: [{ registry: docker.io, target: mirror.corp/hub }]
    exactSwap: [{ reference: quay.io/a/b, target: other.corp/b }]
    regexSwap: [{ expression: '^ghcr\\.io/(.*)$', target: 'gh.corp/$1' }, { expression: '^(.*)/x$', target: '$1/y' }]
`;

const compat = (annotation: string) => `apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata:
  name: legacy
  annotations: { imageshift.dev/verify: '${annotation}' }
spec:
  rules: [{ match: '^docker.io/(.*)$', replace: 'mirror.corp/$1' }]
`;

describe("verification policy", () => {
  test("None, or no policy, means no checks", () => {
    assert.deepEqual(compileVerify(undefined), { problems: [] });
    assert.deepEqual(compileVerify({ mode: "None", whenAbsent: "NextRule" }), { problems: [] });
  });

  test("defaults: keep the original when absent, trust the rule when unknown", () => {
    const { policy } = compileVerify({ mode: "Presence" });
    assert.deepEqual(policy, {
      mode: "Presence",
      whenAbsent: "KeepOriginal",
      whenUnknown: "Rewrite",
      insecure: new Set(),
    });
  });

  test("an Imageshift's policy reaches every rule and the compiled object", () => {
    const { objects, ruleSet } = rulesFromYaml(
      imageshift(
        "{ mode: Digest, whenAbsent: NextRule, whenUnknown: KeepOriginal, credentialsSecret: mirror-pull, insecureRegistries: [mirror.corp] }",
      ),
    );
    const [object] = objects;
    assert.equal(object?.verify?.mode, "Digest");
    assert.equal(object?.verify?.credentials, "mirror-pull");
    assert.deepEqual([...(object?.verify?.insecure ?? [])], ["mirror.corp"]);
    // Literal targets only: the catch-all template names no host.
    assert.deepEqual(object?.targetRegistries, ["gh.corp", "mirror.corp", "other.corp"]);
    for (const rule of object?.rules ?? []) assert.equal(rule.scope.verify, object?.verify);
    assert.equal(ruleSet.rewrite("nginx:1.25").verify?.whenAbsent, "NextRule");
  });

  test("a bad policy is an error on the object, naming the field", () => {
    assert.deepEqual(
      errorsOf(imageshift("{ mode: Presence, insecureRegistries: ['mirror.corp/path', 'bad host'] }")),
      [
        'error: test.yaml#0: spec.verify.insecureRegistries[0]: "mirror.corp/path" must be a registry host, without a path',
        'error: test.yaml#0: spec.verify.insecureRegistries[1]: invalid registry "bad host": host "bad host" is invalid',
      ],
    );
    assert.match(errorsOf(imageshift("{ mode: Sometimes }")).join("\n"), /spec\.verify\.mode/);
    assert.match(
      errorsOf(imageshift("{ mode: Presence, credentialsSecret: Not_A_Name }")).join("\n"),
      /spec\.verify\.credentialsSecret/,
    );
  });

  test("a RegistryRewriteRule takes the same policy from its annotation, its spec untouched", () => {
    const { objects, ruleSet } = rulesFromYaml(compat('{"mode":"Presence","whenAbsent":"NextRule"}'));
    assert.equal(objects[0]?.verify?.whenAbsent, "NextRule");
    assert.deepEqual(objects[0]?.targetRegistries, ["mirror.corp"]);
    const result = ruleSet.rewrite("nginx:1.25");
    assert.equal(result.output, "mirror.corp/library/nginx:1.25");
    assert.equal(result.verify?.mode, "Presence");
  });

  test("a bad annotation names the annotation and the problem", () => {
    assert.deepEqual(
      compileVerifyAnnotation({ "imageshift.dev/verify": "{mode" }).problems.map((p) => p.field),
      ['metadata.annotations["imageshift.dev/verify"]'],
    );
    assert.match(
      compileVerifyAnnotation({ "imageshift.dev/verify": "{mode" }).problems[0]?.message ?? "",
      /^not JSON/,
    );
    const wrong = compileVerifyAnnotation({ "imageshift.dev/verify": '{"whenUnknown":"Panic"}' });
    assert.equal(wrong.problems[0]?.field, 'metadata.annotations["imageshift.dev/verify"].whenUnknown');
    const list = compileVerifyAnnotation({
      "imageshift.dev/verify": '{"mode":"Presence","insecureRegistries":["a b"]}',
    });
    assert.equal(
      list.problems[0]?.field,
      'metadata.annotations["imageshift.dev/verify"].insecureRegistries[0]',
    );
    assert.deepEqual(compileVerifyAnnotation({ "imageshift.dev/verify": "[]" }).problems.length, 1);
    assert.match(
      errorsOf(compat("{mode")).join("\n"),
      /test\.yaml#0: metadata\.annotations\["imageshift\.dev\/verify"\]: not JSON/,
    );
  });

  test("no annotation: no policy", () => {
    assert.deepEqual(compileVerifyAnnotation(undefined), { problems: [] });
    assert.deepEqual(compileVerifyAnnotation({ other: "x" }), { problems: [] });
  });
});
