import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { rulesFromYaml } from "../engine/rules/testing.ts";
import { InternalError, planMutation } from "./plan.ts";
import { decodePod } from "./pod-view.ts";
import { type AdmissionRequest, decodeReview } from "./review.ts";

const FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);

function request(name: string): AdmissionRequest {
  const decoded = decodeReview(JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8")));
  assert.ok(decoded.ok);
  return decoded.request;
}

const MIRROR = rulesFromYaml(`apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: m }
spec:
  mappings:
    swap: [{ registry: docker.io, target: mirror.local/hub }]
`).ruleSet;

/** A result longer than 255 characters: the rule fails for every Docker Hub image. */
const TOO_LONG = rulesFromYaml(`apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: long }
spec:
  rules: [{ match: '^docker\\.io/(.*)$', replace: 'mirror.local/${"x".repeat(250)}/$1' }]
`).ruleSet;

describe("planMutation (pure: a value in, a plan out)", () => {
  test("a rewrite: the patch, the record, and the events in order", async () => {
    const view = decodePod(request("pod-create-no-annotations.json"));
    assert.ok(view);
    const plan = await planMutation(view, MIRROR, { namespace: view.namespace }, false);
    assert.equal(plan.outcome, "patched");
    assert.ok(plan.events.length > 0);
    assert.ok(plan.events.every((event) => event.type === "rewrite"));
    const last = plan.patch.at(-1);
    assert.equal(last?.path.startsWith("/metadata/annotations"), true, "the record comes last");
  });

  test("a failing rule refuses the pod in a strict namespace and only warns elsewhere", async () => {
    const view = decodePod(request("pod-create-no-annotations.json"));
    assert.ok(view);
    const strict = await planMutation(view, TOO_LONG, { namespace: view.namespace }, true);
    assert.equal(strict.outcome, "denied");
    assert.match(strict.refusal ?? "", /^imageshift: pod refused in strict namespace /);
    assert.deepEqual(strict.patch, []);
    const relaxed = await planMutation(view, TOO_LONG, { namespace: view.namespace }, false);
    assert.equal(relaxed.outcome, "unchanged");
    assert.ok(relaxed.warnings.every((warning) => warning.endsWith("; image left as it was")));
    assert.ok(relaxed.events.some((event) => event.type === "not_rewritten"));
  });

  test("an engine failure is an InternalError for the handler to answer", async () => {
    const view = decodePod(request("pod-create-no-annotations.json"));
    assert.ok(view);
    const broken = {
      rewrite: (input: string) => ({
        input,
        output: input,
        changed: false,
        rule: null,
        error: "boom",
        internal: true as const,
      }),
    };
    await assert.rejects(planMutation(view, broken, {}, false), InternalError);
  });
});

describe("decodePod", () => {
  test("only pods on CREATE and UPDATE; labels are strings; a name from generateName", async () => {
    const base = request("pod-create-no-annotations.json");
    assert.equal(decodePod({ ...base, operation: "DELETE" }), undefined);
    assert.equal(decodePod({ ...base, object: "not an object" }), undefined);
    const view = decodePod({
      ...base,
      name: "",
      object: { metadata: { generateName: "web-", labels: { app: "web", n: 1 } }, spec: {} },
    });
    assert.deepEqual(view?.labels, { app: "web" });
    assert.equal(view?.name, "web-*");
    assert.deepEqual(view?.candidates, []);
  });
});
