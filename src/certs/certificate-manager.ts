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
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import type { Secret, WebhookConfiguration } from "../k8s/objects.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import type { CertificateAndKey } from "./authority.ts";

const DAY_MS = 86_400_000;

/**
 * The JSON Patch that sets `caBundle` on every webhook of a configuration lacking it. Each
 * change is guarded by a `test` of the webhook's name at that index: if a `helm upgrade`
 * reordered or replaced the webhooks since the read, the API server refuses the whole patch
 * (and the next pass reads again), instead of writing the bundle into another webhook.
 */
export function caBundlePatch(current: WebhookConfiguration, caBundle: string): object[] {
  return (current.webhooks ?? []).flatMap((webhook, i) =>
    webhook.clientConfig.caBundle === caBundle
      ? []
      : [
          { op: "test", path: `/webhooks/${i}/name`, value: webhook.name },
          { op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle },
        ],
  );
}

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

/** What the Secret holds, decoded, with what is wrong with the stored pairs. */
export interface StoredCertificates {
  readonly ca?: CertificateAndKey;
  readonly previous?: CertificateAndKey;
  readonly leaf?: CertificateAndKey;
  /** When the current CA entered the bundle (ms since the epoch), 0 when unknown. */
  readonly caSince: number;
  readonly caProblem?: string;
  readonly leafProblem?: string;
}

export function storedCertificates(secret: Secret | undefined): StoredCertificates {
  const stored = (certKey: string, keyKey: string) => ({
    certPem: decode(secret, certKey),
    keyPem: decode(secret, keyKey),
  });
  const ca = pairIn(secret, SECRET_KEYS.caCert, SECRET_KEYS.caKey);
  const previous = pairIn(secret, SECRET_KEYS.previousCaCert, SECRET_KEYS.previousCaKey);
  const leaf = pairIn(secret, SECRET_KEYS.cert, SECRET_KEYS.key);
  const caProblem = pairProblem(stored(SECRET_KEYS.caCert, SECRET_KEYS.caKey));
  const leafProblem = pairProblem(stored(SECRET_KEYS.cert, SECRET_KEYS.key));
  return {
    ...(ca ? { ca } : {}),
    ...(previous ? { previous } : {}),
    ...(leaf ? { leaf } : {}),
    caSince: Number(secret?.metadata?.annotations?.[CA_SINCE_ANNOTATION] ?? 0),
    ...(caProblem ? { caProblem } : {}),
    ...(leafProblem ? { leafProblem } : {}),
  };
}

/** One pass's decisions; the keys of what to keep are carried so the apply step needs no re-read. */
export interface CertificatePlan {
  /** Why a new CA is made; undefined: keep `ca`. */
  readonly newCa?: string;
  readonly ca?: CertificateAndKey;
  /** The previous CA after this pass: kept in the bundle while certificates it signed are served. */
  readonly previous?: CertificateAndKey;
  readonly caSince: number;
  /** Sign with the previous CA: the API server may not have seen the new one yet. */
  readonly signWithPrevious: boolean;
  /** Why a new serving certificate is made; undefined: keep `leaf`. */
  readonly newLeaf?: string;
  readonly leaf?: CertificateAndKey;
}

export interface CertificateTiming {
  /** Renew the CA this long before it expires (a third of its life). */
  caRenewBeforeMs: number;
  renewBeforeMs: number;
  /** How long a new CA sits in the bundle before certificates it signed are served. */
  propagationMs: number;
}

/**
 * Decides a pass, without side effects: a new CA when the stored one is unusable or in the
 * last third of its life (the old one, while still valid, stays as the previous CA); a new
 * serving certificate when the stored one is unusable, due for renewal, or not signed by the
 * CA that should sign it now.
 */
