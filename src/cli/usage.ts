/** Usage errors that name the offending value and point to the command's help. */
import { UsageError } from "../errors.ts";

export function usageError(message: string, command: string): UsageError {
  return new UsageError(`imageshift ${command}: ${message} (see imageshift ${command} --help)`);
}

export function requireRulesFlag(value: string | undefined, command: string): string {
  if (value === undefined || value === "") throw usageError("--rules PATH is required", command);
  return value;
}
