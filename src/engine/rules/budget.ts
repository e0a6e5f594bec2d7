/**
 * The budget of a whole rule set (limits.ts): how many rules, regular expressions, and
 * patterns tried on every image it may hold. A set over budget is refused as a whole with
 * one error naming the count and the limit, and the source keeps serving its last good set;
 * nothing is half-applied, and no set can grow past what the heap holds.
 */
import { ALWAYS_TRIED_MAX, REGEX_RULES_MAX, RULES_MAX } from "./limits.ts";
import { firstSegmentOf, literalPrefix } from "./regex.ts";
import type { Rule, Scope } from "./rule.ts";

export interface RuleCounts {
  readonly rules: number;
  readonly regex: number;
  /** Regular expressions without a literal registry prefix, plus exclude expressions. */
  readonly alwaysTried: number;
}

export function countRules(rules: readonly Rule[]): RuleCounts {
  let regex = 0;
  let alwaysTried = 0;
  const scopes = new Set<Scope>();
  for (const rule of rules) {
    if (!scopes.has(rule.scope)) {
      scopes.add(rule.scope);
      alwaysTried += rule.scope.exclude.length;
    }
    if (rule.type !== "regex") continue;
    regex++;
    if (!firstSegmentOf(literalPrefix(rule.pattern.expression))) alwaysTried++;
  }
  return { rules: rules.length, regex, alwaysTried };
}

/** Why the rules are over budget, or undefined when they fit. */
export function budgetProblem(rules: readonly Rule[]): string | undefined {
  const counts = countRules(rules);
  if (counts.rules > RULES_MAX) return `the rule set has ${counts.rules} rules, more than ${RULES_MAX}`;
  if (counts.regex > REGEX_RULES_MAX)
    return `the rule set has ${counts.regex} regular-expression rules, more than ${REGEX_RULES_MAX}`;
  if (counts.alwaysTried > ALWAYS_TRIED_MAX)
    return `the rule set has ${counts.alwaysTried} patterns tried on every image (regular expressions without a literal registry prefix such as ^quay\\.io/, and exclude expressions), more than ${ALWAYS_TRIED_MAX}`;
  return undefined;
}

/**
 * Rules a raw document declares, counted before it is compiled, so a set far over budget is
 * refused before it costs memory or time. Anything unreadable counts as none.
 */
export function declaredRules(document: unknown): number {
  const spec = (document as { spec?: { rules?: unknown; mappings?: Record<string, unknown> } } | null)?.spec;
  const length = (value: unknown) => (Array.isArray(value) ? value.length : 0);
  return (
    length(spec?.rules) +
    length(spec?.mappings?.swap) +
    length(spec?.mappings?.exactSwap) +
    length(spec?.mappings?.regexSwap)
  );
}
