/**
 * The serving certificate from a Secret (self-managed mode): every replica watches the one
 * Secret the leader keeps (`certificate-manager.ts`) and swaps a renewed certificate in
 * without restarting. Until the Secret holds a usable pair, `start()` waits (and the
 * replica is not ready).
 */
import { createSecureContext } from "node:tls";
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import { WatchedKind } from "../k8s/informer.ts";
import type { Secret } from "../k8s/objects.ts";
import { Listeners } from "../platform/listeners.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import { SECRET_KEYS } from "./certificate-manager.ts";
import type { CertificatePair, CertificateSource } from "./certificates.ts";

function pairOf(secret: Secret | undefined): CertificatePair | undefined {
  const cert = secret?.data?.[SECRET_KEYS.cert];
  const key = secret?.data?.[SECRET_KEYS.key];
  if (!cert || !key) return undefined;
  const pair = {
    cert: Buffer.from(cert, "base64").toString("utf8"),
    key: Buffer.from(key, "base64").toString("utf8"),
  };
  try {
    createSecureContext(pair);
    return pair;
  } catch {
    return undefined;
  }
}

export class SecretCertificateSource implements CertificateSource {
  private readonly watch: WatchedKind<Secret>;
  private readonly name: string;
  private readonly namespace: string;
  private readonly logger: Logger;
  private readonly listeners = new Listeners<CertificatePair>();
  private pair: CertificatePair | undefined;
  private waiting: (() => void) | undefined;

  constructor(options: { client: KubeClient; namespace: string; name: string; logger: Logger }) {
    this.name = options.name;
    this.namespace = options.namespace;
    this.logger = componentLogger(options.logger, "certificates");
    this.watch = new WatchedKind<Secret>({
      client: options.client,
      path: resourcePath({ version: "v1", plural: "secrets", namespace: options.namespace }),
      fieldSelector: `metadata.name=${options.name}`,
      logger: this.logger,
      onChange: () => this.changed(),
    });
  }

  /** Resolves once the Secret holds a usable pair (in self-managed mode, once the leader wrote it). */
  async start(): Promise<void> {
    void this.watch.start();
    await new Promise<void>((resolve) => {
      this.waiting = resolve;
      this.changed();
    });
  }

  current(): CertificatePair | undefined {
    return this.pair;
  }

  onChange(listener: (pair: CertificatePair) => void): void {
    this.listeners.add(listener);
  }

  async stop(): Promise<void> {
    await this.watch.stop();
  }

  private changed(): void {
    const pair = pairOf(this.watch.get(this.name, this.namespace));
    if (!pair || (pair.cert === this.pair?.cert && pair.key === this.pair?.key)) return;
    this.pair = pair;
    if (this.waiting) {
      this.logger.info(
        { secret: `${this.namespace}/${this.name}` },
        "serving certificate loaded from the Secret",
      );
      this.waiting();
      this.waiting = undefined;
      return;
    }
    this.logger.info({ secret: `${this.namespace}/${this.name}` }, "serving certificate renewed");
    this.listeners.emit(pair);
  }
}
