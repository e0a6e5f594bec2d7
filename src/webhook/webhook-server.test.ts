import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import { handleMutate } from "../admission/mutate.ts";
import type { CertificatePair, CertificateSource } from "../certs/certificates.ts";
import { localhostCertificate } from "../certs/testing.ts";
import { loadRules } from "../engine/rules/load.ts";
import type { RuleSource } from "../engine/rules/source.ts";
import { silentLogger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { within } from "../testing.ts";
import { type RunningApp, startApp } from "./app.ts";
import { MAX_BODY_BYTES } from "./body.ts";
import { WebhookServer } from "./webhook-server.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const FIXTURE = readFileSync(join(ROOT, "test", "fixtures", "admission", "pod-create.json"), "utf8");
const FIXTURE_UID = "705ab4f5-6393-11e8-b7cc-42010a800002";
const TIMEOUT_MS = 10_000;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  protocol: string | null;
}

interface RequestOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  tls?: { minVersion?: tls.SecureVersion; maxVersion?: tls.SecureVersion; ciphers?: string };
}

/**
 * One HTTPS request to 127.0.0.1 trusting only `ca`. Resolves once the response is read;
 * an error after the response headers arrived (the server closing while the client still
 * writes a body it refused) does not hide the response.
 */
function request(port: number, ca: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let reply: Reply | undefined;
    const finish = (error?: Error) => {
      if (settled) return;
      if (reply && (!error || reply.status > 0)) {
        settled = true;
        clearTimeout(timer);
        resolve(reply);
        return;
      }
      if (error) {
        settled = true;
        clearTimeout(timer);
        reject(error);
      }
    };
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        ca,
        agent: false,
        method: options.method ?? "POST",
        path: options.path ?? "/mutate",
        headers: options.headers ?? { "content-type": "application/json" },
        ...options.tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const protocol = (res.socket as tls.TLSSocket).getProtocol?.() ?? null;
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          reply = {
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString("utf8"),
            protocol,
          };
          finish();
        });
        res.on("error", (error) => finish(error));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error("request timed out")), TIMEOUT_MS);
    req.on("error", (error) => finish(error));
    req.end(options.body);
  });
}

function postJson(port: number, ca: string, body: string | Buffer, path = "/mutate"): Promise<Reply> {
  return request(port, ca, {
    path,
    body,
    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
  });
}

/** A rule source that always holds the given rules. */
function staticRules(compiled: Awaited<ReturnType<typeof loadRules>>): RuleSource {
  return {
    start: async () => {},
    current: () => compiled,
    onChange: () => {},
    stop: async () => {},
  };
}

function staticCertificate(pair: CertificatePair): CertificateSource {
  return { start: async () => {}, current: () => pair, onChange: () => {}, stop: async () => {} };
}

let caPem = "";
let pair: CertificatePair;
let rules: Awaited<ReturnType<typeof loadRules>>;

before(async () => {
  ({ caPem, pair } = await localhostCertificate("webhook-server test CA"));
  rules = await loadRules(join(ROOT, "examples"));
});

