/**
 * `imageshift serve`: the admission webhook. Parses flags, picks the rule and certificate
 * sources, starts the app, and stops it gracefully on SIGTERM or SIGINT.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { parseArgs } from "node:util";
import { DEFAULT_NAMESPACE_LABEL } from "../admission/mutate.ts";
import { FileCertificateSource, SelfSignedCertificateSource } from "../certs/certificates.ts";
import { FileRuleSource } from "../engine/rules/file-source.ts";
import { errorMessage, ListenError, UsageError } from "../errors.ts";
import type { SelfManagedCertificates } from "../operator/cluster-mode.ts";
import { NO_CREDENTIALS } from "../registry/credentials.ts";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { type AppOptions, type RunningApp, startApp } from "../webhook/app.ts";
import { type CommandIO, EXIT_OK } from "./io.ts";
import { usageError } from "./usage.ts";
import { createChecks, type SecretsKeyring } from "./verification.ts";

export const SERVE_HELP = `Usage: imageshift serve [--rules PATH] [options]

Serves the mutating (/mutate, and /mutate/strict for strict namespaces) and validating
(/validate) admission webhooks over HTTPS, and /healthz, /readyz and /metrics over plain HTTP
on a separate port.

Options:
  --rules PATH                rule file or folder, watched and hot-reloaded (standalone mode);
                              without it, rules come from the cluster (cluster mode)
  --port N                    webhook HTTPS port (default 8443)
  --bind-address ADDR         webhook address (default 0.0.0.0)
  --metrics-port N            health and metrics HTTP port (default 8080)
  --metrics-bind-address ADDR health and metrics address (default 0.0.0.0)
  --tls-cert-file FILE        serving certificate (PEM); reloaded when it changes
  --tls-key-file FILE         its private key (PEM)
  --tls-cipher-suites S,...   TLS cipher suites, OpenSSL names, comma-separated (TLS 1.3 ones
                              included); default: AEAD only, ECDHE with AES-GCM or
                              ChaCha20-Poly1305 for TLS 1.2, as Go's crypto/tls
  --self-signed-dir DIR       without certificate files: where to write the generated CA,
                              ca.pem (default $TMPDIR/imageshift/PORT, PORT being --port;
                              $TMPDIR/imageshift/pid-PID for --port 0)
  --fail-closed               deny pods on internal errors (default: admit them unchanged)
  --namespace-label KEY       cluster mode: a namespace labelled KEY=strict is strict on
                              /mutate too (default imageshift.dev; the chart's namespaceLabel)
  --shutdown-delay SECONDS    on SIGTERM, how long to keep serving, not ready, before no
                              longer accepting: the time the API server takes to stop
                              calling this pod (default 0; the chart's 5; at most 60)
  --shutdown-timeout SECONDS  how long requests in flight may take on SIGTERM (default 25)
  --disable-compat-kind       cluster mode: do not watch RegistryRewriteRule objects
  --mrw-metrics               also export the Mutating Registry Webhook's metrics
                              (registry_rewriter_*), for its dashboards and alerts
  --kubeconfig FILE           cluster mode: the kubeconfig to use; without it $KUBECONFIG,
                              then the pod's service account, then ~/.kube/config
  --leader-election-namespace NS
                              cluster mode: ImageShift's namespace, where its Lease and
                              certificate Secret live (default: $POD_NAMESPACE, else default)
  --leader-election-id NAME   cluster mode: the leader Lease's name
                              (default imageshift-status-writer; the chart's <fullname>-leader)
  --tls-secret NAME           cluster mode, self-managed certificates: the leader keeps a CA
                              and a serving certificate in this Secret and every replica
                              serves from it (instead of --tls-cert-file)
  --webhook-configuration NAME
                              self-managed: the webhook configurations whose caBundle to keep
  --service-name NAME         self-managed: the Service the certificate is for
  --certificate-names N,...   self-managed: extra DNS names or IPs in the certificate
  --ca-validity DURATION      self-managed: CA lifetime, e.g. 3650d (default); s, m, h, d
  --certificate-validity DURATION
                              self-managed: serving certificate lifetime (default 90d)
  --renew-before DURATION     self-managed: renew this long before expiry (default 30d)
Registry checks (rule objects with spec.verify or the imageshift.dev/verify annotation;
docs/mirrors.md):
  --verify-deadline DURATION  the most one admission waits for registries (default 2s; at
                              most 25s, under the API server's 30 s webhook timeout)
  --registry-timeout DURATION each registry request (default 5s); a request that outlives the
                              deadline still fills the cache for the next pod
  --verify-positive-ttl DURATION
                              how long "present" is trusted (default 5m)
  --verify-negative-ttl DURATION
                              how long "absent" is trusted (default 30s)
  --verify-stale DURATION     how long past its TTL "present" is still served while it is
                              checked again in the background (default 1h)
  --breaker-failures N        failures in a row that open a registry's circuit (default 5)
  --breaker-cool-down DURATION
                              how long an open circuit answers "unknown" at once (default 30s)
  --registry-credentials      cluster mode: read kubernetes.io/dockerconfigjson Secrets in
                              ImageShift's namespace, named by rule objects' credentialsSecret
  --registry-config FILE      a Docker config.json whose credentials every check may use
                              (standalone mode; cluster mode prefers Secrets)
  --registry-ca FILE          extra CA certificates (PEM) for registries with a private CA
  --log-level LEVEL           ${LOG_LEVELS.join(", ")} (default info)
  -h, --help                  this help

Exit status: 0 after a clean stop (SIGTERM, SIGINT); 2 for unusable flags or rules,
including an address the server cannot listen on (a port already in use, say).
`;

function port(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw usageError(`${flag} must be a port number, got ${JSON.stringify(value)}`, "serve");
  return n;
}

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90d`, `12h`, `30m`, `45s` to milliseconds. */
export function duration(value: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([smhd])$/.exec(value);
  if (!match)
    throw usageError(
      `${flag} must be a duration such as 90d, 12h, 30m or 45s, got ${JSON.stringify(value)}`,
      "serve",
    );
  return Number(match[1]) * (UNITS[match[2] as string] as number);
}

