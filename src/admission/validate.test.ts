import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AdmissionRequest, AdmissionReview } from "./review.ts";
import { handleValidate } from "./validate.ts";

const UID = "b7f3c1d9-4e2a-4c6b-9d8e-1f0a2b3c4d5e";

type Operation = NonNullable<AdmissionRequest["operation"]>;

const IMAGESHIFT_RESOURCE = { group: "imageshift.dev", version: "v1", resource: "imageshifts" };
const COMPAT_RESOURCE = { group: "dev.flemzord.fr", version: "v1alpha1", resource: "registryrewriterules" };

/** An AdmissionReview request as the API server sends it to the validating webhook. */
function request(
  object: unknown,
  operation: Operation = "CREATE",
  oldObject: unknown = null,
): AdmissionRequest {
  const kind = (object as { kind?: string } | null)?.kind ?? "Imageshift";
  const compat = kind === "RegistryRewriteRule";
  const resource = compat ? COMPAT_RESOURCE : IMAGESHIFT_RESOURCE;
  const name = (object as { metadata?: { name?: string } } | null)?.metadata?.name ?? "";
  return {
    uid: UID,
    kind: { group: resource.group, version: resource.version, kind },
    resource,
    name,
    operation,
    object,
    oldObject,
    dryRun: false,
  };
}

function imageshift(spec: unknown, name = "airgap"): Record<string, unknown> {
  return { apiVersion: "imageshift.dev/v1", kind: "Imageshift", metadata: { name, generation: 1 }, spec };
}

function compat(rules: unknown, name = "docker-hub-to-ecr"): Record<string, unknown> {
  return {
    apiVersion: "dev.flemzord.fr/v1alpha1",
    kind: "RegistryRewriteRule",
    metadata: { name },
    spec: { rules },
  };
}

function assertAllowed(answer: AdmissionReview): void {
  assert.equal(answer.response.uid, UID);
  assert.equal(answer.response.allowed, true, answer.response.status?.message);
  assert.equal(answer.response.status, undefined);
  assert.equal(answer.response.patch, undefined);
}

/** Denied with 422 Invalid; returns the message. */
function assertInvalid(answer: AdmissionReview): string {
  assert.equal(answer.response.uid, UID);
  assert.equal(answer.response.allowed, false);
  assert.equal(answer.response.status?.code, 422);
  assert.equal(answer.response.status?.reason, "Invalid");
  assert.equal(answer.response.patch, undefined);
  return answer.response.status?.message ?? "";
}

const VALID_IMAGESHIFT = imageshift({
  default: "docker.io",
  priority: 0,
  mode: "Enforce",
  namespaceSelector: { matchLabels: { "imageshift.dev/enabled": "true" } },
  exclude: ["^registry\\.k8s\\.io/"],
  mappings: {
    swap: [{ registry: "docker.io", target: "internal-registry.corp/dockerhub" }],
    exactSwap: [{ reference: "nginx:latest", target: "internal-registry.corp/approved/nginx:1.25-alpine" }],
    regexSwap: [
      {
        expression: "^(\\d+)\\.dkr\\.ecr\\.([^.]+)\\.amazonaws\\.com/(.*)$",
        target: "internal-registry.corp/ecr/$1/$2/$3",
      },
    ],
  },
});

const VALID_COMPAT = compat([
  { match: "^docker\\.io/(.*)", replace: "internal-registry.company.com/dockerhub/$1", priority: 10 },
  { match: "^([^/]+/[^/]+)$", replace: "internal-registry.company.com/dockerhub/$1" },
  { match: "^(?!internal-registry\\.)(.*)$", replace: "cache.local/$1", conditions: { namespaces: ["ci"] } },
]);

