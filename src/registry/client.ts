/**
 * Asks an image registry whether it has a manifest, the way the OCI Distribution Spec says:
 * `HEAD /v2/<repository>/manifests/<tag or digest>`, accepting every manifest and index type a
 * runtime may pull. 200 is present (with `Docker-Content-Digest` when the registry sends it),
 * 404 is absent, anything else (a timeout, 5xx, 429, a refused token) is unknown: the caller
 * decides what unknown means, never this client.
 *
 * Authentication follows the registries' token flow: a 401 with `WWW-Authenticate: Bearer
 * realm=…,service=…,scope=…` is answered by fetching a token from the realm (with Basic
 * credentials when the caller has some) and asking again; tokens are cached per realm, service
 * and scope, for the credentials they were fetched with, until they expire. A 401 with `Basic`
 * is answered with the credentials. Plain HTTP is used only for registries the caller marks
 * insecure. Credentials are given per check (`checkManifest(ref, credentials)`): one process
 * checks for rule objects that name different Secrets, and a token one Secret earned is never
 * sent for a check made with another Secret or with none.
 *
 * The cache, the circuit breaker and the metrics in front of this client are `presence.ts`.
 */
import { createHash } from "node:crypto";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { LRUCache } from "lru-cache";
import { errorMessage } from "../errors.ts";
import type { IncomingMessage } from "../platform/node-http.ts";
import { http } from "../platform/node-http.ts";
import { USER_AGENT } from "../version.ts";
import type { Credentials } from "./credentials.ts";

export type { Credentials } from "./credentials.ts";

export type Presence =
  | { readonly state: "present"; readonly digest?: string }
  | { readonly state: "absent" }
  | {
      readonly state: "unknown";
      readonly reason: string;
      /** A 429's or 503's `Retry-After`, in ms (at most `MAX_RETRY_AFTER_MS`), when it sent one. */
      readonly retryAfterMs?: number;
    };

export interface ManifestRef {
  /** `registry.corp:5000`; `docker.io` is asked at `registry-1.docker.io`. */
  readonly host: string;
  readonly repository: string;
  /** A tag or a digest. */
  readonly reference: string;
  /** Plain HTTP for this check: a registry the user marks insecure (a local mirror). */
  readonly insecure?: boolean;
}

/**
 * The longest `Retry-After` believed: a registry (possibly one a pod names) must not be able to
 * silence checks against it for hours with one header.
 */
export const MAX_RETRY_AFTER_MS = 300_000;

/** The longest a token is kept, whatever `expires_in` says: a bound a token server cannot lift. */
export const MAX_TOKEN_LIFETIME_MS = 3_600_000;

/**
 * Tokens kept (one per realm, service, scope and credentials). Repositories come from pods'
 * images, so scopes are as many as the images pods name: the cache is bounded, oldest dropped.
 */
export const MAX_TOKENS = 1_000;

/**
 * Connections kept to one registry at once. Pods name the images, so one pod (or many) could
 * otherwise make ImageShift open thousands of connections to a mirror; checks past this wait
 * for a connection, within their own time bound, and most are answered from the cache anyway.
 */
export const MAX_SOCKETS_PER_REGISTRY = 16;

/** A token answer is a few KiB and a HEAD has no body: more is refused, not read. */
export const MAX_ANSWER_BYTES = 65_536;

/** Hosts counted one by one in `sent`; others are added up under `other` (hosts come from pods). */
export const MAX_COUNTED_HOSTS = 1_000;

export interface RegistryClientOptions {
  /** Registries reached over plain HTTP (a local mirror), besides refs marked `insecure`. */
  insecure?: (host: string) => boolean;
  /** Bound on each exchange (the manifest and the token request each). */
  timeoutMs?: number;
  /** Extra CA certificates (PEM) for registries with a private CA. */
  ca?: string;
}

/** Every manifest a runtime may pull: OCI index and manifest, Docker manifest list and v2. */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

/** `Bearer realm="…",service="…",scope="…"` as a map (lower-case keys), with the scheme. */
export function parseChallenge(header: string | undefined): {
  scheme: string;
  params: Record<string, string>;
} {
  const [scheme = "", ...rest] = (header ?? "").trim().split(/\s+/);
  const params: Record<string, string> = {};
  for (const match of rest.join(" ").matchAll(/([A-Za-z]+)="([^"]*)"/g))
    params[(match[1] as string).toLowerCase()] = match[2] as string;
  return { scheme: scheme.toLowerCase(), params };
}

