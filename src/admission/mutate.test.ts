/**
 * The pod mutation, driven by recorded AdmissionReview requests (test/fixtures/admission).
 * Every patched answer is applied with fast-json-patch (validate mode, as the API server
 * would refuse a patch that does not apply) and the resulting pod is checked as a whole.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import jsonpatch, { type Operation } from "fast-json-patch";
import type { EvaluationContext, Rule } from "../engine/rules/rule.ts";
import { type RewriteResult, RuleSet } from "../engine/rules/ruleset.ts";
import type { Labels } from "../engine/rules/selector.ts";
import { rulesFromYaml } from "../engine/rules/testing.ts";
import { createLogger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { ORIGINAL_IMAGES_ANNOTATION, type OriginalImages } from "./annotations.ts";
import { appliesTo, candidates, handleMutate, type MutateResult, type Rewriter } from "./mutate.ts";
import { type AdmissionRequest, type AdmissionReview, decodeReview } from "./review.ts";
import type { Verification } from "./verify.ts";

// ---------------------------------------------------------------------------------------
// Fixtures and rules

const FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);

/** The request of a recorded AdmissionReview, checked by the same decoder the server uses. */
function fixture(name: string): AdmissionRequest {
  const decoded = decodeReview(JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8")));
  assert.ok(decoded.ok, `${name}: ${decoded.ok ? "" : decoded.error}`);
  return decoded.request;
}

const MIRROR_YAML = String.raw`
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: mirror }
spec:
  mappings:
    swap:
    - { registry: docker.io, target: mirror.local/hub }
    - { registry: ghcr.io, target: mirror.local/ghcr }
    - { registry: quay.io, target: mirror.local/quay }
    - { registry: gcr.io, target: mirror.local/gcr }
    exactSwap:
    - { reference: "busybox:1.36", target: "mirror.local/approved/busybox:1.36.1" }
    regexSwap:
    - expression: '^(\d+)\.dkr\.ecr\.([^.]+)\.amazonaws\.com/(.*)$'
      target: 'mirror.local/ecr/$1/$2/$3'
`;

const CATCH_ALL_YAML = `
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: catch-all }
spec:
  rules:
  - match: '^(.*)$'
    replace: 'mirror.local/$1'
`;

const MIRROR = rulesFromYaml(MIRROR_YAML).ruleSet;
const CATCH_ALL = rulesFromYaml(CATCH_ALL_YAML).ruleSet;

const SWAP_HUB = "Imageshift/mirror spec.mappings.swap[0]";
const SWAP_GHCR = "Imageshift/mirror spec.mappings.swap[1]";
const SWAP_QUAY = "Imageshift/mirror spec.mappings.swap[2]";
const SWAP_GCR = "Imageshift/mirror spec.mappings.swap[3]";
const EXACT_BUSYBOX = "Imageshift/mirror spec.mappings.exactSwap[0]";
const REGEX_ECR = "Imageshift/mirror spec.mappings.regexSwap[0]";
const CATCH_ALL_RULE = "RegistryRewriteRule/catch-all spec.rules[0]";

// ---------------------------------------------------------------------------------------
// Running the handler

type LogLine = Record<string, unknown> & { level: number; msg: string };

interface Run extends MutateResult {
  request: AdmissionRequest;
  metrics: Metrics;
  logs: LogLine[];
  /** Contexts the rewriter was called with, in order. */
  calls: { image: string; context: EvaluationContext }[];
}

interface RunOptions {
  rules?: Rewriter | undefined;
  failClosed?: boolean;
  namespaceLabels?: (namespace: string) => Labels | undefined;
  strict?: boolean;
  namespaceLabel?: string;
  verification?: Verification;
}

async function run(request: AdmissionRequest, options: RunOptions = {}): Promise<Run> {
  const metrics = new Metrics();
  const logs: LogLine[] = [];
  const logger = createLogger(options.verification ? "debug" : "info", {
    write: (line: string) => void logs.push(JSON.parse(line)),
  });
  const rewriter = "rules" in options ? options.rules : MIRROR;
  const calls: Run["calls"] = [];
  const spy: Rewriter | undefined = rewriter && {
    rewrite(image, context) {
      calls.push({ image, context });
      return rewriter.rewrite(image, context);
    },
  };
  const before = structuredClone(request);
  const result = await handleMutate(request, {
    rules: () => spy,
    namespaceLabels: options.namespaceLabels ?? (() => undefined),
    failClosed: options.failClosed ?? false,
    ...(options.strict !== undefined ? { strict: options.strict } : {}),
    ...(options.namespaceLabel !== undefined ? { namespaceLabel: options.namespaceLabel } : {}),
    ...(options.verification ? { verification: options.verification } : {}),
    metrics,
    logger,
  });
  // Whatever happens: a v1 AdmissionReview carrying the request's uid, and the request untouched.
  assert.equal(result.review.apiVersion, "admission.k8s.io/v1");
  assert.equal(result.review.kind, "AdmissionReview");
  assert.equal(result.review.response.uid, request.uid);
  assert.deepEqual(request, before, "the handler must not modify the request");
  return { ...result, request, metrics, logs, calls };
}

/** Sum of a metric's values whose labels include `labels`. */
async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric, `metric ${name} is registered`);
  return metric.values
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

function rewriteLogs(result: Run): LogLine[] {
  return result.logs.filter((line) => line.msg === "image rewritten");
}

/** Allowed with no patch at all. */
function assertNoPatch(result: Run): void {
  assert.equal(result.review.response.allowed, true);
  assert.equal(result.review.response.patch, undefined);
  assert.equal(result.review.response.patchType, undefined);
  assert.equal(result.review.response.status, undefined);
}

function decodePatch(review: AdmissionReview): Operation[] {
  assert.equal(review.response.patchType, "JSONPatch");
  assert.ok(review.response.patch, "a patch");
  const ops: unknown = JSON.parse(Buffer.from(review.response.patch, "base64").toString("utf8"));
  assert.ok(Array.isArray(ops));
  return ops as Operation[];
}

/** The pod the API server would go on with: the patch applied, every operation validated. */
function applied(result: Run): Pod {
  return jsonpatch.applyPatch(structuredClone(result.request.object) as Pod, decodePatch(result.review), true)
    .newDocument;
}

interface Pod {
  metadata?: { annotations?: Record<string, string> | null; [key: string]: unknown };
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}

function setAt(document: unknown, pointer: string, value: unknown): void {
  const parts = pointer
    .split("/")
    .slice(1)
    .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"));
  const last = parts.pop() ?? "";
  let node = document as Record<string, unknown>;
  for (const part of parts) node = node[part] as Record<string, unknown>;
  assert.ok(last in node, `${pointer} exists in the original`);
  node[last] = value;
}

function recordOf(pod: Pod): OriginalImages {
  const raw = pod.metadata?.annotations?.[ORIGINAL_IMAGES_ANNOTATION];
  assert.equal(typeof raw, "string", "the original-images annotation is set");
  return JSON.parse(raw as string);
}

/**
 * Applies the answer's patch and checks the whole resulting pod: exactly these images
 * changed (by JSON pointer), the annotation holds exactly this record, and every other
 * field, other annotations included, is as it was. Returns the pod.
 */
function assertPatchedPod(result: Run, images: Record<string, string>, record: OriginalImages): Pod {
  assert.equal(result.outcome, "patched");
  assert.equal(result.review.response.allowed, true);
  const ops = decodePatch(result.review);
  // Minimal: one replace per changed image and one op for the annotation.
  assert.equal(ops.length, Object.keys(images).length + 1, JSON.stringify(ops));
  assert.deepEqual(
    ops.filter((op) => op.op === "replace").map((op) => op.path),
    Object.keys(images),
  );
  const pod = applied(result);
  for (const [pointer, image] of Object.entries(images)) {
    assert.equal(jsonpatch.getValueByPointer(pod, pointer), image, pointer);
  }
  assert.deepEqual(recordOf(pod), record);

  const expected = structuredClone(result.request.object) as Pod;
  for (const [pointer, image] of Object.entries(images)) setAt(expected, pointer, image);
  expected.metadata ??= {};
  expected.metadata.annotations = {
    ...(expected.metadata.annotations ?? {}),
    [ORIGINAL_IMAGES_ANNOTATION]: pod.metadata?.annotations?.[ORIGINAL_IMAGES_ANNOTATION] ?? "",
  };
  assert.deepEqual(pod, expected);
  return pod;
}

