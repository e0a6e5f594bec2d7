/**
 * The pod mutation: small steps, each easy to test on its own.
 *
 *   applies?  -> only pods (and `pods/ephemeralcontainers`) on CREATE and UPDATE
 *   strict?   -> called on the strict webhook path, or the namespace labelled `<label>=strict`
 *   opted out? -> `imageshift.dev/skip` / `rewrite-disabled` annotations: honoured, except in a
 *                strict namespace, where they are ignored with a warning
 *   candidates -> image fields (on UPDATE, those that changed)
 *   record    -> skip an image the original-images record shows ImageShift produced, once the
 *                current rules confirm it (a forged or stale entry is ignored)
 *   rewrite   -> the rule engine, per image
 *   respond   -> minimal JSON Patch + the original-images annotation, warnings
 *
 * In a strict namespace an image not rewritten must never run: a rule that fails refuses the
 * pod (elsewhere, the image is left with a warning), and so does an internal error.
 *
 * Never throws. An internal error (a bug, a rule that throws) admits the pod unchanged with
 * a warning, unless the operator chose fail-closed or the namespace is strict.
 */
import { errorMessage } from "../errors.ts";
import { parseReference } from "../image/reference.ts";
import type { EvaluationContext, RuleRef } from "../rules/rule.ts";
import { describeRule, type RewriteResult } from "../rules/ruleset.ts";
import type { Labels } from "../rules/selector.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { AdmissionOutcome, Metrics, SkipReason } from "../telemetry/metrics.ts";
import {
  type OriginalImage,
  type OriginalImages,
  optOutAnnotations,
  readOriginalImages,
} from "./annotations.ts";
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
  /**
   * The request came through the strict webhook entry (`/mutate/strict`), which selects strict
   * namespaces: the namespace is strict whatever its labels say (or whether they are known).
   */
  strict?: boolean;
  /** The namespace label whose value `strict` makes a namespace strict; `imageshift.dev` by default. */
  namespaceLabel?: string;
  metrics: Metrics;
  logger: Logger;
}

export const DEFAULT_NAMESPACE_LABEL = "imageshift.dev";

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

/** Strict: called on the strict path, or a namespace labelled `<namespaceLabel>=strict`. */
export function isStrict(deps: MutateDependencies, namespaceLabels: Labels | undefined): boolean {
  return (
    deps.strict === true || namespaceLabels?.[deps.namespaceLabel ?? DEFAULT_NAMESPACE_LABEL] === "strict"
  );
}

export function handleMutate(request: AdmissionRequest, deps: MutateDependencies): MutateResult {
  const { uid } = request;
  const namespace = request.namespace ?? "";
  let strict = deps.strict === true;
  try {
    if (!appliesTo(request) || request.object === null || typeof request.object !== "object") {
      return { review: allowed(uid), outcome: "skipped" };
    }
    const namespaceLabels = deps.namespaceLabels(namespace);
    strict = isStrict(deps, namespaceLabels);
    const pod: PodIdentity = { namespace, pod: podName(request), dryRun: request.dryRun === true };
    const optOut = optOutAnnotations(request.object);
    if (optOut.length > 0 && !strict) {
      recordSkip(deps, pod, "opt_out", { annotations: optOut });
      return { review: allowed(uid), outcome: "skipped" };
    }
    if (optOut.length > 0) recordSkip(deps, pod, "opt_out_ignored", { annotations: optOut });
    const warnings = optOut.map(
      (name) =>
        `imageshift: annotation ${name}: "true" is ignored in strict namespace ${namespace}; images are rewritten as usual`,
    );
    const rules = deps.rules();
    if (!rules) throw new InternalError("no rule set is loaded yet");

    const context: EvaluationContext = {
      namespace,
      podLabels: podLabels(request.object),
      ...(namespaceLabels ? { namespaceLabels } : {}),
    };
    const images = evaluateImages(request, { deps, rules, context, pod, strict, warnings });
    if (images.refusals.length > 0) return refuse(uid, namespace, images.refusals, warnings);
    if (images.patch.length === 0) return { review: allowed(uid, warnings), outcome: "unchanged" };
    // Logged and counted only now: a refused pod, or an internal error, admits no rewrite.
    for (const { field, to, rule } of images.rewrites) recordRewrite(deps, field, to, rule, pod);
    const patch = [...images.patch, setOriginalImages(request.object, images.record)];
    return { review: patched(uid, patch, warnings), outcome: "patched" };
  } catch (error) {
    return internalError(request, deps, strict, error);
  }
}

