/**
 * `imageshift serve`: the admission webhook. Parses flags, picks the rule and certificate
 * sources, starts the app, and stops it gracefully on SIGTERM or SIGINT.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { FileRuleSource } from "../rules/file-source.ts";
import { startApp } from "../server/app.ts";
import { FileCertificateSource, SelfSignedCertificateSource } from "../server/certificates.ts";
import { createLogger, LOG_LEVELS, type LogLevel } from "../telemetry/logger.ts";
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
                              cluster mode: ImageShift's namespace, where its Lease and
                              certificate Secret live (default: $POD_NAMESPACE, else default)
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
      "tls-secret": { type: "string" },
      "webhook-configuration": { type: "string", default: "imageshift" },
      "service-name": { type: "string", default: "imageshift" },
      "certificate-names": { type: "string", default: "" },
      "ca-validity": { type: "string", default: "3650d" },
      "certificate-validity": { type: "string", default: "90d" },
      "renew-before": { type: "string", default: "30d" },
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
  if (values["tls-secret"] && (values.rules || certFile)) {
    throw usageError("--tls-secret is for cluster mode, without --rules and --tls-cert-file", "serve");
  }
  const namespace = values["leader-election-namespace"] ?? process.env.POD_NAMESPACE ?? "default";
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
  const mode = values.rules
    ? {
        rules: new FileRuleSource({ path: values.rules, logger }),
        certificateSource: undefined,
        stop: async () => {},
        close: () => {},
      }
    : // Loaded only in cluster mode: a standalone server needs none of the Kubernetes modules.
      (await import("../kube/cluster-mode.ts")).clusterMode({
        logger,
        watchCompat: !values["disable-compat-kind"],
        namespace,
        ...(selfManaged ? { selfManaged } : {}),
      });
  const certificates =
    mode.certificateSource ??
    (certFile && keyFile
      ? new FileCertificateSource({ certFile, keyFile, logger })
      : new SelfSignedCertificateSource({ folder: values["self-signed-dir"], logger }));
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
      // Not ready at once (app.stop's first step), while the Lease is given up (bounded, see
      // kube/leader.ts) and requests in flight finish; then nothing left waits on the API server.
      void Promise.all([mode.stop(), app.stop(grace * 1000)])
        .then(() => mode.close())
        .then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return EXIT_OK;
}
