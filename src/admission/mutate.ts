/**
 * The pod mutation: small steps, each easy to test on its own.
 *
 *   applies?  -> only pods (and `pods/ephemeralcontainers`) on CREATE and UPDATE
 *   opted out? -> `imageshift.dev/skip` / `rewrite-disabled` annotations
 *   candidates -> image fields (on UPDATE, those that changed)
 *   record    -> skip an image the original-images record shows ImageShift produced, once the
 *                current rules confirm it (a forged or stale entry is ignored)
 *   rewrite   -> the rule engine, per image
 *   respond   -> minimal JSON Patch + the original-images annotation, warnings
 *
 * Never throws. An internal error (a bug, a rule that throws) admits the pod unchanged with
 * a warning, unless the operator chose fail-closed.
 */
import { errorMessage } from "../errors.ts";
import { parseReference } from "../image/reference.ts";
import type { EvaluationContext, RuleRef } from "../rules/rule.ts";
import { describeRule, type RewriteResult } from "../rules/ruleset.ts";
import type { Labels } from "../rules/selector.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { AdmissionOutcome, Metrics, SkipReason } from "../telemetry/metrics.ts";
import { type OriginalImage, optedOut, readOriginalImages } from "./annotations.ts";
import { type ImageField, podImageFields } from "./images.ts";
import { type PatchOperation, replaceImage, setOriginalImages } from "./patch.ts";
import { type AdmissionRequest, type AdmissionReview, allowed, denied, patched } from "./review.ts";

/** What the handler needs of the rule engine: one image at a time. */
export interface Rewriter {
  rewrite(image: string, context: EvaluationContext): RewriteResult;
}

export interface MutateDependencies {
  /** The active rule set; undefined until the first one is loaded. */
  rules(): Rewriter | undefined;
  /** Labels of a namespace, when known (cluster mode); undefined otherwise. */
  namespaceLabels(namespace: string): Labels | undefined;
  failClosed: boolean;
  metrics: Metrics;
  logger: Logger;
}

export type Outcome = Extract<
  AdmissionOutcome,
  "patched" | "unchanged" | "skipped" | "denied" | "failed_open"
>;

export interface MutateResult {
  review: AdmissionReview;
  outcome: Outcome;
}

class InternalError extends Error {}

/** Who the log lines are about. */
interface PodIdentity {
  namespace: string;
  pod: string;
  dryRun: boolean;
}

/** Pods and the `ephemeralcontainers` subresource, on CREATE and UPDATE. */
export function appliesTo(request: AdmissionRequest): boolean {
  const { resource, subResource, operation } = request;
  if (resource?.group !== "" || resource.resource !== "pods") return false;
  if (subResource && subResource !== "ephemeralcontainers") return false;
  return operation === "CREATE" || operation === "UPDATE";
}

/** Image fields worth looking at: all on CREATE, only new or changed ones on UPDATE. */
export function candidates(request: AdmissionRequest): ImageField[] {
  const fields = podImageFields(request.object);
  const before = new Map<string, string>();
  if (request.operation === "UPDATE")
    for (const field of podImageFields(request.oldObject)) before.set(field.key, field.image);
  return fields.filter((field) => before.get(field.key) !== field.image);
}

/**
 * True when the record's entry shows `field.image` is ImageShift's own output: the entry names
 * that image, and the current rules make exactly it of the recorded original. Anyone can write
 * the annotation, so an entry is a claim to check, never a reason on its own to skip an image.
 */
export function recordAgrees(
  entry: OriginalImage,
  field: ImageField,
  rules: Rewriter,
  context: EvaluationContext,
): boolean {
  if (entry.image !== field.image) return false;
  const result = rules.rewrite(entry.original, context);
  if (result.internal) throw new InternalError(`${field.key}: ${result.error}`);
  return result.changed && result.output === field.image;
}

function podLabels(pod: unknown): Labels {
  const labels = (pod as { metadata?: { labels?: unknown } }).metadata?.labels;
  return labels && typeof labels === "object" ? (labels as Labels) : {};
}

function podName(request: AdmissionRequest): string {
  const metadata = (request.object as { metadata?: { name?: string; generateName?: string } }).metadata;
  return metadata?.name || request.name || (metadata?.generateName ? `${metadata.generateName}*` : "");
}

function registryOf(image: string): string {
  const parsed = parseReference(image);
  return parsed.ok ? parsed.reference.domain : "invalid";
}

