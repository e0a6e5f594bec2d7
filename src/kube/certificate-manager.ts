/**
 * Self-managed certificates (no cert-manager): the leader keeps a CA and a serving
 * certificate in one Secret, and the CA in both webhook configurations' `caBundle`.
 *
 * Renewal never breaks an admission:
 * - the serving certificate is renewed `renewBefore` ahead of its expiry, signed by the same
 *   CA the API server already trusts;
 * - the CA is replaced once a third of its life is left; the new CA is added to `caBundle`
 *   (next to the old one) first, and certificates it signs are only served once the API
 *   server has had time to see that bundle (`propagationMs`; until then renewals are signed
 *   by the previous CA), so whichever certificate a replica serves, the API server trusts
 *   it. The old CA leaves the bundle at the next CA rotation.
 * - the Secret is written before the bundle, so a pass that loses its write to a conflict
 *   changes nothing the API server sees.
 *
 * Every replica reads the Secret (`SecretCertificateSource`) and swaps certificates in
 * without restarting. The `caBundle` is checked on every pass, so a `helm upgrade` that
 * re-applies the configurations with an empty bundle is repaired within one period.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isNotFound } from "../errors.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import type { CertificateAndKey } from "../tls/certs.ts";
import { type KubeClient, resourcePath } from "./client.ts";
import type { Secret, WebhookConfiguration } from "./objects.ts";

const DAY_MS = 86_400_000;

/** When the current CA entered the caBundle (ms since the epoch), on the Secret. */
const CA_SINCE_ANNOTATION = "imageshift.dev/ca-since";

export const SECRET_KEYS = {
  caCert: "ca.crt",
  caKey: "ca.key",
  previousCaCert: "ca-previous.crt",
  previousCaKey: "ca-previous.key",
  cert: "tls.crt",
  key: "tls.key",
} as const;

export interface CertificateManagerOptions {
  client: KubeClient;
  namespace: string;
  secretName: string;
  /** Name of both the Mutating- and the ValidatingWebhookConfiguration. */
  webhookConfigurationName: string;
  /** The Service in front of the webhook: the certificate names `<service>.<namespace>.svc`. */
  serviceName: string;
  /** Extra names, e.g. `localhost` and `127.0.0.1` for tests. */
  extraNames?: string[];
  caValidityMs?: number;
  certificateValidityMs?: number;
  renewBeforeMs?: number;
  logger: Logger;
}

/** Why a new certificate is needed, or undefined when the current one is fine. */
export function renewalReason(
  certPem: string | undefined,
  now: number,
  renewBeforeMs: number,
  issuer?: X509Certificate,
): string | undefined {
  if (!certPem) return "missing";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return "unreadable";
  }
  if (Date.parse(cert.validTo) - renewBeforeMs <= now)
    return `expires ${new Date(cert.validTo).toISOString()}`;
  if (issuer && !cert.verify(issuer.publicKey)) return "not signed by the current CA";
  return undefined;
}

function decode(secret: Secret | undefined, key: string): string | undefined {
  const value = secret?.data?.[key];
  return value ? Buffer.from(value, "base64").toString("utf8") : undefined;
}

/** PEM blocks, one per line group: a block glued to the next's header is unparseable. */
export function pemBundle(blocks: string[]): string {
  return blocks.map((block) => `${block.trim()}\n`).join("");
}

/** Why a stored certificate and key cannot be used as they are, or undefined when they can. */
export function pairProblem(pair: {
  certPem?: string | undefined;
  keyPem?: string | undefined;
}): string | undefined {
  if (!pair.certPem) return "missing";
  if (!pair.keyPem) return "key missing";
  try {
    return new X509Certificate(pair.certPem).checkPrivateKey(createPrivateKey(pair.keyPem))
      ? undefined
      : "key does not match";
  } catch {
    return "unreadable";
  }
}

/** A certificate and its key from the Secret, when both are there. */
function pairIn(secret: Secret | undefined, certKey: string, keyKey: string): CertificateAndKey | undefined {
  const certPem = decode(secret, certKey);
  const keyPem = decode(secret, keyKey);
  return certPem && keyPem ? { certPem, keyPem } : undefined;
}

