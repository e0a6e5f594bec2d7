/**
 * `SecretKeyring` (secret-keyring.ts) against a scripted API server on 127.0.0.1: which Secrets
 * it asks for, what it serves per Secret and host, what a broken, oversized or missing Secret
 * does (logged by name, last good kept, never the content), and the bound on Secrets held.
 */
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { KubeClient } from "../k8s/client.ts";
import { staticToken } from "../k8s/kubeconfig.ts";
import type { Secret } from "../k8s/objects.ts";
import { captureLogger, type LogLine } from "../telemetry/testing.ts";
import { within } from "../testing.ts";
import {
  DOCKER_CONFIG_KEY,
  DOCKER_CONFIG_MAX_BYTES,
  DOCKER_CONFIG_TYPE,
  SECRETS_MAX,
  SecretKeyring,
} from "./secret-keyring.ts";

const NAMESPACE = "imageshift-system";
const SECRETS = `/api/v1/namespaces/${NAMESPACE}/secrets`;
const PASSWORD = "s3cret-never-logged";

const base64 = (text: string) => Buffer.from(text).toString("base64");

/** A dockerconfigjson Secret; `config` is the decoded `.dockerconfigjson` (an object or raw text). */
function secret(name: string, config: unknown, extra: { uid?: string; type?: string } = {}): Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace: NAMESPACE, uid: extra.uid ?? `uid-${name}` },
    type: extra.type ?? DOCKER_CONFIG_TYPE,
    data: {
      [DOCKER_CONFIG_KEY]: base64(typeof config === "string" ? config : JSON.stringify(config)),
      other: base64("not read"),
    },
  };
}

const auths = (entries: Record<string, unknown>) => ({ auths: entries });
const login = (user: string, password = PASSWORD) => ({ auth: base64(`${user}:${password}`) });