describe("handleValidate: valid objects", () => {
  for (const operation of ["CREATE", "UPDATE"] as const) {
    test(`Imageshift on ${operation} is allowed without warnings`, () => {
      const result = handleValidate(
        request(VALID_IMAGESHIFT, operation, operation === "UPDATE" ? VALID_IMAGESHIFT : null),
      );
      assertAllowed(result.review);
      assert.equal(result.outcome, "allowed");
      assert.equal(result.review.response.warnings, undefined);
    });

    test(`RegistryRewriteRule on ${operation} is allowed (leading ^(?!…) accepted), with the probe's warning`, () => {
      const result = handleValidate(
        request(VALID_COMPAT, operation, operation === "UPDATE" ? VALID_COMPAT : null),
      );
      assertAllowed(result.review);
      assert.equal(result.outcome, "allowed");
      // The user learns at apply time what the second rule really catches.
      const warnings = result.review.response.warnings ?? [];
      assert.equal(warnings.length, 1);
      assert.match(
        warnings[0] ?? "",
        /^RegistryRewriteRule\/docker-hub-to-ecr: spec\.rules\[1\]\.match: pattern "\^\(\[\^\/\]\+\/\[\^\/\]\+\)\$" also catches images of registries it does not name .*registry\.k8s\.io\/pause/,
      );
    });
  }

  test("doubled backslashes are allowed with a warning naming the field", () => {
    // As written in single-quoted YAML: '^(gcr\\.io|quay\\.io|ghcr\\.io)/(.*)$'.
    const object = compat(
      [{ match: "^(gcr\\\\.io|quay\\\\.io|ghcr\\\\.io)/(.*)$", replace: "cache.internal.com/$1/$2" }],
      "multi-registry-routing",
    );
    const result = handleValidate(request(object));
    assertAllowed(result.review);
    assert.equal(result.outcome, "allowed");
    const warnings = result.review.response.warnings ?? [];
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] ?? "",
      /^RegistryRewriteRule\/multi-registry-routing: spec\.rules\[0\]\.match: /,
    );
    assert.match(warnings[0] ?? "", /doubled backslashes/);
  });

  test("doubled backslashes in an Imageshift regexSwap and exclude: warnings for each", () => {
    const object = imageshift({
      exclude: ["^internal\\\\.corp/"],
      mappings: { regexSwap: [{ expression: "^quay\\\\.io/(.*)$", target: "mirror.local/quay/$1" }] },
    });
    const result = handleValidate(request(object));
    assertAllowed(result.review);
    const warnings = result.review.response.warnings ?? [];
    assert.equal(warnings.length, 2);
    assert.ok(
      warnings.some((w) => w.startsWith("Imageshift/airgap: spec.exclude[0]: ")),
      warnings.join("\n"),
    );
    assert.ok(
      warnings.some((w) => w.startsWith("Imageshift/airgap: spec.mappings.regexSwap[0].expression: ")),
      warnings.join("\n"),
    );
  });
});

describe("handleValidate: invalid objects are denied with 422 and every error", () => {
  test("invalid RE2 expression", () => {
    const object = imageshift({
      mappings: { regexSwap: [{ expression: "^(quay\\.io/(.*)$", target: "m.local/$1" }] },
    });
    const message = assertInvalid(handleValidate(request(object)).review);
    assert.match(message, /^Imageshift\/airgap is invalid: /);
    assert.match(message, /spec\.mappings\.regexSwap\[0\]\.expression: invalid RE2 expression/);
  });

  test("a lookahead in an Imageshift regexSwap points to spec.exclude", () => {
    const object = imageshift({
      mappings: { regexSwap: [{ expression: "^(?!internal-registry\\.)(.*)$", target: "cache.local/$1" }] },
    });
    const result = handleValidate(request(object));
    const message = assertInvalid(result.review);
    assert.equal(result.outcome, "denied");
    assert.match(message, /spec\.mappings\.regexSwap\[0\]\.expression: a lookahead or lookbehind/);
    assert.match(message, /spec\.exclude/);
  });

  test("a lookahead that is not leading, in a RegistryRewriteRule", () => {
    const message = assertInvalid(
      handleValidate(request(compat([{ match: "^docker\\.io/(?=library)(.*)$", replace: "m.local/$1" }])))
        .review,
    );
    assert.match(message, /spec\.rules\[0\]\.match: a lookahead or lookbehind/);
  });

  test("invalid targets", () => {
    const object = imageshift({
      mappings: {
        swap: [{ registry: "docker.io", target: "mirror" }],
        exactSwap: [{ reference: "nginx:latest", target: "Internal-Registry.corp/NGINX:1" }],
        regexSwap: [{ expression: "^quay\\.io/(.*)$", target: "mirror.local/$2" }],
      },
    });
    const message = assertInvalid(handleValidate(request(object)).review);
    assert.match(message, /spec\.mappings\.swap\[0\]\.target: invalid registry "mirror"/);
    assert.match(message, /spec\.mappings\.exactSwap\[0\]\.target: /);
    assert.match(
      message,
      /spec\.mappings\.regexSwap\[0\]\.target: replacement "mirror\.local\/\$2" refers to group "2"/,
    );
  });

  test("an unknown group in a RegistryRewriteRule replacement", () => {
    const message = assertInvalid(
      handleValidate(request(compat([{ match: "^(quay\\.io)/(.*)$", replace: "m.local/$3" }]))).review,
    );
    assert.match(message, /spec\.rules\[0\]\.replace: replacement "m\.local\/\$3" refers to group "3"/);
  });

  test("empty spec.rules", () => {
    for (const operation of ["CREATE", "UPDATE"] as const) {
      const message = assertInvalid(
        handleValidate(request(compat([]), operation, operation === "UPDATE" ? VALID_COMPAT : null)).review,
      );
      assert.match(message, /^RegistryRewriteRule\/docker-hub-to-ecr is invalid: spec\.rules: /);
    }
  });

  test("empty mappings", () => {
    for (const mappings of [{}, { swap: [], exactSwap: [], regexSwap: [] }]) {
      const message = assertInvalid(handleValidate(request(imageshift({ mappings }))).review);
      assert.equal(
        message,
        "Imageshift/airgap is invalid: spec.mappings: no rules: add swap, exactSwap or regexSwap entries",
      );
    }
  });

  test("missing mappings, bad types and bad selectors", () => {
    const message = assertInvalid(
      handleValidate(
        request(
          imageshift({
            priority: "high",
            mode: "Sometimes",
            namespaceSelector: { matchExpressions: [{ key: "env", operator: "In" }] },
            mappings: { swap: [{ registry: "docker.io", target: "mirror.local/hub" }] },
          }),
        ),
      ).review,
    );
    assert.match(message, /spec\.priority: /);
    assert.match(message, /spec\.mode: /);
  });

  test("every error is listed with its field path, in one message", () => {
    const object = imageshift({
      default: "docker.io/library",
      exclude: ["(unclosed"],
      mappings: {
        swap: [
          { registry: "docker.io", target: "mirror" },
          { registry: "quay.io", target: "mirror.local/quay" },
        ],
        exactSwap: [{ reference: "NGINX", target: "mirror.local/nginx:1" }],
        regexSwap: [
          { expression: "^(?!internal\\.)(.*)$", target: "cache.local/$1" },
          { expression: "(unclosed", target: "x.local/a" },
          { expression: "^ghcr\\.io/(.*)$", target: "mirror.local/$9" },
        ],
      },
    });
    const message = assertInvalid(handleValidate(request(object)).review);
    const expected = [
      "spec.default",
      "spec.exclude[0]",
      "spec.mappings.swap[0].target",
      "spec.mappings.exactSwap[0].reference",
      "spec.mappings.regexSwap[0].expression",
      "spec.mappings.regexSwap[1].expression",
      "spec.mappings.regexSwap[2].target",
    ];
    for (const field of expected)
      assert.ok(message.includes(`${field}: `), `${field} missing from: ${message}`);
    // The valid rule is not mentioned.
    assert.ok(!message.includes("spec.mappings.swap[1]"), message);
    // One "field: message" entry per error, separated by "; " (messages may contain "; " too).
    assert.equal(message.match(/(?:is invalid: |; )spec\.[\w.[\]]+: /g)?.length, expected.length, message);
  });

  test("several bad rules in a RegistryRewriteRule are all listed", () => {
    const object = compat([
      { match: "(", replace: "m.local/x" },
      { match: "^quay\\.io/(.*)$", replace: "m.local/$1" },
      { match: "^a(?<=b)", replace: "m.local/x" },
      { match: "^x$", replace: "" },
    ]);
    const message = assertInvalid(handleValidate(request(object)).review);
    for (const field of ["spec.rules[0].match", "spec.rules[2].match", "spec.rules[3].replace"]) {
      assert.ok(message.includes(`${field}: `), `${field} missing from: ${message}`);
    }
    assert.ok(!message.includes("spec.rules[1]"), message);
  });

  test("warnings are still returned with a denial", () => {
    const object = compat([
      { match: "^old-registry\\\\.company\\\\.com/(.*)$", replace: "new.local/$1" },
      { match: "(", replace: "m.local/x" },
    ]);
    const answer = handleValidate(request(object)).review;
    assertInvalid(answer);
    assert.equal(answer.response.warnings?.length, 1);
    assert.match(answer.response.warnings?.[0] ?? "", /spec\.rules\[0\]\.match: .*doubled backslashes/);
  });

  test("missing metadata.name is an error on the object", () => {
    const object = {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: {},
      spec: { mappings: { swap: [{ registry: "docker.io", target: "m.local/hub" }] } },
    };
    const message = assertInvalid(handleValidate({ ...request(object), name: "" }).review);
    assert.match(message, /metadata\.name: /);
  });
});