/** The host a registry name is asked at: Docker Hub's API lives on another name. */
export function apiHost(host: string): string {
  return host === "docker.io" || host === "index.docker.io" ? "registry-1.docker.io" : host;
}

/** An HTTP date as RFC 9110 requires senders to write it: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = /^\s*[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\s*$/;

/**
 * A `Retry-After` in ms, at most `MAX_RETRY_AFTER_MS`: a number of seconds (what registries
 * send), or an HTTP date, counted from `now` (a date past is 0). Undefined when absent or
 * neither.
 */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  if (/^\s*\d{1,9}\s*$/.test(value)) return Math.min(Number(value) * 1000, MAX_RETRY_AFTER_MS);
  const date = IMF_FIXDATE.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.min(Math.max(date - now, 0), MAX_RETRY_AFTER_MS);
}

/**
 * Who a token was fetched for, as part of its cache key: the username and a SHA-256 of the
 * password (never the password itself), or "" for an anonymous check.
 */
export function credentialIdentity(credentials: Credentials | undefined): string {
  if (credentials === undefined) return "";
  return `${credentials.username}\n${createHash("sha256").update(credentials.password).digest("hex")}`;
}

/** What one check knows while it authenticates. */
interface Check {
  /** The registry as the image names it. */
  readonly registry: string;
  readonly insecure: boolean;
  readonly scope: string;
  readonly credentials: Credentials | undefined;
  /** `credentialIdentity(credentials)`. */
  readonly identity: string;
}