function withAnnotations(request: AdmissionRequest, annotations: Record<string, string>): AdmissionRequest {
  const copy = structuredClone(request);
  const pod = copy.object as Pod;
  pod.metadata = { ...pod.metadata, annotations: { ...(pod.metadata?.annotations ?? {}), ...annotations } };
  return copy;
}

/** An engine result with no change, for fake rewriters to build on. */
function unchanged(input: string): RewriteResult {
  return { input, output: input, changed: false, rule: null };
}

// ---------------------------------------------------------------------------------------

describe("recorded fixtures", () => {
  test("are admission.k8s.io/v1 AdmissionReview requests", async () => {
    for (const name of [
      "pod-create.json",
      "pod-create-all-image-fields.json",
      "pod-update-set-image.json",
      "pod-ephemeralcontainers-debug.json",
      "pod-create-reinvoked.json",
      "pod-create-reinvoked-injected-sidecar.json",
      "pod-create-no-annotations.json",
      "pod-create-opt-out-skip.json",
      "pod-create-opt-out-rewrite-disabled.json",
      "pod-create-dry-run.json",
      "pod-create-invalid-image.json",
      "deployment-create.json",
      "configmap-create.json",
      "pod-delete.json",
      "pod-exec-connect.json",
      "pod-status-update.json",
    ]) {
      const request = fixture(name);
      assert.match(request.uid, /^[0-9a-f-]{36}$/, name);
      assert.ok(request.operation, name);
      assert.ok(request.resource, name);
    }
  });
});

describe("appliesTo", () => {
  const pods = { group: "", version: "v1", resource: "pods" };
  test("pods and pods/ephemeralcontainers on CREATE and UPDATE only", async () => {
    assert.equal(appliesTo({ uid: "u", resource: pods, operation: "CREATE" }), true);
    assert.equal(appliesTo({ uid: "u", resource: pods, operation: "UPDATE" }), true);
    assert.equal(
      appliesTo({ uid: "u", resource: pods, subResource: "ephemeralcontainers", operation: "UPDATE" }),
      true,
    );
    assert.equal(appliesTo({ uid: "u", resource: pods, operation: "DELETE" }), false);
    assert.equal(appliesTo({ uid: "u", resource: pods, operation: "CONNECT" }), false);
    assert.equal(appliesTo({ uid: "u", resource: pods }), false);
    for (const subResource of ["status", "exec", "attach", "portforward", "binding", "eviction", "resize"]) {
      assert.equal(
        appliesTo({ uid: "u", resource: pods, subResource, operation: "UPDATE" }),
        false,
        subResource,
      );
      assert.equal(
        appliesTo({ uid: "u", resource: pods, subResource, operation: "CREATE" }),
        false,
        subResource,
      );
    }
    assert.equal(appliesTo({ uid: "u", operation: "CREATE" }), false);
    assert.equal(
      appliesTo({
        uid: "u",
        resource: { group: "apps", version: "v1", resource: "pods" },
        operation: "CREATE",
      }),
      false,
    );
    assert.equal(
      appliesTo({
        uid: "u",
        resource: { group: "", version: "v1", resource: "podtemplates" },
        operation: "CREATE",
      }),
      false,
    );
  });
});

describe("candidates", () => {
  test("CREATE: every image field, the record notwithstanding (it is checked later)", async () => {
    const request = fixture("pod-create-reinvoked-injected-sidecar.json");
    assert.deepEqual(
      candidates(request).map((field) => field.key),
      ["initContainers/istio-init", "containers/cart", "containers/istio-proxy"],
    );
  });

  test("UPDATE: only fields whose image differs from oldObject", async () => {
    const request = fixture("pod-update-set-image.json");
    assert.deepEqual(
      candidates(request).map((field) => [field.key, field.image]),
      [["containers/app", "nginx:1.27"]],
    );
  });
});

