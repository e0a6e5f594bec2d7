/**
 * An immutable, indexed rule set and the one function that rewrites an image with it.
 *
 * Order (docs/rules.md): rules in scope for the pod are tried by priority (higher first),
 * then object name, then kind, then position in the object (exactSwap, regexSwap in list
 * order, swap by longest prefix). Every rule gets its rank in that order once, at build
 * time; at admission the indexes only produce candidates and the lowest rank in scope wins.
 *
 * Indexes, so lookups do not scan: exact keys in a hash map, swap prefixes in a hash map
 * probed once per path component, regular expressions in one RE2 set (one linear pass
 * finds every candidate). Audit rules live in a second index: they report what they would
 * do and never change the image.
 */
import { RE2Set } from "re2js";
import { errorMessage } from "../errors.ts";
import { DOCKER_HUB, formatReference, type ImageReference, parseReference } from "../image/reference.ts";
import { execPattern, expandTemplate } from "./regex.ts";
import { type EvaluationContext, exactKey, type Rule, type RuleRef, type Scope, suffixOf } from "./rule.ts";

export interface RewriteResult {
  readonly input: string;
  /** The image to use: equals `input` when nothing changes or the input is invalid. */
  readonly output: string;
  readonly changed: boolean;
  /** The rule that decided, or null when none matched. */
  readonly rule: RuleRef | null;
  /** An invalid input, or a rule whose result is not a valid reference. */
  readonly error?: string;
  /** What the first matching Audit rule would have done (nothing was changed for it). */
  readonly audit?: { readonly output: string; readonly rule: RuleRef; readonly error?: string };
}

interface Ranked {
  readonly rank: number;
  readonly rule: Rule;
}

/** Rules that share one default registry, and so one reading of unqualified names. */
class Partition {
  readonly exact = new Map<string, Ranked[]>();
  readonly swap = new Map<string, Ranked[]>();
  readonly regex: Ranked[] = [];
  private set: RE2Set | undefined;

  readonly defaultDomain: string;
  readonly subject: "canonical" | "raw";
  constructor(defaultDomain: string, subject: "canonical" | "raw") {
    this.defaultDomain = defaultDomain;
    this.subject = subject;
  }

  add(entry: Ranked): void {
    const { rule } = entry;
    if (rule.type === "exact") push(this.exact, rule.key, entry);
    else if (rule.type === "swap") push(this.swap, rule.prefix, entry);
    else this.regex.push(entry);
  }

  /** Compiles the RE2 set; without it (it failed to build) candidates come from a scan. */
  seal(): void {
    if (this.regex.length < 2) return;
    try {
      const set = new RE2Set(RE2Set.UNANCHORED);
      for (const { rule } of this.regex) if (rule.type === "regex") set.add(rule.pattern.regex.pattern());
      set.compile();
      this.set = set;
    } catch {
      this.set = undefined;
    }
  }

  /** Regex candidates, in rank order. */
  regexCandidates(subject: string): Ranked[] {
    if (!this.set) return this.regex;
    const ids = this.set.match(subject);
    if (ids.length === 0) return [];
    ids.sort((a, b) => a - b);
    return ids.map((id) => this.regex[id]!);
  }
}

function push(map: Map<string, Ranked[]>, key: string, entry: Ranked): void {
  const list = map.get(key);
  if (list) list.push(entry);
  else map.set(key, [entry]);
}

function compareOrder(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The global order: priority (higher first), object name, kind, position in the object. */
export function compareRules(a: Rule, b: Rule): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.ref.name !== b.ref.name) return a.ref.name < b.ref.name ? -1 : 1;
  if (a.ref.kind !== b.ref.kind) return a.ref.kind < b.ref.kind ? -1 : 1;
  return compareOrder(a.order, b.order);
}

function inScope(scope: Scope, context: EvaluationContext, canonical: string): boolean {
  if (scope.namespaces && (context.namespace === undefined || !scope.namespaces.has(context.namespace))) {
    return false;
  }
  if (!scope.namespaceSelector(context.namespaceLabels ?? {})) return false;
  if (!scope.podSelector(context.podLabels ?? {})) return false;
  for (const pattern of scope.exclude) if (execPattern(pattern, canonical)) return false;
  return true;
}

/** A rule's attempt on an image: undefined when it does not match. */
type Attempt = { output: string } | { error: string } | undefined;

function attempt(rule: Rule, input: string, reference: ImageReference, canonical: string): Attempt {
  let output: string;
  switch (rule.type) {
    case "exact":
      output = rule.targetPinned ? rule.target : rule.target + suffixOf(reference);
      break;
    case "swap": {
      const name = `${reference.domain}/${reference.path}`;
      output = rule.target + name.slice(rule.prefix.length) + suffixOf(reference);
      break;
    }
    case "regex": {
      const groups = execPattern(rule.pattern, rule.subject === "raw" ? input : canonical);
      if (!groups) return undefined;
      output = expandTemplate(rule.template, groups);
      break;
    }
  }
  const parsed = parseReference(output);
  if (!parsed.ok) return { error: `rule ${describeRule(rule.ref)} produced ${parsed.error}` };
  return { output };
}

