/**
 * The verification step of a mutation (docs/mirrors.md): before a rewrite is used, ask the
 * target registry whether it has the image, as the deciding rule object's policy says.
 *
 * - Presence: the target manifest must exist.
 * - Digest: it must also be the original's content. A pinned original (`@sha256:…`) must be
 *   served at that digest; a tag-only original is compared with its upstream's digest for the
 *   tag, when upstream answers, so a stale pull-through tag is not used.
 *
 * Absent (or stale): keep the original, or pass over the rule and try the next one
 * (`whenAbsent`). Unknown (timeout, 5xx, 429, circuit open, the admission deadline): trust the
 * rule, or keep the original (`whenUnknown`). All images of a pod are checked at once, and one
 * deadline bounds the whole admission: a slow registry costs a pod at most that long.
 *
 * The registry itself sits behind `ManifestChecker`, a narrow port (the shapes of a check and its
 * answer are `registry/presence.ts`'s): the cache, single flight, circuit breaker and credentials
 * live in `PresenceChecker` there, which the webhook wires in; tests script their own.
 */
import { parseCached } from "../engine/image/parse-cache.ts";
import type { ImageReference } from "../engine/image/reference.ts";
import type { EvaluationContext, RuleRef, VerifyPolicy } from "../engine/rules/rule.ts";
import { describeRule, type RewriteResult } from "../engine/rules/ruleset.ts";
import type { CheckResult, CheckTarget } from "../registry/presence.ts";
import type { Rewriter } from "./plan.ts";

/** Does a registry have a manifest? Never rejects. */
export interface ManifestChecker {
  check(target: CheckTarget): Promise<CheckResult>;
}

export interface Verification {
  readonly checker: ManifestChecker;
  /** The most one admission waits for registries, well under the webhook's timeout. */
  readonly deadlineMs: number;
}

/**
 * How many rules one image may try when targets lack it (`whenAbsent: NextRule`): each try is
 * a registry round trip inside the admission deadline, and a rule set is not a search space.
 */
export const MAX_RULES_TRIED = 8;

/**
 * Registry checks one admission may start (next rules and upstream digests included). A real
 * pod needs a handful; a pod naming thousands of images must not turn one admission into
 * thousands of requests to a mirror. Past it, checks answer unknown (`whenUnknown` decides).
 */
export const MAX_CHECKS_PER_ADMISSION = 64;

/** What the registries said about one rewrite. */
export interface CheckOutcome {
  /** stale: Digest mode, and the target's content is not the original's. */
  readonly state: "present" | "absent" | "stale" | "unknown";
  /** The image asked about. */
  readonly image: string;
  /** The rule whose rewrite it was. */
  readonly rule: RuleRef;
  /** For people: `present`, `absent`, `unknown: HTTP 503`, `stale: … upstream has …`. */
  readonly detail: string;
  readonly cached: boolean;
}

/** The verified decision for one image. */
export interface Verified {
  /** The rewrite to use, or undefined to keep the original image. */
  readonly result?: RewriteResult;
  /** Every check made, in order (more than one when the next rule was tried). */
  readonly checks: readonly CheckOutcome[];
  /** Kept the original because a check said so (absent, stale, or unknown and untrusted). */
  readonly fallback: boolean;
}

/**
 * One admission's bounds: a deadline every check races, and the number of checks it may start
 * (`MAX_CHECKS_PER_ADMISSION`). `clear` when the plan is done.
 */
export class AdmissionBounds {
  readonly ms: number;
  readonly passed: Promise<CheckResult>;
  private timer: NodeJS.Timeout | undefined;
  private checksLeft = MAX_CHECKS_PER_ADMISSION;
  constructor(ms: number) {
    this.ms = ms;
    this.passed = new Promise((resolve) => {
      this.timer = setTimeout(
        () =>
          resolve({
            state: "unknown",
            reason: `no answer within the ${ms} ms admission deadline`,
            cached: false,
          }),
        ms,
      );
      this.timer.unref();
    });
  }
  /** Asks the checker within both bounds. */
  ask(checker: ManifestChecker, target: CheckTarget): Promise<CheckResult> {
    if (this.checksLeft <= 0)
      return Promise.resolve({
        state: "unknown",
        reason: `more than ${MAX_CHECKS_PER_ADMISSION} registry checks for one pod`,
        cached: false,
      });
    this.checksLeft--;
    return Promise.race([checker.check(target), this.passed]);
  }
  clear(): void {
    clearTimeout(this.timer);
  }
}

