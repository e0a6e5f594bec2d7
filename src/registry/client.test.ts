/**
 * The registry client against a scripted registry and token server on loopback (plain HTTP,
 * marked insecure): present, absent, unknown, the Bearer and Basic flows, token caching.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { localhostCertificate } from "../certs/testing.ts";
import { apiHost, MANIFEST_ACCEPT, parseChallenge, RegistryClient } from "./client.ts";

const DIGEST = `sha256:${"d".repeat(64)}`;

/** Repositories: `present` has tag `1`; `slow` never answers; `broken` answers 500; `bearer/*` need a token. */
class ScriptedRegistry {
  readonly requests: { method: string; path: string; accept?: string; authorization?: string }[] = [];
  tokenRequests = 0;
  private readonly server = createServer((req, res) => this.handle(req, res));
  port = 0;

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname === "/token") {
      this.tokenRequests++;
      // Only bearer/app may be pulled: a token for any other scope is refused.
      const ok = url.searchParams.get("scope") === "repository:bearer/app:pull";
      res.writeHead(ok ? 200 : 403, { "content-type": "application/json" });
      res.end(ok ? JSON.stringify({ token: "t0k3n", expires_in: 300 }) : "{}");
      return;
    }
    this.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      ...(req.headers.accept ? { accept: req.headers.accept } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    if (url.pathname.startsWith("/v2/slow/")) return;
    if (url.pathname.startsWith("/v2/broken/")) return void res.writeHead(500).end();
    const repository = url.pathname.replace(/^\/v2\/(.*)\/manifests\/[^/]+$/, "$1");
    if (url.pathname.startsWith("/v2/bearer/") && req.headers.authorization !== "Bearer t0k3n") {
      res.writeHead(401, {
        "www-authenticate": `Bearer realm="http://${this.host}/token",service="scripted",scope="repository:${repository}:pull"`,
      });
      return void res.end();
    }
    if (
      url.pathname.startsWith("/v2/basic/") &&
      req.headers.authorization !== `Basic ${Buffer.from("u:p").toString("base64")}`
    ) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="scripted"' });
      return void res.end();
    }
    if (url.pathname.endsWith("/manifests/1")) {
      res.writeHead(200, {
        "docker-content-digest": DIGEST,
        "content-type": "application/vnd.oci.image.index.v1+json",
      });
      return void res.end();
    }
    res.writeHead(404).end();
  }
}