describe("handleValidate: requests it does not judge are allowed", () => {
  test("DELETE and CONNECT, even of an invalid object", () => {
    const invalid = imageshift({ mappings: {} });
    for (const operation of ["DELETE", "CONNECT"] as const) {
      const result = handleValidate({ ...request(null, operation, invalid), resource: IMAGESHIFT_RESOURCE });
      assertAllowed(result.review);
      assert.equal(result.outcome, "skipped");
    }
  });

  test("other API groups", () => {
    const invalid = imageshift({ mappings: {} });
    for (const resource of [
      { group: "", version: "v1", resource: "pods" },
      { group: "apps", version: "v1", resource: "deployments" },
      { group: "imageshift.dev.evil.example", version: "v1", resource: "imageshifts" },
    ]) {
      const result = handleValidate({ ...request(invalid), resource });
      assertAllowed(result.review);
      assert.equal(result.outcome, "skipped");
    }
    const noResource = request(invalid);
    delete noResource.resource;
    assert.equal(handleValidate(noResource).outcome, "skipped");
  });

  test("subresources (status updates by the operator)", () => {
    const result = handleValidate({
      ...request(imageshift({ mappings: {} }), "UPDATE"),
      subResource: "status",
    });
    assertAllowed(result.review);
    assert.equal(result.outcome, "skipped");
  });

  test("an object of another kind in a rule group is allowed with a warning, not denied", () => {
    const result = handleValidate(
      request({
        apiVersion: "imageshift.dev/v2",
        kind: "Imageshift",
        metadata: { name: "future" },
        spec: {},
      }),
    );
    assertAllowed(result.review);
    assert.equal(result.outcome, "allowed");
    assert.match(result.review.response.warnings?.[0] ?? "", /is not a rule kind/);
  });
});