describe("Pod CREATE", () => {
  test("containers, initContainers, ephemeralContainers and image volumes are rewritten", async () => {
    const result = await run(fixture("pod-create-all-image-fields.json"));
    assert.equal(result.review.response.warnings, undefined);
    assertPatchedPod(
      result,
      {
        "/spec/initContainers/0/image": "mirror.local/approved/busybox:1.36.1",
        "/spec/containers/0/image": "mirror.local/ghcr/acme/inference-server:2.3.0",
        "/spec/containers/1/image": "mirror.local/quay/prometheus/statsd-exporter:v0.26.1",
        "/spec/containers/2/image": "mirror.local/ecr/123456789012/eu-west-1/log-shipper:1.4",
        "/spec/ephemeralContainers/0/image": "mirror.local/approved/busybox:1.36.1",
        "/spec/volumes/1/image/reference": "mirror.local/ghcr/acme/models/llama:v3",
        "/spec/volumes/2/image/reference": "mirror.local/hub/acme/tokenizer-data:2024.10",
      },
      {
        "initContainers/fetch-config": {
          original: "busybox:1.36",
          image: "mirror.local/approved/busybox:1.36.1",
          rule: EXACT_BUSYBOX,
        },
        "containers/server": {
          original: "ghcr.io/acme/inference-server:2.3.0",
          image: "mirror.local/ghcr/acme/inference-server:2.3.0",
          rule: SWAP_GHCR,
        },
        "containers/metrics": {
          original: "quay.io/prometheus/statsd-exporter:v0.26.1",
          image: "mirror.local/quay/prometheus/statsd-exporter:v0.26.1",
          rule: SWAP_QUAY,
        },
        "containers/log-shipper": {
          original: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/log-shipper:1.4",
          image: "mirror.local/ecr/123456789012/eu-west-1/log-shipper:1.4",
          rule: REGEX_ECR,
        },
        "ephemeralContainers/debugger-x7k2p": {
          original: "busybox:1.36",
          image: "mirror.local/approved/busybox:1.36.1",
          rule: EXACT_BUSYBOX,
        },
        "volumes/model": {
          original: "ghcr.io/acme/models/llama:v3",
          image: "mirror.local/ghcr/acme/models/llama:v3",
          rule: SWAP_GHCR,
        },
        "volumes/tokenizer": {
          original: "docker.io/acme/tokenizer-data:2024.10",
          image: "mirror.local/hub/acme/tokenizer-data:2024.10",
          rule: SWAP_HUB,
        },
      },
    );
    // git-sync (registry.k8s.io) matches no rule: it was tried, and left.
    assert.ok(result.calls.some((call) => call.image === "registry.k8s.io/git-sync/git-sync:v4.2.4"));

    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 7);
    assert.equal(
      await metricValue(result.metrics, "imageshift_rewrites_total", {
        rule_kind: "Imageshift",
        rule_name: "mirror",
        source_registry: "ghcr.io",
        target_registry: "mirror.local",
      }),
      2,
    );
    assert.equal(
      await metricValue(result.metrics, "imageshift_rewrites_total", { source_registry: "docker.io" }),
      3,
    );
    assert.equal(
      await metricValue(result.metrics, "imageshift_rewrites_total", {
        source_registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
      }),
      1,
    );
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total"), 0);
  });

  test("one log line per rewrite with namespace, pod, container, from, to and rule", async () => {
    const result = await run(fixture("pod-create-all-image-fields.json"));
    const lines = rewriteLogs(result);
    assert.equal(lines.length, 7);
    for (const line of lines) {
      assert.equal(line.level, 30);
      assert.equal(line.namespace, "ml-serving");
      assert.equal(line.pod, "inference-0");
      for (const key of ["container", "from", "to", "rule"]) assert.equal(typeof line[key], "string", key);
    }
    assert.deepEqual(
      lines.find((line) => line.container === "volumes/model"),
      {
        ...lines.find((line) => line.container === "volumes/model"),
        namespace: "ml-serving",
        pod: "inference-0",
        container: "volumes/model",
        from: "ghcr.io/acme/models/llama:v3",
        to: "mirror.local/ghcr/acme/models/llama:v3",
        rule: SWAP_GHCR,
      },
    );
    assert.deepEqual(
      lines.map((line) => line.container),
      [
        "initContainers/fetch-config",
        "containers/server",
        "containers/metrics",
        "containers/log-shipper",
        "ephemeralContainers/debugger-x7k2p",
        "volumes/model",
        "volumes/tokenizer",
      ],
    );
    assert.equal(result.logs.length, 7, "nothing else is logged");
  });

  test("a ReplicaSet pod (generateName): other annotations kept, pod named by its generateName", async () => {
    const result = await run(fixture("pod-create.json"));
    const pod = assertPatchedPod(
      result,
      {
        "/spec/initContainers/0/image": "mirror.local/gcr/distroless/static:nonroot",
        "/spec/containers/0/image": "mirror.local/hub/library/nginx:1.25",
        "/spec/containers/1/image": `mirror.local/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
        "/spec/volumes/0/image/reference": "mirror.local/ghcr/org/models:v2",
      },
      {
        "initContainers/migrate": {
          original: "gcr.io/distroless/static:nonroot",
          image: "mirror.local/gcr/distroless/static:nonroot",
          rule: SWAP_GCR,
        },
        "containers/app": {
          original: "nginx:1.25",
          image: "mirror.local/hub/library/nginx:1.25",
          rule: SWAP_HUB,
        },
        "containers/sidecar": {
          original: `quay.io/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
          image: `mirror.local/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
          rule: SWAP_QUAY,
        },
        "volumes/models": {
          original: "ghcr.io/org/models:v2",
          image: "mirror.local/ghcr/org/models:v2",
          rule: SWAP_GHCR,
        },
      },
    );
    assert.equal(pod.metadata?.annotations?.["kubectl.kubernetes.io/default-container"], "app");
    assert.deepEqual(
      rewriteLogs(result).map((line) => line.pod),
      ["web-7d4b9c-*", "web-7d4b9c-*", "web-7d4b9c-*", "web-7d4b9c-*"],
    );
    assert.equal(
      await result.metrics.registry.getSingleMetricAsString("imageshift_errors_total"),
      [
        "# HELP imageshift_errors_total Errors by kind: invalid_image, rule (a rule produced an invalid image), internal, bad_request, client_aborted.",
        "# TYPE imageshift_errors_total counter",
      ].join("\n"),
    );
  });

  test("a pod without metadata.annotations gets the annotation map created", async () => {
    const request = fixture("pod-create-no-annotations.json");
    assert.equal((request.object as Pod).metadata?.annotations, undefined);
    const result = await run(request);
    const ops = decodePatch(result.review);
    assert.deepEqual(ops.at(-1)?.path, "/metadata/annotations");
    const pod = assertPatchedPod(
      result,
      { "/spec/containers/0/image": "mirror.local/hub/library/alpine:3.20" },
      {
        "containers/tmp-shell": {
          original: "alpine:3.20",
          image: "mirror.local/hub/library/alpine:3.20",
          rule: SWAP_HUB,
        },
      },
    );
    assert.deepEqual(Object.keys(pod.metadata?.annotations ?? {}), [ORIGINAL_IMAGES_ANNOTATION]);
    assert.deepEqual(pod.metadata?.labels, { run: "tmp-shell" });
  });

  test("a pod with other annotations: they are kept, not clobbered", async () => {
    const request = fixture("pod-create-dry-run.json");
    const lastApplied = (request.object as Pod).metadata?.annotations?.[
      "kubectl.kubernetes.io/last-applied-configuration"
    ];
    const result = await run({ ...request, dryRun: false });
    const ops = decodePatch(result.review);
    assert.equal(ops.at(-1)?.path, "/metadata/annotations/imageshift.dev~1original-images");
    const pod = assertPatchedPod(
      result,
      { "/spec/containers/0/image": "mirror.local/hub/library/python:3.12-slim" },
      {
        "containers/runner": {
          original: "python:3.12-slim",
          image: "mirror.local/hub/library/python:3.12-slim",
          rule: SWAP_HUB,
        },
      },
    );
    assert.equal(
      pod.metadata?.annotations?.["kubectl.kubernetes.io/last-applied-configuration"],
      lastApplied,
    );
  });

  test("an existing original-images annotation that is not ours is replaced, other annotations kept", async () => {
    const request = withAnnotations(fixture("pod-create-no-annotations.json"), {
      [ORIGINAL_IMAGES_ANNOTATION]: "not json",
      team: "a",
    });
    const pod = assertPatchedPod(
      await run(request),
      { "/spec/containers/0/image": "mirror.local/hub/library/alpine:3.20" },
      {
        "containers/tmp-shell": {
          original: "alpine:3.20",
          image: "mirror.local/hub/library/alpine:3.20",
          rule: SWAP_HUB,
        },
      },
    );
    assert.equal(pod.metadata?.annotations?.team, "a");
  });

  test("nothing to rewrite: allowed, no patch, no annotation", async () => {
    const result = await run(fixture("pod-create-all-image-fields.json"), { rules: RuleSet.EMPTY });
    assertNoPatch(result);
    assert.equal(result.outcome, "unchanged");
    assert.equal(result.review.response.warnings, undefined);
    assert.equal(result.calls.length, 8);
    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0);
    assert.equal(result.logs.length, 0);
  });
});

describe("Pod UPDATE", () => {
  test("only the container whose image changed is considered; unchanged images are left", async () => {
    const request = fixture("pod-update-set-image.json");
    const result = await run(request);
    // The rewriter was asked about the changed image only, though rules match the others.
    assert.deepEqual(
      result.calls.map((call) => call.image),
      ["nginx:1.27"],
    );
    assert.equal(MIRROR.rewrite("quay.io/prometheus/node-exporter:v1.8.1").changed, true);
    assert.equal(MIRROR.rewrite("gcr.io/acme-prod/web-migrate:3.1.0").changed, true);
    const pod = assertPatchedPod(
      result,
      { "/spec/containers/0/image": "mirror.local/hub/library/nginx:1.27" },
      {
        "containers/app": {
          original: "nginx:1.27",
          image: "mirror.local/hub/library/nginx:1.27",
          rule: SWAP_HUB,
        },
      },
    );
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/1/image"),
      "quay.io/prometheus/node-exporter:v1.8.1",
    );
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/initContainers/0/image"),
      "gcr.io/acme-prod/web-migrate:3.1.0",
    );
    // The status (what the kubelet reported) is untouched.
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/status/containerStatuses/0/image"),
      "docker.io/library/nginx:1.25",
    );
    assert.equal(
      pod.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"],
      "2025-05-28T18:01:55+02:00",
    );
    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 1);
    assert.equal(rewriteLogs(result).length, 1);
    assert.equal(rewriteLogs(result)[0]?.pod, "web-7d4b9c-x2x8q");
  });

  test("no image changed (say, a label update): allowed without a patch", async () => {
    const request = fixture("pod-update-set-image.json");
    setAt(request.object, "/spec/containers/0/image", "nginx:1.25");
    (request.object as Pod).metadata = {
      ...(request.object as Pod).metadata,
      labels: { app: "web", tier: "edge" },
    };
    const result = await run(request);
    assertNoPatch(result);
    assert.equal(result.outcome, "unchanged");
    assert.equal(result.calls.length, 0);
  });

  test("a container ImageShift rewrote earlier gets a new image: rewritten, its record entry replaced", async () => {
    const record: OriginalImages = {
      "containers/app": {
        original: "nginx:1.25",
        image: "mirror.local/hub/library/nginx:1.25",
        rule: SWAP_HUB,
      },
      "containers/sidecar": {
        original: "quay.io/prometheus/node-exporter:v1.8.1",
        image: "mirror.local/quay/prometheus/node-exporter:v1.8.1",
        rule: SWAP_QUAY,
      },
    };
    const request = fixture("pod-update-set-image.json");
    for (const object of [request.object, request.oldObject] as Pod[]) {
      object.metadata = {
        ...object.metadata,
        annotations: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(record) },
      };
      setAt(object, "/spec/containers/1/image", "mirror.local/quay/prometheus/node-exporter:v1.8.1");
    }
    setAt(request.oldObject, "/spec/containers/0/image", "mirror.local/hub/library/nginx:1.25");
    assertPatchedPod(
      await run(request),
      { "/spec/containers/0/image": "mirror.local/hub/library/nginx:1.27" },
      {
        "containers/app": {
          original: "nginx:1.27",
          image: "mirror.local/hub/library/nginx:1.27",
          rule: SWAP_HUB,
        },
        "containers/sidecar": record["containers/sidecar"] as OriginalImages[string],
      },
    );
  });
});

describe("pods/ephemeralcontainers (kubectl debug)", () => {
  test("the new ephemeral container is rewritten; the record is merged", async () => {
    const request = fixture("pod-ephemeralcontainers-debug.json");
    assert.equal(request.subResource, "ephemeralcontainers");
    const result = await run(request);
    assert.deepEqual(
      result.calls.map((call) => call.image),
      ["busybox:1.36"],
    );
    const pod = assertPatchedPod(
      result,
      { "/spec/ephemeralContainers/0/image": "mirror.local/approved/busybox:1.36.1" },
      {
        "containers/api": {
          original: "nginx:1.25",
          image: "mirror.local/hub/library/nginx:1.25",
          rule: SWAP_HUB,
        },
        "ephemeralContainers/debugger-h7xq2": {
          original: "busybox:1.36",
          image: "mirror.local/approved/busybox:1.36.1",
          rule: EXACT_BUSYBOX,
        },
      },
    );
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "mirror.local/hub/library/nginx:1.25",
    );
    assert.deepEqual(rewriteLogs(result)[0], {
      ...rewriteLogs(result)[0],
      namespace: "payments",
      pod: "api-5f6d7c8b9-qk4wz",
      container: "ephemeralContainers/debugger-h7xq2",
      from: "busybox:1.36",
      to: "mirror.local/approved/busybox:1.36.1",
      rule: EXACT_BUSYBOX,
    });
  });
});

describe("re-invocation", () => {
  test("an object that already carries our patch and annotation is not rewritten again, even by ^(.*)$", async () => {
    // The catch-all rule made the record; next to the mirror rules it still decides these images.
    // (Rules that make something else of the originals: "a stale entry", below.)
    const request = fixture("pod-create-reinvoked.json");
    for (const rules of [CATCH_ALL, rulesFromYaml(`${MIRROR_YAML}\n---\n${CATCH_ALL_YAML}`).ruleSet]) {
      const result = await run(request, { rules });
      assertNoPatch(result);
      assert.equal(result.outcome, "unchanged");
      assert.equal(result.review.response.warnings, undefined);
      // Only the recorded originals were evaluated (to check the record), never our output.
      assert.deepEqual(
        result.calls.map((call) => call.image),
        ["gcr.io/acme-prod/web-migrate:3.1.0", "nginx:1.25", "quay.io/prometheus/node-exporter:v1.8.1"],
      );
      assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0);
      assert.equal(
        await metricValue(result.metrics, "imageshift_skips_total", { reason: "already_rewritten" }),
        3,
      );
      assert.deepEqual(
        result.logs.map((line) => [line.msg, line.reason, line.container]),
        [
          ["skipped", "already_rewritten", "initContainers/migrate"],
          ["skipped", "already_rewritten", "containers/app"],
          ["skipped", "already_rewritten", "containers/sidecar"],
        ],
      );
    }
  });

  test("(control) without the annotation, the catch-all rule would rewrite its own output again", async () => {
    const request = fixture("pod-create-reinvoked.json");
    delete (request.object as Pod).metadata?.annotations?.[ORIGINAL_IMAGES_ANNOTATION];
    const pod = applied(await run(request, { rules: CATCH_ALL }));
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "mirror.local/mirror.local/docker.io/library/nginx:1.25",
    );
  });

  test("a second pass over our own output is a no-op, for every CREATE fixture", async () => {
    for (const name of [
      "pod-create.json",
      "pod-create-all-image-fields.json",
      "pod-create-no-annotations.json",
      "pod-create-dry-run.json",
      "pod-create-invalid-image.json",
      "pod-create-reinvoked-injected-sidecar.json",
    ]) {
      const first = await run(fixture(name), { rules: CATCH_ALL });
      assert.equal(first.outcome, "patched", name);
      const second = await run({ ...first.request, object: applied(first) }, { rules: CATCH_ALL });
      assert.equal(second.outcome, "unchanged", name);
      assert.equal(second.review.response.patch, undefined, name);
    }
  });

  test("a container injected after our first pass is rewritten; existing entries and annotations kept", async () => {
    const request = fixture("pod-create-reinvoked-injected-sidecar.json");
    const before = (request.object as Pod).metadata?.annotations ?? {};
    const result = await run(request, { rules: CATCH_ALL });
    // cart's recorded original is evaluated to check the record; cart itself is not.
    assert.deepEqual(
      result.calls.map((call) => call.image),
      ["docker.io/istio/proxyv2:1.23.2", "ghcr.io/acme/cart:4.2.0", "docker.io/istio/proxyv2:1.23.2"],
    );
    const pod = assertPatchedPod(
      result,
      {
        "/spec/initContainers/0/image": "mirror.local/docker.io/istio/proxyv2:1.23.2",
        "/spec/containers/1/image": "mirror.local/docker.io/istio/proxyv2:1.23.2",
      },
      {
        "containers/cart": {
          original: "ghcr.io/acme/cart:4.2.0",
          image: "mirror.local/ghcr.io/acme/cart:4.2.0",
          rule: CATCH_ALL_RULE,
        },
        "initContainers/istio-init": {
          original: "docker.io/istio/proxyv2:1.23.2",
          image: "mirror.local/docker.io/istio/proxyv2:1.23.2",
          rule: CATCH_ALL_RULE,
        },
        "containers/istio-proxy": {
          original: "docker.io/istio/proxyv2:1.23.2",
          image: "mirror.local/docker.io/istio/proxyv2:1.23.2",
          rule: CATCH_ALL_RULE,
        },
      },
    );
    for (const key of [
      "kubectl.kubernetes.io/default-container",
      "kubectl.kubernetes.io/default-logs-container",
      "sidecar.istio.io/status",
    ]) {
      assert.equal(pod.metadata?.annotations?.[key], before[key], key);
    }
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "mirror.local/ghcr.io/acme/cart:4.2.0",
    );
  });
});

describe("the original-images record is trusted only when the current rules agree", () => {
  /** The pod-create-no-annotations fixture (one container, tmp-shell: alpine:3.20) with a record. */
  function withRecord(record: Record<string, unknown>, image = "alpine:3.20"): AdmissionRequest {
    const request = withAnnotations(fixture("pod-create-no-annotations.json"), {
      [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(record),
    });
    setAt(request.object, "/spec/containers/0/image", image);
    return request;
  }
  const REWRITTEN = "mirror.local/hub/library/alpine:3.20";

  const forgeries: [string, Record<string, string>][] = [
    ["naming the pod's own image as original and output", { original: "alpine:3.20", image: "alpine:3.20" }],
    ["with an original the rules map elsewhere", { original: "busybox:1.36", image: "alpine:3.20" }],
    ["with an original no rule rewrites", { original: "registry.k8s.io/pause:3.10", image: "alpine:3.20" }],
    ["with a made-up rule", { original: "alpine:3.20", image: "alpine:3.20", rule: SWAP_HUB }],
  ];
  for (const [label, entry] of forgeries) {
    test(`a hand-written entry ${label}: ignored, the image rewritten, logged and counted`, async () => {
      const result = await run(withRecord({ "containers/tmp-shell": entry }));
      assertPatchedPod(
        result,
        { "/spec/containers/0/image": REWRITTEN },
        { "containers/tmp-shell": { original: "alpine:3.20", image: REWRITTEN, rule: SWAP_HUB } },
      );
      assert.equal(
        await metricValue(result.metrics, "imageshift_skips_total", { reason: "record_ignored" }),
        1,
      );
      assert.equal(await metricValue(result.metrics, "imageshift_skips_total"), 1);
      const ignored = result.logs.filter((line) => line.msg === "skip ignored");
      assert.equal(ignored.length, 1);
      assert.deepEqual(ignored[0], {
        ...ignored[0],
        level: 30,
        reason: "record_ignored",
        namespace: "default",
        container: "containers/tmp-shell",
        image: "alpine:3.20",
        recordedOriginal: entry.original,
      });
    });
  }

  test("an entry the current rules agree with: the image is skipped, logged and counted", async () => {
    const entry = { original: "alpine:3.20", image: REWRITTEN, rule: SWAP_HUB };
    const result = await run(withRecord({ "containers/tmp-shell": entry }, REWRITTEN));
    assertNoPatch(result);
    assert.equal(result.outcome, "unchanged");
    // The rules were asked about the recorded original only, never about the image itself.
    assert.deepEqual(
      result.calls.map((call) => call.image),
      ["alpine:3.20"],
    );
    assert.equal(
      await metricValue(result.metrics, "imageshift_skips_total", { reason: "already_rewritten" }),
      1,
    );
    const skipped = result.logs.filter((line) => line.msg === "skipped");
    assert.equal(skipped.length, 1);
    assert.deepEqual(skipped[0], {
      ...skipped[0],
      level: 30,
      reason: "already_rewritten",
      container: "containers/tmp-shell",
      image: REWRITTEN,
      recordedOriginal: "alpine:3.20",
    });
  });

  test("a stale entry (the rules changed since): ignored, the image evaluated by the current rules", async () => {
    // Recorded by the catch-all rule; the mirror rules make something else of the original.
    const request = fixture("pod-create-reinvoked.json");
    const result = await run(request, { rules: MIRROR });
    assert.deepEqual(
      result.calls.map((call) => call.image),
      [
        "gcr.io/acme-prod/web-migrate:3.1.0",
        "mirror.local/gcr.io/acme-prod/web-migrate:3.1.0",
        "nginx:1.25",
        "mirror.local/docker.io/library/nginx:1.25",
        "quay.io/prometheus/node-exporter:v1.8.1",
        "mirror.local/quay.io/prometheus/node-exporter:v1.8.1",
      ],
    );
    // The mirror rules leave mirror.local images alone.
    assertNoPatch(result);
    assert.equal(
      await metricValue(result.metrics, "imageshift_skips_total", { reason: "record_ignored" }),
      3,
    );
  });

  test("a dry run: logged (marked), not counted", async () => {
    const request = withRecord({ "containers/tmp-shell": { original: "alpine:3.20", image: "alpine:3.20" } });
    const result = await run({ ...request, dryRun: true });
    assert.equal(result.outcome, "patched");
    assert.equal(await metricValue(result.metrics, "imageshift_skips_total"), 0);
    const ignored = result.logs.filter((line) => line.msg === "skip ignored");
    assert.equal(ignored.length, 1);
    assert.equal(ignored[0]?.dryRun, true);
  });

  test("an internal error while checking an entry is an internal error", async () => {
    const rules: Rewriter = {
      rewrite(input, context) {
        if (input === "alpine:3.20") return { ...unchanged(input), error: "engine failure", internal: true };
        return MIRROR.rewrite(input, context);
      },
    };
    const entry = { original: "alpine:3.20", image: REWRITTEN, rule: SWAP_HUB };
    const result = await run(withRecord({ "containers/tmp-shell": entry }, REWRITTEN), { rules });
    assert.equal(result.outcome, "failed_open");
    assert.match(result.review.response.warnings?.[0] ?? "", /containers\/tmp-shell: engine failure/);
  });
});

describe("opt-out annotations", () => {
  for (const name of ["pod-create-opt-out-skip.json", "pod-create-opt-out-rewrite-disabled.json"]) {
    test(`${name}: allowed unchanged, rules not consulted; logged and counted`, async () => {
      const enabled = { "imageshift.dev": "enabled" };
      const result = await run(fixture(name), { rules: CATCH_ALL, namespaceLabels: () => enabled });
      assertNoPatch(result);
      assert.equal(result.outcome, "skipped");
      assert.equal(result.review.response.warnings, undefined);
      assert.equal(result.calls.length, 0);
      assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0);
      assert.equal(await metricValue(result.metrics, "imageshift_skips_total", { reason: "opt_out" }), 1);
      assert.equal(await metricValue(result.metrics, "imageshift_skips_total"), 1);
      assert.equal(result.logs.length, 1);
      assert.deepEqual(result.logs[0], {
        ...result.logs[0],
        level: 30,
        msg: "skipped",
        reason: "opt_out",
        namespace: "team-b",
        annotations: [name.includes("skip") ? "imageshift.dev/skip" : "rewrite-disabled"],
      });
    });
  }

  test("the opt-out also applies to UPDATE and pods/ephemeralcontainers", async () => {
    for (const request of [
      fixture("pod-update-set-image.json"),
      fixture("pod-ephemeralcontainers-debug.json"),
    ]) {
      const result = await run(withAnnotations(request, { "imageshift.dev/skip": "true" }));
      assertNoPatch(result);
      assert.equal(result.outcome, "skipped");
    }
  });

  test('only the value "true" opts out', async () => {
    const variants: Record<string, string>[] = [
      { "imageshift.dev/skip": "false" },
      { "rewrite-disabled": "false" },
      { "imageshift.dev/skip": "" },
      { "example.com/skip": "true" },
    ];
    for (const annotations of variants) {
      const request = withAnnotations(fixture("pod-create-no-annotations.json"), annotations);
      const pod = applied(await run(request));
      assert.equal(
        jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
        "mirror.local/hub/library/alpine:3.20",
      );
      for (const [key, value] of Object.entries(annotations))
        assert.equal(pod.metadata?.annotations?.[key], value);
    }
  });
});

describe("strict namespaces", () => {
  const STRICT_LABELS = { "imageshift.dev": "strict" };
  const BAD_YAML = `
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: bad }
spec:
  rules:
  - match: '^ghcr\\.io/(.*)$'
    replace: 'mirror.local/UPPER/$1'
    priority: 100
  - match: '^quay\\.io/([^:@]+)(.*)$'
    replace: 'mirror.local/$1/$1/$1/$1/$1/$1/$1/$1/$1/$1/$1/$1$2'
    priority: 100
`;
  const BAD = rulesFromYaml(`${MIRROR_YAML}\n---\n${BAD_YAML}`).ruleSet;
  /** The ways a namespace is known to be strict: the strict webhook path, or its label. */
  const STRICT_WAYS: [string, RunOptions][] = [
    ["called on the strict path", { strict: true }],
    ["labelled imageshift.dev=strict", { namespaceLabels: () => STRICT_LABELS }],
    [
      "labelled with the configured key",
      { namespaceLabel: "example.com/shift", namespaceLabels: () => ({ "example.com/shift": "strict" }) },
    ],
  ];

  for (const [way, options] of STRICT_WAYS) {
    for (const [name, annotation, image, rewritten] of [
      [
        "pod-create-opt-out-skip.json",
        "imageshift.dev/skip",
        "quay.io/acme/legacy-batch:1.0.3",
        "mirror.local/quay/acme/legacy-batch:1.0.3",
      ],
      [
        "pod-create-opt-out-rewrite-disabled.json",
        "rewrite-disabled",
        "quay.io/acme/vendor-appliance:1.0.3",
        "mirror.local/quay/acme/vendor-appliance:1.0.3",
      ],
    ] as const) {
      test(`${way}: ${annotation} is ignored with a warning; the pod is rewritten; logged and counted`, async () => {
        const result = await run(fixture(name), options);
        assert.deepEqual(result.review.response.warnings, [
          `imageshift: annotation ${annotation}: "true" is ignored in strict namespace team-b; images are rewritten as usual`,
        ]);
        const busybox = "mirror.local/approved/busybox:1.36.1";
        const pod = assertPatchedPod(
          result,
          { "/spec/initContainers/0/image": busybox, "/spec/containers/0/image": rewritten },
          {
            "initContainers/setup": { original: "busybox:1.36", image: busybox, rule: EXACT_BUSYBOX },
            "containers/main": { original: image, image: rewritten, rule: SWAP_QUAY },
          },
        );
        assert.equal(pod.metadata?.annotations?.[annotation], "true", "the annotation itself is left");
        assert.equal(
          await metricValue(result.metrics, "imageshift_skips_total", { reason: "opt_out_ignored" }),
          1,
        );
        assert.equal(await metricValue(result.metrics, "imageshift_skips_total", { reason: "opt_out" }), 0);
        const ignored = result.logs.filter((line) => line.msg === "skip ignored");
        assert.equal(ignored.length, 1);
        assert.deepEqual(ignored[0], {
          ...ignored[0],
          level: 30,
          reason: "opt_out_ignored",
          namespace: "team-b",
          annotations: [annotation],
        });
      });
    }
  }

  test("both opt-out annotations: one warning each, one skip counted", async () => {
    const request = withAnnotations(fixture("pod-create-opt-out-skip.json"), { "rewrite-disabled": "true" });
    const result = await run(request, { strict: true });
    assert.equal(result.outcome, "patched");
    assert.deepEqual(
      result.review.response.warnings?.map((warning) => warning.split(":")[1]),
      [" annotation imageshift.dev/skip", " annotation rewrite-disabled"],
    );
    assert.equal(await metricValue(result.metrics, "imageshift_skips_total"), 1);
  });

  test("only the value strict of the configured label key makes a namespace strict", async () => {
    const cases: [Labels | undefined, string | undefined][] = [
      [{ "imageshift.dev": "enabled" }, undefined],
      [{ "imageshift.dev": "Strict" }, undefined],
      [{ "example.com/shift": "strict" }, undefined],
      [{ "imageshift.dev": "strict" }, "example.com/shift"],
      [undefined, undefined],
    ];
    for (const [labels, key] of cases) {
      const result = await run(fixture("pod-create-opt-out-skip.json"), {
        namespaceLabels: () => labels,
        ...(key ? { namespaceLabel: key } : {}),
      });
      assert.equal(result.outcome, "skipped", JSON.stringify([labels, key]));
    }
  });

  test("a forged original-images entry is ignored there too", async () => {
    const request = withAnnotations(fixture("pod-create-no-annotations.json"), {
      [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify({
        "containers/tmp-shell": { original: "alpine:3.20", image: "alpine:3.20" },
      }),
    });
    const pod = applied(await run(request, { strict: true }));
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "mirror.local/hub/library/alpine:3.20",
    );
  });

  for (const [way, options] of STRICT_WAYS) {
    test(`${way}: a rule that fails refuses the pod, naming the field, the image, the rule and the reason`, async () => {
      const result = await run(fixture("pod-create.json"), { rules: BAD, ...options });
      assert.equal(result.outcome, "denied");
      const { response } = result.review;
      assert.equal(response.allowed, false);
      assert.equal(response.patch, undefined);
      assert.equal(response.status?.code, 403);
      assert.equal(response.status?.reason, "Forbidden");
      const message = response.status?.message ?? "";
      const [head, sidecar, volume, ...rest] = message.split("; ");
      assert.deepEqual(rest, []);
      assert.equal(
        head,
        "imageshift: pod refused in strict namespace team-a, as an image not rewritten must not run there",
      );
      assert.match(
        sidecar ?? "",
        /^containers\/sidecar: image "quay\.io\/prometheus\/node-exporter:v1\.8\.1@sha256:0+" not rewritten: rule RegistryRewriteRule\/bad spec\.rules\[1\] produced .*(255|too long)/,
      );
      assert.match(
        volume ?? "",
        /^volumes\/models: image "ghcr\.io\/org\/models:v2" not rewritten: rule RegistryRewriteRule\/bad spec\.rules\[0\] produced invalid image reference "mirror\.local\/UPPER\/org\/models:v2"/,
      );
      assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "rule" }), 2);
      assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0, "nothing was admitted");
      assert.equal(result.logs.filter((line) => line.msg === "image not rewritten").length, 2);
    });
  }

  test("(control) outside a strict namespace the same pod is admitted with warnings", async () => {
    const result = await run(fixture("pod-create.json"), {
      rules: BAD,
      namespaceLabels: () => ({ "imageshift.dev": "enabled" }),
    });
    assert.equal(result.outcome, "patched");
    assert.equal(result.review.response.warnings?.length, 2);
  });

  test("an invalid image in the pod is not a rule error: kept with a warning, as elsewhere", async () => {
    const result = await run(fixture("pod-create-invalid-image.json"), { strict: true });
    assert.equal(result.review.response.allowed, true);
    assert.match(result.review.response.warnings?.[0] ?? "", /image left as it was$/);
  });

  test("an internal error refuses the pod even without failClosed", async () => {
    const throwing: Rewriter = {
      rewrite() {
        throw new Error("rule index corrupted");
      },
    };
    for (const options of [
      { rules: throwing, strict: true },
      { rules: throwing, namespaceLabels: () => STRICT_LABELS },
      { rules: undefined, strict: true },
      {
        strict: true,
        namespaceLabels: () => {
          throw new Error("namespace cache not synced");
        },
      },
    ] satisfies RunOptions[]) {
      const result = await run(fixture("pod-create.json"), options);
      assert.equal(result.outcome, "denied");
      assert.equal(result.review.response.allowed, false);
      assert.equal(result.review.response.status?.code, 500);
      assert.match(
        result.review.response.status?.message ?? "",
        /^imageshift: internal error while rewriting images \(strict namespace team-a\): (rule index corrupted|no rule set is loaded yet|namespace cache not synced)$/,
      );
      assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "internal" }), 1);
    }
  });

  test("without an opt-out or a rule problem, a strict namespace is served as any other", async () => {
    for (const name of ["pod-create.json", "pod-create-reinvoked.json", "pod-update-set-image.json"]) {
      const plain = await run(fixture(name));
      const strict = await run(fixture(name), { strict: true });
      assert.deepEqual(strict.review, plain.review, name);
      assert.equal(strict.outcome, plain.outcome, name);
    }
  });
});

describe("Audit mode", () => {
  const AUDIT_YAML = `
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: preview }
spec:
  mode: Audit
  mappings:
    swap:
    - { registry: docker.io, target: audit.local/hub }
    - { registry: quay.io, target: audit.local/quay }
`;
  const SIDE = `quay.io/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`;

  test("Audit-only objects: no patch, a warning per image, metric counted, logged", async () => {
    const result = await run(fixture("pod-create.json"), { rules: rulesFromYaml(AUDIT_YAML).ruleSet });
    assertNoPatch(result);
    assert.equal(result.outcome, "unchanged");
    const [first, second] = result.review.response.warnings ?? [];
    assert.equal(
      first,
      "imageshift audit: would rewrite nginx:1.25 to audit.local/hub/library/nginx:1.25 by rule Imageshift/preview spec.mappings.swap[0]",
    );
    // Over the API server's 256-character warning size: cut, marked with "...".
    const full = `imageshift audit: would rewrite ${SIDE} to audit.local/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)} by rule Imageshift/preview spec.mappings.swap[1]`;
    assert.equal(second, `${full.slice(0, 253)}...`);
    assert.equal(
      await metricValue(result.metrics, "imageshift_audit_would_rewrite_total", {
        rule_kind: "Imageshift",
        rule_name: "preview",
      }),
      2,
    );
    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0);
    const audits = result.logs.filter((line) => line.msg === "audit: would rewrite image");
    assert.equal(audits.length, 2);
    assert.deepEqual(audits[0], {
      ...audits[0],
      namespace: "team-a",
      pod: "web-7d4b9c-*",
      container: "containers/app",
      from: "nginx:1.25",
      wouldBe: "audit.local/hub/library/nginx:1.25",
      rule: "Imageshift/preview spec.mappings.swap[0]",
    });
    assert.equal(rewriteLogs(result).length, 0);
  });

  test("Audit next to Enforce: the Enforce rewrite is applied, the Audit one only reported", async () => {
    const rules = rulesFromYaml(`${MIRROR_YAML}\n---\n${AUDIT_YAML}`).ruleSet;
    const result = await run(fixture("pod-create-no-annotations.json"), { rules });
    assert.deepEqual(result.review.response.warnings, [
      "imageshift audit: would rewrite alpine:3.20 to audit.local/hub/library/alpine:3.20 by rule Imageshift/preview spec.mappings.swap[0]",
    ]);
    assertPatchedPod(
      result,
      { "/spec/containers/0/image": "mirror.local/hub/library/alpine:3.20" },
      {
        "containers/tmp-shell": {
          original: "alpine:3.20",
          image: "mirror.local/hub/library/alpine:3.20",
          rule: SWAP_HUB,
        },
      },
    );
    assert.equal(await metricValue(result.metrics, "imageshift_audit_would_rewrite_total"), 1);
    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 1);
  });
  test("an Audit rule that would produce an invalid image: reported as an audit warning, nothing changed", async () => {
    const rules = rulesFromYaml(`
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: preview-bad }
spec:
  mode: Audit
  mappings:
    regexSwap:
    - { expression: '^docker\\.io/library/(.*)$', target: 'audit.local/UPPER/$1' }
