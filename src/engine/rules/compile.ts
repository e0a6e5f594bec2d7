/**
 * Validates one rule object and compiles its rules.
 *
 * Every problem is reported with its location (source, document, field path), and a bad
 * rule only drops itself: the object's other rules, and other objects, stay usable. A
 * problem outside any rule (say `spec.priority: "high"`) drops the whole object, since
 * none of its rules could be ordered or scoped correctly.
 */
import { Value } from "@sinclair/typebox/value";
import {
  COMPAT_API_VERSION,
  COMPAT_KIND,
  IMAGESHIFT_API_VERSION,
  IMAGESHIFT_KIND,
  type Imageshift,
  ImageshiftSchema,
  type RegistryRewriteRule,
  RegistryRewriteRuleSchema,
  type RuleKind,
} from "../../api/schema.ts";
import type { Issue, Location } from "../../errors.ts";
import { DOCKER_HUB, parseReference, parseRegistryPrefix } from "../image/reference.ts";
import { ruleField, StringTable } from "./compact.ts";
import { probeWarning } from "./probe.ts";
import { compilePattern, parseTemplate } from "./regex.ts";
import type { Mode, RegexRule, Rule, RuleRef, Scope, VerifyPolicy } from "./rule.ts";
import { compileSelector, selectorProblems } from "./selector.ts";
import { compileVerify, compileVerifyAnnotation, targetRegistries, type VerifyResult } from "./verify.ts";

/** A validated object and the rules that survived validation. */
export interface CompiledObject {
  readonly kind: RuleKind;
  readonly name: string;
  readonly generation?: number;
  readonly location: Location;
  readonly rules: readonly Rule[];
  /** Rules the object declares, valid or not. */
  readonly declaredRules: number;
  /** Its verification policy, when its rewrites are checked (docs/mirrors.md). */
  readonly verify?: VerifyPolicy;
  /** With a policy: the registries its rules send images to (`verify.ts`, `targetRegistries`). */
  readonly targetRegistries?: readonly string[];
}

export interface CompileResult {
  /** Absent when the document is not a rule object or the object as a whole is unusable. */
  readonly object?: CompiledObject;
  readonly issues: readonly Issue[];
}

/** `/spec/mappings/swap/0/registry` -> `spec.mappings.swap[0].registry`. */
export function fieldPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"))
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), "");
}

/** The rule a field path belongs to (`spec.mappings.swap[0]`), or undefined for object-level fields. */
function ruleFieldOf(path: string): string | undefined {
  return /^spec\.(?:mappings\.(?:swap|exactSwap|regexSwap)|rules)\[\d+\]/.exec(path)?.[0];
}

class IssueList {
  readonly issues: Issue[] = [];
  readonly badRules = new Set<string>();
  objectBroken = false;
  private readonly base: Location;
  constructor(base: Location) {
    this.base = base;
  }

  error(field: string, message: string): void {
    this.issues.push({ location: { ...this.base, field }, message, severity: "error" });
    const rule = ruleFieldOf(field);
    if (rule) this.badRules.add(rule);
    else this.objectBroken = true;
  }

  warn(field: string, message: string): void {
    this.issues.push({ location: { ...this.base, field }, message, severity: "warning" });
  }
}

function metadataOf(document: Record<string, unknown>): { name: string; generation?: number } {
  const metadata = document.metadata as Record<string, unknown> | undefined;
  const name = typeof metadata?.name === "string" ? metadata.name : "";
  const generation = typeof metadata?.generation === "number" ? metadata.generation : undefined;
  return generation === undefined ? { name } : { name, generation };
}

/** Validates and compiles one document. Documents of other kinds give a warning and no object. */
export function compileObject(document: unknown, location: Location): CompileResult {
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    return { issues: [{ location, message: "not an object; skipped", severity: "warning" }] };
  }
  const doc = document as Record<string, unknown>;
  const { apiVersion, kind } = doc;
  if (kind === IMAGESHIFT_KIND && apiVersion === IMAGESHIFT_API_VERSION)
    return compileImageshift(doc, location);
  if (kind === COMPAT_KIND && apiVersion === COMPAT_API_VERSION) return compileCompat(doc, location);
  const what = `${String(apiVersion ?? "?")} ${String(kind ?? "?")}`;
  return {
    issues: [
      {
        location,
        message: `${what} is not a rule kind (${IMAGESHIFT_API_VERSION} ${IMAGESHIFT_KIND} or ${COMPAT_API_VERSION} ${COMPAT_KIND}); skipped`,
        severity: "warning",
      },
    ],
  };
}

