/** Test helper: builds a rule set from YAML text, failing loudly on rule errors. */
import { formatIssue } from "../../errors.ts";
import { type CompiledRules, compileDocuments, parseRuleText } from "./load.ts";

export function rulesFromYaml(text: string, { allowErrors = false } = {}): CompiledRules {
  const { documents, issues } = parseRuleText(text, "test.yaml");
  const compiled = compileDocuments(documents, issues);
  const errors = compiled.issues.filter((issue) => issue.severity === "error");
  if (!allowErrors && errors.length > 0) throw new Error(errors.map(formatIssue).join("\n"));
  return compiled;
}
