import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { createCertificateAuthority, createServingCertificate } from "../certs/authority.ts";
import { DIGEST, PRESENT, ScriptedRegistry } from "../registry/testing.ts";
import { parseServeConfig } from "./serve.ts";
import { runCaptured } from "./testing.ts";
import { createChecks } from "./verification.ts";

const registry = new ScriptedRegistry();
let dir = "";

before(async () => {
  await registry.start();
  dir = await mkdtemp(path.join(tmpdir(), "imageshift-verify-cli-"));
});
after(async () => {
  await registry.stop();
  await rm(dir, { recursive: true, force: true });
});

async function rulesFile(verify: string): Promise<string> {
  const file = path.join(dir, `rules-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(
    file,
    `apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: mirror }
spec:
  verify: ${verify}
  mappings: { swap: [{ registry: docker.io, target: "${registry.host}" }] }
`,
  );
  return file;
}

describe("imageshift rewrite --verify", () => {
  test("present: rewritten, with what the mirror said", async () => {
    registry.manifests.set("library/nginx:1.25", PRESENT);
    const rules = await rulesFile(`{ mode: Presence, insecureRegistries: ["${registry.host}"] }`);
    const { code, stdout } = await runCaptured("rewrite", "--rules", rules, "--verify", "nginx:1.25");
    assert.equal(code, 0);
    assert.match(stdout, new RegExp(`nginx:1\\.25 -> ${registry.host}/library/nginx:1\\.25`));
    assert.match(stdout, /checked: .*: present \[Imageshift\/mirror spec\.mappings\.swap\[0\]\]/);
  });

  test("absent: kept, exit 1, and the JSON says why", async () => {
    const rules = await rulesFile(`{ mode: Presence, insecureRegistries: ["${registry.host}"] }`);
    const text = await runCaptured("rewrite", "--rules", rules, "--verify", "nginx:9.9");
    assert.equal(text.code, 1);
    assert.match(text.stdout, /nginx:9\.9 kept: its mirror cannot be used: .*library\/nginx:9\.9: absent/);
    const json = await runCaptured("rewrite", "--rules", rules, "--verify", "--output", "json", "nginx:9.9");
    const [result] = JSON.parse(json.stdout) as {
      output: string;
      changed: boolean;
      verify: { kept: boolean };
    }[];
    assert.equal(result?.output, "nginx:9.9");
    assert.equal(result?.changed, false);
    assert.equal(result?.verify.kept, true);
  });

  test("without --verify, no registry is asked", async () => {
    const before = registry.requests.length;
    const rules = await rulesFile(`{ mode: Presence, insecureRegistries: ["${registry.host}"] }`);
    const { code, stdout } = await runCaptured("rewrite", "--rules", rules, "nginx:9.9");
    assert.equal(code, 0);
    assert.match(stdout, /-> .*library\/nginx:9\.9/);
    assert.equal(registry.requests.length, before);
  });

  test("registry flags are checked like serve's", async () => {
    const rules = await rulesFile("{ mode: Presence }");
    const { code, stderr } = await runCaptured(
      "rewrite",
      "--rules",
      rules,
      "--verify",
      "--verify-deadline",
      "1y",
      "a",
    );
    assert.equal(code, 2);
    assert.match(stderr, /--verify-deadline must be a duration/);
  });
});

describe("serve's registry-check flags", () => {
  test("defaults", () => {
    const config = parseServeConfig(["--rules", "examples/"]);
    assert.deepEqual(config?.verification, {
      deadlineMs: 2_000,
      requestTimeoutMs: 5_000,
      positiveTtlMs: 300_000,
      negativeTtlMs: 30_000,
      staleMs: 3_600_000,
      breakerFailures: 5,
      breakerCoolDownMs: 30_000,
      secrets: false,
    });
    assert.equal(parseServeConfig(["--verify-deadline", "0.5s"])?.verification.deadlineMs, 500);
  });

  test("each bad value is refused, naming the flag", () => {
    const refused: [string[], RegExp][] = [
      [["--verify-deadline", "30s"], /--verify-deadline must be at most 25s/],
      [["--verify-negative-ttl", "0s"], /--verify-negative-ttl must be more than 0/],
      [["--breaker-failures", "0"], /--breaker-failures must be a whole number from 1 to 1000/],
      [["--breaker-failures", "x"], /--breaker-failures must be a whole number/],
      [["--rules", "x", "--registry-credentials"], /--registry-credentials is for cluster mode/],
    ];
    for (const [argv, message] of refused)
      assert.throws(() => parseServeConfig(argv), message, argv.join(" "));
  });
});

describe("createChecks", () => {
  const config = parseServeConfig(["--rules", "x"])?.verification;
  assert.ok(config);

  test("a config file's credentials reach the registry; a missing Secret makes the check unknown, saying why", async () => {
    const file = path.join(dir, "config.json");
    const auth = Buffer.from("ci:s3cret").toString("base64");
    await writeFile(file, JSON.stringify({ auths: { [registry.host]: { auth } } }));
    registry.manifests.set("team/app:1", PRESENT);
    const secrets = {
      credentials: () => undefined,
      describeMissing: (source: string | undefined) => `Secret imageshift/${source} not found`,
    };
    const checks = await createChecks({ ...config, configFile: file }, "serve", { secrets: () => secrets });
    try {
      const target = { host: registry.host, repository: "team/app", reference: "1", insecure: true };
      const answer = await checks.checker.check(target);
      assert.deepEqual(answer, { state: "present", digest: DIGEST, cached: false });
      assert.equal(registry.requests.at(-1)?.authorization, "none", "no challenge, no credentials sent");
      const named = await checks.checker.check({ ...target, credentials: "pull" });
      assert.equal(named.state, "unknown");
      assert.match(named.state === "unknown" ? named.reason : "", /Secret imageshift\/pull not found/);
      assert.equal(checks.verification.deadlineMs, config.deadlineMs);
      assert.equal(checks.runnable.name, "registry-checks");
    } finally {
      await checks.runnable.stop();
    }
  });

  test("unreadable or unusable files are usage errors naming the flag", async () => {
    await assert.rejects(
      createChecks({ ...config, configFile: path.join(dir, "none.json") }, "serve"),
      /--registry-config ".*none\.json": ENOENT/,
    );
    const bad = path.join(dir, "bad.json");
    await writeFile(bad, "{");
    await assert.rejects(
      createChecks({ ...config, configFile: bad }, "serve"),
      /--registry-config: .*bad\.json: not JSON/,
    );
    await assert.rejects(
      createChecks({ ...config, caFile: path.join(dir, "ca.pem") }, "serve"),
      /--registry-ca/,
    );
    const big = path.join(dir, "big.json");
    await writeFile(big, "x".repeat(1024 * 1024 + 1));
    await assert.rejects(createChecks({ ...config, configFile: big }, "serve"), /more than 1048576 bytes/);
  });

  test("--registry-ca: a registry whose certificate a private CA signed is reached over HTTPS", async () => {
    const ca = await createCertificateAuthority({ commonName: "private registry CA", validityDays: 1 });
    const leaf = await createServingCertificate(ca, {
      commonName: "127.0.0.1",
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const server = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
      res.writeHead(200, { "docker-content-digest": DIGEST });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const caFile = path.join(dir, "ca.pem");
    await writeFile(caFile, ca.certPem);
    const target = { host, repository: "team/app", reference: "1" };
    const trusting = await createChecks({ ...config, caFile }, "serve");
    const plain = await createChecks(config, "serve");
    try {
      assert.equal((await trusting.checker.check(target)).state, "present");
      const refused = await plain.checker.check(target);
      assert.equal(refused.state, "unknown", "without the CA, the certificate is not trusted");
    } finally {
      await trusting.runnable.stop();
      await plain.runnable.stop();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