describe("webhook server through startApp", () => {
  let app: RunningApp;
  let port = 0;

  before(async () => {
    app = await startApp({
      rules: staticRules(rules),
      certificates: staticCertificate(pair),
      logger: silentLogger,
      host: "127.0.0.1",
      port: 0,
      metricsHost: "127.0.0.1",
      metricsPort: 0,
    });
    port = app.webhookPort;
    assert.ok(port > 0, "the OS chose a port");
  });

  after(async () => {
    await app?.stop(1000);
  });

  it("answers POST /mutate with an AdmissionReview carrying the uid and a JSON Patch", async () => {
    const reply = await postJson(port, caPem, FIXTURE);
    assert.equal(reply.status, 200);
    assert.match(String(reply.headers["content-type"]), /^application\/json/);
    const review = JSON.parse(reply.text) as {
      apiVersion: string;
      kind: string;
      response: { uid: string; allowed: boolean; patchType?: string; patch?: string };
    };
    assert.equal(review.apiVersion, "admission.k8s.io/v1");
    assert.equal(review.kind, "AdmissionReview");
    assert.equal(review.response.uid, FIXTURE_UID);
    assert.equal(review.response.allowed, true);
    assert.equal(review.response.patchType, "JSONPatch");
    const patch = JSON.parse(Buffer.from(review.response.patch ?? "", "base64").toString("utf8")) as {
      op: string;
      path: string;
      value: unknown;
    }[];
    assert.ok(Array.isArray(patch) && patch.length > 0, "a non-empty JSON Patch");
    assert.deepEqual(
      patch.find((op) => op.path === "/spec/containers/0/image"),
      {
        op: "replace",
        path: "/spec/containers/0/image",
        value: "internal-registry.corp/dockerhub/library/nginx:1.25",
      },
    );
    assert.equal(
      patch.some((op) => op.path === "/spec/containers/2/image"),
      false,
      "registry.k8s.io/pause is not touched",
    );
  });

  it("answers exactly what the handler computes for the same request", async () => {
    const reply = await postJson(port, caPem, FIXTURE);
    const body = JSON.parse(FIXTURE) as { request: Parameters<typeof handleMutate>[0] };
    const expected = await handleMutate(body.request, {
      rules: () => rules.ruleSet,
      namespaceLabels: () => undefined,
      failClosed: false,
      metrics: new Metrics(),
      logger: silentLogger,
    });
    assert.deepEqual(JSON.parse(reply.text), expected.review);
  });

  it("accepts a content type with parameters (application/json; charset=utf-8)", async () => {
    const reply = await request(port, caPem, {
      body: FIXTURE,
      headers: { "content-type": "Application/JSON; charset=utf-8" },
    });
    assert.equal(reply.status, 200);
  });

  it("refuses a wrong content type with 400 naming the type", async () => {
    const reply = await request(port, caPem, {
      body: FIXTURE,
      headers: { "content-type": "text/plain" },
    });
    assert.equal(reply.status, 400);
    const body = JSON.parse(reply.text) as { error: string; status: number };
    assert.equal(body.status, 400);
    assert.match(body.error, /text\/plain/);
    assert.match(body.error, /application\/json/);
  });

  it("refuses a missing content type with 400", async () => {
    const reply = await request(port, caPem, { body: FIXTURE, headers: {} });
    assert.equal(reply.status, 400);
    assert.match(
      (JSON.parse(reply.text) as { error: string }).error,
      /content type "" is not application\/json/,
    );
  });

  it("refuses undecodable JSON with 400", async () => {
    for (const body of ["{", '{"kind": "AdmissionReview",', "not json at all", "\u0000\u0001", ""]) {
      const reply = await postJson(port, caPem, body);
      assert.equal(reply.status, 400, `body ${JSON.stringify(body)}`);
      assert.match((JSON.parse(reply.text) as { error: string }).error, /not valid JSON/);
    }
  });

  it("refuses JSON that is not an AdmissionReview with 400", async () => {
    const fixture = JSON.parse(FIXTURE) as { request: Record<string, unknown> };
    const noUid = structuredClone(fixture);
    delete noUid.request.uid;
    const emptyUid = structuredClone(fixture);
    emptyUid.request.uid = "";
    const cases: [unknown, RegExp][] = [
      [noUid, /request\.uid is missing/],
      [emptyUid, /request\.uid is missing/],
      [{ ...fixture, kind: "Pod" }, /kind is "Pod", expected "AdmissionReview"/],
      [{ ...fixture, apiVersion: "admission.k8s.io/v1beta1" }, /apiVersion is "admission\.k8s\.io\/v1beta1"/],
      [{ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }, /request is missing/],
      [[fixture], /not a JSON object/],
      [null, /not a JSON object/],
      ["AdmissionReview", /not a JSON object/],
      [42, /not a JSON object/],
    ];
    for (const [value, message] of cases) {
      const reply = await postJson(port, caPem, JSON.stringify(value));
      assert.equal(reply.status, 400, JSON.stringify(value).slice(0, 80));
      const body = JSON.parse(reply.text) as { error: string };
      assert.match(body.error, /^not an AdmissionReview: /);
      assert.match(body.error, message);
    }
  });

  it("refuses a body just over the default 7 MiB limit with 413", async () => {
    assert.equal(MAX_BODY_BYTES, 7 * 1024 * 1024);
    const body = Buffer.alloc(MAX_BODY_BYTES + 1, 0x20);
    const reply = await postJson(port, caPem, body);
    assert.equal(reply.status, 413);
    assert.match(
      (JSON.parse(reply.text) as { error: string }).error,
      /7340033 bytes is over the 7340032-byte limit/,
    );
    assert.equal(reply.headers.connection, "close");
  });

  it("accepts a body of exactly the default limit (only the size is checked before parsing)", async () => {
    // The fixture padded with trailing spaces to exactly MAX_BODY_BYTES: valid JSON.
    const padded = Buffer.alloc(MAX_BODY_BYTES, 0x20);
    padded.write(FIXTURE, 0, "utf8");
    const reply = await postJson(port, caPem, padded);
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.text) as { response: { uid: string } }).response.uid, FIXTURE_UID);
  });

  it("refuses GET with 405", async () => {
    const reply = await request(port, caPem, { method: "GET", headers: {} });
    assert.equal(reply.status, 405);
    assert.match((JSON.parse(reply.text) as { error: string }).error, /method GET is not allowed; use POST/);
    const put = await request(port, caPem, { method: "PUT", body: FIXTURE });
    assert.equal(put.status, 405);
  });

  it("answers an unknown path with 404 naming the webhooks", async () => {
    for (const path of ["/", "/nope", "/mutate/extra", "/MUTATE"]) {
      const reply = await request(port, caPem, { path, body: FIXTURE });
      assert.equal(reply.status, 404, path);
      const body = JSON.parse(reply.text) as { error: string };
      assert.match(body.error, /use \/mutate, \/mutate\/strict or \/validate$/);
    }
    // A query string does not change the route.
    const withQuery = await request(port, caPem, { path: "/mutate?timeout=10s", body: FIXTURE });
    assert.equal(withQuery.status, 200);
  });

  it("serves /validate too", async () => {
    const review = {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "u-validate",
        operation: "CREATE",
        resource: { group: "imageshift.dev", version: "v1", resource: "imageshifts" },
        object: {
          apiVersion: "imageshift.dev/v1",
          kind: "Imageshift",
          metadata: { name: "bad" },
          spec: { priority: "high" },
        },
      },
    };
    const reply = await postJson(port, caPem, JSON.stringify(review), "/validate");
    assert.equal(reply.status, 200);
    const body = JSON.parse(reply.text) as { response: { uid: string; allowed: boolean } };
    assert.equal(body.response.uid, "u-validate");
    assert.equal(body.response.allowed, false);
  });

  it("counts refused requests as invalid", async () => {
    await request(port, caPem, { body: FIXTURE, headers: { "content-type": "text/plain" } });
    const text = await app.metrics.registry.getSingleMetricAsString("imageshift_admission_requests_total");
    assert.match(
      text,
      /imageshift_admission_requests_total\{webhook="mutate",operation="",outcome="invalid"\} \d+/,
    );
    assert.match(
      text,
      /imageshift_admission_requests_total\{webhook="unknown",operation="",outcome="invalid"\} \d+/,
    );
  });

  it("survives a flood of garbage and still answers a valid request", async () => {
    const attempts: Promise<unknown>[] = [];
    const settle = (promise: Promise<unknown>) =>
      attempts.push(
        within(
          promise.catch(() => undefined),
          TIMEOUT_MS,
          "garbage",
        ),
      );

    // Random bytes over plain TCP to the TLS port (not a TLS handshake at all).
    for (let i = 0; i < 10; i++)
      settle(
        new Promise<void>((resolve) => {
          const socket = net.connect(port, "127.0.0.1", () => socket.end(randomBytes(2048)));
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
          socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
          socket.resume();
        }),
      );

    // Random bytes inside a good TLS session (not HTTP).
    for (let i = 0; i < 10; i++)
      settle(
        new Promise<void>((resolve) => {
          const socket = tls.connect({ host: "127.0.0.1", port, ca: caPem }, () =>
            socket.end(randomBytes(4096)),
          );
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
          socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
          socket.resume();
        }),
      );

    // Truncated JSON, complete as HTTP: each gets its 400.
    const truncated: Promise<Reply>[] = [];
    for (let i = 0; i < 10; i++) {
      const cut = Math.floor((FIXTURE.length * (i + 1)) / 12);
      truncated.push(postJson(port, caPem, FIXTURE.slice(0, cut)));
    }

    // Clients that announce a body and disconnect half way through it.
    for (let i = 0; i < 10; i++)
      settle(
        new Promise<void>((resolve) => {
          const socket = tls.connect({ host: "127.0.0.1", port, ca: caPem }, () => {
            socket.write(
              `POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${FIXTURE.length}\r\n\r\n`,
            );
            socket.write(FIXTURE.slice(0, 100 + i * 10), () => setTimeout(() => socket.destroy(), 20));
          });
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
          socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
        }),
      );

    // Broken HTTP: a request line that is not HTTP, and a header without a colon.
    for (const raw of ["GARBAGE\r\n\r\n", "POST /mutate HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"])
      settle(
        new Promise<void>((resolve) => {
          const socket = tls.connect({ host: "127.0.0.1", port, ca: caPem }, () => socket.write(raw));
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
          socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
          socket.resume();
        }),
      );

    await Promise.all(attempts);
    for (const reply of await Promise.all(truncated)) {
      assert.equal(reply.status, 400);
      assert.match((JSON.parse(reply.text) as { error: string }).error, /not valid JSON/);
    }

    const reply = await postJson(port, caPem, FIXTURE);
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.text) as { response: { uid: string } }).response.uid, FIXTURE_UID);
  });

  it("refuses TLS 1.1", async () => {
    // The client really offers TLS 1.1 (security level 0 lets OpenSSL do it); the control
    // server below shows that such a client can connect where TLS 1.1 is allowed.
    const legacy = {
      minVersion: "TLSv1" as const,
      maxVersion: "TLSv1.1" as const,
      ciphers: "DEFAULT@SECLEVEL=0",
    };
    const control = https.createServer(
      { cert: pair.cert, key: pair.key, minVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" },
      (_req, res) => res.end("ok"),
    );
    await new Promise<void>((resolve) => control.listen(0, "127.0.0.1", resolve));
    try {
      const controlPort = (control.address() as net.AddressInfo).port;
      const ok = await request(controlPort, caPem, { method: "GET", headers: {}, tls: legacy });
      assert.equal(ok.status, 200);
      assert.equal(ok.protocol, "TLSv1.1");
    } finally {
      control.closeAllConnections();
      await new Promise((resolve) => control.close(resolve));
    }
    await assert.rejects(
      request(port, caPem, { body: FIXTURE, tls: legacy }),
      (error: NodeJS.ErrnoException) => {
        // The server's alert: "tlsv1 alert protocol version" (SSL alert number 70).
        assert.equal(error.code, "EPROTO");
        assert.match(error.message, /alert protocol version/);
        return true;
      },
    );
  });

  it("refuses TLS 1.2 CBC suites (SHA-1 and SHA-2) by default; AEAD suites work", async () => {
    for (const ciphers of ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-SHA256"]) {
      await assert.rejects(
        request(port, caPem, { body: FIXTURE, tls: { maxVersion: "TLSv1.2", ciphers } }),
        (error: NodeJS.ErrnoException) => {
          assert.equal(error.code, "EPROTO", `${ciphers}: ${error.message}`);
          assert.match(error.message, /handshake failure/);
          return true;
        },
        ciphers,
      );
    }
    for (const ciphers of ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]) {
      const reply = await request(port, caPem, { body: FIXTURE, tls: { maxVersion: "TLSv1.2", ciphers } });
      assert.equal(reply.status, 200, ciphers);
    }
  });

  it("takes another cipher list, kept when the certificate changes", async () => {
    const metrics = new Metrics();
    const custom = new WebhookServer({
      tls: pair,
      ciphers: "ECDHE-ECDSA-AES128-SHA:TLS_AES_128_GCM_SHA256",
      metrics,
      logger: silentLogger,
      handlers: {
        "/validate": () => ({
          review: {
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: { uid: "u", allowed: true },
          },
          outcome: "allowed",
        }),
      },
    });
    const customPort = (await custom.listen(0, "127.0.0.1")).port;
    try {
      custom.setCertificate(pair);
      const cbc = await request(customPort, caPem, {
        path: "/validate",
        body: FIXTURE,
        tls: { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-SHA" },
      });
      assert.equal(cbc.status, 200);
      await assert.rejects(
        request(customPort, caPem, {
          path: "/validate",
          body: FIXTURE,
          tls: { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" },
        }),
        /handshake failure/,
      );
    } finally {
      await custom.close(500);
    }
  });

  it("works over TLS 1.2 and TLS 1.3", async () => {
    const tls12 = await request(port, caPem, { body: FIXTURE, tls: { maxVersion: "TLSv1.2" } });
    assert.equal(tls12.status, 200);
    assert.equal(tls12.protocol, "TLSv1.2");
    const tls13 = await request(port, caPem, { body: FIXTURE, tls: { minVersion: "TLSv1.3" } });
    assert.equal(tls13.status, 200);
    assert.equal(tls13.protocol, "TLSv1.3");
  });
});

