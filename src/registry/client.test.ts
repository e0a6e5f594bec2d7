/**
 * The registry client against a scripted registry and token server on loopback (plain HTTP,
 * marked insecure): present, absent, unknown with Retry-After, the Bearer and Basic flows with
 * credentials per check, tokens cached per credentials, requests counted.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { localhostCertificate } from "../certs/testing.ts";
import {
  apiHost,
  type Credentials,
  credentialIdentity,
  MANIFEST_ACCEPT,
  MAX_COUNTED_HOSTS,
  MAX_RETRY_AFTER_MS,
  MAX_SOCKETS_PER_REGISTRY,
  parseChallenge,
  RegistryClient,
  retryAfterMs,
} from "./client.ts";
import { DIGEST, LoopbackServer } from "./testing.ts";

/**
 * Repositories: `present` has tag `1`; `slow` never answers; `broken` answers 500;
 * `busy/<status>/<retry-after>` answers that status and header; `bearer/*` need a token (only
 * `bearer/app`'s is granted), `basic/*` Basic u:p, `negotiate/*` an auth scheme nobody speaks.
 */
class ScriptedRepositories extends LoopbackServer {
  readonly requests: { method: string; path: string; accept?: string; authorization?: string }[] = [];
  /** The Authorization of each token request ("none" when anonymous). */
  readonly tokenRequests: string[] = [];
  private readonly issued = new Set<string>();

  /** Forgets every token issued: the next request with one is refused, as after a server-side expiry. */
  revokeTokens(): void {
    this.issued.clear();
  }