export function planCertificates(
  stored: StoredCertificates,
  now: number,
  timing: CertificateTiming,
): CertificatePlan {
  const caReason =
    stored.caProblem ??
    renewalReason(stored.ca?.certPem, now, timing.caRenewBeforeMs) ??
    (stored.ca ? undefined : "missing");
  const newCa = caReason !== undefined;
  const previous = newCa
    ? stored.ca && !stored.caProblem && !renewalReason(stored.ca.certPem, now, 0)
      ? stored.ca
      : undefined
    : stored.previous;
  const caSince = newCa ? now : stored.caSince;
  const signWithPrevious = previous !== undefined && now - caSince < timing.propagationMs;
  // A brand-new CA with no previous one signs the certificate: the stored one cannot be its.
  const signer = signWithPrevious ? previous : newCa ? undefined : stored.ca;
  const leafReason =
    stored.leafProblem ??
    (signer
      ? renewalReason(stored.leaf?.certPem, now, timing.renewBeforeMs, new X509Certificate(signer.certPem))
      : "the CA is new");
  return {
    ...(caReason !== undefined ? { newCa: caReason } : {}),
    ...(!newCa && stored.ca ? { ca: stored.ca } : {}),
    ...(previous ? { previous } : {}),
    caSince,
    signWithPrevious,
    ...(leafReason !== undefined ? { newLeaf: leafReason } : {}),
    ...(leafReason === undefined && stored.leaf ? { leaf: stored.leaf } : {}),
  };
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

  /** One pass: read the Secret, plan (pure), then make and write what the plan says. Throws on API errors. */
  async reconcile(now = Date.now()): Promise<void> {
    const { namespace, secretName } = this.options;
    const secret = await this.readSecret();
    const plan = planCertificates(storedCertificates(secret), now, {
      caRenewBeforeMs: this.caValidityMs / 3,
      renewBeforeMs: this.renewBeforeMs,
      propagationMs: this.propagationMs,
    });
    const where = `${namespace}/${secretName}`;
    const { createCertificateAuthority, createServingCertificate } = await import("./authority.ts");
    let { ca, leaf } = plan;
    if (plan.newCa !== undefined || !ca) {
      this.options.logger.info({ secret: where, reason: plan.newCa }, "new webhook CA");
      ca = await createCertificateAuthority({
        commonName: `imageshift-ca@${Math.floor(now / 1000)}`,
        validityDays: this.caValidityMs / DAY_MS,
      });
    }
    const signer = plan.signWithPrevious && plan.previous ? plan.previous : ca;
    if (plan.newLeaf !== undefined || !leaf) {
      leaf = await createServingCertificate(signer, this.servingNames());
      this.options.logger.info(
        { secret: where, reason: plan.newLeaf, signedBy: signer === ca ? "current CA" : "previous CA" },
        "new serving certificate",
      );
    }
    // The Secret first: a pass that loses the write (a conflict, another leader) throws here
    // and leaves the bundle alone. Then the bundle, which certificates signed by a new CA
    // wait for (`propagationMs`).
    if (plan.newCa !== undefined || plan.newLeaf !== undefined)
      await this.writeSecret(secret, { ca, previous: plan.previous, leaf, caSince: plan.caSince });
    await this.ensureCaBundle(pemBundle(plan.previous ? [ca.certPem, plan.previous.certPem] : [ca.certPem]));
  }

  /** What the serving certificate is for: the Service's names, and any extra ones. */
  private servingNames() {
    const { serviceName, namespace } = this.options;
    const names = [
      `${serviceName}.${namespace}.svc`,
      `${serviceName}.${namespace}.svc.cluster.local`,
      serviceName,
      ...(this.options.extraNames ?? []),
    ];
    const isIp = (name: string) => /^[\d.:]+$/.test(name);
    return {
      commonName: `${serviceName}.${namespace}.svc`,
      dnsNames: names.filter((name) => !isIp(name)),
      ipAddresses: names.filter(isIp),
      validityDays: this.certificateValidityMs / DAY_MS,
    };
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
      const ops = caBundlePatch(current, caBundle);
      if (ops.length === 0) continue;
      await this.client.patch(path, ops, "json");
      this.options.logger.info(
        { configuration: `${configuration.kind}/${name}`, webhooks: ops.length / 2 },
        "caBundle updated",
      );
    }
  }
}
