/** Test helper: runs `imageshift` in-process and returns its exit code and output. */
import { run } from "./main.ts";

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCaptured(...argv: string[]): Promise<Outcome> {
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}