  protected handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname === "/token") {
      this.tokenRequests.push(req.headers.authorization ?? "none");
      const scope = url.searchParams.get("scope");
      // Only bearer/app may be pulled: a token for any other scope is refused.
      if (scope === "repository:bearer/empty:pull") {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end("{}");
      }
      if (scope !== "repository:bearer/app:pull") return void res.writeHead(403).end("{}");
      const token = `tok.${this.tokenRequests.length}`;
      this.issued.add(token);
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ token, expires_in: 300 }));
    }
    this.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      ...(req.headers.accept ? { accept: req.headers.accept } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    if (url.pathname.startsWith("/v2/slow/")) return;
    if (url.pathname.startsWith("/v2/broken/")) return void res.writeHead(500, { "retry-after": "5" }).end();
    const busy = /^\/v2\/busy\/(\d+)\/([^/]+)\//.exec(url.pathname);
    if (busy) {
      const after = decodeURIComponent(busy[2] as string);
      return void res.writeHead(Number(busy[1]), after === "none" ? {} : { "retry-after": after }).end();
    }
    const repository = url.pathname.replace(/^\/v2\/(.*)\/manifests\/[^/]+$/, "$1");
    const bearer = req.headers.authorization?.replace(/^Bearer /, "");
    if (url.pathname.startsWith("/v2/bearer/") && !this.issued.has(bearer ?? "")) {
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
    if (url.pathname.startsWith("/v2/negotiate/")) {
      res.writeHead(401, { "www-authenticate": "Negotiate" });
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

const U_P = { username: "u", password: "p" };
const basic = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;

describe("RegistryClient", () => {
  const registry = new ScriptedRepositories();
  let client: RegistryClient;
  const requested: string[] = [];

  before(async () => {
    await registry.start();
    client = new RegistryClient({ timeoutMs: 300 });
    client.onRequest((host) => requested.push(host));
  });
  after(async () => {
    client.close();
    await registry.stop();
  });

  /** Checks with u:p unless told otherwise; `null` for an anonymous check. */
  const check = (repository: string, reference: string, credentials: Credentials | null = U_P) =>
    client.checkManifest(
      { host: registry.host, repository, reference, insecure: true },
      credentials ?? undefined,
    );

  test("200 is present with the digest the registry sends; 404 is absent; a HEAD with every manifest type", async () => {
    assert.deepEqual(await check("present", "1"), { state: "present", digest: DIGEST });
    assert.deepEqual(await check("present", "2"), { state: "absent" });
    const last = registry.requests.at(-1);
    assert.equal(last?.method, "HEAD");
    assert.equal(last?.path, "/v2/present/manifests/2");
    assert.equal(last?.accept, MANIFEST_ACCEPT);
  });

  test("a 500 and a registry that never answers are unknown, never absent", async () => {
    assert.deepEqual(
      await check("broken", "1"),
      { state: "unknown", reason: "HTTP 500" },
      "Retry-After only on 429 and 503",
    );
    const slow = await check("slow", "1");
    assert.equal(slow.state, "unknown");
    assert.match(
      slow.state === "unknown" ? slow.reason : "",
      /no answer from 127\.0\.0\.1:\d+ within \d+ ms/,
    );
  });

  test("429 and 503 carry their Retry-After, in ms and at most 300 s, from seconds or a date; none is left out", async () => {
    assert.deepEqual(await check("busy/429/7", "1"), {
      state: "unknown",
      reason: "HTTP 429",
      retryAfterMs: 7_000,
    });
    assert.deepEqual(await check("busy/503/100000", "1"), {
      state: "unknown",
      reason: "HTTP 503",
      retryAfterMs: MAX_RETRY_AFTER_MS,
    });
    assert.deepEqual(await check("busy/429/none", "1"), { state: "unknown", reason: "HTTP 429" });
    const later = new Date(Date.now() + 3_600_000).toUTCString();
    assert.deepEqual(await check(`busy/503/${encodeURIComponent(later)}`, "1"), {
      state: "unknown",
      reason: "HTTP 503",
      retryAfterMs: MAX_RETRY_AFTER_MS,
    });
  });

  test("Bearer: a token is fetched once for the scope and reused, without a 401 round trip", async () => {
    const before = registry.requests.length;
    assert.deepEqual(await check("bearer/app", "1"), { state: "present", digest: DIGEST });
    assert.deepEqual(registry.tokenRequests, [basic("u", "p")], "the token asked for with the credentials");
    assert.deepEqual(
      registry.requests.slice(before).map((r) => r.authorization ?? "none"),
      ["none", "Bearer tok.1"],
    );
    assert.deepEqual(await check("bearer/app", "2"), { state: "absent" });
    assert.equal(registry.tokenRequests.length, 1, "cached");
    assert.equal(registry.requests.at(-1)?.authorization, "Bearer tok.1", "sent at once");
  });

  test("a token is kept per credentials: other credentials, or none, never reuse it", async () => {
    const start = registry.tokenRequests.length;
    assert.equal((await check("bearer/app", "1", { username: "u", password: "other" })).state, "present");
    assert.equal(registry.requests.at(-1)?.authorization, `Bearer tok.${start + 1}`);
    assert.equal((await check("bearer/app", "1", null)).state, "present");
    assert.equal(registry.requests.at(-1)?.authorization, `Bearer tok.${start + 2}`);
    assert.deepEqual(registry.tokenRequests.slice(start), [basic("u", "other"), "none"]);
    // Each identity now has its own token, sent at once.
    for (const [credentials, token] of [
      [U_P, "tok.1"],
      [{ username: "u", password: "other" }, `tok.${start + 1}`],
      [null, `tok.${start + 2}`],
    ] as const) {
      assert.equal((await check("bearer/app", "1", credentials)).state, "present");
      assert.equal(registry.requests.at(-1)?.authorization, `Bearer ${token}`);
    }
    assert.equal(registry.tokenRequests.length, start + 2);
  });

  test("another name for the same registry reuses the token its challenge names", async () => {
    const start = registry.tokenRequests.length;
    const before = registry.requests.length;
    const alias = {
      host: `localhost:${registry.port}`,
      repository: "bearer/app",
      reference: "1",
      insecure: true,
    };
    assert.deepEqual(await client.checkManifest(alias, U_P), { state: "present", digest: DIGEST });
    assert.equal(registry.tokenRequests.length, start, "same realm, service, scope and credentials");
    assert.deepEqual(
      registry.requests.slice(before).map((r) => r.authorization ?? "none"),
      ["none", "Bearer tok.1"],
    );
  });

  test("a cached token the registry no longer takes is fetched anew, once", async () => {
    const start = registry.tokenRequests.length;
    registry.revokeTokens();
    const before = registry.requests.length;
    assert.deepEqual(await check("bearer/app", "1"), { state: "present", digest: DIGEST });
    assert.equal(registry.tokenRequests.length, start + 1);
    assert.deepEqual(
      registry.requests.slice(before).map((r) => r.authorization),
      ["Bearer tok.1", `Bearer tok.${start + 1}`],
    );
  });

  test("a token the server refuses, or an answer without one, is unknown and says why", async () => {
    assert.deepEqual(await check("bearer/other", "1"), {
      state: "unknown",
      reason: "401: the token server answered HTTP 403",
    });
    assert.deepEqual(await check("bearer/empty", "1"), {
      state: "unknown",
      reason: "401: the token server sent no token",
    });
    assert.deepEqual(await check("negotiate/app", "1"), {
      state: "unknown",
      reason: "401: no usable credentials",
    });
  });

  test("Basic: the check's credentials are sent after the 401; without credentials it is unknown", async () => {
    assert.deepEqual(await check("basic/app", "1"), { state: "present", digest: DIGEST });
    assert.deepEqual(await check("basic/app", "1", null), {
      state: "unknown",
      reason: "401: Basic auth asked, no credentials",
    });
    assert.deepEqual(await check("basic/app", "1", { username: "u", password: "wrong" }), {
      state: "unknown",
      reason: "HTTP 401",
    });
  });

  test("the insecure option still marks hosts for plain HTTP; without it a check goes over HTTPS", async () => {
    const marked = new RegistryClient({ insecure: (host) => host === registry.host, timeoutMs: 300 });
    try {
      const ref = { host: registry.host, repository: "present", reference: "1" };
      assert.equal((await marked.checkManifest(ref)).state, "present");
      const tls = await client.checkManifest(ref);
      assert.equal(tls.state, "unknown", "a TLS handshake with a plain HTTP server fails");
    } finally {
      marked.close();
    }
  });

  test("requests are counted per host and reported with the registry; a refused connection is unknown", async () => {
    const defaults = new RegistryClient();
    assert.equal(
      (await defaults.checkManifest({ host: "127.0.0.1:1", repository: "a", reference: "1" })).state,
      "unknown",
    );
    defaults.close();
    assert.ok((client.sent.get(registry.host) ?? 0) >= 8);
    assert.ok(requested.length >= 8);
    assert.deepEqual(new Set(requested), new Set([registry.host, `localhost:${registry.port}`]));
    const nowhere = await new RegistryClient({ timeoutMs: 300 }).checkManifest({
      host: "127.0.0.1:1",
      repository: "a",
      reference: "1",
      insecure: true,
    });
    assert.equal(nowhere.state, "unknown");
  });

  test("at most 1,000 hosts are counted one by one; the rest under `other`", async () => {
    const many = new RegistryClient({ timeoutMs: 300 });
    try {
      // Port 1 on loopback addresses: each refuses at once, and each is a new host.
      const hosts = Array.from(
        { length: MAX_COUNTED_HOSTS + 5 },
        (_, i) => `127.0.${Math.floor(i / 250)}.${(i % 250) + 1}:1`,
      );
      for (let i = 0; i < hosts.length; i += 100)
        await Promise.all(
          hosts
            .slice(i, i + 100)
            .map((host) => many.checkManifest({ host, repository: "a", reference: "1", insecure: true })),
        );
      assert.equal(many.sent.size, MAX_COUNTED_HOSTS + 1);
      assert.equal(many.sent.get("other"), 5);
      assert.equal(many.sent.get(hosts[0] as string), 1);
    } finally {
      many.close();
    }
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

  test("retryAfterMs reads seconds or an HTTP date, bounded; anything else is undefined", () => {
    assert.equal(retryAfterMs("12"), 12_000);
    assert.equal(retryAfterMs([" 0 "]), 0);
    assert.equal(retryAfterMs("301"), MAX_RETRY_AFTER_MS);
    const now = Date.parse("2026-11-30T12:00:00Z");
    assert.equal(retryAfterMs("Mon, 30 Nov 2026 12:00:42 GMT", now), 42_000);
    assert.equal(retryAfterMs("Mon, 30 Nov 2026 11:59:00 GMT", now), 0, "a date past");
    assert.equal(retryAfterMs("Tue, 01 Dec 2026 12:00:00 GMT", now), MAX_RETRY_AFTER_MS);
    for (const junk of [
      undefined,
      "",
      "-1",
      "1.5",
      "1".repeat(20),
      "Mon, 30 Nov 2026 12:00:42 CET",
      "Monday, 30-Nov-26 12:00:42 GMT",
      "Mon, 99 Nov 2026 12:00:42 GMT",
      "tomorrow",
    ])
      assert.equal(retryAfterMs(junk, now), undefined, String(junk));
  });

  test("credentialIdentity names the user and a hash of the password, never the password", () => {
    const identity = credentialIdentity({ username: "robot", password: "hunter2" });
    assert.ok(identity.startsWith("robot\n"));
    assert.ok(!identity.includes("hunter2"));
    assert.match(identity, /\n[0-9a-f]{64}$/);
    assert.notEqual(identity, credentialIdentity({ username: "robot", password: "hunter3" }));
    assert.equal(credentialIdentity(undefined), "");
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
      const { port } = server.address() as AddressInfo;
      if (url.pathname.startsWith("/v2/clear/")) {
        // A token server in clear for a registry reached over HTTPS: the credentials would leak.
        res.writeHead(401, { "www-authenticate": `Bearer realm="http://127.0.0.1:${port}/token"` });
        return void res.end();
      }
      if (req.headers.authorization !== "Bearer abc") {
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
      assert.deepEqual(
        await client.checkManifest({ ...ref, repository: "clear/app" }, { username: "u", password: "p" }),
        {
          state: "unknown",
          reason: `401: token realm http://127.0.0.1:${port} refused: not HTTPS`,
        },
      );
      assert.equal(tokens, 1, "nothing sent to it");
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

describe("RegistryClient against a hostile registry", () => {
  /** A registry whose token endpoint answers 200 and then trickles, or floods, its body. */
  async function hostile(body: "trickle" | "flood") {
    const sockets = new Set<import("node:net").Socket>();
    const timers = new Set<NodeJS.Timeout>();
    const server = createServer((req, res) => {
      const { port } = server.address() as AddressInfo;
      if (!req.url?.startsWith("/token")) {
        res.writeHead(401, { "www-authenticate": `Bearer realm="http://127.0.0.1:${port}/token"` });
        return void res.end();
      }
      res.writeHead(200, { "content-type": "application/json" });
      if (body === "flood") {
        // 16 MiB of JSON-looking bytes, as fast as the socket takes them.
        const chunk = "x".repeat(64 * 1024);
        let sent = 0;
        const pump = () => {
          while (sent < 256 && res.write(chunk)) sent++;
          if (sent < 256) res.once("drain", pump);
          else res.end();
        };
        return pump();
      }
      // One byte every 50 ms, forever: never idle long enough for an idle timeout.
      const timer = setInterval(() => res.write(" "), 50);
      timers.add(timer);
      res.on("close", () => clearInterval(timer));
    });
    server.on("connection", (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
      host: `127.0.0.1:${port}`,
      stop: async () => {
        for (const timer of timers) clearInterval(timer);
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  test("a token answer that trickles forever ends at the timeout: each exchange has a total bound, not only an idle one", async () => {
    const registry = await hostile("trickle");
    const client = new RegistryClient({ timeoutMs: 500, insecure: () => true });
    try {
      const started = Date.now();
      const answer = await client.checkManifest({ host: registry.host, repository: "a/b", reference: "1" });
      assert.equal(answer.state, "unknown");
      assert.ok(Date.now() - started < 5_000, `answered after ${Date.now() - started} ms`);
    } finally {
      client.close();
      await registry.stop();
    }
  });

  test("a token answer larger than 64 KiB is refused, not read to its end", async () => {
    const registry = await hostile("flood");
    const client = new RegistryClient({ timeoutMs: 5_000, insecure: () => true });
    try {
      const answer = await client.checkManifest({ host: registry.host, repository: "a/b", reference: "1" });
      assert.equal(answer.state, "unknown");
      assert.match(answer.state === "unknown" ? answer.reason : "", /larger than 65536 bytes/);
    } finally {
      client.close();
      await registry.stop();
    }
  });
});

describe("RegistryClient connections", () => {
  test(`at most ${MAX_SOCKETS_PER_REGISTRY} requests at once to one registry, however many checks pods ask for`, async () => {
    let open = 0;
    let most = 0;
    // Requests in progress at once: one connection serves one request at a time.
    const server = createServer((_req, res) => {
      open++;
      most = Math.max(most, open);
      // Held a little, so that concurrent checks need concurrent connections.
      setTimeout(() => {
        open--;
        res.writeHead(404).end();
      }, 30);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new RegistryClient({ timeoutMs: 10_000 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          client.checkManifest({ host, repository: "team/app", reference: `v${i}`, insecure: true }),
        ),
      );
      assert.ok(answers.every((answer) => answer.state === "absent"));
      assert.equal(most, MAX_SOCKETS_PER_REGISTRY, `${most} requests at once`);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