export class CertificateManager {
  private readonly options: CertificateManagerOptions;
  private readonly client: KubeClient;
  private readonly caValidityMs: number;
  private readonly certificateValidityMs: number;
  private readonly renewBeforeMs: number;

  constructor(options: CertificateManagerOptions) {
    this.options = { ...options, logger: componentLogger(options.logger, "certificates") };
    this.client = options.client;
    this.caValidityMs = options.caValidityMs ?? 3650 * DAY_MS;
    this.certificateValidityMs = options.certificateValidityMs ?? 90 * DAY_MS;
    this.renewBeforeMs = options.renewBeforeMs ?? 30 * DAY_MS;
    if (this.renewBeforeMs >= this.certificateValidityMs) {
      throw new Error("the renewal margin must be shorter than the certificate's validity");
    }
  }

  /** How often the leader should call `reconcile`: often enough to renew in time. */
  get periodMs(): number {
    return Math.max(1_000, Math.min(this.renewBeforeMs / 4, 60_000));
  }

  /** One pass: CA, caBundle, serving certificate, in that order. Throws on API errors. */
  async reconcile(now = Date.now()): Promise<void> {
    const { namespace, secretName } = this.options;
    const secret = await this.readSecret();
    const stored = (certKey: string, keyKey: string) => ({
      certPem: decode(secret, certKey),
      keyPem: decode(secret, keyKey),
    });
    const storedCa = stored(SECRET_KEYS.caCert, SECRET_KEYS.caKey);
    const storedLeaf = stored(SECRET_KEYS.cert, SECRET_KEYS.key);
    let ca = pairIn(secret, SECRET_KEYS.caCert, SECRET_KEYS.caKey);
    let previous = pairIn(secret, SECRET_KEYS.previousCaCert, SECRET_KEYS.previousCaKey);
    let leaf = pairIn(secret, SECRET_KEYS.cert, SECRET_KEYS.key);
    let caSince = Number(secret?.metadata?.annotations?.[CA_SINCE_ANNOTATION] ?? 0);
    let changed = false;
    const { createCertificateAuthority, createServingCertificate } = await import("../tls/certs.ts");

    const caReason = pairProblem(storedCa) ?? renewalReason(storedCa.certPem, now, this.caValidityMs / 3);
    if (caReason || !ca) {
      this.options.logger.info({ secret: `${namespace}/${secretName}`, reason: caReason }, "new webhook CA");
      previous = ca && !pairProblem(storedCa) && !renewalReason(ca.certPem, now, 0) ? ca : undefined;
      ca = await createCertificateAuthority({
        commonName: `imageshift-ca@${Math.floor(now / 1000)}`,
        validityDays: this.caValidityMs / DAY_MS,
      });
      caSince = now;
      changed = true;
    }

    // Until the API server has had time to see a new CA in the bundle, serving certificates
    // are signed by the previous CA, which it already trusts.
    const signer = previous && now - caSince < this.propagationMs ? previous : ca;
    const certReason =
      pairProblem(storedLeaf) ??
      renewalReason(storedLeaf.certPem, now, this.renewBeforeMs, new X509Certificate(signer.certPem));
    if (certReason || !leaf) {
      const { serviceName } = this.options;
      const names = [
        `${serviceName}.${namespace}.svc`,
        `${serviceName}.${namespace}.svc.cluster.local`,
        serviceName,
        ...(this.options.extraNames ?? []),
      ];
      const isIp = (name: string) => /^[\d.:]+$/.test(name);
      leaf = await createServingCertificate(signer, {
        commonName: `${serviceName}.${namespace}.svc`,
        dnsNames: names.filter((name) => !isIp(name)),
        ipAddresses: names.filter(isIp),
        validityDays: this.certificateValidityMs / DAY_MS,
      });
      this.options.logger.info(
        {
          secret: `${namespace}/${secretName}`,
          reason: certReason,
          signedBy: signer === ca ? "current CA" : "previous CA",
        },
        "new serving certificate",
      );
      changed = true;
    }
    // The Secret first: a pass that loses the write (a conflict, another leader) throws here
    // and leaves the bundle alone. Then the bundle, which certificates signed by a new CA
    // wait for (`propagationMs`).
    if (changed) await this.writeSecret(secret, { ca, previous, leaf, caSince });
    await this.ensureCaBundle(pemBundle(previous ? [ca.certPem, previous.certPem] : [ca.certPem]));
  }