describe("RegistryClient", () => {
  const registry = new ScriptedRegistry();
  let client: RegistryClient;

  before(async () => {
    await registry.start();
    client = new RegistryClient({
      insecure: (host) => host === registry.host,
      credentials: (host) => (host === registry.host ? { username: "u", password: "p" } : undefined),
      timeoutMs: 300,
    });
  });
  after(async () => {
    client.close();
    await registry.stop();
  });

  const check = (repository: string, reference: string) =>
    client.checkManifest({ host: registry.host, repository, reference });

  test("200 is present with the digest the registry sends; 404 is absent; a HEAD with every manifest type", async () => {
    assert.deepEqual(await check("present", "1"), { state: "present", digest: DIGEST });
    assert.deepEqual(await check("present", "2"), { state: "absent" });
    const last = registry.requests.at(-1);
    assert.equal(last?.method, "HEAD");
    assert.equal(last?.path, "/v2/present/manifests/2");
    assert.equal(last?.accept, MANIFEST_ACCEPT);
  });

  test("a 500 and a registry that never answers are unknown, never absent", async () => {
    assert.deepEqual(await check("broken", "1"), { state: "unknown", reason: "HTTP 500" });
    const slow = await check("slow", "1");
    assert.equal(slow.state, "unknown");
    assert.match(
      slow.state === "unknown" ? slow.reason : "",
      /no answer from 127\.0\.0\.1:\d+ within the timeout/,
    );
  });

  test("Bearer: a token is fetched once for the scope and reused, without a 401 round trip", async () => {
    const before = registry.requests.length;
    assert.deepEqual(await check("bearer/app", "1"), { state: "present", digest: DIGEST });
    assert.equal(registry.tokenRequests, 1);
    assert.deepEqual(
      registry.requests.slice(before).map((r) => r.authorization ?? "none"),
      ["none", "Bearer t0k3n"],
    );
    assert.deepEqual(await check("bearer/app", "2"), { state: "absent" });
    assert.equal(registry.tokenRequests, 1, "cached");
    assert.equal(registry.requests.at(-1)?.authorization, "Bearer t0k3n", "sent at once");
  });

  test("a token the server refuses is unknown", async () => {
    const other = await check("bearer/other", "1");
    assert.deepEqual(other, { state: "unknown", reason: "401: no usable credentials" });
  });

  test("Basic: the registry's credentials are sent after its 401", async () => {
    assert.deepEqual(await check("basic/app", "1"), { state: "present", digest: DIGEST });
    const anonymous = new RegistryClient({ insecure: () => true, timeoutMs: 300 });
    try {
      assert.deepEqual(
        await anonymous.checkManifest({ host: registry.host, repository: "basic/app", reference: "1" }),
        {
          state: "unknown",
          reason: "401: no usable credentials",
        },
      );
    } finally {
      anonymous.close();
    }
  });

  test("requests are counted per host; a refused connection is unknown", async () => {
    assert.ok((client.sent.get(registry.host) ?? 0) >= 8);
    const nowhere = await new RegistryClient({ insecure: () => true, timeoutMs: 300 }).checkManifest({
      host: "127.0.0.1:1",
      repository: "a",
      reference: "1",
    });
    assert.equal(nowhere.state, "unknown");
  });
});

describe("helpers", () => {
  test("parseChallenge reads the scheme and the quoted parameters", () => {
    assert.deepEqual(
      parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'),
      {
        scheme: "bearer",
        params: { realm: "https://auth.docker.io/token", service: "registry.docker.io" },
      },
    );
    assert.deepEqual(parseChallenge(undefined), { scheme: "", params: {} });
  });

  test("Docker Hub is asked at registry-1.docker.io", () => {
    assert.equal(apiHost("docker.io"), "registry-1.docker.io");
    assert.equal(apiHost("index.docker.io"), "registry-1.docker.io");
    assert.equal(apiHost("quay.io"), "quay.io");
  });
});

describe("RegistryClient over HTTPS", () => {
  test("a registry with a private CA, Docker-style `access_token` without expiry, no digest header", async () => {
    const { caPem, pair } = await localhostCertificate("registry test CA");
    let tokens = 0;
    const server = createHttpsServer({ cert: pair.cert, key: pair.key }, (req, res) => {
      const url = new URL(req.url ?? "/", "https://127.0.0.1");
      if (url.pathname === "/token") {
        tokens++;
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ access_token: "abc" }));
      }
      if (req.headers.authorization !== "Bearer abc") {
        const { port } = server.address() as AddressInfo;
        res.writeHead(401, { "www-authenticate": `Bearer realm="https://127.0.0.1:${port}/token"` });
        return void res.end();
      }
      res.writeHead(url.pathname.endsWith("/latest") ? 200 : 404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const client = new RegistryClient({ ca: caPem, timeoutMs: 1000 });
    try {
      const ref = { host: `127.0.0.1:${port}`, repository: "team/app", reference: "latest" };
      assert.deepEqual(await client.checkManifest(ref), { state: "present" });
      assert.deepEqual(await client.checkManifest({ ...ref, reference: "v2" }), { state: "absent" });
      assert.equal(tokens, 1);
      // Without the CA the TLS handshake fails: unknown, naming why.
      const strict = new RegistryClient({ timeoutMs: 1000 });
      const refused = await strict.checkManifest(ref);
      strict.close();
      assert.equal(refused.state, "unknown");
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
