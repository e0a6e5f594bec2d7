/**
 * The CLI's namespace gating against the install itself: dist/install.yaml (the chart rendered
 * with its defaults, kept fresh by test/chart/chart.test.ts) holds the namespaceSelectors the
 * API server evaluates, with the namespace's own name as `kubernetes.io/metadata.name`.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import type { LabelSelector } from "../api/schema.ts";
import { compileSelector, type Labels } from "../engine/rules/selector.ts";
import {
  DEFAULT_EXCLUDED_NAMESPACES,
  DEFAULT_NAMESPACE_LABEL,
  type GatingOptions,
  gate,
  webhookNamespaceSelectors,
} from "./gating.ts";

const INSTALL = join(import.meta.dirname, "..", "..", "dist", "install.yaml");

interface Manifest {
  kind: string;
  webhooks?: { name: string; namespaceSelector: LabelSelector }[];
}

function installSelectors(): LabelSelector[] {
  const manifests = parseAllDocuments(readFileSync(INSTALL, "utf8")).map((doc) => doc.toJS() as Manifest);
  const mutating = manifests.find((manifest) => manifest?.kind === "MutatingWebhookConfiguration");
  return (mutating?.webhooks ?? []).map((webhook) => webhook.namespaceSelector);
}

const defaults = { label: DEFAULT_NAMESPACE_LABEL, excluded: DEFAULT_EXCLUDED_NAMESPACES };

describe("namespace gating", () => {
  it("uses the namespaceSelectors of dist/install.yaml's mutating webhooks", () => {
    assert.deepEqual(
      webhookNamespaceSelectors(DEFAULT_NAMESPACE_LABEL, DEFAULT_EXCLUDED_NAMESPACES),
      installSelectors(),
    );
  });

  it("calls the webhook exactly where the install's selectors select the namespace", () => {
    const selectors = installSelectors().map(compileSelector);
    const cases: [string, Labels][] = [
      ["prod", { "imageshift.dev": "enabled" }],
      ["prod", { "imageshift.dev": "strict", team: "a" }],
      ["prod", { "imageshift.dev": "disabled" }],
      ["prod", { team: "a" }],
      ["prod", {}],
      ["kube-system", { "imageshift.dev": "enabled" }],
      ["imageshift-system", { "imageshift.dev": "strict" }],
    ];
    for (const [namespace, namespaceLabels] of cases) {
      const withName = { ...namespaceLabels, "kubernetes.io/metadata.name": namespace };
      const expected = selectors.some((selected) => selected(withName));
      const gating = gate({ ...defaults, namespace, namespaceLabels });
      assert.equal(gating.called, expected, `${namespace} ${JSON.stringify(namespaceLabels)}`);
      assert.equal(gating.applied, true);
    }
  });

  it("excludes kube-system and the excluded namespaces by name, labels or not", () => {
    assert.deepEqual(gate({ ...defaults, namespace: "kube-system" }), {
      applied: true,
      called: false,
      reason: "namespace kube-system is always excluded",
    });
    assert.deepEqual(gate({ ...defaults, namespace: "imageshift-system" }), {
      applied: true,
      called: false,
      reason: "namespace imageshift-system is excluded (--excluded-namespaces)",
    });
    const kubeSystem = gate({ ...defaults, excluded: [], namespace: "kube-system", namespaceLabels: {} });
    assert.equal(kubeSystem.called, false, "whatever --excluded-namespaces says");
  });

  it("without the namespace's labels, assumes the webhook is called and says so", () => {
    for (const options of [{ ...defaults, namespace: "prod" }, defaults] as GatingOptions[]) {
      assert.deepEqual(gate(options), {
        applied: false,
        called: true,
        reason:
          "without --namespace-labels, the namespace is assumed labelled imageshift.dev=enabled or imageshift.dev=strict",
      });
    }
  });

  it("names the label it found or missed, with the chart's namespaceLabel", () => {
    const options = { label: "example.com/mirror", excluded: [] };
    assert.deepEqual(gate({ ...options, namespaceLabels: { "example.com/mirror": "strict" } }), {
      applied: true,
      called: true,
      reason: "the namespace is labelled example.com/mirror=strict",
    });
    assert.deepEqual(gate({ ...options, namespace: "a", namespaceLabels: { "imageshift.dev": "enabled" } }), {
      applied: true,
      called: false,
      reason: "the namespace is not labelled example.com/mirror=enabled or example.com/mirror=strict",
    });
  });
});