export function describeRule(ref: RuleRef): string {
  return `${ref.kind}/${ref.name} ${ref.field}`;
}

interface Decision {
  rank: number;
  rule: Rule;
  result: { output: string } | { error: string };
}

/** One index (Enforce or Audit rules). */
class RuleIndex {
  private readonly partitions: Partition[] = [];

  constructor(ranked: readonly Ranked[]) {
    const byKey = new Map<string, Partition>();
    for (const entry of ranked) {
      const subject = entry.rule.type === "regex" ? entry.rule.subject : "canonical";
      const key = `${subject} ${entry.rule.defaultDomain}`;
      let partition = byKey.get(key);
      if (!partition) {
        partition = new Partition(entry.rule.defaultDomain, subject);
        byKey.set(key, partition);
        this.partitions.push(partition);
      }
      partition.add(entry);
    }
    for (const partition of this.partitions) partition.seal();
  }

  get empty(): boolean {
    return this.partitions.length === 0;
  }

  decide(input: string, context: EvaluationContext, docker: ImageReference): Decision | undefined {
    let best: Decision | undefined;
    // Candidate lists are in rank order: the first in-scope entry that matches is the list's best.
    const consider = (list: readonly Ranked[] | undefined, reference: ImageReference, canonical: string) => {
      for (const { rank, rule } of list ?? []) {
        if (best && rank >= best.rank) return;
        if (!inScope(rule.scope, context, canonical)) continue;
        const result = attempt(rule, input, reference, canonical);
        if (!result) continue;
        best = { rank, rule, result };
        return;
      }
    };
    for (const partition of this.partitions) {
      let reference = docker;
      if (partition.defaultDomain !== DOCKER_HUB) {
        const parsed = parseReference(input, { defaultDomain: partition.defaultDomain });
        if (!parsed.ok) continue;
        reference = parsed.reference;
      }
      const canonical = formatReference(reference);
      if (partition.subject === "raw") {
        consider(partition.regexCandidates(input), reference, canonical);
        continue;
      }
      consider(partition.exact.get(exactKey(reference)), reference, canonical);
      consider(partition.regexCandidates(canonical), reference, canonical);
      // Swap prefixes: probe the whole name, then each shorter prefix down to the domain.
      let prefix = `${reference.domain}/${reference.path}`;
      while (true) {
        consider(partition.swap.get(prefix), reference, canonical);
        const slash = prefix.lastIndexOf("/");
        if (slash < 0) break;
        prefix = prefix.slice(0, slash);
      }
    }
    return best;
  }
}

/** The compiled, immutable rules; swap a whole new one in to change rules. */
export class RuleSet {
  private readonly enforce: RuleIndex;
  private readonly audit: RuleIndex;
  readonly size: number;

  constructor(rules: readonly Rule[]) {
    const sorted = [...rules].sort(compareRules);
    const ranked = sorted.map((rule, rank) => ({ rank, rule }));
    this.enforce = new RuleIndex(ranked.filter(({ rule }) => rule.mode === "Enforce"));
    this.audit = new RuleIndex(ranked.filter(({ rule }) => rule.mode === "Audit"));
    this.size = rules.length;
  }

  static readonly EMPTY = new RuleSet([]);

  /** Rewrites one image for a pod. Never throws: internal failures come back as `error`. */
  rewrite(input: string, context: EvaluationContext = {}): RewriteResult {
    try {
      const parsed = parseReference(input);
      if (!parsed.ok) return { input, output: input, changed: false, rule: null, error: parsed.error };
      const enforced = this.enforce.decide(input, context, parsed.reference);
      const result = toResult(input, parsed.reference, enforced);
      if (this.audit.empty) return result;
      const audited = this.audit.decide(input, context, parsed.reference);
      if (!audited) return result;
      const wouldBe = toResult(input, parsed.reference, audited);
      if (!wouldBe.changed && !wouldBe.error) return result;
      const audit = wouldBe.error
        ? { output: input, rule: audited.rule.ref, error: wouldBe.error }
        : { output: wouldBe.output, rule: audited.rule.ref };
      return { ...result, audit };
    } catch (error) {
      return {
        input,
        output: input,
        changed: false,
        rule: null,
        error: `internal error: ${errorMessage(error)}`,
      };
    }
  }
}

function toResult(input: string, reference: ImageReference, decision: Decision | undefined): RewriteResult {
  if (!decision) return { input, output: input, changed: false, rule: null };
  const rule = decision.rule.ref;
  if ("error" in decision.result)
    return { input, output: input, changed: false, rule, error: decision.result.error };
  const { output } = decision.result;
  const parsed = parseReference(output);
  // A rewrite to the identical image is no change.
  if (parsed.ok && formatReference(parsed.reference) === formatReference(reference)) {
    return { input, output: input, changed: false, rule };
  }
  return { input, output, changed: true, rule };
}
