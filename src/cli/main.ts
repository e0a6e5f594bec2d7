/**
 * `imageshift` command dispatch. Each command lives in its own module; this file only
 * routes and turns errors into exit codes.
 */
import { ConfigError, errorMessage, RuleSourceError, UsageError } from "../errors.ts";
import { crdsCommand } from "./crds.ts";
import { type CommandIO, EXIT_USAGE, processIO } from "./io.ts";
import { rewriteCommand } from "./rewrite.ts";
import { serveCommand } from "./serve.ts";
import { validateCommand } from "./validate.ts";

type Command = (argv: string[], io: CommandIO) => Promise<number>;

const COMMANDS: Record<string, { run: Command; summary: string }> = {
  rewrite: { run: rewriteCommand, summary: "rewrite image references with rules from files" },
  validate: { run: validateCommand, summary: "validate rule files and list every problem" },
  crds: { run: crdsCommand, summary: "print the CustomResourceDefinitions (YAML)" },
  serve: { run: serveCommand, summary: "serve the admission webhooks (rules from files, hot-reloaded)" },
};

export function mainHelp(): string {
  const lines = Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(10)} ${summary}`);
  return `Usage: imageshift COMMAND [options]

ImageShift rewrites container image references to other registries by rules.

Commands:
${lines.join("\n")}

Run imageshift COMMAND --help for a command's options.
`;
}

export async function run(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    io.stdout(mainHelp());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`imageshift: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    // parseArgs reports unknown or malformed flags with a TypeError carrying a code.
    const isArgError =
      error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    if (isArgError || error instanceof RuleSourceError || error instanceof ConfigError) {
      io.stderr(`${errorMessage(error)}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
}