async function until(what: string, probe: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("SecretKeyring", () => {
  /** The Secrets the list returns; `push` sends watch events to the open watch. */
  let listed: Secret[] = [];
  let listStatus = 200;
  let version = 1;
  let watch: ServerResponse | undefined;
  const requests: URL[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    requests.push(url);
    res.writeHead(url.pathname === SECRETS ? listStatus : 404, { "content-type": "application/json" });
    if (url.pathname !== SECRETS || listStatus !== 200) {
      res.end(JSON.stringify({ kind: "Status", code: listStatus, message: "forbidden by the script" }));
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      watch = res;
      res.flushHeaders();
      return;
    }
    const items = listed.map((item) => ({
      ...item,
      metadata: { ...item.metadata, resourceVersion: String(version++) },
    }));
    res.end(JSON.stringify({ metadata: { resourceVersion: String(version++) }, items }));
  });
  let client: KubeClient;
  const stops: (() => Promise<void>)[] = [];

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    client = new KubeClient({
      server: `http://127.0.0.1:${port}`,
      credential: staticToken(undefined),
      origin: "unit",
    });
  });

  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    watch?.destroy();
    watch = undefined;
    listed = [];
    listStatus = 200;
    requests.length = 0;
  });

  after(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  async function started(secrets: Secret[]) {
    listed = secrets;
    const { logger, lines } = captureLogger();
    const keyring = new SecretKeyring({
      client,
      namespace: NAMESPACE,
      logger,
      retry: { minBackoffMs: 10, maxBackoffMs: 20 },
    });
    stops.push(() => keyring.stop());
    await within(keyring.start(), 2000, "start");
    /** Sends one watch event, then waits until `applied` holds. */
    const push = async (type: "ADDED" | "MODIFIED" | "DELETED", object: Secret, applied: () => boolean) => {
      await until("the watch", () => watch !== undefined);
      const changed = { ...object, metadata: { ...object.metadata, resourceVersion: String(version++) } };
      watch?.write(`${JSON.stringify({ type, object: changed })}\n`);
      await until(`the ${type} event of ${object.metadata?.name}`, applied);
    };
    return { keyring, lines, push };
  }

  const errors = (lines: LogLine[]) => lines.filter((line) => line.level === 50);
  const neverLogged = (lines: LogLine[]) =>
    assert.ok(!JSON.stringify(lines).includes(PASSWORD), "a password reached the log");

  test("lists and watches dockerconfigjson Secrets of its own namespace only", async () => {
    const { keyring } = await started([]);
    await until("the watch", () => watch !== undefined);
    assert.ok(requests.length >= 2);
    for (const url of requests) {
      assert.equal(url.pathname, SECRETS);
      assert.equal(url.searchParams.get("fieldSelector"), `type=${DOCKER_CONFIG_TYPE}`);
    }
    assert.equal(keyring.notReady(), undefined);
    assert.equal(keyring.name, "registry-credentials");
  });

  test("serves each Secret's entry for a host, Docker Hub's aliases folded; nothing without a source", async () => {
    const { keyring, lines } = await started([
      secret(
        "mirror",
        auths({ "https://index.docker.io/v1/": login("hub"), "Registry.Corp:5000": login("corp") }),
      ),
      secret("other", auths({ "registry.corp:5000": { username: "o", password: "p" } })),
    ]);
    assert.deepEqual(keyring.credentials("mirror", "registry-1.docker.io"), {
      username: "hub",
      password: PASSWORD,
    });
    assert.deepEqual(keyring.credentials("mirror", "REGISTRY.corp:5000"), {
      username: "corp",
      password: PASSWORD,
    });
    assert.deepEqual(keyring.credentials("other", "registry.corp:5000"), { username: "o", password: "p" });
    assert.equal(keyring.credentials("mirror", "quay.io"), undefined, "no entry for that host");
    assert.equal(keyring.credentials(undefined, "registry.corp:5000"), undefined, "no source named");
    assert.equal(keyring.credentials("absent", "registry.corp:5000"), undefined);
    assert.equal(keyring.has("mirror"), true);
    assert.equal(keyring.describeMissing("mirror"), undefined);
    assert.equal(keyring.describeMissing(undefined), undefined);
    const loaded = lines.filter((line) => line.msg === "registry credentials loaded");
    assert.deepEqual(
      loaded.map((line) => [line.secret, line.registries]),
      [
        [`${NAMESPACE}/mirror`, 2],
        [`${NAMESPACE}/other`, 1],
      ],
    );
    neverLogged(lines);
  });

  test("a Secret that is not found is described by name, type and namespace", async () => {
    const { keyring } = await started([]);
    assert.equal(keyring.has("regcred"), false);
    assert.equal(
      keyring.describeMissing("regcred"),
      `Secret "${NAMESPACE}/regcred" of type ${DOCKER_CONFIG_TYPE} not found in namespace "${NAMESPACE}"`,
    );
  });

  test("watch events add, replace and remove credentials", async () => {
    const { keyring, push, lines } = await started([]);
    const user = () => keyring.credentials("mirror", "registry.corp")?.username;
    await push(
      "ADDED",
      secret("mirror", auths({ "registry.corp": login("first") })),
      () => user() === "first",
    );
    await push(
      "MODIFIED",
      secret("mirror", auths({ "registry.corp": login("second") })),
      () => user() === "second",
    );
    await push("DELETED", secret("mirror", auths({})), () => !keyring.has("mirror"));
    assert.equal(user(), undefined);
    assert.match(keyring.describeMissing("mirror") ?? "", /not found in namespace/);
    assert.ok(
      lines.some(
        (line) => line.msg === "registry credentials removed" && line.secret === `${NAMESPACE}/mirror`,
      ),
    );
  });

  test("an edit that breaks a Secret keeps its last good version serving, logged once by name without content", async () => {
    const { keyring, push, lines } = await started([
      secret("mirror", auths({ "registry.corp": login("good") })),
    ]);
    await push(
      "MODIFIED",
      secret("mirror", auths({ "registry.corp": { auth: base64(`no-colon-${PASSWORD}`) } })),
      () => errors(lines).length === 1,
    );
    assert.equal(keyring.credentials("mirror", "registry.corp")?.username, "good", "the last good version");
    assert.equal(keyring.has("mirror"), true);
    assert.equal(keyring.describeMissing("mirror"), undefined, "it still serves");
    const [logged, ...more] = errors(lines);
    assert.equal(logged?.msg, "registry credentials unusable; keeping the last good version of the Secret");
    assert.equal(logged?.secret, `${NAMESPACE}/mirror`);
    assert.match(
      String(logged?.problem),
      /^Secret "imageshift-system\/mirror" \.dockerconfigjson: auths\["registry\.corp"\]: "auth" is not base64/,
    );
    assert.deepEqual(more, []);
    neverLogged(lines);

    // Another Secret's event rebuilds everything: the broken version is not logged again.
    await push("ADDED", secret("other", auths({})), () => keyring.has("other"));
    assert.equal(errors(lines).length, 1);
    // A new broken version is.
    await push("MODIFIED", secret("mirror", "{not json"), () => errors(lines).length === 2);
    assert.match(String(errors(lines)[1]?.problem), /\.dockerconfigjson: not JSON$/);
    assert.equal(keyring.credentials("mirror", "registry.corp")?.username, "good");
    // Fixed: the new version serves.
    await push(
      "MODIFIED",
      secret("mirror", auths({ "registry.corp": login("fixed") })),
      () => keyring.credentials("mirror", "registry.corp")?.username === "fixed",
    );
  });

  test("a Secret unusable from the start serves nothing, and says why", async () => {
    const { keyring, lines } = await started([secret("broken", { notAuths: {} })]);
    assert.equal(keyring.has("broken"), false);
    assert.equal(keyring.credentials("broken", "registry.corp"), undefined);
    assert.equal(
      keyring.describeMissing("broken"),
      `Secret "${NAMESPACE}/broken" .dockerconfigjson: no "auths" object`,
    );
    assert.equal(errors(lines)[0]?.msg, "registry credentials unusable; the Secret serves no credentials");
  });

  test("a Secret deleted and re-created broken does not serve its predecessor's credentials", async () => {
    const { keyring, push } = await started([secret("mirror", auths({ "registry.corp": login("old") }))]);
    // A relist can show the re-created Secret without the deletion in between: the uid tells.
    await push("MODIFIED", secret("mirror", "{", { uid: "uid-new" }), () => !keyring.has("mirror"));
    assert.equal(keyring.credentials("mirror", "registry.corp"), undefined);
    assert.match(keyring.describeMissing("mirror") ?? "", /not JSON/);
  });

  test("bounds: a .dockerconfigjson over 64 KiB is refused without decoding; another type or no key is refused", async () => {
    const big = secret("big", auths({ "registry.corp": login("u", "x".repeat(DOCKER_CONFIG_MAX_BYTES)) }));
    const justOver = secret("just-over", auths({ "registry.corp": login("u", "") }));
    // Padded with spaces to one byte over the bound: decoded length decides, not the base64 length.
    const text = JSON.stringify(auths({ "registry.corp": login("u") }));
    justOver.data = { [DOCKER_CONFIG_KEY]: base64(text.padEnd(DOCKER_CONFIG_MAX_BYTES + 1, " ")) };
    const atBound = secret("at-bound", "");
    atBound.data = { [DOCKER_CONFIG_KEY]: base64(text.padEnd(DOCKER_CONFIG_MAX_BYTES, " ")) };
    const opaque = secret("opaque", auths({}), { type: "Opaque" });
    const noKey = secret("no-key", auths({}));
    noKey.data = {};
    const { keyring, lines } = await started([big, justOver, atBound, opaque, noKey]);
    assert.match(keyring.describeMissing("big") ?? "", /\.dockerconfigjson is \d+ bytes, more than 65536$/);
    assert.equal(
      keyring.describeMissing("just-over"),
      `Secret "${NAMESPACE}/just-over": .dockerconfigjson is 65537 bytes, more than 65536`,
    );
    assert.equal(
      keyring.credentials("at-bound", "registry.corp")?.username,
      "u",
      "64 KiB exactly is accepted",
    );
    assert.equal(
      keyring.describeMissing("opaque"),
      `Secret "${NAMESPACE}/opaque": type "Opaque", not ${DOCKER_CONFIG_TYPE}`,
    );
    assert.equal(keyring.describeMissing("no-key"), `Secret "${NAMESPACE}/no-key": no .dockerconfigjson key`);
    assert.equal(errors(lines).length, 4);
    neverLogged(lines);
  });

  test(`at most ${SECRETS_MAX} Secrets held: the ones past the bound are refused by name, those in use keep their place`, async () => {
    const names = Array.from({ length: SECRETS_MAX + 1 }, (_, i) => `s${String(i + 1).padStart(3, "0")}`);
    const { keyring, lines, push } = await started(
      names.map((name) => secret(name, auths({ "registry.corp": login(name) }))),
    );
    assert.equal(keyring.credentials("s256", "registry.corp")?.username, "s256");
    assert.equal(keyring.credentials("s257", "registry.corp"), undefined);
    assert.equal(
      keyring.describeMissing("s257"),
      `Secret "${NAMESPACE}/s257": not used, more than ${SECRETS_MAX} Secrets of type ${DOCKER_CONFIG_TYPE} in namespace "${NAMESPACE}"`,
    );
    const refused = errors(lines);
    assert.equal(refused.length, 1);
    assert.deepEqual(refused[0]?.first, ["s257"]);
    assert.equal(refused[0]?.refused, 1);

    // A new Secret that sorts first does not push one in use out.
    await push(
      "ADDED",
      secret("a-new", auths({ "registry.corp": login("new") })),
      () => errors(lines).length === 2,
    );
    assert.equal(keyring.credentials("a-new", "registry.corp"), undefined);
    assert.equal(keyring.credentials("s001", "registry.corp")?.username, "s001");
    assert.equal(keyring.credentials("s256", "registry.corp")?.username, "s256");
    assert.deepEqual(errors(lines)[1]?.first, ["a-new", "s257"]);
    // One in use deleted: a place is free, the first refused by name takes it.
    await push("DELETED", secret("s100", auths({})), () => keyring.has("a-new"));
    assert.equal(keyring.credentials("a-new", "registry.corp")?.username, "new");
    assert.equal(keyring.credentials("s257", "registry.corp"), undefined);
  });

  test("not ready, with the namespace named, until the first list succeeds", async () => {
    listStatus = 403;
    const { keyring, lines } = await started([]);
    assert.equal(
      keyring.notReady(),
      `registry credentials: Secrets in namespace "${NAMESPACE}" not listed yet`,
    );
    assert.equal(
      keyring.describeMissing("regcred"),
      `Secret "${NAMESPACE}/regcred": registry credentials not listed yet`,
    );
    assert.ok(lines.some((line) => line.msg === "watch failed; keeping the last known objects and retrying"));
    listStatus = 200;
    await until("the list", () => keyring.notReady() === undefined);
  });
});
