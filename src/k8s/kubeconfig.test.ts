/**
 * `kubeconfig.ts`: where the cluster connection comes from ($KUBECONFIG, ~/.kube/config,
 * in-cluster), how several kubeconfig files merge, the settings refused with an error, and the
 * credentials (token files re-read, exec plugins run and cached, static tokens).
 *
 * No network: the servers named here are never contacted, nothing connects anywhere. Every test
 * passes its own `env` and service-account directory; `process.env` is never changed. Exec
 * plugins are a small Node script run as `process.execPath script.mjs`, told what to do through
 * the kubeconfig's `env` entries.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { ConfigError } from "../errors.ts";
import {
  type ClusterConnection,
  execPlugin,
  inCluster,
  loadClusterConnection,
  staticToken,
  tokenFile,
} from "./kubeconfig.ts";

type ExecConfig = Parameters<typeof execPlugin>[0];

/**
 * The exec plugin. It counts its runs (PLUGIN_COUNTER, one character a run), records what it was
 * given (PLUGIN_RECORD), fails with the content of PLUGIN_FAIL_FILE on stderr while that file
 * exists, prints PLUGIN_STDOUT verbatim when set, and otherwise prints an ExecCredential whose
 * token is `${PLUGIN_TOKEN}-${run}`, expiring PLUGIN_EXPIRES_IN_MS from now when set.
 */
const PLUGIN_SOURCE = `
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
const env = process.env;
let run = 1;
if (env.PLUGIN_COUNTER) {
  appendFileSync(env.PLUGIN_COUNTER, "x");
  run = readFileSync(env.PLUGIN_COUNTER, "utf8").length;
}
if (env.PLUGIN_RECORD) {
  writeFileSync(env.PLUGIN_RECORD, JSON.stringify({ execInfo: env.KUBERNETES_EXEC_INFO, extra: env.PLUGIN_EXTRA ?? null }));
}
if (env.PLUGIN_FAIL_FILE && existsSync(env.PLUGIN_FAIL_FILE)) {
  process.stderr.write(readFileSync(env.PLUGIN_FAIL_FILE, "utf8"));
  process.exit(1);
}
if (env.PLUGIN_STDOUT !== undefined) {
  process.stdout.write(env.PLUGIN_STDOUT);
} else {
  const status = { token: (env.PLUGIN_TOKEN ?? "exec-token") + "-" + run };
  if (env.PLUGIN_EXPIRES_IN_MS) {
    status.expirationTimestamp = new Date(Date.now() + Number(env.PLUGIN_EXPIRES_IN_MS)).toISOString();
  }
  process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status }));
}
`;

let dir: string;
/** A HOME without .kube/config. */
let emptyHome: string;
/** A HOME with .kube/config naming https://home.invalid:6443. */
let home: string;
/** A service-account directory with token and ca.crt. */
let serviceAccount: string;
/** A service-account directory that does not exist. */
let noServiceAccount: string;
let pluginScript: string;
let unique = 0;

/** A fresh path in the temp dir. */
function fresh(name: string): string {
  unique += 1;
  return path.join(dir, `${unique}-${name}`);
}

/** A kubeconfig with one cluster `c`, one user `u` (if given) and the context `ctx` joining them. */
function single(cluster: Record<string, unknown>, user?: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster }],
    users: user === undefined ? [] : [{ name: "u", user }],
    contexts: [{ name: "ctx", context: { cluster: "c", ...(user === undefined ? {} : { user: "u" }) } }],
    "current-context": "ctx",
  };
}

async function writeKubeconfig(file: string, document: unknown): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, typeof document === "string" ? document : stringify(document));
  return file;
}

/** Writes `document` to a fresh file and loads it as the only $KUBECONFIG entry. */
async function load(document: unknown): Promise<{ file: string; connection: ClusterConnection }> {
  const file = await writeKubeconfig(fresh("config"), document);
  return { file, connection: loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount) };
}

/** Asserts `run` throws a ConfigError whose message contains every fragment. */
function throwsConfigError(run: () => unknown, ...fragments: string[]): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
    for (const fragment of fragments)
      assert.ok(error.message.includes(fragment), `${JSON.stringify(error.message)} mentions ${fragment}`);
    return true;
  });
}

async function rejectsConfigError(promise: Promise<unknown>, ...fragments: string[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
    for (const fragment of fragments)
      assert.ok(error.message.includes(fragment), `${JSON.stringify(error.message)} mentions ${fragment}`);
    return true;
  });
}

/** The "nothing configured" error: it tells the user every way out. */
function assertNoConfiguration(error: unknown): true {
  assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
  assert.match(error.message, /in-cluster/);
  assert.match(error.message, /\$KUBECONFIG/);
  assert.match(error.message, /~\/\.kube\/config/);
  assert.match(error.message, /--rules/);
  assert.match(error.message, /--kubeconfig/);
  return true;
}

