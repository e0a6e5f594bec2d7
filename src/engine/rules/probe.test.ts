import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PROBE_IMAGES } from "./probe.ts";
import { rulesFromYaml } from "./testing.ts";

function compatWarnings(match: string, replace: string): string[] {
  const { issues } = rulesFromYaml(`apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: r }
spec:
  rules:
    - match: '${match}'
      replace: '${replace}'
`);
  return issues.filter((issue) => issue.severity === "warning").map((issue) => issue.message);
}

describe("probe warnings: a rule that reaches registries its pattern does not name", () => {
  test("the write-up's 'images without explicit registry' rule names what it really catches", () => {
    const [warning, ...rest] = compatWarnings(
      "^([^/]+/[^/]+)$",
      "internal-registry.company.com/dockerhub/$1",
    );
    assert.deepEqual(rest, []);
    assert.ok(
      warning?.startsWith('pattern "^([^/]+/[^/]+)$" also catches images of registries it does not name'),
    );
    assert.match(warning ?? "", /nginx is docker\.io\/library\/nginx/);
    assert.ok(
      warning?.includes(
        "registry.k8s.io/pause:3.9 -> internal-registry.company.com/dockerhub/registry.k8s.io/pause:3.9",
      ),
    );
    // A result that is no valid reference is shown as such.
    assert.ok(warning?.includes("localhost:5000/app:dev -> an invalid reference"), warning);
  });

  test("an unanchored pattern that names no registry is reported with its examples", () => {
    const [warning] = compatWarnings("app", "svc");
    assert.ok(warning?.includes("localhost:5000/app:dev -> localhost:5000/svc:dev"), warning);
    assert.ok(warning?.includes("team/app:1.0 -> "), warning);
  });

  test("more than three examples are counted, not listed", () => {
    const [warning] = compatWarnings("^([a-z]+)\\.", "mirror.corp/$1.");
    assert.match(warning ?? "", /\(and \d+ more\)$/);
  });

  test("rules that name what they catch, pin a registry or catch everything get no warning", () => {
    assert.deepEqual(compatWarnings("^docker\\.io/(.*)", "mirror.corp/$1"), []);
    assert.deepEqual(compatWarnings("^quay\\.io", "mirror.corp/quay"), []);
    assert.deepEqual(compatWarnings("^(gcr|ghcr)\\.io/(.*)", "mirror.corp/$1/$2"), []);
    assert.deepEqual(compatWarnings("^(.*)$", "dev-registry.local/$1"), []);
    assert.deepEqual(compatWarnings("^(?!internal-registry\\.)(.*)$", "internal-registry.corp/$1"), []);
    // ECR hosts are named by their domain.
    assert.deepEqual(
      compatWarnings("^(\\d+)\\.dkr\\.ecr\\.([^.]+)\\.amazonaws\\.com/(.*)$", "mirror.corp/ecr/$3"),
      [],
    );
  });

  test("Imageshift regexSwap expressions are probed on the canonical name", () => {
    const { issues } = rulesFromYaml(`apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: i }
spec:
  mappings:
    regexSwap:
      - { expression: '^([^/]+)/([^/]+)$', target: 'mirror.corp/$2' }
`);
    const warnings = issues.filter((issue) => issue.severity === "warning");
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.location.field, "spec.mappings.regexSwap[0].expression");
    assert.match(warnings[0]?.message ?? "", /regexSwap expressions see the canonical name/);
  });

  test("the probes are valid images from several registries", () => {
    assert.ok(PROBE_IMAGES.length >= 10);
    const hosts = new Set(PROBE_IMAGES.map((image) => image.split("/")[0]));
    assert.ok(hosts.size >= 10);
  });
});
