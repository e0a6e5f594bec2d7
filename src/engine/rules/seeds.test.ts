// The seed documents' examples are promises to users: each must work as written
// (test/fixtures/seeds holds them verbatim). RegistryRewriteRule outputs are the Mutating
// Registry Webhook's, as its code runs in a cluster; docs/rules.md explains the places where
// a document contradicts itself, RE2 or MRW's code.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { compileDocuments, parseRuleText } from "./load.ts";
import type { EvaluationContext } from "./rule.ts";

const SEEDS = new URL("../../../test/fixtures/seeds/", import.meta.url);

function objectsOf(file: string) {
  const { documents, issues } = parseRuleText(readFileSync(new URL(file, SEEDS), "utf8"), file);
  assert.deepEqual(issues, []);
  return documents;
}

/** Validation warnings of one seed object, as `field: message`. */
function warningsOf(file: string, name: string): string[] {
  const document = objectsOf(file).find(
    (doc) => (doc.value as { metadata: { name: string } }).metadata.name === name,
  );
  assert.ok(document, `${name} is in ${file}`);
  return compileDocuments([document])
    .issues.filter((issue) => issue.severity === "warning")
    .map((issue) => `${issue.location.field}: ${issue.message}`);
}

/** Rewrites with one seed object alone, as a user who applied just that example. */
function rewriterFor(file: string, name: string) {
  const document = objectsOf(file).find(
    (doc) => (doc.value as { metadata: { name: string } }).metadata.name === name,
  );
  assert.ok(document, `${name} is in ${file}`);
  const compiled = compileDocuments([document]);
  assert.deepEqual(
    compiled.issues.filter((issue) => issue.severity === "error"),
    [],
  );
  return (image: string, context: EvaluationContext = {}) => compiled.ruleSet.rewrite(image, context).output;
}