describe("WebhookServer with a small body limit", () => {
  let server: WebhookServer;
  let port = 0;
  const metrics = new Metrics();

  before(async () => {
    server = new WebhookServer({
      tls: pair,
      metrics,
      logger: silentLogger,
      maxBodyBytes: 1024,
      handlers: {
        "/mutate": (req) =>
          handleMutate(req, {
            rules: () => rules.ruleSet,
            namespaceLabels: () => undefined,
            failClosed: false,
            metrics,
            logger: silentLogger,
          }),
      },
    });
    port = (await server.listen(0, "127.0.0.1")).port;
  });

  after(async () => {
    await server?.close(500);
  });

  it("refuses a declared Content-Length over the limit with 413 and closes the connection", async () => {
    const reply = await postJson(port, caPem, Buffer.alloc(1025, 0x20));
    assert.equal(reply.status, 413);
    assert.match(
      (JSON.parse(reply.text) as { error: string }).error,
      /1025 bytes is over the 1024-byte limit/,
    );
    assert.equal(reply.headers.connection, "close");
  });

  it("accepts a body of exactly the limit", async () => {
    const small = {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "small",
        operation: "DELETE",
        resource: { group: "", version: "v1", resource: "pods" },
      },
    };
    const text = JSON.stringify(small);
    const body = Buffer.alloc(1024, 0x20);
    body.write(text, 0, "utf8");
    const reply = await postJson(port, caPem, body);
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.text) as { response: { uid: string } }).response.uid, "small");
  });

  it("refuses a chunked body (no Content-Length) that grows over the limit with 413", async () => {
    const reply = await request(port, caPem, {
      body: Buffer.alloc(4096, 0x20),
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
    assert.equal(reply.status, 413);
    assert.match((JSON.parse(reply.text) as { error: string }).error, /over the 1024-byte limit/);
  });

  it("answers 413 while the client is still streaming a body over the limit", async () => {
    const reply = await within(
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = https.request(
          {
            host: "127.0.0.1",
            port,
            ca: caPem,
            agent: false,
            method: "POST",
            path: "/mutate",
            headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              text += chunk;
            });
            res.on("end", () => {
              req.destroy();
              resolve({ status: res.statusCode ?? 0, text });
            });
          },
        );
        req.on("error", reject);
        // More than the limit, and the request is never ended by the client.
        req.write(Buffer.alloc(600, 0x20));
        setTimeout(() => req.write(Buffer.alloc(600, 0x20)), 50);
      }),
      TIMEOUT_MS,
      "streamed request",
    );
    assert.equal(reply.status, 413);
    assert.match(reply.text, /over the 1024-byte limit/);
  });

  it("still answers after refusing large bodies", async () => {
    const reply = await postJson(port, caPem, FIXTURE.replaceAll(/\s+/g, " "));
    // The fixture itself is over 1 KiB: refused, but the server answers.
    assert.equal(reply.status, 413);
    const tiny = await postJson(port, caPem, "{}");
    assert.equal(tiny.status, 400);
  });

  it("does not count a client that disconnects mid-body as an internal error", {}, async () => {
    const own = new Metrics();
    const aborting = new WebhookServer({
      tls: pair,
      metrics: own,
      logger: silentLogger,
      handlers: {
        "/mutate": () => {
          throw new Error("not reached");
        },
      },
    });
    const abortPort = (await aborting.listen(0, "127.0.0.1")).port;
    try {
      await within(
        new Promise<void>((resolve) => {
          const socket = tls.connect({ host: "127.0.0.1", port: abortPort, ca: caPem }, () => {
            socket.write(
              "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
              () => setTimeout(() => socket.destroy(), 50),
            );
          });
          socket.on("close", () => resolve());
          socket.on("error", () => resolve());
        }),
        TIMEOUT_MS,
        "aborting client",
      );
      // The server notices the abort shortly after; wait (bounded) until it has counted it.
      const deadline = Date.now() + 2000;
      while ((await own.admissionRequests.get()).values.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 25));
      const errors = (await own.errors.get()).values;
      assert.deepEqual(
        errors.filter((value) => value.labels.kind === "internal" && value.value > 0),
        [],
      );
    } finally {
      await aborting.close(500);
    }
  });

  it("counts a request in flight while its body arrives, and not once it is answered", async () => {
    const own = new Metrics();
    own.stop();
    const server = new WebhookServer({
      tls: pair,
      metrics: own,
      logger: silentLogger,
      handlers: {
        "/mutate": () => {
          throw new Error("answered with 500, once the body is read");
        },
      },
    });
    const serverPort = (await server.listen(0, "127.0.0.1")).port;
    const inFlight = async () => (await own.admissionInFlight.get()).values[0]?.value;
    try {
      const socket = tls.connect({ host: "127.0.0.1", port: serverPort, ca: caPem });
      await new Promise<void>((resolve) => socket.once("secureConnect", () => resolve()));
      socket.write(
        "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{",
      );
      const deadline = Date.now() + 2000;
      while ((await inFlight()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(await inFlight(), 1);
      const answered = new Promise<void>((resolve) => socket.once("data", () => resolve()));
      socket.write("}");
      await within(answered, TIMEOUT_MS, "the answer");
      assert.equal(await inFlight(), 0);
      socket.destroy();
    } finally {
      await server.close(500);
    }
  });

  it("reports the serving certificate's notAfter, and the new one's after setCertificate", async () => {
    const own = new Metrics();
    own.stop();
    const server = new WebhookServer({ tls: pair, metrics: own, logger: silentLogger, handlers: {} });
    const expiry = async () => (await own.certificateExpiry.get()).values[0]?.value;
    const notAfter = (cert: string) => Date.parse(new X509Certificate(cert).validTo) / 1000;
    assert.equal(await expiry(), notAfter(pair.cert));
    own.certificateExpiry.set(0);
    const next = await localhostCertificate("another CA");
    server.setCertificate(next.pair);
    assert.equal(await expiry(), notAfter(next.pair.cert));
  });

  it("does not route paths it has no handler for (/validate here)", async () => {
    const reply = await postJson(port, caPem, "{}", "/validate");
    assert.equal(reply.status, 404);
    assert.match((JSON.parse(reply.text) as { error: string }).error, /use \/mutate/);
  });
});

