/**
 * The install's namespace gating, for `imageshift rewrite`. The API server calls the webhook only
 * for pods in namespaces labelled `<namespaceLabel>=enabled` or `=strict`, and never in
 * kube-system, the release namespace or the chart's `excludedNamespaces`
 * (charts/imageshift/templates/webhooks.yaml). Without the namespace's labels the CLI cannot
 * know whether the webhook is called, so it says the gating was not applied rather than report
 * a rewrite the webhook might never make.
 */
import type { LabelSelector } from "../api/schema.ts";
import { compileSelector, type Labels } from "../engine/rules/selector.ts";

/** The chart's default `namespaceLabel`. */
export const DEFAULT_NAMESPACE_LABEL = "imageshift.dev";
/** The namespace dist/install.yaml is rendered for, excluded like any release namespace. */
export const DEFAULT_EXCLUDED_NAMESPACES = ["imageshift-system"];
/** The chart excludes it whatever the values say. */
const ALWAYS_EXCLUDED = "kube-system";
/** The label the API server sets on every namespace, which the chart's selectors exclude by. */
const NAME_LABEL = "kubernetes.io/metadata.name";

export interface GatingOptions {
  /** The pod's namespace, when given. */
  namespace?: string;
  /** The namespace's labels; undefined when not given, so the label gating cannot be applied. */
  namespaceLabels?: Labels;
  /** The chart's `namespaceLabel`. */
  label: string;
  /** Excluded besides kube-system: the release namespace and the chart's `excludedNamespaces`. */
  excluded: readonly string[];
}

/** Whether the API server would call the webhook for the pod, and whether that was checked. */
export interface Gating {
  /** false when the namespace's labels were not given: `called` is then assumed, not checked. */
  applied: boolean;
  called: boolean;
  reason: string;
}

/** The mutating webhooks' namespaceSelectors, as the chart renders them (`enabled`, `strict`). */
export function webhookNamespaceSelectors(label: string, excluded: readonly string[]): LabelSelector[] {
  const names = [...new Set([ALWAYS_EXCLUDED, ...excluded])];
  return ["enabled", "strict"].map((value) => ({
    matchExpressions: [
      { key: label, operator: "In" as const, values: [value] },
      { key: NAME_LABEL, operator: "NotIn" as const, values: names },
    ],
  }));
}

export function gate(options: GatingOptions): Gating {
  const { namespace, namespaceLabels, label } = options;
  const wanted = `${label}=enabled or ${label}=strict`;
  if (namespace === ALWAYS_EXCLUDED)
    return { applied: true, called: false, reason: `namespace ${namespace} is always excluded` };
  if (namespace !== undefined && options.excluded.includes(namespace))
    return {
      applied: true,
      called: false,
      reason: `namespace ${namespace} is excluded (--excluded-namespaces)`,
    };
  if (namespaceLabels === undefined)
    return {
      applied: false,
      called: true,
      reason: `without --namespace-labels, the namespace is assumed labelled ${wanted}`,
    };
  const labels = namespace === undefined ? namespaceLabels : { ...namespaceLabels, [NAME_LABEL]: namespace };
  const called = webhookNamespaceSelectors(label, options.excluded).some((selector) =>
    compileSelector(selector)(labels),
  );
  return called
    ? { applied: true, called, reason: `the namespace is labelled ${label}=${namespaceLabels[label]}` }
    : { applied: true, called, reason: `the namespace is not labelled ${wanted}` };
}
