import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { handleMutate } from "../admission/mutate.ts";
import { type AdmissionRequest, allowed, decodeReview, patched } from "../admission/review.ts";
import { rulesFromYaml } from "../engine/rules/testing.ts";
import { silentLogger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { MRW_BUCKETS, MrwMetrics, replacedImages } from "./mrw-metrics.ts";

const FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);

function fixture(name: string): AdmissionRequest {
  const decoded = decodeReview(JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8")));
  assert.ok(decoded.ok);
  return decoded.request;
}

/** Docker Hub and quay.io to a mirror; the fixture pod's other images stay. */
const RULES = rulesFromYaml(String.raw`
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: mirror }
spec:
  rules:
  - match: '^quay\.io/(.*)$'
    replace: 'mirror.corp/quay/$1'
  - match: '^docker\.io/library/((?:nginx|python).*)$'
    replace: 'mirror.corp/hub/library/$1'
`).ruleSet;

/** The `/mutate` handler as the app builds it, wrapped; `rules` undefined: none loaded. */
function setup(rules: typeof RULES | undefined) {
  const metrics = new Metrics();
  const mrw = new MrwMetrics(metrics);
  const handler = mrw.wrap(
    (request) =>
      handleMutate(request, {
        rules: () => rules,
        namespaceLabels: () => undefined,
        failClosed: false,
        metrics,
        logger: silentLogger,
      }),
    () => rules?.size,
  );
  const text = () => metrics.registry.metrics();
  return { metrics, mrw, handler, text };
}

function lines(text: string, name: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(name));
}

describe("replacedImages", () => {
  test("the images a patch replaced, before and after, read through the pointers", async () => {
    const request = fixture("pod-create.json");
    const { review } = await handleMutate(request, {
      rules: () => RULES,
      namespaceLabels: () => undefined,
      failClosed: false,
      metrics: new Metrics(),
      logger: silentLogger,
    });
    assert.deepEqual(replacedImages(request, review), [
      ["nginx:1.25", "mirror.corp/hub/library/nginx:1.25"],
      [
        `quay.io/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
        `mirror.corp/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
      ],
    ]);
  });

  test("no patch, or operations that are not image replacements: none", () => {
    const request = fixture("pod-create.json");
    assert.deepEqual(replacedImages(request, allowed("u")), []);
    const review = patched("u", [
      { op: "add", path: "/metadata/annotations/a~1b", value: "x" },
      { op: "replace", path: "/spec/containers/9/image", value: "x" },
      { op: "replace", path: "/spec/containers/0/image/deeper", value: "x" },
      { op: "replace", path: "/metadata/labels", value: { a: "b" } },
    ]);
    assert.deepEqual(replacedImages(request, review), []);
  });
});

