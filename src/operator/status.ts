/**
 * What each rule object's status says, and the writer that keeps it so.
 *
 *   status:
 *     observedGeneration: 3
 *     rules: 5                      # rules in use (an earlier generation's, see below)
 *     warnings:                     # every validation warning, also those of objects
 *     - "spec.rules[1].match: …"    #   created before ImageShift was installed
 *     conditions:
 *     - type: Ready
 *       status: "False"
 *       reason: InvalidRules
 *       message: "spec.mappings.regexSwap[2].expression: …; spec.mappings.swap[0].target: …"
 *
 * Reasons: `RulesValid`; `InvalidRules` (bad rules dropped, the others in use);
 * `InvalidObject` (the object as a whole unusable, nothing of it in use);
 * `InvalidObjectLastGoodInUse` (this generation unusable as a whole, an earlier one's rules
 * served instead: "generation 4 not in use, serving generation 3's 5 rule(s) instead: …").
 *
 * An object whose rules verify their targets (`verify.mode` not `None`, issue 13) also gets
 *
 *     - type: RegistriesReachable
 *       status: "False"                 # "True", reason Reachable, when none failed
 *       reason: CheckFailed
 *       message: "127.0.0.1:5000: HTTP 503 (at 2026-11-30T21:00:00Z)"
 *
 * from the last error of each of its target registries, as this replica's presence checks saw
 * them (checks happen at admission, on every replica; the leader reports its own).
 *
 * Only the leader writes (see `leader.ts`), so replicas never fight over it; a write happens
 * only when the wanted status differs from the stored one.
 */

import { COMPAT_KIND } from "../api/schema.ts";
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import type { ClusterObject } from "./cluster-source.ts";

export type ConditionType = "Ready" | "RegistriesReachable";

