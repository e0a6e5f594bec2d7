/** Parses `k=v,k2=v2` label lists given on the command line. */
import { UsageError } from "../errors.ts";

export function parseLabelList(text: string | undefined, flag: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text === undefined || text.trim() === "") return labels;
  for (const pair of text.split(",")) {
    const eq = pair.indexOf("=");
    const key = eq > 0 ? pair.slice(0, eq).trim() : "";
    if (!key) throw new UsageError(`${flag}: ${JSON.stringify(pair)} is not key=value`);
    labels[key] = pair.slice(eq + 1).trim();
  }
  return labels;
}
