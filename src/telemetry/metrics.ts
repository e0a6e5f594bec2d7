/**
 * Prometheus metrics. Labels stay low-cardinality: no pod or namespace names, and registry
 * labels are capped (a pod can name any registry; a scrape must stay small).
 */
import { X509Certificate } from "node:crypto";
import perfHooks from "node:perf_hooks";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

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

/** Every `outcome` of `imageshift_registry_checks_total`: a network answer, or one from the cache. */
export const REGISTRY_CHECK_OUTCOMES = ["present", "absent", "unknown", "cached"] as const;
export type RegistryCheckOutcome = (typeof REGISTRY_CHECK_OUTCOMES)[number];

/** A presence-cache lookup: fresh (`hit`), past its TTL but still served (`stale`), or `miss`. */
export type CacheLookup = "hit" | "stale" | "miss";

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

  readonly admissionInFlight = new Gauge({
    name: "imageshift_admission_requests_in_flight",
    help: "Requests to the webhook server being answered now.",
    registers: [this.registry],
  });

  readonly kubeRequests = new Counter({
    name: "imageshift_kube_client_requests_total",
    help: "Requests to the Kubernetes API server by verb (get, list, watch, create, update, patch) and HTTP code (<error> when no answer came).",
    labelNames: ["verb", "code"] as const,
    registers: [this.registry],
  });

  /** Whether this replica leads now, read at scrape time; cluster mode sets it. */
  isLeader: () => boolean = () => false;

  readonly leader: Gauge = new Gauge({
    name: "imageshift_leader",
    help: "1 while this replica holds the leader Lease (writes status and certificates), else 0; always 0 in standalone mode.",
    registers: [this.registry],
    collect: () => this.leader.set(this.isLeader() ? 1 : 0),
  });

  readonly certificateExpiry = new Gauge({
    name: "imageshift_certificate_expiry_timestamp_seconds",
    help: "Unix time at which the serving certificate now in use expires (its notAfter).",
    registers: [this.registry],
  });

  readonly registryChecks = new Counter({
    name: "imageshift_registry_checks_total",
    help: `Mirror presence checks by registry and outcome (${REGISTRY_CHECK_OUTCOMES.join(", ")}).`,
    labelNames: ["registry", "outcome"] as const,
    registers: [this.registry],
  });

  readonly registryCheckDuration = new Histogram({
    name: "imageshift_registry_check_duration_seconds",
    help: "Time a presence check spent asking the registry (token requests included); cached answers are not observed.",
    labelNames: ["registry"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly registryCacheLookups = new Counter({
    name: "imageshift_registry_cache_lookups_total",
    help: "Presence-cache lookups by result: hit (fresh), stale (served while one refresh runs), miss.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });

  readonly registryCacheHitRatio: Gauge = new Gauge({
    name: "imageshift_registry_cache_hit_ratio",
    help: "Presence-cache lookups answered from the cache (hit or stale) over all lookups; 0 before any.",
    registers: [this.registry],
    // At scrape time, not per lookup: a warm admission makes three lookups.
    collect: () => {
      const { hit, stale, miss } = this.lookups;
      const all = hit + stale + miss;
      this.registryCacheHitRatio.set(all === 0 ? 0 : (hit + stale) / all);
    },
  });

  /** The registries whose circuit breaker is open now, read at scrape time; the presence checker sets it. */
  openBreakers: () => Iterable<string> = () => [];
  /** Every `registry` label the breaker gauge has shown: one that closes reads 0, not nothing. */
  private readonly breakerLabels = new Set<string>();

  readonly registryBreakerOpen: Gauge<"registry"> = new Gauge({
    name: "imageshift_registry_breaker_open",
    help: "1 while the circuit breaker for a registry is open (checks answer unknown at once), else 0.",
    labelNames: ["registry"] as const,
    registers: [this.registry],
    collect: () => {
      const open = new Set<string>();
      for (const host of this.openBreakers()) open.add(this.registryLabel(host));
      for (const label of open) this.breakerLabels.add(label);
      for (const label of this.breakerLabels)
        this.registryBreakerOpen.set({ registry: label }, open.has(label) ? 1 : 0);
    },
  });

  readonly registryRequests = new Counter({
    name: "imageshift_registry_requests_total",
    help: "HTTP requests sent to registries and their token servers for presence checks, by the registry checked.",
    labelNames: ["registry"] as const,
    registers: [this.registry],
  });

  private readonly lookups = { hit: 0, stale: 0, miss: 0 };
  // Labelled children kept: prom-client hashes a label object on every `inc`, a few
  // microseconds each, three times per warm admission. Bounded: registry labels are capped.
  private readonly lookupCounters = {
    hit: this.registryCacheLookups.labels({ result: "hit" }),
    stale: this.registryCacheLookups.labels({ result: "stale" }),
    miss: this.registryCacheLookups.labels({ result: "miss" }),
  };
  private readonly checkCounters = new Map<string, ReturnType<Metrics["registryChecks"]["labels"]>>();

  /** The monitors Node's default metrics started for this registry; `stop()` ends them. */
  private readonly monitors: Monitor[] = collectDefaults(this.registry);

  /**
   * Stops the default metrics' event-loop delay monitor and GC observer; true for each one that
   * was still running. Called when the app stops; metrics read afterwards keep their last values.
   */
  stop(): boolean[] {
    return this.monitors.map((monitor) => monitor.stop());
  }

  /** Records the notAfter of the serving certificate (PEM, leaf first); unreadable ones are ignored. */
  servingCertificate(cert: unknown): void {
    const pem = Array.isArray(cert) ? cert[0] : cert;
    if (typeof pem !== "string" && !Buffer.isBuffer(pem)) return;
    try {
      this.certificateExpiry.set(Date.parse(new X509Certificate(pem).validTo) / 1000);
    } catch {
      // Not a certificate: the TLS layer refuses it, and says so.
    }
  }

  /** A registry name as a label value, or "other" once too many distinct ones were seen. */
  registryLabel(registry: string): string {
    if (this.registries.has(registry)) return registry;
    if (this.registries.size >= REGISTRY_LABEL_LIMIT) return "other";
    this.registries.add(registry);
    return registry;
  }

  /** Counts a presence-cache lookup and updates the hit ratio. */
  registryCacheLookup(result: CacheLookup): void {
    this.lookups[result]++;
    this.lookupCounters[result].inc();
  }

  /** One presence check's outcome; the labelled counter is looked up once per label pair. */
  registryCheck(host: string, outcome: RegistryCheckOutcome): void {
    const registry = this.registryLabel(host);
    const key = `${registry} ${outcome}`;
    let counter = this.checkCounters.get(key);
    if (counter === undefined) {
      counter = this.registryChecks.labels({ registry, outcome });
      this.checkCounters.set(key, counter);
    }
    counter.inc();
  }

  rulesReloaded(count: number): void {
    this.rulesLoaded.set(count);
    this.lastReload.set(Date.now() / 1000);
  }
}

/** Something started for the default metrics that runs until stopped. */
interface Monitor {
  /** True when it was running. */
  stop(): boolean;
}

/**
 * prom-client's default metrics (process CPU, memory, file descriptors, heap spaces, event-loop
 * lag, GC durations, Node's version) for `registry`, under their usual names so dashboards
 * work. prom-client 15 starts two monitors for them, a `monitorEventLoopDelay` histogram and a
 * GC `PerformanceObserver`, and keeps no handle to either. They are created synchronously inside
 * `collectDefaultMetrics`, so the constructors it reads from `perf_hooks` are wrapped for that one
 * call to capture them, and `stop()` can end them.
 */
function collectDefaults(registry: Registry): Monitor[] {
  const monitors: Monitor[] = [];
  const { monitorEventLoopDelay, PerformanceObserver } = perfHooks;
  perfHooks.monitorEventLoopDelay = (options) => {
    const histogram = monitorEventLoopDelay(options);
    monitors.push({ stop: () => histogram.disable() });
    return histogram;
  };
  perfHooks.PerformanceObserver = class extends PerformanceObserver {
    constructor(callback: ConstructorParameters<typeof PerformanceObserver>[0]) {
      super(callback);
      let running = true;
      monitors.push({
        stop: () => {
          const was = running;
          running = false;
          this.disconnect();
          return was;
        },
      });
    }
  };
  try {
    collectDefaultMetrics({ register: registry });
  } finally {
    perfHooks.monitorEventLoopDelay = monitorEventLoopDelay;
    perfHooks.PerformanceObserver = PerformanceObserver;
  }
  return monitors;
}
