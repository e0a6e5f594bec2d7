import assert from "node:assert/strict";
import { webcrypto, X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import type { CompiledRules } from "../engine/rules/load.ts";
import type { RuleSource } from "../engine/rules/source.ts";
import { rulesFromYaml } from "../engine/rules/testing.ts";
import { createLogger, type Logger } from "../telemetry/logger.ts";
import { captureLogger } from "../telemetry/testing.ts";
import { type RunningApp, startApp } from "../webhook/app.ts";
import { type CertificateAndKey, createCertificateAuthority, createServingCertificate } from "./authority.ts";
import {
  type CertificatePair,
  type CertificateSource,
  checkPair,
  FileCertificateSource,
  SelfSignedCertificateSource,
} from "./certificates.ts";

const WAIT_MS = 5_000;
const RULES = rulesFromYaml(`
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata:
  name: mirror
spec:
  mappings:
    swap:
      - registry: docker.io
        target: mirror.corp/dockerhub
`);

function staticRules(compiled: CompiledRules): RuleSource {
  return { start: async () => {}, current: () => compiled, onChange: () => {}, stop: async () => {} };
}

interface Served {
  fingerprint256: string;
  serialNumber: string;
  protocol: string | null;
}

/** Connects with a fresh TLS session and reports the certificate the server presented. */
function served(port: number, ca: string, options: tls.ConnectionOptions = {}): Promise<Served> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, ...options }, () => {
      const peer = socket.getPeerCertificate();
      const result = {
        fingerprint256: peer.fingerprint256,
        serialNumber: peer.serialNumber,
        protocol: socket.getProtocol(),
      };
      socket.end();
      resolve(result);
    });
    socket.setTimeout(WAIT_MS, () => socket.destroy(new Error("TLS connection timed out")));
    socket.on("error", reject);
  });
}

const fingerprint = (certPem: string) => new X509Certificate(certPem).fingerprint256;
const serial = (hex: string) => hex.toUpperCase().replace(/^0+/, "");

/** Polls `check` every 25 ms until it is true; fails after `ms`. */
async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

let ca: CertificateAndKey;
let otherCa: CertificateAndKey;
let certA: CertificateAndKey;
let certB: CertificateAndKey;
let certC: CertificateAndKey;
let temp = "";

async function leaf(): Promise<CertificateAndKey> {
  return createServingCertificate(ca, {
    commonName: "localhost",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: 1,
  });
}

before(async () => {
  ca = await createCertificateAuthority({ commonName: "certificates test CA", validityDays: 1 });
  otherCa = await createCertificateAuthority({ commonName: "someone else's CA", validityDays: 1 });
  [certA, certB, certC] = await Promise.all([leaf(), leaf(), leaf()]);
  temp = await mkdtemp(join(tmpdir(), "imageshift-certs-"));
});

after(async () => {
  await rm(temp, { recursive: true, force: true });
});

let folders = 0;
async function folder(): Promise<string> {
  const path = join(temp, `case-${++folders}`);
  await mkdir(path);
  return path;
}

/** Writes beside the target, then renames over it: what an atomic writer does. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

/** The layout of a Secret volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`. */
async function secretVolume(dir: string, version: string, pair: CertificateAndKey): Promise<void> {
  const data = join(dir, version);
  await mkdir(data);
  await writeFile(join(data, "tls.crt"), pair.certPem);
  await writeFile(join(data, "tls.key"), pair.keyPem);
}

/** The kubelet's atomic update: a new timestamped folder, a new `..data` link renamed over the old. */
async function swapSecretVolume(dir: string, version: string, pair: CertificateAndKey): Promise<void> {
  await secretVolume(dir, version, pair);
  await symlink(version, join(dir, "..data_tmp"));
  await rename(join(dir, "..data_tmp"), join(dir, "..data"));
}

async function startWith(
  certificates: CertificateSource,
  logger: Logger = createLogger("silent"),
): Promise<RunningApp> {
  return startApp({
    rules: staticRules(RULES),
    certificates,
    logger,
    host: "127.0.0.1",
    port: 0,
    metricsHost: "127.0.0.1",
    metricsPort: 0,
  });
}

