// The seed documents' examples are promises to users: each must work as written
// (test/fixtures/seeds holds them verbatim; docs/rules.md explains the two places
// where a document contradicts itself or RE2).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { compileDocuments, parseRuleText } from "./load.ts";
import type { EvaluationContext } from "./rule.ts";

const SEEDS = new URL("../../test/fixtures/seeds/", import.meta.url);

function objectsOf(file: string) {
  const { documents, issues } = parseRuleText(readFileSync(new URL(file, SEEDS), "utf8"), file);
  assert.deepEqual(issues, []);
  return documents;
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

  test("docker-hub-to-ecr: docker.io images and registry-less two-component names", () => {
    const rewrite = rewriterFor(file, "docker-hub-to-ecr");
    // The write-up says ".../docker-hub/nginx:latest" but its own rule says "dockerhub": the rule wins.
    assert.equal(rewrite("docker.io/nginx:latest"), "internal-registry.company.com/dockerhub/nginx:latest");
    assert.equal(rewrite("bitnami/redis:7.2"), "internal-registry.company.com/dockerhub/bitnami/redis:7.2");
    // Neither rule matches a bare single-component name, exactly as the rules are written.
    assert.equal(rewrite("nginx"), "nginx");
    assert.equal(rewrite("quay.io/org/app:1"), "quay.io/org/app:1");
  });

  test("multi-registry-routing: double-escaped dots still match the registries", () => {
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

  test("enterprise-cache: everything but the internal registry, without double rewrites", () => {
    const rewrite = rewriterFor(file, "enterprise-cache");
    assert.equal(rewrite("nginx:1.25"), "internal-registry.company.com/cache/nginx:1.25");
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
    assert.equal(rewrite("nginx"), "dev-registry.local/nginx");
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
