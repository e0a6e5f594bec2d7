/**
 * The registry client (src/registry/client.ts) against real registries: Debian's docker-registry
 * (distribution 2.8) on loopback, plain, behind htpasswd Basic auth and behind token auth with the
 * harness's token server, holding minimal OCI images the harness pushes, and behind a fault proxy
 * that makes it slow, busy, silent or down. Issue 13, "Tests on real registries".
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Credentials, type Presence, RegistryClient } from "../../src/registry/client.ts";
import {
  deleteManifest,
  type FaultProxy,
  type PushedImage,
  pushImage,
  type Registry,
  startFaultProxy,
  startRegistry,
  startTokenServer,
  type TokenServer,
} from "./harness/registries.ts";

const alice = { username: "alice", password: "alice-secret" };
const bob = { username: "bob", password: "bob-secret" };
const tokenLifeSeconds = 2;
const timeoutMs = 500;

// The client's API in one place: registries here are plain HTTP. The client takes credentials
// per check; each test's client stands for one set of them (or none).
const clients: RegistryClient[] = [];
const credentialsOf = new WeakMap<RegistryClient, Credentials>();
function newClient(credentials?: Credentials): RegistryClient {
  const client = new RegistryClient({ insecure: () => true, timeoutMs });
  if (credentials) credentialsOf.set(client, credentials);
  clients.push(client);
  return client;
}
function check(
  client: RegistryClient,
  host: string,
  repository: string,
  reference: string,
): Promise<Presence> {
  return client.checkManifest({ host, repository, reference }, credentialsOf.get(client));
}

/** Polls `read` (bounded, 2 s) until it returns `expected`; the registry logs after it answers. */
async function eventually<T>(read: () => T, expected: T): Promise<T> {
  const deadline = Date.now() + 2000;
  let value = read();
  while (value !== expected && Date.now() < deadline) {
    await sleep(20);
    value = read();
  }
  return value;
}

/** Asserts an unknown answer whose reason matches `reason`. */
function assertUnknown(result: Presence, reason: RegExp): void {
  assert.equal(result.state, "unknown", JSON.stringify(result));
  assert.match(result.state === "unknown" ? result.reason : "", reason);
}

const heads = (registry: Registry) => registry.requests().filter((r) => r.method === "HEAD").length;