describe("Mutating Registry Webhook write-up", () => {
  const file = "mutating-registry-webhook.yaml";

  test("docker-hub-to-ecr: every Docker Hub image, as MRW normalizes it, and two-component names", () => {
    const rewrite = rewriterFor(file, "docker-hub-to-ecr");
    // The write-up's prose says ".../docker-hub/nginx:latest"; its rule and MRW's code give this.
    assert.equal(
      rewrite("docker.io/nginx:latest"),
      "internal-registry.company.com/dockerhub/library/nginx:latest",
    );
    assert.equal(rewrite("nginx"), "internal-registry.company.com/dockerhub/library/nginx");
    assert.equal(rewrite("nginx:1.25"), "internal-registry.company.com/dockerhub/library/nginx:1.25");
    assert.equal(rewrite("bitnami/redis:7.2"), "internal-registry.company.com/dockerhub/bitnami/redis:7.2");
    // The second rule sees normalized names, so it catches one-component images that name a
    // registry (MRW does the same); validation warns about it (see the probe test below).
    assert.equal(
      rewrite("registry.k8s.io/pause:3.9"),
      "internal-registry.company.com/dockerhub/registry.k8s.io/pause:3.9",
    );
    assert.equal(rewrite("quay.io/org/app:1"), "quay.io/org/app:1");
  });

  test("docker-hub-to-ecr: the second rule's reach is reported at validation", () => {
    const warnings = warningsOf(file, "docker-hub-to-ecr");
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0] ?? "", /^spec\.rules\[1\]\.match: /);
    assert.ok(
      warnings[0]?.includes(
        "registry.k8s.io/pause:3.9 -> internal-registry.company.com/dockerhub/registry.k8s.io/pause:3.9",
      ),
      warnings[0],
    );
  });

  // MRW (Go's regexp) reads "\\." as a backslash then any character, so this rule never fires
  // there; ImageShift reads the dots as meant and says so (docs/rules.md, docs/migrating-from-mrw.md).
  test("multi-registry-routing: double-escaped dots match the registries, with a warning", () => {
    assert.match(warningsOf(file, "multi-registry-routing").join("\n"), /read the doubled backslashes/);
    const rewrite = rewriterFor(file, "multi-registry-routing");
    assert.equal(
      rewrite("gcr.io/distroless/static:nonroot"),
      "cache.internal.com/gcr.io/distroless/static:nonroot",
    );
    assert.equal(
      rewrite("quay.io/prometheus/node-exporter:v1.8.1"),
      "cache.internal.com/quay.io/prometheus/node-exporter:v1.8.1",
    );
    assert.equal(
      rewrite("ghcr.io/fluxcd/flux-cli:v2.3.0"),
      "cache.internal.com/ghcr.io/fluxcd/flux-cli:v2.3.0",
    );
    assert.equal(rewrite("docker.io/library/nginx"), "docker.io/library/nginx");
    // "gcrXio" would match "gcr\\.io" read literally as "any character": it must not.
    assert.equal(rewrite("gcrxio.example/a"), "gcrxio.example/a");
  });

  // MRW's Go regexp refuses the lookahead and drops the rule; ImageShift translates it.
  test("enterprise-cache: everything but the internal registry, normalized, without double rewrites", () => {
    const rewrite = rewriterFor(file, "enterprise-cache");
    assert.equal(rewrite("nginx:1.25"), "internal-registry.company.com/cache/docker.io/library/nginx:1.25");
    assert.equal(
      rewrite(`ghcr.io/org/app@sha256:${"e".repeat(64)}`),
      `internal-registry.company.com/cache/ghcr.io/org/app@sha256:${"e".repeat(64)}`,
    );
    assert.equal(
      rewrite("internal-registry.company.com/cache/nginx:1.25"),
      "internal-registry.company.com/cache/nginx:1.25",
    );
  });

  test("gradual-migration: only in the listed namespaces", () => {
    const rewrite = rewriterFor(file, "gradual-migration");
    assert.equal(
      rewrite("old-registry.company.com/team/app:2.0", { namespace: "canary" }),
      "new-registry.company.com/team/app:2.0",
    );
    assert.equal(
      rewrite("old-registry.company.com/team/app:2.0", { namespace: "staging" }),
      "new-registry.company.com/team/app:2.0",
    );
    assert.equal(
      rewrite("old-registry.company.com/team/app:2.0", { namespace: "production" }),
      "old-registry.company.com/team/app:2.0",
    );
    assert.equal(rewrite("old-registry.company.com/team/app:2.0"), "old-registry.company.com/team/app:2.0");
  });

  test("isolated-dev: every image", () => {
    const rewrite = rewriterFor(file, "isolated-dev");
    assert.equal(rewrite("nginx"), "dev-registry.local/docker.io/library/nginx");
    assert.equal(rewrite("gcr.io/a/b:1"), "dev-registry.local/gcr.io/a/b:1");
  });
});

describe("ImageShift introduction", () => {
  const file = "imageshift-introduction.yaml";
  const all = compileDocuments(objectsOf(file));

  test("air-gapped: Docker Hub, gcr.io and ghcr.io go to the internal mirror", () => {
    const rewrite = (image: string) => all.ruleSet.rewrite(image).output;
    assert.equal(rewrite("nginx:1.25"), "internal-registry.corp/dockerhub/library/nginx:1.25");
    assert.equal(rewrite("docker.io/bitnami/redis"), "internal-registry.corp/dockerhub/bitnami/redis");
    assert.equal(
      rewrite(`gcr.io/distroless/base@sha256:${"0".repeat(64)}`),
      `internal-registry.corp/gcr/distroless/base@sha256:${"0".repeat(64)}`,
    );
    assert.equal(
      rewrite(`ghcr.io/org/tool:v1@sha256:${"1".repeat(64)}`),
      `internal-registry.corp/ghcr/org/tool:v1@sha256:${"1".repeat(64)}`,
    );
    assert.equal(rewrite("quay.io/org/app:1"), "quay.io/org/app:1");
  });

  test("multi-region, caching and development targets, by namespace labels", () => {
    const rewrite = (labels: Record<string, string>) =>
      all.ruleSet.rewrite("nginx:1.25", { namespaceLabels: labels }).output;
    assert.equal(
      rewrite({ region: "us-west-2" }),
      "us-west-2.mirror.example.com/dockerhub/library/nginx:1.25",
    );
    assert.equal(rewrite({ cache: "true" }), "cache.example.com/docker/library/nginx:1.25");
    assert.equal(rewrite({ env: "dev" }), "localhost:5000/library/nginx:1.25");
  });
});