function checkSchema(schema: Parameters<typeof Value.Errors>[0], doc: unknown, list: IssueList): void {
  // A set, not a scan of the issues so far: 20,000 mistyped rules must stay linear.
  const reported = new Set<string>();
  for (const error of Value.Errors(schema, doc)) {
    // Unions report one error per branch; the first is enough for a reader.
    const field = fieldPath(error.path);
    if (reported.has(field)) continue;
    reported.add(field);
    list.error(field, `${error.message} (got ${JSON.stringify(error.value) ?? "nothing"})`);
  }
}

function finish(
  list: IssueList,
  kind: RuleKind,
  meta: { name: string; generation?: number },
  location: Location,
  rules: Rule[],
  declaredRules: number,
  verify: VerifyPolicy | undefined,
): CompileResult {
  if (list.objectBroken || !meta.name) return { issues: list.issues };
  const kept = rules.filter((rule) => !list.badRules.has(rule.ref.field));
  const object: CompiledObject = {
    kind,
    name: meta.name,
    location,
    rules: kept,
    declaredRules,
    ...(meta.generation === undefined ? {} : { generation: meta.generation }),
    ...(verify ? { verify, targetRegistries: targetRegistries(kept) } : {}),
  };
  return { object, issues: list.issues };
}

/**
 * The order of a rule inside its object as one number: list (exactSwap 0, regexSwap 1, swap 2),
 * then `key` (minus the prefix length for swap: longest first), then the index. Indexes stay
 * under 1e7 and prefixes under 1e3 characters (budget and grammar), so the sum is exact.
 */
function position(list: number, key: number, index: number): number {
  return list * 1e13 + (key + 1e3) * 1e7 + index;
}

/** Reports a policy's problems on the object (they are object-level fields) and passes it on. */
function reportVerify(list: IssueList, result: VerifyResult): VerifyResult {
  for (const problem of result.problems) list.error(problem.field, problem.message);
  return result;
}

/** A rule that catches images of registries its pattern does not name gets a warning. */
function warnReach(list: IssueList, field: string, rule: RegexRule): void {
  const warning = probeWarning(rule);
  if (warning) list.warn(field, warning);
}

