import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ENABLED_LABEL,
  ENABLED_VALUE,
  MUTATING_NAME,
  mutatingWebhookConfiguration,
  VALIDATING_NAME,
  validatingWebhookConfiguration,
  type WebhookOptions,
} from "./webhooks.ts";

interface Rule {
  apiGroups: string[];
  apiVersions: string[];
  operations: string[];
  resources: string[];
  scope: string;
}

interface Webhook {
  name: string;
  admissionReviewVersions: string[];
  clientConfig: Record<string, unknown>;
  rules: Rule[];
  namespaceSelector?: { matchExpressions: { key: string; operator: string; values: string[] }[] };
  failurePolicy: string;
  matchPolicy: string;
  sideEffects: string;
  reinvocationPolicy?: string;
  timeoutSeconds: number;
}

interface Configuration {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  webhooks: Webhook[];
}

const URL_OPTIONS: WebhookOptions = {
  caBundle: "Q0EK",
  endpoint: { url: "https://127.0.0.1:8443" },
  ownNamespace: "imageshift-system",
};
const SERVICE_OPTIONS: WebhookOptions = {
  caBundle: "",
  endpoint: { service: { name: "imageshift", namespace: "imageshift-system", port: 443 } },
  ownNamespace: "imageshift-system",
};

function only(configuration: Record<string, unknown>): Webhook {
  const { webhooks } = configuration as unknown as Configuration;
  assert.equal(webhooks.length, 1);
  return webhooks[0]!;
}

describe("mutatingWebhookConfiguration", () => {
  test("kind, name and labels", () => {
    const configuration = mutatingWebhookConfiguration(URL_OPTIONS) as unknown as Configuration;
    assert.equal(configuration.apiVersion, "admissionregistration.k8s.io/v1");
    assert.equal(configuration.kind, "MutatingWebhookConfiguration");
    assert.equal(configuration.metadata.name, MUTATING_NAME);
    assert.deepEqual(configuration.metadata.labels, { "app.kubernetes.io/name": "imageshift" });
    assert.equal(only(configuration as unknown as Record<string, unknown>).name, "pods.imageshift.dev");
  });

  test("namespaceSelector: enabled label, never kube-system nor the own namespace", () => {
    const webhook = only(mutatingWebhookConfiguration(URL_OPTIONS));
    assert.deepEqual(webhook.namespaceSelector, {
      matchExpressions: [
        { key: ENABLED_LABEL, operator: "In", values: [ENABLED_VALUE] },
        {
          key: "kubernetes.io/metadata.name",
          operator: "NotIn",
          values: ["kube-system", "imageshift-system"],
        },
      ],
    });
    assert.equal(ENABLED_LABEL, "imageshift.dev");
    assert.equal(ENABLED_VALUE, "enabled");
  });

  test("extra excluded namespaces are added once each, after the fixed ones", () => {
    const webhook = only(
      mutatingWebhookConfiguration({
        ...URL_OPTIONS,
        excludedNamespaces: ["monitoring", "kube-system", "imageshift-system", "monitoring", "cert-manager"],
      }),
    );
    assert.deepEqual(webhook.namespaceSelector?.matchExpressions[1]?.values, [
      "kube-system",
      "imageshift-system",
      "monitoring",
      "cert-manager",
    ]);
  });

  test("rules: pods and pods/ephemeralcontainers on CREATE and UPDATE", () => {
    const webhook = only(mutatingWebhookConfiguration(URL_OPTIONS));
    assert.deepEqual(webhook.rules, [
      {
        apiGroups: [""],
        apiVersions: ["v1"],
        operations: ["CREATE", "UPDATE"],
        resources: ["pods", "pods/ephemeralcontainers"],
        scope: "Namespaced",
      },
    ]);
    assert.deepEqual(webhook.admissionReviewVersions, ["v1"]);
  });

  test("sideEffects None, reinvocation IfNeeded, failurePolicy Ignore and a 5 s timeout by default", () => {
    const webhook = only(mutatingWebhookConfiguration(URL_OPTIONS));
    assert.equal(webhook.sideEffects, "None");
    assert.equal(webhook.reinvocationPolicy, "IfNeeded");
    assert.equal(webhook.failurePolicy, "Ignore");
    assert.equal(webhook.matchPolicy, "Equivalent");
    assert.equal(webhook.timeoutSeconds, 5);
  });

  test("failurePolicy and timeout can be overridden", () => {
    const webhook = only(
      mutatingWebhookConfiguration({ ...URL_OPTIONS, failurePolicy: "Fail", timeoutSeconds: 2 }),
    );
    assert.equal(webhook.failurePolicy, "Fail");
    assert.equal(webhook.timeoutSeconds, 2);
  });

  test("url clientConfig: the base URL plus /mutate, with the CA bundle", () => {
    assert.deepEqual(only(mutatingWebhookConfiguration(URL_OPTIONS)).clientConfig, {
      url: "https://127.0.0.1:8443/mutate",
      caBundle: "Q0EK",
    });
  });

  test("service clientConfig: path /mutate, and no caBundle when it is empty (cert-manager injects it)", () => {
    assert.deepEqual(only(mutatingWebhookConfiguration(SERVICE_OPTIONS)).clientConfig, {
      service: { name: "imageshift", namespace: "imageshift-system", port: 443, path: "/mutate" },
    });
  });
});

