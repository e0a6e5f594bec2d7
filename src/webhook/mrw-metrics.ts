/**
 * The Mutating Registry Webhook's metrics, under its names and labels, so dashboards and alerts
 * built on them keep working after the switch (opt-in: `serve --mrw-metrics`, chart value
 * `metrics.mrwCompat`; docs/migrating-from-mrw.md says what each one means here).
 *
 * They are recorded around the `/mutate` handler, from what it was given and what it answered
 * (the JSON Patch names every image it replaced), so the admission code knows nothing of them.
 *
 *   registry_rewriter_mutations_total{namespace,source_registry,target_registry,status}
 *       images rewritten; status is always "success", as in MRW
 *   registry_rewriter_mutation_duration_seconds{namespace}   time in the handler, MRW's buckets
 *   registry_rewriter_rules_count                            rules in the active rule set
 *   registry_rewriter_cache_hits_total / _misses_total       admissions served with a loaded,
 *       non-empty rule set / with none (MRW: rules from its cache / none cached, so it listed)
 */
import { Counter, Gauge, Histogram } from "prom-client";
import type { AdmissionRequest, AdmissionReview } from "../admission/review.ts";
import { parseReference } from "../engine/image/reference.ts";
import type { Metrics } from "../telemetry/metrics.ts";

/** Go's prometheus.DefBuckets, which MRW's histogram uses. */
export const MRW_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Answer = { review: AdmissionReview; outcome: string };
type Handler<R extends Answer> = (request: AdmissionRequest) => R | Promise<R>;

interface ReplaceOperation {
  op: string;
  path: string;
  value?: unknown;
}

/** The value at an RFC 6901 pointer, or undefined. */
function at(document: unknown, pointer: string): unknown {
  let node = document;
  for (const raw of pointer.split("/").slice(1)) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[raw.replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  return node;
}

/** Every image a patched answer replaced: `[before, after]`. */
export function replacedImages(request: AdmissionRequest, review: AdmissionReview): [string, string][] {
  const { patch } = review.response;
  if (!patch) return [];
  const operations = JSON.parse(Buffer.from(patch, "base64").toString("utf8")) as ReplaceOperation[];
  return operations.flatMap((operation) => {
    const before = at(request.object, operation.path);
    return operation.op === "replace" && typeof before === "string" && typeof operation.value === "string"
      ? [[before, operation.value] as [string, string]]
      : [];
  });
}

export class MrwMetrics {
  private readonly metrics: Metrics;
  readonly mutations: Counter<"namespace" | "source_registry" | "target_registry" | "status">;
  readonly duration: Histogram<"namespace">;
  readonly rulesCount: Gauge;
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;

  constructor(metrics: Metrics) {
    this.metrics = metrics;
    const registers = [metrics.registry];
    this.mutations = new Counter({
      name: "registry_rewriter_mutations_total",
      help: "Images rewritten, by pod namespace and source and target registry (MRW's name; status is always success).",
      labelNames: ["namespace", "source_registry", "target_registry", "status"] as const,
      registers,
    });
    this.duration = new Histogram({
      name: "registry_rewriter_mutation_duration_seconds",
      help: "Time to decide a pod's images, by namespace (MRW's name and buckets).",
      labelNames: ["namespace"] as const,
      buckets: MRW_BUCKETS,
      registers,
    });
    this.rulesCount = new Gauge({
      name: "registry_rewriter_rules_count",
      help: "Rules in the active rule set (MRW's name).",
      registers,
    });
    this.cacheHits = new Counter({
      name: "registry_rewriter_cache_hits_total",
      help: "Pod admissions served with a loaded, non-empty rule set (MRW's name).",
      registers,
    });
    this.cacheMisses = new Counter({
      name: "registry_rewriter_cache_misses_total",
      help: "Pod admissions that found no rule set loaded, or an empty one (MRW's name).",
      registers,
    });
  }

  rulesLoaded(count: number): void {
    this.rulesCount.set(count);
  }

  /** `handler` with every call recorded; `rules` is the size of the active rule set, if any. */
  wrap<R extends Answer>(
    handler: Handler<R>,
    rules: () => number | undefined,
  ): (request: AdmissionRequest) => Promise<R> {
    return async (request: AdmissionRequest) => {
      const started = process.hrtime.bigint();
      const result = await handler(request);
      this.record(request, result, rules(), Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    };
  }

  private record(
    request: AdmissionRequest,
    result: Answer,
    rules: number | undefined,
    seconds: number,
  ): void {
    const namespace = request.namespace ?? "";
    this.duration.observe({ namespace }, seconds);
    // Not a pod, or opted out: MRW never looked at its rules for those either.
    if (result.outcome === "skipped") return;
    if (rules) this.cacheHits.inc();
    else this.cacheMisses.inc();
    // A dry run changes nothing in the cluster: not counted, as imageshift_rewrites_total.
    if (request.dryRun === true) return;
    for (const [before, after] of replacedImages(request, result.review)) {
      this.mutations.inc({
        namespace,
        source_registry: this.registryLabel(before),
        target_registry: this.registryLabel(after),
        status: "success",
      });
    }
  }

  private registryLabel(image: string): string {
    const parsed = parseReference(image);
    return this.metrics.registryLabel(parsed.ok ? parsed.reference.domain : "invalid");
  }
}
