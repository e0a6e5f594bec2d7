/**
 * A small Kubernetes API client: JSON requests and watch streams over one keep-alive
 * connection pool, authenticated as `kubeconfig.ts` says.
 *
 * Why not `@kubernetes/client-node`: ImageShift makes about ten kinds of call, and loading
 * that library costs about 38 MB of resident memory (measured on the production build,
 * docs/performance.md), a third of the webhook's 120 MB budget. See ADR 6.
 */

import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeApiError } from "../errors.ts";
import type { Agent as HttpAgent, IncomingMessage } from "../platform/node-http.ts";
import { http } from "../platform/node-http.ts";
import { FIELD_MANAGER, USER_AGENT } from "../version.ts";
import type { ClusterConnection } from "./kubeconfig.ts";
import type { KubeObject, ObjectList, WatchEvent } from "./objects.ts";

/** A plain call (read, write, one list page) that takes longer than this has failed. */
const REQUEST_TIMEOUT_MS = 30_000;
/** List page size, as client-go's informers use: a huge list never arrives in one response. */
const LIST_PAGE_SIZE = 500;

/** A 429 is retried after its `Retry-After` this many times, as client-go does, then reported. */
const MAX_THROTTLED_RETRIES = 10;
/** The wait for a 429 without a usable `Retry-After`, and the longest wait honoured. */
const DEFAULT_RETRY_AFTER_S = 1;
const MAX_RETRY_AFTER_S = 60;

export type PatchType = "merge" | "json";

/** The Kubernetes verb of a call, as the API server's audit log names it; a metrics label. */
export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch";

export interface ClientOptions {
  /** Sent with every request (default `imageshift/<version>`). */
  userAgent?: string;
  /** Sent as `?fieldManager=` with every write (default `imageshift`). */
  fieldManager?: string;
  /**
   * Called once per HTTP exchange (retries included) with its verb and the response status, or
   * `<error>` when no response came: the client's request metrics.
   */
  onResponse?: (verb: Verb, code: string) => void;
}

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
};

/** Builds an API path: `/api/v1/...` for the core group, `/apis/<group>/<version>/...` otherwise. */
export function resourcePath(resource: {
  group?: string;
  version: string;
  plural: string;
  namespace?: string;
  name?: string;
  subresource?: string;
}): string {
  const base = resource.group ? `/apis/${resource.group}/${resource.version}` : `/api/${resource.version}`;
  const namespace = resource.namespace ? `/namespaces/${encodeURIComponent(resource.namespace)}` : "";
  const name = resource.name ? `/${encodeURIComponent(resource.name)}` : "";
  const subresource = resource.subresource ? `/${resource.subresource}` : "";
  return `${base}${namespace}/${resource.plural}${name}${subresource}`;
}

interface RequestOptions {
  verb: Verb;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Socket inactivity that fails the call; watches set their own. */
  timeoutMs?: number;
}

export class KubeClient {
  readonly server: string;
  readonly origin: string;
  private readonly connection: ClusterConnection;
  private readonly agent: HttpAgent;
  private readonly secure: boolean;
  private readonly options: ClientOptions;

  constructor(connection: ClusterConnection, options: ClientOptions = {}) {
    this.connection = connection;
    this.options = options;
    this.server = connection.server;
    this.origin = connection.origin;
    this.secure = connection.server.startsWith("https:");
    this.agent = this.secure
      ? new HttpsAgent({
          keepAlive: true,
          ...(connection.ca ? { ca: connection.ca } : {}),
          ...(connection.cert && connection.key ? { cert: connection.cert, key: connection.key } : {}),
          ...(connection.tlsServerName ? { servername: connection.tlsServerName } : {}),
          rejectUnauthorized: !connection.insecureSkipTlsVerify,
          minVersion: "TLSv1.2",
        })
      : new http.Agent({ keepAlive: true });
  }