describe("MrwMetrics", () => {
  test("a patched pod: one mutation per image, MRW's labels, registries as ImageShift parses them", async () => {
    const { handler, text } = setup(RULES);
    const result = await handler(fixture("pod-create.json"));
    assert.equal(result.outcome, "patched");
    const exposition = await text();
    assert.deepEqual(lines(exposition, "registry_rewriter_mutations_total{").sort(), [
      'registry_rewriter_mutations_total{namespace="team-a",source_registry="docker.io",target_registry="mirror.corp",status="success"} 1',
      'registry_rewriter_mutations_total{namespace="team-a",source_registry="quay.io",target_registry="mirror.corp",status="success"} 1',
    ]);
    assert.match(exposition, /^registry_rewriter_cache_hits_total 1$/m);
    assert.match(exposition, /^registry_rewriter_cache_misses_total 0$/m);
    assert.match(exposition, /^registry_rewriter_mutation_duration_seconds_count\{namespace="team-a"\} 1$/m);
    assert.match(exposition, /^# TYPE registry_rewriter_mutation_duration_seconds histogram$/m);
  });

  test("the histogram has Go's default buckets, as MRW's", async () => {
    const { handler, text } = setup(RULES);
    await handler(fixture("pod-create.json"));
    const bounds = lines(await text(), "registry_rewriter_mutation_duration_seconds_bucket").map(
      (line) => /le="([^"]+)"/.exec(line)?.[1],
    );
    assert.deepEqual(bounds, [...MRW_BUCKETS.map(String), "+Inf"]);
    assert.deepEqual(MRW_BUCKETS, [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  });

  test("no rule set loaded, or an empty one: a cache miss, and the pod admitted unchanged", async () => {
    for (const rules of [undefined, rulesFromYaml("").ruleSet]) {
      const { handler, text } = setup(rules);
      const result = await handler(fixture("pod-create.json"));
      assert.notEqual(result.outcome, "patched");
      const exposition = await text();
      assert.match(exposition, /^registry_rewriter_cache_misses_total 1$/m);
      assert.match(exposition, /^registry_rewriter_cache_hits_total 0$/m);
      assert.deepEqual(lines(exposition, "registry_rewriter_mutations_total{"), []);
    }
  });

  test("opted-out pods and requests that are not about pods: timed, no hit, no miss", async () => {
    const { handler, text } = setup(RULES);
    for (const name of ["pod-create-opt-out-rewrite-disabled.json", "configmap-create.json"]) {
      assert.equal((await handler(fixture(name))).outcome, "skipped", name);
    }
    const exposition = await text();
    assert.match(exposition, /^registry_rewriter_cache_hits_total 0$/m);
    assert.match(exposition, /^registry_rewriter_cache_misses_total 0$/m);
    const counts = lines(exposition, "registry_rewriter_mutation_duration_seconds_count");
    assert.equal(
      counts.reduce((sum, line) => sum + Number(line.split(" ")[1]), 0),
      2,
    );
  });

  test("a dry run is a hit but no mutation (as imageshift_rewrites_total)", async () => {
    const { handler, text } = setup(RULES);
    assert.equal((await handler(fixture("pod-create-dry-run.json"))).outcome, "patched");
    const exposition = await text();
    assert.match(exposition, /^registry_rewriter_cache_hits_total 1$/m);
    assert.deepEqual(lines(exposition, "registry_rewriter_mutations_total{"), []);
  });

  test("an unchanged pod: a hit, no mutation", async () => {
    const { handler, text } = setup(
      rulesFromYaml(String.raw`
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: other }
spec: { rules: [{ match: '^example\.org/(.*)$', replace: 'mirror.corp/$1' }] }
`).ruleSet,
    );
    assert.equal((await handler(fixture("pod-create.json"))).outcome, "unchanged");
    const exposition = await text();
    assert.match(exposition, /^registry_rewriter_cache_hits_total 1$/m);
    assert.deepEqual(lines(exposition, "registry_rewriter_mutations_total{"), []);
  });

  test("rules_count is the size of the rule set it is told of", async () => {
    const { mrw, text } = setup(RULES);
    mrw.rulesLoaded(42);
    assert.match(await text(), /^registry_rewriter_rules_count 42$/m);
    mrw.rulesLoaded(0);
    assert.match(await text(), /^registry_rewriter_rules_count 0$/m);
  });

  test("registry labels share ImageShift's cap; an unparsable image reads invalid", async () => {
    const { mrw, text } = setup(RULES);
    const request: AdmissionRequest = {
      uid: "u",
      namespace: "ns",
      operation: "CREATE",
      resource: { group: "", version: "v1", resource: "pods" },
      object: { spec: { containers: [{ name: "a", image: "Not//An:Image" }] } },
    };
    const handler = mrw.wrap(
      (_request: AdmissionRequest) => ({
        review: patched("u", [{ op: "replace", path: "/spec/containers/0/image", value: "mirror.corp/a:1" }]),
        outcome: "patched",
      }),
      () => 1,
    );
    await handler(request);
    assert.match(
      await text(),
      /^registry_rewriter_mutations_total\{namespace="ns",source_registry="invalid",target_registry="mirror.corp",status="success"\} 1$/m,
    );
  });
});
