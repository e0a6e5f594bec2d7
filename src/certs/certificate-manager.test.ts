/**
 * The pure parts of the self-managed certificates (certificate-manager.ts): why a certificate
 * needs renewing, how the caBundle is assembled, and the options the constructor refuses. No
 * network: the KubeConfig points at a port nothing listens on and is never used here.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, test } from "node:test";
import { KubeClient } from "../k8s/client.ts";
import { staticToken } from "../k8s/kubeconfig.ts";
import { silentLogger } from "../telemetry/logger.ts";
import { type CertificateAndKey, createCertificateAuthority, createServingCertificate } from "./authority.ts";
import {
  CertificateManager,
  caBundlePatch,
  pemBundle,
  planCertificates,
  renewalReason,
  SECRET_KEYS,
  storedCertificates,
} from "./certificate-manager.ts";

const DAY_MS = 86_400_000;

function client(): KubeClient {
  return new KubeClient({
    server: "https://127.0.0.1:1",
    credential: staticToken(undefined),
    origin: "unit",
  });
}

function manager(options: { caValidityMs?: number; certificateValidityMs?: number; renewBeforeMs?: number }) {
  return new CertificateManager({
    client: client(),
    namespace: "imageshift-system",
    secretName: "imageshift-tls",
    webhookConfigurationName: "imageshift",
    serviceName: "imageshift",
    logger: silentLogger,
    ...options,
  });
}

/** The PEM blocks of a bundle, each with its END line. */
function blocksOf(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

describe("renewalReason", () => {
  let ca: CertificateAndKey;
  let otherCa: CertificateAndKey;
  let leaf: CertificateAndKey;

  before(async () => {
    ca = await createCertificateAuthority({ commonName: "unit-ca", validityDays: 10 });
    otherCa = await createCertificateAuthority({ commonName: "other-ca", validityDays: 10 });
    leaf = await createServingCertificate(ca, {
      commonName: "imageshift.imageshift-system.svc",
      dnsNames: ["imageshift.imageshift-system.svc"],
      validityDays: 2,
    });
  });

  test("a missing certificate (undefined or empty)", () => {
    assert.equal(renewalReason(undefined, Date.now(), DAY_MS), "missing");
    assert.equal(renewalReason("", Date.now(), DAY_MS), "missing");
  });

  test("an unreadable certificate", () => {
    assert.equal(renewalReason("not a certificate", Date.now(), DAY_MS), "unreadable");
    const truncated = leaf.certPem.slice(0, leaf.certPem.length / 2);
    assert.equal(renewalReason(truncated, Date.now(), DAY_MS), "unreadable");
  });

  test("a certificate expiring within the margin names its expiry", () => {
    const validTo = new Date(new X509Certificate(leaf.certPem).validTo).toISOString();
    // Two days of validity, a margin of three: due now.
    assert.equal(renewalReason(leaf.certPem, Date.now(), 3 * DAY_MS), `expires ${validTo}`);
    // A margin of one day: due one day and a bit from now, not before.
    assert.equal(renewalReason(leaf.certPem, Date.now() + 1.1 * DAY_MS, DAY_MS), `expires ${validTo}`);
    assert.equal(renewalReason(leaf.certPem, Date.now() + 0.9 * DAY_MS, DAY_MS), undefined);
    // Exactly at the boundary (expiry minus the margin) it is due.
    const expiry = Date.parse(new X509Certificate(leaf.certPem).validTo);
    assert.equal(renewalReason(leaf.certPem, expiry - DAY_MS, DAY_MS), `expires ${validTo}`);
    assert.equal(renewalReason(leaf.certPem, expiry - DAY_MS - 1, DAY_MS), undefined);
    // An expired one too, with no margin at all.
    assert.equal(renewalReason(leaf.certPem, expiry + 1, 0), `expires ${validTo}`);
  });

  test("a certificate that is fine, with or without its issuer", () => {
    assert.equal(renewalReason(leaf.certPem, Date.now(), DAY_MS), undefined);
    assert.equal(renewalReason(leaf.certPem, Date.now(), DAY_MS, new X509Certificate(ca.certPem)), undefined);
    assert.equal(renewalReason(ca.certPem, Date.now(), DAY_MS, new X509Certificate(ca.certPem)), undefined);
  });

  test("a certificate not signed by the given issuer", () => {
    assert.equal(
      renewalReason(leaf.certPem, Date.now(), DAY_MS, new X509Certificate(otherCa.certPem)),
      "not signed by the current CA",
    );
    // Expiry is reported before the issuer.
    assert.match(
      renewalReason(leaf.certPem, Date.now(), 3 * DAY_MS, new X509Certificate(otherCa.certPem)) ?? "",
      /^expires /,
    );
  });
});

describe("pemBundle", () => {
  let first: string;
  let second: string;

  before(async () => {
    first = (await createCertificateAuthority({ commonName: "bundle-one", validityDays: 1 })).certPem;
    second = (await createCertificateAuthority({ commonName: "bundle-two", validityDays: 1 })).certPem;
  });

  test("blocks separated by a newline whether or not they end with one, each parseable", () => {
    const withNewline = `${first.trim()}\n`;
    const without = first.trim();
    const alsoWithout = second.trim();
    for (const blocks of [
      [withNewline, `${alsoWithout}\n`],
      [without, alsoWithout],
      [without, `${alsoWithout}\n\n`],
      [`\n${withNewline}\n`, alsoWithout],
    ]) {
      const bundle = pemBundle(blocks);
      assert.equal(bundle, `${first.trim()}\n${second.trim()}\n`, JSON.stringify(blocks));
      assert.doesNotMatch(bundle, /-----END CERTIFICATE----------BEGIN/, "no block glued to the next");
      const parsed = blocksOf(bundle).map((block) => new X509Certificate(block));
      assert.deepEqual(
        parsed.map((cert) => cert.subject),
        ["CN=bundle-one", "CN=bundle-two"],
      );
    }
  });

  test("one block, and none", () => {
    assert.equal(pemBundle([first]), `${first.trim()}\n`);
    assert.equal(new X509Certificate(pemBundle([first.trim()])).subject, "CN=bundle-one");
    assert.equal(pemBundle([]), "");
  });

  test("the naive concatenation it avoids would glue the blocks", () => {
    // Why pemBundle exists: the PEM text certs.ts (@peculiar/x509) makes has no trailing newline.
    assert.ok(first.endsWith("-----END CERTIFICATE-----"));
    assert.match(first + second, /-----END CERTIFICATE----------BEGIN/);
  });
});

describe("CertificateManager options", () => {
  test("the Secret's keys", () => {
    assert.deepEqual(SECRET_KEYS, {
      caCert: "ca.crt",
      caKey: "ca.key",
      previousCaCert: "ca-previous.crt",
      previousCaKey: "ca-previous.key",
      cert: "tls.crt",
      key: "tls.key",
    });
  });

  test("refuses a renewal margin not shorter than the certificate's validity", () => {
    const message = /the renewal margin must be shorter than the certificate's validity/;
    assert.throws(() => manager({ certificateValidityMs: 20_000, renewBeforeMs: 20_000 }), message);
    assert.throws(() => manager({ certificateValidityMs: 20_000, renewBeforeMs: 30_000 }), message);
    // Against the default validity (90 days) too.
    assert.throws(() => manager({ renewBeforeMs: 90 * DAY_MS }), message);
    assert.throws(() => manager({ certificateValidityMs: 30 * DAY_MS }), message, "default margin: 30 days");
    assert.doesNotThrow(() => manager({ certificateValidityMs: 20_000, renewBeforeMs: 19_999 }));
    assert.doesNotThrow(() => manager({}));
  });

  test("periodMs: a quarter of the margin, between 1 s and 60 s", () => {
    assert.equal(manager({}).periodMs, 60_000, "default margin of 30 days");
    assert.equal(manager({ certificateValidityMs: 20_000, renewBeforeMs: 10_000 }).periodMs, 2_500);
    assert.equal(manager({ certificateValidityMs: 20_000, renewBeforeMs: 2_000 }).periodMs, 1_000);
    assert.equal(manager({ certificateValidityMs: 600_000, renewBeforeMs: 200_000 }).periodMs, 50_000);
  });
});

describe("caBundlePatch", () => {
  test("each webhook lacking the bundle is patched by index, guarded by a test of its name", () => {
    const ops = caBundlePatch(
      {
        metadata: { name: "imageshift" },
        webhooks: [
          { name: "pods.imageshift.dev", clientConfig: { caBundle: "OLD" } },
          { name: "strict-pods.imageshift.dev", clientConfig: { caBundle: "NEW" } },
          { name: "rules.imageshift.dev", clientConfig: {} },
        ],
      },
      "NEW",
    );
    assert.deepEqual(ops, [
      { op: "test", path: "/webhooks/0/name", value: "pods.imageshift.dev" },
      { op: "add", path: "/webhooks/0/clientConfig/caBundle", value: "NEW" },
      { op: "test", path: "/webhooks/2/name", value: "rules.imageshift.dev" },
      { op: "add", path: "/webhooks/2/clientConfig/caBundle", value: "NEW" },
    ]);
    assert.deepEqual(caBundlePatch({ metadata: { name: "x" } }, "NEW"), []);
  });
});

describe("planCertificates (pure: what a pass will do)", () => {
  let ca: CertificateAndKey;
  let newCa: CertificateAndKey;
  let leaf: CertificateAndKey;
  let leafOfNew: CertificateAndKey;
  const timing = { caRenewBeforeMs: 3 * DAY_MS, renewBeforeMs: DAY_MS, propagationMs: 60_000 };

  before(async () => {
    ca = await createCertificateAuthority({ commonName: "plan-ca", validityDays: 10 });
    newCa = await createCertificateAuthority({ commonName: "plan-new-ca", validityDays: 10 });
    const serving = { commonName: "s.ns.svc", dnsNames: ["s.ns.svc"], validityDays: 5 };
    leaf = await createServingCertificate(ca, serving);
    leafOfNew = await createServingCertificate(newCa, serving);
  });

  test("an empty Secret: a new CA, and a certificate it signs", () => {
    const plan = planCertificates(storedCertificates(undefined), 1000, timing);
    assert.equal(plan.newCa, "missing");
    assert.equal(plan.newLeaf, "missing");
    assert.equal(plan.previous, undefined);
    assert.equal(plan.signWithPrevious, false);
    assert.equal(plan.caSince, 1000);
  });

  test("everything fine: nothing new, and what is kept is carried", () => {
    const plan = planCertificates({ ca, leaf, caSince: 0 }, Date.now(), timing);
    assert.deepEqual([plan.newCa, plan.newLeaf, plan.ca, plan.leaf], [undefined, undefined, ca, leaf]);
  });

  test("a CA in its last third: a new one, the old kept as previous and signing until it has propagated", () => {
    const late = Date.parse(new X509Certificate(ca.certPem).validTo) - 2 * DAY_MS;
    const plan = planCertificates({ ca, leaf, caSince: 0 }, late, timing);
    assert.match(plan.newCa ?? "", /^expires /);
    assert.equal(plan.previous, ca);
    assert.equal(plan.signWithPrevious, true);
    assert.equal(plan.caSince, late);
  });

  test("once the new CA has propagated, a certificate signed by the previous one is replaced", () => {
    const now = Date.now();
    const stored = { ca: newCa, previous: ca, leaf, caSince: now - 120_000 };
    const plan = planCertificates(stored, now, timing);
    assert.equal(plan.newCa, undefined);
    assert.equal(plan.signWithPrevious, false);
    assert.equal(plan.newLeaf, "not signed by the current CA");
    const settled = planCertificates({ ...stored, leaf: leafOfNew }, now, timing);
    assert.equal(settled.newLeaf, undefined);
  });

  test("an unusable stored pair is replaced, naming the problem", () => {
    const plan = planCertificates(
      { ca, leaf, caSince: 0, leafProblem: "key does not match" },
      Date.now(),
      timing,
    );
    assert.equal(plan.newLeaf, "key does not match");
  });
});
