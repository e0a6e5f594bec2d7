/**
 * Self-managed certificates in-process against a real control plane (etcd + kube-apiserver on
 * 127.0.0.1, see harness/controlplane.ts): `CertificateManager` (the leader's Secret and
 * caBundles, renewals, CA rotation, conflicting writers), `SecretCertificateSource` (every
 * replica's view of the Secret), the leader reconciling on its own through
 * `startStatusReporting`, and `clusterMode`'s wiring. install.e2e.test.ts covers the same
 * feature through a child process; this file runs the modules in the test process, so that
 * their coverage is measured.
 *
 * Time: `reconcile(now)` takes the time it judges by, but certs.ts dates every certificate
 * from the wall clock. The times given here are therefore counted from the first serving
 * certificate's own start (its notAfter less its validity), and a step that needs a
 * certificate made at least so many seconds after another waits for the wall clock.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, createSecureContext, createServer } from "node:tls";
import {
  type CertificateAndKey,
  createCertificateAuthority,
  createServingCertificate,
} from "../../src/certs/authority.ts";
import { CertificateManager, pemBundle, SECRET_KEYS } from "../../src/certs/certificate-manager.ts";
import type { CertificatePair } from "../../src/certs/certificates.ts";
import { SecretCertificateSource } from "../../src/certs/secret-certificates.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { fromKubeconfigFiles, staticToken } from "../../src/k8s/kubeconfig.ts";
import type { Secret, WebhookConfiguration } from "../../src/k8s/objects.ts";
import { clusterMode } from "../../src/operator/cluster-mode.ts";
import { ClusterRuleSource } from "../../src/operator/cluster-source.ts";
import { startStatusReporting } from "../../src/operator/operator.ts";
import type { Logger } from "../../src/telemetry/logger.ts";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import { captureLogger, type Kubectl, kubectlFor, waitFor } from "./harness/operator.ts";

const kubectlBin = process.env.KUBECTL ?? "kubectl";
const CRDS = path.join(import.meta.dirname, "..", "..", "charts", "imageshift", "crds", "crds.yaml");
const NAMESPACE = "imageshift-certs";
const SERVICE = "imageshift";
const SERVICE_NAME = `${SERVICE}.${NAMESPACE}.svc`;
/** Short lifetimes: the CA is replaced after 40 s, the serving certificate renewed after 10 s. */
const LIFETIMES = { caValidityMs: 60_000, certificateValidityMs: 20_000, renewBeforeMs: 10_000 };
const CA_SINCE = "imageshift.dev/ca-since";
const FAST = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };

/** A MutatingWebhookConfiguration (2 webhooks) and a ValidatingWebhookConfiguration (1) that never match. */
function webhookConfigurations(name: string): object {
  const webhook = (webhookName: string) => ({
    name: webhookName,
    clientConfig: { url: "https://127.0.0.1:1/never" },
    failurePolicy: "Ignore",
    sideEffects: "None",
    admissionReviewVersions: ["v1"],
    timeoutSeconds: 1,
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "nobody-uses-this" } },
    rules: [
      {
        apiGroups: [""],
        apiVersions: ["v1"],
        operations: ["CREATE"],
        resources: ["configmaps"],
        scope: "Namespaced",
      },
    ],
  });
  const apiVersion = "admissionregistration.k8s.io/v1";
  return {
    apiVersion: "v1",
    kind: "List",
    items: [
      {
        apiVersion,
        kind: "MutatingWebhookConfiguration",
        metadata: { name },
        webhooks: [webhook("one.imageshift.dev"), webhook("two.imageshift.dev")],
      },
      {
        apiVersion,
        kind: "ValidatingWebhookConfiguration",
        metadata: { name },
        webhooks: [webhook("check.imageshift.dev")],
      },
    ],
  };
}

/** The PEM text of one key of a Secret (fails when it is not there). */
function pemOf(secret: Secret, key: string): string {
  const value = secret.data?.[key];
  assert.ok(value, `${key} in Secret ${secret.metadata?.name}: ${Object.keys(secret.data ?? {})}`);
  return Buffer.from(value, "base64").toString("utf8");
}

/** The certificates of a PEM bundle, each block parsed on its own. */
function certificatesIn(bundle: string): X509Certificate[] {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}

/**
 * A Secret with a usable pair: tls.key matches tls.crt, ca.key matches ca.crt, the serving
 * certificate is signed by the CA or (right after a CA rotation) by the previous one.
 */
function assertValidSecret(secret: Secret): { ca: X509Certificate; leaf: X509Certificate } {
  const ca = new X509Certificate(pemOf(secret, SECRET_KEYS.caCert));
  const leaf = new X509Certificate(pemOf(secret, SECRET_KEYS.cert));
  assert.ok(ca.checkPrivateKey(createPrivateKey(pemOf(secret, SECRET_KEYS.caKey))), "ca.key matches ca.crt");
  assert.ok(
    leaf.checkPrivateKey(createPrivateKey(pemOf(secret, SECRET_KEYS.key))),
    "tls.key matches tls.crt",
  );
  assert.doesNotThrow(() =>
    createSecureContext({ cert: pemOf(secret, SECRET_KEYS.cert), key: pemOf(secret, SECRET_KEYS.key) }),
  );
  const previousPem = secret.data?.[SECRET_KEYS.previousCaCert];
  const previous = previousPem ? new X509Certificate(Buffer.from(previousPem, "base64")) : undefined;
  assert.ok(
    leaf.verify(ca.publicKey) || (previous !== undefined && leaf.verify(previous.publicKey)),
    "tls.crt is signed by ca.crt (or ca-previous.crt)",
  );
  return { ca, leaf };
}

