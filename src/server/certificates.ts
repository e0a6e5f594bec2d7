/**
 * Where the serving certificate comes from: one narrow interface, two sources.
 *
 * - FileCertificateSource: PEM files (`--tls-cert-file`, `--tls-key-file`), reloaded when
 *   they change. cert-manager and Secret volumes replace them in place (an atomic symlink
 *   swap in the volume's folder), so the folder is watched, with a poll as a fallback for
 *   file systems that do not report events. A half-written or mismatched pair, or a
 *   certificate outside its validity period (expired, or not yet valid), is ignored until it
 *   becomes valid: the server keeps the last good certificate, and logs an expired one as an
 *   error naming the file and the expiry.
 * - SelfSignedCertificateSource: for running locally without certificates; a new CA and a
 *   serving certificate for localhost, 127.0.0.1 and ::1, with the CA written to a file so
 *   that `curl --cacert` works.
 */
import { X509Certificate } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createSecureContext } from "node:tls";
import { errorMessage } from "../errors.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";

export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
}

export interface CertificateSource {
  /** Loads the first certificate; rejects when there is no usable one. */
  start(): Promise<CertificatePair>;
  /** Called with each new valid certificate. */
  onChange(listener: (pair: CertificatePair) => void): void;
  stop(): void;
}

/** A certificate outside its validity period: every handshake with it would fail. */
class CertificateValidityError extends Error {
  readonly notBefore: string;
  readonly notAfter: string;
  constructor(message: string, certificate: X509Certificate) {
    super(message);
    this.notBefore = new Date(certificate.validFrom).toISOString();
    this.notAfter = new Date(certificate.validTo).toISOString();
  }
}

/**
 * Throws unless the pair is a usable TLS certificate and matching key, valid now: within its
 * notBefore and notAfter (the first certificate of the file, the one served). A key that is not
 * the certificate's is refused by createSecureContext ("key values mismatch").
 */
export function checkPair(pair: CertificatePair, now = Date.now()): void {
  // createSecureContext silently ignores an empty cert or key; a file caught half-written is one.
  if (!pair.cert.includes("-----BEGIN")) throw new Error("the certificate file holds no PEM certificate");
  if (!pair.key.includes("-----BEGIN")) throw new Error("the key file holds no PEM private key");
  createSecureContext({ cert: pair.cert, key: pair.key });
  const certificate = new X509Certificate(pair.cert);
  if (Date.parse(certificate.validTo) < now)
    throw new CertificateValidityError(
      `the certificate expired on ${new Date(certificate.validTo).toISOString()}`,
      certificate,
    );
  if (Date.parse(certificate.validFrom) > now)
    throw new CertificateValidityError(
      `the certificate is not valid before ${new Date(certificate.validFrom).toISOString()}`,
      certificate,
    );
}

export class FileCertificateSource implements CertificateSource {
  private readonly certFile: string;
  private readonly keyFile: string;
  private readonly logger: Logger;
  private readonly pollMs: number;
  private readonly listeners: ((pair: CertificatePair) => void)[] = [];
  private current: CertificatePair | undefined;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(options: { certFile: string; keyFile: string; logger: Logger; pollMs?: number }) {
    this.certFile = options.certFile;
    this.keyFile = options.keyFile;
    this.logger = componentLogger(options.logger, "certificates");
    this.pollMs = options.pollMs ?? 10_000;
  }

  async start(): Promise<CertificatePair> {
    const pair = await this.read();
    try {
      checkPair(pair);
    } catch (error) {
      throw new Error(
        `TLS certificate ${this.certFile} and key ${this.keyFile} are not usable: ${errorMessage(error)}`,
      );
    }
    this.current = pair;
    for (const folder of new Set([dirname(this.certFile), dirname(this.keyFile)])) {
      try {
        this.watchers.push(watch(folder, () => this.scheduleReload()));
      } catch (error) {
        this.logger.warn({ folder, err: error }, "cannot watch certificate folder; polling only");
      }
    }
    this.timer = setInterval(() => void this.reload(), this.pollMs);
    this.timer.unref();
    return pair;
  }

  onChange(listener: (pair: CertificatePair) => void): void {
    this.listeners.push(listener);
  }

  stop(): void {
    for (const watcher of this.watchers) watcher.close();
    this.watchers = [];
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  private async read(): Promise<CertificatePair> {
    const [cert, key] = await Promise.all([readFile(this.certFile, "utf8"), readFile(this.keyFile, "utf8")]);
    return { cert, key };
  }

  /** Events come in bursts while files are replaced; act once things settle. */
  private scheduleReload(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), 100);
  }

  /** Re-reads the files; exported for tests through `reload()` on the instance. */
  async reload(): Promise<boolean> {
    let pair: CertificatePair;
    try {
      pair = await this.read();
      if (pair.cert === this.current?.cert && pair.key === this.current?.key) return false;
      checkPair(pair);
    } catch (error) {
      if (error instanceof CertificateValidityError)
        // Loud: unless a valid certificate replaces it, the one served expires too.
        this.logger.error(
          {
            certFile: this.certFile,
            notBefore: error.notBefore,
            notAfter: error.notAfter,
            err: error,
          },
          `TLS certificate ${this.certFile} not loaded: ${error.message}; keeping the current one`,
        );
      else
        this.logger.warn(
          { certFile: this.certFile, err: error },
          "TLS certificate not reloaded; keeping the current one",
        );
      return false;
    }
    this.current = pair;
    this.logger.info({ certFile: this.certFile }, "TLS certificate reloaded");
    for (const listener of this.listeners) listener(pair);
    return true;
  }
}

export class SelfSignedCertificateSource implements CertificateSource {
  private readonly folder: string;
  private readonly logger: Logger;
  readonly caFile: string;

  constructor(options: { folder: string; logger: Logger }) {
    this.folder = options.folder;
    this.logger = componentLogger(options.logger, "certificates");
    this.caFile = join(this.folder, "ca.pem");
  }

  async start(): Promise<CertificatePair> {
    // Loaded only here: the X.509 library costs about 17 MB RSS that a server given its
    // certificate files never needs.
    const { createCertificateAuthority, createServingCertificate } = await import("../tls/certs.ts");
    const ca = await createCertificateAuthority({ commonName: "ImageShift local CA", validityDays: 365 });
    const leaf = await createServingCertificate(ca, {
      commonName: "localhost",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
      validityDays: 365,
    });
    await mkdir(this.folder, { recursive: true, mode: 0o700 });
    await writeFile(this.caFile, ca.certPem, { mode: 0o644 });
    this.logger.info(
      { caFile: this.caFile },
      `no --tls-cert-file given: serving a self-signed certificate for localhost; trust it with curl --cacert ${this.caFile}`,
    );
    return { cert: leaf.certPem, key: leaf.keyPem };
  }

  onChange(): void {}

  stop(): void {}
}