/** An exec config running the plugin script with the given environment entries. */
function plugin(env: Record<string, string>, extra: Partial<ExecConfig> = {}): ExecConfig {
  return {
    command: process.execPath,
    args: [pluginScript],
    env: Object.entries(env).map(([name, value]) => ({ name, value })),
    ...extra,
  };
}

/** How many times the plugin ran with this counter file. */
async function runs(counter: string): Promise<number> {
  return existsSync(counter) ? (await readFile(counter, "utf8")).length : 0;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "imageshift-kubeconfig-"));
  emptyHome = path.join(dir, "empty-home");
  await mkdir(emptyHome);
  home = path.join(dir, "home");
  await writeKubeconfig(
    path.join(home, ".kube", "config"),
    single({ server: "https://home.invalid:6443" }, { token: "home-token" }),
  );
  serviceAccount = path.join(dir, "serviceaccount");
  await mkdir(serviceAccount);
  await writeFile(path.join(serviceAccount, "token"), "sa-token\n");
  await writeFile(path.join(serviceAccount, "ca.crt"), "SERVICE ACCOUNT CA\n");
  noServiceAccount = path.join(dir, "no-serviceaccount");
  pluginScript = path.join(dir, "plugin.mjs");
  await writeFile(pluginScript, PLUGIN_SOURCE);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("loadClusterConnection: which configuration is used", () => {
  let fromEnv: string;

  before(async () => {
    fromEnv = await writeKubeconfig(
      path.join(dir, "from-env.kubeconfig"),
      single({ server: "https://from-env.invalid:6443" }, { token: "env-token" }),
    );
  });

  test("$KUBECONFIG wins over ~/.kube/config and over in-cluster", async () => {
    const connection = loadClusterConnection(
      { KUBECONFIG: fromEnv, HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" },
      serviceAccount,
    );
    assert.equal(connection.server, "https://from-env.invalid:6443");
    assert.equal(connection.origin, `kubeconfig ${fromEnv}, context ctx`);
    assert.equal(await connection.credential.token(), "env-token");
  });

  test("--kubeconfig wins over $KUBECONFIG, in-cluster and ~/.kube/config; a missing one is refused", async () => {
    const env = { KUBECONFIG: fromEnv, HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" };
    const flag = path.join(home, ".kube", "config");
    const connection = loadClusterConnection(env, serviceAccount, flag);
    assert.equal(connection.origin, `kubeconfig ${flag}, context ctx`);
    assert.equal(await connection.credential.token(), "home-token");
    const missing = path.join(dir, "no-such-kubeconfig");
    assert.throws(
      () => loadClusterConnection(env, serviceAccount, missing),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.message, `--kubeconfig ${JSON.stringify(missing)} does not exist`);
        return true;
      },
    );
  });

  test("in-cluster wins over ~/.kube/config when $KUBECONFIG is unset or empty", () => {
    for (const env of [
      { HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" },
      { KUBECONFIG: "", HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" },
    ])
      assert.equal(loadClusterConnection(env, serviceAccount).origin, "in-cluster", JSON.stringify(env));
  });

  test("~/.kube/config (under $HOME) when $KUBECONFIG is unset or empty and not in a pod", async () => {
    for (const env of [
      { HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" },
      { KUBECONFIG: "", HOME: home },
      { KUBECONFIG: path.delimiter, HOME: home, KUBERNETES_SERVICE_HOST: "" },
    ]) {
      const connection = loadClusterConnection(env, noServiceAccount);
      assert.equal(connection.server, "https://home.invalid:6443", JSON.stringify(env));
      assert.equal(connection.origin, `kubeconfig ${path.join(home, ".kube", "config")}, context ctx`);
      assert.equal(await connection.credential.token(), "home-token");
    }
  });

  test("in-cluster when there is no kubeconfig, with KUBERNETES_SERVICE_HOST and the token file", async () => {
    const connection = loadClusterConnection(
      { HOME: emptyHome, KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBERNETES_SERVICE_PORT: "8443" },
      serviceAccount,
    );
    assert.equal(connection.origin, "in-cluster");
    assert.equal(connection.server, "https://10.0.0.1:8443");
    assert.equal(connection.ca, "SERVICE ACCOUNT CA\n");
    assert.equal(await connection.credential.token(), "sa-token");
  });

  test("nothing configured: a ConfigError naming in-cluster, $KUBECONFIG, ~/.kube/config and --rules", () => {
    for (const [env, serviceAccountDir] of [
      [{ HOME: emptyHome }, noServiceAccount],
      [{ KUBECONFIG: "", HOME: emptyHome }, noServiceAccount],
      // KUBERNETES_SERVICE_HOST alone is not enough: the token must be there too.
      [{ HOME: emptyHome, KUBERNETES_SERVICE_HOST: "10.0.0.1" }, noServiceAccount],
      // Nor is the token alone.
      [{ HOME: emptyHome }, serviceAccount],
      [{ HOME: emptyHome, KUBERNETES_SERVICE_HOST: "" }, serviceAccount],
    ] as const) {
      assert.throws(() => loadClusterConnection(env, serviceAccountDir), assertNoConfiguration);
    }
  });

  test("without $HOME in env, the home directory the OS reports", (t) => {
    if (existsSync(path.join(homedir(), ".kube", "config"))) {
      t.skip("this user has a ~/.kube/config");
      return;
    }
    assert.throws(() => loadClusterConnection({}, noServiceAccount), assertNoConfiguration);
    assert.equal(
      loadClusterConnection({ KUBERNETES_SERVICE_HOST: "10.0.0.1" }, serviceAccount).origin,
      "in-cluster",
    );
  });

  test("every $KUBECONFIG file missing: a ConfigError naming them all, with no fallback", () => {
    const missingA = path.join(dir, "missing-a");
    const missingB = path.join(dir, "missing-b");
    for (const list of [missingA, `${missingA}${path.delimiter}${missingB}`]) {
      // Neither ~/.kube/config nor the service account is used instead.
      assert.throws(
        () =>
          loadClusterConnection(
            { KUBECONFIG: list, HOME: home, KUBERNETES_SERVICE_HOST: "10.0.0.1" },
            serviceAccount,
          ),
        (error: unknown) => {
          assertNoConfiguration(error);
          for (const missing of list.split(path.delimiter))
            assert.ok((error as Error).message.includes(JSON.stringify(missing)), `names ${missing}`);
          return true;
        },
      );
    }
  });

  test("$KUBECONFIG files that are missing are skipped when others exist, as kubectl does", async () => {
    const missing = path.join(dir, "missing");
    for (const list of [`${missing}${path.delimiter}${fromEnv}`, `${fromEnv}${path.delimiter}${missing}`]) {
      const connection = loadClusterConnection({ KUBECONFIG: list, HOME: home }, noServiceAccount);
      assert.equal(connection.server, "https://from-env.invalid:6443");
      assert.equal(connection.origin, `kubeconfig ${fromEnv}, context ctx`);
      assert.equal(await connection.credential.token(), "env-token");
    }
  });
});

describe("inCluster", () => {
  test("the server is https://host:port, port 443 by default, an IPv6 host bracketed", () => {
    const cases: [NodeJS.ProcessEnv, string][] = [
      [{ KUBERNETES_SERVICE_HOST: "10.96.0.1" }, "https://10.96.0.1:443"],
      [{ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "" }, "https://10.96.0.1:443"],
      [{ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "6443" }, "https://10.96.0.1:6443"],
      [{ KUBERNETES_SERVICE_HOST: "fd00:10:96::1" }, "https://[fd00:10:96::1]:443"],
      [{ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "6443" }, "https://[fd00::1]:6443"],
      [{ KUBERNETES_SERVICE_HOST: "kubernetes.default.svc" }, "https://kubernetes.default.svc:443"],
    ];
    for (const [env, server] of cases) assert.equal(inCluster(env, serviceAccount).server, server);
  });

  test("the CA comes from ca.crt, and the token from the token file, trimmed", async () => {
    const connection = inCluster({ KUBERNETES_SERVICE_HOST: "10.96.0.1" }, serviceAccount);
    assert.equal(connection.ca, "SERVICE ACCOUNT CA\n");
    assert.equal(await connection.credential.token(), "sa-token");
    assert.equal(connection.origin, "in-cluster");
    assert.equal(connection.cert, undefined);
    assert.equal(connection.key, undefined);
  });

  test("without ca.crt there is no CA (the system's is used)", async () => {
    const tokenOnly = fresh("serviceaccount");
    await mkdir(tokenOnly);
    await writeFile(path.join(tokenOnly, "token"), "only-token");
    const connection = inCluster({ KUBERNETES_SERVICE_HOST: "10.96.0.1" }, tokenOnly);
    assert.equal(connection.ca, undefined);
    assert.ok(!("ca" in connection));
    assert.equal(await connection.credential.token(), "only-token");
  });
});

describe("tokenFile", () => {
  test("read once, trimmed, and trusted until the TTL passes; then read again", async () => {
    const file = fresh("token");
    await writeFile(file, "  first\n");
    const credential = tokenFile(file, 50);
    assert.equal(await credential.token(), "first");
    await writeFile(file, "second\n");
    assert.equal(await credential.token(), "first", "cached within the TTL");
    await sleep(80);
    assert.equal(await credential.token(), "second", "re-read after the TTL");
  });

  test("the default TTL keeps the token for more than a moment", async () => {
    const file = fresh("token");
    await writeFile(file, "first");
    const credential = tokenFile(file);
    assert.equal(await credential.token(), "first");
    await writeFile(file, "second");
    await sleep(20);
    assert.equal(await credential.token(), "first");
  });

  test("invalidate() forces a re-read", async () => {
    const file = fresh("token");
    await writeFile(file, "first");
    const credential = tokenFile(file, 60_000);
    assert.equal(await credential.token(), "first");
    await writeFile(file, "second");
    assert.equal(await credential.token(), "first");
    credential.invalidate();
    assert.equal(await credential.token(), "second");
  });

  test("a file that disappears after the first read keeps the last token", async () => {
    const file = fresh("token");
    await writeFile(file, "kept");
    const credential = tokenFile(file, 10);
    assert.equal(await credential.token(), "kept");
    await rm(file);
    await sleep(30);
    assert.equal(await credential.token(), "kept");
    await writeFile(file, "back");
    await sleep(30);
    assert.equal(await credential.token(), "back", "read again once the file is back");
  });

  test("a file missing at the first read: a ConfigError naming the path", async () => {
    const file = fresh("no-token");
    const credential = tokenFile(file);
    await rejectsConfigError(credential.token(), file);
    // Not cached as a failure: once the file appears it is read.
    await writeFile(file, "late");
    assert.equal(await credential.token(), "late");
  });
});

describe("staticToken", () => {
  test("returns its token, unchanged by invalidate()", async () => {
    const credential = staticToken("static");
    assert.equal(await credential.token(), "static");
    credential.invalidate();
    assert.equal(await credential.token(), "static");
  });

  test("undefined means no token", async () => {
    assert.equal(await staticToken(undefined).token(), undefined);
  });
});

describe("kubeconfig files: what is read and how they merge", () => {
  test("the first file to set a cluster, user or context name wins; the first non-empty current-context", async () => {
    const first = await writeKubeconfig(fresh("first"), {
      clusters: [{ name: "shared", cluster: { server: "https://first.invalid" } }],
      users: [{ name: "shared", user: { token: "first-token" } }],
      contexts: [{ name: "picked", context: { cluster: "shared", user: "shared" } }],
      "current-context": "",
    });
    const second = await writeKubeconfig(fresh("second"), {
      clusters: [
        { name: "shared", cluster: { server: "https://second.invalid" } },
        { name: "other", cluster: { server: "https://other.invalid" } },
      ],
      users: [{ name: "shared", user: { token: "second-token" } }],
      contexts: [
        { name: "picked", context: { cluster: "other", user: "shared" } },
        { name: "unpicked", context: { cluster: "other" } },
      ],
      "current-context": "picked",
    });
    const third = await writeKubeconfig(fresh("third"), {
      clusters: [{ name: "shared", cluster: { server: "https://third.invalid" } }],
      "current-context": "unpicked",
    });
    const list = [first, second, third].join(path.delimiter);
    const connection = loadClusterConnection({ KUBECONFIG: list, HOME: emptyHome }, noServiceAccount);
    assert.equal(connection.server, "https://first.invalid");
    assert.equal(await connection.credential.token(), "first-token");
    assert.equal(connection.origin, `kubeconfig ${list}, context picked`);
  });

  test("a current-context set in one file can name a context, cluster and user from others", async () => {
    const contexts = await writeKubeconfig(fresh("contexts"), {
      contexts: [{ name: "ctx", context: { cluster: "c", user: "u" } }],
      "current-context": "ctx",
    });
    const clusters = await writeKubeconfig(fresh("clusters"), {
      clusters: [{ name: "c", cluster: { server: "https://split.invalid" } }],
    });
    const users = await writeKubeconfig(fresh("users"), { users: [{ name: "u", user: { token: "split" } }] });
    const connection = loadClusterConnection(
      { KUBECONFIG: [contexts, clusters, users].join(path.delimiter), HOME: emptyHome },
      noServiceAccount,
    );
    assert.equal(connection.server, "https://split.invalid");
    assert.equal(await connection.credential.token(), "split");
  });

  test("relative file paths resolve against the folder of the kubeconfig that holds them", async () => {
    const clusterFolder = fresh("cluster-folder");
    const userFolder = fresh("user-folder");
    await mkdir(path.join(clusterFolder, "pki"), { recursive: true });
    await mkdir(path.join(userFolder, "certs"), { recursive: true });
    await writeFile(path.join(clusterFolder, "pki", "ca.pem"), "CLUSTER CA");
    await writeFile(path.join(userFolder, "certs", "client.pem"), "CLIENT CERT");
    await writeFile(path.join(userFolder, "client-key.pem"), "CLIENT KEY");
    await writeFile(path.join(userFolder, "token"), "user-folder-token\n");
    const clusterFile = await writeKubeconfig(path.join(clusterFolder, "config"), {
      clusters: [
        { name: "c", cluster: { server: "https://rel.invalid", "certificate-authority": "pki/ca.pem" } },
      ],
      contexts: [{ name: "ctx", context: { cluster: "c", user: "u" } }],
      "current-context": "ctx",
    });
    const userFile = await writeKubeconfig(path.join(userFolder, "nested", "config"), {
      users: [
        {
          name: "u",
          user: {
            "client-certificate": "../certs/client.pem",
            "client-key": "../client-key.pem",
            tokenFile: "../token",
          },
        },
      ],
    });
    const connection = loadClusterConnection(
      { KUBECONFIG: `${clusterFile}${path.delimiter}${userFile}`, HOME: emptyHome },
      noServiceAccount,
    );
    assert.equal(connection.ca, "CLUSTER CA");
    assert.equal(connection.cert, "CLIENT CERT");
    assert.equal(connection.key, "CLIENT KEY");
    assert.equal(await connection.credential.token(), "user-folder-token");
  });

  test("absolute file paths are read as they are", async () => {
    const folder = fresh("absolute");
    await mkdir(folder);
    await writeFile(path.join(folder, "ca.pem"), "ABS CA");
    await writeFile(path.join(folder, "cert.pem"), "ABS CERT");
    await writeFile(path.join(folder, "key.pem"), "ABS KEY");
    await writeFile(path.join(folder, "token"), "abs-token");
    const { connection } = await load(
      single(
        { server: "https://abs.invalid", "certificate-authority": path.join(folder, "ca.pem") },
        {
          "client-certificate": path.join(folder, "cert.pem"),
          "client-key": path.join(folder, "key.pem"),
          tokenFile: path.join(folder, "token"),
        },
      ),
    );
    assert.equal(connection.ca, "ABS CA");
    assert.equal(connection.cert, "ABS CERT");
    assert.equal(connection.key, "ABS KEY");
    assert.equal(await connection.credential.token(), "abs-token");
  });

  test("*-data fields are base64-decoded", async () => {
    const base64 = (text: string) => Buffer.from(text).toString("base64");
    const { connection } = await load(
      single(
        { server: "https://data.invalid", "certificate-authority-data": base64("-----BEGIN CA-----\n") },
        {
          "client-certificate-data": base64("-----BEGIN CERT-----\n"),
          "client-key-data": base64("-----BEGIN KEY-----\n"),
        },
      ),
    );
    assert.equal(connection.ca, "-----BEGIN CA-----\n");
    assert.equal(connection.cert, "-----BEGIN CERT-----\n");
    assert.equal(connection.key, "-----BEGIN KEY-----\n");
    assert.equal(await connection.credential.token(), undefined);
  });

  test("trailing slashes are removed from the server", async () => {
    for (const [server, expected] of [
      ["https://slash.invalid:6443/", "https://slash.invalid:6443"],
      ["https://slash.invalid:6443///", "https://slash.invalid:6443"],
      ["https://slash.invalid/prefix/", "https://slash.invalid/prefix"],
      ["https://slash.invalid", "https://slash.invalid"],
    ]) {
      const { connection } = await load(single({ server }));
      assert.equal(connection.server, expected);
    }
  });

  test("insecure-skip-tls-verify and tls-server-name are carried; absent, they are not set", async () => {
    const { connection } = await load(
      single({
        server: "https://tls.invalid",
        "insecure-skip-tls-verify": true,
        "tls-server-name": "api.internal",
      }),
    );
    assert.equal(connection.insecureSkipTlsVerify, true);
    assert.equal(connection.tlsServerName, "api.internal");
    const { connection: plain } = await load(single({ server: "https://tls.invalid" }));
    assert.equal(plain.insecureSkipTlsVerify, undefined);
    assert.equal(plain.tlsServerName, undefined);
    assert.equal(plain.ca, undefined);
    const { connection: off } = await load(
      single({ server: "https://tls.invalid", "insecure-skip-tls-verify": false }),
    );
    assert.equal(off.insecureSkipTlsVerify, undefined);
  });

  test("a context without a user sends no token and no client certificate", async () => {
    const { connection } = await load(single({ server: "https://anon.invalid" }));
    assert.equal(await connection.credential.token(), undefined);
    assert.equal(connection.cert, undefined);
    assert.equal(connection.key, undefined);
  });

  test("a static token in the user", async () => {
    const { connection } = await load(single({ server: "https://tok.invalid" }, { token: "static-token" }));
    assert.equal(await connection.credential.token(), "static-token");
  });

  test("a user's exec plugin provides the token, with the kubeconfig's env entries", async () => {
    const counter = fresh("counter");
    const record = fresh("record");
    const { connection } = await load(
      single(
        { server: "https://exec.invalid" },
        {
          exec: plugin({
            PLUGIN_COUNTER: counter,
            PLUGIN_RECORD: record,
            PLUGIN_TOKEN: "from-kubeconfig",
            PLUGIN_EXTRA: "set",
          }),
        },
      ),
    );
    assert.equal(await runs(counter), 0, "the plugin runs only when a token is asked for");
    assert.equal(await connection.credential.token(), "from-kubeconfig-1");
    assert.equal(JSON.parse(await readFile(record, "utf8")).extra, "set");
  });

  test("a relative exec command with a slash resolves against the kubeconfig's folder", async () => {
    const folder = fresh("relative-command");
    await mkdir(path.join(folder, "bin"), { recursive: true });
    await symlink(process.execPath, path.join(folder, "bin", "node"));
    const file = await writeKubeconfig(
      path.join(folder, "config"),
      single(
        { server: "https://exec.invalid" },
        { exec: plugin({ PLUGIN_TOKEN: "relative" }, { command: "./bin/node" }) },
      ),
    );
    const connection = loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount);
    assert.equal(await connection.credential.token(), "relative-1");
  });
});

describe("kubeconfig files: errors name the file and what is wrong", () => {
  test("unparsable YAML", async () => {
    const file = await writeKubeconfig(fresh("broken"), "clusters: [\n  - name: c\n");
    throwsConfigError(
      () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
      `kubeconfig ${file}`,
    );
  });

  test("unparsable ~/.kube/config", async () => {
    const brokenHome = fresh("broken-home");
    await writeKubeconfig(path.join(brokenHome, ".kube", "config"), "current-context: [oops\n");
    throwsConfigError(
      () => loadClusterConnection({ HOME: brokenHome }, noServiceAccount),
      path.join(brokenHome, ".kube", "config"),
    );
  });

  test("no current-context (missing, empty, or an empty file)", async () => {
    const withoutCurrent = single({ server: "https://x.invalid" });
    delete withoutCurrent["current-context"];
    for (const document of [withoutCurrent, { ...withoutCurrent, "current-context": "" }, ""]) {
      const file = await writeKubeconfig(fresh("no-current"), document);
      throwsConfigError(
        () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
        `kubeconfig ${file}`,
        "no current-context",
      );
    }
  });

  test("a current-context that names no context", async () => {
    const file = await writeKubeconfig(fresh("no-context"), {
      ...single({ server: "https://x.invalid" }),
      "current-context": "elsewhere",
    });
    throwsConfigError(
      () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
      `kubeconfig ${file}`,
      'context "elsewhere" not found',
    );
  });

  test("a cluster without a server, or no such cluster", async () => {
    for (const document of [
      single({ "tls-server-name": "x" }),
      { ...single({ server: "https://x.invalid" }), clusters: [] },
      { ...single({ server: "https://x.invalid" }), contexts: [{ name: "ctx", context: { user: "u" } }] },
    ]) {
      const file = await writeKubeconfig(fresh("no-server"), document);
      throwsConfigError(
        () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
        `kubeconfig ${file}`,
        "cluster",
        "no server",
      );
    }
  });

  test("a context naming a user that does not exist", async () => {
    const file = await writeKubeconfig(fresh("no-user"), {
      ...single({ server: "https://x.invalid" }, { token: "t" }),
      users: [{ name: "someone-else", user: { token: "t" } }],
    });
    throwsConfigError(
      () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
      `kubeconfig ${file}`,
      'user "u" not found',
    );
  });

  test("a client certificate without its key, or a key without its certificate", async () => {
    for (const user of [
      { "client-certificate-data": Buffer.from("CERT").toString("base64") },
      { "client-key-data": Buffer.from("KEY").toString("base64") },
    ]) {
      const file = await writeKubeconfig(fresh("half-cert"), single({ server: "https://x.invalid" }, user));
      throwsConfigError(
        () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
        `kubeconfig ${file}`,
        'user "u"',
        "needs both certificate and key",
      );
    }
  });

  test("a referenced file that cannot be read: the kubeconfig and the resolved path", async () => {
    for (const [cluster, user, missing] of [
      [{ "certificate-authority": "nope-ca.pem" }, { token: "t" }, "nope-ca.pem"],
      [{}, { "client-certificate": "nope-cert.pem", "client-key-data": "S0VZ" }, "nope-cert.pem"],
      [{}, { "client-certificate-data": "Q0VSVA==", "client-key": "nope-key.pem" }, "nope-key.pem"],
    ] as const) {
      const file = await writeKubeconfig(
        fresh("unreadable"),
        single({ server: "https://x.invalid", ...cluster }, user),
      );
      throwsConfigError(
        () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
        `kubeconfig ${file}`,
        `cannot read ${path.join(path.dirname(file), missing)}`,
      );
    }
  });

  test("a missing tokenFile: an error naming the resolved path when the token is asked for", async () => {
    const { file, connection } = await load(single({ server: "https://x.invalid" }, { tokenFile: "nope" }));
    await rejectsConfigError(connection.credential.token(), path.join(path.dirname(file), "nope"));
  });

  test("auth-provider, username/password and impersonation are refused, not ignored", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ "auth-provider": { name: "oidc", config: {} } }, "auth-provider"],
      [{ username: "admin", password: "secret" }, "username/password"],
      [{ username: "admin" }, "username/password"],
      [{ password: "secret" }, "username/password"],
      [{ token: "t", as: "system:admin" }, "impersonation (as)"],
      [{ token: "t", "as-groups": ["system:masters"] }, "impersonation (as-groups)"],
      [{ token: "t", "as-uid": "1" }, "impersonation (as-uid)"],
      [{ token: "t", as: "a", "as-user-extra": { scopes: ["x"] } }, "impersonation (as, as-user-extra)"],
    ];
    for (const [user, what] of cases) {
      const file = await writeKubeconfig(fresh("refused"), single({ server: "https://x.invalid" }, user));
      throwsConfigError(
        () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
        `kubeconfig ${file}`,
        'user "u"',
        "not supported",
        what,
      );
    }
  });

  test("several refused settings are all named", async () => {
    const file = await writeKubeconfig(
      fresh("refused"),
      single({ server: "https://x.invalid" }, { "auth-provider": { name: "gcp" }, username: "a", as: "b" }),
    );
    throwsConfigError(
      () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
      "auth-provider",
      "username/password",
      "impersonation (as)",
    );
  });

  test("proxy-url is refused", async () => {
    const file = await writeKubeconfig(
      fresh("proxy"),
      single({ server: "https://x.invalid", "proxy-url": "http://proxy.invalid:3128" }),
    );
    throwsConfigError(
      () => loadClusterConnection({ KUBECONFIG: file, HOME: emptyHome }, noServiceAccount),
      `kubeconfig ${file}`,
      'cluster "c"',
      "proxy-url is not supported",
    );
  });
});

