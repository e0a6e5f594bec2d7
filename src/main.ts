/** Process entry point: runs the `imageshift` command line with the process's arguments. */
import { run } from "./cli/main.ts";

process.exitCode = await run(process.argv.slice(2));