describe("WebhookServer: what one request, and all at once, may cost", () => {
  let server: WebhookServer;
  let port = 0;
  const metrics = new Metrics();

  before(async () => {
    server = new WebhookServer({
      tls: pair,
      metrics,
      logger: silentLogger,
      maxInFlightBodyBytes: 3 * 1024 * 1024,
      handlers: {
        "/mutate": (req) =>
          handleMutate(req, {
            rules: () => rules.ruleSet,
            namespaceLabels: () => undefined,
            failClosed: false,
            metrics,
            logger: silentLogger,
          }),
      },
    });
    port = (await server.listen(0, "127.0.0.1")).port;
  });

  after(async () => {
    await server?.close(500);
  });

  const attacks: [string, string, RegExp][] = [
    ["200,001 empty objects", `[${"{},".repeat(200_000)}{}]`, /over 200000 JSON objects and arrays/],
    ["200,001 empty arrays", `[${"[],".repeat(200_000)}[]]`, /over 200000 JSON objects and arrays/],
    ["1,000,001 numbers", `[${"0,".repeat(1_000_000)}0]`, /over 1000000 JSON values/],
    ["nesting 101 deep", `${"[".repeat(101)}${"]".repeat(101)}`, /deeper than 100 levels/],
  ];
  for (const [name, body, message] of attacks) {
    it(`refuses ${name} with 413 before parsing`, async () => {
      const reply = await postJson(port, caPem, body);
      assert.equal(reply.status, 413);
      assert.match((JSON.parse(reply.text) as { error: string }).error, message);
    });
  }

  it("accepts a review whose annotation is full of brackets and escaped quotes", async () => {
    const review = JSON.parse(FIXTURE) as { request: { object: { metadata: { annotations: object } } } };
    review.request.object.metadata.annotations = { noise: '{"[\\'.repeat(10_000) };
    const reply = await postJson(port, caPem, JSON.stringify(review));
    assert.equal(reply.status, 200);
  });

  it("answers 429 with Retry-After when bodies in flight would pass the budget, then serves again", async () => {
    // A client that declares 3 MiB less 4 KiB and sends only part of it holds that much of the 3 MiB budget.
    const holder = tls.connect({ host: "127.0.0.1", port, ca: caPem });
    await new Promise<void>((resolve) => holder.once("secureConnect", () => resolve()));
    holder.write(
      `POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${3 * 1024 * 1024 - 4096}\r\n\r\n{`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    try {
      const declared = await postJson(port, caPem, FIXTURE.padEnd(8 * 1024, " "));
      assert.equal(declared.status, 429);
      assert.equal(declared.headers["retry-after"], "1");
      assert.match((JSON.parse(declared.text) as { error: string }).error, /in flight/);
      const chunked = await request(port, caPem, {
        body: FIXTURE.padEnd(8 * 1024, " "),
        headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
      });
      assert.equal(chunked.status, 429);
      const fits = await postJson(port, caPem, FIXTURE);
      assert.equal(fits.status, 200, "a body that fits the rest of the budget is served");
    } finally {
      holder.destroy();
    }
    // The holder's bytes are given back when its request ends.
    const deadline = Date.now() + 2000;
    let after = await postJson(port, caPem, FIXTURE.padEnd(8 * 1024, " "));
    while (after.status === 429 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      after = await postJson(port, caPem, FIXTURE.padEnd(8 * 1024, " "));
    }
    assert.equal(after.status, 200);
  });
});