describe("execPlugin", () => {
  const where = 'test.kubeconfig: user "u"';

  test("returns the plugin's status.token", async () => {
    const credential = execPlugin(plugin({ PLUGIN_TOKEN: "plain" }), dir, where);
    assert.equal(await credential.token(), "plain-1");
  });

  test("passes KUBERNETES_EXEC_INFO (interactive false) and the configured env entries", async () => {
    const record = fresh("record");
    await execPlugin(plugin({ PLUGIN_RECORD: record, PLUGIN_EXTRA: "extra-value" }), dir, where).token();
    const seen = JSON.parse(await readFile(record, "utf8")) as { execInfo: string; extra: string };
    assert.equal(seen.extra, "extra-value");
    assert.deepEqual(JSON.parse(seen.execInfo), {
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      spec: { interactive: false },
    });
  });

  test("KUBERNETES_EXEC_INFO carries the configured apiVersion", async () => {
    const record = fresh("record");
    await execPlugin(
      plugin({ PLUGIN_RECORD: record }, { apiVersion: "client.authentication.k8s.io/v1beta1" }),
      dir,
      where,
    ).token();
    const seen = JSON.parse(await readFile(record, "utf8")) as { execInfo: string };
    assert.equal(JSON.parse(seen.execInfo).apiVersion, "client.authentication.k8s.io/v1beta1");
  });

  test("env: null is accepted", async () => {
    const credential = execPlugin({ ...plugin({}), env: null }, dir, where);
    assert.equal(await credential.token(), "exec-token-1");
  });

  test("the token is cached: a second call does not run the plugin again", async () => {
    const counter = fresh("counter");
    const credential = execPlugin(plugin({ PLUGIN_COUNTER: counter }), dir, where);
    assert.equal(await credential.token(), "exec-token-1");
    assert.equal(await credential.token(), "exec-token-1");
    assert.equal(await runs(counter), 1);
  });

  test("concurrent first calls share one run", async () => {
    const counter = fresh("counter");
    const credential = execPlugin(plugin({ PLUGIN_COUNTER: counter }), dir, where);
    const tokens = await Promise.all([credential.token(), credential.token(), credential.token()]);
    assert.deepEqual(tokens, ["exec-token-1", "exec-token-1", "exec-token-1"]);
    assert.equal(await runs(counter), 1);
  });

  test("a token with a far expirationTimestamp is cached", async () => {
    const counter = fresh("counter");
    const credential = execPlugin(
      plugin({ PLUGIN_COUNTER: counter, PLUGIN_EXPIRES_IN_MS: String(60 * 60_000) }),
      dir,
      where,
    );
    assert.equal(await credential.token(), "exec-token-1");
    assert.equal(await credential.token(), "exec-token-1");
    assert.equal(await runs(counter), 1);
  });

  test("an expirationTimestamp in the past, or too near, runs the plugin again", async () => {
    for (const expiresInMs of [-60_000, 2_000]) {
      const counter = fresh("counter");
      const credential = execPlugin(
        plugin({ PLUGIN_COUNTER: counter, PLUGIN_EXPIRES_IN_MS: String(expiresInMs) }),
        dir,
        where,
      );
      assert.equal(await credential.token(), "exec-token-1");
      assert.equal(await credential.token(), "exec-token-2", `expiring in ${expiresInMs} ms`);
      assert.equal(await runs(counter), 2);
    }
  });

  test("concurrent calls after the token expired share one new run", async () => {
    const counter = fresh("counter");
    const credential = execPlugin(
      plugin({ PLUGIN_COUNTER: counter, PLUGIN_EXPIRES_IN_MS: String(-60_000) }),
      dir,
      where,
    );
    assert.equal(await credential.token(), "exec-token-1");
    const tokens = await Promise.all([credential.token(), credential.token(), credential.token()]);
    assert.deepEqual(tokens, ["exec-token-2", "exec-token-2", "exec-token-2"]);
    assert.equal(await runs(counter), 2);
  });

  test("an unreadable expirationTimestamp is an error, not a token cached for ever", async () => {
    const stdout = JSON.stringify({ status: { token: "t", expirationTimestamp: "not-a-date" } });
    await assert.rejects(
      execPlugin(plugin({ PLUGIN_STDOUT: stdout }), dir, where).token(),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /unreadable status\.expirationTimestamp "not-a-date"/);
        return true;
      },
    );
  });

  test("invalidate() runs the plugin again", async () => {
    const counter = fresh("counter");
    const credential = execPlugin(plugin({ PLUGIN_COUNTER: counter }), dir, where);
    assert.equal(await credential.token(), "exec-token-1");
    credential.invalidate();
    assert.equal(await credential.token(), "exec-token-2");
    assert.equal(await credential.token(), "exec-token-2");
    assert.equal(await runs(counter), 2);
  });

  test("a failing plugin: a ConfigError with its stderr; the next call runs it again", async () => {
    const counter = fresh("counter");
    const failFile = fresh("fail");
    await writeFile(failFile, "error: you must be logged in to the server\n");
    const credential = execPlugin(
      plugin({ PLUGIN_COUNTER: counter, PLUGIN_FAIL_FILE: failFile }),
      dir,
      where,
    );
    await rejectsConfigError(
      credential.token(),
      `kubeconfig ${where}`,
      "exec plugin",
      "failed",
      "error: you must be logged in to the server",
    );
    // The plugin's own words (trimmed), not Node's "Command failed: ..." text.
    await assert.rejects(credential.token(), {
      name: "ConfigError",
      message: `kubeconfig ${where}: exec plugin ${JSON.stringify(process.execPath)} failed: error: you must be logged in to the server`,
    });
    assert.equal(await runs(counter), 2, "a failure is not cached");
    await rm(failFile);
    assert.equal(await credential.token(), "exec-token-3");
    assert.equal(await credential.token(), "exec-token-3");
    assert.equal(await runs(counter), 3);
  });

  test("a plugin failing without stderr: a ConfigError naming the command", async () => {
    const failFile = fresh("fail");
    await writeFile(failFile, "");
    const credential = execPlugin(plugin({ PLUGIN_FAIL_FILE: failFile }), dir, where);
    await rejectsConfigError(credential.token(), JSON.stringify(process.execPath), "failed");
  });

  test("a command that does not exist: a ConfigError naming it", async () => {
    const missing = path.join(dir, "no-such-plugin");
    const credential = execPlugin({ command: missing }, dir, where);
    await rejectsConfigError(credential.token(), JSON.stringify(missing), "failed");
  });

  test("output without status.token: a ConfigError", async () => {
    for (const stdout of [
      JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: {} }),
      JSON.stringify({ kind: "ExecCredential" }),
      JSON.stringify({
        kind: "ExecCredential",
        status: { clientCertificateData: "CERT", clientKeyData: "KEY" },
      }),
      "not json at all",
      "",
    ]) {
      const credential = execPlugin(plugin({ PLUGIN_STDOUT: stdout }), dir, where);
      await rejectsConfigError(credential.token(), `kubeconfig ${where}`, "no status.token");
    }
  });
});
