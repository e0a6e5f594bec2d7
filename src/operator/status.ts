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
 * Only the leader writes (see `leader.ts`), so replicas never fight over it; a write happens
 * only when the wanted status differs from the stored one.
 */

import { COMPAT_KIND } from "../api/schema.ts";
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import type { ClusterObject } from "./cluster-source.ts";

export interface Condition {
  type: "Ready";
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

/** The status an object should have, keeping the stored transition time when nothing flipped. */
export function desiredStatus(entry: ClusterObject, now: Date = new Date()): RuleObjectStatus {
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
  const stored = (entry.object.status as StoredStatus | undefined)?.conditions?.find(
    (condition) => condition.type === "Ready",
  );
  const status = ready ? "True" : "False";
  const condition: Condition = {
    type: "Ready",
    status,
    reason,
    message,
    lastTransitionTime:
      stored?.status === status && stored.lastTransitionTime
        ? stored.lastTransitionTime
        : now.toISOString().replace(/\.\d+Z$/, "Z"),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    rules,
    ...(warnings.length > 0 ? { warnings } : {}),
    conditions: [condition],
    ...(entry.resource.kind === COMPAT_KIND
      ? { ready, ruleCount: rules, lastUpdateTime: now.toISOString().replace(/\.\d+Z$/, "Z") }
      : {}),
  };
}

/** True when the stored status already says this (times aside). */
export function statusMatches(stored: unknown, wanted: RuleObjectStatus): boolean {
  const current = stored as StoredStatus | undefined;
  const condition = current?.conditions?.find((c) => c.type === "Ready");
  const [want] = wanted.conditions;
  return (
    current?.observedGeneration === wanted.observedGeneration &&
    current?.rules === wanted.rules &&
    JSON.stringify(current?.warnings ?? []) === JSON.stringify(wanted.warnings ?? []) &&
    current?.ready === wanted.ready &&
    current?.ruleCount === wanted.ruleCount &&
    condition?.status === want?.status &&
    condition?.reason === want?.reason &&
    condition?.message === want?.message &&
    condition?.observedGeneration === want?.observedGeneration
  );
}

export class StatusWriter {
  private readonly client: KubeClient;
  private readonly logger: Logger;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(client: KubeClient, logger: Logger) {
    this.client = client;
    this.logger = componentLogger(logger, "status");
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
        for (const entry of objects()) await this.write(entry);
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async write(entry: ClusterObject): Promise<void> {
    const wanted = desiredStatus(entry);
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
        { object: `${entry.resource.kind}/${name}`, ready: wanted.conditions[0]?.status },
        "status updated",
      );
    } catch (error) {
      // Deleted meanwhile, or a conflict: the next change or resync brings another pass.
      this.logger.warn({ object: `${entry.resource.kind}/${name}`, err: error }, "status not updated");
    }
  }
}
