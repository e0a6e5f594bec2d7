/**
 * Real registries for the mirror presence tests (issue 13), beyond `startRegistry` in image.ts:
 *
 * - `startTokenServer`: a Docker-style token server in the test process, whose tokens Debian's
 *   `docker-registry` (distribution 2.8) accepts, so a registry can run with token auth;
 * - `pushImage`: minimal OCI images (a config, a one-file layer, a manifest, and an index for
 *   multi-arch) built in memory and pushed over the Distribution API, no podman needed;
 *   `deleteManifest` removes one again;
 * - `startFaultProxy` (fault-proxy.ts): a loopback HTTP proxy in front of a registry that can be
 *   made slow, busy (429, 503), silent or down at run time.
 *
 * Everything listens on 127.0.0.1 only and is stopped by the caller; stopping clears every timer
 * and socket it made.
 */
import { createHash, randomUUID, sign, X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { createCertificateAuthority } from "../../../src/certs/authority.ts";
import { closeServer, listen } from "./fault-proxy.ts";
import type { RegistryCredentials, RegistryTokenAuth } from "./image.ts";

export { type FaultMode, type FaultProxy, startFaultProxy } from "./fault-proxy.ts";
export type { Registry, RegistryCredentials, RegistryOptions, RegistryTokenAuth } from "./image.ts";
export { startRegistry } from "./image.ts";

const loopback = "127.0.0.1";

/** A registry's address, `127.0.0.1:<port>`, or anything that has one (a Registry, a FaultProxy). */
export type RegistryAddress = string | { host: string };

const hostOf = (registry: RegistryAddress) => (typeof registry === "string" ? registry : registry.host);

// ---------------------------------------------------------------------------------------------
// Token server

export interface TokenServerOptions {
  /** Users that may pull and push everywhere, by Basic credentials on the token request. */
  users?: RegistryCredentials[];
  /**
   * The tokens' life (`expires_in` and the JWT's `exp`); 300 s when not given. A client refreshes
   * by `expires_in`; distribution itself still accepts a token up to 60 s past `exp` (its leeway).
   */
  expiresInSeconds?: number;
  /** The `iss` claim; a registry must be configured with the same. */
  issuer?: string;
  /** What a token request without credentials gets: nothing (the default) or pull everywhere. */
  anonymous?: "none" | "pull";
}

/** One request the token server answered. */
export interface TokenRequest {
  /** The user whose Basic credentials were right; undefined for an anonymous request. */
  user?: string;
  service: string;
  /** The `scope` parameters, e.g. `repository:app:pull`. */
  scopes: string[];
  /** 200 with a token, 401 for wrong credentials, 404 for a path other than /token. */
  status: number;
}

export interface TokenServer {
  /** `127.0.0.1:<port>` (a fault proxy may stand in front: give the registry its realm then). */
  host: string;
  /** `http://127.0.0.1:<port>/token`. */
  realm: string;
  issuer: string;
  /** PEM file holding the (self-signed) certificate that signs the tokens. */
  rootCertBundlePath: string;
  /** The `auth.token` options for `startRegistry` of a registry trusting this server. */
  registryAuth(service?: string): RegistryTokenAuth;
  /** Every token request so far, oldest first. */
  readonly requests: readonly TokenRequest[];
  /** How many tokens it has issued (requests answered 200). */
  readonly issued: number;
  stop(): Promise<void>;
}

/**
 * Starts a token server on a free loopback port. `GET /token?service=…&scope=…` (optional Basic
 * auth) answers `{token, access_token, expires_in, issued_at}`; the token is an ES256 JWT whose
 * header carries its signing certificate in `x5c`, and that certificate is the registry's root
 * bundle. Users get pull, push and delete on every scope they ask for.
 */
export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const issuer = options.issuer ?? "imageshift-e2e-token-issuer";
  const expiresIn = options.expiresInSeconds ?? 300;
  const signer = await createCertificateAuthority({ commonName: issuer, validityDays: 1 });
  const x5c = new X509Certificate(signer.certPem).raw.toString("base64");
  const dir = await mkdtemp(path.join(tmpdir(), "imageshift-token-"));
  const rootCertBundlePath = path.join(dir, "root.pem");
  await writeFile(rootCertBundlePath, signer.certPem);
  const requests: TokenRequest[] = [];
  let issued = 0;

  const server = http.createServer((req, res) => {
    req.resume();
    const url = new URL(req.url ?? "/", "http://token");
    const service = url.searchParams.get("service") ?? "";
    const scopes = url.searchParams.getAll("scope").flatMap((scope) => scope.split(" ").filter(Boolean));
    const presented = basicCredentials(req.headers.authorization);
    const user = presented
      ? options.users?.find((u) => u.username === presented.username && u.password === presented.password)
      : undefined;
    if (url.pathname !== "/token" || (presented && !user)) {
      const status = url.pathname !== "/token" ? 404 : 401;
      requests.push({ service, scopes, status });
      res.writeHead(status, { "content-type": "application/json" });
      const error = status === 404 ? { code: "NOT_FOUND", message: "no such path" } : undefined;
      res.end(JSON.stringify({ errors: [error ?? { code: "UNAUTHORIZED", message: "wrong credentials" }] }));
      return;
    }
    const allowed = user ? ["pull", "push", "delete", "*"] : options.anonymous === "pull" ? ["pull"] : [];
    const access = scopes.flatMap((scope) => {
      const first = scope.indexOf(":");
      const last = scope.lastIndexOf(":");
      if (first < 0 || last <= first) return [];
      const actions = scope
        .slice(last + 1)
        .split(",")
        .filter((action) => allowed.includes(action));
      return [{ type: scope.slice(0, first), name: scope.slice(first + 1, last), actions }];
    });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuer,
      sub: user?.username ?? "",
      aud: service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const token = signJwt({ typ: "JWT", alg: "ES256", x5c: [x5c] }, claims, signer.keyPem);
    issued++;
    requests.push({ ...(user ? { user: user.username } : {}), service, scopes, status: 200 });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: expiresIn,
        issued_at: new Date(now * 1000).toISOString(),
      }),
    );
  });
  const port = await listen(server, 0);
  const realm = `http://${loopback}:${port}/token`;
  return {
    host: `${loopback}:${port}`,
    realm,
    issuer,
    rootCertBundlePath,
    registryAuth: (service = "imageshift-e2e-registry") => ({ realm, service, issuer, rootCertBundlePath }),
    requests,
    get issued() {
      return issued;
    },
    stop: async () => {
      await closeServer(server);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A compact JWS: base64url(header).base64url(claims).base64url(ES256 signature as r||s). */
function signJwt(header: object, claims: object, keyPem: string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${encode(header)}.${encode(claims)}`;
  const signature = sign("sha256", Buffer.from(input), { key: keyPem, dsaEncoding: "ieee-p1363" });
  return `${input}.${signature.toString("base64url")}`;
}

function basicCredentials(header: string | undefined): RegistryCredentials | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? "");
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, "base64").toString();
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

// ---------------------------------------------------------------------------------------------
// Minimal OCI images, pushed over the Distribution API

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

export interface Platform {
  os: string;
  architecture: string;
}

export interface PushOptions {
  /** For a registry with htpasswd or token auth (the token comes from the registry's realm). */
  credentials?: RegistryCredentials;
  /**
   * The text of the layer's only file; other content, other digests. By default
   * `<repository>:<tag>`, so each pushed image is distinct: push the same tag again with another
   * content to make a "stale tag" (the same tag at another digest).
   */
  content?: string;
  /** When given, one manifest per platform and an OCI index over them under the tag. */
  platforms?: Platform[];
}

export interface PushedImage {
  /** The digest of what the tag names: the manifest, or the index. */
  digest: string;
  mediaType: typeof OCI_MANIFEST | typeof OCI_INDEX;
  /** The platform manifests of an index (empty for a single manifest). */
  manifests: { digest: string; platform: Platform }[];
}

/**
 * Builds a minimal OCI image in memory and pushes it as `<repository>:<tag>`: blobs by monolithic
 * upload (POST, then PUT with the digest), then the manifest, and for `platforms` one manifest per
 * platform by digest and the index under the tag. Checks the registry's `Docker-Content-Digest`.
 *
 * The bytes depend only on the repository, tag, content and platforms, so the same push to two
 * registries gives the same digest (a mirror in sync with its upstream). The image cannot run
 * (its one file is text): for a pod that must start, push a real image with `Registry.push`.
 */
export async function pushImage(
  registry: RegistryAddress,
  repository: string,
  tag: string,
  options: PushOptions = {},
): Promise<PushedImage> {
  const api = new RegistryApi(hostOf(registry), options.credentials);
  const content = options.content ?? `${repository}:${tag}`;
  if (!options.platforms) {
    const { digest } = await pushManifest(api, repository, tag, content, {
      os: "linux",
      architecture: "amd64",
    });
    return { digest, mediaType: OCI_MANIFEST, manifests: [] };
  }
  const pushed: { digest: string; size: number; platform: Platform }[] = [];
  for (const platform of options.platforms) {
    const manifestContent = `${content} ${platform.os}/${platform.architecture}`;
    pushed.push({ ...(await pushManifest(api, repository, undefined, manifestContent, platform)), platform });
  }
  const index = json({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: pushed.map(({ digest, size, platform }) => ({
      mediaType: OCI_MANIFEST,
      digest,
      size,
      platform,
    })),
  });
  const digest = await api.putManifest(repository, tag, OCI_INDEX, index);
  return {
    digest,
    mediaType: OCI_INDEX,
    manifests: pushed.map(({ digest, platform }) => ({ digest, platform })),
  };
}

/**
 * Deletes a manifest by digest (the registry runs with deletes enabled): every tag that named it
 * is then unknown (404), as when an image is removed from a mirror.
 */
export async function deleteManifest(
  registry: RegistryAddress,
  repository: string,
  digest: string,
  credentials?: RegistryCredentials,
): Promise<void> {
  const api = new RegistryApi(hostOf(registry), credentials);
  const answer = await api.request("DELETE", `/v2/${repository}/manifests/${digest}`);
  if (answer.status !== 202) throw new Error(`DELETE ${repository}@${digest}: HTTP ${answer.status}`);
}

/** `<host>/<repository>:<tag>`, or `<host>/<repository>@<digest>` for a digest. */
export function imageRef(registry: RegistryAddress, repository: string, reference: string): string {
  return `${hostOf(registry)}/${repository}${reference.startsWith("sha256:") ? "@" : ":"}${reference}`;
}

/** Pushes a config, a layer and a manifest; under `tag`, or by digest only. */
async function pushManifest(
  api: RegistryApi,
  repository: string,
  tag: string | undefined,
  content: string,
  platform: Platform,
): Promise<{ digest: string; size: number }> {
  const tar = tarWithOneFile("hello.txt", `${content}\n`);
  const layer = gzipSync(tar);
  const config = json({
    ...platform,
    created: "2025-01-01T00:00:00Z",
    config: { Cmd: ["/hello.txt"] },
    rootfs: { type: "layers", diff_ids: [sha256(tar)] },
  });
  await api.pushBlob(repository, config);
  await api.pushBlob(repository, layer);
  const manifest = json({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: sha256(config), size: config.length },
    layers: [{ mediaType: OCI_LAYER, digest: sha256(layer), size: layer.length }],
  });
  const digest = await api.putManifest(repository, tag ?? sha256(manifest), OCI_MANIFEST, manifest);
  return { digest, size: manifest.length };
}

function json(value: object): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** A POSIX tar archive (ustar) holding one regular file, mode 0755, mtime 0. */
function tarWithOneFile(name: string, text: string): Buffer {
  const data = Buffer.from(text);
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) =>
    header.write(value, offset, length, "ascii");
  const octal = (value: number, length: number) => `${value.toString(8).padStart(length - 1, "0")}\0`;
  field(0, 100, name);
  field(100, 8, octal(0o755, 8));
  field(108, 8, octal(0, 8));
  field(116, 8, octal(0, 8));
  field(124, 12, octal(data.length, 12));
  field(136, 12, octal(0, 12));
  field(148, 8, "        "); // the checksum counts its own field as spaces
  field(156, 1, "0");
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([header, data, padding, Buffer.alloc(1024)]);
}

interface ApiAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * The few Distribution API calls a push needs, answering a 401 challenge once: Basic with the
 * credentials, or Bearer with a token fetched from the challenge's realm (with the credentials).
 * The harness's own code, so the client under test is never used to set up its own test.
 */
class RegistryApi {
  private authorization: string | undefined;

  private readonly host: string;
  private readonly credentials: RegistryCredentials | undefined;

  constructor(host: string, credentials: RegistryCredentials | undefined) {
    this.host = host;
    this.credentials = credentials;
  }

  async pushBlob(repository: string, blob: Buffer): Promise<void> {
    const started = await this.request("POST", `/v2/${repository}/blobs/uploads/`);
    const location = started.headers.location;
    if (started.status !== 202 || !location) {
      throw new Error(`starting a blob upload to ${repository}: HTTP ${started.status} ${started.body}`);
    }
    const target = new URL(location, `http://${this.host}`);
    target.searchParams.set("digest", sha256(blob));
    const done = await this.request("PUT", `${target.pathname}${target.search}`, blob, {
      "content-type": "application/octet-stream",
    });
    if (done.status !== 201)
      throw new Error(`uploading a blob to ${repository}: HTTP ${done.status} ${done.body}`);
  }

  async putManifest(repository: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
    const answer = await this.request("PUT", `/v2/${repository}/manifests/${reference}`, body, {
      "content-type": mediaType,
    });
    const digest = answer.headers["docker-content-digest"];
    if (answer.status !== 201 || digest !== sha256(body)) {
      throw new Error(
        `PUT ${repository}:${reference}: HTTP ${answer.status}, digest ${digest}; ${answer.body}`,
      );
    }
    return digest;
  }

  async request(method: string, pathAndQuery: string, body?: Buffer, headers: http.OutgoingHttpHeaders = {}) {
    let answer = await this.send(method, pathAndQuery, body, headers);
    if (answer.status === 401 && this.credentials) {
      this.authorization = await this.answerChallenge(answer.headers["www-authenticate"]);
      answer = await this.send(method, pathAndQuery, body, headers);
    }
    return answer;
  }

  private async answerChallenge(challenge: string | undefined): Promise<string> {
    const credentials = this.credentials as RegistryCredentials;
    const basic = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
    if (/^Basic\b/i.test(challenge ?? "")) return basic;
    const params = Object.fromEntries(
      [...(challenge ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] as string, m[2] as string]),
    );
    if (!/^Bearer\b/i.test(challenge ?? "") || !params.realm) throw new Error(`cannot answer ${challenge}`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set("service", params.service);
    if (params.scope) url.searchParams.set("scope", params.scope);
    const answer = await httpRequest(url, "GET", { authorization: basic });
    if (answer.status !== 200) throw new Error(`token request to ${url}: HTTP ${answer.status}`);
    return `Bearer ${(JSON.parse(answer.body) as { token: string }).token}`;
  }

  private send(
    method: string,
    pathAndQuery: string,
    body: Buffer | undefined,
    headers: http.OutgoingHttpHeaders,
  ) {
    const url = new URL(pathAndQuery, `http://${this.host}`);
    return httpRequest(
      url,
      method,
      {
        ...headers,
        ...(body ? { "content-length": body.length } : {}),
        ...(this.authorization ? { authorization: this.authorization } : {}),
      },
      body,
    );
  }
}

/** One bounded HTTP exchange (10 s), no connection reuse. */
function httpRequest(url: URL, method: string, headers: http.OutgoingHttpHeaders, body?: Buffer) {
  return new Promise<ApiAnswer>((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: 10_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: no answer within 10 s`)));
    req.on("error", reject);
    req.end(body);
  });
}
