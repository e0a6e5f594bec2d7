/**
 * Rule documents from files: a file or a folder of `.yaml`, `.yml` and `.json` files
 * (multi-document YAML), the same documents a user applies to the cluster.
 *
 * A folder is read non-recursively in name order, like `kubectl apply -f DIR`. A YAML
 * syntax error loses only the document it is in.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { Lexer, parseAllDocuments } from "yaml";
import { errorMessage, type Issue, type Location, RuleSourceError } from "../../errors.ts";
import { budgetProblem, declaredRules } from "./budget.ts";
import { type CompiledObject, compileObject } from "./compile.ts";
import {
  DOCUMENT_MAX_DEPTH,
  JSON_FILE_MAX_BYTES,
  RULES_MAX,
  YAML_FILE_MAX_BYTES,
  YAML_MAX_ALIASES,
} from "./limits.ts";
import type { Rule } from "./rule.ts";
import { RuleSet } from "./ruleset.ts";

export const RULE_FILE_EXTENSIONS = new Set([".yaml", ".yml", ".json"]);

export interface RuleDocument {
  readonly location: Location;
  readonly value: unknown;
}

/** One issue for a whole file (document 0), and no documents. */
function refused(source: string, message: string): { documents: RuleDocument[]; issues: Issue[] } {
  return { documents: [], issues: [{ location: { source, document: 0 }, message, severity: "error" }] };
}

/**
 * Parses the YAML (or JSON) text of one file into documents; syntax errors become issues.
 * Bounded (limits.ts): file size, nesting depth and aliases are checked before the parser
 * builds anything, so no file can exhaust the heap.
 */
export function parseRuleText(text: string, source: string): { documents: RuleDocument[]; issues: Issue[] } {
  const json = source.endsWith(".json");
  const maxBytes = json ? JSON_FILE_MAX_BYTES : YAML_FILE_MAX_BYTES;
  if (text.length > maxBytes) {
    return refused(
      source,
      `file is ${text.length} characters, more than ${maxBytes}; split the rules into several files`,
    );
  }
  const depth = json ? jsonDepth(text) : yamlDepth(text);
  if (depth > DOCUMENT_MAX_DEPTH) {
    return refused(source, `collections are nested ${depth} deep, more than ${DOCUMENT_MAX_DEPTH}`);
  }
  if (json) return parseJsonText(text, source);
  const documents: RuleDocument[] = [];
  const issues: Issue[] = [];
  parseAllDocuments(text, { prettyErrors: true }).forEach((doc, index) => {
    const location = { source, document: index };
    if (doc.errors.length > 0) {
      for (const error of doc.errors)
        issues.push({ location, message: `YAML: ${error.message}`, severity: "error" });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: YAML_MAX_ALIASES });
    } catch (error) {
      // The library throws when aliases expand too far ("Excessive alias count").
      issues.push({
        location,
        message: `YAML: ${errorMessage(error)} (at most ${YAML_MAX_ALIASES} alias expansions per document)`,
        severity: "error",
      });
      return;
    }
    if (value !== null && value !== undefined) documents.push({ location, value });
  });
  return { documents, issues };
}

/** Deepest nesting of flow collections, from the YAML lexer's tokens (no tree is built). */
function yamlDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === "[" || token === "{") max = Math.max(max, ++depth);
    else if (token === "]" || token === "}") depth--;
  }
  // Block collections nest by indentation, so their depth costs text quadratically: the
  // size limit keeps them under about 2,900 levels, and past about 900 the parser reports
  // its own error ("Maximum call stack size exceeded"), which becomes an issue like any other.
  return max;
}

/** Deepest nesting of arrays and objects in JSON text, skipping strings. */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 34; i++) if (text.charCodeAt(i) === 92) i++;
    } else if (c === 91 /* [ */ || c === 123 /* { */) max = Math.max(max, ++depth);
    else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return max;
}

/**
 * JSON files: one object, an array of objects, or a `kind: List` (what `kubectl get -o json`
 * prints). Parsed with JSON.parse: a 10,000-rule file is read in milliseconds and without
 * the YAML parser's syntax tree, which matters for the webhook's memory.
 */
function parseJsonText(text: string, source: string): { documents: RuleDocument[]; issues: Issue[] } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return {
      documents: [],
      issues: [
        { location: { source, document: 0 }, message: `JSON: ${errorMessage(error)}`, severity: "error" },
      ],
    };
  }
  const list = value as { kind?: unknown; items?: unknown } | null;
  const items = Array.isArray(value)
    ? value
    : list?.kind === "List" && Array.isArray(list.items)
      ? list.items
      : [value];
  const documents = items
    .map((item: unknown, index: number) => ({ location: { source, document: index }, value: item }))
    .filter((document) => document.value !== null && document.value !== undefined);
  return { documents, issues: [] };
}