  /** `signal` (here and below) abandons the call: it rejects at once and its connection closes. */
  get<T>(path: string, query?: RequestOptions["query"], signal?: AbortSignal): Promise<T> {
    return this.json<T>("GET", path, {
      verb: "get",
      ...(query ? { query } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  create<T>(path: string, body: T, signal?: AbortSignal): Promise<T> {
    return this.json<T>("POST", path, { verb: "create", body, ...(signal ? { signal } : {}) });
  }

  replace<T>(path: string, body: T, signal?: AbortSignal): Promise<T> {
    return this.json<T>("PUT", path, { verb: "update", body, ...(signal ? { signal } : {}) });
  }

  patch<T>(path: string, body: unknown, type: PatchType): Promise<T> {
    return this.json<T>("PATCH", path, { verb: "patch", body, contentType: PATCH_CONTENT_TYPES[type] });
  }

  /** Every page of a list; the result carries the resourceVersion to watch from. */
  async list<T extends KubeObject>(
    path: string,
    query: Record<string, string | undefined> = {},
    signal?: AbortSignal,
  ) {
    const items: T[] = [];
    let next: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page: ObjectList<T> = await this.json<ObjectList<T>>("GET", path, {
        verb: "list",
        query: { ...query, limit: LIST_PAGE_SIZE, continue: next },
        ...(signal ? { signal } : {}),
      });
      items.push(...(page.items ?? []));
      next = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion;
    } while (next);
    return { items, resourceVersion };
  }

  /**
   * Streams watch events to `onEvent` until the server ends the watch (resolves), the
   * connection fails (rejects) or `signal` aborts (resolves). A stream silent for longer than
   * the server's own timeout plus a margin is treated as dead: a half-open connection would
   * otherwise leave the cache stale for good.
   */
  async watch<T extends KubeObject>(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const timeoutSeconds = Number(query.timeoutSeconds ?? 300);
    let response: IncomingMessage;
    try {
      response = await this.send("GET", path, {
        verb: "watch",
        query: { ...query, watch: true, timeoutSeconds },
        signal,
        timeoutMs: (timeoutSeconds + 30) * 1000,
      });
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      let failed = false;
      const fail = (error: unknown) => {
        failed = true;
        response.destroy();
        reject(error);
      };
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        buffered += chunk;
        let end = buffered.indexOf("\n");
        while (end >= 0 && !failed) {
          const line = buffered.slice(0, end).trim();
          buffered = buffered.slice(end + 1);
          if (line) {
            try {
              onEvent(JSON.parse(line) as WatchEvent<T>);
            } catch (error) {
              fail(error);
            }
          }
          end = buffered.indexOf("\n");
        }
      });
      response.on("end", () => resolve());
      response.on("error", (error) => (signal.aborted ? resolve() : fail(error)));
      response.on("close", () => {
        if (!response.complete && !failed) {
          if (signal.aborted) resolve();
          else fail(new Error(`watch ${path}: connection closed`));
        }
      });
    });
  }

  /** Closes idle pooled connections; calls in flight finish. */
  close(): void {
    this.agent.destroy();
  }

  private async json<T>(method: string, path: string, options: RequestOptions): Promise<T> {
    const response = await this.send(method, path, options);
    const text = await readBody(response);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Sends a request; resolves with a 2xx response, rejects with `KubeApiError` otherwise. A 429
   * (the API server's priority and fairness, or a webhook's rate limit) is sent again after the
   * `Retry-After` it carries, up to `MAX_THROTTLED_RETRIES` times.
   */
  private async send(method: string, path: string, options: RequestOptions): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.sendOnce(method, path, options);
      } catch (error) {
        if (!(error instanceof KubeApiError) || error.code !== 429 || attempt >= MAX_THROTTLED_RETRIES)
          throw error;
        await sleep(retryAfterSeconds(error.retryAfter) * 1000, undefined, {
          ...(options.signal ? { signal: options.signal } : {}),
        });
      }
    }
  }

  private async sendOnce(method: string, path: string, options: RequestOptions): Promise<IncomingMessage> {
    const token = await this.connection.credential.token();
    // Appended, not resolved: a server URL may carry a path (`https://proxy/k8s/clusters/c-1`).
    const url = new URL(`${this.server}${path}`);
    for (const [name, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(name, String(value));
    if (method !== "GET") url.searchParams.set("fieldManager", this.options.fieldManager ?? FIELD_MANAGER);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = {
      accept: "application/json",
      "user-agent": this.options.userAgent ?? USER_AGENT,
    };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers["content-type"] = options.contentType ?? "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = (this.secure ? httpsRequest : http.request)(url, {
        method,
        headers,
        agent: this.agent,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      let answered: IncomingMessage | undefined;
      request.setTimeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS, () => {
        const error = new Error(`${method} ${url.pathname}: no answer from ${this.server}`);
        answered?.destroy(error); // a watch already streaming reports this, not "aborted"
        request.destroy(error);
      });
      request.on("response", (response) => {
        answered = response;
        resolve(response);
      });
      request.on("error", (error) => {
        if (!answered) this.options.onResponse?.(options.verb, "<error>");
        reject(error);
      });
      request.end(body);
    });
    const status = response.statusCode ?? 0;
    this.options.onResponse?.(options.verb, String(status));
    if (status >= 200 && status < 300) return response;
    const text = await readBody(response).catch(() => "");
    if (status === 401) this.connection.credential.invalidate();
    const retryAfter = response.headers["retry-after"];
    throw new KubeApiError(method, url.pathname, status, text, retryAfter);
  }
}

/** `Retry-After` in seconds (the API server sends whole seconds), bounded; a default when absent or a date. */
export function retryAfterSeconds(header: string | undefined): number {
  const seconds = Number(header);
  if (header === undefined || header.trim() === "" || !Number.isFinite(seconds) || seconds < 0)
    return DEFAULT_RETRY_AFTER_S;
  return Math.min(seconds, MAX_RETRY_AFTER_S);
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    response.on("error", reject);
  });
}
