/**
 * `imageshift serve` in cluster mode against a scripted API server over plain HTTP, through the
 * cluster-mode flags and conventions: `--kubeconfig` wins over $KUBECONFIG, `--leader-election-id`
 * names the Lease, every request says `User-Agent: imageshift/<version>`, every write carries
 * `fieldManager=imageshift`, and /metrics counts the client's requests and shows the leader.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  BIN,
  kubeconfigFor,
  ROOT,
  startClusterServe,
  until,
  withBody,
  writeKubeconfig,
} from "./cluster-serve.ts";

const LEASE = "/apis/coordination.k8s.io/v1/namespaces/imageshift-system/leases/my-release-leader";

interface Seen {
  method: string;
  path: string;
  userAgent: string | undefined;
  fieldManager: string | null;
}

/** Lists are empty, watches stay open, the one Lease is kept; every request is recorded. */
class ScriptedApiServer {
  readonly server = http.createServer((req, res) => this.handle(req, res));
  readonly seen: Seen[] = [];
  private lease: unknown;

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    this.seen.push({
      method: req.method ?? "",
      path: url.pathname,
      userAgent: req.headers["user-agent"],
      fieldManager: url.searchParams.get("fieldManager"),
    });
    if (url.searchParams.get("watch") === "true") {
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      return;
    }
    withBody(req, res, (body, send) => {
      if (url.pathname.includes("/leases")) {
        if (url.pathname !== LEASE && req.method !== "POST") return send(404, { code: 404 });
        if (req.method === "GET") return this.lease ? send(200, this.lease) : send(404, { code: 404 });
        const lease = JSON.parse(body) as { metadata?: { name?: string } };
        if (lease.metadata?.name !== "my-release-leader") return send(403, { code: 403 });
        this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(Date.now()) } };
        return send(req.method === "POST" ? 201 : 200, this.lease);
      }
      send(200, { metadata: { resourceVersion: "1" }, items: [] });
    });
  }
}

async function scrape(metrics: URL): Promise<string> {
  const response = await fetch(new URL("/metrics", metrics));
  return response.text();
}

describe("imageshift serve in cluster mode: --kubeconfig, --leader-election-id, User-Agent, fieldManager", () => {
  const api = new ScriptedApiServer();
  let temp = "";
  let child: ChildProcess | undefined;

  before(async () => {
    temp = await mkdtemp(join(tmpdir(), "imageshift-flags-"));
    await new Promise<void>((resolve) => api.server.listen(0, "127.0.0.1", resolve));
    const kubeconfig = kubeconfigFor(api.server);
    await writeKubeconfig(join(temp, "kubeconfig"), kubeconfig);
    // What $KUBECONFIG names: a cluster nothing listens on, so only --kubeconfig can work.
    kubeconfig.clusters[0] = { name: "scripted", cluster: { server: "http://127.0.0.1:1" } };
    await writeKubeconfig(join(temp, "elsewhere"), kubeconfig);
  });

  after(async () => {
    child?.kill("SIGKILL");
    api.server.closeAllConnections();
    await new Promise((resolve) => api.server.close(resolve));
    await rm(temp, { recursive: true, force: true });
  });

  it("leads with the named Lease, names itself on every request, and counts them", {
    timeout: 60_000,
  }, async () => {
    const started = startClusterServe(
      temp,
      ["--kubeconfig", join(temp, "kubeconfig"), "--leader-election-id", "my-release-leader"],
      { KUBECONFIG: join(temp, "elsewhere") },
    );
    child = started.child;
    const { lines, exited } = started;
    const serving = await started.serving;
    const metrics = new URL(String(serving.metrics));
    await until("leading", 10_000, () => lines.find((line) => line.msg === "became the leader"));

    const version = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).version;
    assert.ok(api.seen.length > 0);
    for (const seen of api.seen) {
      assert.equal(seen.userAgent, `imageshift/${version}`, `${seen.method} ${seen.path}`);
      assert.equal(
        seen.fieldManager,
        seen.method === "GET" ? null : "imageshift",
        `${seen.method} ${seen.path}`,
      );
    }
    assert.ok(
      api.seen.some((seen) => seen.method === "POST" && seen.path.endsWith("/leases")),
      "created the Lease",
    );

    const text = await until("leader 1 in /metrics", 5_000, async () => {
      const scraped = await scrape(metrics);
      return /^imageshift_leader 1$/m.test(scraped) ? scraped : undefined;
    });
    assert.match(text, /^imageshift_kube_client_requests_total\{verb="list",code="200"\} [1-9]\d*$/m);
    assert.match(text, /^imageshift_kube_client_requests_total\{verb="create",code="201"\} 1$/m);
    assert.match(text, /^imageshift_kube_client_requests_total\{verb="watch",code="200"\} [1-9]\d*$/m);

    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  });

  it("refuses --kubeconfig and --leader-election-id with --rules (exit 2)", async () => {
    for (const flag of [
      ["--kubeconfig", "x"],
      ["--leader-election-id", "x"],
    ]) {
      const refused = spawn(process.execPath, [BIN, "serve", "--rules", "examples/", ...flag], {
        cwd: ROOT,
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      refused.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const code = await new Promise<number | null>((resolve) => refused.once("exit", resolve));
      assert.equal(code, 2, stderr);
      assert.match(stderr, /--kubeconfig and --leader-election-id are for cluster mode/);
    }
  });

  it("a --kubeconfig that does not exist: exit 2 naming it", async () => {
    const missing = join(temp, "missing");
    const refused = spawn(process.execPath, [BIN, "serve", "--kubeconfig", missing], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, KUBECONFIG: join(temp, "kubeconfig") },
    });
    let stderr = "";
    refused.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => refused.once("exit", resolve));
    assert.equal(code, 2, stderr);
    assert.equal(stderr.trim(), `--kubeconfig ${JSON.stringify(missing)} does not exist`);
  });
});
