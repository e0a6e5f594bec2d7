/**
 * Where the serving certificate comes from: the one source shape (`platform/source.ts`), and
 * two implementations here (a third, the Secret, in `secret-certificates.ts`).
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
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createSecureContext } from "node:tls";
import { errorMessage } from "../errors.ts";
import { Listeners } from "../platform/listeners.ts";
import { PathWatcher } from "../platform/path-watcher.ts";
import type { Source } from "../platform/source.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";

export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
}

/** `start` rejects when there is no usable certificate; `onChange` gets each new valid one. */
export type CertificateSource = Source<CertificatePair>;

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
  private readonly listeners = new Listeners<CertificatePair>();
  private pair: CertificatePair | undefined;
  private readonly watcher: PathWatcher;

  constructor(options: { certFile: string; keyFile: string; logger: Logger; pollMs?: number }) {
    this.certFile = options.certFile;
    this.keyFile = options.keyFile;
    this.logger = componentLogger(options.logger, "certificates");
    this.watcher = new PathWatcher({
      folders: [dirname(this.certFile), dirname(this.keyFile)],
      pollMs: options.pollMs ?? 10_000,
      onChange: () => void this.reload(),
      onWatchError: (folder, error) =>
        this.logger.warn({ folder, err: error }, "cannot watch certificate folder; polling only"),
    });
  }

  async start(): Promise<void> {
    const pair = await this.read();
    try {
      checkPair(pair);
    } catch (error) {
      throw new Error(
        `TLS certificate ${this.certFile} and key ${this.keyFile} are not usable: ${errorMessage(error)}`,
      );
    }
    this.pair = pair;
    this.watcher.start();
  }

  current(): CertificatePair | undefined {
    return this.pair;
  }

  onChange(listener: (pair: CertificatePair) => void): void {
    this.listeners.add(listener);
  }

  async stop(): Promise<void> {
    this.watcher.stop();
  }

  private async read(): Promise<CertificatePair> {
    const [cert, key] = await Promise.all([readFile(this.certFile, "utf8"), readFile(this.keyFile, "utf8")]);
    return { cert, key };
  }

  /** Re-reads the files; exported for tests through `reload()` on the instance. */
  async reload(): Promise<boolean> {
    let pair: CertificatePair;
    try {
      pair = await this.read();
      if (pair.cert === this.pair?.cert && pair.key === this.pair?.key) return false;
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
    this.pair = pair;
    this.logger.info({ certFile: this.certFile }, "TLS certificate reloaded");
    this.listeners.emit(pair);
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

  private pair: CertificatePair | undefined;

  async start(): Promise<void> {
    // Loaded only here: the X.509 library costs about 17 MB RSS that a server given its
    // certificate files never needs.
    const { createCertificateAuthority, createServingCertificate } = await import("./authority.ts");
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
    this.pair = { cert: leaf.certPem, key: leaf.keyPem };
  }

  current(): CertificatePair | undefined {
    return this.pair;
  }

  /** A self-signed certificate never changes while the process runs. */
  onChange(): void {}

  async stop(): Promise<void> {}
}
