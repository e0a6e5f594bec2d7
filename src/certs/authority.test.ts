import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { type CertificateAndKey, createCertificateAuthority, createServingCertificate } from "./authority.ts";

const dayMs = 86_400_000;

/** GETs https://127.0.0.1:<port>/ trusting only `caPem`; resolves with the body, rejects on TLS errors. */
function get(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: "/", ca: caPem, agent: false, timeout: 5000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve(body));
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

async function withServer(leaf: CertificateAndKey, fn: (port: number) => Promise<void>): Promise<void> {
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await fn((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe("certs", () => {
  it("creates a self-signed P-256 certificate authority", async () => {
    const before = Date.now();
    const ca = await createCertificateAuthority({ commonName: "imageshift-test-ca", validityDays: 10 });
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, "CN=imageshift-test-ca");
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), "CA certificate is self-signed");
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.ok(cert.validFromDate.getTime() <= before, "valid from before it was made");
    assert.ok(Math.abs(cert.validToDate.getTime() - (before + 10 * dayMs)) < 60_000, "valid for 10 days");
    const key = createPrivateKey(ca.keyPem);
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.ok(cert.checkPrivateKey(key), "key matches the certificate");
  });

  it("creates a serving certificate signed by the CA with the requested SANs", async () => {
    const ca = await createCertificateAuthority({ commonName: "test-ca", validityDays: 30 });
    const before = Date.now();
    const leaf = await createServingCertificate(ca, {
      commonName: "webhook.imageshift.svc",
      dnsNames: ["webhook.imageshift.svc", "localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
      validityDays: 2,
    });
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(leaf.certPem);
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, "CN=webhook.imageshift.svc");
    assert.equal(cert.issuer, "CN=test-ca");
    assert.ok(cert.verify(caCert.publicKey), "leaf is signed by the CA");
    assert.ok(cert.checkIssued(caCert));
    const other = await createCertificateAuthority({ commonName: "test-ca", validityDays: 30 });
    assert.equal(
      cert.verify(new X509Certificate(other.certPem).publicKey),
      false,
      "not signed by another CA",
    );
    assert.equal(
      cert.subjectAltName,
      "DNS:webhook.imageshift.svc, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    assert.equal(cert.checkHost("localhost"), "localhost");
    assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(cert.checkHost("example.com"), undefined);
    assert.deepEqual(cert.keyUsage, ["1.3.6.1.5.5.7.3.1"], "extended key usage is serverAuth");
    assert.ok(cert.validFromDate.getTime() <= before);
    assert.ok(cert.validFromDate.getTime() > before - 5 * 60_000, "backdated by at most a few minutes");
    assert.ok(Math.abs(cert.validToDate.getTime() - (before + 2 * dayMs)) < 60_000, "valid for 2 days");
    assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.keyPem)), "key matches the certificate");
  });

  it("rejects a serving certificate without names and a non-positive validity", async () => {
    const ca = await createCertificateAuthority({ commonName: "test-ca", validityDays: 1 });
    await assert.rejects(createServingCertificate(ca, { commonName: "x", validityDays: 1 }), /at least one/);
    await assert.rejects(createCertificateAuthority({ commonName: "x", validityDays: 0 }), /validityDays/);
  });

  it("serves TLS on 127.0.0.1 that a client trusting only the CA accepts", { timeout: 20_000 }, async () => {
    const ca = await createCertificateAuthority({ commonName: "test-ca", validityDays: 1 });
    const leaf = await createServingCertificate(ca, {
      commonName: "localhost",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const otherCa = await createCertificateAuthority({ commonName: "other-ca", validityDays: 1 });
    await withServer(leaf, async (port) => {
      assert.equal(await get(port, ca.certPem), "ok");
      await assert.rejects(get(port, otherCa.certPem), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    });
  });
});