function compileImageshift(doc: Record<string, unknown>, location: Location): CompileResult {
  const meta = metadataOf(doc);
  const list = new IssueList(location);
  checkSchema(ImageshiftSchema, doc, list);
  if (list.objectBroken) return { issues: list.issues };
  const spec = (doc as Imageshift).spec;
  const ref = (field: string): RuleRef => ({ kind: IMAGESHIFT_KIND, name: meta.name, field });

  let defaultDomain = DOCKER_HUB;
  if (spec.default !== undefined) {
    const parsed = parseRegistryPrefix(spec.default);
    if (!parsed.ok || parsed.prefix.includes("/")) {
      list.error(
        "spec.default",
        parsed.ok
          ? `default ${JSON.stringify(spec.default)} must be a registry host, without a path`
          : parsed.error,
      );
    } else {
      defaultDomain = parsed.prefix;
    }
  }
  for (const problem of [
    ...selectorProblems(spec.namespaceSelector, "spec.namespaceSelector"),
    ...selectorProblems(spec.podSelector, "spec.podSelector"),
  ]) {
    list.error(problem.field, problem.message);
  }
  const exclude = (spec.exclude ?? []).flatMap((expression, i) => {
    const compiled = compilePattern(expression, { keepProgram: true });
    if (!compiled.ok) {
      list.error(`spec.exclude[${i}]`, compiled.error);
      return [];
    }
    for (const warning of compiled.pattern.warnings) list.warn(`spec.exclude[${i}]`, warning);
    return [compiled.pattern];
  });
  const { policy: verify } = reportVerify(list, compileVerify(spec.verify));
  const scope: Scope = {
    namespaceSelector: compileSelector(spec.namespaceSelector),
    podSelector: compileSelector(spec.podSelector),
    exclude,
    ...(verify ? { verify } : {}),
  };
  const mode = (spec.mode ?? "Enforce") as Mode;
  const priority = spec.priority ?? 0;
  const strings = new StringTable();
  const rules: Rule[] = [];
  const { swap = [], exactSwap = [], regexSwap = [] } = spec.mappings;
  const declared = swap.length + exactSwap.length + regexSwap.length;
  if (declared === 0) list.error("spec.mappings", "no rules: add swap, exactSwap or regexSwap entries");

  // Rules are written out field by field, not spread from a shared base: a spread left each
  // of 100,000 rules with its properties in a separate backing store.
  exactSwap.forEach((entry, i) => {
    const field = ruleField("mappings.exactSwap", i);
    if (list.badRules.has(field)) return;
    const source = parseReference(entry.reference, { defaultDomain });
    if (!source.ok) list.error(`${field}.reference`, source.error);
    const target = parseReference(entry.target);
    if (!target.ok) list.error(`${field}.target`, target.error);
    if (!source.ok || !target.ok) return;
    rules.push({
      type: "exact",
      ref: ref(field),
      scope,
      mode,
      priority,
      position: position(0, 0, i),
      defaultDomain,
      source: strings.reference(source.reference),
      target: strings.reference(target.reference),
    });
  });

  regexSwap.forEach((entry, i) => {
    const field = ruleField("mappings.regexSwap", i);
    if (list.badRules.has(field)) return;
    const compiled = compilePattern(entry.expression);
    if (!compiled.ok) {
      list.error(`${field}.expression`, compiled.error);
      return;
    }
    for (const warning of compiled.pattern.warnings) list.warn(`${field}.expression`, warning);
    const template = parseTemplate(entry.target, compiled.pattern);
    if (!template.ok) {
      list.error(`${field}.target`, template.error);
      return;
    }
    const rule: RegexRule = {
      type: "regex",
      ref: ref(field),
      scope,
      mode,
      priority,
      position: position(1, 0, i),
      defaultDomain,
      pattern: compiled.pattern,
      template: template.template,
      subject: "canonical",
    };
    warnReach(list, `${field}.expression`, rule);
    rules.push(rule);
  });

  swap.forEach((entry, i) => {
    const field = ruleField("mappings.swap", i);
    if (list.badRules.has(field)) return;
    const prefix = parseRegistryPrefix(entry.registry);
    if (!prefix.ok) list.error(`${field}.registry`, prefix.error);
    const target = parseRegistryPrefix(entry.target);
    if (!target.ok) list.error(`${field}.target`, target.error);
    if (!prefix.ok || !target.ok) return;
    // Longest prefix first, then list order (see docs/rules.md).
    rules.push({
      type: "swap",
      ref: ref(field),
      scope,
      mode,
      priority,
      position: position(2, -prefix.prefix.length, i),
      defaultDomain,
      prefix: strings.get(prefix.prefix),
      target: { domain: strings.get(target.domain), path: strings.get(target.path) },
    });
  });

  return finish(list, IMAGESHIFT_KIND, meta, location, rules, declared, verify);
}

function compileCompat(doc: Record<string, unknown>, location: Location): CompileResult {
  const meta = metadataOf(doc);
  const list = new IssueList(location);
  checkSchema(RegistryRewriteRuleSchema, doc, list);
  if (list.objectBroken) return { issues: list.issues };
  const spec = (doc as RegistryRewriteRule).spec;
  const { policy: verify } = reportVerify(
    list,
    compileVerifyAnnotation((doc as RegistryRewriteRule).metadata.annotations),
  );
  const rules: Rule[] = [];
  spec.rules.forEach((entry, i) => {
    const field = ruleField("rules", i);
    if (list.badRules.has(field)) return;
    const compiled = compilePattern(entry.match, { allowLeadingNegativeLookahead: true });
    if (!compiled.ok) {
      list.error(`${field}.match`, compiled.error);
      return;
    }
    for (const warning of compiled.pattern.warnings) list.warn(`${field}.match`, warning);
    const template = parseTemplate(entry.replace, compiled.pattern);
    if (!template.ok) {
      list.error(`${field}.replace`, template.error);
      return;
    }
    const namespaces = entry.conditions?.namespaces;
    const scope: Scope = {
      namespaceSelector: compileSelector(undefined),
      podSelector: compileSelector({ matchLabels: entry.conditions?.labels ?? {} }),
      exclude: [],
      ...(namespaces && namespaces.length > 0 ? { namespaces: new Set(namespaces) } : {}),
      ...(verify ? { verify } : {}),
    };
    const rule: RegexRule = {
      type: "regex",
      ref: { kind: COMPAT_KIND, name: meta.name, field },
      scope,
      mode: "Enforce",
      priority: entry.priority ?? 0,
      position: position(0, 0, i),
      defaultDomain: DOCKER_HUB,
      pattern: compiled.pattern,
      template: template.template,
      subject: "mrw",
    };
    warnReach(list, `${field}.match`, rule);
    rules.push(rule);
  });
  return finish(list, COMPAT_KIND, meta, location, rules, spec.rules.length, verify);
}
