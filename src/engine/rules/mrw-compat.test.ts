// RegistryRewriteRule as the Mutating Registry Webhook (MRW v0.5.0) runs it in a cluster:
// every rule sees MRW's normalized name (`nginx` is `docker.io/library/nginx`) and rewrites
// it with Go's Regexp.ReplaceAllString. Each expected output below was recorded by running
// Go's regexp on MRW's normalized name; the rows marked "differs" are the documented places
// where ImageShift reads a reference correctly and MRW does not (ADR 7).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { rulesFromYaml } from "./testing.ts";

function compat(match: string, replace: string, priority?: number): string {
  return `apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: r }
spec:
  rules:
    - match: ${JSON.stringify(match)}
      replace: ${JSON.stringify(replace)}${priority === undefined ? "" : `\n      priority: ${priority}`}
`;
}

function rewrite(match: string, replace: string, image: string) {
  return rulesFromYaml(compat(match, replace)).ruleSet.rewrite(image);
}

const DIGEST = `sha256:${"a".repeat(64)}`;

// [match, replace, image, MRW's output]
const RECORDED: readonly (readonly [string, string, string, string])[] = [
  // Docker Hub names are normalized before matching.
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    "nginx",
    "internal-registry.company.com/dockerhub/library/nginx",
  ],
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    "nginx:1.25",
    "internal-registry.company.com/dockerhub/library/nginx:1.25",
  ],
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    "bitnami/redis:7",
    "internal-registry.company.com/dockerhub/bitnami/redis:7",
  ],
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    "docker.io/nginx:1.0",
    "internal-registry.company.com/dockerhub/library/nginx:1.0",
  ],
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    `nginx@${DIGEST}`,
    `internal-registry.company.com/dockerhub/library/nginx@${DIGEST}`,
  ],
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    `docker.io/library/nginx:1.25@${DIGEST}`,
    `internal-registry.company.com/dockerhub/library/nginx:1.25@${DIGEST}`,
  ],
  // index.docker.io names a registry to MRW: left as written, not folded.
  [
    "^docker\\.io/(.*)",
    "internal-registry.company.com/dockerhub/$1",
    "index.docker.io/nginx",
    "index.docker.io/nginx",
  ],
  // Names with a registry stay as they are.
  [
    "^([^/]+/[^/]+)$",
    "internal-registry.company.com/dockerhub/$1",
    "registry.k8s.io/pause:3.9",
    "internal-registry.company.com/dockerhub/registry.k8s.io/pause:3.9",
  ],
  ["^([^/]+/[^/]+)$", "internal-registry.company.com/dockerhub/$1", "bitnami/redis:7.2", "bitnami/redis:7.2"],
  ["^([^/]+/[^/]+)$", "internal-registry.company.com/dockerhub/$1", "quay.io/org/app:1", "quay.io/org/app:1"],
  // Only the matched text is replaced; the rest is kept.
  ["^quay\\.io", "mirror.corp/quay", "quay.io/org/app:1", "mirror.corp/quay/org/app:1"],
  [
    "^gcr\\.io/",
    "mirror.corp/gcr/",
    "gcr.io/distroless/static:nonroot",
    "mirror.corp/gcr/distroless/static:nonroot",
  ],
  ["app", "svc", "quay.io/org/myapp:1", "quay.io/org/mysvc:1"],
  ["^(.*)$", "dev-registry.local/$1", "nginx", "dev-registry.local/docker.io/library/nginx"],
  // Every non-overlapping match is replaced.
  ["o", "0", "localhost:5000/foo:v1", "l0calh0st:5000/f00:v1"],
  ["(?P<reg>[^/]+)/", "${reg}-", "quay.io/a/b:1", "quay.io-a-b:1"],
  ["ay", "ai", "quay.io/bay/way:1", "quai.io/bai/wai:1"],
  // `${1}` is group 1, followed by text.
  ["^docker\\.io/library/([a-z]+)", "mirror.corp/${1}x", "nginx:1", "mirror.corp/nginxx:1"],
];

describe("RegistryRewriteRule: MRW's normalized name and ReplaceAllString", () => {
  for (const [match, replace, image, expected] of RECORDED) {
    test(`${match} -> ${replace} on ${image}`, () => {
      const result = rewrite(match, replace, image);
      assert.equal(result.error, undefined);
      assert.equal(result.output, expected);
    });
  }

  test("an empty match right after a match is not replaced again (Go's rule)", () => {
    // Go: "a*" on "docker.io/library/baaac" replaces "aaa" once, not "aaa" and then "".
    const result = rewrite("a*", "-", "docker.io/baaac/x:1");
    assert.equal(result.error?.includes('"-d-o-c-k-e-r-.-i-o-/-b-c-/-x-:-1-"'), true, result.error);
  });

  test("a result that is no valid reference is an error, and the image stays", () => {
    const result = rewrite("a", "A", "quay.io/org/app:1");
    assert.equal(result.output, "quay.io/org/app:1");
    assert.match(result.error ?? "", /RegistryRewriteRule\/r spec\.rules\[0\] produced/);
  });

  test("differs from MRW: a registry with a port is a registry, not a Docker Hub namespace", () => {
    // MRW: "docker.io/registry:5000/team/app", then "localhost:5000/registry:5000/team/app".
    const result = rewrite("^docker\\.io/(.*)", "localhost:5000/$1", "registry:5000/team/app");
    assert.equal(result.output, "registry:5000/team/app");
    assert.equal(result.rule, null);
    // MRW: "10.0.0.1/app" is read as "docker.io/10.0.0.1/app"; it names a registry.
    assert.equal(
      rewrite("^docker\\.io/(.*)", "internal.corp/$1", "10.0.0.1:5000/app").output,
      "10.0.0.1:5000/app",
    );
  });

  test("a rule whose result is the same image is no change, and later rules are not tried", () => {
    const rules = rulesFromYaml(`${compat("^(.*)$", "$1", 5)}---
${compat("^docker\\.io/(.*)", "mirror.corp/$1").replace("name: r", "name: s")}`);
    const result = rules.ruleSet.rewrite("nginx");
    assert.equal(result.output, "nginx");
    assert.equal(result.changed, false);
    assert.equal(result.rule?.name, "r");
  });

  test("list order decides among equal priorities, across and within objects", () => {
    const two = `apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: b }
spec:
  rules:
    - { match: "^docker\\\\.io/(.*)", replace: "first.corp/$1" }
    - { match: "^docker\\\\.io/(.*)", replace: "second.corp/$1" }
---
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: a }
spec:
  rules:
    - { match: "^quay\\\\.io/(.*)", replace: "q.corp/$1" }
    - { match: "^docker\\\\.io/library/(.*)", replace: "a.corp/$1", priority: -1 }
`;
    const { ruleSet } = rulesFromYaml(two);
    assert.equal(ruleSet.rewrite("bitnami/redis").output, "first.corp/bitnami/redis");
    // Object "a" sorts before "b", but its rule has a lower priority.
    assert.equal(ruleSet.rewrite("nginx").output, "first.corp/library/nginx");
  });
});
