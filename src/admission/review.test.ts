import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { ADMISSION_API_VERSION, allowed, decodeReview, denied, patched, review } from "./review.ts";

const FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);
const UID = "705ab4f5-6393-11e8-b7cc-42010a800002";

function envelope(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: "AdmissionReview",
    request: { uid: UID, operation: "CREATE" },
    ...overrides,
  };
}

function decodeError(body: unknown): string {
  const result = decodeReview(body);
  assert.equal(result.ok, false, JSON.stringify(body));
  return result.ok ? "" : result.error;
}

describe("decodeReview", () => {
  test("accepts every recorded fixture and returns its request as is", () => {
    for (const name of [
      "pod-create.json",
      "pod-create-all-image-fields.json",
      "pod-update-set-image.json",
      "pod-ephemeralcontainers-debug.json",
      "pod-delete.json",
      "pod-exec-connect.json",
      "deployment-create.json",
    ]) {
      const body = JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8"));
      const result = decodeReview(body);
      assert.ok(result.ok, name);
      assert.equal(result.request, body.request, name);
      assert.equal(result.request.uid, body.request.uid);
    }
  });

  test("a body that is not a JSON object", () => {
    for (const body of [null, undefined, 42, "AdmissionReview", true, [], [envelope()]]) {
      assert.equal(decodeError(body), "body is not a JSON object");
    }
  });

  test("wrong or missing kind", () => {
    assert.equal(
      decodeError(envelope({ kind: "ConversionReview" })),
      'kind is "ConversionReview", expected "AdmissionReview"',
    );
    assert.equal(decodeError(envelope({ kind: undefined })), 'kind is undefined, expected "AdmissionReview"');
    assert.match(decodeError(envelope({ kind: "admissionreview" })), /expected "AdmissionReview"/);
  });

  test("wrong or missing apiVersion (only admission.k8s.io/v1)", () => {
    assert.equal(
      decodeError(envelope({ apiVersion: "admission.k8s.io/v1beta1" })),
      'apiVersion is "admission.k8s.io/v1beta1", expected "admission.k8s.io/v1"',
    );
    assert.equal(
      decodeError(envelope({ apiVersion: undefined })),
      'apiVersion is undefined, expected "admission.k8s.io/v1"',
    );
  });

  test("missing request", () => {
    assert.equal(decodeError(envelope({ request: undefined })), "request is missing");
    assert.equal(decodeError(envelope({ request: null })), "request is missing");
    assert.equal(decodeError(envelope({ request: "x" })), "request is missing");
    // A response-only review (what the webhook sends back) is not a request.
    assert.equal(
      decodeError({ ...envelope({ request: undefined }), response: { uid: UID, allowed: true } }),
      "request is missing",
    );
  });

  test("missing or empty uid", () => {
    for (const request of [{}, { uid: "" }, { uid: 42 }, { uid: null }, []]) {
      assert.equal(decodeError(envelope({ request })), "request.uid is missing", JSON.stringify(request));
    }
  });

  test("the kind is checked before the apiVersion, and both before the request", () => {
    assert.match(decodeError({ apiVersion: "v1", kind: "Pod" }), /^kind is "Pod"/);
    assert.match(decodeError({ apiVersion: "v1", kind: "AdmissionReview" }), /^apiVersion is "v1"/);
  });
});

