/**
 * `WatchedKind` (informer.ts) against a scripted stand-in for the API server on 127.0.0.1:
 * list then watch, re-watch from the last resourceVersion, relist on `410 Gone` (as an event
 * and as a status), backoff on failures with the last objects kept, and stop. The real API
 * server is exercised by test/e2e/kube.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { captureLogger, type LogLine } from "../telemetry/testing.ts";
import { within } from "../testing.ts";
import { KubeClient } from "./client.ts";
import { WatchedKind } from "./informer.ts";
import { staticToken } from "./kubeconfig.ts";
import type { KubeObject } from "./objects.ts";

type Handler = (url: URL, res: ServerResponse, req: IncomingMessage) => void;

const PATH = "/apis/imageshift.dev/v1/imageshifts";

function object(name: string, resourceVersion: string): KubeObject {
  return { metadata: { name, resourceVersion, uid: name } };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function listOf(resourceVersion: string, ...items: KubeObject[]) {
  return { metadata: { resourceVersion }, items };
}

/** Writes watch events as the API server does: one JSON object per line. */
function events(res: ServerResponse, ...list: { type: string; object: unknown }[]): void {
  if (!res.headersSent) res.writeHead(200, { "content-type": "application/json" });
  for (const event of list) res.write(`${JSON.stringify(event)}\n`);
}

