/**
 * The pod mutation, in steps: `pod-view.ts` decodes the pod once, `plan.ts` decides (pure),
 * `observe.ts` records metrics and logs, and this file answers. The steps:
 *
 *   applies?  -> only pods (and `pods/ephemeralcontainers`) on CREATE and UPDATE
 *   strict?   -> called on the strict webhook path, or the namespace labelled `<label>=strict`
 *   opted out? -> `imageshift.dev/skip` / `rewrite-disabled` annotations: honoured, except in a
 *                strict namespace, where they are ignored with a warning
 *   candidates -> image fields (on UPDATE, those that changed)
 *   record    -> skip an image the original-images record shows ImageShift produced, once the
 *                current rules confirm it (a forged or stale entry is ignored)
 *   rewrite   -> the rule engine, per image
 *   verify    -> rewrites whose rule object asks for it are checked at the target registry,
 *                all images at once within one deadline (`verify.ts`); absent: the original
 *                or the next rule; in a strict namespace, refused
 *   respond   -> minimal JSON Patch + the original-images annotation, warnings
 *
 * In a strict namespace an image not rewritten must never run: a rule that fails refuses the
 * pod (elsewhere, the image is left with a warning), and so does an internal error.
 *
 * Never rejects. An internal error (a bug, a rule that throws) admits the pod unchanged with
 * a warning, unless the operator chose fail-closed or the namespace is strict.
 */

import type { EvaluationContext } from "../engine/rules/rule.ts";
import type { Labels } from "../engine/rules/selector.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { AdmissionOutcome, Metrics } from "../telemetry/metrics.ts";
import { observe } from "./observe.ts";
import { InternalError, optedOut, type Plan, planMutation, type Rewriter } from "./plan.ts";
import { decodePod } from "./pod-view.ts";
import { type AdmissionRequest, type AdmissionReview, allowed, denied, patched } from "./review.ts";
import type { Verification } from "./verify.ts";

export { type Rewriter, recordAgrees } from "./plan.ts";
export { appliesTo, candidates } from "./pod-view.ts";

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
  /** Registry checks for rule objects that ask for them (docs/mirrors.md); none when absent. */
  verification?: Verification;
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

/** Strict: called on the strict path, or a namespace labelled `<namespaceLabel>=strict`. */
export function isStrict(deps: MutateDependencies, namespaceLabels: Labels | undefined): boolean {
  return (
    deps.strict === true || namespaceLabels?.[deps.namespaceLabel ?? DEFAULT_NAMESPACE_LABEL] === "strict"
  );
}

/** decode -> strict? -> opt-out -> plan (verify) -> observe -> respond. Never rejects. */
export async function handleMutate(
  request: AdmissionRequest,
  deps: MutateDependencies,
): Promise<MutateResult> {
  const { uid } = request;
  let strict = deps.strict === true;
  try {
    const view = decodePod(request);
    if (!view) return { review: allowed(uid), outcome: "skipped" };
    const namespaceLabels = deps.namespaceLabels(view.namespace);
    strict = isStrict(deps, namespaceLabels);
    let plan: Plan;
    if (view.optOut.length > 0 && !strict) plan = optedOut(view);
    else {
      const rules = deps.rules();
      if (!rules) throw new InternalError("no rule set is loaded yet");
      const context: EvaluationContext = {
        namespace: view.namespace,
        podLabels: view.labels,
        ...(namespaceLabels ? { namespaceLabels } : {}),
      };
      plan = await planMutation(view, rules, context, strict, deps.verification);
    }
    observe(plan, view, deps);
    return respond(uid, plan);
  } catch (error) {
    return internalError(request, deps, strict, error);
  }
}

function respond(uid: string, plan: Plan): MutateResult {
  const warnings = [...plan.warnings];
  switch (plan.outcome) {
    case "patched":
      return { review: patched(uid, [...plan.patch], warnings), outcome: "patched" };
    case "denied":
      return { review: denied(uid, plan.refusal ?? "imageshift: refused", 403, warnings), outcome: "denied" };
    default:
      return { review: allowed(uid, warnings), outcome: plan.outcome };
  }
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