/** Lists the rule files at a path (a file, or a folder's rule files in name order). */
export async function listRuleFiles(path: string): Promise<string[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    throw new RuleSourceError(`cannot read rules at ${JSON.stringify(path)}: ${errorMessage(error)}`);
  }
  if (!info.isDirectory()) return [path];
  // Hidden entries are skipped: a ConfigMap volume keeps its real files under `..data`,
  // and shows them as symbolic links, which is why each name is stat'ed, not lstat'ed.
  const names = (await readdir(path)).filter(
    (name) => !name.startsWith(".") && RULE_FILE_EXTENSIONS.has(extname(name)),
  );
  const files: string[] = [];
  for (const name of names.sort()) {
    const file = join(path, name);
    if ((await stat(file).catch(() => undefined))?.isFile()) files.push(file);
  }
  return files;
}

/** The text of every rule file at a path, in name order. */
export async function readRuleFiles(path: string): Promise<{ file: string; text: string }[]> {
  const files: { file: string; text: string }[] = [];
  for (const file of await listRuleFiles(path)) {
    try {
      files.push({ file, text: await readFile(file, "utf8") });
    } catch (error) {
      throw new RuleSourceError(`cannot read rule file ${JSON.stringify(file)}: ${errorMessage(error)}`);
    }
  }
  return files;
}

/** Documents and syntax issues of rule files already read. */
export function parseRuleFiles(files: readonly { file: string; text: string }[]): {
  documents: RuleDocument[];
  issues: Issue[];
} {
  const documents: RuleDocument[] = [];
  const issues: Issue[] = [];
  for (const { file, text } of files) {
    const parsed = parseRuleText(text, file);
    documents.push(...parsed.documents);
    issues.push(...parsed.issues);
  }
  return { documents, issues };
}

export async function readRuleDocuments(
  path: string,
): Promise<{ documents: RuleDocument[]; issues: Issue[] }> {
  return parseRuleFiles(await readRuleFiles(path));
}

export interface CompiledRules {
  readonly ruleSet: RuleSet;
  readonly objects: readonly CompiledObject[];
  readonly issues: readonly Issue[];
  /** Set when the rules are over the rule-set budget: `ruleSet` is then empty (budget.ts). */
  readonly overBudget?: string;
}

/** Where a rule-set budget problem is reported: it belongs to no one document. */
export const RULE_SET_LOCATION: Location = { source: "(rule set)" };

function overBudget(problem: string, issues: Issue[], objects: CompiledObject[]): CompiledRules {
  const message = `${problem}; the rule set is refused as a whole (docs/webhook.md, "Limits")`;
  issues.push({ location: RULE_SET_LOCATION, message, severity: "error" });
  return { ruleSet: RuleSet.EMPTY, objects, issues, overBudget: message };
}

/**
 * Compiles documents into one rule set. Invalid rules are dropped; everything valid is kept,
 * unless the whole set is over budget: then it is refused, counted before compiling.
 */
export function compileDocuments(
  documents: readonly RuleDocument[],
  earlierIssues: readonly Issue[] = [],
): CompiledRules {
  const issues: Issue[] = [...earlierIssues];
  const objects: CompiledObject[] = [];
  const seen = new Map<string, Location>();
  const declared = documents.reduce((sum, { value }) => sum + declaredRules(value), 0);
  if (declared > RULES_MAX)
    return overBudget(`the rule set has ${declared} rules, more than ${RULES_MAX}`, issues, objects);
  for (const { value, location } of documents) {
    const result = compileObject(value, location);
    issues.push(...result.issues);
    if (!result.object) continue;
    const identity = `${result.object.kind}/${result.object.name}`;
    const first = seen.get(identity);
    if (first) {
      issues.push({
        location: { ...location, field: "metadata.name" },
        message: `duplicate ${identity}, first defined at ${first.source}#${first.document ?? 0}; this one is ignored`,
        severity: "error",
      });
      continue;
    }
    seen.set(identity, location);
    objects.push(result.object);
  }
  const rules: Rule[] = objects.flatMap((object) => [...object.rules]);
  const problem = budgetProblem(rules);
  if (problem) return overBudget(problem, issues, objects);
  return { ruleSet: new RuleSet(rules), objects, issues };
}

/** Reads and compiles the rules at a path (file or folder). Throws RuleSourceError only when unreadable. */
export async function loadRules(path: string): Promise<CompiledRules> {
  const { documents, issues } = await readRuleDocuments(path);
  return compileDocuments(documents, issues);
}
