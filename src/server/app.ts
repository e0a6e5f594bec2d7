/**
 * Wires one running ImageShift webhook: a rule source, a certificate source, the HTTPS
 * webhook server and the probes server. `imageshift serve` and the tests both start it here.
 */
import { handleMutate, type MutateDependencies } from "../admission/mutate.ts";
import { handleValidate } from "../admission/validate.ts";
import type { Labels } from "../rules/selector.ts";
import type { RuleSource } from "../rules/source.ts";
import type { Logger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { MrwMetrics } from "../telemetry/mrw-metrics.ts";
import type { CertificateSource } from "./certificates.ts";
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
}

export interface RunningApp {
  readonly webhookPort: number;
  readonly metricsPort: number;
  readonly metrics: Metrics;
  /** Graceful stop: not ready at once, requests in flight finish (up to `graceMs`), then exit. */
  stop(graceMs?: number): Promise<void>;
}

export async function startApp(options: AppOptions): Promise<RunningApp> {
  const { rules, certificates, logger } = options;
  const metrics = options.metrics ?? new Metrics();
  const mrw = options.mrwMetrics ? new MrwMetrics(metrics) : undefined;
  let stopping = false;
  let webhook: WebhookServer | undefined;

  // Probes first: the process is live while it waits for rules or a certificate (in
  // self-managed mode, until the leader has written the Secret), and not ready until both.
  const probes = new ProbesServer(metrics, {
    notReadyReason: () => {
      if (stopping) return "shutting down";
      if (!rules.current()) return "no rule set loaded yet";
      return webhook ? undefined : "waiting for the serving certificate";
    },
  });
  const probesAddress = await probes.listen(options.metricsPort, options.metricsHost);
  let webhookAddress: Awaited<ReturnType<WebhookServer["listen"]>>;
  try {
    const reloaded = (size: number) => {
      metrics.rulesReloaded(size);
      mrw?.rulesLoaded(size);
    };
    rules.onChange((compiled) => reloaded(compiled.ruleSet.size));
    await rules.start();
    const loaded = rules.current();
    if (loaded) reloaded(loaded.ruleSet.size);

    const pair = await certificates.start();
    const mutateDeps: MutateDependencies = {
      rules: () => rules.current()?.ruleSet,
      namespaceLabels: options.namespaceLabels ?? (() => undefined),
      failClosed: options.failClosed ?? false,
      ...(options.namespaceLabel ? { namespaceLabel: options.namespaceLabel } : {}),
      metrics,
      logger,
    };
    const strictDeps: MutateDependencies = { ...mutateDeps, strict: true };
    const mutate: AdmissionHandler = (request) => handleMutate(request, mutateDeps);
    const mutateStrict: AdmissionHandler = (request) => handleMutate(request, strictDeps);
    const withMrw = (handler: AdmissionHandler) =>
      mrw ? mrw.wrap(handler, () => rules.current()?.ruleSet.size) : handler;
    const server = new WebhookServer({
      tls: pair,
      ...(options.ciphers ? { ciphers: options.ciphers } : {}),
      metrics,
      logger,
      handlers: {
        "/mutate": withMrw(mutate),
        // The strict webhook entry (namespaces labelled `<label>=strict`) calls this path: the
        // namespace is strict whatever the pod says, and without knowing namespace labels.
        "/mutate/strict": withMrw(mutateStrict),
        "/validate": handleValidate,
      },
    });
    certificates.onChange((next) => server.setCertificate(next));
    webhookAddress = await server.listen(options.port, options.host);
    webhook = server;
  } catch (error) {
    // A port in use, unreadable rules, …: release what was started so the process can exit.
    certificates.stop();
    await rules.stop();
    await probes.close();
    metrics.stop();
    throw error;
  }
  logger.info(
    {
      webhook: `https://${options.host}:${webhookAddress.port}`,
      metrics: `http://${options.metricsHost}:${probesAddress.port}`,
    },
    "serving",
  );

  return {
    webhookPort: webhookAddress.port,
    metricsPort: probesAddress.port,
    metrics,
    async stop(graceMs = 25_000) {
      if (stopping) return;
      stopping = true;
      logger.info({ graceMs }, "shutting down: finishing requests in flight");
      await webhook?.close(graceMs);
      certificates.stop();
      await rules.stop();
      await probes.close();
      metrics.stop();
      logger.info("stopped");
    },
  };
}
