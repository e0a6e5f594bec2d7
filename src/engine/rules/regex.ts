/**
 * User regular expressions: RE2 syntax, linear-time matching (re2js, a port of Go's
 * regexp), so no rule can stall the webhook with catastrophic backtracking.
 *
 * Two ways to use a match: `expandTemplate` builds the whole new image from the template
 * (`Imageshift` regexSwap), and `replaceAll` substitutes every match inside the image and
 * keeps the rest, as Go's `Regexp.ReplaceAllString` does (`RegistryRewriteRule`, as the
 * Mutating Registry Webhook runs it).
 *
 * Two accommodations for rules written for other tools, both documented in
 * docs/rules.md:
 * - A doubled backslash (`gcr\\.io`, a double-escaping slip common in YAML) can never
 *   match an image reference, which has no backslash; it is read as a single one, with a
 *   warning.
 * - `RegistryRewriteRule` patterns of the form `^(?!P)REST`, as the Mutating Registry
 *   Webhook's documentation uses, become "matches `^REST` and does not match `^P`": the
 *   same meaning, in linear time. Any other lookaround or backreference is refused with a
 *   message pointing to `exclude`.
 */
import { RE2JS } from "re2js";
import { errorMessage, quote } from "../../errors.ts";
import { PATTERN_MAX_GROUPS, PATTERN_MAX_LENGTH, PROGRAM_MAX_SIZE } from "./limits.ts";
import { cachedProgram, remember } from "./programs.ts";

export interface CompiledPattern {
  readonly source: string;
  /** What RE2 runs: the source after the accommodations in the header. */
  readonly expression: string;
  /** Capture groups, and the numbers of the named ones: what a template may refer to. */
  readonly groups: number;
  readonly names: Readonly<Record<string, number>>;
  /** For `^(?!P)…` patterns: an image matching this is not matched by the pattern. */
  readonly unless?: RE2JS;
  /**
   * For the most common shape, `^literal(.*)$`, the literal: matching is then a
   * `startsWith`, about 5x faster than re2js on this machine, with the same result
   * (image references have no newline for `.` to stop at), and no program is kept.
   */
  readonly literalThenRest?: string;
  /** Kept for patterns tried on every image; others use `programs.ts`'s bounded cache. */
  readonly program?: RE2JS;
  /** `^…` with no top-level `|`: it can only match at the start, so it matches at most once. */
  readonly anchoredAtStart: boolean;
  readonly warnings: readonly string[];
}

export type PatternResult = { ok: true; pattern: CompiledPattern } | { ok: false; error: string };

export interface PatternOptions {
  /** Accept a leading negative lookahead `^(?!P)` (RegistryRewriteRule compatibility). */
  allowLeadingNegativeLookahead?: boolean;
  /** Keep the compiled program (exclude expressions, which run for every candidate rule). */
  keepProgram?: boolean;
}

