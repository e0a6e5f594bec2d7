/**
 * Wiring for cluster mode: the Kubernetes configuration (in-cluster service account,
 * $KUBECONFIG or ~/.kube/config), the cluster rule source, the leader's duties, in
 * self-managed certificate mode the Secret-backed certificate source, and with
 * `--registry-credentials` the registry credentials from Secrets (`secret-keyring.ts`).
 */

import { CertificateManager } from "../certs/certificate-manager.ts";
import type { CertificateSource } from "../certs/certificates.ts";
import { SecretCertificateSource } from "../certs/secret-certificates.ts";
import { KubeClient } from "../k8s/client.ts";
import { loadClusterConnection } from "../k8s/kubeconfig.ts";
import type { Runnable } from "../manager/manager.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { ClusterRuleSource } from "./cluster-source.ts";
import { statusReporting } from "./operator.ts";
import { type ClusterKeyring, credentialsOff, SecretKeyring } from "./secret-keyring.ts";
import type { RegistryErrors } from "./status.ts";

export interface SelfManagedCertificates {
  secretName: string;
  webhookConfigurationName: string;
  serviceName: string;
  extraNames: string[];
  caValidityMs: number;
  certificateValidityMs: number;
  renewBeforeMs: number;
}

export interface ClusterModeOptions {
  logger: Logger;
  watchCompat: boolean;
  /** The operator's namespace: Lease and certificate Secret live there. */
  namespace: string;
  selfManaged?: SelfManagedCertificates;
  /** `--kubeconfig`: this file, before $KUBECONFIG, in-cluster and ~/.kube/config. */
  kubeconfig?: string;
  /** `--leader-election-id`: the Lease's name (the chart's `<fullname>-leader`). */
  leaseName?: string;
  /** Where the client's requests and this replica's leadership are counted. */
  metrics?: Metrics;
  /**
   * `--registry-credentials`: read `kubernetes.io/dockerconfigjson` Secrets in `namespace` for
   * the presence checks (the chart grants get, list and watch on Secrets there only then).
   */
  registryCredentials?: boolean;
  /**
   * The presence checks' last error per registry (`registry/presence.ts`), for the rule objects'
   * RegistriesReachable conditions. Read only once leading, so it may delegate to a checker built
   * after this call (it needs `keyring`).
   */
  registryHealth?: { lastErrors(): RegistryErrors };
}

export function clusterMode(options: ClusterModeOptions) {
  const { logger, namespace, selfManaged, metrics } = options;
  const client = new KubeClient(loadClusterConnection(process.env, undefined, options.kubeconfig), {
    ...(metrics ? { onResponse: (verb, code) => metrics.kubeRequests.inc({ verb, code }) } : {}),
  });
  const source = new ClusterRuleSource({ client, logger, watchCompat: options.watchCompat });
  const certificates = selfManaged
    ? new CertificateManager({ client, namespace, logger, ...selfManaged })
    : undefined;
  const duties = statusReporting({
    client,
    source,
    logger,
    namespace,
    ...(options.leaseName ? { leaseName: options.leaseName } : {}),
    ...(certificates ? { certificates } : {}),
    ...(options.registryHealth ? { registryHealth: options.registryHealth } : {}),
  });
  const secretKeyring = options.registryCredentials
    ? new SecretKeyring({ client, namespace, logger })
    : undefined;
  if (metrics) metrics.isLeader = () => duties.elector.leading;
  const certificateSource: CertificateSource | undefined = selfManaged
    ? new SecretCertificateSource({ client, namespace, name: selfManaged.secretName, logger })
    : undefined;
  logger.info(
    {
      server: client.server,
      from: client.origin,
      watchCompat: options.watchCompat,
      certificates: selfManaged ? "selfManaged" : "files",
      registryCredentials: secretKeyring ? `Secrets in ${namespace}` : "off",
    },
    "cluster mode: rules come from the API server",
  );
  // Stopped last of all: ends any call still waiting on the API server.
  const connection: Runnable = {
    name: "kube-client",
    start: async () => {},
    stop: async () => client.close(),
  };
  // Started after the rule source, before the certificate source (which, self-managed, waits
  // for the Secret the leader writes); stopped before the rule source: leadership is released
  // (within leader.ts's bound) while the webhook has already drained.
  const leaderElection: Runnable = {
    name: "leader-election",
    start: async () => duties.start(),
    stop: () => duties.stop(),
  };
  const keyring: ClusterKeyring = secretKeyring ?? credentialsOff(namespace);
  return {
    rules: source,
    certificateSource,
    namespaceLabels: (name: string) => source.namespaceLabels(name),
    /** Credentials for the presence checks, by the Secret a rule object names. */
    keyring,
    /**
     * For the manager (webhook/app.ts): the client around everything; after the rules, the
     * credentials (the webhook is not ready before their first list: a check without the
     * credentials it needs would fail against a private mirror), then leadership.
     */
    outer: [connection],
    runnables: secretKeyring ? [secretKeyring, leaderElection] : [leaderElection],
  };
}