async function until(description: string, probe: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The message of the error a log line carries under `err` (logged as the Error, stack kept). */
function errMessage(line: LogLine | undefined): string {
  return String((line?.err as { message?: unknown } | undefined)?.message);
}

describe("WatchedKind", () => {
  let server: Server;
  let base: string;
  /**
   * The client of the watcher under test. Each `watched()` gets its own, with its own
   * User-Agent, and the server drops requests from any other: a request the previous test's
   * watcher sent just before it stopped can reach the server after the next test has set its
   * handlers, and would otherwise take that test's first answer (seen in CI under load).
   */
  let client: KubeClient;
  let current = "";
  let generation = 0;
  /** Requests seen, as `list` or `watch@<resourceVersion>`. */
  let seen: string[];
  let onList: Handler;
  let onWatch: Handler;
  const open = new Set<ServerResponse>();
  const stops: (() => Promise<void>)[] = [];

  before(async () => {
    server = createServer((req, res) => {
      if (req.headers["user-agent"] !== current) return void req.socket.destroy();
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      assert.equal(url.pathname, PATH);
      const watching = url.searchParams.get("watch") === "true";
      seen.push(watching ? `watch@${url.searchParams.get("resourceVersion")}` : "list");
      open.add(res);
      res.on("close", () => open.delete(res));
      (watching ? onWatch : onList)(url, res, req);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    for (const res of open) res.destroy();
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  function watched(options: { minBackoffMs?: number } = {}) {
    seen = [];
    current = `informer-test/${++generation}`;
    const own = new KubeClient(
      { server: base, credential: staticToken(undefined), origin: "unit" },
      { userAgent: current },
    );
    client = own;
    stops.push(async () => own.close());
    const { logger, lines } = captureLogger();
    let changes = 0;
    const watch = new WatchedKind<KubeObject>({
      client,
      path: PATH,
      logger,
      onChange: () => {
        changes++;
      },
      minBackoffMs: options.minBackoffMs ?? 20,
      maxBackoffMs: 80,
    });
    stops.push(() => watch.stop());
    return { watch, lines, changes: () => changes };
  }

  const names = (watch: WatchedKind<KubeObject>) =>
    watch
      .list()
      .map((item) => item.metadata?.name)
      .sort();

  test("lists, then applies added, modified and deleted objects from the watch", async () => {
    onList = (_url, res) => sendJson(res, 200, listOf("10", object("a", "5"), object("b", "6")));
    let watchQuery: URL | undefined;
    onWatch = (url, res) => {
      watchQuery = url;
      events(
        res,
        { type: "ADDED", object: object("c", "11") },
        { type: "MODIFIED", object: { ...object("a", "12"), spec: { changed: true } } },
        { type: "DELETED", object: object("b", "13") },
      );
    };
    const { watch, changes } = watched();
    await watch.start();
    assert.equal(watch.synced, true);
    await until("three events", () => names(watch).join() === "a,c");
    assert.deepEqual(watch.get("a")?.spec, { changed: true });
    assert.equal(watch.get("b"), undefined);
    assert.equal(changes(), 4, "one change for the list, one per event");
    assert.equal(watchQuery?.searchParams.get("resourceVersion"), "10");
    assert.equal(watchQuery?.searchParams.get("allowWatchBookmarks"), "true");
    const timeout = Number(watchQuery?.searchParams.get("timeoutSeconds"));
    assert.ok(timeout >= 300 && timeout < 600, `timeoutSeconds ${timeout}`);
  });

  test("managedFields are dropped from listed and watched objects; a transform replaces that", async () => {
    const managed = (name: string, resourceVersion: string) => ({
      ...object(name, resourceVersion),
      metadata: { name, resourceVersion, managedFields: [{ manager: "kubectl" }], labels: { a: "b" } },
      spec: { kept: true },
    });
    onList = (_url, res) => sendJson(res, 200, listOf("10", managed("a", "5")));
    onWatch = (_url, res) => events(res, { type: "ADDED", object: managed("b", "11") });
    const plain = watched();
    await plain.watch.start();
    await until("the event", () => plain.watch.get("b") !== undefined);
    for (const name of ["a", "b"]) {
      assert.deepEqual(plain.watch.get(name)?.metadata, {
        name,
        resourceVersion: name === "a" ? "5" : "11",
        labels: { a: "b" },
      });
      assert.deepEqual(plain.watch.get(name)?.spec, { kept: true });
    }
    await plain.watch.stop();

    const { logger } = captureLogger();
    const slim = new WatchedKind<KubeObject>({
      client,
      path: PATH,
      logger,
      onChange: () => {},
      transform: (item) => ({ metadata: { name: item.metadata?.name, labels: item.metadata?.labels } }),
    });
    stops.push(() => slim.stop());
    await slim.start();
    await until("the event", () => slim.get("b") !== undefined);
    assert.deepEqual(slim.get("a"), { metadata: { name: "a", labels: { a: "b" } } });
    assert.deepEqual(slim.get("b"), { metadata: { name: "b", labels: { a: "b" } } });
  });

  test("a watch the server ends is reopened from the last resourceVersion seen, bookmarks included", async () => {
    onList = (_url, res) => sendJson(res, 200, listOf("10", object("a", "5")));
    let watches = 0;
    onWatch = (_url, res) => {
      watches++;
      if (watches === 1) {
        events(
          res,
          { type: "ADDED", object: object("b", "11") },
          { type: "BOOKMARK", object: object("", "15") },
        );
        res.end();
      }
    };
    const { watch, changes } = watched();
    await watch.start();
    await until("the second watch", () => watches === 2);
    assert.deepEqual(seen, ["list", "watch@10", "watch@15"]);
    assert.equal(changes(), 2, "a bookmark is no change");
    assert.deepEqual(names(watch), ["a", "b"]);
  });

  test("a 410 Gone, as an ERROR event or as the watch's status, relists without backoff", async () => {
    let lists = 0;
    onList = (_url, res) => {
      lists++;
      // The second list no longer has "a": it was deleted while the watch was away.
      sendJson(
        res,
        200,
        lists === 1 ? listOf("10", object("a", "5")) : listOf(`2${lists}`, object("b", "20")),
      );
    };
    let watches = 0;
    onWatch = (_url, res) => {
      watches++;
      if (watches === 1)
        events(res, {
          type: "ERROR",
          object: { kind: "Status", code: 410, message: "too old resource version" },
        });
      else if (watches === 2) sendJson(res, 410, { kind: "Status", code: 410, message: "Gone" });
    };
    const { watch, lines } = watched({ minBackoffMs: 5_000 });
    await watch.start();
    await until("three lists", () => lists === 3);
    await until("the third watch", () => watches === 3);
    assert.deepEqual(seen, ["list", "watch@10", "list", "watch@22", "list", "watch@23"]);
    assert.deepEqual(names(watch), ["b"]);
    assert.equal(lines.filter((line) => line.msg?.startsWith("watch failed")).length, 0, "no backoff");
  });

  test("failures back off (doubling, bounded) and keep the last objects; start() resolves after the first attempt", async () => {
    let lists = 0;
    onList = (_url, res) => {
      lists++;
      if (lists === 1) sendJson(res, 200, listOf("10", object("a", "5")));
      else sendJson(res, 500, { kind: "Status", code: 500, message: "etcd is away" });
    };
    onWatch = (_url, res) => {
      events(res, { type: "ADDED", object: object("b", "11") });
      setTimeout(() => res.destroy(), 50); // the API server goes away mid-stream
    };
    const { watch, lines } = watched();
    await watch.start();
    const failures = () => lines.filter((line) => line.msg?.startsWith("watch failed"));
    await until("four failures", () => failures().length >= 4);
    assert.deepEqual(
      failures()
        .slice(0, 4)
        .map((line) => line.retryInMs),
      [20, 40, 80, 80],
    );
    assert.match(errMessage(failures()[1]), /: HTTP 500: etcd is away$/);
    assert.equal(
      (failures()[1]?.err as { type?: string } | undefined)?.type,
      "KubeApiError",
      "the error itself, stack kept",
    );
    assert.deepEqual(names(watch), ["a", "b"], "the last known objects stay");
    assert.equal(watch.synced, true);
  });

  test("a failure after a healthy watch starts again from the shortest backoff, however long an earlier outage was", async () => {
    let lists = 0;
    onList = (_url, res) => {
      lists++;
      // A long outage (five failures: the backoff reaches its bound), then a short one (one).
      if (lists <= 5 || lists === 7)
        sendJson(res, 500, { kind: "Status", code: 500, message: "etcd is away" });
      else sendJson(res, 200, listOf("10", object("a", "5"), ...(lists >= 8 ? [object("c", "12")] : [])));
    };
    let watches = 0;
    onWatch = (_url, res) => {
      watches++;
      events(res, { type: "ADDED", object: object("b", "11") });
      if (watches === 1) setTimeout(() => res.destroy(), 50); // the short outage begins
    };
    const { watch, lines } = watched();
    await watch.start();
    const failures = () => lines.filter((line) => line.msg?.startsWith("watch failed"));
    await until("the change made during the short outage", () => watch.get("c") !== undefined);
    assert.deepEqual(
      failures().map((line) => line.retryInMs),
      [20, 40, 80, 80, 80, 20, 40],
      "the watch that delivered an event reset the backoff",
    );
    assert.ok(
      lines.some((line) => line.msg === "watch resumed" && line.failures === 5),
      "the recovery after the long outage is logged",
    );
  });

  test("an unreachable API server is retried at least every second: a change shows up within 2 s of its return, however long it was away", async (t) => {
    // The default backoff (0.5 s doubling to 30 s) for errors the server answers: 4 s of
    // refused connections would put the next attempt 4 s out, were they not bounded.
    let readyAt = 0;
    const items = [object("a", "5")];
    const open = new Set<ServerResponse>();
    const down = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      if (url.searchParams.get("watch") !== "true") {
        // Like kube-apiserver while it starts: 503 until its paths are installed.
        if (Date.now() < readyAt)
          return sendJson(res, 503, { kind: "Status", code: 503, message: "starting" });
        return sendJson(res, 200, listOf("10", ...items));
      }
      open.add(res);
      res.writeHead(200, { "content-type": "application/json" });
    });
    const listen = (port: number) => new Promise<void>((resolve) => down.listen(port, "127.0.0.1", resolve));
    await listen(0);
    const { port } = down.address() as AddressInfo;
    const direct = new KubeClient({
      server: `http://127.0.0.1:${port}`,
      credential: staticToken(undefined),
      origin: "unit",
    });
    const { logger, lines } = captureLogger();
    const watch = new WatchedKind<KubeObject>({ client: direct, path: PATH, logger, onChange: () => {} });
    try {
      await watch.start();
      await until("the watch is open", () => open.size === 1);

      // Away for 4 s: the watch breaks, every attempt is refused.
      const closed = new Promise((resolve) => down.close(resolve));
      for (const res of open) res.destroy();
      down.closeAllConnections();
      await closed;
      await new Promise((resolve) => setTimeout(resolve, 4000));

      // Back, with a change made meanwhile: 503 for its first second, then ready.
      items.push(object("b", "11"));
      readyAt = Date.now() + 1000;
      await listen(port);
      await new Promise((resolve) => setTimeout(resolve, readyAt - Date.now()));
      await until("the change, within 2 s of the server's return", () => watch.get("b") !== undefined, 2000);
      t.diagnostic(`the change arrived ${Date.now() - readyAt} ms after the server was ready`);
      const failures = lines.filter((line) => line.msg?.startsWith("watch failed"));
      const refused = failures.filter((line) => /ECONNREFUSED/.test(errMessage(line)));
      assert.ok(refused.length >= 3, `${refused.length} refused attempts in 4 s`);
      assert.deepEqual(
        refused.map((line) => (line.level === 40 ? "warn" : line.level === 20 ? "debug" : line.level)),
        ["warn", ...refused.slice(1).map(() => "debug")],
        "a repeated failure is logged at debug",
      );
      assert.ok(
        failures.every((line) => Number(line.retryInMs) <= 1000),
        `no wait longer than a second: ${failures.map((line) => line.retryInMs)}`,
      );
    } finally {
      await watch.stop();
      direct.close();
      down.closeAllConnections();
      await new Promise((resolve) => down.close(resolve));
    }
  });

  test("a first list that fails still lets start() return, unsynced", async () => {
    onList = (_url, res) => sendJson(res, 403, { kind: "Status", code: 403, message: "forbidden" });
    onWatch = () => assert.fail("no watch without a list");
    const { watch, lines } = watched({ minBackoffMs: 60_000 });
    await watch.start();
    assert.equal(watch.synced, false);
    assert.deepEqual(watch.list(), []);
    assert.match(errMessage(lines.find((line) => line.msg?.startsWith("watch failed"))), /: HTTP 403/);
  });

  test("a watch that ends at once with no event counts as a failure, so it never spins", async () => {
    onList = (_url, res) => sendJson(res, 200, listOf("10"));
    onWatch = (_url, res) => {
      res.writeHead(200);
      res.end();
    };
    const { watch, lines } = watched();
    await watch.start();
    await until("a failure", () => lines.some((line) => line.msg?.startsWith("watch failed")));
    assert.match(errMessage(lines.find((line) => line.msg?.startsWith("watch failed"))), /ended at once/);
    // After the failure the loop relists (not a bare re-watch): the resourceVersion may be stale.
    await until("a relist", () => seen.filter((request) => request === "list").length >= 2);
  });

  test("a malformed event line is a failure, followed by a relist", async () => {
    onList = (_url, res) => sendJson(res, 200, listOf("10", object("a", "5")));
    let watches = 0;
    onWatch = (_url, res) => {
      watches++;
      if (watches === 1) {
        res.writeHead(200);
        res.write("{not json\n");
      }
    };
    const { watch, lines } = watched();
    await watch.start();
    await until("a failure", () => lines.some((line) => line.msg?.startsWith("watch failed")));
    await until("the second watch", () => watches === 2);
    assert.deepEqual(seen.slice(0, 4), ["list", "watch@10", "list", "watch@10"]);
    assert.deepEqual(names(watch), ["a"]);
  });

  test("stop() abandons a list the server does not answer", async () => {
    onList = () => {}; // never answered
    onWatch = () => assert.fail("no watch without a list");
    const { watch } = watched();
    void watch.start();
    await until("the list", () => seen.length === 1);
    await within(watch.stop(), 1000, "stop()");
    await until("its request closed", () => open.size === 0);
  });

  test("stop() ends an open watch at once, and nothing is retried after it", async () => {
    onList = (_url, res) => sendJson(res, 200, listOf("10"));
    onWatch = (_url, res) => events(res, { type: "ADDED", object: object("a", "11") });
    const { watch, lines } = watched();
    await watch.start();
    await until("the event", () => watch.get("a") !== undefined);
    const started = Date.now();
    await watch.stop();
    assert.ok(Date.now() - started < 1000, "stopped promptly");
    const requests = seen.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(seen.length, requests);
    assert.equal(lines.filter((line) => line.msg?.startsWith("watch failed")).length, 0);
    // A stopped watch can start again.
    await watch.start();
    await until("a new list and watch", () => seen.length === requests + 2);
    assert.deepEqual(seen.slice(requests), ["list", "watch@10"]);
  });
});
