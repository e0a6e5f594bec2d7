/**
 * `imageshift rewrite`: rewrites image references with the rules in files, exactly as
 * the webhook would for a pod in the given namespace with the given labels, after the
 * install's namespace gating (./gating.ts) decides whether the webhook is called at all.
 * Invalid rule documents exit 2, so the command can gate a CI pipeline.
 */
import { parseArgs } from "node:util";
import { AdmissionBounds, describeChecks, type Verified, verifyRewrite } from "../admission/verify.ts";
import { loadRules } from "../engine/rules/load.ts";
import { describeRule, type RewriteResult } from "../engine/rules/ruleset.ts";
import { formatIssue } from "../errors.ts";
import { DEFAULT_EXCLUDED_NAMESPACES, DEFAULT_NAMESPACE_LABEL, type Gating, gate } from "./gating.ts";
import { type CommandIO, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE } from "./io.ts";
import { parseLabelList } from "./labels.ts";
import { VERIFY_OPTIONS, verificationConfig } from "./serve.ts";
import { requireRulesFlag, usageError } from "./usage.ts";
import { createChecks } from "./verification.ts";

export const REWRITE_HELP = `Usage: imageshift rewrite --rules PATH [options] [--] IMAGE...

Rewrites each IMAGE with the rules at PATH (a file or a folder of .yaml/.yml/.json files,
multi-document YAML) as the webhook would for a pod with the given namespace and labels.

Options:
  --rules PATH                 rule file or folder (required)
  --namespace NS               the pod's namespace (RegistryRewriteRule conditions.namespaces)
  --namespace-labels k=v,...   the namespace's labels (Imageshift spec.namespaceSelector);
                               with them, the install's namespace gating is applied
  --pod-labels k=v,...         the pod's labels (podSelector, conditions.labels)
  --namespace-label KEY        the chart's namespaceLabel (default ${DEFAULT_NAMESPACE_LABEL})
  --excluded-namespaces NS,... never served besides kube-system: the release namespace and
                               the chart's excludedNamespaces (default ${DEFAULT_EXCLUDED_NAMESPACES.join(",")})
  --output text|json           text (default) or one JSON array, one element per image
  --verify                     ask the target registries as the webhook would, for rule
                               objects with a verification policy (docs/mirrors.md); the
                               registry flags of \`imageshift serve\` apply (--verify-deadline,
                               --registry-timeout, --registry-config FILE for credentials,
                               --registry-ca FILE, ...)
  -h, --help                   this help

Namespace gating: the webhook is called only for pods in namespaces labelled
KEY=enabled or KEY=strict, and never in kube-system or the excluded namespaces; there
images are left unchanged. Without --namespace-labels the labels are unknown: the images
are rewritten as if the webhook were called, and the output says gating was not applied.

Exit status: 0 every image processed, 1 some image is not a valid reference (or, with
--verify, is kept because its mirror cannot be used),
2 unusable arguments, or rules with an error (the problems are listed on stderr and the
images still rewritten with the valid rules, as the webhook would).
`;

export interface RewriteJson {
  input: string;
  output: string;
  changed: boolean;
  rule: { kind: string; name: string; field: string } | null;
  error?: string;
  audit?: { output: string; rule: { kind: string; name: string; field: string }; error?: string };
  /** With --verify: what the registries said, and whether the image is kept for it. */
  verify?: { kept: boolean; checks: string };
  gating: Gating;
}

/** One image's answer: the rules' result and, with --verify, the checks. */
export interface Rewritten {
  result: RewriteResult;
  verified?: Verified;
}

export function toJson({ result, verified }: Rewritten, gating: Gating): RewriteJson {
  const kept = verified?.fallback === true;
  const json: Omit<RewriteJson, "gating"> = {
    input: result.input,
    output: kept ? result.input : result.output,
    changed: kept ? false : result.changed,
    rule: result.rule ? { ...result.rule } : null,
  };
  if (result.error !== undefined) json.error = result.error;
  if (result.audit) json.audit = { ...result.audit, rule: { ...result.audit.rule } };
  if (verified) json.verify = { kept, checks: describeChecks(verified.checks) };
  return { ...json, gating: { ...gating } };
}

export function toText({ result, verified }: Rewritten, gating: Gating): string {
  if (!gating.called) return `${result.input} unchanged: the webhook is not called: ${gating.reason}`;
  if (verified?.fallback)
    return `${result.input} kept: its mirror cannot be used: ${describeChecks(verified.checks)}`;
  if (verified?.result) {
    const line = toText({ result: verified.result }, gating);
    return `${line}\n  checked: ${describeChecks(verified.checks)}`;
  }
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
      "namespace-label": { type: "string", default: DEFAULT_NAMESPACE_LABEL },
      "excluded-namespaces": { type: "string", default: DEFAULT_EXCLUDED_NAMESPACES.join(",") },
      output: { type: "string", default: "text" },
      verify: { type: "boolean", default: false },
      ...VERIFY_OPTIONS,
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
  const label = values["namespace-label"];
  if (label.trim() === "") throw usageError("--namespace-label must not be empty", "rewrite");
  const gating = gate({
    ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
    ...(values["namespace-labels"] === undefined ? {} : { namespaceLabels: context.namespaceLabels }),
    label,
    excluded: values["excluded-namespaces"]
      .split(",")
      .map((name) => name.trim())
      .filter(Boolean),
  });

  const compiled = await loadRules(rulesPath);
  for (const issue of compiled.issues) io.stderr(`${formatIssue(issue)}\n`);
  if (compiled.ruleSet.size === 0) {
    io.stderr(`imageshift rewrite: no usable rule in ${JSON.stringify(rulesPath)}\n`);
    return EXIT_USAGE;
  }

  const checks = values.verify
    ? await createChecks(verificationConfig(values, "rewrite"), "rewrite")
    : undefined;
  const results = await Promise.all(
    positionals.map(async (image): Promise<Rewritten> => {
      if (!gating.called) return { result: unchanged(image) };
      const result = compiled.ruleSet.rewrite(image, context);
      if (!checks || !result.changed || !result.verify) return { result };
      const bounds = new AdmissionBounds(checks.verification.deadlineMs);
      try {
        const verified = await verifyRewrite(
          image,
          result,
          compiled.ruleSet,
          context,
          checks.checker,
          bounds,
        );
        return { result, verified };
      } finally {
        bounds.clear();
      }
    }),
  );
  await checks?.checker.stop();
  if (values.output === "json")
    io.stdout(
      `${JSON.stringify(
        results.map((result) => toJson(result, gating)),
        null,
        2,
      )}\n`,
    );
  else {
    if (!gating.applied) io.stderr(`note: namespace gating not applied: ${gating.reason}\n`);
    for (const result of results) io.stdout(`${toText(result, gating)}\n`);
  }
  if (compiled.issues.some((issue) => issue.severity === "error")) return EXIT_USAGE;
  const invalidInput = results.some(({ result }) => result.error !== undefined && result.rule === null);
  const kept = results.some(({ verified }) => verified?.fallback);
  return invalidInput || kept ? EXIT_INVALID_INPUT : EXIT_OK;
}

/** What the API server admits when it does not call the webhook: the image as written. */
function unchanged(image: string): RewriteResult {
  return { input: image, output: image, changed: false, rule: null };
}
