/**
 * The one place for ImageShift's error types.
 *
 * Hot paths (parsing an image, rewriting it) return results instead of throwing, so a
 * bad image in one container can never abort the handling of a whole pod. The classes
 * here are for the edges: command-line usage, unreadable files, and internal errors
 * that the webhook reports and (by default) fails open on.
 */

/** Where a problem sits in the rule sources: `file`, YAML document index and field path. */
export interface Location {
  /** A file path, or an object identity such as `Imageshift/airgap` for cluster objects. */
  source: string;
  /** Zero-based index of the YAML document in a multi-document file. */
  document?: number;
  /** Field path such as `spec.mappings.regexSwap[2].expression`. */
  field?: string;
}

/** One problem found while validating rule objects. */
export interface Issue {
  location: Location;
  message: string;
  /** Warnings never drop a rule; errors drop the rule (or the object) they name. */
  severity: "error" | "warning";
}

export function formatLocation(location: Location): string {
  let text = location.source;
  if (location.document !== undefined) text += `#${location.document}`;
  if (location.field) text += `: ${location.field}`;
  return text;
}

export function formatIssue(issue: Issue): string {
  return `${issue.severity}: ${formatLocation(issue.location)}: ${issue.message}`;
}

/** Base class, so callers can tell our errors from bugs. */
export class ImageShiftError extends Error {
  override name = "ImageShiftError";
}

/** Wrong command-line arguments or flags; the CLI exits 2. */
export class UsageError extends ImageShiftError {
  override name = "UsageError";
}

/** Rule sources that could not be read at all (missing path, unreadable file). */
export class RuleSourceError extends ImageShiftError {
  override name = "RuleSourceError";
}

/**
 * The Kubernetes configuration (kubeconfig, in-cluster service account, exec plugin) is missing,
 * unreadable or asks for something ImageShift refuses; the CLI exits 2.
 */
export class ConfigError extends ImageShiftError {
  override name = "ConfigError";
}

/** What Node's `listen` error codes mean, in words. */
const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EACCES: "permission denied",
};

/**
 * A server could not listen on its address (already in use, not on this machine, a privileged
 * port). It carries which server, so `imageshift serve` can name the flags to change.
 */
export class ListenError extends ImageShiftError {
  override name = "ListenError";
  readonly server: "webhook" | "metrics";
  readonly host: string;
  readonly port: number;
  /** Node's error code, such as `EADDRINUSE`. */
  readonly code: string | undefined;
  readonly reason: string;

  constructor(server: "webhook" | "metrics", host: string, port: number, cause: unknown) {
    const code = (cause as { code?: unknown }).code;
    const reason = (typeof code === "string" && LISTEN_REASONS[code]) || errorMessage(cause);
    super(`the ${server} server cannot listen on ${host}:${port}: ${reason}`, { cause });
    this.server = server;
    this.host = host;
    this.port = port;
    this.code = typeof code === "string" ? code : undefined;
    this.reason = reason;
  }
}

/**
 * The API server answered with an error status. `code` and `body` (the raw `Status` JSON) are
 * what `kubeErrorMessage` and callers that branch on 404/409/410 read.
 */
export class KubeApiError extends ImageShiftError {
  override name = "KubeApiError";
  readonly code: number;
  readonly body: string;
  /** The response's `Retry-After` header, when it had one (a 429, some 503s). */
  readonly retryAfter: string | undefined;

  constructor(method: string, path: string, code: number, body: string, retryAfter?: string) {
    super(`${method} ${path}: ${kubeErrorMessage({ code, body })}`);
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** The HTTP status of an API error, or undefined for anything else thrown. */
function apiStatus(error: unknown): number | undefined {
  return error instanceof KubeApiError ? error.code : undefined;
}

/** The API server said 404: the object (or its namespace) does not exist. */
export function isNotFound(error: unknown): boolean {
  return apiStatus(error) === 404;
}

/** The API server said 409: created by someone else first, or changed since it was read. */
export function isConflict(error: unknown): boolean {
  return apiStatus(error) === 409;
}

/**
 * The API server said 410: a watch or list resourceVersion too old to resume from. A watch
 * reports it as an `ERROR` event whose object is a `Status`, so a `{ code: 410 }` status counts too.
 */
export function isGone(error: unknown): boolean {
  if (apiStatus(error) === 410) return true;
  return !(error instanceof Error) && (error as { code?: unknown } | null)?.code === 410;
}

/** The API server said 502, 503 or 504: unavailable for now, worth a retry. */
export function isUnavailable(error: unknown): boolean {
  const code = apiStatus(error);
  return code === 502 || code === 503 || code === 504;
}

/**
 * A user's text in a message, in double quotes and as written: unlike `JSON.stringify`, a
 * pattern's backslashes are not doubled (`^gcr\.io/` reads as the user typed it). Control
 * characters are escaped, so a value cannot break a log line or a status message.
 */
export function quote(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
  return `"${text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

/** The message of anything thrown, for logs and admission warnings. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A short message for an error from the API server: its HTTP code and the server's own
 * message (from the `Status` body), or the message of anything else thrown.
 */
export function kubeErrorMessage(error: unknown): string {
  const { code, body } = error as { code?: number; body?: unknown };
  if (typeof code !== "number") return errorMessage(error);
  let message: string | undefined;
  try {
    const parsed = typeof body === "string" ? JSON.parse(body) : body;
    message = (parsed as { message?: string } | undefined)?.message;
  } catch {
    message = undefined;
  }
  return `HTTP ${code}${message ? `: ${message}` : ""}`;
}