/** Certificate A in tls.crt and tls.key of a new folder. */
async function certAFiles() {
  const dir = await folder();
  const certFile = join(dir, "tls.crt");
  const keyFile = join(dir, "tls.key");
  await writeFile(certFile, certA.certPem);
  await writeFile(keyFile, certA.keyPem);
  return { dir, certFile, keyFile };
}

/** `certAFiles`, and a source on them that reloads only when asked. */
async function filesWithCertA() {
  const files = await certAFiles();
  const { certFile, keyFile } = files;
  const source = new FileCertificateSource({
    certFile,
    keyFile,
    logger: createLogger("silent"),
    pollMs: 600_000,
  });
  return { ...files, source };
}

describe("FileCertificateSource", () => {
  it("serves the files' certificate and a new pair written then renamed over, after reload()", async () => {
    const { certFile, keyFile } = await certAFiles();
    const { logger, lines } = captureLogger();
    const source = new FileCertificateSource({ certFile, keyFile, logger, pollMs: 60_000 });
    const changes: CertificatePair[] = [];
    source.onChange((pair) => changes.push(pair));
    const app = await startWith(source, logger);
    try {
      const first = await served(app.webhookPort, ca.certPem);
      assert.equal(first.fingerprint256, fingerprint(certA.certPem));
      assert.equal(serial(first.serialNumber), serial(new X509Certificate(certA.certPem).serialNumber));

      await replaceFile(keyFile, certB.keyPem);
      await replaceFile(certFile, certB.certPem);
      assert.equal(await source.reload(), true);
      const second = await served(app.webhookPort, ca.certPem);
      assert.equal(second.fingerprint256, fingerprint(certB.certPem));
      assert.notEqual(second.serialNumber, first.serialNumber);
      assert.equal(changes.length, 1);
      assert.equal(changes[0]?.cert, certB.certPem);
      assert.ok(lines.some((line) => line.msg === "TLS certificate reloaded"));

      // Nothing changed: no reload, no listener call.
      assert.equal(await source.reload(), false);
      assert.equal(changes.length, 1);
    } finally {
      await app.stop(1000);
    }
  });

  it("follows the Kubernetes ..data symlink swap through the folder watcher", async () => {
    const dir = await folder();
    await secretVolume(dir, "..2026_01_01_00_00_00.000000001", certA);
    await symlink("..2026_01_01_00_00_00.000000001", join(dir, "..data"));
    await symlink(join("..data", "tls.crt"), join(dir, "tls.crt"));
    await symlink(join("..data", "tls.key"), join(dir, "tls.key"));
    // The poll is far away: only the watcher can notice within the wait.
    const source = new FileCertificateSource({
      certFile: join(dir, "tls.crt"),
      keyFile: join(dir, "tls.key"),
      logger: createLogger("silent"),
      pollMs: 600_000,
    });
    const app = await startWith(source);
    try {
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));
      await swapSecretVolume(dir, "..2026_01_02_00_00_00.000000002", certB);
      const expected = fingerprint(certB.certPem);
      await waitFor(
        "certificate B served after the ..data swap",
        async () => (await served(app.webhookPort, ca.certPem)).fingerprint256 === expected,
      );
      // A second swap works the same way (the watcher survives the first).
      await swapSecretVolume(dir, "..2026_01_03_00_00_00.000000003", certC);
      const third = fingerprint(certC.certPem);
      await waitFor(
        "certificate C served after the second ..data swap",
        async () => (await served(app.webhookPort, ca.certPem)).fingerprint256 === third,
      );
    } finally {
      await app.stop(1000);
    }
  });

  it("follows the ..data symlink swap on reload()", async () => {
    const dir = await folder();
    await secretVolume(dir, "..2026_a", certA);
    await symlink("..2026_a", join(dir, "..data"));
    await symlink("..data/tls.crt", join(dir, "tls.crt"));
    await symlink("..data/tls.key", join(dir, "tls.key"));
    const source = new FileCertificateSource({
      certFile: join(dir, "tls.crt"),
      keyFile: join(dir, "tls.key"),
      logger: createLogger("silent"),
      pollMs: 600_000,
    });
    const app = await startWith(source);
    try {
      await swapSecretVolume(dir, "..2026_b", certB);
      // The watcher may have been first; either way the next connection gets B.
      await source.reload();
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certB.certPem));
    } finally {
      await app.stop(1000);
    }
  });

  it("ignores a half-written or mismatched pair and keeps serving the last good certificate", async () => {
    const { certFile, keyFile } = await certAFiles();
    const { logger, lines } = captureLogger();
    const source = new FileCertificateSource({ certFile, keyFile, logger, pollMs: 600_000 });
    const changes: CertificatePair[] = [];
    source.onChange((pair) => changes.push(pair));
    const app = await startWith(source, logger);
    try {
      // The new certificate arrived, its key not yet.
      await replaceFile(certFile, certB.certPem);
      assert.equal(await source.reload(), false);
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));
      assert.ok(
        lines.some((line) => line.msg === "TLS certificate not reloaded; keeping the current one"),
        "the refusal is logged",
      );

      // A truncated certificate file (a writer caught half way).
      await writeFile(certFile, certB.certPem.slice(0, 200));
      assert.equal(await source.reload(), false);
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));

      await writeFile(certFile, certB.certPem);
      assert.equal(await source.reload(), false);
      assert.equal(changes.length, 0);

      // The key arrives: B from now on.
      await replaceFile(keyFile, certB.keyPem);
      assert.equal(await source.reload(), true);
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certB.certPem));
      assert.equal(changes.length, 1);
    } finally {
      await app.stop(1000);
    }
  });

  it("ignores an empty key or certificate file (a file truncated by a writer, caught before it is written)", {}, async () => {
    const { certFile, keyFile, source } = await filesWithCertA();
    const changes: CertificatePair[] = [];
    source.onChange((pair) => changes.push(pair));
    const app = await startWith(source);
    try {
      await writeFile(certFile, certB.certPem);
      await writeFile(keyFile, "");
      const reloaded = await source.reload();
      // Whatever reload() said, a new connection must still get a working certificate.
      const now = await served(app.webhookPort, ca.certPem).catch((error: Error) => error);
      assert.ok(!(now instanceof Error), `TLS handshake failed after reload: ${String(now)}`);
      assert.equal(now.fingerprint256, fingerprint(certA.certPem));
      assert.equal(reloaded, false);
      assert.equal(changes.length, 0);
    } finally {
      await app.stop(1000);
    }
  });

  it("start() rejects empty certificate files", {}, async () => {
    const dir = await folder();
    const certFile = join(dir, "tls.crt");
    const keyFile = join(dir, "tls.key");
    await writeFile(certFile, "");
    await writeFile(keyFile, "");
    const source = new FileCertificateSource({ certFile, keyFile, logger: createLogger("silent") });
    try {
      await assert.rejects(source.start(), /not usable/);
    } finally {
      source.stop();
    }
  });

  it("keeps a missing file from replacing the certificate (files removed during an update)", async () => {
    const { keyFile, source } = await filesWithCertA();
    const app = await startWith(source);
    try {
      await rm(keyFile);
      assert.equal(await source.reload(), false);
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));
    } finally {
      await app.stop(1000);
    }
  });

  it("still refuses TLS 1.1 after a certificate reload", async () => {
    const { certFile, keyFile, source } = await filesWithCertA();
    const app = await startWith(source);
    try {
      await replaceFile(keyFile, certB.keyPem);
      await replaceFile(certFile, certB.certPem);
      assert.equal(await source.reload(), true);
      const legacy = { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" } as const;
      await assert.rejects(served(app.webhookPort, ca.certPem, legacy), /alert protocol version/);
      const modern = await served(app.webhookPort, ca.certPem, { maxVersion: "TLSv1.2" });
      assert.equal(modern.protocol, "TLSv1.2");
      assert.equal(modern.fingerprint256, fingerprint(certB.certPem));
    } finally {
      await app.stop(1000);
    }
  });

  it("start() rejects with a clear message for an unusable pair", async () => {
    const dir = await folder();
    const certFile = join(dir, "tls.crt");
    const keyFile = join(dir, "tls.key");
    const logger = createLogger("silent");

    await writeFile(certFile, certA.certPem);
    await writeFile(keyFile, certB.keyPem);
    const mismatched = new FileCertificateSource({ certFile, keyFile, logger });
    await assert.rejects(mismatched.start(), (error: Error) => {
      assert.match(error.message, /^TLS certificate .*tls\.crt and key .*tls\.key are not usable: /);
      assert.match(error.message, /key values mismatch|mismatch/i);
      return true;
    });
    mismatched.stop();

    await writeFile(certFile, "not a certificate\n");
    await writeFile(keyFile, certA.keyPem);
    const garbage = new FileCertificateSource({ certFile, keyFile, logger });
    await assert.rejects(garbage.start(), /tls\.crt and key .*tls\.key are not usable: /);
    garbage.stop();

    const missing = new FileCertificateSource({ certFile: join(dir, "absent.crt"), keyFile, logger });
    await assert.rejects(missing.start(), /absent\.crt/);
    missing.stop();
  });

  it("start() refuses an expired certificate, naming its expiry", async () => {
    const dir = await folder();
    const certFile = join(dir, "tls.crt");
    const keyFile = join(dir, "tls.key");
    const expired = await selfSigned(new Date("2020-01-01T00:00:00Z"), new Date("2021-01-01T00:00:00Z"));
    await writeFile(certFile, expired.certPem);
    await writeFile(keyFile, expired.keyPem);
    const source = new FileCertificateSource({ certFile, keyFile, logger: createLogger("silent") });
    await assert.rejects(
      source.start(),
      /tls\.crt .*not usable: the certificate expired on 2021-01-01T00:00:00\.000Z/,
    );
    source.stop();
  });

  it("keeps serving the last valid pair when an expired or not yet valid one replaces it, logging an error", async () => {
    const { certFile, keyFile } = await certAFiles();
    const { logger, lines } = captureLogger();
    const source = new FileCertificateSource({ certFile, keyFile, logger, pollMs: 600_000 });
    const changes: CertificatePair[] = [];
    source.onChange((pair) => changes.push(pair));
    const app = await startWith(source, logger);
    try {
      const expired = await selfSigned(new Date("2020-01-01T00:00:00Z"), new Date("2021-01-01T00:00:00Z"));
      await replaceFile(keyFile, expired.keyPem);
      await replaceFile(certFile, expired.certPem);
      assert.equal(await source.reload(), false);
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));
      const error = lines.find((line) => line.level === 50);
      assert.ok(error, `an error-level line: ${JSON.stringify(lines)}`);
      assert.equal(error.certFile, certFile);
      assert.equal(error.notAfter, "2021-01-01T00:00:00.000Z");
      assert.match(
        String(error.msg),
        /tls\.crt not loaded: the certificate expired on 2021-01-01T00:00:00\.000Z/,
      );

      const future = await selfSigned(
        new Date(Date.now() + 86_400_000),
        new Date(Date.now() + 2 * 86_400_000),
      );
      await replaceFile(keyFile, future.keyPem);
      await replaceFile(certFile, future.certPem);
      assert.equal(await source.reload(), false);
      assert.ok(lines.some((line) => line.level === 50 && /not valid before/.test(String(line.msg))));
      assert.equal((await served(app.webhookPort, ca.certPem)).fingerprint256, fingerprint(certA.certPem));
      assert.equal(changes.length, 0);
    } finally {
      await app.stop(1000);
    }
  });

  it("checkPair takes the time to check against", async () => {
    const pair = await selfSigned(new Date("2020-01-01T00:00:00Z"), new Date("2021-01-01T00:00:00Z"));
    const cert = { cert: pair.certPem, key: pair.keyPem };
    assert.doesNotThrow(() => checkPair(cert, Date.parse("2020-06-01T00:00:00Z")));
    assert.throws(() => checkPair(cert), /expired on 2021-01-01/);
    assert.throws(() => checkPair(cert, Date.parse("2019-06-01T00:00:00Z")), /not valid before 2020-01-01/);
  });

  it("startApp rejects before listening when the certificate is unusable", async () => {
    const dir = await folder();
    const certFile = join(dir, "tls.crt");
    const keyFile = join(dir, "tls.key");
    await writeFile(certFile, certA.certPem);
    await writeFile(keyFile, certB.keyPem);
    const source = new FileCertificateSource({ certFile, keyFile, logger: createLogger("silent") });
    await assert.rejects(startWith(source), /not usable/);
  });
});

