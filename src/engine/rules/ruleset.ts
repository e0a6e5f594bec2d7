/**
 * An immutable, indexed rule set and the one function that rewrites an image with it.
 *
 * Order (docs/rules.md): rules in scope for the pod are tried by priority (higher first),
 * then object name, then kind, then position in the object (exactSwap, regexSwap in list
 * order, swap by longest prefix). Every rule gets its rank in that order once, at build
 * time; at admission the indexes only produce candidates and the lowest rank in scope wins.
 *
 * Indexes, so lookups do not scan: exact keys in a hash map, swap prefixes in a hash map
 * probed once per path component, `^`-anchored regular expressions by the registry their
 * literal prefix names (only patterns with no literal prefix are tried on every image). Audit rules live in a second index: they report what they would
 * do and never change the image.
 */
import { errorMessage } from "../../errors.ts";
import { parseCached } from "../image/parse-cache.ts";
import {
  DOCKER_HUB,
  formatReference,
  type ImageReference,
  NAME_MAX_LENGTH,
  nameOf,
  parseReference,
} from "../image/reference.ts";
import { execPattern, expandTemplate, literalPrefix, replaceAll } from "./regex.ts";
import {
  type EvaluationContext,
  type RegexRule,
  type RegexSubject,
  type Rule,
  type RuleRef,
  type Scope,
  sameExactImage,
  type VerifyPolicy,
} from "./rule.ts";

export interface RewriteResult {
  readonly input: string;
  /** The image to use: equals `input` when nothing changes or the input is invalid. */
  readonly output: string;
  readonly changed: boolean;
  /** The rule that decided, or null when none matched. */
  readonly rule: RuleRef | null;
  /** An invalid input, or a rule whose result is not a valid reference. */
  readonly error?: string;
  /** The error is a bug or an unexpected failure, not bad input: callers fail open or closed. */
  readonly internal?: true;
  /** The deciding rule's verification policy, when its rewrite must be checked first. */
  readonly verify?: VerifyPolicy;
  /** What the first matching Audit rule would have done (nothing was changed for it). */
  readonly audit?: { readonly output: string; readonly rule: RuleRef; readonly error?: string };
}

interface Ranked {
  readonly rank: number;
  readonly rule: Rule;
}

/** The image as one partition reads it; the canonical string is built only if a rule needs it. */
class Subject {
  readonly input: string;
  readonly reference: ImageReference;
  private text: string | undefined;
  constructor(input: string, reference: ImageReference) {
    this.input = input;
    this.reference = reference;
  }
  get canonical(): string {
    this.text ??= formatReference(this.reference);
    return this.text;
  }
  /**
   * The name `RegistryRewriteRule` patterns see: the Mutating Registry Webhook's normalized
   * form, read with the correct grammar. Docker Hub images get `docker.io/` and, for one
   * component, `library/` (`nginx:1.25` is `docker.io/library/nginx:1.25`); an image that
   * names another registry stays as written, and so does `index.docker.io/…`, which that
   * webhook did not fold. Unlike it, `registry:5000/team/app` names a registry (ADR 7).
   */
  get mrw(): string {
    return this.reference.domain === DOCKER_HUB && !this.input.startsWith(LEGACY_HUB_PREFIX)
      ? this.canonical
      : this.input;
  }
}

const LEGACY_HUB_PREFIX = "index.docker.io/";

/** Text before the first "/", the key regular expressions are indexed by; "" when none. */
function firstSegment(text: string): string {
  const slash = text.indexOf("/");
  return slash < 0 ? "" : text.slice(0, slash);
}

/** Rules that share one default registry, and so one reading of unqualified names. */
class Partition {
  readonly defaultDomain: string;
  readonly subject: RegexSubject;
  readonly exact = new Map<string, Candidates>();
  readonly swap = new Map<string, Candidates>();
  /** Per registry with swap rules: the most path components any of its prefixes has. */
  readonly swapDepth = new Map<string, number>();
  /** Regular expressions whose literal prefix names the first segment (`^quay\.io/…`). */
  readonly regexBySegment = new Map<string, Candidates>();
  /** Regular expressions that could match anything; tried on every image. */
  readonly regexAlways: Ranked[] = [];

  constructor(defaultDomain: string, subject: RegexSubject) {
    this.defaultDomain = defaultDomain;
    this.subject = subject;
  }

  add(entry: Ranked): void {
    const { rule } = entry;
    // Keyed by repository path alone: one short hash, no key string built per image;
    // the few rules sharing a path are told apart by sameExactImage.
    if (rule.type === "exact") push(this.exact, rule.source.path, entry);
    else if (rule.type === "swap") {
      push(this.swap, rule.prefix, entry);
      const slash = rule.prefix.indexOf("/");
      const domain = slash < 0 ? rule.prefix : rule.prefix.slice(0, slash);
      const depth = slash < 0 ? 0 : rule.prefix.split("/").length - 1;
      this.swapDepth.set(domain, Math.max(depth, this.swapDepth.get(domain) ?? 0));
    } else {
      const segment = firstSegment(literalPrefix(rule.pattern.expression));
      if (segment) push(this.regexBySegment, segment, entry);
      else this.regexAlways.push(entry);
    }
  }
}

