/**
 * `KubeClient` and `resourcePath` (src/k8s/client.ts) against a fake API server on 127.0.0.1:
 * plain HTTP for requests, errors, lists and watches; HTTPS with certificates from
 * src/certs/authority.ts for the TLS settings (CA, client certificate, tls-server-name, skip-verify).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { TLSSocket } from "node:tls";
import {
  type CertificateAndKey,
  createCertificateAuthority,
  createServingCertificate,
} from "../certs/authority.ts";
import { KubeApiError } from "../errors.ts";
import { within } from "../testing.ts";
import { VERSION } from "../version.ts";
import { KubeClient, resourcePath, retryAfterSeconds, type Verb } from "./client.ts";
import { type ClusterConnection, type Credential, staticToken } from "./kubeconfig.ts";
import type { KubeObject, WatchEvent } from "./objects.ts";

/** What the fake server saw of one request. */
interface Seen {
  method: string;
  url: URL;
  headers: IncomingMessage["headers"];
  body: string;
  /** Common name of the client certificate presented, if any (HTTPS only). */
  clientCn?: string;
}

type Handler = (request: IncomingMessage, response: ServerResponse, seen: Seen) => void;

/** The fake server's per-test behaviour and record; tests in a file run one at a time. */
interface Fake {
  server: Server;
  base: string;
  seen: Seen[];
  handle: Handler;
}

function fake(server: Server): Fake {
  const state: Fake = { server, base: "", seen: [], handle: (_request, response) => response.end() };
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const peer = (request.socket as Partial<TLSSocket>).getPeerCertificate?.();
      const seen: Seen = {
        method: request.method ?? "",
        url: new URL(request.url ?? "/", "http://fake"),
        headers: request.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        ...(peer?.subject?.CN ? { clientCn: String(peer.subject.CN) } : {}),
      };
      state.seen.push(seen);
      state.handle(request, response, seen);
    });
  });
  return state;
}