const LOOKAROUND = /\(\?<?[=!]/;
const BACKREFERENCE = /\\[1-9]/;
/** `^literal(.*)$`: plain characters and escaped ASCII punctuation, then `(.*)`. Valid RE2 by construction. */
const LITERAL_THEN_REST = /^\^(?:[^\\()[\]{}*+?|^$.]|\\[!-/:-@[-`{-~])+\(\.\*\)\$?$/;

/** Reads `\\` as `\` (see the header). Returns the pattern unchanged when there is none. */
export function undoubleBackslashes(pattern: string): string {
  return pattern.includes("\\\\") ? pattern.replaceAll("\\\\", "\\") : pattern;
}

/** Index of the `)` closing the group that opens at `open`, or -1. Skips escapes and classes. */
function closingParen(pattern: string, open: number): number {
  let depth = 0;
  let inClass = false;
  for (let i = open; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      i++;
    } else if (inClass) {
      if (c === "]") inClass = false;
    } else if (c === "[") {
      inClass = true;
      if (pattern[i + 1] === "]") i++;
    } else if (c === "(") {
      depth++;
    } else if (c === ")") {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

function compileRe2(pattern: string): { ok: true; regex: RE2JS } | { ok: false; error: string } {
  try {
    return { ok: true, regex: RE2JS.compile(pattern) };
  } catch (error) {
    return { ok: false, error: `invalid RE2 expression ${quote(pattern)}: ${errorMessage(error)}` };
  }
}

function unsupported(source: string, what: string, allowLeading: boolean): PatternResult {
  const hint = allowLeading
    ? "only a leading ^(?!…) is accepted here; or use an Imageshift object's spec.exclude"
    : "use spec.exclude to keep images out of this object";
  return {
    ok: false,
    error: `${what} in ${quote(source)} is not supported (RE2 matches in linear time): ${hint}`,
  };
}

/** The size limits of docs/webhook.md ("Limits"); undefined when the program is within them. */
function tooBig(source: string, regex: RE2JS): string | undefined {
  if (regex.groupCount() > PATTERN_MAX_GROUPS)
    return `pattern ${quote(source)} has ${regex.groupCount()} capture groups, more than ${PATTERN_MAX_GROUPS}`;
  if (regex.programSize() > PROGRAM_MAX_SIZE)
    return `pattern ${quote(source)} compiles to ${regex.programSize()} RE2 instructions, more than ${PROGRAM_MAX_SIZE}`;
  return undefined;
}

/** Compiles a user pattern; never throws. */
export function compilePattern(source: string, options: PatternOptions = {}): PatternResult {
  if (source.length > PATTERN_MAX_LENGTH) {
    return {
      ok: false,
      error: `pattern "${source.slice(0, 40)}…" is ${source.length} characters, more than ${PATTERN_MAX_LENGTH}`,
    };
  }
  const warnings: string[] = [];
  let pattern = undoubleBackslashes(source);
  if (pattern !== source) {
    warnings.push(
      `read the doubled backslashes in ${quote(source)} as single ones (${quote(pattern)}): an image reference never contains a backslash`,
    );
  }
  const allowLeading = options.allowLeadingNegativeLookahead === true;
  if (BACKREFERENCE.test(pattern)) return unsupported(source, "a backreference", allowLeading);

  let unless: RE2JS | undefined;
  if (allowLeading && pattern.startsWith("^(?!")) {
    const close = closingParen(pattern, 1);
    if (close > 0) {
      const excluded = pattern.slice(4, close);
      // `(?:P){0}` never matches text but keeps P's groups counted, so `$2` still means
      // what it meant to the tool the rule was written for.
      pattern = `^(?:${excluded}){0}${pattern.slice(close + 1)}`;
      if (!LOOKAROUND.test(excluded)) {
        const compiled = compileRe2(`^(?:${excluded})`);
        if (!compiled.ok) return compiled;
        unless = compiled.regex;
      } else {
        return unsupported(source, "a nested lookaround", allowLeading);
      }
    }
  }
  if (LOOKAROUND.test(pattern)) return unsupported(source, "a lookahead or lookbehind", allowLeading);

  const base = {
    source,
    expression: pattern,
    anchoredAtStart: pattern.startsWith("^") && !hasTopLevelAlternation(pattern),
    warnings,
  };
  if (unless === undefined && LITERAL_THEN_REST.test(pattern)) {
    return { ok: true, pattern: { ...base, groups: 1, names: {}, literalThenRest: literalPrefix(pattern) } };
  }
  const compiled = compileRe2(pattern);
  if (!compiled.ok) return compiled;
  const { regex } = compiled;
  const problem = tooBig(source, regex);
  if (problem) return { ok: false, error: problem };
  const result: { -readonly [K in keyof CompiledPattern]: CompiledPattern[K] } = {
    ...base,
    groups: regex.groupCount(),
    names: regex.namedGroups() as Record<string, number>,
  };
  if (unless) result.unless = unless;
  if (options.keepProgram || !firstSegmentOf(literalPrefix(pattern))) result.program = regex;
  else remember(pattern, regex);
  return { ok: true, pattern: result };
}

/** Text before the first "/" of a literal prefix: the registry a pattern is indexed by, or "". */
export function firstSegmentOf(prefix: string): string {
  const slash = prefix.indexOf("/");
  return slash < 0 ? "" : prefix.slice(0, slash);
}

/** The program of a pattern that has one (kept, or from the bounded cache). */
function programOf(pattern: CompiledPattern): RE2JS {
  return pattern.program ?? cachedProgram(pattern.expression);
}

/** Runs a compiled pattern; returns the capture groups (index 0: whole match) or null. */
export function execPattern(pattern: CompiledPattern, input: string): (string | undefined)[] | null {
  if (pattern.unless?.test(input)) return null;
  const literal = pattern.literalThenRest;
  if (literal !== undefined) return input.startsWith(literal) ? [input, input.slice(literal.length)] : null;
  return programOf(pattern).exec(input);
}

/**
 * Go's `Regexp.ReplaceAllString(input, template)`: every non-overlapping match is replaced
 * by the expanded template and the text around the matches is kept. An empty match right
 * after another match is not replaced, and the search always moves on by at least one
 * character, exactly as Go does. Returns undefined when nothing matches.
 */
export function replaceAll(pattern: CompiledPattern, template: Template, input: string): string | undefined {
  if (pattern.unless?.test(input)) return undefined;
  const literal = pattern.literalThenRest;
  if (literal !== undefined) {
    // `^literal(.*)$` matches the whole image or nothing.
    return input.startsWith(literal)
      ? expandTemplate(template, [input, input.slice(literal.length)])
      : undefined;
  }
  const matcher = programOf(pattern).matcher(input);
  const groups: (string | undefined)[] = [];
  let out = "";
  let lastEnd = 0;
  let matched = false;
  for (let from = 0; from <= input.length && matcher.find(from); ) {
    const start = matcher.start();
    const end = matcher.end();
    out += input.slice(lastEnd, start);
    if (end > lastEnd || start === 0) {
      groups.length = 0;
      for (let g = 0; g <= matcher.groupCount(); g++) groups.push(matcher.group(g) ?? undefined);
      out += expandTemplate(template, groups);
    }
    matched = true;
    lastEnd = end;
    if (pattern.anchoredAtStart) break;
    from = Math.max(end, from + 1);
  }
  return matched ? out + input.slice(lastEnd) : undefined;
}

const META = new Set([..."\\.[](){}*+?|^$"]);

/** True when the pattern has a `|` outside any group or class, which ends any shared prefix. */
function hasTopLevelAlternation(pattern: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") i++;
    else if (inClass) inClass = c !== "]";
    else if (c === "[") inClass = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return true;
  }
  return false;
}

/**
 * The literal text every match of a `^`-anchored pattern starts with (`^quay\.io/(.*)`
 * gives `quay.io/`), or "" when there is none. The rule set indexes regular expressions
 * by it, so an image is only tried against the few patterns that can match it.
 * Conservative: it stops at the first character that is not plainly literal.
 */
export function literalPrefix(pattern: string): string {
  if (!pattern.startsWith("^") || hasTopLevelAlternation(pattern)) return "";
  let prefix = "";
  for (let i = 1; i < pattern.length; ) {
    let literal = pattern[i] as string;
    let width = 1;
    if (literal === "\\") {
      literal = pattern[i + 1] ?? "";
      width = 2;
      if (!META.has(literal) && literal !== "/" && literal !== "-") break;
    } else if (META.has(literal)) {
      break;
    }
    const next = pattern[i + width];
    if (next === "*" || next === "?" || next === "{") break;
    prefix += literal;
    if (next === "+") break;
    i += width;
  }
  return prefix;
}

/** A replacement template: literal text and group numbers, in order. */
export type Template = readonly (string | number)[];

export type TemplateResult = { ok: true; template: Template } | { ok: false; error: string };

const NAME_CHAR = /[A-Za-z0-9_]/;

/**
 * Parses `$1`, `${1}`, `$name`, `${name}` and `$$` against a pattern's groups, as Go's
 * `Regexp.Expand` reads them (a name is the longest run of letters, digits and `_`).
 * Unlike Go, an unknown group is an error rather than silently empty text.
 */
export function parseTemplate(
  text: string,
  pattern: Pick<CompiledPattern, "groups" | "names">,
): TemplateResult {
  const parts: (string | number)[] = [];
  const { names, groups } = pattern;
  let literal = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "$") {
      literal += c;
      continue;
    }
    if (text[i + 1] === "$") {
      literal += "$";
      i++;
      continue;
    }
    let name = "";
    if (text[i + 1] === "{") {
      const end = text.indexOf("}", i + 2);
      if (end < 0) return { ok: false, error: `unclosed "\${" in replacement ${quote(text)}` };
      name = text.slice(i + 2, end);
      i = end;
    } else {
      let j = i + 1;
      while (j < text.length && NAME_CHAR.test(text[j] ?? "")) j++;
      name = text.slice(i + 1, j);
      i = j - 1;
    }
    if (name === "")
      return { ok: false, error: `lone "$" in replacement ${quote(text)}; write $$ for a dollar` };
    const group = /^\d+$/.test(name) ? Number(name) : Object.hasOwn(names, name) ? names[name] : undefined;
    if (group === undefined || group > groups) {
      return {
        ok: false,
        error: `replacement ${quote(text)} refers to group ${quote(name)}, but the expression has ${groups} group(s)${hintFor(name)}`,
      };
    }
    if (literal) parts.push(literal);
    literal = "";
    parts.push(group);
  }
  if (literal) parts.push(literal);
  return { ok: true, template: parts };
}

/** `1_x` is read as one name; suggest `${1}_x` when a number was probably meant. */
function hintFor(name: string): string {
  const digits = /^\d+/.exec(name)?.[0];
  return digits && digits !== name
    ? ` (write \${${digits}}${name.slice(digits.length)} to follow group ${digits} with text)`
    : "";
}

/** Fills a template with a match's groups; a group that did not take part is empty. */
export function expandTemplate(template: Template, groups: readonly (string | undefined)[]): string {
  let out = "";
  for (const part of template) out += typeof part === "number" ? (groups[part] ?? "") : part;
  return out;
}
