/**
 * The mutation as a plan: from a decoded pod, the rules and the namespace's strictness to the
 * patch, the new original-images record, the warnings, the outcome, and the events that tell
 * what happened to each image. Pure: no metrics, no logs (`observe.ts` turns the events into
 * both), so every decision is tested by its value.
 *
 * Per image: an image the record shows ImageShift produced is skipped once the current rules
 * confirm it (a forged or stale entry is ignored); otherwise the rules rewrite it. In a strict
 * namespace an image a rule failed to rewrite refuses the pod; elsewhere it stays, with a
 * warning. An internal error throws `InternalError`, which the handler turns into its answer.
 */
import type { EvaluationContext, RuleRef } from "../engine/rules/rule.ts";
import { describeRule, type RewriteResult } from "../engine/rules/ruleset.ts";
import type { SkipReason } from "../telemetry/metrics.ts";
import type { OriginalImage, OriginalImages } from "./annotations.ts";
import type { ImageField } from "./images.ts";
import { type PatchOperation, replaceImage, setOriginalImages } from "./patch.ts";
import type { PodView } from "./pod-view.ts";

/** What the plan needs of the rule engine: one image at a time. */
export interface Rewriter {
  rewrite(image: string, context: EvaluationContext): RewriteResult;
}

export class InternalError extends Error {}

/** What happened, in order, for the metrics and the log (`observe.ts`). */
export type MutationEvent =
  | { type: "skip"; reason: SkipReason; details: Record<string, unknown> }
  | { type: "audit"; field: ImageField; audit: NonNullable<RewriteResult["audit"]> }
  | { type: "not_rewritten"; field: ImageField; result: RewriteResult }
  | { type: "rewrite"; field: ImageField; to: string; rule: RuleRef };

export interface Plan {
  readonly outcome: "patched" | "unchanged" | "skipped" | "denied";
  /** The JSON Patch, the record's update included; empty unless patched. */
  readonly patch: readonly PatchOperation[];
  readonly warnings: readonly string[];
  /** A strict namespace's refusal: the message, naming every image that could not be rewritten. */
  readonly refusal?: string;
  readonly events: readonly MutationEvent[];
}

/** Opt-out granted: the pod is left alone (never in a strict namespace). */
export function optedOut(view: PodView): Plan {
  return {
    outcome: "skipped",
    patch: [],
    warnings: [],
    events: [{ type: "skip", reason: "opt_out", details: { annotations: view.optOut } }],
  };
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

export function planMutation(
  view: PodView,
  rules: Rewriter,
  context: EvaluationContext,
  strict: boolean,
): Plan {
  const events: MutationEvent[] = [];
  const warnings: string[] = [];
  if (view.optOut.length > 0) {
    events.push({ type: "skip", reason: "opt_out_ignored", details: { annotations: view.optOut } });
    for (const name of view.optOut)
      warnings.push(
        `imageshift: annotation ${name}: "true" is ignored in strict namespace ${view.namespace}; images are rewritten as usual`,
      );
  }
  const record: OriginalImages = { ...view.record };
  const patch: PatchOperation[] = [];
  const refusals: string[] = [];
  for (const field of view.candidates) {
    const entry = record[field.key];
    if (entry?.image === field.image) {
      const agrees = recordAgrees(entry, field, rules, context);
      const details = { container: field.key, image: field.image, recordedOriginal: entry.original };
      events.push({ type: "skip", reason: agrees ? "already_rewritten" : "record_ignored", details });
      if (agrees) continue;
    }
    const result = rules.rewrite(field.image, context);
    if (result.internal) throw new InternalError(`${field.key}: ${result.error}`);
    if (result.audit) {
      events.push({ type: "audit", field, audit: result.audit });
      warnings.push(auditWarning(field, result.audit));
    }
    if (result.error !== undefined) {
      events.push({ type: "not_rewritten", field, result });
      if (strict && result.rule)
        refusals.push(`${field.key}: image ${JSON.stringify(field.image)} not rewritten: ${result.error}`);
      else warnings.push(`imageshift: ${field.key}: ${result.error}; image left as it was`);
      continue;
    }
    if (!result.changed || !result.rule) continue;
    patch.push(replaceImage(field.pointer, result.output));
    record[field.key] = { original: field.image, image: result.output, rule: describeRule(result.rule) };
    events.push({ type: "rewrite", field, to: result.output, rule: result.rule });
  }
  if (refusals.length > 0) {
    const refusal = [
      `imageshift: pod refused in strict namespace ${view.namespace}, as an image not rewritten must not run there`,
      ...refusals,
    ].join("; ");
    return { outcome: "denied", patch: [], warnings, refusal, events };
  }
  if (patch.length === 0) return { outcome: "unchanged", patch, warnings, events };
  return {
    outcome: "patched",
    patch: [...patch, setOriginalImages(view.object, record)],
    warnings,
    events,
  };
}

function auditWarning(field: ImageField, audit: NonNullable<RewriteResult["audit"]>): string {
  if (audit.error !== undefined) return `imageshift audit: ${field.key}: ${audit.error}`;
  return `imageshift audit: would rewrite ${field.image} to ${audit.output} by rule ${describeRule(audit.rule)}`;
}