describe("responses", () => {
  test("review wraps a response in the v1 envelope", () => {
    assert.deepEqual(review({ uid: UID, allowed: true }), {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: UID, allowed: true },
    });
  });

  test("allowed: no warnings field when there are none", () => {
    const answer = allowed(UID);
    assert.deepEqual(answer.response, { uid: UID, allowed: true });
    assert.equal("warnings" in answer.response, false);
    assert.deepEqual(allowed(UID, ["careful"]).response, { uid: UID, allowed: true, warnings: ["careful"] });
  });

  test("patched with an empty patch is a plain allowed response", () => {
    assert.deepEqual(patched(UID, []), allowed(UID));
    const answer = patched(UID, [], ["w"]);
    assert.deepEqual(answer, allowed(UID, ["w"]));
    assert.equal("patch" in answer.response, false);
    assert.equal("patchType" in answer.response, false);
  });

  test("patched encodes the JSON Patch in base64 with patchType JSONPatch", () => {
    const ops = [{ op: "replace", path: "/spec/containers/0/image", value: "mirror.local/nginx:1.25" }];
    const answer = patched(UID, ops, ["note"]);
    assert.equal(answer.response.uid, UID);
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patchType, "JSONPatch");
    assert.deepEqual(answer.response.warnings, ["note"]);
    const patch = answer.response.patch ?? "";
    assert.match(patch, /^[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(JSON.parse(Buffer.from(patch, "base64").toString("utf8")), ops);
  });

  test("patch text survives non-ASCII values (UTF-8 in base64)", () => {
    const ops = [{ op: "add", path: "/metadata/annotations/x", value: "café ☕ 𝄞" }];
    const patch = patched(UID, ops).response.patch ?? "";
    assert.deepEqual(JSON.parse(Buffer.from(patch, "base64").toString("utf8")), ops);
  });

  test("warnings are capped in number (20) and each in length (256)", () => {
    const many = Array.from({ length: 25 }, (_, i) => `warning ${i}`);
    const answer = allowed(UID, many);
    assert.equal(answer.response.warnings?.length, 20);
    assert.deepEqual(answer.response.warnings, many.slice(0, 20));

    const long = "x".repeat(2000);
    const exact = "y".repeat(256);
    const [cut, kept] = allowed(UID, [long, exact]).response.warnings ?? [];
    assert.equal(cut?.length, 256);
    assert.ok(cut?.endsWith("..."));
    assert.equal(cut?.slice(0, 253), long.slice(0, 253));
    assert.equal(kept, exact);
  });

  test("the caps apply to patched and denied responses too", () => {
    const many = Array.from({ length: 30 }, () => "z".repeat(1000));
    for (const answer of [
      patched(UID, [{ op: "add", path: "/a", value: 1 }], many),
      denied(UID, "no", 403, many),
    ]) {
      assert.equal(answer.response.warnings?.length, 20);
      for (const warning of answer.response.warnings ?? []) assert.equal(warning.length, 256);
    }
  });

  test("the caller's warning array is not modified", () => {
    const warnings = Array.from({ length: 25 }, () => "w".repeat(600));
    const copy = [...warnings];
    allowed(UID, warnings);
    assert.deepEqual(warnings, copy);
  });

  test("denied carries code, message and the reason for the code", () => {
    assert.deepEqual(denied(UID, "nope").response, {
      uid: UID,
      allowed: false,
      status: { code: 403, message: "nope", reason: "Forbidden" },
    });
    assert.deepEqual(denied(UID, "bad rule", 422).response.status, {
      code: 422,
      message: "bad rule",
      reason: "Invalid",
    });
    assert.deepEqual(denied(UID, "boom", 500).response.status, {
      code: 500,
      message: "boom",
      reason: "InternalError",
    });
    // Codes without a mapped reason fall back to Forbidden.
    assert.equal(denied(UID, "x", 418).response.status?.reason, "Forbidden");
    assert.deepEqual(denied(UID, "bad", 422, ["w"]).response.warnings, ["w"]);
    assert.equal("patch" in denied(UID, "x").response, false);
  });

  test("every response carries the uid", () => {
    for (const answer of [
      allowed(UID),
      patched(UID, [{ op: "add", path: "/a", value: 1 }]),
      denied(UID, "x"),
    ]) {
      assert.equal(answer.response.uid, UID);
      assert.equal(answer.apiVersion, "admission.k8s.io/v1");
      assert.equal(answer.kind, "AdmissionReview");
    }
  });
});
