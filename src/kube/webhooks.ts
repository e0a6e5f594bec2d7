/**
 * The admission webhook configurations, in one place: what the e2e tests register and what
 * the install manifests ship.
 *
 * Mutating: pods and `pods/ephemeralcontainers` on CREATE and UPDATE, in namespaces labelled
 * `imageshift.dev=enabled`, never `kube-system` nor ImageShift's own namespace (a broken
 * webhook must not be able to block its own repair); `failurePolicy: Ignore` so an
 * unreachable webhook never blocks a pod; `reinvocationPolicy: IfNeeded` so images added by
 * later webhooks (sidecar injectors) are rewritten too; a short timeout.
 * Validating: both rule kinds on CREATE and UPDATE.
 */

export const ENABLED_LABEL = "imageshift.dev";
export const ENABLED_VALUE = "enabled";
export const MUTATING_NAME = "imageshift";
export const VALIDATING_NAME = "imageshift";

export type ClientConfig =
  | { url: string; caBundle?: string }
  | { service: { name: string; namespace: string; path: string; port: number }; caBundle?: string };

export interface WebhookOptions {
  /** Base64 of the CA that signed the serving certificate (empty for cert-manager injection). */
  caBundle: string;
  /** `https://host:port` for out-of-cluster tests, or a Service in the cluster. */
  endpoint: { url: string } | { service: { name: string; namespace: string; port: number } };
  /** ImageShift's own namespace: always excluded. */
  ownNamespace: string;
  failurePolicy?: "Ignore" | "Fail";
  timeoutSeconds?: number;
  /** Namespaces never mutated, besides kube-system and ImageShift's own. */
  excludedNamespaces?: string[];
  /** Also validate RegistryRewriteRule objects. */
  compat?: boolean;
}

function clientConfig(options: WebhookOptions, path: string): ClientConfig {
  const caBundle = options.caBundle ? { caBundle: options.caBundle } : {};
  if ("url" in options.endpoint) return { url: `${options.endpoint.url}${path}`, ...caBundle };
  return { service: { ...options.endpoint.service, path }, ...caBundle };
}

export function mutatingWebhookConfiguration(options: WebhookOptions): Record<string, unknown> {
  const excluded = [...new Set(["kube-system", options.ownNamespace, ...(options.excludedNamespaces ?? [])])];
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: MUTATING_NAME, labels: { "app.kubernetes.io/name": "imageshift" } },
    webhooks: [
      {
        name: "pods.imageshift.dev",
        admissionReviewVersions: ["v1"],
        clientConfig: clientConfig(options, "/mutate"),
        rules: [
          {
            apiGroups: [""],
            apiVersions: ["v1"],
            operations: ["CREATE", "UPDATE"],
            resources: ["pods", "pods/ephemeralcontainers"],
            scope: "Namespaced",
          },
        ],
        namespaceSelector: {
          matchExpressions: [
            { key: ENABLED_LABEL, operator: "In", values: [ENABLED_VALUE] },
            { key: "kubernetes.io/metadata.name", operator: "NotIn", values: excluded },
          ],
        },
        failurePolicy: options.failurePolicy ?? "Ignore",
        matchPolicy: "Equivalent",
        sideEffects: "None",
        reinvocationPolicy: "IfNeeded",
        timeoutSeconds: options.timeoutSeconds ?? 5,
      },
    ],
  };
}

export function validatingWebhookConfiguration(options: WebhookOptions): Record<string, unknown> {
  const rules = [
    {
      apiGroups: ["imageshift.dev"],
      apiVersions: ["v1"],
      operations: ["CREATE", "UPDATE"],
      resources: ["imageshifts"],
      scope: "Cluster",
    },
  ];
  if (options.compat !== false) {
    rules.push({
      apiGroups: ["dev.flemzord.fr"],
      apiVersions: ["v1alpha1"],
      operations: ["CREATE", "UPDATE"],
      resources: ["registryrewriterules"],
      scope: "Cluster",
    });
  }
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: VALIDATING_NAME, labels: { "app.kubernetes.io/name": "imageshift" } },
    webhooks: [
      {
        name: "rules.imageshift.dev",
        admissionReviewVersions: ["v1"],
        clientConfig: clientConfig(options, "/validate"),
        rules,
        failurePolicy: options.failurePolicy ?? "Ignore",
        matchPolicy: "Equivalent",
        sideEffects: "None",
        timeoutSeconds: options.timeoutSeconds ?? 5,
      },
    ],
  };
}
