/**
 * Prometheus metrics. Labels stay low-cardinality: no pod or namespace names, and registry
 * labels are capped (a pod can name any registry; a scrape must stay small).
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const REGISTRY_LABEL_LIMIT = 100;

/**
 * Every `outcome` of `imageshift_admission_requests_total`: the handlers' own (`/mutate`,
 * `/validate`) and the server's `invalid`. The handlers' outcome types are drawn from this list,
 * so the HELP text, built from it, cannot miss one.
 */
export const ADMISSION_OUTCOMES = [
  "patched",
  "unchanged",
  "skipped",
  "allowed",
  "denied",
  "failed_open",
  "invalid",
] as const;
export type AdmissionOutcome = (typeof ADMISSION_OUTCOMES)[number];

/**
 * Why a pod or an image was not evaluated by the rules, or why such a skip was not granted:
 * `opt_out` (an opt-out annotation honoured: the pod admitted unchanged), `already_rewritten`
 * (an image the original-images record shows ImageShift produced, and the current rules agree),
 * `opt_out_ignored` (an opt-out annotation in a strict namespace: the pod evaluated all the
 * same), `record_ignored` (a record entry the current rules do not agree with, forged or stale:
 * the image evaluated all the same).
 */
export const SKIP_REASONS = ["opt_out", "already_rewritten", "opt_out_ignored", "record_ignored"] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export class Metrics {
  readonly registry = new Registry();
  private readonly registries = new Set<string>();

  readonly admissionRequests = new Counter({
    name: "imageshift_admission_requests_total",
    help: `Admission requests by webhook, operation and outcome (${ADMISSION_OUTCOMES.join(", ")}).`,
    labelNames: ["webhook", "operation", "outcome"] as const,
    registers: [this.registry],
  });

  readonly admissionDuration = new Histogram({
    name: "imageshift_admission_duration_seconds",
    help: "Time to answer an admission request, from the body read to the response written.",
    labelNames: ["webhook"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });

  readonly rewrites = new Counter({
    name: "imageshift_rewrites_total",
    help: "Images rewritten, by rule and by source and target registry.",
    labelNames: ["rule_kind", "rule_name", "source_registry", "target_registry"] as const,
    registers: [this.registry],
  });

  readonly auditWouldRewrite = new Counter({
    name: "imageshift_audit_would_rewrite_total",
    help: "Images an Audit-mode rule would have rewritten (nothing was changed).",
    labelNames: ["rule_kind", "rule_name"] as const,
    registers: [this.registry],
  });

  readonly skips = new Counter({
    name: "imageshift_skips_total",
    help: `Skips asked for, by reason (${SKIP_REASONS.join(", ")}); the *_ignored ones were not granted.`,
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  readonly errors = new Counter({
    name: "imageshift_errors_total",
    help: "Errors by kind: invalid_image, rule (a rule produced an invalid image), internal, bad_request, client_aborted.",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });

  readonly rulesLoaded = new Gauge({
    name: "imageshift_rules_loaded",
    help: "Rules in the active rule set.",
    registers: [this.registry],
  });

  readonly lastReload = new Gauge({
    name: "imageshift_rules_last_reload_timestamp_seconds",
    help: "Unix time of the last successful rule set reload.",
    registers: [this.registry],
  });

  // The process's memory, read at scrape time, under the names prom-client's default metrics
  // use (so existing dashboards work). Not `collectDefaultMetrics`: it starts an event-loop
  // monitor and a GC observer per registry that nothing can stop.
  readonly residentMemory = new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [this.registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });

  readonly heap = new Gauge({
    name: "nodejs_heap_size_used_bytes",
    help: "JavaScript heap in use, in bytes.",
    registers: [this.registry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });

  readonly heapTotal = new Gauge({
    name: "nodejs_heap_size_total_bytes",
    help: "JavaScript heap committed, in bytes.",
    registers: [this.registry],
    collect() {
      this.set(process.memoryUsage().heapTotal);
    },
  });

  /** A registry name as a label value, or "other" once too many distinct ones were seen. */
  registryLabel(registry: string): string {
    if (this.registries.has(registry)) return registry;
    if (this.registries.size >= REGISTRY_LABEL_LIMIT) return "other";
    this.registries.add(registry);
    return registry;
  }

  rulesReloaded(count: number): void {
    this.rulesLoaded.set(count);
    this.lastReload.set(Date.now() / 1000);
  }
}