async function listen(state: Fake, scheme: "http" | "https"): Promise<void> {
  await new Promise<void>((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.base = `${scheme}://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
}

async function shut(state: Fake | undefined): Promise<void> {
  if (!state) return;
  state.server.closeAllConnections();
  await new Promise<void>((resolve) => state.server.close(() => resolve()));
}

/** A credential that counts its calls. */
function countingCredential(token: string | undefined) {
  const counts = { tokens: 0, invalidations: 0 };
  const credential: Credential = {
    token: async () => {
      counts.tokens += 1;
      return token;
    },
    invalidate: () => {
      counts.invalidations += 1;
    },
  };
  return { credential, counts };
}

function connection(server: string, extra: Partial<ClusterConnection> = {}): ClusterConnection {
  return { server, credential: staticToken("secret-token"), origin: "test", ...extra };
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json" });
  response.end(text);
}

function status(code: number, reason: string, message: string) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code };
}

function event(type: WatchEvent<KubeObject>["type"], name: string): string {
  return `${JSON.stringify({ type, object: { kind: "ConfigMap", metadata: { name } } })}\n`;
}

/** A watch that records the events it is given. */
function recorder() {
  const events: WatchEvent<KubeObject>[] = [];
  return { events, onEvent: (e: WatchEvent<KubeObject>) => events.push(e), names: () => names(events) };
}

function names(events: WatchEvent<KubeObject>[]): string[] {
  return events.map((e) => `${e.type} ${e.object.metadata?.name}`);
}

describe("resourcePath", () => {
  test("core group: /api/<version>", () => {
    assert.equal(resourcePath({ version: "v1", plural: "namespaces" }), "/api/v1/namespaces");
    assert.equal(
      resourcePath({ version: "v1", plural: "namespaces", name: "kube-system" }),
      "/api/v1/namespaces/kube-system",
    );
  });

  test("named group: /apis/<group>/<version>", () => {
    assert.equal(
      resourcePath({ group: "imageshift.dev", version: "v1", plural: "imageshifts" }),
      "/apis/imageshift.dev/v1/imageshifts",
    );
  });

  test("namespaced, with a name and a subresource", () => {
    assert.equal(
      resourcePath({ version: "v1", plural: "secrets", namespace: "imageshift", name: "tls" }),
      "/api/v1/namespaces/imageshift/secrets/tls",
    );
    assert.equal(
      resourcePath({
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        namespace: "imageshift",
        name: "leader",
      }),
      "/apis/coordination.k8s.io/v1/namespaces/imageshift/leases/leader",
    );
    assert.equal(
      resourcePath({
        group: "imageshift.dev",
        version: "v1",
        plural: "imageshifts",
        name: "a",
        subresource: "status",
      }),
      "/apis/imageshift.dev/v1/imageshifts/a/status",
    );
  });

  test("names and namespaces are percent-encoded", () => {
    assert.equal(
      resourcePath({ version: "v1", plural: "configmaps", namespace: "a b", name: "x/y?z#%" }),
      "/api/v1/namespaces/a%20b/configmaps/x%2Fy%3Fz%23%25",
    );
  });
});

describe("KubeClient over plain HTTP", () => {
  let api: Fake;
  let client: KubeClient;

  before(async () => {
    api = fake(createServer());
    await listen(api, "http");
    client = new KubeClient(connection(api.base));
  });

  after(async () => {
    client?.close();
    await shut(api);
  });

  const last = (): Seen => {
    const seen = api.seen.at(-1);
    assert.ok(seen, "the server saw a request");
    return seen;
  };

  test("server and origin are those of the connection", () => {
    assert.equal(client.server, api.base);
    assert.equal(client.origin, "test");
  });

  test("get: GET with the query, accept and bearer token, no body, parsed JSON back", async () => {
    api.handle = (_request, response) => reply(response, 200, { kind: "Namespace", metadata: { name: "x" } });
    const got = await client.get<KubeObject>("/api/v1/namespaces/x", {
      labelSelector: "a=b,c!=d",
      limit: 5,
      allowWatchBookmarks: false,
      resourceVersion: undefined,
    });
    assert.deepEqual(got, { kind: "Namespace", metadata: { name: "x" } });
    const seen = last();
    assert.equal(seen.method, "GET");
    assert.equal(seen.url.pathname, "/api/v1/namespaces/x");
    assert.deepEqual(
      [...seen.url.searchParams],
      [
        ["labelSelector", "a=b,c!=d"],
        ["limit", "5"],
        ["allowWatchBookmarks", "false"],
      ],
    );
    assert.equal(seen.headers.accept, "application/json");
    assert.equal(seen.headers.authorization, "Bearer secret-token");
    assert.equal(seen.headers["content-type"], undefined);
    assert.equal(seen.body, "");
  });

  test("get without a query sends no query string", async () => {
    api.handle = (_request, response) => reply(response, 200, {});
    await client.get("/version");
    assert.equal(last().url.search, "");
  });

  test("create: POST with a JSON body, content-type and content-length in bytes", async () => {
    const body = { kind: "ConfigMap", metadata: { name: "é-ü" }, data: { greeting: "grüße" } };
    api.handle = (_request, response, seen) => reply(response, 201, seen.body);
    const created = await client.create("/api/v1/namespaces/n/configmaps", body);
    assert.deepEqual(created, body);
    const seen = last();
    assert.equal(seen.method, "POST");
    assert.equal(seen.url.pathname, "/api/v1/namespaces/n/configmaps");
    assert.equal(seen.headers["content-type"], "application/json");
    assert.equal(seen.headers["content-length"], String(Buffer.byteLength(JSON.stringify(body))));
    assert.notEqual(seen.headers["content-length"], String(JSON.stringify(body).length), "bytes, not chars");
    assert.deepEqual(JSON.parse(seen.body), body);
    assert.equal(seen.headers.accept, "application/json");
    assert.equal(seen.headers.authorization, "Bearer secret-token");
  });

  test("replace: PUT with a JSON body", async () => {
    const body = {
      kind: "Lease",
      metadata: { name: "l", resourceVersion: "7" },
      spec: { holderIdentity: "me" },
    };
    api.handle = (_request, response, seen) => reply(response, 200, seen.body);
    assert.deepEqual(await client.replace("/apis/coordination.k8s.io/v1/namespaces/n/leases/l", body), body);
    const seen = last();
    assert.equal(seen.method, "PUT");
    assert.equal(seen.url.pathname, "/apis/coordination.k8s.io/v1/namespaces/n/leases/l");
    assert.equal(seen.headers["content-type"], "application/json");
    assert.equal(seen.headers["content-length"], String(Buffer.byteLength(seen.body)));
    assert.deepEqual(JSON.parse(seen.body), body);
  });

  test("patch: PATCH with the merge-patch or JSON-patch content type", async () => {
    api.handle = (_request, response) => reply(response, 200, { ok: true });
    const merge = { metadata: { annotations: { a: "b" } } };
    assert.deepEqual(await client.patch("/api/v1/namespaces/n", merge, "merge"), { ok: true });
    let seen = last();
    assert.equal(seen.method, "PATCH");
    assert.equal(seen.url.pathname, "/api/v1/namespaces/n");
    assert.equal(seen.headers["content-type"], "application/merge-patch+json");
    assert.equal(seen.headers["content-length"], String(Buffer.byteLength(seen.body)));
    assert.deepEqual(JSON.parse(seen.body), merge);

    const ops = [{ op: "replace", path: "/webhooks/0/clientConfig/caBundle", value: "Q0E=" }];
    await client.patch("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/w", ops, "json");
    seen = last();
    assert.equal(seen.method, "PATCH");
    assert.equal(seen.headers["content-type"], "application/json-patch+json");
    assert.deepEqual(JSON.parse(seen.body), ops);
  });

  test("an empty 2xx body resolves to undefined", async () => {
    api.handle = (_request, response) => {
      response.writeHead(200);
      response.end();
    };
    assert.equal(await client.get("/api/v1/namespaces/x"), undefined);
    api.handle = (_request, response) => {
      response.writeHead(204);
      response.end();
    };
    assert.equal(await client.replace("/api/v1/namespaces/x", { kind: "Namespace" }), undefined);
  });

  test("a credential without a token: no authorization header", async () => {
    const { credential, counts } = countingCredential(undefined);
    const anonymous = new KubeClient(connection(api.base, { credential }));
    try {
      api.handle = (_request, response) => reply(response, 200, {});
      await anonymous.get("/api/v1/namespaces");
      assert.equal(last().headers.authorization, undefined);
      assert.equal(counts.tokens, 1, "the credential is asked once per call");
    } finally {
      anonymous.close();
    }
  });

  test("the token is fetched for every call, so a rotated token is used", async () => {
    let current = "first";
    const rotating = new KubeClient(
      connection(api.base, { credential: { token: async () => current, invalidate: () => {} } }),
    );
    try {
      api.handle = (_request, response) => reply(response, 200, {});
      await rotating.get("/api/v1/namespaces");
      assert.equal(last().headers.authorization, "Bearer first");
      current = "second";
      await rotating.get("/api/v1/namespaces");
      assert.equal(last().headers.authorization, "Bearer second");
    } finally {
      rotating.close();
    }
  });

  test("calls share one keep-alive connection", async () => {
    const pooled = new KubeClient(connection(api.base));
    let connections = 0;
    const count = () => {
      connections += 1;
    };
    api.server.on("connection", count);
    try {
      api.handle = (_request, response) => reply(response, 200, {});
      await pooled.get("/api/v1/namespaces/a");
      await pooled.get("/api/v1/namespaces/b");
      await pooled.create("/api/v1/namespaces", { kind: "Namespace" });
      assert.equal(connections, 1);
    } finally {
      api.server.off("connection", count);
      pooled.close();
    }
  });

  for (const [code, method, reason, message] of [
    [404, "GET", "NotFound", 'namespaces "gone" not found'],
    [409, "POST", "AlreadyExists", 'namespaces "gone" already exists'],
    [422, "PUT", "Invalid", 'Namespace "gone" is invalid: metadata.name: Invalid value'],
  ] as const) {
    test(`a ${code} with a Status body rejects with KubeApiError (code, body, method, path, message)`, async () => {
      const body = JSON.stringify(status(code, reason, message));
      api.handle = (_request, response) => reply(response, code, body);
      const path = "/api/v1/namespaces/gone";
      const call =
        method === "GET"
          ? client.get(path, { resourceVersion: "5" })
          : method === "POST"
            ? client.create(path, { kind: "Namespace" })
            : client.replace(path, { kind: "Namespace" });
      const error = await call.then(
        () => assert.fail("expected a rejection"),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof KubeApiError);
      assert.equal(error.code, code);
      assert.equal(error.body, body);
      assert.equal(error.message, `${method} ${path}: HTTP ${code}: ${message}`);
      assert.doesNotMatch(error.message, /resourceVersion/, "the path in the message has no query");
    });
  }

  test("a 401 invalidates the credential, and the next call fetches a token again", async () => {
    const { credential, counts } = countingCredential("stale");
    const authed = new KubeClient(connection(api.base, { credential }));
    try {
      api.handle = (_request, response) => reply(response, 401, status(401, "Unauthorized", "Unauthorized"));
      await assert.rejects(authed.get("/api/v1/namespaces"), (error: unknown) => {
        assert.ok(error instanceof KubeApiError);
        assert.equal(error.code, 401);
        assert.equal(error.message, "GET /api/v1/namespaces: HTTP 401: Unauthorized");
        return true;
      });
      assert.equal(counts.invalidations, 1);
      api.handle = (_request, response) => reply(response, 200, {});
      await authed.get("/api/v1/namespaces");
      assert.equal(counts.tokens, 2);
      assert.equal(counts.invalidations, 1, "a success does not invalidate");
    } finally {
      authed.close();
    }
  });

  test("other error codes do not invalidate the credential", async () => {
    const { credential, counts } = countingCredential("fine");
    const authed = new KubeClient(connection(api.base, { credential }));
    try {
      for (const code of [403, 404, 500]) {
        api.handle = (_request, response) => reply(response, code, status(code, "x", "y"));
        await assert.rejects(authed.get("/api/v1/namespaces"), KubeApiError);
      }
      assert.equal(counts.invalidations, 0);
    } finally {
      authed.close();
    }
  });

  test("a non-JSON error body still gives the code", async () => {
    api.handle = (_request, response) => {
      response.writeHead(503, { "content-type": "text/html" });
      response.end("<html>upstream unavailable</html>");
    };
    await assert.rejects(client.patch("/api/v1/namespaces/x", {}, "merge"), (error: unknown) => {
      assert.ok(error instanceof KubeApiError);
      assert.equal(error.code, 503);
      assert.equal(error.body, "<html>upstream unavailable</html>");
      assert.equal(error.message, "PATCH /api/v1/namespaces/x: HTTP 503");
      return true;
    });
  });

  test("an error with an empty body gives the code", async () => {
    api.handle = (_request, response) => {
      response.writeHead(500);
      response.end();
    };
    await assert.rejects(client.get("/api/v1/namespaces/x"), {
      name: "KubeApiError",
      code: 500,
      body: "",
      message: "GET /api/v1/namespaces/x: HTTP 500",
    });
  });

  test("a server that is not there: the call rejects with the connection error", async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const nowhere = new KubeClient(connection(`http://127.0.0.1:${port}`));
    try {
      await assert.rejects(within(nowhere.get("/api/v1/namespaces")), { code: "ECONNREFUSED" });
    } finally {
      nowhere.close();
    }
  });

  test("list follows continue across pages, concatenates items, returns the last resourceVersion", async () => {
    const pages: Record<
      string,
      { items?: KubeObject[]; metadata: { continue?: string; resourceVersion: string } }
    > = {
      "": {
        items: [{ metadata: { name: "a" } }, { metadata: { name: "b" } }],
        metadata: { continue: "t1", resourceVersion: "10" },
      },
      t1: { items: [], metadata: { continue: "t2", resourceVersion: "11" } },
      t2: { metadata: { continue: "t3", resourceVersion: "12" } },
      t3: { items: [{ metadata: { name: "c" } }], metadata: { continue: "", resourceVersion: "13" } },
    };
    api.seen = [];
    api.handle = (_request, response, seen) => {
      const page = pages[seen.url.searchParams.get("continue") ?? ""];
      if (page) reply(response, 200, page);
      else reply(response, 410, status(410, "Expired", "continue token expired"));
    };
    const listed = await client.list("/api/v1/configmaps", {
      fieldSelector: "metadata.namespace!=kube-system",
      labelSelector: undefined,
    });
    assert.deepEqual(
      listed.items.map((item) => item.metadata?.name),
      ["a", "b", "c"],
    );
    assert.equal(listed.resourceVersion, "13");
    assert.equal(api.seen.length, 4, "one request per page, and no more");
    assert.deepEqual(
      api.seen.map((seen) => seen.url.searchParams.get("continue")),
      [null, "t1", "t2", "t3"],
    );
    for (const seen of api.seen) {
      assert.equal(seen.method, "GET");
      assert.equal(seen.url.pathname, "/api/v1/configmaps");
      assert.equal(seen.url.searchParams.get("limit"), "500");
      assert.equal(seen.url.searchParams.get("fieldSelector"), "metadata.namespace!=kube-system");
      assert.equal(seen.url.searchParams.has("labelSelector"), false, "undefined values are not sent");
    }
  });

  test("list of one page without metadata.continue", async () => {
    api.seen = [];
    api.handle = (_request, response) =>
      reply(response, 200, { items: [{ metadata: { name: "only" } }], metadata: { resourceVersion: "99" } });
    const listed = await client.list("/api/v1/namespaces");
    assert.deepEqual(listed, { items: [{ metadata: { name: "only" } }], resourceVersion: "99" });
    assert.equal(api.seen.length, 1);
    assert.deepEqual([...(api.seen[0]?.url.searchParams ?? [])], [["limit", "500"]]);
  });

  test("list rejects with the page's error", async () => {
    api.handle = (_request, response, seen) =>
      seen.url.searchParams.has("continue")
        ? reply(response, 410, status(410, "Expired", "The provided continue parameter is too old"))
        : reply(response, 200, { items: [{}], metadata: { continue: "old", resourceVersion: "1" } });
    await assert.rejects(client.list("/api/v1/pods"), { name: "KubeApiError", code: 410 });
  });

  describe("watch", () => {
    test("sends watch=true, the default timeoutSeconds and the query; delivers events in order; resolves at the end", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200, { "content-type": "application/json" });
        response.end(event("ADDED", "a") + event("MODIFIED", "a") + event("DELETED", "a"));
      };
      const seen = recorder();
      await within(
        client.watch(
          "/api/v1/configmaps",
          { resourceVersion: "42", allowWatchBookmarks: true, labelSelector: undefined },
          seen.onEvent,
          new AbortController().signal,
        ),
      );
      assert.deepEqual(seen.names(), ["ADDED a", "MODIFIED a", "DELETED a"]);
      const request = last();
      assert.equal(request.method, "GET");
      assert.equal(request.url.pathname, "/api/v1/configmaps");
      assert.equal(request.url.searchParams.get("watch"), "true");
      assert.equal(request.url.searchParams.get("timeoutSeconds"), "300");
      assert.equal(request.url.searchParams.get("resourceVersion"), "42");
      assert.equal(request.url.searchParams.get("allowWatchBookmarks"), "true");
      assert.equal(request.url.searchParams.has("labelSelector"), false);
      assert.equal(request.headers.authorization, "Bearer secret-token");
      assert.equal(request.headers.accept, "application/json");
    });

    test("a given timeoutSeconds is sent as given", async () => {
      api.handle = (_request, response) => response.end();
      await within(
        client.watch("/api/v1/secrets", { timeoutSeconds: 45 }, () => {}, new AbortController().signal),
      );
      assert.equal(last().url.searchParams.get("timeoutSeconds"), "45");
    });

    test("events split across chunks (even inside a UTF-8 character), several per chunk, blank lines ignored", async () => {
      const all = Buffer.from(
        `\n${event("ADDED", "grüße")}\n  \n${event("MODIFIED", "b")}${event("BOOKMARK", "c")}\r\n${event("DELETED", "d")}`,
      );
      const umlaut = all.indexOf(Buffer.from("ü"));
      // Cut inside "ü" (two bytes), inside the second event, and between the last two events.
      const cuts = [
        0,
        5,
        umlaut + 1,
        all.indexOf(Buffer.from("MODIFIED")) + 3,
        all.lastIndexOf(Buffer.from("{")),
        all.length,
      ];
      api.handle = (_request, response) => {
        response.writeHead(200, { "content-type": "application/json" });
        void (async () => {
          for (let i = 0; i + 1 < cuts.length; i += 1) {
            response.write(all.subarray(cuts[i], cuts[i + 1]));
            await sleep(10);
          }
          response.end();
        })();
      };
      const seen = recorder();
      await within(client.watch("/api/v1/configmaps", {}, seen.onEvent, new AbortController().signal));
      assert.deepEqual(seen.names(), ["ADDED grüße", "MODIFIED b", "BOOKMARK c", "DELETED d"]);
    });

    test("an ERROR event (410 Gone inside the stream) is delivered like any other", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.end(
          `${JSON.stringify({ type: "ERROR", object: status(410, "Expired", "too old resource version") })}\n`,
        );
      };
      const seen = recorder();
      await within(client.watch("/api/v1/configmaps", {}, seen.onEvent, new AbortController().signal));
      assert.equal(seen.events.length, 1);
      assert.equal(seen.events[0]?.type, "ERROR");
      assert.equal(seen.events[0]?.object.code, 410);
    });

    test("a 410 on the watch request rejects with KubeApiError code 410", async () => {
      api.handle = (_request, response) =>
        reply(response, 410, status(410, "Expired", "too old resource version: 1 (5)"));
      let called = 0;
      await assert.rejects(
        within(
          client.watch(
            "/api/v1/configmaps",
            { resourceVersion: "1" },
            () => (called += 1),
            new AbortController().signal,
          ),
        ),
        (error: unknown) => {
          assert.ok(error instanceof KubeApiError);
          assert.equal(error.code, 410);
          assert.equal(error.message, "GET /api/v1/configmaps: HTTP 410: too old resource version: 1 (5)");
          return true;
        },
      );
      assert.equal(called, 0);
    });

    test("a 401 on the watch request invalidates the credential", async () => {
      const { credential, counts } = countingCredential("stale");
      const authed = new KubeClient(connection(api.base, { credential }));
      try {
        api.handle = (_request, response) =>
          reply(response, 401, status(401, "Unauthorized", "Unauthorized"));
        await assert.rejects(
          within(authed.watch("/api/v1/configmaps", {}, () => {}, new AbortController().signal)),
          { code: 401 },
        );
        assert.equal(counts.invalidations, 1);
      } finally {
        authed.close();
      }
    });

    test("the server destroying the connection mid-stream rejects, after the events that arrived", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.write(event("ADDED", "a"));
        setTimeout(() => response.socket?.destroy(), 20);
      };
      const seen = recorder();
      await assert.rejects(
        within(client.watch("/api/v1/configmaps", {}, seen.onEvent, new AbortController().signal)),
      );
      assert.deepEqual(seen.names(), ["ADDED a"]);
    });

    test("a line that is not JSON rejects, and later lines are not delivered", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.end(`${event("ADDED", "a")}<html>proxy error</html>\n${event("ADDED", "b")}`);
      };
      const seen = recorder();
      await assert.rejects(
        within(client.watch("/api/v1/configmaps", {}, seen.onEvent, new AbortController().signal)),
        SyntaxError,
      );
      assert.deepEqual(seen.names(), ["ADDED a"]);
    });

    test("an exception thrown by onEvent rejects the watch with it, and stops delivery", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.write(event("ADDED", "a") + event("ADDED", "b") + event("ADDED", "c"));
        // Left open: the rejection must not wait for the server to end the stream.
      };
      const delivered: string[] = [];
      const boom = new Error("handler failed");
      await assert.rejects(
        within(
          client.watch(
            "/api/v1/configmaps",
            {},
            (e) => {
              delivered.push(String(e.object.metadata?.name));
              if (delivered.length === 2) throw boom;
            },
            new AbortController().signal,
          ),
        ),
        (error: unknown) => error === boom,
      );
      assert.deepEqual(delivered, ["a", "b"]);
    });

    test("aborting before the response arrives resolves", async () => {
      let arrived!: () => void;
      const requested = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      api.handle = () => arrived(); // never answers
      const controller = new AbortController();
      const watching = client.watch(
        "/api/v1/configmaps",
        {},
        () => assert.fail("no events"),
        controller.signal,
      );
      await within(requested);
      controller.abort();
      await within(watching);
    });

    test("an already aborted signal resolves at once", async () => {
      api.handle = (_request, response) => reply(response, 200, "");
      const controller = new AbortController();
      controller.abort();
      await within(
        client.watch("/api/v1/configmaps", {}, () => assert.fail("no events"), controller.signal),
        500,
      );
    });

    test("aborting mid-stream resolves with the events delivered so far", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.write(event("ADDED", "a"));
        // Left open, as a real watch is.
      };
      const controller = new AbortController();
      const seen = recorder();
      await within(
        client.watch(
          "/api/v1/configmaps",
          {},
          (e) => {
            seen.onEvent(e);
            setTimeout(() => controller.abort(), 10);
          },
          controller.signal,
        ),
      );
      assert.deepEqual(seen.names(), ["ADDED a"]);
    });

    test("the client still works after watches were aborted", async () => {
      api.handle = (_request, response) => reply(response, 200, { ok: true });
      assert.deepEqual(await within(client.get("/healthz")), { ok: true });
    });

    // The watch's socket timeout is timeoutSeconds + 30 s; a timeoutSeconds just above -30 makes it
    // a few tens of milliseconds, so the "no answer" path runs without a 30 s wait.
    test("no answer within the timeout rejects", async () => {
      api.handle = () => {}; // never answers
      await assert.rejects(
        within(
          client.watch(
            "/api/v1/configmaps",
            { timeoutSeconds: -29.95 },
            () => {},
            new AbortController().signal,
          ),
        ),
        /GET \/api\/v1\/configmaps: no answer from http:\/\/127\.0\.0\.1:\d+/,
      );
    });

    test("a stream that goes silent for longer than the timeout rejects", async () => {
      api.handle = (_request, response) => {
        response.writeHead(200);
        response.write(event("ADDED", "a"));
      };
      const seen = recorder();
      await assert.rejects(
        within(
          client.watch(
            "/api/v1/configmaps",
            { timeoutSeconds: -29.9 },
            seen.onEvent,
            new AbortController().signal,
          ),
        ),
        /GET \/api\/v1\/configmaps: no answer from http:\/\/127\.0\.0\.1:\d+/,
      );
      assert.deepEqual(seen.names(), ["ADDED a"]);
    });
  });

  test("every request sends User-Agent imageshift/<package.json version>", async () => {
    const version = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version;
    assert.equal(VERSION, version);
    api.handle = (_request, response) => reply(response, 200, { items: [], metadata: {} });
    await client.get("/version");
    await client.list("/api/v1/namespaces");
    await client.create("/api/v1/namespaces/n/configmaps", {});
    await client.replace("/api/v1/namespaces/n/configmaps/c", {});
    await client.patch("/api/v1/namespaces/n/configmaps/c", {}, "merge");
    for (const seen of api.seen.slice(-5)) assert.equal(seen.headers["user-agent"], `imageshift/${version}`);
    const own = new KubeClient(connection(api.base), { userAgent: "other/1" });
    try {
      await own.get("/version");
      assert.equal(last().headers["user-agent"], "other/1");
    } finally {
      own.close();
    }
  });

  test("every write sends fieldManager=imageshift, reads do not; the query is kept", async () => {
    api.handle = (_request, response) => reply(response, 200, { items: [], metadata: {} });
    await client.get("/version", { a: "b" });
    assert.equal(last().url.searchParams.get("fieldManager"), null);
    await client.list("/api/v1/namespaces");
    assert.equal(last().url.searchParams.get("fieldManager"), null);
    await client.create("/api/v1/namespaces/n/configmaps", {});
    assert.equal(last().url.searchParams.get("fieldManager"), "imageshift");
    await client.replace("/apis/coordination.k8s.io/v1/namespaces/n/leases/l", {});
    assert.equal(last().url.searchParams.get("fieldManager"), "imageshift");
    await client.patch("/api/v1/namespaces/n", {}, "merge");
    assert.equal(last().url.searchParams.get("fieldManager"), "imageshift");
    const own = new KubeClient(connection(api.base), { fieldManager: "mine" });
    try {
      await own.patch("/api/v1/namespaces/n", {}, "json");
      assert.equal(last().url.searchParams.get("fieldManager"), "mine");
    } finally {
      own.close();
    }
  });

  test("a 429 is sent again after its Retry-After, then succeeds; onResponse counts both by verb and code", async () => {
    const counted: [Verb, string][] = [];
    const counting = new KubeClient(connection(api.base), {
      onResponse: (verb, code) => counted.push([verb, code]),
    });
    try {
      let calls = 0;
      api.handle = (_request, response) => {
        calls += 1;
        if (calls === 1) {
          response.writeHead(429, { "retry-after": "1", "content-type": "application/json" });
          response.end(JSON.stringify(status(429, "TooManyRequests", "too many requests")));
        } else reply(response, 200, { kind: "Namespace" });
      };
      const started = performance.now();
      assert.deepEqual(await within(counting.patch("/api/v1/namespaces/x", {}, "merge")), {
        kind: "Namespace",
      });
      assert.ok(performance.now() - started >= 950, "waited the Retry-After second");
      assert.equal(calls, 2);
      assert.deepEqual(counted, [
        ["patch", "429"],
        ["patch", "200"],
      ]);
    } finally {
      counting.close();
    }
  });

  test("429s past the retry budget reject with the 429; other codes are not retried", async () => {
    let calls = 0;
    api.handle = (_request, response) => {
      calls += 1;
      response.writeHead(429, { "retry-after": "0" });
      response.end();
    };
    await assert.rejects(within(client.get("/version")), (error: unknown) => {
      assert.ok(error instanceof KubeApiError);
      assert.equal(error.code, 429);
      assert.equal(error.retryAfter, "0");
      return true;
    });
    assert.equal(calls, 11, "the first call and 10 retries");
    calls = 0;
    api.handle = (_request, response) => {
      calls += 1;
      response.writeHead(503, { "retry-after": "0" });
      response.end();
    };
    await assert.rejects(client.get("/version"), KubeApiError);
    assert.equal(calls, 1);
  });

  test("a 429 wait is abandoned when the signal aborts", async () => {
    api.handle = (_request, response) => {
      response.writeHead(429, { "retry-after": "30" });
      response.end();
    };
    const controller = new AbortController();
    const call = client.get("/version", undefined, controller.signal);
    await sleep(100);
    controller.abort();
    await assert.rejects(within(call), { name: "AbortError" });
  });

  test("retryAfterSeconds: whole seconds, bounded to 60; 1 when absent, empty, negative or a date", () => {
    assert.equal(retryAfterSeconds("3"), 3);
    assert.equal(retryAfterSeconds("0"), 0);
    assert.equal(retryAfterSeconds("3600"), 60);
    for (const header of [undefined, "", " ", "-1", "Wed, 21 Oct 2015 07:28:00 GMT"])
      assert.equal(retryAfterSeconds(header), 1, String(header));
  });

  test("onResponse: list, watch, get, create and update by verb; no answer at all is <error>", async () => {
    const counted: string[] = [];
    const counting = new KubeClient(connection(api.base), {
      onResponse: (verb, code) => counted.push(`${verb} ${code}`),
    });
    try {
      api.handle = (_request, response, seen) => {
        if (seen.url.searchParams.get("watch")) {
          response.writeHead(200);
          response.end();
        } else if (seen.method === "POST") reply(response, 409, status(409, "AlreadyExists", "exists"));
        else reply(response, 200, { items: [], metadata: {} });
      };
      await counting.list("/api/v1/namespaces");
      await counting.watch("/api/v1/namespaces", {}, () => {}, new AbortController().signal);
      await counting.get("/api/v1/namespaces/x");
      await assert.rejects(counting.create("/api/v1/namespaces", {}), KubeApiError);
      await counting.replace("/api/v1/namespaces/x", {});
      assert.deepEqual(counted, ["list 200", "watch 200", "get 200", "create 409", "update 200"]);
    } finally {
      counting.close();
    }
    const gone = new KubeClient(connection("http://127.0.0.1:1"), {
      onResponse: (verb, code) => counted.push(`${verb} ${code}`),
    });
    try {
      await assert.rejects(gone.get("/version"));
      assert.equal(counted.at(-1), "get <error>");
    } finally {
      gone.close();
    }
  });

  test("close() does not throw, twice, and a new client works afterwards", async () => {
    const closing = new KubeClient(connection(api.base));
    api.handle = (_request, response) => reply(response, 200, { n: 1 });
    await closing.get("/version");
    assert.doesNotThrow(() => closing.close());
    assert.doesNotThrow(() => closing.close());
    const fresh = new KubeClient(connection(api.base));
    try {
      assert.deepEqual(await within(fresh.get("/version")), { n: 1 });
    } finally {
      fresh.close();
    }
  });

  // A kubeconfig server may carry a path (Rancher: https://rancher.example/k8s/clusters/c-abc);
  // client-go sends every request under it.
  test("a server URL with a path prefix keeps the prefix", async () => {
    const prefixed = new KubeClient(connection(`${api.base}/k8s/clusters/c-abc`));
    try {
      api.handle = (_request, response) => reply(response, 200, {});
      await within(prefixed.get("/api/v1/namespaces"));
      assert.equal(last().url.pathname, "/k8s/clusters/c-abc/api/v1/namespaces");
    } finally {
      prefixed.close();
    }
  });
});

