/**
 * Kubernetes label selectors (matchLabels + matchExpressions), with the API server's
 * semantics: all requirements must hold; an empty or absent selector selects everything.
 */
import type { LabelSelector } from "../../api/schema.ts";

export type Labels = Readonly<Record<string, string>>;
export type LabelPredicate = (labels: Labels) => boolean;

const everything: LabelPredicate = () => true;

/** A label's value; own properties only, so keys like `constructor` are not "present". */
const labelValue = (labels: Labels, key: string): string | undefined =>
  Object.hasOwn(labels, key) ? labels[key] : undefined;

/** Compiles a selector once, so admission only runs cheap comparisons. */
export function compileSelector(selector: LabelSelector | undefined): LabelPredicate {
  if (!selector) return everything;
  const checks: LabelPredicate[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    checks.push((labels) => labelValue(labels, key) === value);
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const set = new Set(values);
    switch (operator) {
      case "In":
        checks.push((labels) => {
          const found = labelValue(labels, key);
          return found !== undefined && set.has(found);
        });
        break;
      case "NotIn":
        checks.push((labels) => {
          const found = labelValue(labels, key);
          return found === undefined || !set.has(found);
        });
        break;
      case "Exists":
        checks.push((labels) => labelValue(labels, key) !== undefined);
        break;
      case "DoesNotExist":
        checks.push((labels) => labelValue(labels, key) === undefined);
        break;
    }
  }
  if (checks.length === 0) return everything;
  return (labels) => checks.every((check) => check(labels));
}

/** Problems a schema cannot see: In/NotIn need values, Exists/DoesNotExist must have none. */
export function selectorProblems(
  selector: LabelSelector | undefined,
  field: string,
): { field: string; message: string }[] {
  const problems: { field: string; message: string }[] = [];
  (selector?.matchExpressions ?? []).forEach((expression, i) => {
    const count = expression.values?.length ?? 0;
    const needsValues = expression.operator === "In" || expression.operator === "NotIn";
    if (needsValues && count === 0) {
      problems.push({
        field: `${field}.matchExpressions[${i}].values`,
        message: `operator ${expression.operator} needs at least one value`,
      });
    }
    if (!needsValues && count > 0) {
      problems.push({
        field: `${field}.matchExpressions[${i}].values`,
        message: `operator ${expression.operator} takes no values`,
      });
    }
  });
  return problems;
}
