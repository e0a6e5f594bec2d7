/**
 * Reading a request body with limits on what one request, and all requests at once, may cost.
 *
 * - Bytes: 7 MiB. The API server sends at most about that (its request body limit is 3 MiB
 *   for an object, and an AdmissionReview carries the object and the old object, plus the
 *   envelope), so anything larger is not from the API server and is refused with 413 before
 *   it is buffered.
 * - Structure: bytes alone do not bound the heap. 7 MiB of `{},` is 2.4 million empty
 *   objects, about 150 MB once parsed, which a 96 MB heap does not survive. Before
 *   `JSON.parse`, one linear pass over the bytes counts containers (`{`, `[`), all values
 *   (containers, strings, numbers, literals, object keys) and nesting depth, and refuses
 *   with 413 what is over `STRUCTURE_LIMITS` (docs/webhook.md, "Timeouts and limits").
 * - Bytes in flight across requests: `BodyBudget`. A request that would take the total of
 *   bodies being buffered and parsed over it is answered 429 with `Retry-After`; its body is
 *   read and dropped, never buffered.
 */
import type { IncomingMessage } from "../platform/node-http.ts";

export const MAX_BODY_BYTES = 7 * 1024 * 1024;

/**
 * What one body may hold. A real review of the largest pod the API server accepts (3 MiB of
 * JSON, an UPDATE carrying it twice) has about 120,000 containers and 600,000 values at its
 * densest (a pod of nothing but short environment variables); the limits leave room over
 * that, and at the limits the worst body parses in about 20 MB of heap (measured; see
 * docs/webhook.md). Kubernetes objects nest about 10 deep; 100 is far above any.
 */
export const STRUCTURE_LIMITS = { containers: 200_000, values: 1_000_000, depth: 100 } as const;

/** Total bytes of request bodies buffered or being parsed at once, across requests. */
export const MAX_IN_FLIGHT_BODY_BYTES = 32 * 1024 * 1024;

/** Seconds a client refused for lack of room is told to wait. */
export const RETRY_AFTER_SECONDS = 1;

export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

