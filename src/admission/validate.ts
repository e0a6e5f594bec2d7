/**
 * The validating webhook for rule objects: the engine's own validator, so what the API
 * server admits is exactly what the engine can use. Every error is listed with its field
 * path; warnings (say, doubled backslashes read as one) are returned as warnings.
 */

import { COMPAT_GROUP, IMAGESHIFT_GROUP } from "../api/schema.ts";
import { compileObject } from "../engine/rules/compile.ts";
import { formatLocation } from "../errors.ts";
import type { AdmissionOutcome } from "../telemetry/metrics.ts";
import { type AdmissionRequest, type AdmissionReview, allowed, denied } from "./review.ts";

export type ValidateOutcome = Extract<AdmissionOutcome, "allowed" | "denied" | "skipped">;

const RULE_GROUPS = new Set([IMAGESHIFT_GROUP, COMPAT_GROUP]);

export function handleValidate(request: AdmissionRequest): {
  review: AdmissionReview;
  outcome: ValidateOutcome;
} {
  const { uid, operation, resource } = request;
  if (
    (operation !== "CREATE" && operation !== "UPDATE") ||
    !RULE_GROUPS.has(resource?.group ?? "") ||
    request.subResource
  ) {
    return { review: allowed(uid), outcome: "skipped" };
  }
  const object = request.object as { kind?: string; metadata?: { name?: string } } | undefined;
  const source = `${object?.kind ?? "object"}/${object?.metadata?.name ?? request.name ?? ""}`;
  const { issues } = compileObject(request.object, { source });
  const errors = issues.filter((issue) => issue.severity === "error");
  const warnings = issues
    .filter((issue) => issue.severity === "warning")
    .map((issue) => `${formatLocation(issue.location)}: ${issue.message}`);
  if (errors.length === 0) return { review: allowed(uid, warnings), outcome: "allowed" };
  const message = `${source} is invalid: ${errors.map((issue) => `${issue.location.field || "(object)"}: ${issue.message}`).join("; ")}`;
  return { review: denied(uid, message, 422, warnings), outcome: "denied" };
}
