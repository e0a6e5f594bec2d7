/**
 * Registry credentials: where they come from and how they are looked up.
 *
 * Credentials come only from sources the operator controls: `kubernetes.io/dockerconfigjson`
 * Secrets in ImageShift's own namespace, named by a rule object (cluster mode), or a Docker
 * config file given on the command line (standalone, `imageshift rewrite --verify`). A pod's
 * own imagePullSecrets are never read: a pod author must not be able to make ImageShift use
 * credentials on their behalf (a confused deputy).
 *
 * A keyring answers one question: for this source (a Secret's name, or undefined for the
 * default) and this registry host, which username and password? It never throws.
 */
import { quote } from "../errors.ts";

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** The one shape every credentials source has. */
export interface Keyring {
  /**
   * Credentials for `host` (`registry.corp:5000`, `docker.io`) from the named source (a
   * Secret's name), or from the default source when `source` is undefined; undefined when none.
   */
  credentials(source: string | undefined, host: string): Credentials | undefined;
}

/** No credentials anywhere: anonymous checks only. */
export const NO_CREDENTIALS: Keyring = { credentials: () => undefined };

/** Docker Hub's names for itself; its config key is the legacy v1 URL. */
const HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/**
 * The registry host a `auths` key names: `https://index.docker.io/v1/` is `docker.io`,
 * `https://registry.corp:5000/v2/` is `registry.corp:5000`, `registry.corp` stays itself.
 */
export function configHost(key: string): string {
  const host = key
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
  return HUB_ALIASES.has(host) ? "docker.io" : host;
}

/** The host a keyring is asked about, with Docker Hub's aliases folded. */
export function keyringHost(host: string): string {
  const lower = host.toLowerCase();
  return HUB_ALIASES.has(lower) ? "docker.io" : lower;
}

/** At most this many registries in one config: a bound on what a Secret can make us hold. */
export const MAX_CONFIG_ENTRIES = 256;

/**
 * Parses a Docker config (`.dockerconfigjson`, `~/.docker/config.json`): `auths` keyed by
 * registry, each with `auth` (base64 of `user:password`) or `username` and `password`; an entry
 * with neither (a credential helper's) is skipped.
 * Throws an Error naming `where` and the entry at fault; never includes a secret in it.
 */
export function parseDockerConfig(text: string, where: string): Map<string, Credentials> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${where}: not JSON`);
  }
  const auths = (parsed as { auths?: unknown } | null)?.auths;
  if (!auths || typeof auths !== "object" || Array.isArray(auths))
    throw new Error(`${where}: no "auths" object`);
  const entries = Object.entries(auths as Record<string, unknown>);
  if (entries.length > MAX_CONFIG_ENTRIES)
    throw new Error(`${where}: ${entries.length} registries, more than ${MAX_CONFIG_ENTRIES}`);
  const result = new Map<string, Credentials>();
  for (const [key, value] of entries) {
    const at = `${where}: auths[${quote(key)}]`;
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error(`${at}: not an object`);
    const entry = value as { auth?: unknown; username?: unknown; password?: unknown };
    if (typeof entry.username === "string" && typeof entry.password === "string") {
      result.set(configHost(key), { username: entry.username, password: entry.password });
      continue;
    }
    // Docker Desktop writes `{}` when a credential helper holds the secret: such an entry gives
    // no credentials here, and the rest of the file still counts.
    if (entry.auth === undefined && entry.username === undefined && entry.password === undefined) continue;
    if (typeof entry.auth !== "string")
      throw new Error(`${at}: neither "auth" nor "username" and "password"`);
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) throw new Error(`${at}: "auth" is not base64 of "username:password"`);
    result.set(configHost(key), { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) });
  }
  return result;
}

/** A keyring over one parsed config: every source name reads the same config. */
export class StaticKeyring implements Keyring {
  private readonly entries: ReadonlyMap<string, Credentials>;
  constructor(entries: ReadonlyMap<string, Credentials>) {
    this.entries = entries;
  }
  credentials(_source: string | undefined, host: string): Credentials | undefined {
    return this.entries.get(keyringHost(host));
  }
}