describe("the registry client against real registries", () => {
  let plain: Registry;
  let basic: Registry;
  let tokens: TokenServer;
  let tokenAuth: Registry;
  let proxy: FaultProxy;
  let app: PushedImage;
  let multi: PushedImage;
  let basicApp: PushedImage;
  let tokenApp: PushedImage;

  before(async () => {
    tokens = await startTokenServer({ users: [bob], expiresInSeconds: tokenLifeSeconds });
    [plain, basic, tokenAuth] = await Promise.all([
      startRegistry("reg-plain"),
      startRegistry("reg-basic", { auth: { htpasswd: alice } }),
      startRegistry("reg-token", { auth: { token: tokens.registryAuth() } }),
    ]);
    proxy = await startFaultProxy(plain);
    app = await pushImage(plain, "team/app", "v1");
    multi = await pushImage(plain, "team/multi", "v1", {
      platforms: [
        { os: "linux", architecture: "amd64" },
        { os: "linux", architecture: "arm64" },
      ],
    });
    basicApp = await pushImage(basic, "team/app", "v1", { credentials: alice });
    tokenApp = await pushImage(tokenAuth, "team/app", "v1", { credentials: bob });
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all([proxy?.stop(), plain?.stop(), basic?.stop(), tokenAuth?.stop()]);
    await tokens?.stop();
  });

  it("finds an OCI manifest by tag and by digest, with the digest that was pushed", async () => {
    const client = newClient();
    assert.deepEqual(await check(client, plain.host, "team/app", "v1"), {
      state: "present",
      digest: app.digest,
    });
    assert.deepEqual(await check(client, plain.host, "team/app", app.digest), {
      state: "present",
      digest: app.digest,
    });
  });

  it("finds an OCI index by tag, and each platform manifest by digest", async () => {
    const client = newClient();
    assert.equal(multi.manifests.length, 2);
    assert.notEqual(multi.manifests[0]?.digest, multi.manifests[1]?.digest);
    assert.deepEqual(await check(client, plain.host, "team/multi", "v1"), {
      state: "present",
      digest: multi.digest,
    });
    for (const { digest } of multi.manifests) {
      assert.deepEqual(await check(client, plain.host, "team/multi", digest), { state: "present", digest });
    }
  });

  it("reports an unknown tag, an unknown digest and an unknown repository as absent", async () => {
    const client = newClient();
    const missingDigest = `sha256:${"0".repeat(64)}`;
    assert.deepEqual(await check(client, plain.host, "team/app", "v2"), { state: "absent" });
    assert.deepEqual(await check(client, plain.host, "team/app", missingDigest), { state: "absent" });
    assert.deepEqual(await check(client, plain.host, "team/nothing", "v1"), { state: "absent" });
  });

  it("sees a re-pushed tag at its new digest, and a deleted manifest as absent", async () => {
    const client = newClient();
    const first = await pushImage(plain, "team/moving", "v1");
    const second = await pushImage(plain, "team/moving", "v1", { content: "a later build" });
    assert.notEqual(first.digest, second.digest);
    assert.deepEqual(await check(client, plain.host, "team/moving", "v1"), {
      state: "present",
      digest: second.digest,
    });
    // The first build is still there by digest: only the tag moved.
    assert.equal((await check(client, plain.host, "team/moving", first.digest)).state, "present");
    await deleteManifest(plain, "team/moving", second.digest);
    assert.deepEqual(await check(client, plain.host, "team/moving", "v1"), { state: "absent" });
    assert.deepEqual(await check(client, plain.host, "team/moving", second.digest), { state: "absent" });
  });

  it("sees the same image at the same digest in every registry it was pushed to", () => {
    // What a mirror in sync with its upstream looks like; the admission tests rely on it.
    assert.equal(basicApp.digest, app.digest);
    assert.equal(tokenApp.digest, app.digest);
  });

  it("uses Basic credentials on an htpasswd registry, and is unknown without or with wrong ones", async () => {
    assert.deepEqual(await check(newClient(alice), basic.host, "team/app", "v1"), {
      state: "present",
      digest: basicApp.digest,
    });
    assert.deepEqual(await check(newClient(alice), basic.host, "team/app", "v9"), { state: "absent" });
    assertUnknown(await check(newClient(), basic.host, "team/app", "v1"), /401/);
    const wrong = newClient({ ...alice, password: "wrong" });
    assertUnknown(await check(wrong, basic.host, "team/app", "v1"), /401/);
  });

  it("follows the token flow, reuses the token while it lives and fetches a new one after", async () => {
    const client = newClient(bob);
    const issuedBefore = tokens.issued;
    const first = await check(client, tokenAuth.host, "team/app", "v1");
    const issuedAt = Date.now();
    assert.deepEqual(first, { state: "present", digest: tokenApp.digest });
    assert.equal(tokens.issued, issuedBefore + 1);
    const request = tokens.requests.at(-1);
    assert.deepEqual(request, {
      user: "bob",
      service: "imageshift-e2e-registry",
      scopes: ["repository:team/app:pull"],
      status: 200,
    });

    // Within the token's life: one HEAD with the cached token, no token request.
    const headsBefore = await eventually(() => heads(tokenAuth), heads(tokenAuth));
    assert.deepEqual(await check(client, tokenAuth.host, "team/app", "v1"), {
      state: "present",
      digest: tokenApp.digest,
    });
    assert.equal(tokens.issued, issuedBefore + 1);
    assert.equal(await eventually(() => heads(tokenAuth), headsBefore + 1), headsBefore + 1);
    assert.ok(
      Date.now() - issuedAt < tokenLifeSeconds * 1000,
      "the second check ran within the token's life",
    );

    // Just past its life: a new token, and still present.
    await sleep(Math.max(0, issuedAt + tokenLifeSeconds * 1000 + 200 - Date.now()));
    assert.deepEqual(await check(client, tokenAuth.host, "team/app", "v1"), {
      state: "present",
      digest: tokenApp.digest,
    });
    assert.equal(tokens.issued, issuedBefore + 2);
  });

  it("is unknown on a token registry without credentials (the anonymous token grants nothing)", async () => {
    assertUnknown(await check(newClient(), tokenAuth.host, "team/app", "v1"), /401/);
    assert.equal(tokens.requests.at(-1)?.user, undefined);
    assert.equal(tokens.requests.at(-1)?.status, 200);
  });

  it("is unknown on a 429 and a 503 from the registry's front, which the registry never sees", async () => {
    const client = newClient();
    await proxy.normal();
    assert.deepEqual(await check(client, proxy.host, "team/app", "v1"), {
      state: "present",
      digest: app.digest,
    });
    const plainHeads = await eventually(() => heads(plain), heads(plain));
    try {
      await proxy.status(429, 30);
      const seen = proxy.requests;
      assertUnknown(await check(client, proxy.host, "team/app", "v1"), /429/);
      assert.equal(proxy.requests, seen + 1, "one request, no retry");
      await proxy.status(503);
      assertUnknown(await check(client, proxy.host, "team/app", "v1"), /503/);
      await sleep(100);
      assert.equal(heads(plain), plainHeads);
    } finally {
      await proxy.normal();
    }
  });

  it("is unknown within its timeout when the registry is slow or never answers", async () => {
    const client = newClient();
    try {
      for (const fault of [() => proxy.delay(10 * timeoutMs), () => proxy.blackhole()]) {
        await fault();
        const seen = proxy.requests;
        const started = performance.now();
        const result = await check(client, proxy.host, "team/app", "v1");
        const elapsed = performance.now() - started;
        assertUnknown(result, /./);
        assert.ok(
          elapsed >= timeoutMs - 50 && elapsed < timeoutMs + 500,
          `${proxy.mode.kind}: ${elapsed} ms`,
        );
        assert.equal(proxy.requests, seen + 1);
      }
    } finally {
      await proxy.normal();
    }
    // Answers again as soon as the registry does.
    assert.deepEqual(await check(client, proxy.host, "team/app", "v1"), {
      state: "present",
      digest: app.digest,
    });
  });

  it("is unknown at once when the registry is down, and present again when it is back", async () => {
    const client = newClient();
    assert.equal((await check(client, proxy.host, "team/app", "v1")).state, "present");
    try {
      await proxy.down();
      const seen = proxy.requests;
      const started = performance.now();
      const result = await check(client, proxy.host, "team/app", "v1");
      assertUnknown(result, /ECONNREFUSED|socket hang up|ECONNRESET/);
      assert.ok(performance.now() - started < timeoutMs, "refused, not timed out");
      assert.equal(proxy.requests, seen);
    } finally {
      await proxy.normal();
    }
    assert.deepEqual(await check(client, proxy.host, "team/app", "v1"), {
      state: "present",
      digest: app.digest,
    });
  });
});