export function handleMutate(request: AdmissionRequest, deps: MutateDependencies): MutateResult {
  const { uid } = request;
  try {
    if (!appliesTo(request) || request.object === null || typeof request.object !== "object") {
      return { review: allowed(uid), outcome: "skipped" };
    }
    if (optedOut(request.object)) return { review: allowed(uid), outcome: "skipped" };
    const rules = deps.rules();
    if (!rules) throw new InternalError("no rule set is loaded yet");

    const namespace = request.namespace ?? "";
    const namespaceLabels = deps.namespaceLabels(namespace);
    const context: EvaluationContext = {
      namespace,
      podLabels: podLabels(request.object),
      ...(namespaceLabels ? { namespaceLabels } : {}),
    };
    const record = readOriginalImages(request.object);
    const patch: PatchOperation[] = [];
    const warnings: string[] = [];
    const pod: PodIdentity = { namespace, pod: podName(request), dryRun: request.dryRun === true };

    for (const field of candidates(request)) {
      const entry = record[field.key];
      if (entry?.image === field.image) {
        const agrees = recordAgrees(entry, field, rules, context);
        recordSkip(deps, pod, agrees ? "already_rewritten" : "record_ignored", {
          container: field.key,
          image: field.image,
          recordedOriginal: entry.original,
        });
        if (agrees) continue;
      }
      const result = rules.rewrite(field.image, context);
      if (result.internal) throw new InternalError(`${field.key}: ${result.error}`);
      if (result.audit) recordAudit(deps, warnings, field, result.audit, pod);
      if (result.error !== undefined) {
        deps.metrics.errors.inc({ kind: result.rule ? "rule" : "invalid_image" });
        deps.logger.warn(
          { ...pod, container: field.key, image: field.image, error: result.error },
          "image not rewritten",
        );
        warnings.push(`imageshift: ${field.key}: ${result.error}; image left as it was`);
        continue;
      }
      if (!result.changed || !result.rule) continue;
      patch.push(replaceImage(field.pointer, result.output));
      record[field.key] = { original: field.image, image: result.output, rule: describeRule(result.rule) };
      recordRewrite(deps, field, result.output, result.rule, pod);
    }
    if (patch.length === 0) return { review: allowed(uid, warnings), outcome: "unchanged" };
    patch.push(setOriginalImages(request.object, record));
    return { review: patched(uid, patch, warnings), outcome: "patched" };
  } catch (error) {
    const cause = errorMessage(error);
    deps.metrics.errors.inc({ kind: "internal" });
    deps.logger.error(
      { uid, namespace: request.namespace, err: cause },
      "internal error while rewriting images",
    );
    if (deps.failClosed) {
      return {
        review: denied(uid, `imageshift: internal error while rewriting images (fail-closed): ${cause}`, 500),
        outcome: "denied",
      };
    }
    return {
      review: allowed(uid, [`imageshift: internal error, pod admitted unchanged: ${cause}`]),
      outcome: "failed_open",
    };
  }
}

/** Every skip, granted or not, is logged with its reason; counted unless a dry run. */
function recordSkip(
  deps: MutateDependencies,
  pod: PodIdentity,
  reason: SkipReason,
  details: Record<string, unknown>,
): void {
  if (!pod.dryRun) deps.metrics.skips.inc({ reason });
  const granted = reason === "opt_out" || reason === "already_rewritten";
  deps.logger.info({ ...pod, reason, ...details }, granted ? "skipped" : "skip ignored");
}

function recordRewrite(
  deps: MutateDependencies,
  field: ImageField,
  to: string,
  rule: RuleRef,
  pod: PodIdentity,
): void {
  // A dry run changes nothing in the cluster: logged (marked), not counted.
  if (!pod.dryRun)
    deps.metrics.rewrites.inc({
      rule_kind: rule.kind,
      rule_name: rule.name,
      source_registry: deps.metrics.registryLabel(registryOf(field.image)),
      target_registry: deps.metrics.registryLabel(registryOf(to)),
    });
  deps.logger.info(
    { ...pod, container: field.key, from: field.image, to, rule: describeRule(rule) },
    "image rewritten",
  );
}

function recordAudit(
  deps: MutateDependencies,
  warnings: string[],
  field: ImageField,
  audit: NonNullable<RewriteResult["audit"]>,
  pod: PodIdentity,
): void {
  const rule = describeRule(audit.rule);
  deps.metrics.auditWouldRewrite.inc({ rule_kind: audit.rule.kind, rule_name: audit.rule.name });
  if (audit.error !== undefined) {
    warnings.push(`imageshift audit: ${field.key}: ${audit.error}`);
    return;
  }
  deps.logger.info(
    { ...pod, container: field.key, from: field.image, wouldBe: audit.output, rule },
    "audit: would rewrite image",
  );
  warnings.push(`imageshift audit: would rewrite ${field.image} to ${audit.output} by rule ${rule}`);
}