/**
 * The rules under one index key, in rank order. Most keys have one rule, which is stored
 * as it is: an array per key cost 100,000 rules about 6 MB.
 */
type Candidates = Ranked | Ranked[];

function push(map: Map<string, Candidates>, key: string, entry: Ranked): void {
  const held = map.get(key);
  if (held === undefined) map.set(key, entry);
  else if (Array.isArray(held)) held.push(entry);
  else map.set(key, [held, entry]);
}

/** The global order: priority (higher first), object name, kind, position in the object. */
export function compareRules(a: Rule, b: Rule): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.ref.name !== b.ref.name) return a.ref.name < b.ref.name ? -1 : 1;
  if (a.ref.kind !== b.ref.kind) return a.ref.kind < b.ref.kind ? -1 : 1;
  return a.position - b.position;
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
type Attempt = { output: string; reference: ImageReference } | { error: string } | undefined;

function produced(rule: Rule, reason: string): Attempt {
  return { error: `rule ${describeRule(rule.ref)} produced an invalid image reference: ${reason}` };
}

/** Swap and exact outputs are built from parts validated at compile time: no re-parse. */
function attempt(rule: Rule, subject: Subject): Attempt {
  const { reference } = subject;
  switch (rule.type) {
    case "exact": {
      if (!sameExactImage(rule.source, reference)) return undefined;
      const { target } = rule;
      const pinned = target.tag !== undefined || target.digest !== undefined;
      const output = pinned ? target : withParts(target.domain, target.path, reference);
      return { output: formatReference(output), reference: output };
    }
    case "swap": {
      const { domain, path } = reference;
      // The part of the name after the prefix: "" or "/more/path".
      const rest =
        rule.prefix.length === domain.length
          ? `/${path}`
          : path.slice(rule.prefix.length - domain.length - 1);
      let outPath = rule.target.path ? rule.target.path + rest : rest.slice(1);
      if (outPath === "") return produced(rule, `${nameOf(reference)} would lose its repository name`);
      if (rule.target.domain === DOCKER_HUB && !outPath.includes("/")) outPath = `library/${outPath}`;
      const output = withParts(rule.target.domain, outPath, reference);
      // The target is a real host (parseRegistryPrefix), so Go limits the path alone.
      if (outPath.length > NAME_MAX_LENGTH) {
        return produced(
          rule,
          `the repository path of ${nameOf(output)} is longer than ${NAME_MAX_LENGTH} characters`,
        );
      }
      return { output: formatReference(output), reference: output };
    }
    case "regex": {
      const output = regexOutput(rule, subject);
      if (output === undefined) return undefined;
      const parsed = parseReference(output);
      if (!parsed.ok) return { error: `rule ${describeRule(rule.ref)} produced ${parsed.error}` };
      return { output, reference: parsed.reference };
    }
  }
}

/**
 * `Imageshift` regexSwap: the template is the whole new image. `RegistryRewriteRule`: Go's
 * ReplaceAllString on the normalized name, as the Mutating Registry Webhook does.
 */
function regexOutput(rule: RegexRule, subject: Subject): string | undefined {
  if (rule.subject === "mrw") return replaceAll(rule.pattern, rule.template, subject.mrw);
  const groups = execPattern(rule.pattern, subject.canonical);
  return groups ? expandTemplate(rule.template, groups) : undefined;
}

/**
 * What one rule alone makes of an image, ignoring its scope: the new image, an error, or
 * undefined when it does not match. For validation probes (`probe.ts`), not the hot path.
 */
export function tryRule(rule: Rule, image: string): { output: string } | { error: string } | undefined {
  const parsed = parseReference(image, { defaultDomain: rule.defaultDomain });
  if (!parsed.ok) return undefined;
  const result = attempt(rule, new Subject(image, parsed.reference));
  return result && "reference" in result ? { output: result.output } : result;
}

/** A reference with this name and the source's tag and digest. */
function withParts(domain: string, path: string, source: ImageReference): ImageReference {
  return { domain, path, tag: source.tag, digest: source.digest };
}

function sameImage(a: ImageReference, b: ImageReference): boolean {
  return a.domain === b.domain && a.path === b.path && a.tag === b.tag && a.digest === b.digest;
}

export function describeRule(ref: RuleRef): string {
  return `${ref.kind}/${ref.name} ${ref.field}`;
}

interface Decision {
  readonly rank: number;
  readonly rule: Rule;
  readonly result: NonNullable<Attempt>;
}

