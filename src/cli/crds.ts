/** `imageshift crds`: prints the CustomResourceDefinitions, ready for `kubectl apply -f -`. */
import { parseArgs } from "node:util";
import { crdsYaml } from "../api/crds.ts";
import { type CommandIO, EXIT_OK } from "./io.ts";

export const CRDS_HELP = `Usage: imageshift crds [--disable-compat-kind]

Prints the CustomResourceDefinitions (imageshifts.imageshift.dev and, for the Mutating
Registry Webhook's objects, registryrewriterules.dev.flemzord.fr) as YAML:

  imageshift crds | kubectl apply -f -
`;

export async function crdsCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "disable-compat-kind": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  io.stdout(values.help ? CRDS_HELP : crdsYaml({ compat: !values["disable-compat-kind"] }));
  return EXIT_OK;
}