/**
 * Checks `first` (a rewrite whose rule asks for verification) and, when its target lacks the
 * image and the policy says so, the next matching rules, up to `MAX_RULES_TRIED`.
 */
export async function verifyRewrite(
  image: string,
  first: RewriteResult,
  rules: Rewriter,
  context: EvaluationContext,
  checker: ManifestChecker,
  bounds: AdmissionBounds,
): Promise<Verified> {
  const checks: CheckOutcome[] = [];
  const tried = new Set<RuleRef>();
  let result = first;
  for (;;) {
    const { verify: policy, rule } = result;
    if (!policy || !rule || !result.changed) return { result, checks, fallback: false };
    const outcome = await checkOne(image, result.output, rule, policy, checker, bounds);
    checks.push(outcome);
    if (outcome.state === "present") return { result, checks, fallback: false };
    if (outcome.state === "unknown")
      return policy.whenUnknown === "Rewrite"
        ? { result, checks, fallback: false }
        : { checks, fallback: true };
    tried.add(rule);
    if (policy.whenAbsent !== "NextRule" || tried.size >= MAX_RULES_TRIED) return { checks, fallback: true };
    result = rules.rewrite(image, context, tried);
    if (result.error !== undefined || !result.changed) return { checks, fallback: true };
  }
}

function targetOf(reference: ImageReference, policy: VerifyPolicy, pin?: string): CheckTarget {
  return {
    host: reference.domain,
    repository: reference.path,
    reference: pin ?? reference.digest ?? reference.tag ?? "latest",
    ...(policy.credentials ? { credentials: policy.credentials } : {}),
    ...(policy.insecure.has(reference.domain) ? { insecure: true } : {}),
  };
}

async function checkOne(
  image: string,
  output: string,
  rule: RuleRef,
  policy: VerifyPolicy,
  checker: ManifestChecker,
  bounds: AdmissionBounds,
): Promise<CheckOutcome> {
  const outcome = (state: CheckOutcome["state"], detail: string, cached = false): CheckOutcome => ({
    state,
    image: output,
    rule,
    detail,
    cached,
  });
  const target = parseCached(output);
  const original = parseCached(image);
  if (!target.ok || !original.ok) return outcome("unknown", "not a checkable image reference");
  const pinned = policy.mode === "Digest" ? original.reference.digest : undefined;
  const mirror = bounds.ask(checker, targetOf(target.reference, policy, pinned));
  // Digest mode, tag only: upstream's digest for the tag, asked at the same time.
  const upstream =
    policy.mode === "Digest" && pinned === undefined
      ? bounds.ask(checker, targetOf(original.reference, policy))
      : undefined;
  const answer = await mirror;
  if (answer.state === "absent") return outcome("absent", "absent", answer.cached);
  if (answer.state === "unknown") return outcome("unknown", `unknown: ${answer.reason}`, answer.cached);
  if (pinned !== undefined) {
    if (answer.digest !== undefined && answer.digest !== pinned)
      return outcome("stale", `stale: serves ${answer.digest}, not ${pinned}`, answer.cached);
    return outcome("present", `present at ${pinned}`, answer.cached);
  }
  if (!upstream) return outcome("present", "present", answer.cached);
  const source = await upstream;
  if (source.state !== "present" || source.digest === undefined)
    return outcome("present", "present (upstream's digest unknown, not compared)", answer.cached);
  if (answer.digest === undefined)
    return outcome("unknown", "unknown: sent no digest to compare with upstream's", answer.cached);
  if (answer.digest !== source.digest)
    return outcome(
      "stale",
      `stale: has ${answer.digest}, upstream ${image} has ${source.digest}`,
      answer.cached,
    );
  return outcome("present", `present at upstream's digest ${source.digest}`, answer.cached && source.cached);
}

/** The record's words for the checks: what was asked and what it said. */
export function describeChecks(checks: readonly CheckOutcome[]): string {
  return checks
    .map(
      (check) =>
        `${check.image}: ${check.detail}${check.cached ? " (cached)" : ""} [${describeRule(check.rule)}]`,
    )
    .join("; ");
}