/** One admission's settings, for the per-image steps. */
interface Evaluation {
  deps: MutateDependencies;
  rules: Rewriter;
  context: EvaluationContext;
  pod: PodIdentity;
  strict: boolean;
  /** Appended to: audit reports, images left as they were. */
  warnings: string[];
}

interface EvaluatedImages {
  patch: PatchOperation[];
  /** The original-images record with this admission's rewrites merged in. */
  record: OriginalImages;
  rewrites: { field: ImageField; to: string; rule: RuleRef }[];
  /** Strict namespaces: why each image that must not run as it is could not be rewritten. */
  refusals: string[];
}

/** Each candidate image: skipped when the record shows it is our output, else rewritten by the rules. */
function evaluateImages(request: AdmissionRequest, run: Evaluation): EvaluatedImages {
  const { deps, rules, context, pod } = run;
  const images: EvaluatedImages = {
    patch: [],
    record: readOriginalImages(request.object),
    rewrites: [],
    refusals: [],
  };
  for (const field of candidates(request)) {
    const entry = images.record[field.key];
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
    if (result.audit) recordAudit(deps, run.warnings, field, result.audit, pod);
    if (result.error !== undefined) {
      imageNotRewritten(run, images, field, result);
      continue;
    }
    if (!result.changed || !result.rule) continue;
    images.patch.push(replaceImage(field.pointer, result.output));
    images.record[field.key] = {
      original: field.image,
      image: result.output,
      rule: describeRule(result.rule),
    };
    images.rewrites.push({ field, to: result.output, rule: result.rule });
  }
  return images;
}

/**
 * An image the rules could not rewrite: a rule that failed refuses the pod in a strict namespace
 * (its error names the rule); otherwise, and for an invalid image in the pod, it is left as it
 * was with a warning.
 */
function imageNotRewritten(
  run: Evaluation,
  images: EvaluatedImages,
  field: ImageField,
  result: RewriteResult,
): void {
  const { deps, pod } = run;
  deps.metrics.errors.inc({ kind: result.rule ? "rule" : "invalid_image" });
  deps.logger.warn(
    { ...pod, container: field.key, image: field.image, error: result.error },
    "image not rewritten",
  );
  if (run.strict && result.rule)
    images.refusals.push(`${field.key}: image ${JSON.stringify(field.image)} not rewritten: ${result.error}`);
  else run.warnings.push(`imageshift: ${field.key}: ${result.error}; image left as it was`);
}

/** A strict namespace's pod with an image a rule could not rewrite: refused, every reason named. */
function refuse(uid: string, namespace: string, refusals: string[], warnings: string[]): MutateResult {
  const message = [
    `imageshift: pod refused in strict namespace ${namespace}, as an image not rewritten must not run there`,
    ...refusals,
  ].join("; ");
  return { review: denied(uid, message, 403, warnings), outcome: "denied" };
}

/** Fail open, unless fail-closed was chosen or the namespace is strict. */
function internalError(
  request: AdmissionRequest,
  deps: MutateDependencies,
  strict: boolean,
  error: unknown,
): MutateResult {
  const { uid, namespace } = request;
  const cause = errorMessage(error);
  deps.metrics.errors.inc({ kind: "internal" });
  // The error itself: its stack says where the bug is.
  deps.logger.error({ uid, namespace, strict, err: error }, "internal error while rewriting images");
  if (strict || deps.failClosed) {
    const why = strict ? `strict namespace ${namespace ?? ""}` : "fail-closed";
    return {
      review: denied(uid, `imageshift: internal error while rewriting images (${why}): ${cause}`, 500),
      outcome: "denied",
    };
  }
  return {
    review: allowed(uid, [`imageshift: internal error, pod admitted unchanged: ${cause}`]),
    outcome: "failed_open",
  };
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