`).ruleSet;
    const result = await run(fixture("pod-create-no-annotations.json"), { rules });
    assertNoPatch(result);
    const warnings = result.review.response.warnings ?? [];
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] ?? "",
      /^imageshift audit: containers\/tmp-shell: rule Imageshift\/preview-bad spec\.mappings\.regexSwap\[0\] produced invalid image reference "audit\.local\/UPPER\/alpine:3\.20"/,
    );
  });
});

describe("dryRun", () => {
  test("a dry-run request gets the same answer as a real one, and nothing is modified", async () => {
    const request = fixture("pod-create-dry-run.json");
    assert.equal(request.dryRun, true);
    const dry = await run(request);
    const real = await run({ ...structuredClone(request), dryRun: false });
    assert.deepEqual(dry.review, real.review);
    assert.equal(dry.outcome, real.outcome);
    assertPatchedPod(
      dry,
      { "/spec/containers/0/image": "mirror.local/hub/library/python:3.12-slim" },
      {
        "containers/runner": {
          original: "python:3.12-slim",
          image: "mirror.local/hub/library/python:3.12-slim",
          rule: SWAP_HUB,
        },
      },
    );
  });
});

describe("images that cannot be rewritten", () => {
  test("a rule producing an invalid image: that image is kept, a warning, errors_total{kind=rule}", async () => {
    const bad = `
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: bad }
spec:
  rules:
  - match: '^ghcr\\.io/(.*)$'
    replace: 'mirror.local/UPPER/$1'
    priority: 100
