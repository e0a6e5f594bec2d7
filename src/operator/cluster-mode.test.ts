/**
 * `clusterMode` (cluster-mode.ts) wired to a scripted API server on 127.0.0.1: with
 * `registryCredentials` the keyring is a runnable between the rules and leadership and reads
 * Secrets of the operator's namespace; without it no Secret is ever asked for and a named
 * Secret says why it is not read; `registryHealth` reaches the leader's status passes.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Runnable } from "../manager/manager.ts";
import { captureLogger } from "../telemetry/testing.ts";
import { clusterMode } from "./cluster-mode.ts";
import { DOCKER_CONFIG_KEY, DOCKER_CONFIG_TYPE } from "./secret-keyring.ts";

const NAMESPACE = "registry-test";
const SECRETS = `/api/v1/namespaces/${NAMESPACE}/secrets`;
const IMAGESHIFTS = "/apis/imageshift.dev/v1/imageshifts";
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases`;

const REGCRED = {
  metadata: { name: "regcred", namespace: NAMESPACE, uid: "u1", resourceVersion: "3" },
  type: DOCKER_CONFIG_TYPE,
  data: {
    [DOCKER_CONFIG_KEY]: Buffer.from(
      JSON.stringify({ auths: { "mirror.corp": { username: "u", password: "p" } } }),
    ).toString("base64"),
  },
};
const RULES = {
  apiVersion: "imageshift.dev/v1",
  kind: "Imageshift",
  metadata: { name: "hub", uid: "r1", generation: 1, resourceVersion: "4" },
  spec: { mappings: { swap: [{ registry: "docker.io", target: "mirror.corp/hub" }] } },
};

async function until(what: string, probe: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("clusterMode: registry credentials and registry health", () => {
  const requests: string[] = [];
  let lease: unknown;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const watching = url.searchParams.get("watch") === "true";
    requests.push(`${req.method} ${url.pathname}${watching ? " watch" : ""}`);
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => {
      const send = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      if (watching) {
        res.writeHead(200, { "content-type": "application/json" });
        res.flushHeaders();
        return;
      }
      if (url.pathname.startsWith(LEASES)) {
        if (req.method === "GET")
          return lease ? send(200, lease) : send(404, { kind: "Status", code: 404, message: "not found" });
        lease = { ...(JSON.parse(body) as object), metadata: { name: "lease", resourceVersion: "9" } };
        return send(req.method === "POST" ? 201 : 200, lease);
      }
      if (req.method === "PATCH") return send(200, {});
      const items = url.pathname === SECRETS ? [REGCRED] : url.pathname === IMAGESHIFTS ? [RULES] : [];
      send(200, { metadata: { resourceVersion: "10" }, items });
    });
  });
  let dir = "";
  let kubeconfig = "";

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    dir = mkdtempSync(join(tmpdir(), "imageshift-cluster-mode-"));
    kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "s", cluster: { server: `http://127.0.0.1:${port}` } }],
        users: [{ name: "s", user: { token: "t" } }],
        contexts: [{ name: "s", context: { cluster: "s", user: "s" } }],
        "current-context": "s",
      }),
    );
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts what the manager would, in its order; returns the stop of all of it, in reverse. */
  async function run(runnables: Runnable[]): Promise<() => Promise<void>> {
    for (const runnable of runnables) await runnable.start();
    return async () => {
      for (const runnable of [...runnables].reverse()) await runnable.stop();
    };
  }

  test("registryCredentials: the keyring runs after the rules and before leadership, on its namespace's Secrets; health reaches status", async () => {
    requests.length = 0;
    lease = undefined;
    const { logger, lines } = captureLogger();
    let healthReads = 0;
    const cluster = clusterMode({
      logger,
      watchCompat: false,
      namespace: NAMESPACE,
      kubeconfig,
      registryCredentials: true,
      registryHealth: {
        lastErrors: () => {
          healthReads++;
          return new Map();
        },
      },
    });
    assert.deepEqual(
      cluster.runnables.map((runnable) => runnable.name),
      ["registry-credentials", "leader-election"],
    );
    assert.match(
      cluster.runnables[0]?.notReady?.() ?? "",
      /Secrets in namespace "registry-test" not listed yet/,
    );
    const stop = await run([
      ...cluster.outer,
      { name: "rules", ...bind(cluster.rules) },
      ...cluster.runnables,
    ]);
    try {
      assert.equal(cluster.runnables[0]?.notReady?.(), undefined);
      assert.deepEqual(cluster.keyring.credentials("regcred", "mirror.corp"), {
        username: "u",
        password: "p",
      });
      assert.equal(cluster.keyring.describeMissing("regcred"), undefined);
      assert.ok(requests.includes(`GET ${SECRETS}`), requests.join("\n"));
      assert.ok(!requests.some((request) => request.includes("/secrets") && !request.includes(SECRETS)));
      await until("the leader's first status pass", () => healthReads > 0);
      const mode = lines.find((line) => line.msg === "cluster mode: rules come from the API server");
      assert.equal(mode?.registryCredentials, `Secrets in ${NAMESPACE}`);
    } finally {
      await stop();
    }
  });

  test("without registryCredentials: no Secret is asked for; a named Secret says credentials are off", async () => {
    requests.length = 0;
    const { logger } = captureLogger();
    const cluster = clusterMode({ logger, watchCompat: false, namespace: NAMESPACE, kubeconfig });
    assert.deepEqual(
      cluster.runnables.map((runnable) => runnable.name),
      ["leader-election"],
    );
    assert.equal(cluster.keyring.credentials("regcred", "mirror.corp"), undefined);
    assert.equal(cluster.keyring.describeMissing(undefined), undefined);
    assert.equal(
      cluster.keyring.describeMissing("regcred"),
      `Secret "${NAMESPACE}/regcred" not read: registry credentials are off (serve --registry-credentials, chart value registryCredentials.enabled)`,
    );
    const stop = await run([...cluster.outer, { name: "rules", ...bind(cluster.rules) }]);
    await stop();
    assert.ok(!requests.some((request) => request.includes("/secrets")), requests.join("\n"));
  });
});

/** A rule source as a runnable (webhook/app.ts does the same). */
function bind(source: { start(): Promise<void>; stop(): Promise<void> }) {
  return { start: () => source.start(), stop: () => source.stop() };
}
