/**
 * Structured JSON logs (pino). One place to create the logger so every module logs the
 * same shape; tests pass their own destination to read what was logged.
 *
 * Errors go under `err` as the Error itself: pino's `err` serializer keeps its type, message,
 * stack, `cause` and own fields (a `KubeApiError`'s `code`). The raw response body an API error
 * carries is left out: its message is already in `message`, and a body can be large.
 *
 * Each long-lived part logs through `componentLogger(logger, "name")`, a child logger that adds
 * `component` to its lines, as controller-runtime names its loggers.
 */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** pino's `err` serializer for Errors (stack kept), without an API error's raw `body`; anything else as is. */
export function serializeError(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const { body: _body, ...serialized } = pino.stdSerializers.err(value) as ReturnType<
    typeof pino.stdSerializers.err
  > & { body?: unknown };
  return serialized;
}

/**
 * pino's `isoTime`, formatted once per millisecond: `toISOString` was a tenth of the CPU time of
 * an admission that logs three rewrites, and lines logged within one millisecond share it.
 */
export function isoTimeCached(): () => string {
  let at = Number.NaN;
  let text = "";
  return () => {
    const now = Date.now();
    if (now !== at) {
      at = now;
      text = `,"time":"${new Date(now).toISOString()}"`;
    }
    return text;
  };
}

export function createLogger(level: LogLevel = "info", destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { app: "imageshift" },
    timestamp: isoTimeCached(),
    serializers: { err: serializeError },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * A child logger whose lines say which part of ImageShift wrote them (`"component": "leader"`).
 * A logger that already names a component is returned as it is: the outer part owns the lines
 * of what it runs (an informer inside the rule source logs as `rules`), and a line never carries
 * `component` twice.
 */
export function componentLogger(logger: Logger, component: string): Logger {
  return "component" in logger.bindings() ? logger : logger.child({ component });
}

export const silentLogger: Logger = pino({ level: "silent" });
