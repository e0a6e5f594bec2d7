/**
 * Self-managed certificates (no cert-manager): the leader keeps a CA and a serving
 * certificate in one Secret, and the CA in both webhook configurations' `caBundle`.
 *
 * Renewal never breaks an admission:
 * - the serving certificate is renewed `renewBefore` ahead of its expiry, signed by the same
 *   CA the API server already trusts;
 * - the CA is replaced once a third of its life is left; the new CA is added to `caBundle`
 *   (next to the old one) first, and only then is a serving certificate signed by it
 *   written, so whichever certificate a replica is serving, the API server trusts it. The
 *   old CA leaves the bundle at the next CA rotation.
 *
 * Every replica reads the Secret (`SecretCertificateSource`) and swaps certificates in
 * without restarting. The `caBundle` is checked on every pass, so a `helm upgrade` that
 * re-applies the configurations with an empty bundle is repaired within one period.
 */
import { X509Certificate } from "node:crypto";
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from "@kubernetes/client-node";
import { kubeErrorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { CertificateAndKey } from "../tls/certs.ts";

const DAY_MS = 86_400_000;

export const SECRET_KEYS = {
  caCert: "ca.crt",
  caKey: "ca.key",
  previousCaCert: "ca-previous.crt",
  cert: "tls.crt",
  key: "tls.key",
} as const;

export interface CertificateManagerOptions {
  kubeConfig: KubeConfig;
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

function decode(secret: V1Secret | undefined, key: string): string | undefined {
  const value = secret?.data?.[key];
  return value ? Buffer.from(value, "base64").toString("utf8") : undefined;
}

export class CertificateManager {
  private readonly options: CertificateManagerOptions;
  private readonly core: CoreV1Api;
  private readonly admission: AdmissionregistrationV1Api;
  private readonly caValidityMs: number;
  private readonly certificateValidityMs: number;
  private readonly renewBeforeMs: number;

  constructor(options: CertificateManagerOptions) {
    this.options = options;
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.admission = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
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
    let caCert = decode(secret, SECRET_KEYS.caCert);
    let caKey = decode(secret, SECRET_KEYS.caKey);
    let previousCa = decode(secret, SECRET_KEYS.previousCaCert);
    let cert = decode(secret, SECRET_KEYS.cert);
    let key = decode(secret, SECRET_KEYS.key);
    let changed = false;
    const { createCertificateAuthority, createServingCertificate } = await import("../tls/certs.ts");

    const caReason = renewalReason(caCert, now, this.caValidityMs / 3);
    if (caReason || !caKey) {
      const ca: CertificateAndKey = await createCertificateAuthority({
        commonName: `imageshift-ca@${Math.floor(now / 1000)}`,
        validityDays: this.caValidityMs / DAY_MS,
      });
      this.options.logger.info(
        { secret: `${namespace}/${secretName}`, reason: caReason ?? "key missing" },
        "new webhook CA",
      );
      previousCa = caCert && !renewalReason(caCert, now, 0) ? caCert : undefined;
      caCert = ca.certPem;
      caKey = ca.keyPem;
      changed = true;
    }
    // The bundle first: the API server must trust the CA before anything it signed is served.
    const bundle = previousCa ? `${caCert}${previousCa}` : (caCert as string);
    await this.ensureCaBundle(bundle);

    const issuer = new X509Certificate(caCert as string);
    const certReason = renewalReason(cert, now, this.renewBeforeMs, issuer);
    if (certReason) {
      const { serviceName } = this.options;
      const dnsNames = [
        `${serviceName}.${namespace}.svc`,
        `${serviceName}.${namespace}.svc.cluster.local`,
        serviceName,
      ];
      const extra = this.options.extraNames ?? [];
      const leaf = await createServingCertificate(
        { certPem: caCert as string, keyPem: caKey as string },
        {
          commonName: `${serviceName}.${namespace}.svc`,
          dnsNames: [...dnsNames, ...extra.filter((name) => !/^[\d.:]+$/.test(name))],
          ipAddresses: extra.filter((name) => /^[\d.:]+$/.test(name)),
          validityDays: this.certificateValidityMs / DAY_MS,
        },
      );
      this.options.logger.info(
        { secret: `${namespace}/${secretName}`, reason: certReason },
        "new serving certificate",
      );
      cert = leaf.certPem;
      key = leaf.keyPem;
      changed = true;
    }
    if (changed) {
      await this.writeSecret(secret, {
        [SECRET_KEYS.caCert]: caCert as string,
        [SECRET_KEYS.caKey]: caKey as string,
        [SECRET_KEYS.cert]: cert as string,
        [SECRET_KEYS.key]: key as string,
        ...(previousCa ? { [SECRET_KEYS.previousCaCert]: previousCa } : {}),
      });
    }
  }

  private async readSecret(): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({
        name: this.options.secretName,
        namespace: this.options.namespace,
      });
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  private async writeSecret(existing: V1Secret | undefined, values: Record<string, string>): Promise<void> {
    const data = Object.fromEntries(
      Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
    );
    const { secretName: name, namespace } = this.options;
    if (existing) {
      // resourceVersion from the read: a concurrent writer makes this fail (409) instead of losing an update.
      await this.core.replaceNamespacedSecret({
        name,
        namespace,
        body: { ...existing, type: existing.type ?? "kubernetes.io/tls", data },
      });
    } else {
      await this.core.createNamespacedSecret({
        namespace,
        body: {
          metadata: { name, namespace, labels: { "app.kubernetes.io/name": "imageshift" } },
          type: "kubernetes.io/tls",
          data,
        },
      });
    }
  }

  /** Sets `caBundle` on every webhook of both configurations that does not have it yet. */
  private async ensureCaBundle(bundlePem: string): Promise<void> {
    const name = this.options.webhookConfigurationName;
    const caBundle = Buffer.from(bundlePem).toString("base64");
    const configurations = [
      {
        kind: "MutatingWebhookConfiguration",
        read: () => this.admission.readMutatingWebhookConfiguration({ name }),
        patch: (body: object[]) =>
          this.admission.patchMutatingWebhookConfiguration({ name, body }, jsonPatch),
      },
      {
        kind: "ValidatingWebhookConfiguration",
        read: () => this.admission.readValidatingWebhookConfiguration({ name }),
        patch: (body: object[]) =>
          this.admission.patchValidatingWebhookConfiguration({ name, body }, jsonPatch),
      },
    ];
    for (const configuration of configurations) {
      let current: { webhooks?: { clientConfig: { caBundle?: string } }[] };
      try {
        current = await configuration.read();
      } catch (error) {
        this.options.logger.warn(
          { configuration: `${configuration.kind}/${name}`, err: kubeErrorMessage(error) },
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
      await configuration.patch(ops);
      this.options.logger.info(
        { configuration: `${configuration.kind}/${name}`, webhooks: ops.length },
        "caBundle updated",
      );
    }
  }
}

const jsonPatch = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);
