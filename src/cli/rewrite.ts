/**
 * `imageshift rewrite`: rewrites image references with the rules in files, exactly as
 * the webhook would for a pod in the given namespace with the given labels.
 */
import { parseArgs } from "node:util";
import { formatIssue } from "../errors.ts";
import { loadRules } from "../rules/load.ts";
import { describeRule, type RewriteResult } from "../rules/ruleset.ts";
import { type CommandIO, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE } from "./io.ts";
import { parseLabelList } from "./labels.ts";
import { requireRulesFlag, usageError } from "./usage.ts";

export const REWRITE_HELP = `Usage: imageshift rewrite --rules PATH [options] [--] IMAGE...

Rewrites each IMAGE with the rules at PATH (a file or a folder of .yaml/.yml/.json files,
multi-document YAML) as the webhook would for a pod with the given namespace and labels.

Options:
  --rules PATH                 rule file or folder (required)
  --namespace NS               the pod's namespace (RegistryRewriteRule conditions.namespaces)
  --namespace-labels k=v,...   the namespace's labels (Imageshift spec.namespaceSelector)
  --pod-labels k=v,...         the pod's labels (podSelector, conditions.labels)
  --output text|json           text (default) or one JSON array, one element per image
  -h, --help                   this help

Exit status: 0 every image processed, 1 some image is not a valid reference,
2 unusable rules or arguments.
`;

export interface RewriteJson {
  input: string;
  output: string;
  changed: boolean;
  rule: { kind: string; name: string; field: string } | null;
  error?: string;
  audit?: { output: string; rule: { kind: string; name: string; field: string }; error?: string };
}

export function toJson(result: RewriteResult): RewriteJson {
  const json: RewriteJson = {
    input: result.input,
    output: result.output,
    changed: result.changed,
    rule: result.rule ? { ...result.rule } : null,
  };
  if (result.error !== undefined) json.error = result.error;
  if (result.audit) json.audit = { ...result.audit, rule: { ...result.audit.rule } };
  return json;
}

export function toText(result: RewriteResult): string {
  const by = result.rule ? ` (${describeRule(result.rule)})` : "";
  let line: string;
  if (result.error !== undefined) line = `${result.input}: error: ${result.error}`;
  else if (result.changed) line = `${result.input} -> ${result.output}${by}`;
  else line = `${result.input} unchanged${result.rule ? `: rewritten to itself${by}` : ": no rule matched"}`;
  if (result.audit) {
    line += `\n  audit: would rewrite to ${result.audit.output} (${describeRule(result.audit.rule)})`;
  }
  return line;
}

export async function rewriteCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      rules: { type: "string" },
      namespace: { type: "string" },
      "namespace-labels": { type: "string" },
      "pod-labels": { type: "string" },
      output: { type: "string", default: "text" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.stdout(REWRITE_HELP);
    return EXIT_OK;
  }
  const rulesPath = requireRulesFlag(values.rules, "rewrite");
  if (values.output !== "text" && values.output !== "json") {
    throw usageError(`--output must be text or json, got ${JSON.stringify(values.output)}`, "rewrite");
  }
  if (positionals.length === 0) throw usageError("no IMAGE given", "rewrite");
  const context = {
    ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
    namespaceLabels: parseLabelList(values["namespace-labels"], "--namespace-labels"),
    podLabels: parseLabelList(values["pod-labels"], "--pod-labels"),
  };

  const compiled = await loadRules(rulesPath);
  for (const issue of compiled.issues) io.stderr(`${formatIssue(issue)}\n`);
  if (compiled.ruleSet.size === 0) {
    io.stderr(`imageshift rewrite: no usable rule in ${JSON.stringify(rulesPath)}\n`);
    return EXIT_USAGE;
  }

  const results = positionals.map((image) => compiled.ruleSet.rewrite(image, context));
  if (values.output === "json") io.stdout(`${JSON.stringify(results.map(toJson), null, 2)}\n`);
  else for (const result of results) io.stdout(`${toText(result)}\n`);
  const invalidInput = results.some((result) => result.error !== undefined && result.rule === null);
  return invalidInput ? EXIT_INVALID_INPUT : EXIT_OK;
}
