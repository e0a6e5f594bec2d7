/**
 * Docker config parsing (every shape `docker login` and Kubernetes write, and the broken ones,
 * with errors that never carry a secret), the host a config key names, and the static keyring.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  configHost,
  keyringHost,
  MAX_CONFIG_ENTRIES,
  NO_CREDENTIALS,
  parseDockerConfig,
  StaticKeyring,
} from "./credentials.ts";

const b64 = (text: string) => Buffer.from(text).toString("base64");
const config = (auths: unknown) => JSON.stringify({ auths });

/** The message parseDockerConfig throws for `text`. */
function failure(text: string): string {
  try {
    parseDockerConfig(text, "secret imageshift/pull");
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail("parsed");
}

describe("parseDockerConfig", () => {
  test("`auth` (base64 of user:password, the password may hold colons) and username with password", () => {
    const parsed = parseDockerConfig(
      config({
        "registry.corp:5000": { auth: b64("robot:pa:ss") },
        "https://quay.io/v2/": { username: "quay-bot", password: "q" },
      }),
      "x",
    );
    assert.deepEqual(
      [...parsed],
      [
        ["registry.corp:5000", { username: "robot", password: "pa:ss" }],
        ["quay.io", { username: "quay-bot", password: "q" }],
      ],
    );
  });

  test("Docker Hub's legacy key `https://index.docker.io/v1/` is docker.io", () => {
    const parsed = parseDockerConfig(config({ "https://index.docker.io/v1/": { auth: b64("me:pw") } }), "x");
    assert.deepEqual([...parsed.keys()], ["docker.io"]);
  });

  test("an empty entry (a credential helper holds the secret) gives none, the others still count", () => {
    const parsed = parseDockerConfig(
      config({ "https://index.docker.io/v1/": {}, "ghcr.io": { auth: b64("a:b") } }),
      "x",
    );
    assert.deepEqual([...parsed.keys()], ["ghcr.io"]);
  });

  test("not JSON, no auths object, an entry not an object: errors naming where", () => {
    assert.equal(failure("{"), "secret imageshift/pull: not JSON");
    assert.equal(failure("null"), 'secret imageshift/pull: no "auths" object');
    assert.equal(failure("{}"), 'secret imageshift/pull: no "auths" object');
    assert.equal(failure(config([])), 'secret imageshift/pull: no "auths" object');
    assert.equal(failure(config({ "a.io": "x" })), 'secret imageshift/pull: auths["a.io"]: not an object');
    assert.equal(failure(config({ "a.io": null })), 'secret imageshift/pull: auths["a.io"]: not an object');
  });

  test("a bad entry names the entry, and never the password", () => {
    const password = "s3cr3t-passw0rd";
    for (const [entry, message] of [
      [{ username: "u" }, 'neither "auth" nor "username" and "password"'],
      [{ username: "u", password: 7 }, 'neither "auth" nor "username" and "password"'],
      [{ auth: 42 }, 'neither "auth" nor "username" and "password"'],
      [{ auth: b64(password) }, '"auth" is not base64 of "username:password"'],
      [{ auth: b64(`:${password}`) }, '"auth" is not base64 of "username:password"'],
      [{ auth: "" }, '"auth" is not base64 of "username:password"'],
    ] as const) {
      const text = failure(config({ "registry.corp\n": entry }));
      assert.equal(text, `secret imageshift/pull: auths["registry.corp\\u000a"]: ${message}`);
      assert.ok(!text.includes(password) && !text.includes(b64(password)));
    }
  });

  test(`at most ${MAX_CONFIG_ENTRIES} registries`, () => {
    const entries = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`r${i}.io`, { auth: b64("u:p") }]));
    assert.equal(parseDockerConfig(config(entries(MAX_CONFIG_ENTRIES)), "x").size, MAX_CONFIG_ENTRIES);
    assert.equal(
      failure(config(entries(MAX_CONFIG_ENTRIES + 1))),
      `secret imageshift/pull: ${MAX_CONFIG_ENTRIES + 1} registries, more than ${MAX_CONFIG_ENTRIES}`,
    );
  });
});

describe("hosts", () => {
  test("configHost strips the scheme and path, lower-cases, and folds Docker Hub's names", () => {
    assert.equal(configHost("https://index.docker.io/v1/"), "docker.io");
    assert.equal(configHost("registry-1.docker.io"), "docker.io");
    assert.equal(configHost("HTTP://Registry.Corp:5000/v2/"), "registry.corp:5000");
    assert.equal(configHost("ghcr.io"), "ghcr.io");
    assert.equal(configHost("localhost:5000/some/path"), "localhost:5000");
  });

  test("keyringHost folds Docker Hub's names and case, nothing else", () => {
    assert.equal(keyringHost("index.docker.io"), "docker.io");
    assert.equal(keyringHost("Docker.IO"), "docker.io");
    assert.equal(keyringHost("Quay.io:443"), "quay.io:443");
  });
});

describe("keyrings", () => {
  test("StaticKeyring answers every source from one config, by host, Docker Hub's aliases folded", () => {
    const keyring = new StaticKeyring(
      parseDockerConfig(
        config({
          "https://index.docker.io/v1/": { auth: b64("hub:h") },
          "Registry.Corp": { auth: b64("c:p") },
        }),
        "x",
      ),
    );
    assert.deepEqual(keyring.credentials(undefined, "registry-1.docker.io"), {
      username: "hub",
      password: "h",
    });
    assert.deepEqual(keyring.credentials("any-secret", "docker.io"), { username: "hub", password: "h" });
    assert.deepEqual(keyring.credentials(undefined, "registry.corp"), { username: "c", password: "p" });
    assert.equal(
      keyring.credentials(undefined, "registry.corp:5000"),
      undefined,
      "the port is part of the host",
    );
  });

  test("NO_CREDENTIALS has none for anyone", () => {
    assert.equal(NO_CREDENTIALS.credentials(undefined, "docker.io"), undefined);
    assert.equal(NO_CREDENTIALS.credentials("s", "registry.corp"), undefined);
  });
});
