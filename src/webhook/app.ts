/**
 * Wires one running ImageShift webhook: a rule source, a certificate source, the HTTPS
 * webhook server and the probes server, as runnables of one manager (`manager/manager.ts`).
 * `imageshift serve` and the tests both start it here.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { handleMutate, type MutateDependencies } from "../admission/mutate.ts";
import { handleValidate } from "../admission/validate.ts";
import type { Verification } from "../admission/verify.ts";
import type { CertificatePair, CertificateSource } from "../certs/certificates.ts";
import type { Labels } from "../engine/rules/selector.ts";
import type { RuleSource } from "../engine/rules/source.ts";
import { Manager, type Runnable } from "../manager/manager.ts";
import type { Logger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { MrwMetrics } from "./mrw-metrics.ts";
import { ProbesServer } from "./probes-server.ts";
import { type AdmissionHandler, WebhookServer } from "./webhook-server.ts";

export interface AppOptions {
  rules: RuleSource;
  certificates: CertificateSource;
  logger: Logger;
  /** Namespace labels when known (cluster mode); standalone mode knows none. */
  namespaceLabels?: (namespace: string) => Labels | undefined;
  /** The namespace label key whose value `strict` marks a strict namespace (default `imageshift.dev`). */
  namespaceLabel?: string;
  failClosed?: boolean;
  host: string;
  port: number;
  metricsHost: string;
  metricsPort: number;
  metrics?: Metrics;
  /** Also the Mutating Registry Webhook's metric names (docs/migrating-from-mrw.md). */
  mrwMetrics?: boolean;
  /** The webhook's TLS cipher list (OpenSSL names, `:`-separated); default AEAD only. */
  ciphers?: string;
  /** Started first and stopped last (cluster mode: the Kubernetes client). */
  outer?: Runnable[];
  /**
   * Started after the rule source and before the certificates (cluster mode: leader election;
   * the registry checker), so stopped after the webhook has drained.
   */
  runnables?: Runnable[];
  /** Registry checks for rule objects that ask for them (docs/mirrors.md). */
  verification?: Verification;
  /**
   * On stop, how long the webhook keeps serving (not ready, each response closing its
   * connection) before it stops accepting: the time the API server takes to drop this pod
   * from the Service's endpoints (docs/webhook.md, "Shutdown"). Default 0.
   */
  shutdownDelayMs?: number;
}

export interface RunningApp {
  readonly webhookPort: number;
  readonly metricsPort: number;
  readonly metrics: Metrics;
  /** Graceful stop: not ready at once, requests in flight finish (up to `graceMs`), then exit. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts one webhook: probes first (the process is live while it waits for rules or, in
 * self-managed mode, for the leader to write the certificate Secret, and not ready until
 * both), then the rule source, the caller's runnables (cluster mode: leader election), the
 * certificate source and the HTTPS server. A failed start stops what was started, in reverse.
 */
export async function startApp(options: AppOptions): Promise<RunningApp> {
  const { rules, certificates, logger } = options;
  const metrics = options.metrics ?? new Metrics();
  const mrw = options.mrwMetrics ? new MrwMetrics(metrics) : undefined;
  const manager = new Manager(logger);
  const probes = new ProbesServer(metrics, { notReadyReason: () => manager.notReady() });
  let probesPort = 0;
  let webhookPort = 0;
  let graceMs = 25_000;
  let pair: CertificatePair | undefined;
  const reloaded = (size: number) => {
    metrics.rulesReloaded(size);
    mrw?.rulesLoaded(size);
  };
  const handlers = admissionHandlers(options, metrics, mrw);
  let server: WebhookServer | undefined;

  for (const runnable of options.outer ?? []) manager.add(runnable);
  manager
    .add({
      name: "probes",
      start: async () => {
        probesPort = (await probes.listen(options.metricsPort, options.metricsHost)).port;
      },
      stop: async () => {
        await probes.close();
        // Node's default metrics run monitors (event-loop delay, GC) that would outlive the app.
        metrics.stop();
      },
    })
    .add({
      name: "rules",
      start: async () => {
        rules.onChange((compiled) => reloaded(compiled.ruleSet.size));
        await rules.start();
        const loaded = rules.current();
        if (loaded) reloaded(loaded.ruleSet.size);
      },
      stop: () => rules.stop(),
      notReady: () => (rules.current() ? undefined : "no rule set loaded yet"),
    });
  for (const runnable of options.runnables ?? []) manager.add(runnable);
  manager
    .add({
      name: "certificates",
      start: async () => {
        await certificates.start();
        pair = certificates.current();
        certificates.onChange((next) => {
          pair = next;
          server?.setCertificate(next);
        });
      },
      stop: () => certificates.stop(),
      notReady: () => (pair ? undefined : "waiting for the serving certificate"),
    })
    .add({
      name: "webhook",
      start: async () => {
        server = new WebhookServer({
          tls: pair as CertificatePair,
          ...(options.ciphers ? { ciphers: options.ciphers } : {}),
          metrics,
          logger,
          handlers,
        });
        webhookPort = (await server.listen(options.port, options.host)).port;
      },
      stop: async () => {
        const delayMs = options.shutdownDelayMs ?? 0;
        if (server && delayMs > 0) {
          logger.info({ delayMs }, "shutting down: serving on while the API server drops this endpoint");
          server.drain();
          await sleep(delayMs);
        }
        logger.info({ graceMs }, "shutting down: finishing requests in flight");
        await server?.close(graceMs);
      },
    });

  // A port in use, unreadable rules, …: the manager stops what it started, and this rethrows.
  try {
    await manager.start();
  } catch (error) {
    metrics.stop(); // when the probes themselves did not start, nothing else stops it
    throw error;
  }
  logger.info(
    {
      webhook: `https://${options.host}:${webhookPort}`,
      metrics: `http://${options.metricsHost}:${probesPort}`,
    },
    "serving",
  );
  return {
    webhookPort,
    metricsPort: probesPort,
    metrics,
    async stop(grace = 25_000) {
      graceMs = grace;
      await manager.stop();
      logger.info("stopped");
    },
  };
}

/** The admission paths and their handlers: pure wiring, no HTTP. */
function admissionHandlers(
  options: AppOptions,
  metrics: Metrics,
  mrw: MrwMetrics | undefined,
): Record<string, AdmissionHandler> {
  const { rules, logger } = options;
  const mutateDeps: MutateDependencies = {
    rules: () => rules.current()?.ruleSet,
    namespaceLabels: options.namespaceLabels ?? (() => undefined),
    failClosed: options.failClosed ?? false,
    ...(options.namespaceLabel ? { namespaceLabel: options.namespaceLabel } : {}),
    ...(options.verification ? { verification: options.verification } : {}),
    metrics,
    logger,
  };
  const strictDeps: MutateDependencies = { ...mutateDeps, strict: true };
  const withMrw = (handler: AdmissionHandler) =>
    mrw ? mrw.wrap(handler, () => rules.current()?.ruleSet.size) : handler;
  return {
    "/mutate": withMrw((request) => handleMutate(request, mutateDeps)),
    // The strict webhook entry (namespaces labelled `<label>=strict`) calls this path: the
    // namespace is strict whatever the pod says, and without knowing namespace labels.
    "/mutate/strict": withMrw((request) => handleMutate(request, strictDeps)),
    "/validate": handleValidate,
  };
}