`;
    const result = await run(fixture("pod-create.json"), {
      rules: rulesFromYaml(`${MIRROR_YAML}\n---\n${bad}`).ruleSet,
    });
    const warnings = result.review.response.warnings ?? [];
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] ?? "",
      /^imageshift: volumes\/models: rule RegistryRewriteRule\/bad spec\.rules\[0\] produced invalid image reference "mirror\.local\/UPPER\/org\/models:v2": .*; image left as it was$/,
    );
    const pod = assertPatchedPod(
      result,
      {
        "/spec/initContainers/0/image": "mirror.local/gcr/distroless/static:nonroot",
        "/spec/containers/0/image": "mirror.local/hub/library/nginx:1.25",
        "/spec/containers/1/image": `mirror.local/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
      },
      {
        "initContainers/migrate": {
          original: "gcr.io/distroless/static:nonroot",
          image: "mirror.local/gcr/distroless/static:nonroot",
          rule: SWAP_GCR,
        },
        "containers/app": {
          original: "nginx:1.25",
          image: "mirror.local/hub/library/nginx:1.25",
          rule: SWAP_HUB,
        },
        "containers/sidecar": {
          original: `quay.io/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
          image: `mirror.local/quay/prometheus/node-exporter:v1.8.1@sha256:${"0".repeat(64)}`,
          rule: SWAP_QUAY,
        },
      },
    );
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/volumes/0/image/reference"),
      "ghcr.io/org/models:v2",
    );
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "rule" }), 1);
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "invalid_image" }), 0);
    const warned = result.logs.filter((line) => line.msg === "image not rewritten");
    assert.equal(warned.length, 1);
    assert.equal(warned[0]?.level, 40);
    assert.equal(warned[0]?.container, "volumes/models");
    assert.equal(warned[0]?.image, "ghcr.io/org/models:v2");
  });

  test("only errors: allowed without a patch, with the warning", async () => {
    const bad = `
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: bad }
spec:
  rules:
  - match: '^(.*)$'
    replace: 'Mirror.Local/UPPER/$1'
`;
    const result = await run(fixture("pod-create-no-annotations.json"), {
      rules: rulesFromYaml(bad).ruleSet,
    });
    assertNoPatch(result);
    assert.equal(result.outcome, "unchanged");
    assert.equal(result.review.response.warnings?.length, 1);
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "rule" }), 1);
  });

  test("an invalid image in the pod: kept, a warning, errors_total{kind=invalid_image}; the rest is rewritten", async () => {
    const result = await run(fixture("pod-create-invalid-image.json"), { rules: CATCH_ALL });
    const warnings = result.review.response.warnings ?? [];
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /^imageshift: containers\/api: .*Payments\/API.*; image left as it was$/);
    const pod = assertPatchedPod(
      result,
      // The RegistryRewriteRule sees MRW's normalized name.
      { "/spec/containers/1/image": "mirror.local/docker.io/library/nginx:1.25" },
      {
        "containers/proxy": {
          original: "nginx:1.25",
          image: "mirror.local/docker.io/library/nginx:1.25",
          rule: CATCH_ALL_RULE,
        },
      },
    );
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "registry.acme.local:5000/Payments/API:2.1",
    );
    assert.equal(pod.metadata?.annotations?.owner, "payments");
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "invalid_image" }), 1);
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "rule" }), 0);
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "internal" }), 0);
  });
});

describe("requests ImageShift does not mutate", () => {
  for (const name of [
    "deployment-create.json",
    "configmap-create.json",
    "pod-delete.json",
    "pod-exec-connect.json",
    "pod-status-update.json",
  ]) {
    test(`${name}: allowed, no patch, rules not consulted`, async () => {
      const request = fixture(name);
      for (const failClosed of [false, true]) {
        const result = await run(request, { rules: CATCH_ALL, failClosed });
        assertNoPatch(result);
        assert.equal(result.outcome, "skipped");
        assert.equal(result.review.response.warnings, undefined);
        assert.equal(result.calls.length, 0);
        assert.equal(result.logs.length, 0);
        assert.equal(await metricValue(result.metrics, "imageshift_errors_total"), 0);
      }
    });
  }

  test("not even with no rule set loaded yet", async () => {
    for (const name of ["deployment-create.json", "pod-delete.json", "pod-exec-connect.json"]) {
      const result = await run(fixture(name), { rules: undefined, failClosed: true });
      assertNoPatch(result);
      assert.equal(result.outcome, "skipped");
    }
  });

  test("a pod request without an object", async () => {
    const request = fixture("pod-create.json");
    for (const object of [null, undefined, "pod", 42]) {
      const result = await run({ ...request, object });
      assertNoPatch(result);
      assert.equal(result.outcome, "skipped");
    }
  });
});

describe("evaluation context", () => {
  test("namespace, pod labels and namespace labels (when known) reach the rules", async () => {
    const request = fixture("pod-create.json");
    const withLabels = await run(request, {
      namespaceLabels: (ns) => (ns === "team-a" ? { env: "prod" } : undefined),
    });
    assert.ok(withLabels.calls.length > 0);
    for (const call of withLabels.calls) {
      assert.deepEqual(call.context, {
        namespace: "team-a",
        podLabels: { app: "web" },
        namespaceLabels: { env: "prod" },
      });
    }
    const without = await run(request);
    for (const call of without.calls) {
      assert.deepEqual(call.context, { namespace: "team-a", podLabels: { app: "web" } });
    }
  });

  test("a namespaceSelector is honoured through namespaceLabels", async () => {
    const rules = rulesFromYaml(`
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: prod-only }
spec:
  namespaceSelector: { matchLabels: { env: prod } }
  mappings:
    swap: [{ registry: docker.io, target: prod-mirror.local/hub }]