describe("validatingWebhookConfiguration", () => {
  test("kind, name, both rule kinds on CREATE and UPDATE", () => {
    const configuration = validatingWebhookConfiguration(URL_OPTIONS) as unknown as Configuration;
    assert.equal(configuration.apiVersion, "admissionregistration.k8s.io/v1");
    assert.equal(configuration.kind, "ValidatingWebhookConfiguration");
    assert.equal(configuration.metadata.name, VALIDATING_NAME);
    const webhook = only(configuration as unknown as Record<string, unknown>);
    assert.equal(webhook.name, "rules.imageshift.dev");
    assert.deepEqual(webhook.rules, [
      {
        apiGroups: ["imageshift.dev"],
        apiVersions: ["v1"],
        operations: ["CREATE", "UPDATE"],
        resources: ["imageshifts"],
        scope: "Cluster",
      },
      {
        apiGroups: ["dev.flemzord.fr"],
        apiVersions: ["v1alpha1"],
        operations: ["CREATE", "UPDATE"],
        resources: ["registryrewriterules"],
        scope: "Cluster",
      },
    ]);
    assert.equal(webhook.sideEffects, "None");
    assert.equal(webhook.failurePolicy, "Ignore");
    assert.equal(webhook.timeoutSeconds, 5);
    assert.equal(webhook.namespaceSelector, undefined, "cluster-scoped objects: no namespace selector");
    assert.equal(webhook.reinvocationPolicy, undefined, "only mutating webhooks are reinvoked");
  });

  test("compat: false drops the registryrewriterules rule; compat: true keeps it", () => {
    const off = only(validatingWebhookConfiguration({ ...URL_OPTIONS, compat: false }));
    assert.deepEqual(
      off.rules.map((rule) => rule.resources),
      [["imageshifts"]],
    );
    const on = only(validatingWebhookConfiguration({ ...URL_OPTIONS, compat: true }));
    assert.deepEqual(
      on.rules.map((rule) => rule.resources),
      [["imageshifts"], ["registryrewriterules"]],
    );
  });

  test("clientConfig path /validate, url or service; failurePolicy overridable", () => {
    assert.deepEqual(only(validatingWebhookConfiguration(URL_OPTIONS)).clientConfig, {
      url: "https://127.0.0.1:8443/validate",
      caBundle: "Q0EK",
    });
    const service = only(
      validatingWebhookConfiguration({ ...SERVICE_OPTIONS, caBundle: "Q0EK", failurePolicy: "Fail" }),
    );
    assert.deepEqual(service.clientConfig, {
      service: { name: "imageshift", namespace: "imageshift-system", port: 443, path: "/validate" },
      caBundle: "Q0EK",
    });
    assert.equal(service.failurePolicy, "Fail");
  });

  test("the builders do not share state between calls", () => {
    const first = validatingWebhookConfiguration({ ...URL_OPTIONS, compat: false });
    validatingWebhookConfiguration(URL_OPTIONS);
    assert.equal(only(first).rules.length, 1);
    assert.deepEqual(mutatingWebhookConfiguration(URL_OPTIONS), mutatingWebhookConfiguration(URL_OPTIONS));
  });
});
