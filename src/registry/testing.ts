/**
 * Test helpers for presence checks: a scripted registry on loopback (plain HTTP) whose manifest
 * answers a test sets, with an optional token server, counting every request it gets.
 */
import type { AddressInfo } from "node:net";
import { http, type IncomingMessage, type ServerResponse } from "../platform/node-http.ts";

export const DIGEST = `sha256:${"d".repeat(64)}`;

export interface ScriptedAnswer {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Never answered, as a registry that hangs: the client's timeout ends it. */
  readonly hang?: boolean;
}

/** A 200 with `DIGEST`. */
export const PRESENT: ScriptedAnswer = { status: 200, headers: { "docker-content-digest": DIGEST } };

/** An HTTP server on 127.0.0.1 and a free port; subclasses answer its requests. */
export abstract class LoopbackServer {
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  /** Its port, once started. */
  port = 0;

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** Connections open to it now (keep-alive ones included). */
  connections(): Promise<number> {
    // Its error is for cluster workers' handles; this server is the process's own.
    return new Promise((resolve) => this.server.getConnections((_error, count) => resolve(count)));
  }

  protected abstract handle(req: IncomingMessage, res: ServerResponse): void;
}

export class ScriptedRegistry extends LoopbackServer {
  /** Manifest answers by `repository:reference`; anything else answers 404. */
  readonly manifests = new Map<string, ScriptedAnswer>();
  /** When true, manifests need a Bearer token from `/token`, which grants one to anyone. */
  tokenAuth = false;
  /** Manifest requests, in order. */
  readonly requests: { method: string; path: string; authorization: string }[] = [];
  /** The Authorization of each token request ("none" when anonymous); token `tok.<n>` is the n-th. */
  readonly tokenRequests: string[] = [];
  private readonly issued = new Set<string>();

  protected handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(String(req.url), "http://127.0.0.1");
    const authorization = req.headers.authorization ?? "none";
    if (url.pathname === "/token") {
      this.tokenRequests.push(authorization);
      const token = `tok.${this.tokenRequests.length}`;
      this.issued.add(token);
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ token, expires_in: 300 }));
    }
    this.requests.push({ method: String(req.method), path: url.pathname, authorization });
    // Every other path is a manifest's: `/v2/<repository>/manifests/<reference>`.
    const [repository, reference] = url.pathname.replace(/^\/v2\//, "").split("/manifests/");
    if (this.tokenAuth && !this.issued.has(authorization.replace(/^Bearer /, ""))) {
      res.writeHead(401, {
        "www-authenticate": `Bearer realm="http://${this.host}/token",service="scripted",scope="repository:${repository}:pull"`,
      });
      return void res.end();
    }
    const answer = this.manifests.get(`${repository}:${reference}`) ?? { status: 404 };
    if (answer.hang) return;
    res.writeHead(answer.status, answer.headers ?? {}).end();
  }
}
