/**
 * `imageshift serve` in cluster mode, stopped with SIGTERM while the API server has stopped
 * answering: readiness turns false at once, and the process exits within the bound on the
 * Lease release (src/k8s/leader.ts, RELEASE_TIMEOUT_MS) instead of waiting on the API server.
 * The API server is a scripted stand-in over plain HTTP, reached through a kubeconfig.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RELEASE_TIMEOUT_MS } from "../../src/k8s/leader.ts";
import { kubeconfigFor, startClusterServe, until, withBody, writeKubeconfig } from "./cluster-serve.ts";

const LEASE = "/apis/coordination.k8s.io/v1/namespaces/imageshift-system/leases/imageshift-status-writer";
/** Headroom over the release bound for the rest of the shutdown on a loaded machine. */
const MARGIN_MS = 1500;

/** Lists are empty, watches stay open, the Lease is kept; with `answering` false, nothing is answered. */
class ScriptedApiServer {
  readonly server = http.createServer((req, res) => this.handle(req, res));
  answering = true;
  /** Requests held unanswered, as `METHOD path`. */
  readonly pending = new Map<ServerResponse, string>();
  private lease: unknown;

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const watching = url.searchParams.get("watch") === "true";
    if (!this.answering || watching) {
      this.pending.set(res, `${req.method} ${url.pathname}`);
      res.on("close", () => this.pending.delete(res));
      if (watching) res.writeHead(200, { "content-type": "application/json" });
      return;
    }
    withBody(req, res, (body, send) => {
      if (url.pathname !== LEASE && !url.pathname.endsWith("/leases"))
        return send(200, { metadata: { resourceVersion: "1" }, items: [] });
      if (req.method === "GET") return this.lease ? send(200, this.lease) : send(404, { code: 404 });
      const lease = JSON.parse(body) as { metadata?: object };
      this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(Date.now()) } };
      send(req.method === "POST" ? 201 : 200, this.lease);
    });
  }
}

function readyz(url: URL): Promise<number | "refused"> {
  return new Promise((resolve) => {
    const req = http.get(new URL("/readyz", url), { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(1000, () => req.destroy());
    req.on("error", () => resolve("refused"));
  });
}

describe("imageshift serve in cluster mode: SIGTERM with the API server not answering", () => {
  const api = new ScriptedApiServer();
  let temp = "";
  let child: ChildProcess | undefined;

  before(async () => {
    temp = await mkdtemp(join(tmpdir(), "imageshift-shutdown-"));
    await new Promise<void>((resolve) => api.server.listen(0, "127.0.0.1", resolve));
    const kubeconfig = kubeconfigFor(api.server);
    await writeKubeconfig(join(temp, "kubeconfig"), kubeconfig);
  });

  after(async () => {
    child?.kill("SIGKILL");
    api.server.closeAllConnections();
    await new Promise((resolve) => api.server.close(resolve));
    await rm(temp, { recursive: true, force: true });
  });

  it(`turns not ready at once and exits within ${RELEASE_TIMEOUT_MS} ms (the release bound) and a margin`, {
    timeout: 60_000,
  }, async () => {
    const started = startClusterServe(temp, [], { KUBECONFIG: join(temp, "kubeconfig") });
    child = started.child;
    const { lines, exited } = started;
    const serving = await started.serving;
    const metrics = new URL(String(serving.metrics));
    await until("ready", 10_000, async () => ((await readyz(metrics)) === 200 ? true : undefined));
    await until("leading", 10_000, () => lines.find((line) => line.msg === "became the leader"));

    api.answering = false;
    const signalled = Date.now();
    child.kill("SIGTERM");
    // Readiness is false while the Lease release is still waiting on the API server.
    const release = await until("the release waiting on the API server", 1000, () =>
      [...api.pending.values()].find((request) => request === `GET ${LEASE}`),
    );
    assert.ok(release);
    const answer = await readyz(metrics);
    assert.notEqual(answer, 200, "not ready while the release waits");
    assert.ok(
      [...api.pending.values()].includes(`GET ${LEASE}`),
      "the release was still waiting when readiness was checked",
    );

    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), RELEASE_TIMEOUT_MS + MARGIN_MS);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(code, 0, `exited by itself with 0 within ${RELEASE_TIMEOUT_MS + MARGIN_MS} ms of SIGTERM`);
    const took = Date.now() - signalled;
    assert.ok(took < RELEASE_TIMEOUT_MS + MARGIN_MS, `${took} ms`);
    const messages = lines.map((line) => line.msg);
    assert.ok(messages.includes("could not release the leader Lease"), JSON.stringify(messages));
    assert.ok(messages.includes("stopped"), JSON.stringify(messages));
    await until("every request to the API server closed", 1000, () =>
      api.pending.size === 0 ? true : undefined,
    );
  });
});