`).ruleSet;
    const request = fixture("pod-create-no-annotations.json");
    assert.equal(
      (await run(request, { rules, namespaceLabels: () => ({ env: "dev" }) })).outcome,
      "unchanged",
    );
    assert.equal((await run(request, { rules })).outcome, "unchanged");
    const pod = applied(await run(request, { rules, namespaceLabels: () => ({ env: "prod" }) }));
    assert.equal(
      jsonpatch.getValueByPointer(pod, "/spec/containers/0/image"),
      "prod-mirror.local/hub/library/alpine:3.20",
    );
  });
});

describe("internal errors", () => {
  const throwing: Rewriter = {
    rewrite() {
      throw new Error("rule index corrupted");
    },
  };
  const internalResult: Rewriter = {
    rewrite(input) {
      return { ...unchanged(input), error: "regex engine failure", internal: true };
    },
  };

  for (const [label, rules, cause] of [
    ["a rewriter that throws", throwing, "rule index corrupted"],
    ["a result marked internal", internalResult, "initContainers/migrate: regex engine failure"],
  ] as const) {
    test(`${label}: fail open (allowed, no patch, warning, errors_total{kind=internal}, logged)`, async () => {
      const request = fixture("pod-create.json");
      const result = await run(request, { rules });
      assertNoPatch(result);
      assert.equal(result.outcome, "failed_open");
      assert.deepEqual(result.review.response.warnings, [
        `imageshift: internal error, pod admitted unchanged: ${cause}`,
      ]);
      assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "internal" }), 1);
      assert.equal(await metricValue(result.metrics, "imageshift_errors_total"), 1);
      const errors = result.logs.filter((line) => line.level === 50);
      assert.equal(errors.length, 1);
      assert.deepEqual(errors[0], {
        ...errors[0],
        msg: "internal error while rewriting images",
        uid: request.uid,
        namespace: "team-a",
      });
      const err = errors[0]?.err as { message?: string; stack?: string } | undefined;
      assert.equal(err?.message, cause);
      assert.match(String(err?.stack), /\n\s+at /, "the stack is kept");
      assert.equal(rewriteLogs(result).length, 0);
    });

    test(`${label}: with failClosed, denied with a message naming the cause`, async () => {
      const result = await run(fixture("pod-create.json"), { rules, failClosed: true });
      assert.equal(result.outcome, "denied");
      assert.equal(result.review.response.allowed, false);
      assert.equal(result.review.response.patch, undefined);
      assert.equal(result.review.response.status?.code, 500);
      assert.equal(result.review.response.status?.reason, "InternalError");
      assert.equal(
        result.review.response.status?.message,
        `imageshift: internal error while rewriting images (fail-closed): ${cause}`,
      );
      assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "internal" }), 1);
    });
  }

  test("an internal error on a later image discards the rewrites already made", async () => {
    let call = 0;
    const rules: Rewriter = {
      rewrite(input, context) {
        call++;
        if (call === 3) throw new Error("third image exploded");
        return MIRROR.rewrite(input, context);
      },
    };
    const result = await run(fixture("pod-create.json"), { rules });
    assertNoPatch(result);
    assert.equal(result.outcome, "failed_open");
    assert.match(result.review.response.warnings?.[0] ?? "", /third image exploded/);
    // Nothing was admitted rewritten: no rewrite logged or counted.
    assert.equal(rewriteLogs(result).length, 0);
    assert.equal(await metricValue(result.metrics, "imageshift_rewrites_total"), 0);
  });

  test("no rule set loaded yet: fail open; with failClosed, denied", async () => {
    const open = await run(fixture("pod-create.json"), { rules: undefined });
    assertNoPatch(open);
    assert.equal(open.outcome, "failed_open");
    assert.deepEqual(open.review.response.warnings, [
      "imageshift: internal error, pod admitted unchanged: no rule set is loaded yet",
    ]);
    assert.equal(await metricValue(open.metrics, "imageshift_errors_total", { kind: "internal" }), 1);

    const closed = await run(fixture("pod-create.json"), { rules: undefined, failClosed: true });
    assert.equal(closed.outcome, "denied");
    assert.match(closed.review.response.status?.message ?? "", /no rule set is loaded yet/);
  });

  test("namespaceLabels throwing (say, a cache bug) fails open too", async () => {
    const result = await run(fixture("pod-create.json"), {
      namespaceLabels: () => {
        throw new Error("namespace cache not synced");
      },
    });
    assertNoPatch(result);
    assert.equal(result.outcome, "failed_open");
    assert.match(result.review.response.warnings?.[0] ?? "", /namespace cache not synced/);
  });

  test("an unexpected failure inside RuleSet.rewrite is an internal error (fail-closed denies)", {}, async () => {
    // A rule whose pod selector throws: a bug inside the engine, not bad input.
    const exploding: Rule = {
      type: "swap",
      ref: { kind: "Imageshift", name: "exploding", field: "spec.mappings.swap[0]" },
      scope: {
        namespaceSelector: () => true,
        podSelector: () => {
          throw new Error("selector exploded");
        },
        exclude: [],
      },
      mode: "Enforce",
      priority: 0,
      position: 0,
      defaultDomain: "docker.io",
      prefix: "docker.io",
      target: { domain: "mirror.local", path: "hub" },
    };
    const rules = new RuleSet([exploding]);
    // Today: allowed, outcome "unchanged", warning "imageshift: containers/tmp-shell: internal
    // error: selector exploded; image left as it was", errors_total{kind="invalid_image"} 1.
    const result = await run(fixture("pod-create-no-annotations.json"), { rules, failClosed: true });
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "internal" }), 1);
    assert.equal(await metricValue(result.metrics, "imageshift_errors_total", { kind: "invalid_image" }), 0);
    assert.equal(result.outcome, "denied");
    assert.match(result.review.response.status?.message ?? "", /selector exploded/);
    // The cause: the engine's catch-all result lacks `internal: true`.
    const direct = rules.rewrite("nginx:1.25", {});
    assert.match(direct.error ?? "", /internal error: selector exploded/);
    assert.equal(direct.internal, true, "RuleSet.rewrite flags its own failures as internal");
  });
});

describe("registry checks (verify.ts) through the handler", () => {
  const CHECKED = rulesFromYaml(`apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: checked }