/**
 * The default folder for the self-signed CA: one per webhook port, so a second server on another
 * port does not overwrite the CA the first one's clients trust. The OS chooses a port for
 * `--port 0` only after the CA is written, so that folder is named after the process instead.
 */
export function selfSignedDir(webhookPort: number): string {
  return join(tmpdir(), "imageshift", webhookPort === 0 ? `pid-${process.pid}` : String(webhookPort));
}

/** `--tls-cipher-suites a,b` as OpenSSL's `a:b`, refused when OpenSSL knows none of them. */
function cipherList(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const list = value
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean)
    .join(":");
  try {
    createSecureContext({ ciphers: list });
  } catch (error) {
    throw usageError(`--tls-cipher-suites ${JSON.stringify(value)}: ${errorMessage(error)}`, "serve");
  }
  return list;
}

/** One line naming the flags that chose the address, e.g. `--bind-address 0.0.0.0 --port 8443`. */
function listenUsageError(error: ListenError): UsageError {
  const flags =
    error.server === "webhook"
      ? `--bind-address ${error.host} --port ${error.port}`
      : `--metrics-bind-address ${error.host} --metrics-port ${error.port}`;
  return new UsageError(`imageshift serve: ${flags}: ${error.reason}`);
}

/** The registry checks' settings (`--verify-*`, `--registry-*`, `--breaker-*`). */
export interface VerificationConfig {
  deadlineMs: number;
  requestTimeoutMs: number;
  positiveTtlMs: number;
  negativeTtlMs: number;
  staleMs: number;
  breakerFailures: number;
  breakerCoolDownMs: number;
  /** Cluster mode: credentials from Secrets in ImageShift's namespace. */
  secrets: boolean;
  /** A Docker config.json file. */
  configFile?: string;
  /** Extra CA certificates (PEM file). */
  caFile?: string;
}