/**
 * A TLS handshake with `pair` served on 127.0.0.1 and a client trusting `caPem` (one or more
 * PEM blocks, as the API server reads a caBundle): whether the client accepted the chain.
 */
async function handshake(pair: { cert: string; key: string }, caPem: string): Promise<string | true> {
  const server = createServer({ cert: pair.cert, key: pair.key }, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as { port: number };
    return await new Promise<string | true>((resolve, reject) => {
      const socket = connect(
        { host: "127.0.0.1", port, ca: caPem, servername: SERVICE_NAME, rejectUnauthorized: false },
        () => {
          const error = socket.authorizationError as (Error & { code?: string }) | undefined;
          const result = socket.authorized ? true : (error?.code ?? String(error));
          socket.end();
          resolve(result);
        },
      );
      socket.setTimeout(5_000, () => socket.destroy(new Error("TLS handshake timed out")));
      socket.on("error", reject);
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

const pairOfSecret = (secret: Secret) => ({
  cert: pemOf(secret, SECRET_KEYS.cert),
  key: pemOf(secret, SECRET_KEYS.key),
});

describe("self-managed certificates against a real control plane", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  /** ImageShift's own client, for the modules under test; the test itself observes with kubectl. */
  let client: KubeClient;
  /** Run after each test, in reverse order. */
  const cleanups: (() => Promise<unknown> | unknown)[] = [];

  const readSecret = (name: string) => k.json<Secret>(["get", "secret", name, "-n", NAMESPACE, "-o", "json"]);
  const secretExists = async (name: string): Promise<Secret | undefined> => {
    const result = await k.run(["get", "secret", name, "-n", NAMESPACE, "-o", "json"]);
    if (result.code === 0) return JSON.parse(result.stdout) as Secret;
    if (/NotFound/.test(result.stderr)) return undefined;
    throw new Error(`kubectl get secret ${name}: ${result.stderr}`);
  };
  const readConfigurations = (name: string) =>
    Promise.all(
      ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"].map((kind) =>
        k.json<WebhookConfiguration>(["get", kind, name, "-o", "json"]),
      ),
    );

  /** The three caBundles (two mutating webhooks, one validating), decoded; "" when unset. */
  async function caBundles(name: string): Promise<string[]> {
    const [mutating, validating] = await readConfigurations(name);
    return [...(mutating?.webhooks ?? []), ...(validating?.webhooks ?? [])].map((webhook) =>
      webhook.clientConfig.caBundle ? Buffer.from(webhook.clientConfig.caBundle, "base64").toString() : "",
    );
  }

  async function configurationVersions(name: string): Promise<string[]> {
    const [mutating, validating] = await readConfigurations(name);
    return [mutating?.metadata?.resourceVersion ?? "", validating?.metadata?.resourceVersion ?? ""];
  }

  /** kubectl, synchronously: for a log hook that must act between the manager's read and write. */
  function kubectlSync(args: string[], input?: string): string {
    assert.ok(cp);
    return execFileSync(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "--request-timeout=20s", ...args], {
      encoding: "utf8",
      timeout: 30_000,
      ...(input === undefined ? {} : { input }),
    });
  }

  function manager(options: {
    secretName: string;
    webhookConfigurationName?: string;
    logger?: Logger;
  }): CertificateManager {
    return new CertificateManager({
      client,
      namespace: NAMESPACE,
      secretName: options.secretName,
      webhookConfigurationName: options.webhookConfigurationName ?? "absent",
      serviceName: SERVICE,
      extraNames: ["127.0.0.1", "localhost"],
      logger: options.logger ?? captureLogger().logger,
      ...LIFETIMES,
    });
  }

  /** The serving certificate's renewal point is 10 s before its end: a time 1 s past it. */
  const dueTime = (secret: Secret) =>
    Date.parse(new X509Certificate(pemOf(secret, SECRET_KEYS.cert)).validTo) -
    LIFETIMES.renewBeforeMs +
    1_000;

  before(async () => {
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
    k = kubectlFor(cp.kubeconfigPath);
    await k.ok(["apply", "-f", CRDS]);
    await k.ok(["create", "namespace", NAMESPACE]);
    await k.ok(["apply", "-f", "-"], JSON.stringify(webhookConfigurations("imageshift")));
    await k.ok([
      "wait",
      "--for=condition=Established",
      "crd/imageshifts.imageshift.dev",
      "crd/registryrewriterules.dev.flemzord.fr",
      "--timeout=30s",
    ]);
    client = new KubeClient(fromKubeconfigFiles([cp.kubeconfigPath]));
  });

  // Sources, watches and electors a test started stop after it, even when it failed half way.
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {}
    }
  });

  after(async () => {
    await cp?.stop();
  });

  describe("CertificateManager: one Secret through creation, renewal and CA rotation", () => {
    const SECRET = "imageshift-tls";
    const { logger, lines } = captureLogger();
    let certificates: CertificateManager;
    let start: number;
    /** The first serving certificate's start (to the second): the times below count from it. */
    let base: number;
    let firstCa: X509Certificate;
    let firstCaKey: string;
    let leafFingerprint: string;
    let newCa: X509Certificate;

    const newLines = (from: number, msg: string) => lines.slice(from).filter((line) => line.msg === msg);

    it("the first pass creates the Secret, fills all three caBundles and signs a serving certificate", {
      timeout: 60_000,
    }, async () => {
      certificates = manager({ secretName: SECRET, webhookConfigurationName: "imageshift", logger });
      assert.deepEqual(await caBundles("imageshift"), ["", "", ""], "no caBundle before");
      assert.equal(await secretExists(SECRET), undefined, "no Secret before");

      start = Date.now();
      await certificates.reconcile(start);

      const secret = await readSecret(SECRET);
      assert.equal(secret.type, "kubernetes.io/tls");
      assert.deepEqual(Object.keys(secret.data ?? {}).sort(), ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
      assert.equal(secret.metadata?.labels?.["app.kubernetes.io/name"], "imageshift");
      assert.equal(secret.metadata?.annotations?.[CA_SINCE], String(start));
      const { ca, leaf } = assertValidSecret(secret);
      firstCa = ca;
      firstCaKey = pemOf(secret, SECRET_KEYS.caKey);
      leafFingerprint = leaf.fingerprint256;
      base = Date.parse(leaf.validTo) - LIFETIMES.certificateValidityMs;
      assert.ok(
        Math.abs(base - start) < 5_000,
        `the first certificate starts ${base - start} ms from the pass`,
      );

      assert.ok(ca.ca, "ca.crt is a CA");
      assert.match(ca.subject, /CN=imageshift-ca@\d+/);
      assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), "the leaf is signed by the CA");
      assert.equal(leaf.ca, false);
      assert.equal(leaf.subject, `CN=${SERVICE_NAME}`);
      for (const name of [SERVICE_NAME, `${SERVICE_NAME}.cluster.local`, SERVICE, "localhost"]) {
        assert.ok(leaf.subjectAltName?.includes(`DNS:${name}`), `DNS:${name} in ${leaf.subjectAltName}`);
      }
      assert.match(leaf.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
      assert.equal(leaf.checkIP("127.0.0.1"), "127.0.0.1");
      assert.equal(leaf.checkHost(SERVICE_NAME), SERVICE_NAME);
      const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
      assert.ok(Math.abs(lifetime - 80_000) <= 2_000, `20 s of validity (+60 s of clock skew): ${lifetime}`);

      const bundles = await caBundles("imageshift");
      assert.equal(bundles.length, 3);
      for (const bundle of bundles) {
        assert.equal(bundle, pemBundle([pemOf(secret, SECRET_KEYS.caCert)]));
        const inBundle = certificatesIn(bundle);
        assert.equal(inBundle.length, 1);
        assert.equal(inBundle[0]?.fingerprint256, ca.fingerprint256);
      }
      assert.equal(
        await handshake(pairOfSecret(secret), bundles[0] ?? ""),
        true,
        "the caBundle trusts the leaf",
      );

      assert.equal(newLines(0, "new webhook CA")[0]?.reason, "missing");
      const issued = newLines(0, "new serving certificate");
      assert.deepEqual(
        issued.map((line) => [line.reason, line.signedBy]),
        [["missing", "current CA"]],
      );
      assert.deepEqual(
        newLines(0, "caBundle updated").map((line) => [line.configuration, line.webhooks]),
        [
          ["MutatingWebhookConfiguration/imageshift", 2],
          ["ValidatingWebhookConfiguration/imageshift", 1],
        ],
      );
    });

    it("a second pass at the same time changes nothing", { timeout: 30_000 }, async () => {
      const secret = await readSecret(SECRET);
      const versions = await configurationVersions("imageshift");
      const from = lines.length;
      await certificates.reconcile(start);
      assert.equal((await readSecret(SECRET)).metadata?.resourceVersion, secret.metadata?.resourceVersion);
      assert.deepEqual(await configurationVersions("imageshift"), versions);
      assert.deepEqual(
        lines.slice(from).map((line) => line.msg),
        [],
        "nothing logged: nothing done",
      );
    });

    it("a caBundle reset to empty (say by a re-applied chart) is repaired by the next pass", {
      timeout: 30_000,
    }, async () => {
      const secret = await readSecret(SECRET);
      const empty = (index: number) =>
        JSON.stringify([{ op: "replace", path: `/webhooks/${index}/clientConfig/caBundle`, value: "" }]);
      await k.ok(["patch", "mutatingwebhookconfiguration", "imageshift", "--type=json", "-p", empty(1)]);
      await k.ok(["patch", "validatingwebhookconfiguration", "imageshift", "--type=json", "-p", empty(0)]);
      const caPem = pemOf(secret, SECRET_KEYS.caCert);
      assert.deepEqual(await caBundles("imageshift"), [pemBundle([caPem]), "", ""]);

      const from = lines.length;
      await certificates.reconcile(start);
      assert.deepEqual(await caBundles("imageshift"), [
        pemBundle([caPem]),
        pemBundle([caPem]),
        pemBundle([caPem]),
      ]);
      assert.deepEqual(
        newLines(from, "caBundle updated").map((line) => [line.configuration, line.webhooks]),
        [
          ["MutatingWebhookConfiguration/imageshift", 1],
          ["ValidatingWebhookConfiguration/imageshift", 1],
        ],
      );
      assert.equal(
        (await readSecret(SECRET)).metadata?.resourceVersion,
        secret.metadata?.resourceVersion,
        "the Secret is not rewritten",
      );
    });

    it("at +11 s the serving certificate is renewed by the same CA", { timeout: 30_000 }, async () => {
      const before = await readSecret(SECRET);
      const caEnd = Date.parse(firstCa.validTo);
      assert.ok(
        caEnd - LIFETIMES.caValidityMs / 3 > base + 11_000,
        "precondition: the CA is not due at +11 s",
      );
      const versions = await configurationVersions("imageshift");
      const from = lines.length;
      await certificates.reconcile(base + 11_000);

      const secret = await readSecret(SECRET);
      assert.notEqual(secret.metadata?.resourceVersion, before.metadata?.resourceVersion);
      const { ca, leaf } = assertValidSecret(secret);
      assert.notEqual(leaf.fingerprint256, leafFingerprint, "a new serving certificate");
      assert.equal(ca.fingerprint256, firstCa.fingerprint256, "the same CA");
      assert.equal(pemOf(secret, SECRET_KEYS.caKey), firstCaKey, "the same CA key");
      assert.notEqual(pemOf(secret, SECRET_KEYS.key), pemOf(before, SECRET_KEYS.key), "a new key");
      assert.ok(leaf.verify(firstCa.publicKey));
      assert.equal(secret.data?.[SECRET_KEYS.previousCaCert], undefined, "no previous CA yet");
      assert.equal(secret.metadata?.annotations?.[CA_SINCE], String(start), "the CA's start is kept");
      assert.deepEqual(await configurationVersions("imageshift"), versions, "the caBundles are not touched");
      assert.deepEqual(newLines(from, "new webhook CA"), []);
      const issued = newLines(from, "new serving certificate");
      assert.equal(issued.length, 1);
      assert.match(String(issued[0]?.reason), /^expires \d{4}-/);
      assert.equal(issued[0]?.signedBy, "current CA");
      leafFingerprint = leaf.fingerprint256;
    });

    it("at +41 s (a third of its life left) the CA is replaced; the bundle holds both CAs and the leaf is still signed by the previous one", {
      timeout: 30_000,
    }, async (t) => {
      // The new CA is dated from the wall clock: at +47 s it must not be due yet (a third of its
      // 60 s left), so it must be made at least 8 s after the first certificate.
      const wait = base + 8_100 - Date.now();
      t.diagnostic(`waiting ${Math.max(0, wait)} ms for the wall clock`);
      if (wait > 0) await sleep(wait);
      const before = await readSecret(SECRET);
      const oldLeafPem = pemOf(before, SECRET_KEYS.cert);
      assert.ok(
        Date.parse(new X509Certificate(oldLeafPem).validTo) - LIFETIMES.renewBeforeMs <= base + 41_000,
        "precondition: the serving certificate is due at +41 s",
      );
      const from = lines.length;
      await certificates.reconcile(base + 41_000);

      const secret = await readSecret(SECRET);
      const { ca, leaf } = assertValidSecret(secret);
      newCa = ca;
      assert.notEqual(ca.fingerprint256, firstCa.fingerprint256, "a new CA");
      const previous = new X509Certificate(pemOf(secret, SECRET_KEYS.previousCaCert));
      assert.equal(previous.fingerprint256, firstCa.fingerprint256, "ca-previous.crt is the old CA");
      assert.equal(pemOf(secret, SECRET_KEYS.previousCaKey), firstCaKey, "ca-previous.key is the old key");
      assert.equal(secret.metadata?.annotations?.[CA_SINCE], String(base + 41_000), "the new CA's start");

      const bundles = await caBundles("imageshift");
      const expected = pemBundle([
        pemOf(secret, SECRET_KEYS.caCert),
        pemOf(secret, SECRET_KEYS.previousCaCert),
      ]);
      for (const bundle of bundles) {
        assert.equal(bundle, expected);
        assert.deepEqual(
          certificatesIn(bundle).map((cert) => cert.fingerprint256),
          [ca.fingerprint256, firstCa.fingerprint256],
          "new CA first, then the previous one, each block parseable",
        );
      }

      // Written in this pass, but signed by the previous CA: the API server may not have the new bundle yet.
      assert.notEqual(leaf.fingerprint256, leafFingerprint, "a new serving certificate");
      assert.ok(leaf.verify(firstCa.publicKey), "signed by the previous CA");
      assert.ok(!leaf.verify(ca.publicKey), "not by the new one yet");
      assert.equal(await handshake(pairOfSecret(secret), bundles[0] ?? ""), true, "the bundle trusts it");
      assert.equal(await handshake(pairOfSecret(secret), firstCa.toString()), true, "the old bundle too");

      const rotated = newLines(from, "new webhook CA");
      assert.equal(rotated.length, 1);
      assert.match(String(rotated[0]?.reason), /^expires /);
      assert.deepEqual(
        newLines(from, "new serving certificate").map((line) => line.signedBy),
        ["previous CA"],
      );
      leafFingerprint = leaf.fingerprint256;
    });

    it("at +47 s (past the 5 s propagation delay) the serving certificate is signed by the new CA", {
      timeout: 30_000,
    }, async () => {
      assert.ok(
        Date.parse(newCa.validTo) - LIFETIMES.caValidityMs / 3 > base + 47_000,
        "precondition: the new CA is not due at +47 s",
      );
      const versions = await configurationVersions("imageshift");
      const from = lines.length;
      await certificates.reconcile(base + 47_000);

      const secret = await readSecret(SECRET);
      const { ca, leaf } = assertValidSecret(secret);
      assert.equal(ca.fingerprint256, newCa.fingerprint256, "the CA is kept");
      assert.equal(
        new X509Certificate(pemOf(secret, SECRET_KEYS.previousCaCert)).fingerprint256,
        firstCa.fingerprint256,
        "the previous CA is kept",
      );
      assert.equal(secret.metadata?.annotations?.[CA_SINCE], String(base + 41_000));
      assert.notEqual(leaf.fingerprint256, leafFingerprint);
      assert.ok(leaf.verify(newCa.publicKey), "signed by the new CA");
      assert.ok(!leaf.verify(firstCa.publicKey));
      assert.deepEqual(await configurationVersions("imageshift"), versions, "the bundles already hold both");
      const bundle = (await caBundles("imageshift"))[0] ?? "";
      assert.equal(await handshake(pairOfSecret(secret), bundle), true);
      assert.notEqual(
        await handshake(pairOfSecret(secret), firstCa.toString()),
        true,
        "the old CA alone no longer trusts it",
      );
      assert.deepEqual(newLines(from, "new webhook CA"), []);
      assert.deepEqual(
        newLines(from, "new serving certificate").map((line) => line.signedBy),
        ["current CA"],
      );
    });
  });

  describe("CertificateManager: conflicting writers", () => {
    it("a write between the pass's read and its write: 409, the Secret keeps a valid pair, the next pass renews", {
      timeout: 60_000,
    }, async () => {
      const SECRET = "conflict-tls";
      let touch = false;
      const { logger } = captureLogger((line) => {
        // Synchronously, inside the log call: after the pass read the Secret, before it writes it.
        if (touch && line.msg === "new serving certificate") {
          touch = false;
          kubectlSync(["annotate", "secret", SECRET, "-n", NAMESPACE, "imageshift.test/touched=yes"]);
        }
      });
      const certificates = manager({ secretName: SECRET, logger });
      await certificates.reconcile(Date.now());
      const first = await readSecret(SECRET);
      const due = dueTime(first);

      touch = true;
      await assert.rejects(certificates.reconcile(due), (error: unknown) => {
        assert.equal((error as { code?: number }).code, 409, String(error));
        return true;
      });
      assert.equal(touch, false, "the hook ran");
      const touched = await readSecret(SECRET);
      assert.equal(touched.metadata?.annotations?.["imageshift.test/touched"], "yes");
      assert.deepEqual(touched.data, first.data, "the failed pass wrote nothing");
      assertValidSecret(touched);

      await certificates.reconcile(due);
      const renewed = await readSecret(SECRET);
      const { ca, leaf } = assertValidSecret(renewed);
      assert.notEqual(pemOf(renewed, SECRET_KEYS.cert), pemOf(first, SECRET_KEYS.cert), "renewed");
      assert.equal(pemOf(renewed, SECRET_KEYS.caCert), pemOf(first, SECRET_KEYS.caCert));
      assert.ok(leaf.verify(ca.publicKey));
      assert.equal(
        renewed.metadata?.annotations?.["imageshift.test/touched"],
        "yes",
        "the other writer's change kept",
      );
    });

    it("two passes at once: the loser fails with 409, the Secret keeps a valid pair", {
      timeout: 60_000,
    }, async (t) => {
      const SECRET = "concurrent-tls";
      const certificates = manager({ secretName: SECRET });
      await certificates.reconcile(Date.now());
      const first = await readSecret(SECRET);
      const due = dueTime(first);
      for (let round = 0; round < 3; round++) {
        const results = await Promise.allSettled([certificates.reconcile(due), certificates.reconcile(due)]);
        const failures = results.filter((result) => result.status === "rejected");
        t.diagnostic(`round ${round}: ${failures.length} pass(es) lost`);
        assert.ok(failures.length < 2, "one of them wins");
        for (const failure of failures) assert.equal((failure.reason as { code?: number }).code, 409);
        const secret = await readSecret(SECRET);
        const { ca } = assertValidSecret(secret);
        assert.equal(pemOf(secret, SECRET_KEYS.caCert), pemOf(first, SECRET_KEYS.caCert), "the CA is kept");
        assert.ok(ca.ca);
      }
    });

    describe("another leader creating the Secret between the pass's read and its write", () => {
      const SECRET = "race-tls";
      const CONFIGURATIONS = "imageshift-race";
      let other: { ca: CertificateAndKey; leaf: CertificateAndKey } | undefined;
      let bundlesAfterTheLostPass: string[] = [];

      it("the lost pass leaves the Secret's CA in every caBundle", {
        timeout: 60_000,
      }, async () => {
        await k.ok(["apply", "-f", "-"], JSON.stringify(webhookConfigurations(CONFIGURATIONS)));
        const ca = await createCertificateAuthority({ commonName: "other-leader-ca", validityDays: 1 });
        const leaf = await createServingCertificate(ca, {
          commonName: SERVICE_NAME,
          dnsNames: [SERVICE_NAME],
          validityDays: 1,
        });
        other = { ca, leaf };
        const caBundle = Buffer.from(pemBundle([ca.certPem])).toString("base64");
        const setBundle = (indexes: number[]) =>
          JSON.stringify(
            indexes.map((index) => ({
              op: "add",
              path: `/webhooks/${index}/clientConfig/caBundle`,
              value: caBundle,
            })),
          );
        const secret = {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: SECRET, namespace: NAMESPACE },
          type: "kubernetes.io/tls",
          data: Object.fromEntries(
            [
              [SECRET_KEYS.caCert, ca.certPem],
              [SECRET_KEYS.caKey, ca.keyPem],
              [SECRET_KEYS.cert, leaf.certPem],
              [SECRET_KEYS.key, leaf.keyPem],
            ].map(([key, value]) => [key, Buffer.from(value as string).toString("base64")]),
          ),
        };
        let raced = false;
        const { logger } = captureLogger((line) => {
          // After this pass found no Secret, before it sets the caBundles: the other leader does it all.
          if (!raced && line.msg === "new webhook CA") {
            raced = true;
            kubectlSync(["create", "-f", "-"], JSON.stringify(secret));
            kubectlSync([
              "patch",
              "mutatingwebhookconfiguration",
              CONFIGURATIONS,
              "--type=json",
              "-p",
              setBundle([0, 1]),
            ]);
            kubectlSync([
              "patch",
              "validatingwebhookconfiguration",
              CONFIGURATIONS,
              "--type=json",
              "-p",
              setBundle([0]),
            ]);
          }
        });
        const certificates = manager({
          secretName: SECRET,
          webhookConfigurationName: CONFIGURATIONS,
          logger,
        });
        await assert.rejects(certificates.reconcile(Date.now()), (error: unknown) => {
          assert.equal((error as { code?: number }).code, 409, String(error));
          return true;
        });
        assert.ok(raced);
        bundlesAfterTheLostPass = await caBundles(CONFIGURATIONS);
        const served = new X509Certificate(leaf.certPem);
        for (const bundle of bundlesAfterTheLostPass) {
          const trusted = certificatesIn(bundle);
          assert.ok(
            trusted.some((cert) => served.verify(cert.publicKey)),
            `the served certificate (from the Secret, signed by ${served.issuer}) is trusted by the caBundle (${trusted.map((cert) => cert.subject)})`,
          );
        }
      });

      it("the Secret is the winner's, intact, and the next pass puts its CA in every caBundle", {
        timeout: 60_000,
      }, async () => {
        assert.ok(other, "the previous test set the race up");
        assert.equal(bundlesAfterTheLostPass.length, 3);
        const secret = await readSecret(SECRET);
        assert.equal(pemOf(secret, SECRET_KEYS.caCert), other.ca.certPem, "the winner's CA");
        assert.equal(pemOf(secret, SECRET_KEYS.cert), other.leaf.certPem, "the winner's certificate");
        assertValidSecret(secret);

        const certificates = manager({ secretName: SECRET, webhookConfigurationName: CONFIGURATIONS });
        await certificates.reconcile(Date.now());
        assert.deepEqual(await caBundles(CONFIGURATIONS), Array(3).fill(pemBundle([other.ca.certPem])));
        assert.equal(
          (await readSecret(SECRET)).metadata?.resourceVersion,
          secret.metadata?.resourceVersion,
          "a valid Secret is left alone",
        );
      });
    });

    it("a tls.key that does not match tls.crt is replaced by the next pass", {
      timeout: 60_000,
    }, async () => {
      const SECRET = "mismatch-tls";
      const certificates = manager({ secretName: SECRET });
      await certificates.reconcile(Date.now());
      const stranger = await createCertificateAuthority({ commonName: "stranger", validityDays: 1 });
      await k.ok([
        "patch",
        "secret",
        SECRET,
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        JSON.stringify({ data: { [SECRET_KEYS.key]: Buffer.from(stranger.keyPem).toString("base64") } }),
      ]);
      await certificates.reconcile(Date.now());
      assertValidSecret(await readSecret(SECRET));
    });
  });

  describe("CertificateManager: edges", () => {
    it("configurations without webhooks are left alone; without extra names the certificate names only the Service", {
      timeout: 30_000,
    }, async () => {
      const CONFIGURATIONS = "imageshift-empty";
      const empty = webhookConfigurations(CONFIGURATIONS) as { items: { webhooks?: unknown }[] };
      for (const item of empty.items) delete item.webhooks;
      await k.ok(["apply", "-f", "-"], JSON.stringify(empty));
      const versions = await configurationVersions(CONFIGURATIONS);
      const { logger, lines } = captureLogger();
      const certificates = new CertificateManager({
        client,
        namespace: NAMESPACE,
        secretName: "plain-tls",
        webhookConfigurationName: CONFIGURATIONS,
        serviceName: SERVICE,
        logger,
        ...LIFETIMES,
      });
      await certificates.reconcile(Date.now());
      const { leaf } = assertValidSecret(await readSecret("plain-tls"));
      assert.equal(
        leaf.subjectAltName,
        `DNS:${SERVICE_NAME}, DNS:${SERVICE_NAME}.cluster.local, DNS:${SERVICE}`,
      );
      assert.deepEqual(await configurationVersions(CONFIGURATIONS), versions);
      assert.deepEqual(
        lines.filter((line) => line.msg === "caBundle updated" || (line.level ?? 0) >= 40),
        [],
        "nothing to patch, nothing to warn about",
      );
    });

    it("an API error other than 404 on the Secret is thrown, and nothing is written", {
      timeout: 30_000,
    }, async () => {
      assert.ok(cp);
      const intruder = new KubeClient({
        server: cp.server,
        ca: cp.caPem,
        credential: staticToken("not-the-token"),
        origin: "test",
      });
      const certificates = new CertificateManager({
        client: intruder,
        namespace: NAMESPACE,
        secretName: "forbidden-tls",
        webhookConfigurationName: "imageshift",
        serviceName: SERVICE,
        logger: captureLogger().logger,
        ...LIFETIMES,
      });
      const bundles = await caBundles("imageshift");
      await assert.rejects(certificates.reconcile(Date.now()), (error: unknown) => {
        assert.equal((error as { code?: number }).code, 401, String(error));
        return true;
      });
      assert.equal(await secretExists("forbidden-tls"), undefined);
      assert.deepEqual(await caBundles("imageshift"), bundles, "the caBundles are not touched");
    });
  });

  describe("SecretCertificateSource", () => {
    it("start() waits for a valid pair, onChange follows renewals, unchanged writes and invalid pairs are ignored", {
      timeout: 90_000,
    }, async () => {
      const SECRET = "source-tls";
      const { logger: sourceLogger, lines: sourceLines } = captureLogger();
      const source = new SecretCertificateSource({
        client,
        namespace: NAMESPACE,
        name: SECRET,
        logger: sourceLogger,
      });
      cleanups.push(() => source.stop());
      const changes: CertificatePair[] = [];
      source.onChange((pair) => changes.push(pair));
      let loaded: CertificatePair | undefined;
      const started = source.start().then(() => {
        loaded = source.current();
        return loaded as CertificatePair;
      });

      await sleep(1_000);
      assert.equal(loaded, undefined, "no Secret: start() waits");

      // A Secret whose key does not match its certificate: still waiting.
      const stranger = await createCertificateAuthority({ commonName: "stranger", validityDays: 1 });
      const strangerLeaf = await createServingCertificate(stranger, {
        commonName: SERVICE_NAME,
        dnsNames: [SERVICE_NAME],
        validityDays: 1,
      });
      await k.ok(
        ["apply", "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: SECRET, namespace: NAMESPACE },
          type: "kubernetes.io/tls",
          data: {
            [SECRET_KEYS.cert]: Buffer.from(strangerLeaf.certPem).toString("base64"),
            [SECRET_KEYS.key]: Buffer.from(stranger.keyPem).toString("base64"),
          },
        }),
      );
      await sleep(1_500);
      assert.equal(loaded, undefined, "an invalid pair: start() still waits");

      // The leader's first pass replaces it (the certificate is not signed by its CA): start() resolves.
      const { logger, lines } = captureLogger();
      const certificates = manager({ secretName: SECRET, logger });
      await certificates.reconcile(Date.now());
      assert.ok(
        lines.some((line) => line.msg === "webhook configuration not found; caBundle not set"),
        "no webhook configurations to fill: a warning, not a failure",
      );
      const pair = await waitFor("start() resolves", 10_000, () => loaded);
      assert.equal(await started, pair);
      let secret = await readSecret(SECRET);
      assert.deepEqual(pair, pairOfSecret(secret));
      assert.ok(sourceLines.some((line) => line.msg === "serving certificate loaded from the Secret"));
      assert.equal(changes.length, 0, "the first pair is start()'s, not a change");

      // A write that leaves the pair as it is: no change.
      await k.ok(["annotate", "secret", SECRET, "-n", NAMESPACE, "imageshift.test/unrelated=1"]);
      await sleep(1_500);
      assert.equal(changes.length, 0, "an unchanged pair is not a change");

      // A renewal: the new pair, once.
      await certificates.reconcile(dueTime(secret));
      secret = await readSecret(SECRET);
      const renewed = pairOfSecret(secret);
      assert.notDeepEqual(renewed, pair);
      await waitFor("onChange with the renewed pair", 10_000, () => changes.length > 0);
      assert.deepEqual(changes, [renewed]);
      assert.ok(sourceLines.some((line) => line.msg === "serving certificate renewed"));

      // An invalid pair after that (a key that does not match, then garbage): ignored.
      for (const key of [stranger.keyPem, "not a key"]) {
        await k.ok([
          "patch",
          "secret",
          SECRET,
          "-n",
          NAMESPACE,
          "--type=merge",
          "-p",
          JSON.stringify({ data: { [SECRET_KEYS.key]: Buffer.from(key).toString("base64") } }),
        ]);
      }
      await sleep(1_500);
      assert.equal(changes.length, 1, "invalid pairs are ignored");

      // The next renewal is taken again.
      await certificates.reconcile(dueTime(secret));
      const again = pairOfSecret(await readSecret(SECRET));
      await waitFor("onChange with the next pair", 10_000, () => changes.length > 1);
      assert.deepEqual(changes, [renewed, again]);
      assert.equal(await handshake(again, pemOf(await readSecret(SECRET), SECRET_KEYS.caCert)), true);
    });
  });

  describe("the leader's duties and cluster mode", () => {
    it("startStatusReporting: the leader creates the Secret and fills the caBundles on its own, then renews", {
      timeout: 90_000,
    }, async (t) => {
      const SECRET = "leader-tls";
      const CONFIGURATIONS = "imageshift-leader";
      await k.ok(["apply", "-f", "-"], JSON.stringify(webhookConfigurations(CONFIGURATIONS)));
      const { logger, lines } = captureLogger();
      const source = new ClusterRuleSource({ client, logger, watchCompat: false });
      cleanups.push(() => source.stop());
      await source.start();
      const certificates = manager({ secretName: SECRET, webhookConfigurationName: CONFIGURATIONS, logger });
      assert.equal(certificates.periodMs, 2_500);
      const reporting = startStatusReporting({
        client,
        source,
        logger,
        namespace: NAMESPACE,
        leaseName: "imageshift-certs-leader",
        certificates,
        ...FAST,
      });
      cleanups.push(() => reporting.stop());

      const began = Date.now();
      const secret = await waitFor("the leader creates the Secret", 15_000, () => secretExists(SECRET));
      t.diagnostic(`Secret created ${Date.now() - began} ms after start`);
      assert.ok(reporting.elector.leading);
      const { ca, leaf } = assertValidSecret(secret);
      // The bundle follows the Secret within the same pass.
      const wanted = Array(3).fill(pemBundle([ca.toString()]));
      await waitFor("the leader fills the caBundles", 10_000, async () => {
        const bundles = await caBundles(CONFIGURATIONS);
        return JSON.stringify(bundles) === JSON.stringify(wanted) ? bundles : undefined;
      });

      // 20 s of validity, renewed 10 s before the end, checked every 2.5 s: a new one within ~13 s.
      const renewed = await waitFor("the leader renews the serving certificate", 25_000, async () => {
        const current = await readSecret(SECRET);
        const served = new X509Certificate(pemOf(current, SECRET_KEYS.cert));
        return served.fingerprint256 !== leaf.fingerprint256 ? current : undefined;
      });
      t.diagnostic(`serving certificate renewed ${Date.now() - began} ms after start`);
      const after = assertValidSecret(renewed);
      assert.equal(after.ca.fingerprint256, ca.fingerprint256);
      assert.ok(after.leaf.verify(ca.publicKey));
      assert.ok(
        !lines.some((line) => line.msg === "certificates not reconciled; retrying"),
        "no failed pass",
      );

      await reporting.stop();
      assert.equal(reporting.elector.leading, false);
    });

    it("clusterMode: $KUBECONFIG, the leader keeps the Secret, and the replica's certificate source serves it", {
      timeout: 90_000,
    }, async () => {
      assert.ok(cp);
      const saved = process.env.KUBECONFIG;
      process.env.KUBECONFIG = cp.kubeconfigPath;
      cleanups.push(() => {
        if (saved === undefined) delete process.env.KUBECONFIG;
        else process.env.KUBECONFIG = saved;
      });
      const { logger, lines } = captureLogger();

      const files = clusterMode({ logger, watchCompat: false, namespace: NAMESPACE });
      assert.equal(files.certificateSource, undefined, "certificates from files: no Secret source");
      assert.deepEqual(
        [...files.outer, ...files.runnables].map((runnable) => runnable.name),
        ["kube-client", "leader-election"],
        "nothing starts until a manager starts it",
      );

      const SECRET = "mode-tls";
      const mode = clusterMode({
        logger,
        watchCompat: true,
        namespace: NAMESPACE,
        selfManaged: {
          secretName: SECRET,
          webhookConfigurationName: "absent",
          serviceName: SERVICE,
          extraNames: ["127.0.0.1"],
          ...LIFETIMES,
        },
      });
      // What the manager does (webhook/app.ts): start in order, stop in reverse.
      const runnables = [...mode.outer, ...mode.runnables];
      for (const runnable of runnables) await runnable.start();
      cleanups.push(async () => {
        for (const runnable of [...runnables].reverse()) await runnable.stop();
      });
      const certificateSource = mode.certificateSource;
      assert.ok(certificateSource instanceof SecretCertificateSource);
      cleanups.push(() => certificateSource.stop());
      assert.deepEqual(
        lines
          .filter((line) => line.msg === "cluster mode: rules come from the API server")
          .map((line) => [line.server, line.watchCompat, line.certificates]),
        [
          [cp.server, false, "files"],
          [cp.server, true, "selfManaged"],
        ],
      );

      let loaded: CertificatePair | undefined;
      void certificateSource.start().then(() => {
        loaded = certificateSource.current();
      });
      const pair = await waitFor("the certificate source gets a pair", 20_000, () => loaded);
      const secret = await readSecret(SECRET);
      assert.deepEqual(pair, pairOfSecret(secret));
      assert.equal(await handshake(pair, pemOf(secret, SECRET_KEYS.caCert)), true);

      await mode.rules.start();
      await waitFor("the rule source syncs", 15_000, () => mode.rules.current());
      assert.equal(mode.namespaceLabels(NAMESPACE)?.["kubernetes.io/metadata.name"], NAMESPACE);
      cleanups.push(() => mode.rules.stop());
    });
  });
});
