/**
 * `loadKubeConfig` (cluster-mode.ts): where the Kubernetes configuration comes from, and the
 * error when there is none. No network: the kubeconfigs written here name servers nothing
 * listens on, and nothing connects to them.
 *
 * `KubeConfig.loadFromDefault` reads `process.env` itself (KUBECONFIG, HOME), so the tests that
 * load set it and restore it afterwards.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { RuleSourceError } from "../errors.ts";
import { loadKubeConfig } from "./cluster-mode.ts";

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

function kubeconfig(server: string): string {
  return `${JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "unit", cluster: { server } }],
    users: [{ name: "unit", user: { token: "t" } }],
    contexts: [{ name: "unit", context: { cluster: "unit", user: "unit" } }],
    "current-context": "unit",
  })}\n`;
}

describe("loadKubeConfig", () => {
  let dir: string;
  let emptyHome: string;
  let fromEnvFile: string;
  let home: string;
  const saved = { KUBECONFIG: process.env.KUBECONFIG, HOME: process.env.HOME };

  /** Sets (or, for undefined, deletes) process.env entries until the end of the test. */
  function setProcessEnv(values: { KUBECONFIG?: string | undefined; HOME?: string | undefined }): void {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "imageshift-cluster-mode-"));
    emptyHome = path.join(dir, "empty-home");
    home = path.join(dir, "home");
    await mkdir(emptyHome);
    await mkdir(path.join(home, ".kube"), { recursive: true });
    fromEnvFile = path.join(dir, "from-env.kubeconfig");
    await writeFile(fromEnvFile, kubeconfig("https://127.0.0.1:1"));
    await writeFile(path.join(home, ".kube", "config"), kubeconfig("https://127.0.0.1:2"));
  });

  afterEach(() => {
    setProcessEnv(saved);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("no in-cluster account, no $KUBECONFIG file and no ~/.kube/config: a RuleSourceError naming all three", () => {
    assert.ok(!existsSync(SERVICE_ACCOUNT_TOKEN), "this test assumes it does not run in a pod");
    for (const env of [
      { KUBECONFIG: path.join(dir, "nowhere"), HOME: emptyHome },
      { KUBECONFIG: "", HOME: emptyHome },
      { HOME: emptyHome },
      { KUBECONFIG: `${path.join(dir, "a")}${path.delimiter}${path.join(dir, "b")}`, HOME: emptyHome },
      // KUBERNETES_SERVICE_HOST alone is not enough: the token must be there too.
      { KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBECONFIG: path.join(dir, "nowhere"), HOME: emptyHome },
    ]) {
      assert.throws(
        () => loadKubeConfig(env),
        (error: unknown) => {
          assert.ok(error instanceof RuleSourceError, `a RuleSourceError for ${JSON.stringify(env)}`);
          assert.match(error.message, /in-cluster/);
          assert.match(error.message, /\$KUBECONFIG/);
          assert.match(error.message, /~\/\.kube\/config/);
          assert.match(error.message, /--rules/);
          return true;
        },
      );
    }
  });

  test("without $HOME, the home directory the OS reports", (t) => {
    if (existsSync(path.join(homedir(), ".kube", "config"))) {
      t.skip("this user has a ~/.kube/config");
      return;
    }
    assert.throws(() => loadKubeConfig({ KUBECONFIG: path.join(dir, "nowhere") }), RuleSourceError);
  });

  test("loads the file $KUBECONFIG names", () => {
    setProcessEnv({ KUBECONFIG: fromEnvFile, HOME: emptyHome });
    const kc = loadKubeConfig({ KUBECONFIG: fromEnvFile, HOME: emptyHome });
    assert.equal(kc.getCurrentCluster()?.server, "https://127.0.0.1:1");
    assert.equal(kc.getCurrentContext(), "unit");
  });

  test("$KUBECONFIG wins over ~/.kube/config", () => {
    setProcessEnv({ KUBECONFIG: fromEnvFile, HOME: home });
    const kc = loadKubeConfig({ KUBECONFIG: fromEnvFile, HOME: home });
    assert.equal(kc.getCurrentCluster()?.server, "https://127.0.0.1:1");
  });

  test("loads ~/.kube/config when $KUBECONFIG is not set", () => {
    setProcessEnv({ KUBECONFIG: undefined, HOME: home });
    const kc = loadKubeConfig({ HOME: home });
    assert.equal(kc.getCurrentCluster()?.server, "https://127.0.0.1:2");
  });

  test("$KUBECONFIG listing a missing file: a RuleSourceError naming it (the client would read every file)", () => {
    const missing = path.join(dir, "missing");
    const list = `${missing}${path.delimiter}${fromEnvFile}`;
    setProcessEnv({ KUBECONFIG: list, HOME: emptyHome });
    assert.throws(
      () => loadKubeConfig({ KUBECONFIG: list, HOME: emptyHome }),
      (error: Error) => {
        assert.ok(error instanceof RuleSourceError);
        assert.match(error.message, new RegExp(JSON.stringify(missing).replaceAll("/", "\\/")));
        return true;
      },
    );
  });

  test("$KUBECONFIG naming a missing file next to a ~/.kube/config: loaded, or a RuleSourceError", {}, () => {
    const missing = path.join(dir, "missing");
    setProcessEnv({ KUBECONFIG: missing, HOME: home });
    let kc: ReturnType<typeof loadKubeConfig> | undefined;
    try {
      kc = loadKubeConfig({ KUBECONFIG: missing, HOME: home });
    } catch (error) {
      assert.ok(error instanceof RuleSourceError, `not a raw ${String(error)}`);
      return;
    }
    assert.equal(kc.getCurrentCluster()?.server, "https://127.0.0.1:2");
  });
});
