/**
 * AdmissionReview `admission.k8s.io/v1`: the types ImageShift reads, decoding, and small
 * response helpers. A handler builds its answer with these and never throws: whatever
 * happens, the API server gets a review carrying the request's uid.
 */

export const ADMISSION_API_VERSION = "admission.k8s.io/v1";

export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

export interface AdmissionRequest {
  uid: string;
  kind?: { group: string; version: string; kind: string };
  resource?: GroupVersionResource;
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: "JSONPatch";
  /** Base64 of the JSON Patch document. */
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string; reason?: string };
}

export interface AdmissionReview {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: "AdmissionReview";
  response: AdmissionResponse;
}

export type DecodeResult = { ok: true; request: AdmissionRequest } | { ok: false; error: string };

/** Checks the envelope of a parsed body; the object inside is checked by each handler. */
export function decodeReview(body: unknown): DecodeResult {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return { ok: false, error: "body is not a JSON object" };
  }
  const review = body as Record<string, unknown>;
  if (review.kind !== "AdmissionReview") {
    return { ok: false, error: `kind is ${JSON.stringify(review.kind)}, expected "AdmissionReview"` };
  }
  if (review.apiVersion !== ADMISSION_API_VERSION) {
    return {
      ok: false,
      error: `apiVersion is ${JSON.stringify(review.apiVersion)}, expected "${ADMISSION_API_VERSION}"`,
    };
  }
  const request = review.request as Record<string, unknown> | undefined;
  if (!request || typeof request !== "object") return { ok: false, error: "request is missing" };
  if (typeof request.uid !== "string" || request.uid === "")
    return { ok: false, error: "request.uid is missing" };
  return { ok: true, request: request as unknown as AdmissionRequest };
}

const WARNING_MAX = 256;

function shorten(warning: string): string {
  const chars = [...warning];
  return chars.length > WARNING_MAX ? `${chars.slice(0, WARNING_MAX - 3).join("")}...` : warning;
}

export function review(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: ADMISSION_API_VERSION, kind: "AdmissionReview", response };
}

function withWarnings(response: AdmissionResponse, warnings: readonly string[]): AdmissionResponse {
  // The API server may truncate warnings over 256 characters and drop many; keep each short
  // (cut on code points, so no character is split) and their number bounded.
  if (warnings.length > 0) response.warnings = warnings.slice(0, 20).map(shorten);
  return response;
}

export function allowed(uid: string, warnings: readonly string[] = []): AdmissionReview {
  return review(withWarnings({ uid, allowed: true }, warnings));
}

export function patched(
  uid: string,
  patch: readonly object[],
  warnings: readonly string[] = [],
): AdmissionReview {
  if (patch.length === 0) return allowed(uid, warnings);
  const encoded = Buffer.from(JSON.stringify(patch)).toString("base64");
  return review(withWarnings({ uid, allowed: true, patchType: "JSONPatch", patch: encoded }, warnings));
}

const REASONS: Record<number, string> = { 403: "Forbidden", 422: "Invalid", 500: "InternalError" };

export function denied(
  uid: string,
  message: string,
  code = 403,
  warnings: readonly string[] = [],
): AdmissionReview {
  const reason = REASONS[code] ?? "Forbidden";
  return review(withWarnings({ uid, allowed: false, status: { code, message, reason } }, warnings));
}