/**
 * Endpoint changes reach the API server within a second or two even on a busy cluster; a
 * longer delay only slows every rollout and eats into the pod's termination grace period.
 */
const MAX_SHUTDOWN_DELAY_S = 60;

/** The API server waits at most 30 s for a webhook: a deadline must leave room to answer. */
export const MAX_VERIFY_DEADLINE_MS = 25_000;

/** The flags of registry checks, shared by `serve` and `rewrite --verify`. */
export const VERIFY_OPTIONS = {
  "verify-deadline": { type: "string", default: "2s" },
  "registry-timeout": { type: "string", default: "5s" },
  "verify-positive-ttl": { type: "string", default: "5m" },
  "verify-negative-ttl": { type: "string", default: "30s" },
  "verify-stale": { type: "string", default: "1h" },
  "breaker-failures": { type: "string", default: "5" },
  "breaker-cool-down": { type: "string", default: "30s" },
  "registry-credentials": { type: "boolean", default: false },
  "registry-config": { type: "string" },
  "registry-ca": { type: "string" },
} as const;

/** What `parseArgs` makes of `VERIFY_OPTIONS`. */
interface VerifyValues {
  "verify-deadline": string;
  "registry-timeout": string;
  "verify-positive-ttl": string;
  "verify-negative-ttl": string;
  "verify-stale": string;
  "breaker-failures": string;
  "breaker-cool-down": string;
  "registry-credentials": boolean;
  "registry-config"?: string;
  "registry-ca"?: string;
}

/** Checks the registry-check flags; `command` names the command in errors. */
export function verificationConfig(values: VerifyValues, command: string): VerificationConfig {
  const ms = (
    flag:
      | "verify-deadline"
      | "registry-timeout"
      | "verify-positive-ttl"
      | "verify-negative-ttl"
      | "verify-stale"
      | "breaker-cool-down",
  ) => {
    const value = values[flag];
    const result = duration(value, `--${flag}`);
    if (result <= 0) throw usageError(`--${flag} must be more than 0, got ${JSON.stringify(value)}`, command);
    return result;
  };
  const deadlineMs = ms("verify-deadline");
  if (deadlineMs > MAX_VERIFY_DEADLINE_MS)
    throw usageError(
      `--verify-deadline must be at most 25s (the API server gives a webhook 30 s), got ${JSON.stringify(values["verify-deadline"])}`,
      command,
    );
  const failures = Number(values["breaker-failures"]);
  if (!Number.isInteger(failures) || failures < 1 || failures > 1000)
    throw usageError(
      `--breaker-failures must be a whole number from 1 to 1000, got ${JSON.stringify(values["breaker-failures"])}`,
      command,
    );
  return {
    deadlineMs,
    requestTimeoutMs: ms("registry-timeout"),
    positiveTtlMs: ms("verify-positive-ttl"),
    negativeTtlMs: ms("verify-negative-ttl"),
    staleMs: ms("verify-stale"),
    breakerFailures: failures,
    breakerCoolDownMs: ms("breaker-cool-down"),
    secrets: values["registry-credentials"],
    ...(values["registry-config"] ? { configFile: values["registry-config"] } : {}),
    ...(values["registry-ca"] ? { caFile: values["registry-ca"] } : {}),
  };
}

/** Everything `serve` was told, checked: the one input of `buildApp`. */
export interface ServeConfig {
  level: LogLevel;
  /** Standalone mode's rule files; absent: cluster mode. */
  rules?: string;
  certFile?: string;
  keyFile?: string;
  selfSignedDir: string;
  ciphers?: string;
  host: string;
  webhookPort: number;
  metricsHost: string;
  metricsPort: number;
  graceMs: number;
  shutdownDelayMs: number;
  failClosed: boolean;
  namespaceLabel: string;
  mrwMetrics: boolean;
  watchCompat: boolean;
  namespace: string;
  selfManaged?: SelfManagedCertificates;
  /** Cluster mode: `--kubeconfig` and `--leader-election-id`. */
  kubeconfig?: string;
  leaseName?: string;
  verification: VerificationConfig;
}

