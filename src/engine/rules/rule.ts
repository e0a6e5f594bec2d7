/**
 * Compiled rules: what one validated rule object turns into, ready for the index.
 *
 * A rule knows how to match and rewrite one image; the rule set (`ruleset.ts`) decides
 * which rule gets to try, in one deterministic order (docs/rules.md).
 */

import type { RuleKind } from "../../api/schema.ts";
import type { ImageReference } from "../image/reference.ts";
import type { CompiledPattern, Template } from "./regex.ts";
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
  /**
   * How the object's rewrites are checked against the target registry; undefined when they are
   * not (mode None). Kept here, on the one Scope an object's rules share, not on each rule.
   */
  readonly verify?: VerifyPolicy;
}

/** A rule object's verification policy, validated (`spec.verify`, or the compat annotation). */
export interface VerifyPolicy {
  /** Presence: the target manifest must exist. Digest: and serve the original's digest. */
  readonly mode: "Presence" | "Digest";
  readonly whenAbsent: "KeepOriginal" | "NextRule";
  readonly whenUnknown: "Rewrite" | "KeepOriginal";
  /** A dockerconfigjson Secret in ImageShift's namespace; undefined for anonymous checks. */
  readonly credentials?: string;
  /** Registry hosts asked over plain HTTP. */
  readonly insecure: ReadonlySet<string>;
}

export type Mode = "Enforce" | "Audit";

interface RuleBase {
  readonly ref: RuleRef;
  readonly scope: Scope;
  readonly mode: Mode;
  /** Higher first; ties broken by object name, kind, then position in the object. */
  readonly priority: number;
  /**
   * Position inside its object, in the order the object's rules are tried (lower first): one
   * number, not a tuple, since 100,000 rules each carried an array (`position()` in compile.ts).
   */
  readonly position: number;
  /** Registry that names without one resolve to, for this rule's object. */
  readonly defaultDomain: string;
}

export interface SwapRule extends RuleBase {
  readonly type: "swap";
  /** Normalized `domain[/path]` prefix, matched on whole path components. */
  readonly prefix: string;
  readonly target: { readonly domain: string; readonly path: string };
}

export interface ExactRule extends RuleBase {
  readonly type: "exact";
  /** The image this rule replaces; compared with `sameExactImage`. */
  readonly source: ImageReference;
  /** Used as is when it carries a tag or digest; otherwise it gets the source's. */
  readonly target: ImageReference;
}

/**
 * What a regular expression sees and how its template is used: `canonical`, the canonical
 * reference, replaced whole by the template (`Imageshift` regexSwap); `mrw`, the Mutating
 * Registry Webhook's normalized name, with every match substituted (`RegistryRewriteRule`).
 */
export type RegexSubject = "canonical" | "mrw";

export interface RegexRule extends RuleBase {
  readonly type: "regex";
  readonly pattern: CompiledPattern;
  readonly template: Template;
  readonly subject: RegexSubject;
}

export type Rule = SwapRule | ExactRule | RegexRule;

/**
 * What exactSwap compares: normalized name, tag and digest, where an absent tag means
 * `latest` unless a digest pins the image. `nginx`, `nginx:latest` and
 * `docker.io/library/nginx:latest` are the same image.
 */
export function sameExactImage(a: ImageReference, b: ImageReference): boolean {
  return (
    a.path === b.path &&
    a.domain === b.domain &&
    a.digest === b.digest &&
    (a.tag ?? (a.digest === undefined ? "latest" : undefined)) ===
      (b.tag ?? (b.digest === undefined ? "latest" : undefined))
  );
}