/** One search for the lowest-ranked rule that is in scope and matches. */
class Search {
  best: Decision | undefined;
  readonly context: EvaluationContext;
  /** Rules already tried and refused for this image (their target lacked it). */
  readonly excluded: ReadonlySet<RuleRef> | undefined;
  constructor(context: EvaluationContext, excluded?: ReadonlySet<RuleRef>) {
    this.context = context;
    this.excluded = excluded;
  }

  /** Candidate lists are in rank order: the first in-scope entry that matches is the list's best. */
  consider(candidates: Candidates | undefined, subject: Subject): void {
    if (candidates === undefined) return;
    if (!Array.isArray(candidates)) {
      this.offer(candidates, subject);
      return;
    }
    for (const entry of candidates) if (this.offer(entry, subject)) return;
  }

  /** Tries one candidate; true when the rest of its list cannot do better. */
  private offer({ rank, rule }: Ranked, subject: Subject): boolean {
    if (this.best && rank >= this.best.rank) return true;
    if (this.excluded?.has(rule.ref)) return false;
    if (!inScope(rule.scope, this.context, subject.canonical)) return false;
    const result = attempt(rule, subject);
    if (!result) return false;
    this.best = { rank, rule, result };
    return true;
  }
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
  }

  get empty(): boolean {
    return this.partitions.length === 0;
  }

  decide(hub: Subject, context: EvaluationContext, excluded?: ReadonlySet<RuleRef>): Decision | undefined {
    const search = new Search(context, excluded);
    for (const partition of this.partitions) {
      let subject = hub;
      if (partition.defaultDomain !== DOCKER_HUB) {
        const parsed = parseReference(hub.input, { defaultDomain: partition.defaultDomain });
        if (!parsed.ok) continue;
        subject = new Subject(hub.input, parsed.reference);
      }
      const { reference } = subject;
      if (partition.subject === "mrw") {
        search.consider(partition.regexBySegment.get(firstSegment(subject.mrw)), subject);
        search.consider(partition.regexAlways, subject);
        continue;
      }
      if (partition.regexBySegment.size > 0)
        search.consider(partition.regexBySegment.get(reference.domain), subject);
      search.consider(partition.regexAlways, subject);
      if (partition.exact.size > 0) search.consider(partition.exact.get(reference.path), subject);
      const depth = partition.swapDepth.get(reference.domain);
      if (depth !== undefined) this.probeSwap(partition, subject, depth, search);
    }
    return search.best;
  }

  /** Swap prefixes, longest first: the name cut to `depth` path components, then shorter. */
  private probeSwap(partition: Partition, subject: Subject, depth: number, search: Search): void {
    const { domain, path } = subject.reference;
    let cut = -1;
    for (let d = 0; d < depth; d++) {
      const next = path.indexOf("/", cut + 1);
      if (next < 0) {
        cut = path.length;
        break;
      }
      cut = next;
    }
    for (let end = cut; end > 0; end = path.lastIndexOf("/", end - 1)) {
      search.consider(partition.swap.get(`${domain}/${path.slice(0, end)}`), subject);
    }
    search.consider(partition.swap.get(domain), subject);
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

  /**
   * Rewrites one image for a pod. Never throws: internal failures come back as `error`.
   * `excluded` rules are passed over (their target lacked the image: the next rule is tried).
   */
  rewrite(input: string, context: EvaluationContext = {}, excluded?: ReadonlySet<RuleRef>): RewriteResult {
    try {
      const parsed = parseCached(input);
      if (!parsed.ok) return { input, output: input, changed: false, rule: null, error: parsed.error };
      const hub = new Subject(input, parsed.reference);
      const result = toResult(hub, this.enforce.decide(hub, context, excluded));
      if (this.audit.empty) return result;
      const audited = this.audit.decide(hub, context);
      if (!audited) return result;
      const wouldBe = toResult(hub, audited);
      if (wouldBe.error !== undefined)
        return { ...result, audit: { output: input, rule: audited.rule.ref, error: wouldBe.error } };
      if (!wouldBe.changed) return result;
      return { ...result, audit: { output: wouldBe.output, rule: audited.rule.ref } };
    } catch (error) {
      return {
        input,
        output: input,
        changed: false,
        rule: null,
        error: `internal error: ${errorMessage(error)}`,
        internal: true,
      };
    }
  }
}

function toResult(hub: Subject, decision: Decision | undefined): RewriteResult {
  const { input } = hub;
  if (!decision) return { input, output: input, changed: false, rule: null };
  const rule = decision.rule.ref;
  const { result } = decision;
  if ("error" in result) return { input, output: input, changed: false, rule, error: result.error };
  // A rewrite to the identical image is no change.
  if (sameImage(result.reference, hub.reference)) return { input, output: input, changed: false, rule };
  const { verify } = decision.rule.scope;
  if (verify) return { input, output: result.output, changed: true, rule, verify };
  return { input, output: result.output, changed: true, rule };
}
