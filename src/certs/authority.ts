/**
 * A small certificate toolkit: a private certificate authority and the TLS certificates it signs.
 *
 * Everything is ECDSA P-256 with SHA-256, made with WebCrypto (`globalThis.crypto`) and
 * `@peculiar/x509`, and returned as PEM strings: the certificate, and the private key as PKCS#8
 * ("-----BEGIN PRIVATE KEY-----"), which Node's `tls`, Go's `crypto/tls` and kubectl all accept.
 * Certificates are valid from one minute before they are made (to tolerate clock skew) until
 * `validityDays` days after.
 *
 * Used by the e2e control plane harness; kept generic so the webhook server can reuse it for its
 * self-signed mode.
 */
import type { webcrypto as wc } from "node:crypto";

// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralName,
  KeyUsageFlags,
  KeyUsagesExtension,
  PemConverter,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from "@peculiar/x509";

/** A PEM certificate and its PKCS#8 PEM private key. */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthorityOptions {
  commonName: string;
  validityDays: number;
}

export interface ServingCertificateOptions {
  commonName: string;
  /** DNS subject alternative names, e.g. "webhook.ns.svc", "localhost". */
  dnsNames?: string[];
  /** IPv4 or IPv6 subject alternative names, e.g. "127.0.0.1". */
  ipAddresses?: string[];
  validityDays: number;
}

const webcrypto = globalThis.crypto;
const keyAlgorithm: wc.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const signingAlgorithm: wc.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const clockSkewMs = 60_000;
const dayMs = 86_400_000;

/** Creates a self-signed CA certificate that may sign leaf certificates (path length 0). */
export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAndKey> {
  const keys = await generateKeyPair();
  const cert = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialNumber(),
      name: [{ CN: [options.commonName] }],
      ...validityWindow(options.validityDays),
      signingAlgorithm,
      keys,
      extensions: [
        new BasicConstraintsExtension(true, 0, true),
        new KeyUsagesExtension(
          KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature,
          true,
        ),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await privateKeyToPem(keys.privateKey) };
}

/** Creates a TLS server certificate for the given names, signed by `ca`. */
export async function createServingCertificate(
  ca: CertificateAndKey,
  options: ServingCertificateOptions,
): Promise<CertificateAndKey> {
  const names: JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value): JsonGeneralName => ({ type: "dns", value })),
    ...(options.ipAddresses ?? []).map((value): JsonGeneralName => ({ type: "ip", value })),
  ];
  if (names.length === 0) {
    throw new Error("createServingCertificate: at least one DNS name or IP address is required");
  }
  return createLeafCertificate(ca, options.commonName, options.validityDays, [
    new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth], false),
    new SubjectAlternativeNameExtension(names, false),
  ]);
}

async function createLeafCertificate(
  ca: CertificateAndKey,
  commonName: string,
  validityDays: number,
  extensions: Extension[],
): Promise<CertificateAndKey> {
  const caCert = new X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey(
    "pkcs8",
    PemConverter.decodeFirst(ca.keyPem),
    keyAlgorithm,
    false,
    ["sign"],
  );
  const keys = await generateKeyPair();
  const cert = await X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: [{ CN: [commonName] }],
      issuer: caCert.subjectName,
      ...validityWindow(validityDays),
      signingAlgorithm,
      publicKey: keys.publicKey,
      signingKey: caKey,
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        await AuthorityKeyIdentifierExtension.create(caCert, false, webcrypto),
        ...extensions,
      ],
    },
    webcrypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await privateKeyToPem(keys.privateKey) };
}

function generateKeyPair(): Promise<wc.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(keyAlgorithm, true, ["sign", "verify"]);
}

async function privateKeyToPem(key: wc.CryptoKey): Promise<string> {
  return PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

function validityWindow(validityDays: number): { notBefore: Date; notAfter: Date } {
  if (!(validityDays > 0)) {
    throw new Error(`validityDays must be a positive number, got ${validityDays}`);
  }
  const now = Date.now();
  return { notBefore: new Date(now - clockSkewMs), notAfter: new Date(now + validityDays * dayMs) };
}

/** 16 random bytes; the first is non-zero with its top bit clear, so the DER INTEGER is positive and minimal. */
function randomSerialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}
