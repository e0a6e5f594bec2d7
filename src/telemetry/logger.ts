/**
 * Structured JSON logs (pino). One place to create the logger so every module logs the
 * same shape; tests pass their own destination to read what was logged.
 */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = "info", destination?: DestinationStream): Logger {
  const options = { level, base: { app: "imageshift" }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}

export const silentLogger: Logger = pino({ level: "silent" });