describe("KubeClient over HTTPS", () => {
  let ca: CertificateAndKey;
  let otherCa: CertificateAndKey;
  let clientCert: CertificateAndKey;
  /** Serves a certificate from `ca` for 127.0.0.1; asks for (but does not require) a client certificate. */
  let api: Fake;
  /** Serves a certificate from `ca` for kubernetes.default.svc only. */
  let named: Fake;
  /** Serves a certificate from `otherCa` for 127.0.0.1. */
  let foreign: Fake;
  const clients: KubeClient[] = [];

  const open = (extra: Partial<ClusterConnection>, server = api): KubeClient => {
    const client = new KubeClient(connection(server.base, extra));
    clients.push(client);
    return client;
  };
  const ok: Handler = (_request, response) => reply(response, 200, { ok: true });

  before(async () => {
    ca = await createCertificateAuthority({ commonName: "client test CA", validityDays: 1 });
    otherCa = await createCertificateAuthority({ commonName: "someone else's CA", validityDays: 1 });
    const local = await createServingCertificate(ca, {
      commonName: "127.0.0.1",
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    const service = await createServingCertificate(ca, {
      commonName: "kubernetes",
      dnsNames: ["kubernetes.default.svc"],
      validityDays: 1,
    });
    const foreignLeaf = await createServingCertificate(otherCa, {
      commonName: "127.0.0.1",
      ipAddresses: ["127.0.0.1"],
      validityDays: 1,
    });
    clientCert = await createServingCertificate(otherCa, {
      commonName: "imageshift-client",
      dnsNames: ["imageshift-client"],
      validityDays: 1,
    });
    api = fake(
      createHttpsServer({
        cert: local.certPem,
        key: local.keyPem,
        requestCert: true,
        rejectUnauthorized: false,
      }),
    );
    named = fake(createHttpsServer({ cert: service.certPem, key: service.keyPem }));
    foreign = fake(createHttpsServer({ cert: foreignLeaf.certPem, key: foreignLeaf.keyPem }));
    await Promise.all([listen(api, "https"), listen(named, "https"), listen(foreign, "https")]);
    for (const server of [api, named, foreign]) server.handle = ok;
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all([shut(api), shut(named), shut(foreign)]);
  });

  test("trusts the given CA, and sends the token", async () => {
    assert.deepEqual(await within(open({ ca: ca.certPem }).get("/version")), { ok: true });
    assert.equal(api.seen.at(-1)?.headers.authorization, "Bearer secret-token");
    assert.equal(api.seen.at(-1)?.clientCn, undefined, "no client certificate unless configured");
  });

  test("a server certificate from another CA is rejected, and the server never sees the request", async () => {
    const seenBefore = foreign.seen.length;
    await assert.rejects(within(open({ ca: ca.certPem }, foreign).get("/version")), {
      code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    });
    assert.equal(foreign.seen.length, seenBefore);
  });

  test("without a CA, the system's trust store does not trust a private CA", async () => {
    await assert.rejects(within(open({}).get("/version")), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
  });

  test("insecureSkipTlsVerify accepts a certificate from an unknown CA", async () => {
    assert.deepEqual(
      await within(open({ ca: ca.certPem, insecureSkipTlsVerify: true }, foreign).get("/version")),
      { ok: true },
    );
    assert.deepEqual(await within(open({ insecureSkipTlsVerify: true }, named).get("/version")), {
      ok: true,
    });
  });

  test("a client certificate is presented", async () => {
    const client = open({ ca: ca.certPem, cert: clientCert.certPem, key: clientCert.keyPem });
    assert.deepEqual(await within(client.create("/api/v1/namespaces", { kind: "Namespace" })), { ok: true });
    assert.equal(api.seen.at(-1)?.clientCn, "imageshift-client");
  });

  test("a certificate without its key is not presented", async () => {
    await within(open({ ca: ca.certPem, cert: clientCert.certPem }).get("/version"));
    assert.equal(api.seen.at(-1)?.clientCn, undefined);
  });

  test("tlsServerName is the name the server certificate is checked against", async () => {
    // The certificate is for kubernetes.default.svc; the URL says 127.0.0.1.
    await assert.rejects(within(open({ ca: ca.certPem }, named).get("/version")), {
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    });
    assert.deepEqual(
      await within(open({ ca: ca.certPem, tlsServerName: "kubernetes.default.svc" }, named).get("/version")),
      { ok: true },
    );
    await assert.rejects(
      within(open({ ca: ca.certPem, tlsServerName: "kubernetes.default" }, named).get("/version")),
      { code: "ERR_TLS_CERT_ALTNAME_INVALID" },
    );
  });

  test("a watch over TLS", async () => {
    api.handle = (_request, response) => {
      response.writeHead(200);
      response.end(event("ADDED", "a") + event("DELETED", "a"));
    };
    try {
      const seen = recorder();
      await within(
        open({ ca: ca.certPem }).watch("/api/v1/configmaps", {}, seen.onEvent, new AbortController().signal),
      );
      assert.deepEqual(seen.names(), ["ADDED a", "DELETED a"]);
    } finally {
      api.handle = ok;
    }
  });
});
