/**
 * `LeaderElector.stop()` (leader.ts) against a scripted API server that stops answering:
 * shutdown must not wait on it beyond the documented bound. Election itself runs against the
 * real API server in test/e2e/kube.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { captureLogger } from "../telemetry/testing.ts";
import { within } from "../testing.ts";
import { KubeClient } from "./client.ts";
import { staticToken } from "./kubeconfig.ts";
import { LeaderElector, RELEASE_TIMEOUT_MS } from "./leader.ts";
import type { Lease } from "./objects.ts";

const LEASES = "/apis/coordination.k8s.io/v1/namespaces/imageshift-system/leases";

describe("LeaderElector.stop() with an API server that no longer answers", () => {
  const server = createServer((req, res) => handle(req, res));
  let client: KubeClient;
  /** The stored Lease; requests left unanswered while `answering` is false. */
  let lease: Lease | undefined;
  let answering = true;
  const pending = new Set<ServerResponse>();
  const seen: string[] = [];

  function handle(req: IncomingMessage, res: ServerResponse): void {
    seen.push(`${req.method} ${req.url}`);
    if (!answering) {
      pending.add(res);
      res.on("close", () => pending.delete(res));
      return;
    }
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => {
      const send = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      if (req.method === "GET" && !lease) return send(404, { kind: "Status", code: 404 });
      if (req.method === "GET") return send(200, lease);
      lease = {
        ...(JSON.parse(body) as Lease),
        metadata: { name: "stop", resourceVersion: String(seen.length) },
      };
      send(req.method === "POST" ? 201 : 200, lease);
    });
  }

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    client = new KubeClient({
      server: `http://127.0.0.1:${port}`,
      credential: staticToken(undefined),
      origin: "unit",
    });
  });

  after(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test(`steps down at once, gives up the release after ${RELEASE_TIMEOUT_MS} ms, and leaves no request open`, async () => {
    const { logger, lines } = captureLogger();
    const events: string[] = [];
    const elector = new LeaderElector({
      client,
      namespace: "imageshift-system",
      name: "stop",
      identity: "replica-a",
      logger,
      retryPeriodMs: 50,
      onStartedLeading: () => events.push("started"),
      onStoppedLeading: () => events.push("stopped"),
    });
    elector.start();
    await until("leading", () => elector.leading);
    // The API server stops answering, with a renewal in flight.
    answering = false;
    const requests = seen.length;
    await until("a renewal in flight", () => pending.size > 0);

    const stopping = elector.stop();
    assert.equal(elector.leading, false, "not leading from the moment stop() is called");
    assert.deepEqual(events, ["started", "stopped"]);
    // The bound, plus a margin for a loaded machine.
    await within(stopping, RELEASE_TIMEOUT_MS + 1000, "stop()");
    assert.ok(
      seen.slice(requests).includes(`GET ${LEASES}/stop`),
      "the release was attempted after the renewal in flight was abandoned",
    );
    const warning = lines.find((line) => line.msg === "could not release the leader Lease");
    assert.ok(warning, "the abandoned release is logged");
    assert.match(String(warning.err), new RegExp(`no answer within ${RELEASE_TIMEOUT_MS} ms`));
    assert.equal(
      lines.filter((line) => line.msg === "leader election: Lease not read or written").length,
      0,
      "the renewal abandoned by stop() is not reported as a failure",
    );
    await until("every request closed", () => pending.size === 0);
  });
});

async function until(description: string, probe: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