export interface Condition {
  type: ConditionType;
  status: "True" | "False";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface RuleObjectStatus {
  observedGeneration?: number;
  rules: number;
  warnings?: string[];
  conditions: Condition[];
  /** RegistryRewriteRule only: the Mutating Registry Webhook's fields, kept current. */
  ready?: boolean;
  ruleCount?: number;
  lastUpdateTime?: string;
}

/** Longest condition message; the API server stores up to 32 KiB, but a status is read by people. */
const MESSAGE_MAX = 4096;
/** Warnings listed in a status, and the length of each: enough to act on, small to store. */
const WARNINGS_MAX = 20;
const WARNING_MAX = 1024;
/**
 * Registries a RegistriesReachable message names, and the length of each one's error: enough to
 * act on; the error text comes from the registry, so it is bounded here whatever the client does.
 */
const REGISTRIES_LISTED = 10;
const REGISTRY_ERROR_MAX = 256;

/** The last failed check per registry host (`registry/presence.ts`, `PresenceChecker.lastErrors`). */
export type RegistryErrors = ReadonlyMap<string, { readonly message: string; readonly at: number }>;

const NO_ERRORS: RegistryErrors = new Map();

interface StoredStatus {
  observedGeneration?: number;
  rules?: number;
  warnings?: unknown;
  ready?: boolean;
  ruleCount?: number;
  conditions?: Partial<Condition>[];
}

function warningsOf(entry: ClusterObject): string[] {
  const all = entry.result.issues.filter((issue) => issue.severity === "warning");
  const listed = all
    .slice(0, WARNINGS_MAX)
    .map((issue) => `${issue.location.field || "(object)"}: ${issue.message}`.slice(0, WARNING_MAX));
  if (all.length > WARNINGS_MAX) listed.push(`… and ${all.length - WARNINGS_MAX} more warning(s)`);
  return listed;
}

/** Reason and the start of the message of an object that is not ready. */
function notReady(entry: ClusterObject): { reason: string; lead: string } {
  if (entry.overBudget)
    return {
      reason: "RuleSetOverBudget",
      lead: `the rule set is refused, the last good one keeps serving: ${entry.overBudget}`,
    };
  const { object } = entry.result;
  if (object)
    return { reason: "InvalidRules", lead: `${object.rules.length} valid rule(s) in use; invalid: ` };
  const kept = entry.lastGood;
  if (!kept) return { reason: "InvalidObject", lead: "not in use: " };
  const generation = entry.object.metadata?.generation;
  const current = generation === undefined ? "this generation" : `generation ${generation}`;
  const earlier = kept.generation === undefined ? "an earlier generation" : `generation ${kept.generation}`;
  return {
    reason: "InvalidObjectLastGoodInUse",
    lead: `${current} not in use, serving ${earlier}'s ${kept.rules.length} rule(s) instead: `,
  };
}

/** RFC 3339 in whole seconds, as Kubernetes writes condition times. */
function timeText(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

/** `a, b, c … and 4 more`: at most `REGISTRIES_LISTED` items. */
function listBounded(items: readonly string[], separator: string): string {
  const shown = items.slice(0, REGISTRIES_LISTED).join(separator);
  return items.length > REGISTRIES_LISTED
    ? `${shown}${separator}… and ${items.length - REGISTRIES_LISTED} more`
    : shown;
}

/** A condition, keeping the stored transition time when its status did not flip. */
function condition(
  type: ConditionType,
  fields: { status: "True" | "False"; reason: string; message: string },
  stored: StoredStatus | undefined,
  generation: number | undefined,
  now: Date,
): Condition {
  const before = stored?.conditions?.find((candidate) => candidate.type === type);
  return {
    type,
    ...fields,
    lastTransitionTime:
      before?.status === fields.status && before.lastTransitionTime
        ? before.lastTransitionTime
        : timeText(now),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
}

/**
 * RegistriesReachable for an object whose rules in use verify their targets; undefined for one
 * that does not (the condition is then removed).
 */
function registriesReachable(
  entry: ClusterObject,
  errors: RegistryErrors,
): { status: "True" | "False"; reason: string; message: string } | undefined {
  // `verify` is set only for objects that verify (mode Presence or Digest).
  const inUse = entry.result.object ?? entry.lastGood;
  if (!inUse?.verify) return undefined;
  const targets = inUse.targetRegistries ?? [];
  const failing = targets.flatMap((host) => {
    const error = errors.get(host);
    if (!error) return [];
    // The registry's own words can reach the message: control characters go, the length is bounded.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
    const message = error.message.replace(/[\u0000-\u001f\u007f]+/g, " ").slice(0, REGISTRY_ERROR_MAX);
    return [`${host}: ${message} (at ${timeText(new Date(error.at))})`];
  });
  if (failing.length > 0)
    return {
      status: "False",
      reason: "CheckFailed",
      message: listBounded(failing, "; ").slice(0, MESSAGE_MAX),
    };
  const message =
    targets.length === 0 ? "no target registries" : `no failed check on ${listBounded(targets, ", ")}`;
  return { status: "True", reason: "Reachable", message: message.slice(0, MESSAGE_MAX) };
}

/**
 * The status an object should have, keeping the stored transition times when nothing flipped;
 * `registryErrors` gives the RegistriesReachable condition of objects that verify.
 */
export function desiredStatus(
  entry: ClusterObject,
  now: Date = new Date(),
  registryErrors: RegistryErrors = NO_ERRORS,
): RuleObjectStatus {
  const generation = entry.object.metadata?.generation;
  const errors = entry.result.issues.filter((issue) => issue.severity === "error");
  const inUse = entry.result.object ?? entry.lastGood;
  const rules = inUse?.rules.length ?? 0;
  const ready = errors.length === 0 && entry.result.object !== undefined && !entry.overBudget;
  const warnings = warningsOf(entry);
  let message: string;
  let reason = "RulesValid";
  if (ready)
    message = `${rules} rule(s) in use${warnings.length > 0 ? `; ${warnings.length} warning(s), see status.warnings` : ""}`;
  else {
    const listed = errors
      .map((issue) => `${issue.location.field || "(object)"}: ${issue.message}`)
      .join("; ");
    const { reason: why, lead } = notReady(entry);
    reason = why;
    message = (entry.overBudget && listed ? `${lead}; ${listed}` : lead + listed).slice(0, MESSAGE_MAX);
  }
  const stored = entry.object.status as StoredStatus | undefined;
  const conditions = [
    condition("Ready", { status: ready ? "True" : "False", reason, message }, stored, generation, now),
  ];
  const reachable = registriesReachable(entry, registryErrors);
  if (reachable) conditions.push(condition("RegistriesReachable", reachable, stored, generation, now));
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    rules,
    ...(warnings.length > 0 ? { warnings } : {}),
    conditions,
    ...(entry.resource.kind === COMPAT_KIND
      ? { ready, ruleCount: rules, lastUpdateTime: timeText(now) }
      : {}),
  };
}

/** True when the stored status already says this (times aside). */
export function statusMatches(stored: unknown, wanted: RuleObjectStatus): boolean {
  const current = stored as StoredStatus | undefined;
  const sameCondition = (type: ConditionType) => {
    const have = current?.conditions?.find((c) => c.type === type);
    const want = wanted.conditions.find((c) => c.type === type);
    return (
      have?.status === want?.status &&
      have?.reason === want?.reason &&
      have?.message === want?.message &&
      have?.observedGeneration === want?.observedGeneration
    );
  };
  return (
    current?.observedGeneration === wanted.observedGeneration &&
    current?.rules === wanted.rules &&
    JSON.stringify(current?.warnings ?? []) === JSON.stringify(wanted.warnings ?? []) &&
    current?.ready === wanted.ready &&
    current?.ruleCount === wanted.ruleCount &&
    sameCondition("Ready") &&
    sameCondition("RegistriesReachable")
  );
}

export class StatusWriter {
  private readonly client: KubeClient;
  private readonly logger: Logger;
  private readonly registryErrors: () => RegistryErrors;
  private running: Promise<void> | undefined;
  private again = false;

  /** `registryErrors`: the presence checks' last error per registry (none when not checking). */
  constructor(client: KubeClient, logger: Logger, registryErrors: () => RegistryErrors = () => NO_ERRORS) {
    this.client = client;
    this.logger = componentLogger(logger, "status");
    this.registryErrors = registryErrors;
  }

  /** Brings every object's status up to date; overlapping calls coalesce into one more pass. */
  sync(objects: () => readonly ClusterObject[]): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        // Read once per pass: the same errors for every object.
        const errors = this.registryErrors();
        for (const entry of objects()) await this.write(entry, errors);
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async write(entry: ClusterObject, errors: RegistryErrors): Promise<void> {
    const wanted = desiredStatus(entry, new Date(), errors);
    if (statusMatches(entry.object.status, wanted)) return;
    const name = entry.object.metadata?.name ?? "";
    try {
      await this.client.patch(
        resourcePath({ ...entry.resource, name, subresource: "status" }),
        // A merge patch keeps fields it does not name: null removes warnings that are gone.
        { status: { ...wanted, warnings: wanted.warnings ?? null } },
        "merge",
      );
      this.logger.info(
        {
          object: `${entry.resource.kind}/${name}`,
          ready: wanted.conditions[0]?.status,
          registriesReachable: wanted.conditions[1]?.status,
        },
        "status updated",
      );
    } catch (error) {
      // Deleted meanwhile, or a conflict: the next change or resync brings another pass.
      this.logger.warn({ object: `${entry.resource.kind}/${name}`, err: error }, "status not updated");
    }
  }
}