/** Parses and checks the flags; pure but for `$POD_NAMESPACE`. Undefined for `--help`. */
export function parseServeConfig(argv: string[]): ServeConfig | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      rules: { type: "string" },
      port: { type: "string" },
      "bind-address": { type: "string", default: "0.0.0.0" },
      "metrics-port": { type: "string" },
      "metrics-bind-address": { type: "string", default: "0.0.0.0" },
      "tls-cert-file": { type: "string" },
      "tls-key-file": { type: "string" },
      "self-signed-dir": { type: "string" },
      "tls-cipher-suites": { type: "string" },
      "fail-closed": { type: "boolean", default: false },
      "namespace-label": { type: "string", default: DEFAULT_NAMESPACE_LABEL },
      "shutdown-delay": { type: "string", default: "0" },
      "shutdown-timeout": { type: "string", default: "25" },
      "log-level": { type: "string", default: "info" },
      "disable-compat-kind": { type: "boolean", default: false },
      "mrw-metrics": { type: "boolean", default: false },
      "leader-election-namespace": { type: "string" },
      "leader-election-id": { type: "string" },
      kubeconfig: { type: "string" },
      "tls-secret": { type: "string" },
      "webhook-configuration": { type: "string", default: "imageshift" },
      "service-name": { type: "string", default: "imageshift" },
      "certificate-names": { type: "string", default: "" },
      "ca-validity": { type: "string", default: "3650d" },
      "certificate-validity": { type: "string", default: "90d" },
      "renew-before": { type: "string", default: "30d" },
      ...VERIFY_OPTIONS,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return undefined;
  const level = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(level))
    throw usageError(
      `--log-level must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(level)}`,
      "serve",
    );
  const certFile = values["tls-cert-file"];
  const keyFile = values["tls-key-file"];
  if ((certFile === undefined) !== (keyFile === undefined))
    throw usageError("--tls-cert-file and --tls-key-file go together", "serve");
  const grace = Number(values["shutdown-timeout"]);
  if (!(grace >= 0))
    throw usageError(
      `--shutdown-timeout must be a number of seconds, got ${JSON.stringify(values["shutdown-timeout"])}`,
      "serve",
    );
  const delay = Number(values["shutdown-delay"]);
  if (!(delay >= 0 && delay <= MAX_SHUTDOWN_DELAY_S))
    throw usageError(
      `--shutdown-delay must be 0 to ${MAX_SHUTDOWN_DELAY_S} seconds, got ${JSON.stringify(values["shutdown-delay"])}`,
      "serve",
    );
  const ciphers = cipherList(values["tls-cipher-suites"]);
  const webhookPort = port(values.port, "--port", 8443);
  const metricsPort = port(values["metrics-port"], "--metrics-port", 8080);
  if (values["namespace-label"] === "")
    throw usageError("--namespace-label must be a label key, such as imageshift.dev", "serve");
  if (values.rules && (values.kubeconfig !== undefined || values["leader-election-id"] !== undefined))
    throw usageError("--kubeconfig and --leader-election-id are for cluster mode, without --rules", "serve");
  if (values["tls-secret"] && (values.rules || certFile)) {
    throw usageError("--tls-secret is for cluster mode, without --rules and --tls-cert-file", "serve");
  }
  if (values.rules && values["registry-credentials"])
    throw usageError("--registry-credentials is for cluster mode (Secrets), without --rules", "serve");
  const verification = verificationConfig(values, "serve");
  const selfManaged = values["tls-secret"]
    ? {
        secretName: values["tls-secret"],
        webhookConfigurationName: values["webhook-configuration"],
        serviceName: values["service-name"],
        extraNames: values["certificate-names"].split(",").filter(Boolean),
        caValidityMs: duration(values["ca-validity"], "--ca-validity"),
        certificateValidityMs: duration(values["certificate-validity"], "--certificate-validity"),
        renewBeforeMs: duration(values["renew-before"], "--renew-before"),
      }
    : undefined;
  return {
    level,
    ...(values.rules === undefined ? {} : { rules: values.rules }),
    ...(certFile && keyFile ? { certFile, keyFile } : {}),
    selfSignedDir: values["self-signed-dir"] ?? selfSignedDir(webhookPort),
    ...(ciphers ? { ciphers } : {}),
    host: values["bind-address"],
    webhookPort,
    metricsHost: values["metrics-bind-address"],
    metricsPort,
    graceMs: grace * 1000,
    shutdownDelayMs: delay * 1000,
    failClosed: values["fail-closed"],
    namespaceLabel: values["namespace-label"],
    mrwMetrics: values["mrw-metrics"],
    watchCompat: !values["disable-compat-kind"],
    namespace: values["leader-election-namespace"] ?? process.env.POD_NAMESPACE ?? "default",
    ...(selfManaged ? { selfManaged } : {}),
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    ...(values["leader-election-id"] ? { leaseName: values["leader-election-id"] } : {}),
    verification,
  };
}

