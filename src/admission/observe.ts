/**
 * Metrics and logs of a mutation, as a decorator around the plan (`plan.ts`), the way Kyverno
 * wraps its handlers: the plan decides, this tells. Every skip, audit and image left as it was
 * is logged in the order it happened; rewrites are logged and counted only once the pod is
 * admitted with them, after the rest. Dry runs are logged, marked, and not counted.
 */
import { parseCached } from "../engine/image/parse-cache.ts";
import { describeRule } from "../engine/rules/ruleset.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import type { MutationEvent, Plan } from "./plan.ts";
import type { PodView } from "./pod-view.ts";

export interface Observers {
  metrics: Metrics;
  logger: Logger;
}

const field = (event: { field: { key: string } }) => event.field.key;

/** The registry an image names, for metric labels: parsed once and memoized, not per call. */
function registryOf(image: string): string {
  const parsed = parseCached(image);
  return parsed.ok ? parsed.reference.domain : "invalid";
}

export function observe(plan: Plan, view: PodView, { metrics, logger }: Observers): void {
  const pod = { namespace: view.namespace, pod: view.name, dryRun: view.dryRun };
  const count = !view.dryRun;
  const rewrites: Extract<MutationEvent, { type: "rewrite" }>[] = [];
  for (const event of plan.events) {
    switch (event.type) {
      case "skip": {
        if (count) metrics.skips.inc({ reason: event.reason });
        const granted = event.reason === "opt_out" || event.reason === "already_rewritten";
        logger.info({ ...pod, reason: event.reason, ...event.details }, granted ? "skipped" : "skip ignored");
        break;
      }
      case "audit": {
        const { audit, field } = event;
        metrics.auditWouldRewrite.inc({ rule_kind: audit.rule.kind, rule_name: audit.rule.name });
        if (audit.error === undefined)
          logger.info(
            {
              ...pod,
              container: field.key,
              from: field.image,
              wouldBe: audit.output,
              rule: describeRule(audit.rule),
            },
            "audit: would rewrite image",
          );
        break;
      }
      case "not_rewritten": {
        const { field, result } = event;
        metrics.errors.inc({ kind: result.rule ? "rule" : "invalid_image" });
        logger.warn(
          { ...pod, container: field.key, image: field.image, error: result.error },
          "image not rewritten",
        );
        break;
      }
      case "rewrite":
        rewrites.push(event);
        break;
      case "check": {
        const { field, check } = event;
        logger.debug(
          {
            ...pod,
            container: field.key,
            image: check.image,
            state: check.state,
            detail: check.detail,
            cached: check.cached,
          },
          "registry check",
        );
        break;
      }
      case "fallback":
        logger.warn(
          { ...pod, container: field(event), image: event.field.image, checks: event.checks },
          "image kept: its mirror cannot be used",
        );
        break;
    }
  }
  if (plan.outcome !== "patched") return;
  for (const { field, to, rule } of rewrites) {
    if (count)
      metrics.rewrites.inc({
        rule_kind: rule.kind,
        rule_name: rule.name,
        source_registry: metrics.registryLabel(registryOf(field.image)),
        target_registry: metrics.registryLabel(registryOf(to)),
      });
    logger.info(
      { ...pod, container: field.key, from: field.image, to, rule: describeRule(rule) },
      "image rewritten",
    );
  }
}
