/** `kubeErrorMessage` (src/errors.ts), for the errors the Kubernetes client throws. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ConfigError,
  ImageShiftError,
  isConflict,
  isGone,
  isNotFound,
  isUnavailable,
  KubeApiError,
  kubeErrorMessage,
} from "../errors.ts";

const CONFLICT_BODY = JSON.stringify({
  kind: "Status",
  apiVersion: "v1",
  status: "Failure",
  message: 'Operation cannot be fulfilled on leases.coordination.k8s.io "x": the object has been modified',
  reason: "Conflict",
  code: 409,
});

describe("kubeErrorMessage", () => {
  test("an ApiException-like object with a JSON body string: HTTP code and the server's message", () => {
    const error = Object.assign(new Error("HTTP-Code: 409\nMessage: ...\nHeaders: {...}"), {
      code: 409,
      body: CONFLICT_BODY,
      headers: { "content-type": "application/json" },
    });
    assert.equal(
      kubeErrorMessage(error),
      'HTTP 409: Operation cannot be fulfilled on leases.coordination.k8s.io "x": the object has been modified',
    );
  });

  test("the client's own KubeApiError: method, path, code and the server's message; code and body kept", () => {
    const body = JSON.stringify({ kind: "Status", message: 'namespaces "x" not found', code: 404 });
    const error = new KubeApiError("GET", "/api/v1/namespaces/x", 404, body);
    assert.ok(error instanceof ImageShiftError);
    assert.equal(error.name, "KubeApiError");
    assert.equal(error.message, 'GET /api/v1/namespaces/x: HTTP 404: namespaces "x" not found');
    assert.equal(error.code, 404);
    assert.equal(error.body, body);
    assert.equal(kubeErrorMessage(error), 'HTTP 404: namespaces "x" not found');
    const bare = new KubeApiError("PUT", "/apis/a/v1/b/c", 502, "<html>bad gateway</html>");
    assert.equal(bare.message, "PUT /apis/a/v1/b/c: HTTP 502");
    assert.equal(kubeErrorMessage(bare), "HTTP 502");
  });

  test("a body already parsed into an object", () => {
    assert.equal(kubeErrorMessage({ code: 422, body: { message: "invalid" } }), "HTTP 422: invalid");
  });

  test("a body that is not JSON, is empty, or has no message: the code alone", () => {
    assert.equal(kubeErrorMessage({ code: 503, body: "<html>unavailable</html>" }), "HTTP 503");
    assert.equal(kubeErrorMessage({ code: 500, body: "" }), "HTTP 500");
    assert.equal(kubeErrorMessage({ code: 500 }), "HTTP 500");
    assert.equal(kubeErrorMessage({ code: 500, body: "null" }), "HTTP 500");
    assert.equal(kubeErrorMessage({ code: 403, body: JSON.stringify({ reason: "Forbidden" }) }), "HTTP 403");
  });

  test("a plain Error: its message", () => {
    assert.equal(
      kubeErrorMessage(new Error("connect ECONNREFUSED 127.0.0.1:6443")),
      "connect ECONNREFUSED 127.0.0.1:6443",
    );
  });

  test("a Node system error whose code is a string: its message, not a bogus HTTP code", () => {
    const error = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    assert.equal(kubeErrorMessage(error), "connect ECONNREFUSED 127.0.0.1:1");
  });

  test("anything else thrown: as a string", () => {
    assert.equal(kubeErrorMessage("plain text"), "plain text");
    assert.equal(kubeErrorMessage(42), "42");
  });
});

describe("isNotFound, isConflict, isGone, isUnavailable: API errors recognised in one place", () => {
  const api = (code: number) => new KubeApiError("GET", "/api/v1/x", code, "");
  const cases: [string, (error: unknown) => boolean, number[]][] = [
    ["isNotFound", isNotFound, [404]],
    ["isConflict", isConflict, [409]],
    ["isGone", isGone, [410]],
    ["isUnavailable", isUnavailable, [502, 503, 504]],
  ];
  for (const [name, is, codes] of cases) {
    test(`${name}: true for ${codes.join(", ")} only, false for anything not a KubeApiError`, () => {
      for (const code of [200, 400, 401, 403, 404, 409, 410, 429, 500, 502, 503, 504])
        assert.equal(is(api(code)), codes.includes(code), `${name}(${code})`);
      assert.equal(is(Object.assign(new Error("x"), { code: codes[0] })), false);
      assert.equal(is(new Error("x")), false);
      assert.equal(is(undefined), false);
      assert.equal(is(null), false);
    });
  }

  test("isGone: also a watch ERROR event's Status object with code 410", () => {
    assert.equal(isGone({ kind: "Status", code: 410, reason: "Expired" }), true);
    assert.equal(isGone({ kind: "Status", code: 500 }), false);
  });

  test("ConfigError is an ImageShiftError of its own name", () => {
    const error = new ConfigError("kubeconfig x: no current-context");
    assert.ok(error instanceof ImageShiftError);
    assert.equal(error.name, "ConfigError");
  });
});