describe("SelfSignedCertificateSource", () => {
  it("writes ca.pem that verifies the served localhost certificate", async () => {
    const dir = join(await folder(), "nested", "self-signed");
    const { logger, lines } = captureLogger();
    const source = new SelfSignedCertificateSource({ folder: dir, logger });
    assert.equal(source.caFile, join(dir, "ca.pem"));
    const app = await startWith(source, logger);
    try {
      const caPem = await readFile(source.caFile, "utf8");
      assert.match(caPem, /^-----BEGIN CERTIFICATE-----/);
      assert.equal((await stat(source.caFile)).mode & 0o777, 0o644);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      const caCert = new X509Certificate(caPem);
      assert.equal(caCert.ca, true);

      // As `curl --cacert ca.pem https://localhost:PORT/…`: the name is checked against localhost.
      const byName = await served(app.webhookPort, caPem, { servername: "localhost" });
      // …and `https://127.0.0.1:PORT/…`: the IP SAN.
      const byAddress = await served(app.webhookPort, caPem);
      assert.equal(byName.fingerprint256, byAddress.fingerprint256);

      const status = await new Promise<number>((resolve, reject) => {
        const req = https.request(
          {
            host: "127.0.0.1",
            port: app.webhookPort,
            path: "/mutate",
            method: "GET",
            ca: caPem,
            agent: false,
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.setTimeout(WAIT_MS, () => req.destroy(new Error("timed out")));
        req.on("error", reject);
        req.end();
      });
      assert.equal(status, 405);

      // Another CA does not vouch for it.
      await assert.rejects(served(app.webhookPort, otherCa.certPem), (error: NodeJS.ErrnoException) => {
        assert.match(String(error.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
        return true;
      });
      // Nor is it valid for another name.
      await assert.rejects(
        served(app.webhookPort, caPem, { servername: "example.com" }),
        /ERR_TLS_CERT_ALTNAME_INVALID|does not match|not in the cert's altnames/,
      );
      assert.ok(lines.some((line) => String(line.msg).includes(`curl --cacert ${source.caFile}`)));
    } finally {
      await app.stop(1000);
    }
  });

  it("makes a new CA on every start, replacing ca.pem", async () => {
    const dir = await folder();
    const logger = createLogger("silent");
    const first = new SelfSignedCertificateSource({ folder: dir, logger });
    await first.start();
    const one = first.current()!;
    const caOne = await readFile(first.caFile, "utf8");
    const second = new SelfSignedCertificateSource({ folder: dir, logger });
    await second.start();
    const two = second.current()!;
    const caTwo = await readFile(second.caFile, "utf8");
    assert.notEqual(caOne, caTwo);
    assert.notEqual(one.cert, two.cert);
    const leafTwo = new X509Certificate(two.cert);
    assert.ok(leafTwo.verify(new X509Certificate(caTwo).publicKey), "the leaf is signed by the CA on disk");
    assert.ok(leafTwo.checkHost("localhost"));
    assert.ok(leafTwo.checkIP("127.0.0.1"));
    assert.ok(leafTwo.checkIP("::1"));
    second.onChange();
    second.stop();
  });
});

/** A self-signed ECDSA certificate for localhost valid from `notBefore` to `notAfter` (past ones included). */
async function selfSigned(notBefore: Date, notAfter: Date): Promise<CertificateAndKey> {
  // Loaded here, after ./authority.ts has loaded the reflect-metadata polyfill it needs.
  const { PemConverter, X509CertificateGenerator } = await import("@peculiar/x509");
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const cert = await X509CertificateGenerator.createSelfSigned(
    { serialNumber: "01", name: "CN=localhost", notBefore, notAfter, signingAlgorithm: algorithm, keys },
    webcrypto,
  );
  const key = PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { certPem: cert.toString("pem"), keyPem: key };
}
