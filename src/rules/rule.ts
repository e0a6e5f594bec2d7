/**
 * Compiled rules: what one validated rule object turns into, ready for the index.
 *
 * A rule knows how to match and rewrite one image; the rule set (`ruleset.ts`) decides
 * which rule gets to try, in one deterministic order (docs/rules.md).
 */
import type { ImageReference } from "../image/reference.ts";
import type { CompiledPattern, Template } from "./regex.ts";
import type { RuleKind } from "./schema.ts";
import type { LabelPredicate, Labels } from "./selector.ts";

/** Names a rule in results, logs, metrics and annotations. */
export interface RuleRef {
  readonly kind: RuleKind;
  readonly name: string;
  /** e.g. `spec.mappings.swap[0]` or `spec.rules[1]`. */
  readonly field: string;
}

/** What is known about the pod being admitted. Absent labels are treated as none. */
export interface EvaluationContext {
  readonly namespace?: string;
  readonly namespaceLabels?: Labels;
  readonly podLabels?: Labels;
}

/** Which pods and images a rule may touch. */
export interface Scope {
  readonly namespaceSelector: LabelPredicate;
  readonly podSelector: LabelPredicate;
  /** For RegistryRewriteRule `conditions.namespaces`; undefined means any namespace. */
  readonly namespaces?: ReadonlySet<string>;
  /** Images (canonical form) matching any of these are out of scope. */
  readonly exclude: readonly CompiledPattern[];
}

export type Mode = "Enforce" | "Audit";

interface RuleBase {
  readonly ref: RuleRef;
  readonly scope: Scope;
  readonly mode: Mode;
  /** Higher first; ties broken by object name, kind, then position in the object. */
  readonly priority: number;
  /** Position inside its object, in the order the object's rules are tried. */
  readonly order: readonly number[];
  /** Registry that names without one resolve to, for this rule's object. */
  readonly defaultDomain: string;
}

export interface SwapRule extends RuleBase {
  readonly type: "swap";
  /** Normalized `domain[/path]` prefix, matched on whole path components. */
  readonly prefix: string;
  readonly target: string;
}

export interface ExactRule extends RuleBase {
  readonly type: "exact";
  /** See `exactKey`. */
  readonly key: string;
  readonly target: string;
  /** The target carries its own tag or digest, so the source's are not appended. */
  readonly targetPinned: boolean;
}

export interface RegexRule extends RuleBase {
  readonly type: "regex";
  readonly pattern: CompiledPattern;
  readonly template: Template;
  /** Matched against the canonical reference (Imageshift) or the image as written (compat). */
  readonly subject: "canonical" | "raw";
}

export type Rule = SwapRule | ExactRule | RegexRule;

/**
 * The key exactSwap compares: normalized name, tag (an absent tag means `latest` unless a
 * digest pins the image) and digest. `nginx`, `nginx:latest` and
 * `docker.io/library/nginx:latest` share one key.
 */
export function exactKey(reference: ImageReference): string {
  let key = `${reference.domain}/${reference.path}`;
  if (reference.tag !== undefined) key += `:${reference.tag}`;
  else if (reference.digest === undefined) key += ":latest";
  if (reference.digest !== undefined) key += `@${reference.digest}`;
  return key;
}

/** `:tag@digest` as present on a reference, for appending to a rewritten name. */
export function suffixOf(reference: ImageReference): string {
  let suffix = "";
  if (reference.tag !== undefined) suffix += `:${reference.tag}`;
  if (reference.digest !== undefined) suffix += `@${reference.digest}`;
  return suffix;
}