  /** How long a new CA sits in the caBundle before certificates it signed are served. */
  private get propagationMs(): number {
    return Math.min(60_000, this.renewBeforeMs / 2);
  }

  private async readSecret(): Promise<Secret | undefined> {
    try {
      return await this.client.get<Secret>(this.secretPath(this.options.secretName));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async writeSecret(
    existing: Secret | undefined,
    state: {
      ca: CertificateAndKey;
      previous: CertificateAndKey | undefined;
      leaf: CertificateAndKey;
      caSince: number;
    },
  ): Promise<void> {
    const values: Record<string, string> = {
      [SECRET_KEYS.caCert]: state.ca.certPem,
      [SECRET_KEYS.caKey]: state.ca.keyPem,
      [SECRET_KEYS.cert]: state.leaf.certPem,
      [SECRET_KEYS.key]: state.leaf.keyPem,
      ...(state.previous
        ? {
            [SECRET_KEYS.previousCaCert]: state.previous.certPem,
            [SECRET_KEYS.previousCaKey]: state.previous.keyPem,
          }
        : {}),
    };
    const data = Object.fromEntries(
      Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
    );
    const { secretName: name, namespace } = this.options;
    const metadata = {
      ...(existing?.metadata ?? { name, namespace, labels: { "app.kubernetes.io/name": "imageshift" } }),
      annotations: { ...existing?.metadata?.annotations, [CA_SINCE_ANNOTATION]: String(state.caSince) },
    };
    if (existing) {
      // resourceVersion from the read: a concurrent writer makes this fail (409) instead of losing an update.
      await this.client.replace<Secret>(this.secretPath(name), {
        ...existing,
        metadata,
        type: existing.type ?? "kubernetes.io/tls",
        data,
      });
    } else {
      await this.client.create<Secret>(this.secretPath(), {
        apiVersion: "v1",
        kind: "Secret",
        metadata,
        type: "kubernetes.io/tls",
        data,
      });
    }
  }

  private secretPath(name?: string): string {
    const { namespace } = this.options;
    return resourcePath({ version: "v1", plural: "secrets", namespace, ...(name ? { name } : {}) });
  }

  /** Sets `caBundle` on every webhook of both configurations that does not have it yet. */
  private async ensureCaBundle(bundlePem: string): Promise<void> {
    const name = this.options.webhookConfigurationName;
    const caBundle = Buffer.from(bundlePem).toString("base64");
    const configurations = [
      { kind: "MutatingWebhookConfiguration", plural: "mutatingwebhookconfigurations" },
      { kind: "ValidatingWebhookConfiguration", plural: "validatingwebhookconfigurations" },
    ];
    for (const configuration of configurations) {
      const path = resourcePath({
        group: "admissionregistration.k8s.io",
        version: "v1",
        plural: configuration.plural,
        name,
      });
      let current: WebhookConfiguration;
      try {
        current = await this.client.get<WebhookConfiguration>(path);
      } catch (error) {
        this.options.logger.warn(
          { configuration: `${configuration.kind}/${name}`, err: error },
          "webhook configuration not found; caBundle not set",
        );
        continue;
      }
      const ops = (current.webhooks ?? []).flatMap((webhook, i) =>
        webhook.clientConfig.caBundle === caBundle
          ? []
          : [{ op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle }],
      );
      if (ops.length === 0) continue;
      await this.client.patch(path, ops, "json");
      this.options.logger.info(
        { configuration: `${configuration.kind}/${name}`, webhooks: ops.length },
        "caBundle updated",
      );
    }
  }
}