/** Builds a standalone or a cluster-mode webhook from the configuration; starts nothing. */
export async function buildApp(config: ServeConfig, logger: Logger): Promise<AppOptions> {
  // One registry for the app and, in cluster mode, the Kubernetes client and the leader gauge.
  const metrics = new Metrics();
  // Secrets named by rule objects (cluster mode) are known once cluster mode is built.
  let secrets: SecretsKeyring = NO_CREDENTIALS;
  const checks = await createChecks(config.verification, "serve", { metrics, secrets: () => secrets });
  // Loaded only in cluster mode: a standalone server needs none of the Kubernetes modules.
  const cluster =
    config.rules === undefined
      ? (await import("../operator/cluster-mode.ts")).clusterMode({
          logger,
          watchCompat: config.watchCompat,
          namespace: config.namespace,
          metrics,
          ...(config.selfManaged ? { selfManaged: config.selfManaged } : {}),
          ...(config.kubeconfig !== undefined ? { kubeconfig: config.kubeconfig } : {}),
          ...(config.leaseName ? { leaseName: config.leaseName } : {}),
          registryCredentials: config.verification.secrets,
          registryHealth: checks.checker,
        })
      : undefined;
  if (cluster) secrets = cluster.keyring;
  const certificates =
    cluster?.certificateSource ??
    (config.certFile && config.keyFile
      ? new FileCertificateSource({ certFile: config.certFile, keyFile: config.keyFile, logger })
      : new SelfSignedCertificateSource({ folder: config.selfSignedDir, logger }));
  return {
    rules: cluster?.rules ?? new FileRuleSource({ path: config.rules as string, logger }),
    certificates,
    logger,
    metrics,
    ...(cluster ? { namespaceLabels: cluster.namespaceLabels, outer: cluster.outer } : {}),
    runnables: [...(cluster?.runnables ?? []), checks.runnable],
    verification: checks.verification,
    failClosed: config.failClosed,
    shutdownDelayMs: config.shutdownDelayMs,
    namespaceLabel: config.namespaceLabel,
    mrwMetrics: config.mrwMetrics,
    ...(config.ciphers ? { ciphers: config.ciphers } : {}),
    host: config.host,
    port: config.webhookPort,
    metricsHost: config.metricsHost,
    metricsPort: config.metricsPort,
  };
}

/** `imageshift serve`: parse the configuration, build the webhook, run it until a signal. */
export async function serveCommand(argv: string[], io: CommandIO): Promise<number> {
  const config = parseServeConfig(argv);
  if (!config) {
    io.stdout(SERVE_HELP);
    return EXIT_OK;
  }
  const logger = createLogger(config.level);
  let app: RunningApp;
  try {
    app = await startApp(await buildApp(config, logger));
  } catch (error) {
    // The manager has stopped whatever had started (leader election included), in reverse.
    throw error instanceof ListenError ? listenUsageError(error) : error;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "signal received");
      // Not ready at once; then, in reverse start order: requests in flight finish, the Lease
      // is given up (bounded, see k8s/leader.ts), and the Kubernetes client closes last.
      void app.stop(config.graceMs).then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return EXIT_OK;
}
