/**
 * The operator half of cluster mode: status reporting under leader election. Every replica
 * serves admissions from its own watches; only the leader writes status.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "../telemetry/logger.ts";
import type { ClusterRuleSource } from "./cluster-source.ts";
import { LeaderElector } from "./leader.ts";
import { StatusWriter } from "./status.ts";

export interface StatusReportingOptions {
  kubeConfig: KubeConfig;
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
}

export interface StatusReporting {
  readonly elector: LeaderElector;
  stop(): Promise<void>;
}

export function startStatusReporting(options: StatusReportingOptions): StatusReporting {
  const { source, logger } = options;
  const writer = new StatusWriter(options.kubeConfig, logger);
  let resync: NodeJS.Timeout | undefined;
  const sync = () => {
    if (elector.leading && source.current()) void writer.sync(() => source.clusterObjects());
  };
  const elector = new LeaderElector({
    kubeConfig: options.kubeConfig,
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
    },
    onStoppedLeading: () => clearInterval(resync),
  });
  source.onChange(sync);
  elector.start();
  return {
    elector,
    async stop() {
      clearInterval(resync);
      await elector.stop();
    },
  };
}
