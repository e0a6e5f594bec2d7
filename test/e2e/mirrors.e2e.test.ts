/**
 * Issue 13's scenarios ("rewrite only to images the mirror really has") through the real webhook:
 * `imageshift serve --rules` as a child process, over HTTPS, answering AdmissionReviews for pods
 * whose JSON Patch is applied here as the API server would. Behind it, Debian's docker-registry
 * (distribution 2.8) on loopback as the upstream registry and the mirrors (plain, htpasswd Basic
 * auth, token auth with the harness's token server), holding minimal OCI images the harness
 * pushes, and fault proxies that make a mirror down, slow or busy.
 *
 * Each scenario asserts what a user sees (the image patched or kept, the warning, the record's
 * `check`, a strict namespace's refusal) and, where the point is what a registry is spared, the
 * requests counted at the registry or the proxy and the metrics on /metrics. The scenarios need
 * different flags, so three serve processes share one rule folder: `main` (defaults, a breaker
 * after 2 failures, credentials from --registry-config), `short` (a 0.3 s deadline, a 1 s
 * cool-down, no credentials) and `tokens` (a 1 s positive TTL, credentials).
 *
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { makeWebhookCertificates, waitUntil } from "./harness/operator.ts";
import {
  type FaultProxy,
  type PushedImage,
  pushImage,
  type Registry,
  startFaultProxy,
  startRegistry,
  startTokenServer,
  type TokenServer,
} from "./harness/registries.ts";

import {
  alice,
  bob,
  eventually,
  headsFor,
  REFUSED,
  type Served,
  SLOW_MS,
  startServe,
  TOKEN_LIFE_SECONDS,
} from "./harness/serve.ts";

// ---------------------------------------------------------------------------------------------

describe("mirror checks through the real webhook, against real registries", () => {
  let dir: string;
  let tokens: TokenServer;
  let upstream: Registry;
  let mirror: Registry;
  let mirror2: Registry;
  let basic: Registry;
  let tokenMirror: Registry;
  let downProxy: FaultProxy;
  let slowProxy: FaultProxy;
  let busyProxy: FaultProxy;
  let main: Served;
  let short: Served;
  let tokenServe: Served;
  // Upstream's and the mirror's copies for Digest mode.
  let fresh: PushedImage;
  let staleUpstream: PushedImage;
  let staleMirror: PushedImage;
  let pinnedV1: PushedImage;
  let pinnedV2: PushedImage;

  /** The image a pod names at upstream, and the same at another registry. */
  const up = (repository: string) => `${upstream.host}/${repository}`;
  const at = (registry: { host: string }, repository: string) => `${registry.host}/${repository}`;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "imageshift-mirrors-"));
    tokens = await startTokenServer({ users: [bob], expiresInSeconds: TOKEN_LIFE_SECONDS });
    [upstream, mirror, mirror2, basic, tokenMirror] = await Promise.all([
      startRegistry("mirrors-upstream"),
      startRegistry("mirrors-mirror"),
      startRegistry("mirrors-mirror2"),
      startRegistry("mirrors-basic", { auth: { htpasswd: alice } }),
      startRegistry("mirrors-token", { auth: { token: tokens.registryAuth() } }),
    ]);
    [downProxy, slowProxy, busyProxy] = await Promise.all([
      startFaultProxy(mirror),
      startFaultProxy(mirror),
      startFaultProxy(mirror),
    ]);

    // The mirror holds some images; upstream holds what Digest mode compares with.
    await Promise.all(
      [
        "p/app",
        "p/ttl-a",
        "p/ttl-b",
        "p/ttl-c",
        "downkeep/app",
        "downtrust/app",
        "slowkeep/app",
        "slowtrust/app",
        "busy/app",
        "legacy/app",
      ].map((repository) => pushImage(mirror, repository, "v1")),
    );
    await pushImage(mirror2, "n/app", "v1");
    await pushImage(basic, "b/app", "v1", { credentials: alice });
    await pushImage(tokenMirror, "t/app", "v1", { credentials: bob });
    fresh = await pushImage(upstream, "d/fresh", "v1");
    assert.equal((await pushImage(mirror, "d/fresh", "v1")).digest, fresh.digest, "in sync");
    staleUpstream = await pushImage(upstream, "d/stale", "v1");
    staleMirror = await pushImage(mirror, "d/stale", "v1", { content: "an older build" });
    assert.notEqual(staleMirror.digest, staleUpstream.digest);
    pinnedV1 = await pushImage(upstream, "d/pinned", "v1");
    pinnedV2 = await pushImage(upstream, "d/pinned", "v2");
    assert.equal(
      (await pushImage(mirror, "d/pinned", "v1")).digest,
      pinnedV1.digest,
      "the mirror has v1 only",
    );

    const rules = path.join(dir, "rules");
    await mkdir(rules);
    const imageshift = (name: string, verify: object, from: string, to: string, priority = 0) => ({
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name },
      spec: { priority, verify, mappings: { swap: [{ registry: from, target: to }] } },
    });
    const presence = (insecure: { host: string }[], more: object = {}) => ({
      mode: "Presence",
      insecureRegistries: insecure.map((r) => r.host),
      ...more,
    });
    const keep = { whenUnknown: "KeepOriginal" };
    const documents = [
      imageshift("presence", presence([mirror]), up("p"), at(mirror, "p")),
      imageshift("next-first", presence([mirror], { whenAbsent: "NextRule" }), up("n"), at(mirror, "n"), 10),
      imageshift("next-second", presence([mirror2]), up("n"), at(mirror2, "n")),
      imageshift(
        "digest",
        { mode: "Digest", insecureRegistries: [mirror.host, upstream.host] },
        up("d"),
        at(mirror, "d"),
      ),
      imageshift("down-keep", presence([downProxy], keep), up("downkeep"), at(downProxy, "downkeep")),
      imageshift("down-trust", presence([downProxy]), up("downtrust"), at(downProxy, "downtrust")),
      imageshift("slow-keep", presence([slowProxy], keep), up("slowkeep"), at(slowProxy, "slowkeep")),
      imageshift("slow-trust", presence([slowProxy]), up("slowtrust"), at(slowProxy, "slowtrust")),
      imageshift("busy", presence([busyProxy], keep), up("busy"), at(busyProxy, "busy")),
      imageshift("basic", presence([basic], keep), up("b"), at(basic, "b")),
      imageshift("token", presence([tokenMirror], keep), up("t"), at(tokenMirror, "t")),
      {
        apiVersion: "dev.flemzord.fr/v1alpha1",
        kind: "RegistryRewriteRule",
        metadata: {
          name: "legacy",
          annotations: {
            "imageshift.dev/verify": JSON.stringify({ mode: "Presence", insecureRegistries: [mirror.host] }),
          },
        },
        spec: {
          rules: [
            { match: `^${up("legacy").replaceAll(".", "\\.")}/(.*)$`, replace: `${at(mirror, "legacy")}/$1` },
          ],
        },
      },
    ];
    await writeFile(path.join(rules, "rules.yaml"), documents.map((doc) => stringify(doc)).join("---\n"));

    const config = path.join(dir, "config.json");
    const auth = (c: typeof alice) => Buffer.from(`${c.username}:${c.password}`).toString("base64");
    await writeFile(
      config,
      JSON.stringify({
        auths: { [basic.host]: { auth: auth(alice) }, [tokenMirror.host]: { auth: auth(bob) } },
      }),
    );
    const certs = await makeWebhookCertificates(dir);
    [main, short, tokenServe] = await Promise.all([
      startServe("main", certs, ["--rules", rules, "--breaker-failures", "2", "--registry-config", config]),
      startServe("short", certs, [
        "--rules",
        rules,
        "--verify-deadline",
        "0.3s",
        "--registry-timeout",
        "5s",
        "--breaker-failures",
        "2",
        "--breaker-cool-down",
        "1s",
      ]),
      startServe("tokens", certs, [
        "--rules",
        rules,
        "--verify-positive-ttl",
        "1s",
        // Past its TTL an answer is asked again, not served stale: the check itself meets the
        // expired token.
        "--verify-stale",
        "0.1s",
        "--registry-config",
        config,
      ]),
    ]);
  });

  after(async () => {
    await Promise.all([main?.stop(), short?.stop(), tokenServe?.stop()]);
    await Promise.all([downProxy?.stop(), slowProxy?.stop(), busyProxy?.stop()]);
    await Promise.all([upstream, mirror, mirror2, basic, tokenMirror].map((registry) => registry?.stop()));
    await tokens?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("rewrites to the mirror when it has the image, and the record says present", async () => {
    const checksBefore = await main.metric("imageshift_registry_checks_total", {
      registry: mirror.host,
      outcome: "present",
    });
    const answer = await main.admit({ app: `${up("p/app")}:v1` });
    assert.equal(answer.allowed, true);
    assert.deepEqual(answer.images, { app: `${at(mirror, "p/app")}:v1` });
    const rule = "Imageshift/presence spec.mappings.swap[0]";
    assert.deepEqual(answer.record["containers/app"], {
      original: `${up("p/app")}:v1`,
      image: `${at(mirror, "p/app")}:v1`,
      rule,
      check: `${at(mirror, "p/app")}:v1: present [${rule}]`,
    });
    assert.deepEqual(answer.warnings, []);
    assert.equal(await eventually(() => headsFor(mirror, "p/app"), 1), 1, "one HEAD at the mirror");
    assert.equal(
      await main.metric("imageshift_registry_checks_total", { registry: mirror.host, outcome: "present" }),
      checksBefore + 1,
    );
  });

  it("keeps the original when the mirror lacks it, with a warning and the record's check", async () => {
    const absent = { registry: mirror.host, outcome: "absent" };
    const absentBefore = await main.metric("imageshift_registry_checks_total", absent);
    const image = `${up("p/missing")}:v1`;
    const answer = await main.admit({ app: image });
    assert.equal(answer.allowed, true);
    assert.deepEqual(answer.images, { app: image }, "the original image is kept");
    const check = `${at(mirror, "p/missing")}:v1: absent [Imageshift/presence spec.mappings.swap[0]]`;
    assert.deepEqual(answer.record["containers/app"], {
      original: image,
      image,
      rule: "Imageshift/presence spec.mappings.swap[0]",
      check,
    });
    assert.deepEqual(answer.warnings, [
      `imageshift: containers/app: ${image} kept, as its mirror cannot be used: ${check}`,
    ]);
    // The log is written as the answer goes; it reaches this process a moment later.
    const logged = await waitUntil(
      "the fallback's log line",
      () =>
        main
          .logs()
          .find((line) => line.msg === "image kept: its mirror cannot be used" && line.image === image),
      { timeoutMs: 3000, intervalMs: 20 },
    );
    assert.equal(logged.checks, check);
    assert.equal(await main.metric("imageshift_registry_checks_total", absent), absentBefore + 1);
  });

  it("whenAbsent: NextRule passes over a mirror that lacks the image to the next rule's mirror", async () => {
    const answer = await main.admit({ app: `${up("n/app")}:v1` });
    assert.deepEqual(answer.images, { app: `${at(mirror2, "n/app")}:v1` });
    assert.deepEqual(answer.record["containers/app"], {
      original: `${up("n/app")}:v1`,
      image: `${at(mirror2, "n/app")}:v1`,
      rule: "Imageshift/next-second spec.mappings.swap[0]",
      check:
        `${at(mirror, "n/app")}:v1: absent [Imageshift/next-first spec.mappings.swap[0]]; ` +
        `${at(mirror2, "n/app")}:v1: present [Imageshift/next-second spec.mappings.swap[0]]`,
    });
    assert.deepEqual(answer.warnings, []);
    assert.equal(await eventually(() => headsFor(mirror, "n/app"), 1), 1);
    assert.equal(await eventually(() => headsFor(mirror2, "n/app"), 1), 1);
  });

  it("refuses a pod in a strict namespace when a mirror lacks its image, naming the image and the mirror", async () => {
    const missing = `${up("p/strict-missing")}:v1`;
    const refused = await main.admit({ app: `${up("p/app")}:v1`, missing }, { strict: true });
    assert.equal(refused.allowed, false);
    assert.deepEqual(refused.status, {
      code: 403,
      reason: "Forbidden",
      message:
        "imageshift: pod refused in strict namespace team-strict, as an image not rewritten must not run there; " +
        `containers/missing: image "${missing}" not rewritten, as its mirror cannot be used: ` +
        `${at(mirror, "p/strict-missing")}:v1: absent [Imageshift/presence spec.mappings.swap[0]]`,
    });
    // A pod whose images the mirror has is admitted there, rewritten.
    const admitted = await main.admit({ app: `${up("p/app")}:v1` }, { strict: true });
    assert.equal(admitted.allowed, true);
    assert.deepEqual(admitted.images, { app: `${at(mirror, "p/app")}:v1` });
  });

  it("Digest mode uses only the content the original names: a stale tag and a missing digest are not used", async () => {
    const rule = "Imageshift/digest spec.mappings.swap[0]";
    const pinnedMissing = `${up("d/pinned")}@${pinnedV2.digest}`;
    const pinnedPresent = `${up("d/pinned")}@${pinnedV1.digest}`;
    const answer = await main.admit({
      fresh: `${up("d/fresh")}:v1`,
      stale: `${up("d/stale")}:v1`,
      missing: pinnedMissing,
      pinned: pinnedPresent,
    });
    assert.equal(answer.allowed, true);
    assert.deepEqual(answer.images, {
      fresh: `${at(mirror, "d/fresh")}:v1`,
      stale: `${up("d/stale")}:v1`,
      missing: pinnedMissing,
      pinned: `${at(mirror, "d/pinned")}@${pinnedV1.digest}`,
    });
    assert.equal(
      answer.record["containers/fresh"]?.check,
      `${at(mirror, "d/fresh")}:v1: present at upstream's digest ${fresh.digest} [${rule}]`,
    );
    assert.equal(
      answer.record["containers/stale"]?.check,
      `${at(mirror, "d/stale")}:v1: stale: has ${staleMirror.digest}, upstream ${up("d/stale")}:v1 has ${staleUpstream.digest} [${rule}]`,
    );
    assert.equal(answer.record["containers/stale"]?.image, `${up("d/stale")}:v1`);
    assert.equal(
      answer.record["containers/missing"]?.check,
      `${at(mirror, "d/pinned")}@${pinnedV2.digest}: absent [${rule}]`,
    );
    assert.equal(
      answer.record["containers/pinned"]?.check,
      `${at(mirror, "d/pinned")}@${pinnedV1.digest}: present at ${pinnedV1.digest} [${rule}]`,
    );
    assert.equal(answer.warnings.length, 2, JSON.stringify(answer.warnings));
    assert.ok(
      answer.warnings[0]?.startsWith(
        `imageshift: containers/stale: ${up("d/stale")}:v1 kept, as its mirror cannot be used: ${at(mirror, "d/stale")}:v1: stale`,
      ),
      answer.warnings[0],
    );
    assert.ok(answer.warnings[1]?.startsWith(`imageshift: containers/missing: ${pinnedMissing} kept`));
    // Upstream was asked for the tags (the comparison), never for the pinned digests.
    assert.equal(await eventually(() => headsFor(upstream, "d/fresh"), 1), 1);
    assert.equal(await eventually(() => headsFor(upstream, "d/stale"), 1), 1);
    assert.equal(headsFor(upstream, "d/pinned"), 0);
  });

  it("a RegistryRewriteRule's imageshift.dev/verify annotation checks the same way", async () => {
    const rule = "RegistryRewriteRule/legacy spec.rules[0]";
    const answer = await main.admit({ there: `${up("legacy/app")}:v1`, gone: `${up("legacy/gone")}:v1` });
    assert.deepEqual(answer.images, {
      there: `${at(mirror, "legacy/app")}:v1`,
      gone: `${up("legacy/gone")}:v1`,
    });
    assert.equal(
      answer.record["containers/there"]?.check,
      `${at(mirror, "legacy/app")}:v1: present [${rule}]`,
    );
    assert.equal(
      answer.record["containers/gone"]?.check,
      `${at(mirror, "legacy/gone")}:v1: absent [${rule}]`,
    );
    assert.deepEqual(answer.warnings, [
      `imageshift: containers/gone: ${up("legacy/gone")}:v1 kept, as its mirror cannot be used: ${at(mirror, "legacy/gone")}:v1: absent [${rule}]`,
    ]);
  });

  it("uses --registry-config credentials on an htpasswd mirror; without them the check is unknown (401)", async () => {
    const image = `${up("b/app")}:v1`;
    const rule = "Imageshift/basic spec.mappings.swap[0]";
    const withCredentials = await main.admit({ app: image });
    assert.deepEqual(withCredentials.images, { app: `${at(basic, "b/app")}:v1` });
    assert.equal(
      withCredentials.record["containers/app"]?.check,
      `${at(basic, "b/app")}:v1: present [${rule}]`,
    );

    // `short` has no --registry-config; this object keeps the original when unsure.
    const without = await short.admit({ app: image });
    assert.deepEqual(without.images, { app: image });
    assert.match(
      without.record["containers/app"]?.check ?? "",
      /: unknown: 401: Basic auth asked, no credentials \[/,
    );
    assert.equal(without.warnings.length, 1);
    assert.equal(
      await short.metric("imageshift_registry_checks_total", { registry: basic.host, outcome: "unknown" }),
      1,
    );
  });

  it("opens a down registry's circuit after 2 unknown answers: later admissions send nothing and answer at once", async () => {
    const keep = `${up("downkeep/app")}:v1`;
    const trust = `${up("downtrust/app")}:v1`;
    const rule = "Imageshift/down-keep spec.mappings.swap[0]";
    try {
      await downProxy.down();
      for (let i = 0; i < 2; i++) {
        const answer = await main.admit({ keep });
        assert.deepEqual(answer.images, { keep }, "whenUnknown: KeepOriginal");
        assert.match(answer.record["containers/keep"]?.check ?? "", new RegExp(`: unknown: .*${REFUSED}`));
      }
      assert.equal(
        await main.metric("imageshift_registry_breaker_open", { registry: downProxy.host }),
        1,
        "the circuit is open",
      );
      // The registry now accepts requests and never answers: a request would wait for the deadline.
      await downProxy.blackhole();
      const seen = downProxy.requests;
      const answer = await main.admit({ keep, trust });
      assert.ok(answer.ms < 1000, `answered at once (${answer.ms} ms), well before the 2 s deadline`);
      assert.equal(downProxy.requests, seen, "no request reached the registry");
      assert.deepEqual(answer.images, { keep, trust: `${at(downProxy, "downtrust/app")}:v1` });
      assert.match(
        answer.record["containers/keep"]?.check ?? "",
        new RegExp(
          `: unknown: circuit open for ${downProxy.host} after 2 failures; retrying after .* \\[${rule.replace(/[[\]]/g, "\\$&")}\\]$`,
        ),
      );
      assert.match(answer.record["containers/trust"]?.check ?? "", /: unknown: circuit open for /);
      assert.equal(answer.warnings.length, 1, "a warning for the kept image only");
      assert.ok(answer.warnings[0]?.startsWith(`imageshift: containers/keep: ${keep} kept`));
      assert.equal(
        await main.metric("imageshift_registry_checks_total", {
          registry: downProxy.host,
          outcome: "unknown",
        }),
        4,
      );
    } finally {
      await downProxy.normal();
    }
  });

  it("answers within the deadline when a registry is slow, and the late answer fills the cache", async () => {
    const keep = `${up("slowkeep/app")}:v1`;
    const trust = `${up("slowtrust/app")}:v1`;
    try {
      await slowProxy.delay(SLOW_MS);
      const seen = slowProxy.requests;
      const answer = await short.admit({ keep, trust });
      assert.ok(answer.ms < 2000, `answered in ${answer.ms} ms, well under the registry's ${SLOW_MS} ms`);
      assert.equal(slowProxy.requests, seen + 2, "both images asked at once");
      assert.deepEqual(answer.images, { keep, trust: `${at(slowProxy, "slowtrust/app")}:v1` });
      for (const key of ["containers/keep", "containers/trust"])
        assert.match(
          answer.record[key]?.check ?? "",
          /: unknown: no answer within the 300 ms admission deadline \[/,
          key,
        );

      // The requests outlive the deadline (--registry-timeout 5s): their answers are cached.
      await waitUntil(
        "the late answers",
        async () =>
          (await short.metric("imageshift_registry_checks_total", {
            registry: slowProxy.host,
            outcome: "present",
          })) === 2,
        { timeoutMs: SLOW_MS + 5000, intervalMs: 100 },
      );
      const again = await short.admit({ keep, trust });
      assert.equal(slowProxy.requests, seen + 2, "no request: answered from the cache");
      assert.ok(again.ms < 2000, `${again.ms} ms`);
      assert.deepEqual(again.images, {
        keep: `${at(slowProxy, "slowkeep/app")}:v1`,
        trust: `${at(slowProxy, "slowtrust/app")}:v1`,
      });
      assert.equal(
        again.record["containers/keep"]?.check,
        `${at(slowProxy, "slowkeep/app")}:v1: present (cached) [Imageshift/slow-keep spec.mappings.swap[0]]`,
      );
    } finally {
      await slowProxy.normal();
    }
  });

  it("a 429 makes the check unknown, and the open circuit honours Retry-After over its own cool-down", async () => {
    const image = `${up("busy/app")}:v1`;
    try {
      await busyProxy.status(429, 30);
      const seen = busyProxy.requests;
      for (let i = 0; i < 2; i++) {
        const answer = await short.admit({ app: image });
        assert.deepEqual(answer.images, { app: image });
        assert.match(answer.record["containers/app"]?.check ?? "", /: unknown: HTTP 429 \[/);
      }
      assert.equal(busyProxy.requests, seen + 2);
      const opened = Date.now();
      // Past `short`'s 1 s cool-down, within the registry's 30 s.
      await sleep(1500);
      const answer = await short.admit({ app: image });
      assert.equal(busyProxy.requests, seen + 2, "no request while the circuit is open");
      const check = answer.record["containers/app"]?.check ?? "";
      const retry = /circuit open for .* after 2 failures; retrying after (\S+) \[/.exec(check);
      assert.ok(retry, check);
      const retryIn = Date.parse(retry[1] as string) - opened;
      assert.ok(
        retryIn > 25_000 && retryIn <= 31_000,
        `retries ${retryIn} ms after it opened: Retry-After 30`,
      );
      assert.equal(await short.metric("imageshift_registry_breaker_open", { registry: busyProxy.host }), 1);
    } finally {
      await busyProxy.normal();
    }
  });

  it("fetches a new token when the old one expires, and the image is still present", async () => {
    const image = `${up("t/app")}:v1`;
    const rule = "Imageshift/token spec.mappings.swap[0]";
    const issued = tokens.issued;
    const first = await tokenServe.admit({ app: image });
    const firstAt = Date.now();
    assert.deepEqual(first.images, { app: `${at(tokenMirror, "t/app")}:v1` });
    assert.equal(first.record["containers/app"]?.check, `${at(tokenMirror, "t/app")}:v1: present [${rule}]`);
    assert.equal(tokens.issued, issued + 1);
    assert.equal(tokens.requests.at(-1)?.user, "bob", "with the credentials of --registry-config");

    // Past the token's life (2 s) and the positive TTL (1 s): the check asks again.
    await sleep(Math.max(0, firstAt + TOKEN_LIFE_SECONDS * 1000 + 300 - Date.now()));
    const second = await tokenServe.admit({ app: image });
    assert.deepEqual(second.images, { app: `${at(tokenMirror, "t/app")}:v1` });
    assert.equal(second.record["containers/app"]?.check, `${at(tokenMirror, "t/app")}:v1: present [${rule}]`);
    assert.equal(tokens.issued, issued + 2, "a second token");
    assert.deepEqual(tokens.requests.at(-1), {
      user: "bob",
      service: "imageshift-e2e-registry",
      scopes: ["repository:t/app:pull"],
      status: 200,
    });
  });

  it("sends no request for images checked within the TTL: 20 pods of 3 images, 3 HEADs at the mirror", async () => {
    const repositories = ["p/ttl-a", "p/ttl-b", "p/ttl-c"];
    const pod = Object.fromEntries(repositories.map((r, i) => [`c${i}`, `${up(r)}:v1`]));
    const labels = { registry: mirror.host };
    const metric = (name: string, more: Record<string, string> = {}) =>
      main.metric(name, { ...labels, ...more });
    const cachedBefore = await metric("imageshift_registry_checks_total", { outcome: "cached" });
    const requestsBefore = await metric("imageshift_registry_requests_total");
    const hitsBefore = await main.metric("imageshift_registry_cache_lookups_total", { result: "hit" });
    for (let i = 0; i < 20; i++) {
      const answer = await main.admit(pod);
      assert.deepEqual(
        Object.values(answer.images),
        repositories.map((r) => `${at(mirror, r)}:v1`),
      );
      for (const key of Object.keys(answer.record))
        assert.match(
          answer.record[key]?.check ?? "",
          i === 0 ? /: present \[/ : /: present \(cached\) \[/,
          key,
        );
    }
    const heads = () => repositories.reduce((sum, r) => sum + headsFor(mirror, r), 0);
    assert.equal(await eventually(heads, 3), 3);
    await sleep(200);
    assert.equal(heads(), 3, "exactly one HEAD per image, counted at the registry");
    assert.equal(await metric("imageshift_registry_requests_total"), requestsBefore + 3);
    assert.equal(await metric("imageshift_registry_checks_total", { outcome: "cached" }), cachedBefore + 57);
    assert.equal(
      await main.metric("imageshift_registry_cache_lookups_total", { result: "hit" }),
      hitsBefore + 57,
    );
    assert.ok((await main.metric("imageshift_registry_cache_hit_ratio")) > 0.5);
  });
});
