/** `imageshift validate`: checks rule files and reports every problem with its location. */
import { parseArgs } from "node:util";
import { loadRules } from "../engine/rules/load.ts";
import { formatIssue } from "../errors.ts";
import { type CommandIO, EXIT_INVALID_INPUT, EXIT_OK } from "./io.ts";
import { requireRulesFlag } from "./usage.ts";

export const VALIDATE_HELP = `Usage: imageshift validate --rules PATH

Validates the rule objects at PATH (a file or a folder of .yaml/.yml/.json files) and
lists every problem with its file, document index and field path.

Exit status: 0 valid (warnings allowed), 1 some rule or object is invalid,
2 unreadable path or wrong arguments.
`;

export async function validateCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { rules: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    io.stdout(VALIDATE_HELP);
    return EXIT_OK;
  }
  const rulesPath = requireRulesFlag(values.rules, "validate");
  const compiled = await loadRules(rulesPath);
  const errors = compiled.issues.filter((issue) => issue.severity === "error");
  for (const issue of compiled.issues)
    (issue.severity === "error" ? io.stderr : io.stdout)(`${formatIssue(issue)}\n`);
  const rules = compiled.objects.reduce((sum, object) => sum + object.rules.length, 0);
  const summary = `${compiled.objects.length} object(s), ${rules} usable rule(s), ${errors.length} error(s)`;
  if (errors.length > 0) {
    io.stderr(`invalid: ${summary}\n`);
    return EXIT_INVALID_INPUT;
  }
  io.stdout(`valid: ${summary}\n`);
  return EXIT_OK;
}
