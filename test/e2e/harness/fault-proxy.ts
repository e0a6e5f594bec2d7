/**
 * A fault proxy for registry tests (issue 13): an HTTP proxy on loopback in front of a registry
 * that can be made slow, busy (429, 503), silent or down at run time, so a test can watch what a
 * registry client or an admission does when a registry misbehaves, counting the requests it saw.
 * Used through registries.ts, which also takes its loopback `listen` and `closeServer`.
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

const loopback = "127.0.0.1";

export type FaultMode =
  | { kind: "normal" }
  | { kind: "delay"; ms: number }
  | { kind: "status"; status: number; retryAfterSeconds?: number }
  | { kind: "blackhole" }
  | { kind: "down" };

export interface FaultProxy {
  /** `127.0.0.1:<port>`: use it as the registry's address. */
  host: string;
  /** The mode now. */
  readonly mode: FaultMode;
  /** HTTP requests it has received, in every mode but down (where nothing connects). */
  readonly requests: number;
  /** Forwards every request to the registry. */
  normal(): Promise<void>;
  /** Waits `ms` before forwarding each request. */
  delay(ms: number): Promise<void>;
  /** Answers every request itself with this status (429 with `Retry-After` when given, 503, …). */
  status(status: number, retryAfterSeconds?: number): Promise<void>;
  /** Accepts connections and requests and never answers. */
  blackhole(): Promise<void>;
  /** Closes the listener and every connection: connections are refused until another mode. */
  down(): Promise<void>;
  /** Stops it: the listener, every connection, every timer. */
  stop(): Promise<void>;
}

/**
 * Starts an HTTP proxy on a free loopback port in front of `target` (a registry). Requests keep
 * their Host header, so the registry's upload locations point back at the proxy.
 */
export async function startFaultProxy(target: string | { host: string }): Promise<FaultProxy> {
  const upstream = new URL(`http://${typeof target === "string" ? target : target.host}`);
  let mode: FaultMode = { kind: "normal" };
  let requests = 0;
  let stopped = false;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const forwards = new Set<http.ClientRequest>();
  // Its own pool to the registry, destroyed at stop.
  const agent = new http.Agent({ keepAlive: true });

  const forward = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const out = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwards.add(out);
    out.on("close", () => forwards.delete(out));
    out.on("error", () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(out);
  };

  const server = http.createServer((req, res) => {
    requests++;
    const now = mode;
    if (now.kind === "normal") return forward(req, res);
    if (now.kind === "delay") {
      const timer = setTimeout(() => {
        timers.delete(timer);
        forward(req, res);
      }, now.ms);
      timers.add(timer);
      res.on("close", () => {
        clearTimeout(timer);
        timers.delete(timer);
      });
      return;
    }
    req.resume();
    if (now.kind === "status") {
      const code = now.status === 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE";
      res.writeHead(now.status, {
        "content-type": "application/json",
        ...(now.retryAfterSeconds !== undefined ? { "retry-after": String(now.retryAfterSeconds) } : {}),
      });
      res.end(JSON.stringify({ errors: [{ code, message: "made by the fault proxy" }] }));
    }
    // blackhole: never answered; the socket is destroyed when the mode changes to down, or at stop.
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const port = await listen(server, 0);

  const dropAll = () => {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const out of forwards) out.destroy();
    for (const socket of sockets) socket.destroy();
  };
  const setMode = async (next: FaultMode) => {
    if (stopped) throw new Error("the fault proxy is stopped");
    const wasDown = mode.kind === "down";
    mode = next;
    if (next.kind === "down" && !wasDown) {
      const closed = closeServer(server);
      dropAll();
      await closed;
    } else if (next.kind !== "down" && wasDown) {
      await listen(server, port);
    }
  };

  return {
    host: `${loopback}:${port}`,
    get mode() {
      return mode;
    },
    get requests() {
      return requests;
    },
    normal: () => setMode({ kind: "normal" }),
    delay: (ms) => setMode({ kind: "delay", ms }),
    status: (status, retryAfterSeconds) =>
      setMode({ kind: "status", status, ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}) }),
    blackhole: () => setMode({ kind: "blackhole" }),
    down: () => setMode({ kind: "down" }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      const closed = mode.kind === "down" ? Promise.resolve() : closeServer(server);
      dropAll();
      agent.destroy();
      await closed;
    },
  };
}

/** Listens on 127.0.0.1 (port 0: any free one); resolves to the port. */
export function listen(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, loopback, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Closes a server and the idle keep-alive connections it still holds. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
