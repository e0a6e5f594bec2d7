/** Test helpers for logging: a logger whose JSON lines are kept for assertions. */
import { createLogger, type Logger } from "./logger.ts";

/** One parsed log line: pino's `level` and `msg`, and the fields the call added. */
export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

/** A debug-level logger whose JSON lines are kept (and passed to `onLine`) for assertions. */
export function captureLogger(onLine?: (line: LogLine) => void): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger("debug", {
    write(text: string) {
      const line = JSON.parse(text) as LogLine;
      lines.push(line);
      onLine?.(line);
    },
  });
  return { logger, lines };
}
