/**
 * The operator half of cluster mode: the leader's duties. Every replica serves admissions
 * from its own watches; only the leader writes status and, in self-managed certificate mode,
 * keeps the certificates and the webhook configurations' caBundle.
 *
 * Mirror presence checks happen at admission, not on rule changes: the leader compares their
 * last errors every few seconds and re-syncs status when they changed, so the objects'
 * RegistriesReachable conditions follow (`status.ts`).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { CertificateManager } from "../certs/certificate-manager.ts";
import type { KubeClient } from "../k8s/client.ts";
import { LeaderElector } from "../k8s/leader.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { ClusterRuleSource } from "./cluster-source.ts";
import { type RegistryErrors, StatusWriter } from "./status.ts";

export interface StatusReportingOptions {
  client: KubeClient;
  source: ClusterRuleSource;
  logger: Logger;
  /** Namespace of the Lease: the operator's own. */
  namespace: string;
  leaseName?: string;
  /** How often the leader re-checks every status, besides reacting to changes. */
  resyncMs?: number;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Self-managed certificates: reconciled by the leader every `periodMs`. */
  certificates?: CertificateManager;
  /** The presence checks' last error per registry (`registry/presence.ts`), for RegistriesReachable. */
  registryHealth?: { lastErrors(): RegistryErrors };
  /** How often the leader compares `registryHealth` with what it last saw (default 10 s). */
  healthCheckMs?: number;
}

/** One string per set of last errors: equal strings, nothing changed. */
function fingerprint(errors: RegistryErrors): string {
  return [...errors]
    .map(([host, error]) => `${host}\n${error.message}\n${error.at}`)
    .sort()
    .join("\n\n");
}

export interface StatusReporting {
  readonly elector: LeaderElector;
  /** Begins leader election; the leader's duties start and stop with leadership. */
  start(): void;
  stop(): Promise<void>;
}

/** The leader's duties, started at once (tests; `statusReporting` leaves the start to a manager). */
export function startStatusReporting(options: StatusReportingOptions): StatusReporting {
  const reporting = statusReporting(options);
  reporting.start();
  return reporting;
}

export function statusReporting(options: StatusReportingOptions): StatusReporting {
  const { source, logger, registryHealth } = options;
  const writer = new StatusWriter(
    options.client,
    logger,
    registryHealth && (() => registryHealth.lastErrors()),
  );
  let resync: NodeJS.Timeout | undefined;
  let renew: NodeJS.Timeout | undefined;
  let healthCheck: NodeJS.Timeout | undefined;
  /** The last errors as last compared: a change brings a status pass (only changed objects are written). */
  let seen = "";
  const compareHealth = (health: { lastErrors(): RegistryErrors }) => {
    const now = fingerprint(health.lastErrors());
    if (now === seen) return;
    seen = now;
    sync();
  };
  const { certificates } = options;
  let reconciling = false;
  /** One pass at a time: a slow pass is never overlapped by the next tick. */
  const reconcileCertificates = async () => {
    if (reconciling) return;
    reconciling = true;
    try {
      await certificates?.reconcile();
    } catch (error) {
      logger.warn({ err: error }, "certificates not reconciled; retrying");
    } finally {
      reconciling = false;
    }
  };
  const sync = () => {
    if (elector.leading && source.synced) void writer.sync(() => source.clusterObjects());
  };
  const elector = new LeaderElector({
    client: options.client,
    namespace: options.namespace,
    name: options.leaseName ?? "imageshift-status-writer",
    identity: `${hostname()}_${process.pid}_${randomBytes(4).toString("hex")}`,
    logger,
    ...(options.leaseDurationMs ? { leaseDurationMs: options.leaseDurationMs } : {}),
    ...(options.renewDeadlineMs ? { renewDeadlineMs: options.renewDeadlineMs } : {}),
    ...(options.retryPeriodMs ? { retryPeriodMs: options.retryPeriodMs } : {}),
    onStartedLeading: () => {
      sync();
      resync = setInterval(sync, options.resyncMs ?? 30_000);
      resync.unref();
      if (registryHealth) {
        healthCheck = setInterval(() => compareHealth(registryHealth), options.healthCheckMs ?? 10_000);
        healthCheck.unref();
      }
      if (certificates) {
        void reconcileCertificates();
        renew = setInterval(() => void reconcileCertificates(), certificates.periodMs);
        renew.unref();
      }
    },
    onStoppedLeading: () => {
      clearInterval(resync);
      clearInterval(renew);
      clearInterval(healthCheck);
    },
  });
  source.onChange(sync);
  source.onRefused(sync);
  return {
    elector,
    start: () => elector.start(),
    async stop() {
      clearInterval(resync);
      clearInterval(renew);
      clearInterval(healthCheck);
      await elector.stop();
    },
  };
}
