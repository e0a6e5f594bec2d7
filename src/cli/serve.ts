/**
 * `imageshift serve`: the admission webhook. Parses flags, picks the rule and certificate
 * sources, starts the app, and stops it gracefully on SIGTERM or SIGINT.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { ClusterRuleSource } from "../kube/cluster-source.ts";
import { startStatusReporting } from "../kube/operator.ts";
import { FileRuleSource } from "../rules/file-source.ts";
import { startApp } from "../server/app.ts";
import { FileCertificateSource, SelfSignedCertificateSource } from "../server/certificates.ts";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../telemetry/logger.ts";
import { type CommandIO, EXIT_OK } from "./io.ts";
import { usageError } from "./usage.ts";

export const SERVE_HELP = `Usage: imageshift serve [--rules PATH] [options]

Serves the mutating (/mutate) and validating (/validate) admission webhooks over HTTPS,
and /healthz, /readyz and /metrics over plain HTTP on a separate port.

Options:
  --rules PATH                rule file or folder, watched and hot-reloaded (standalone mode);
                              without it, rules come from the cluster (cluster mode)
  --port N                    webhook HTTPS port (default 8443)
  --bind-address ADDR         webhook address (default 0.0.0.0)
  --metrics-port N            health and metrics HTTP port (default 8080)
  --metrics-bind-address ADDR health and metrics address (default 0.0.0.0)
  --tls-cert-file FILE        serving certificate (PEM); reloaded when it changes
  --tls-key-file FILE         its private key (PEM)
  --self-signed-dir DIR       without certificate files: where to write the generated CA
                              (default $TMPDIR/imageshift)
  --fail-closed               deny pods on internal errors (default: admit them unchanged)
  --shutdown-timeout SECONDS  how long requests in flight may take on SIGTERM (default 25)
  --disable-compat-kind       cluster mode: do not watch RegistryRewriteRule objects
  --leader-election-namespace NS
                              cluster mode: namespace of the status writer's Lease
                              (default: $POD_NAMESPACE, else default)
  --log-level LEVEL           ${LOG_LEVELS.join(", ")} (default info)
  -h, --help                  this help
`;

function port(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw usageError(`${flag} must be a port number, got ${JSON.stringify(value)}`, "serve");
  return n;
}

/** Rules, namespace labels and status from the cluster: in-cluster config, $KUBECONFIG or ~/.kube/config. */
function clusterMode(logger: Logger, watchCompat: boolean, leaseNamespace: string | undefined) {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  const source = new ClusterRuleSource({ kubeConfig, logger, watchCompat });
  const reporting = startStatusReporting({
    kubeConfig,
    source,
    logger,
    namespace: leaseNamespace ?? process.env.POD_NAMESPACE ?? "default",
  });
  logger.info(
    { server: kubeConfig.getCurrentCluster()?.server, watchCompat },
    "cluster mode: rules come from the API server",
  );
  return {
    rules: source,
    namespaceLabels: (namespace: string) => source.namespaceLabels(namespace),
    stop: () => reporting.stop(),
  };
}

export async function serveCommand(argv: string[], io: CommandIO): Promise<number> {
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
      "self-signed-dir": { type: "string", default: join(tmpdir(), "imageshift") },
      "fail-closed": { type: "boolean", default: false },
      "shutdown-timeout": { type: "string", default: "25" },
      "log-level": { type: "string", default: "info" },
      "disable-compat-kind": { type: "boolean", default: false },
      "leader-election-namespace": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.stdout(SERVE_HELP);
    return EXIT_OK;
  }
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

  const logger = createLogger(level);
  const certificates =
    certFile && keyFile
      ? new FileCertificateSource({ certFile, keyFile, logger })
      : new SelfSignedCertificateSource({ folder: values["self-signed-dir"], logger });
  const mode = values.rules
    ? { rules: new FileRuleSource({ path: values.rules, logger }), stop: async () => {} }
    : clusterMode(logger, !values["disable-compat-kind"], values["leader-election-namespace"]);
  const app = await startApp({
    rules: mode.rules,
    certificates,
    logger,
    ...("namespaceLabels" in mode ? { namespaceLabels: mode.namespaceLabels } : {}),
    failClosed: values["fail-closed"],
    host: values["bind-address"],
    port: port(values.port, "--port", 8443),
    metricsHost: values["metrics-bind-address"],
    metricsPort: port(values["metrics-port"], "--metrics-port", 8080),
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "signal received");
      void mode
        .stop()
        .then(() => app.stop(grace * 1000))
        .then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return EXIT_OK;
}
