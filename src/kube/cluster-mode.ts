/**
 * Wiring for cluster mode: the Kubernetes configuration (in-cluster service account,
 * $KUBECONFIG or ~/.kube/config), the cluster rule source, the leader's duties, and in
 * self-managed certificate mode the Secret-backed certificate source.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { RuleSourceError } from "../errors.ts";
import type { CertificateSource } from "../server/certificates.ts";
import type { Logger } from "../telemetry/logger.ts";
import { CertificateManager } from "./certificate-manager.ts";
import { ClusterRuleSource } from "./cluster-source.ts";
import { startStatusReporting } from "./operator.ts";
import { SecretCertificateSource } from "./secret-certificates.ts";

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
}

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * The client's own lookup, but refusing to fall back to its default of an unauthenticated
 * `http://localhost:8080` when nothing is configured: that is a mistake to report, not a
 * cluster to retry forever.
 */
export function loadKubeConfig(env: NodeJS.ProcessEnv = process.env): KubeConfig {
  // The client's order: $KUBECONFIG (every file listed), else ~/.kube/config, else in-cluster.
  const listed = (env.KUBECONFIG ?? "").split(delimiter).filter((file) => file !== "");
  if (listed.length > 0) {
    const missing = listed.filter((file) => !existsSync(file));
    if (missing.length > 0) {
      throw new RuleSourceError(
        `$KUBECONFIG names ${missing.map((file) => JSON.stringify(file)).join(", ")}, which does not exist: ImageShift needs --rules PATH or a Kubernetes configuration (in-cluster service account, $KUBECONFIG or ~/.kube/config)`,
      );
    }
  } else {
    const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST) && existsSync(SERVICE_ACCOUNT_TOKEN);
    const fromHome = existsSync(join(env.HOME ?? homedir(), ".kube", "config"));
    if (!inCluster && !fromHome) {
      throw new RuleSourceError(
        "no --rules PATH and no Kubernetes configuration (in-cluster service account, $KUBECONFIG or ~/.kube/config): give one or the other",
      );
    }
  }
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return kubeConfig;
}

export function clusterMode(options: ClusterModeOptions) {
  const { logger, namespace, selfManaged } = options;
  const kubeConfig = loadKubeConfig();
  const source = new ClusterRuleSource({ kubeConfig, logger, watchCompat: options.watchCompat });
  const certificates = selfManaged
    ? new CertificateManager({ kubeConfig, namespace, logger, ...selfManaged })
    : undefined;
  const duties = startStatusReporting({
    kubeConfig,
    source,
    logger,
    namespace,
    ...(certificates ? { certificates } : {}),
  });
  const certificateSource: CertificateSource | undefined = selfManaged
    ? new SecretCertificateSource({ kubeConfig, namespace, name: selfManaged.secretName, logger })
    : undefined;
  logger.info(
    {
      server: kubeConfig.getCurrentCluster()?.server,
      watchCompat: options.watchCompat,
      certificates: selfManaged ? "selfManaged" : "files",
    },
    "cluster mode: rules come from the API server",
  );
  return {
    rules: source,
    certificateSource,
    namespaceLabels: (name: string) => source.namespaceLabels(name),
    stop: () => duties.stop(),
  };
}
