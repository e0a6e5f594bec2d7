/** Test helper: a one-day CA and a serving certificate for localhost and 127.0.0.1. */

import { createCertificateAuthority, createServingCertificate } from "./authority.ts";
import type { CertificatePair } from "./certificates.ts";

export async function localhostCertificate(
  commonName: string,
): Promise<{ caPem: string; pair: CertificatePair }> {
  const ca = await createCertificateAuthority({ commonName, validityDays: 1 });
  const leaf = await createServingCertificate(ca, {
    commonName: "localhost",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
  return { caPem: ca.certPem, pair: { cert: leaf.certPem, key: leaf.keyPem } };
}
