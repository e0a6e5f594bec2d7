/**
 * Reading a request body with a size limit.
 *
 * The limit is 7 MiB: the API server sends at most about that (its request body limit is
 * 3 MiB for an object, and an AdmissionReview carries the object and the old object, plus
 * the envelope), so anything larger is not from the API server and is refused with 413
 * before it is buffered.
 */
import type { IncomingMessage } from "node:http";

export const MAX_BODY_BYTES = 7 * 1024 * 1024;

export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * Buffers the body. Plain `data` events rather than `for await`: the async iterator costs a
 * few promises and closures per chunk, and this runs for every admission (docs/performance.md).
 * Over the limit, the rest is read and dropped, so the 413 can still be written back.
 */
export function readBody(request: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > limit)
    return Promise.reject(
      new HttpError(413, `request body of ${declared} bytes is over the ${limit}-byte limit`),
    );
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else if (!refused) {
        refused = true;
        chunks.length = 0;
        reject(new HttpError(413, `request body is over the ${limit}-byte limit`));
      }
    });
    request.on("end", () =>
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)),
    );
    request.on("error", reject);
  });
}

/** The body as JSON, after checking the content type; 400 with a clear message otherwise. */
export async function readJson(request: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(
      400,
      `content type ${JSON.stringify(request.headers["content-type"] ?? "")} is not application/json`,
    );
  }
  const body = await readBody(request, limit);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `body is not valid JSON: ${(error as Error).message}`);
  }
}