spec:
  verify: { mode: Presence }
  mappings: { swap: [{ registry: docker.io, target: mirror.local/hub }] }
`).ruleSet;
  const absentEverywhere: Verification = {
    checker: { check: async () => ({ state: "absent", cached: false }) },
    deadlineMs: 1000,
  };

  test("a mirror that lacks the image: admitted with the original, a warning, a check logged and the fallback logged", async () => {
    const result = await run(fixture("pod-create-no-annotations.json"), {
      rules: CHECKED,
      verification: absentEverywhere,
    });
    assert.equal(result.outcome, "patched");
    assert.ok(result.review.response.warnings?.some((w) => w.includes("kept, as its mirror cannot be used")));
    assert.ok(result.logs.some((line) => line.msg === "registry check" && line.state === "absent"));
    assert.ok(result.logs.some((line) => line.msg === "image kept: its mirror cannot be used"));
    const pod = applied(result);
    assert.ok(Object.values(recordOf(pod)).every((entry) => entry.image === entry.original && entry.check));
  });

  test("in a strict namespace, the same pod is refused", async () => {
    const result = await run(fixture("pod-create-no-annotations.json"), {
      rules: CHECKED,
      verification: absentEverywhere,
      strict: true,
    });
    assert.equal(result.outcome, "denied");
    assert.equal(result.review.response.allowed, false);
    assert.match(result.review.response.status?.message ?? "", /as its mirror cannot be used/);
  });
});