export interface StructureLimits {
  containers: number;
  values: number;
  depth: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * 1 for the bytes that start a value outside a string: `{`, `[`, `"`, a digit, `-`, and the
 * first letters of `true`, `false`, `null` (letters that a number's exponent uses, `e`/`E`,
 * are not among them). 2 for the bytes that continue a scalar, so `123` counts once.
 */
const START = new Uint8Array(256);
for (const c of "-0123456789tfn") START[c.charCodeAt(0)] = 1;
const SCALAR = new Uint8Array(256);
for (const c of "-+.0123456789eEtrufalsn") SCALAR[c.charCodeAt(0)] = 1;

/**
 * Counts containers, values and depth in one pass over the bytes, without allocating; throws
 * a 413 HttpError at the first limit crossed. Strings are skipped whole (with `indexOf`), an
 * escaped quote (an odd run of backslashes before it) included. It does not validate JSON:
 * `JSON.parse` does that afterwards, on bodies this has bounded.
 */
export function checkStructure(body: Uint8Array, limits: StructureLimits = STRUCTURE_LIMITS): void {
  let containers = 0;
  let values = 0;
  let depth = 0;
  let inScalar = false;
  const length = body.length;
  for (let i = 0; i < length; i++) {
    const byte = body[i] as number;
    if (inScalar && SCALAR[byte] === 1) continue;
    inScalar = false;
    if (byte === QUOTE) {
      values++;
      // To the closing quote: the next quote not escaped by an odd run of backslashes.
      let end = i;
      for (;;) {
        end = body.indexOf(QUOTE, end + 1);
        if (end === -1) {
          end = length;
          break;
        }
        let slashes = 0;
        while (body[end - 1 - slashes] === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
      }
      i = end;
    } else if (byte === 0x7b || byte === 0x5b) {
      values++;
      if (++containers > limits.containers)
        throw new HttpError(413, `request body has over ${limits.containers} JSON objects and arrays`);
      if (++depth > limits.depth)
        throw new HttpError(413, `request body nests JSON deeper than ${limits.depth} levels`);
    } else if (byte === 0x7d || byte === 0x5d) {
      depth--;
    } else if (START[byte] === 1) {
      values++;
      inScalar = true;
    } else continue;
    if (values > limits.values)
      throw new HttpError(413, `request body has over ${limits.values} JSON values`);
  }
}

/**
 * The room for request bodies across requests. A request reserves its bytes before they are
 * buffered (all of a declared Content-Length at once, a chunked body chunk by chunk) and
 * gives them back when its answer is written.
 */
export class BodyBudget {
  readonly limit: number;
  private used = 0;
  constructor(limit = MAX_IN_FLIGHT_BODY_BYTES) {
    this.limit = limit;
  }

  get inFlight(): number {
    return this.used;
  }

  /** A lease for one request; release it when the request is done (idempotent). */
  lease(): BodyLease {
    let held = 0;
    return {
      take: (bytes) => {
        if (this.used + bytes > this.limit) return false;
        this.used += bytes;
        held += bytes;
        return true;
      },
      release: () => {
        this.used -= held;
        held = 0;
      },
    };
  }
}

export interface BodyLease {
  /** Reserves `bytes` more; false (and nothing reserved) when the budget has no room. */
  take(bytes: number): boolean;
  release(): void;
}

function busy(lease: BodyLease | undefined, bytes: number): HttpError | undefined {
  if (!lease || lease.take(bytes)) return undefined;
  return new HttpError(429, "too many request bodies in flight; retry shortly", {
    "retry-after": String(RETRY_AFTER_SECONDS),
  });
}

/**
 * Buffers the body. Plain `data` events rather than `for await`: the async iterator costs a
 * few promises and closures per chunk, and this runs for every admission (docs/performance.md).
 * Over the limit, the rest is read and dropped, so the 413 can still be written back. With a
 * lease, a declared Content-Length is reserved before anything is read, and a chunked body
 * reserves each chunk as it comes; without room, the body is read and dropped, then 429.
 */
export function readBody(
  request: IncomingMessage,
  limit = MAX_BODY_BYTES,
  lease?: BodyLease,
): Promise<Buffer> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > limit)
    return Promise.reject(
      new HttpError(413, `request body of ${declared} bytes is over the ${limit}-byte limit`),
    );
  // Refused for lack of room: the body is still read, and dropped, so that the client gets
  // the 429 on a connection that stays usable instead of a broken pipe mid-write.
  let busyError = busy(lease, declared);
  // A declared length (what the API server sends) is read straight into one buffer of that
  // size, which the lease has reserved: no chunks held next to their concatenation.
  const whole = declared > 0 && !busyError ? Buffer.allocUnsafe(declared) : undefined;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on("data", (chunk: Buffer) => {
      if (tooLarge || busyError) return;
      if (whole) {
        // Node's parser delivers no more than Content-Length; `copy` would truncate anyway.
        size += chunk.copy(whole, size);
        return;
      }
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        reject(new HttpError(413, `request body is over the ${limit}-byte limit`));
        return;
      }
      if (declared === 0) busyError = busy(lease, chunk.length);
      if (busyError) chunks.length = 0;
      else chunks.push(chunk);
    });
    request.on("end", () => {
      if (busyError) reject(busyError);
      else if (whole) resolve(whole.subarray(0, size));
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
    request.on("error", reject);
  });
}

/** The body as JSON, after checking the content type and structure; 400 or 413 otherwise. */
export async function readJson(
  request: IncomingMessage,
  limit = MAX_BODY_BYTES,
  lease?: BodyLease,
  structure: StructureLimits = STRUCTURE_LIMITS,
): Promise<unknown> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(
      400,
      `content type ${JSON.stringify(request.headers["content-type"] ?? "")} is not application/json`,
    );
  }
  const body = await readBody(request, limit, lease);
  checkStructure(body, structure);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `body is not valid JSON: ${(error as Error).message}`);
  }
}
