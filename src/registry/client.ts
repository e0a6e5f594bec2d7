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
 * and scope until they expire. A 401 with `Basic` is answered with the credentials. Plain HTTP
 * is used only for registries the caller marks insecure.
 *
 * This is the first part of mirror presence checks (issue 13); the cache, the circuit breaker
 * and the admission step are not built yet.
 */
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { errorMessage } from "../errors.ts";
import type { IncomingMessage } from "../platform/node-http.ts";
import { http } from "../platform/node-http.ts";
import { USER_AGENT } from "../version.ts";

export type Presence =
  | { readonly state: "present"; readonly digest?: string }
  | { readonly state: "absent" }
  | { readonly state: "unknown"; readonly reason: string };

export interface ManifestRef {
  /** `registry.corp:5000`; `docker.io` is asked at `registry-1.docker.io`. */
  readonly host: string;
  readonly repository: string;
  /** A tag or a digest. */
  readonly reference: string;
}

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export interface RegistryClientOptions {
  /** Registries reached over plain HTTP (a local mirror); all others over HTTPS. */
  insecure?: (host: string) => boolean;
  credentials?: (host: string) => Credentials | undefined;
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

export class RegistryClient {
  private readonly options: RegistryClientOptions;
  private readonly agent: HttpsAgent;
  private readonly plainAgent: InstanceType<typeof http.Agent>;
  /** Tokens by realm, service and scope; and which token key a host and scope last used. */
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  private readonly tokenFor = new Map<string, string>();
  /** Requests sent, by host: Docker Hub counts pulls, and users ask what a check costs. */
  readonly sent = new Map<string, number>();

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
    this.agent = new HttpsAgent({ keepAlive: true, ...(options.ca ? { ca: options.ca } : {}) });
    this.plainAgent = new http.Agent({ keepAlive: true });
  }

  close(): void {
    this.agent.destroy();
    this.plainAgent.destroy();
  }

  /** Present, absent or unknown; never throws. */
  async checkManifest(ref: ManifestRef): Promise<Presence> {
    const host = apiHost(ref.host);
    const scheme = this.options.insecure?.(ref.host) ? "http" : "https";
    const url = `${scheme}://${host}/v2/${ref.repository}/manifests/${ref.reference}`;
    const scope = `repository:${ref.repository}:pull`;
    try {
      let answer = await this.send("HEAD", url, this.cachedAuthorization(host, scope));
      if (answer.status === 401) {
        const authorization = await this.authorize(ref.host, answer.headers["www-authenticate"], scope);
        if (authorization === undefined) return { state: "unknown", reason: "401: no usable credentials" };
        answer = await this.send("HEAD", url, authorization);
      }
      if (answer.status === 200) {
        const digest = answer.headers["docker-content-digest"];
        return typeof digest === "string" ? { state: "present", digest } : { state: "present" };
      }
      if (answer.status === 404) return { state: "absent" };
      return { state: "unknown", reason: `HTTP ${answer.status}` };
    } catch (error) {
      return { state: "unknown", reason: errorMessage(error) };
    }
  }

  /** A token still valid for this host and scope: no 401 round trip for repeated checks. */
  private cachedAuthorization(host: string, scope: string): string | undefined {
    const key = this.tokenFor.get(`${host}\n${scope}`);
    const entry = key === undefined ? undefined : this.tokens.get(key);
    return entry && entry.expires > Date.now() ? `Bearer ${entry.token}` : undefined;
  }

  /** The Authorization a 401's challenge asks for, or undefined when it cannot be met. */
  private async authorize(registry: string, challenge: string | string[] | undefined, scope: string) {
    const { scheme, params } = parseChallenge(Array.isArray(challenge) ? challenge[0] : challenge);
    const credentials = this.options.credentials?.(registry);
    const basic = credentials
      ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`
      : undefined;
    if (scheme === "basic") return basic;
    if (scheme !== "bearer" || !params.realm) return undefined;
    const key = `${params.realm}\n${params.service ?? ""}\n${params.scope ?? scope}`;
    this.tokenFor.set(`${apiHost(registry)}\n${scope}`, key);
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return `Bearer ${cached.token}`;
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", params.scope ?? scope);
    const answer = await this.send("GET", tokenUrl.toString(), basic);
    if (answer.status !== 200) return undefined;
    const body = JSON.parse(answer.body) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) return undefined;
    // Docker's token spec: 60 s when the server does not say.
    this.tokens.set(key, { token, expires: Date.now() + (body.expires_in ?? 60) * 1000 });
    return `Bearer ${token}`;
  }

  private send(method: "HEAD" | "GET", url: string, authorization: string | undefined): Promise<Answer> {
    const target = new URL(url);
    this.sent.set(target.host, (this.sent.get(target.host) ?? 0) + 1);
    const secure = target.protocol === "https:";
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
          timeout: this.options.timeoutMs ?? 2_000,
        },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            if (body.length < 65_536) body += chunk;
          });
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
          );
          response.on("error", reject);
        },
      );
      request.on("timeout", () =>
        request.destroy(new Error(`no answer from ${target.host} within the timeout`)),
      );
      request.on("error", reject);
      request.end();
    });
  }
}
