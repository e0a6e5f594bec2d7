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
 *
 * Rewrites whose rule object asks for registry checks are verified before they are used
 * (`verify.ts`, through the injected `ManifestChecker`): the one await in the plan. An image its
 * mirror cannot serve is kept (with a warning and a record entry saying why) or, in a strict
 * namespace, refuses the pod.
 */
import type { EvaluationContext, RuleRef } from "../engine/rules/rule.ts";
import { describeRule, type RewriteResult } from "../engine/rules/ruleset.ts";
import type { SkipReason } from "../telemetry/metrics.ts";
import type { OriginalImage, OriginalImages } from "./annotations.ts";
import type { ImageField } from "./images.ts";
import { type PatchOperation, replaceImage, setOriginalImages } from "./patch.ts";
import type { PodView } from "./pod-view.ts";
import {
  AdmissionBounds,
  type CheckOutcome,
  describeChecks,
  type Verification,
  type Verified,
  verifyRewrite,
} from "./verify.ts";

/** What the plan needs of the rule engine: one image at a time, passing over `excluded` rules. */
export interface Rewriter {
  rewrite(image: string, context: EvaluationContext, excluded?: ReadonlySet<RuleRef>): RewriteResult;
}

export class InternalError extends Error {}

/** What happened, in order, for the metrics and the log (`observe.ts`). */
export type MutationEvent =
  | { type: "skip"; reason: SkipReason; details: Record<string, unknown> }
  | { type: "audit"; field: ImageField; audit: NonNullable<RewriteResult["audit"]> }
  | { type: "not_rewritten"; field: ImageField; result: RewriteResult }
  | { type: "rewrite"; field: ImageField; to: string; rule: RuleRef }
  | { type: "check"; field: ImageField; check: CheckOutcome }
  | { type: "fallback"; field: ImageField; checks: string };

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

/** One image's decision before verification: skipped, or what the rules make of it. */
type Decided = { field: ImageField; events: MutationEvent[]; result?: RewriteResult };

/** The record check and the rule set, for one image (no registry asked yet). */
function decide(
  field: ImageField,
  record: OriginalImages,
  rules: Rewriter,
  context: EvaluationContext,
): Decided {
  const events: MutationEvent[] = [];
  const entry = record[field.key];
  // An entry whose image is its original, with a check, records a fallback: nothing to confirm
  // (it grants nothing either way: the image is decided again).
  const fallback = entry?.original === entry?.image && entry?.check !== undefined;
  if (entry?.image === field.image && !fallback) {
    const agrees = recordAgrees(entry, field, rules, context);
    const details = { container: field.key, image: field.image, recordedOriginal: entry.original };
    events.push({ type: "skip", reason: agrees ? "already_rewritten" : "record_ignored", details });
    if (agrees) return { field, events };
  }
  const result = rules.rewrite(field.image, context);
  if (result.internal) throw new InternalError(`${field.key}: ${result.error}`);
  if (result.audit) events.push({ type: "audit", field, audit: result.audit });
  return { field, events, result };
}

/** Verifies the decisions whose rule asks for it, all at once, within one deadline. */
async function verifyAll(
  decided: readonly Decided[],
  rules: Rewriter,
  context: EvaluationContext,
  verification: Verification | undefined,
): Promise<(Verified | undefined)[]> {
  if (!verification || !decided.some(({ result }) => result?.changed && result.verify)) return [];
  const bounds = new AdmissionBounds(verification.deadlineMs);
  try {
    return await Promise.all(
      decided.map(({ field, result }) =>
        result?.changed && result.verify
          ? verifyRewrite(field.image, result, rules, context, verification.checker, bounds)
          : undefined,
      ),
    );
  } finally {
    bounds.clear();
  }
}

/**
 * The plan for a pod. With `verification`, rewrites whose rule object asks for checks are
 * verified first (`verify.ts`); without it, every rewrite is used as the rules say.
 */
export async function planMutation(
  view: PodView,
  rules: Rewriter,
  context: EvaluationContext,
  strict: boolean,
  verification?: Verification,
): Promise<Plan> {
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
  const decided = view.candidates.map((field) => decide(field, record, rules, context));
  const verified = await verifyAll(decided, rules, context, verification);
  decided.forEach(({ field, events: own, result: first }, i) => {
    events.push(...own);
    if (first?.audit) warnings.push(auditWarning(field, first.audit));
    if (!first) return;
    const checked = verified[i];
    if (checked) {
      for (const check of checked.checks) events.push({ type: "check", field, check });
      const checks = describeChecks(checked.checks);
      if (checked.fallback || !checked.result) {
        const rule = checked.checks[0]?.rule ?? (first.rule as RuleRef);
        events.push({ type: "fallback", field, checks });
        if (strict)
          refusals.push(
            `${field.key}: image ${JSON.stringify(field.image)} not rewritten, as its mirror cannot be used: ${checks}`,
          );
        else {
          warnings.push(
            `imageshift: ${field.key}: ${field.image} kept, as its mirror cannot be used: ${checks}`,
          );
          record[field.key] = {
            original: field.image,
            image: field.image,
            rule: describeRule(rule),
            check: checks,
          };
        }
        return;
      }
      rewrite(field, checked.result, checks);
      return;
    }
    rewrite(field, first);
  });

  /** Uses one rewrite (or reports why it cannot be). */
  function rewrite(field: ImageField, result: RewriteResult, checks?: string): void {
    if (result.error !== undefined) {
      events.push({ type: "not_rewritten", field, result });
      if (strict && result.rule)
        refusals.push(`${field.key}: image ${JSON.stringify(field.image)} not rewritten: ${result.error}`);
      else warnings.push(`imageshift: ${field.key}: ${result.error}; image left as it was`);
      return;
    }
    if (!result.changed || !result.rule) return;
    patch.push(replaceImage(field.pointer, result.output));
    record[field.key] = {
      original: field.image,
      image: result.output,
      rule: describeRule(result.rule),
      ...(checks ? { check: checks } : {}),
    };
    events.push({ type: "rewrite", field, to: result.output, rule: result.rule });
  }

  if (refusals.length > 0) {
    const refusal = [
      `imageshift: pod refused in strict namespace ${view.namespace}, as an image not rewritten must not run there`,
      ...refusals,
    ].join("; ");
    return { outcome: "denied", patch: [], warnings, refusal, events };
  }
  const recordChanged = Object.keys(record).some((key) => record[key] !== view.record[key]);
  if (patch.length === 0 && !recordChanged) return { outcome: "unchanged", patch, warnings, events };
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