export class RegistryClient {
  private readonly options: RegistryClientOptions;
  private readonly agent: HttpsAgent;
  private readonly plainAgent: InstanceType<typeof http.Agent>;
  /** Tokens by realm, service, scope and credential identity. */
  private readonly tokens = new LRUCache<string, { token: string; expires: number }>({ max: MAX_TOKENS });
  /** Which token key a host, scope and identity last used: that token is sent at once next time. */
  private readonly tokenFor = new LRUCache<string, string>({ max: MAX_TOKENS });
  private readonly counts = new Map<string, number>();
  private readonly listeners = new Set<(registry: string) => void>();

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
    const pool = { keepAlive: true, maxSockets: MAX_SOCKETS_PER_REGISTRY };
    this.agent = new HttpsAgent({ ...pool, ...(options.ca ? { ca: options.ca } : {}) });
    this.plainAgent = new http.Agent(pool);
  }

  /**
   * Requests sent, by the host they went to (a token server counts as itself): Docker Hub
   * counts pulls, and users ask what a check costs. Past `MAX_COUNTED_HOSTS` hosts, new ones
   * are added up under `other`.
   */
  get sent(): ReadonlyMap<string, number> {
    return this.counts;
  }

  /** Calls `listener` with the registry a check is for (as the image names it) on every request sent. */
  onRequest(listener: (registry: string) => void): void {
    this.listeners.add(listener);
  }

  /** Closes the keep-alive connections; requests in flight end with an error (unknown). */
  close(): void {
    this.agent.destroy();
    this.plainAgent.destroy();
  }

  /**
   * Present, absent or unknown; never throws. `credentials` are sent when the registry asks
   * (Basic, or to the token server); none means an anonymous check.
   */
  async checkManifest(ref: ManifestRef, credentials?: Credentials): Promise<Presence> {
    const host = apiHost(ref.host);
    const insecure = ref.insecure === true || this.options.insecure?.(ref.host) === true;
    const url = `${insecure ? "http" : "https"}://${host}/v2/${ref.repository}/manifests/${ref.reference}`;
    const check: Check = {
      registry: ref.host,
      insecure,
      scope: `repository:${ref.repository}:pull`,
      credentials,
      identity: credentialIdentity(credentials),
    };
    try {
      const cached = this.cachedAuthorization(host, check);
      let answer = await this.send(check, "HEAD", url, cached);
      if (answer.status === 401) {
        const authorized = await this.authorize(check, answer.headers["www-authenticate"], cached);
        if ("reason" in authorized) return { state: "unknown", reason: authorized.reason };
        answer = await this.send(check, "HEAD", url, authorized.authorization);
      }
      if (answer.status === 200) {
        const digest = answer.headers["docker-content-digest"];
        return typeof digest === "string" ? { state: "present", digest } : { state: "present" };
      }
      if (answer.status === 404) return { state: "absent" };
      const reason = `HTTP ${answer.status}`;
      const after =
        answer.status === 429 || answer.status === 503
          ? retryAfterMs(answer.headers["retry-after"])
          : undefined;
      return after === undefined
        ? { state: "unknown", reason }
        : { state: "unknown", reason, retryAfterMs: after };
    } catch (error) {
      return { state: "unknown", reason: errorMessage(error) };
    }
  }

  /** A token still valid for this host, scope and identity: no 401 round trip for repeated checks. */
  private cachedAuthorization(host: string, check: Check): string | undefined {
    const key = this.tokenFor.get(`${host}\n${check.scope}\n${check.identity}`);
    const entry = key === undefined ? undefined : this.tokens.get(key);
    return entry && entry.expires > Date.now() ? `Bearer ${entry.token}` : undefined;
  }

  /**
   * The Authorization a 401's challenge asks for, or why it cannot be met. `refused` is the
   * Authorization the 401 answered: a cached token the registry no longer takes is fetched anew.
   */
  private async authorize(
    check: Check,
    challenge: string | string[] | undefined,
    refused: string | undefined,
  ): Promise<{ authorization: string } | { reason: string }> {
    const { scheme, params } = parseChallenge(Array.isArray(challenge) ? challenge[0] : challenge);
    const { credentials } = check;
    const basic = credentials
      ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`
      : undefined;
    if (scheme === "basic")
      return basic ? { authorization: basic } : { reason: "401: Basic auth asked, no credentials" };
    if (scheme !== "bearer" || !params.realm) return { reason: "401: no usable credentials" };
    const scope = params.scope ?? check.scope;
    const key = `${params.realm}\n${params.service ?? ""}\n${scope}\n${check.identity}`;
    this.tokenFor.set(`${apiHost(check.registry)}\n${check.scope}\n${check.identity}`, key);
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now() && `Bearer ${cached.token}` !== refused)
      return { authorization: `Bearer ${cached.token}` };
    const tokenUrl = new URL(params.realm);
    // Credentials never travel in clear to a token server of a registry reached over HTTPS.
    if (tokenUrl.protocol !== "https:" && !(tokenUrl.protocol === "http:" && check.insecure))
      return { reason: `401: token realm ${tokenUrl.origin} refused: not HTTPS` };
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", scope);
    const answer = await this.send(check, "GET", tokenUrl.toString(), basic);
    if (answer.status !== 200) return { reason: `401: the token server answered HTTP ${answer.status}` };
    const body = JSON.parse(answer.body) as { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const token = body.token ?? body.access_token;
    if (typeof token !== "string" || token === "") return { reason: "401: the token server sent no token" };
    // Docker's token spec: 60 s when the server does not say; never longer than our own bound.
    const lifetime =
      typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in * 1000 : 60_000;
    this.tokens.set(key, { token, expires: Date.now() + Math.min(lifetime, MAX_TOKEN_LIFETIME_MS) });
    return { authorization: `Bearer ${token}` };
  }

  private count(host: string): void {
    const key = this.counts.has(host) || this.counts.size < MAX_COUNTED_HOSTS ? host : "other";
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  private send(
    check: Check,
    method: "HEAD" | "GET",
    url: string,
    authorization: string | undefined,
  ): Promise<Answer> {
    const target = new URL(url);
    this.count(target.host);
    for (const listener of this.listeners) listener(check.registry);
    const secure = target.protocol === "https:";
    const timeoutMs = this.options.timeoutMs ?? 2_000;
    return new Promise((resolve, reject) => {
      const request = (secure ? httpsRequest : http.request)(
        target,
        {
          method,
          agent: secure ? this.agent : this.plainAgent,
          headers: {
            "user-agent": USER_AGENT,
            accept: method === "HEAD" ? MANIFEST_ACCEPT : "application/json",
            ...(authorization ? { authorization } : {}),
          },
        },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            body += chunk;
            // A token answer is small: a bigger one is refused, not read to its end.
            if (body.length > MAX_ANSWER_BYTES)
              request.destroy(
                new Error(`${target.host} sent an answer larger than ${MAX_ANSWER_BYTES} bytes`),
              );
          });
          response.on("end", () => {
            clearTimeout(timer);
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body });
          });
          response.on("error", reject);
        },
      );
      // A bound on the whole exchange, not only on idle time: a registry that trickles a byte
      // now and then would otherwise hold a check (and its single flight) forever.
      const timer = setTimeout(
        () => request.destroy(new Error(`no answer from ${target.host} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      timer.unref();
      request.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.end();
    });
  }
}
