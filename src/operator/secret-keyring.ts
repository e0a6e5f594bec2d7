/**
 * Registry credentials from Secrets (cluster mode, `--registry-credentials`): every
 * `kubernetes.io/dockerconfigjson` Secret in ImageShift's own namespace, listed and watched,
 * parsed once per version, and looked up by the name a rule object gives in
 * `verify.credentialsSecret`. Only that namespace is read: a pod's imagePullSecrets never are
 * (a pod author must not be able to lend ImageShift credentials, `registry/credentials.ts`),
 * and the chart's Role grants Secrets in the release namespace only.
 *
 * A Secret that does not parse is logged (its namespace, name and the problem, never its
 * content) and its last good version keeps serving: a bad edit never takes credentials away.
 * The keyring is a manager runnable, not ready until the first list: a webhook that checked
 * mirrors before its credentials were known would fail against private mirrors.
 */
import { quote } from "../errors.ts";
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import { WatchedKind, type WatchedKindOptions } from "../k8s/informer.ts";
import type { KubeObject, Secret } from "../k8s/objects.ts";
import type { Runnable } from "../manager/manager.ts";
import {
  type Credentials,
  type Keyring,
  keyringHost,
  NO_CREDENTIALS,
  parseDockerConfig,
} from "../registry/credentials.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";

export const DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson";
export const DOCKER_CONFIG_KEY = ".dockerconfigjson";

/**
 * Secrets held at most. Whoever can create Secrets in ImageShift's namespace can make it hold
 * them all; a few per mirror is the need, 256 is far above it and caps the memory at 16 MiB
 * (with the size bound below). Secrets already in use keep their place; new ones past the
 * bound are refused, by name order.
 */
export const SECRETS_MAX = 256;
/**
 * Largest `.dockerconfigjson`, decoded. A config of a dozen registries with long tokens is a
 * few KiB; 64 KiB leaves room and keeps a careless Secret (a whole `~/.docker/config.json`
 * with its helpers' caches) from being parsed and held.
 */
export const DOCKER_CONFIG_MAX_BYTES = 64 * 1024;

/** A keyring of named Secrets that can also say why a named one serves nothing. */
export interface ClusterKeyring extends Keyring {
  /** Why `source` serves no credentials, naming it and the namespace; undefined when it serves or is undefined. */
  describeMissing(source: string | undefined): string | undefined;
}

/** Registry credentials off (no `--registry-credentials`): anonymous checks, and a named Secret says why it is not read. */
export function credentialsOff(namespace: string): ClusterKeyring {
  return {
    credentials: NO_CREDENTIALS.credentials,
    describeMissing: (source) =>
      source === undefined
        ? undefined
        : `${secretName(namespace, source)} not read: registry credentials are off (serve --registry-credentials, chart value registryCredentials.enabled)`,
  };
}

/** What the cache keeps of a Secret: its identity and what its config became, never the data. */
interface HeldSecret extends KubeObject {
  /** Always sent by the API server for a Secret. */
  metadata: { name: string; uid?: string; resourceVersion?: string };
  held: { config: ReadonlyMap<string, Credentials> } | { problem: string };
}

interface Served {
  readonly uid: string | undefined;
  readonly resourceVersion: string | undefined;
  readonly config: ReadonlyMap<string, Credentials>;
}

export interface SecretKeyringOptions {
  client: KubeClient;
  /** ImageShift's own namespace: the only one whose Secrets are read. */
  namespace: string;
  logger: Logger;
  /** The informer's retry waits (tests). */
  retry?: Pick<WatchedKindOptions<HeldSecret>, "minBackoffMs" | "maxBackoffMs">;
}

/** `Secret "ns/name"`: how messages and logs name a Secret. */
function secretName(namespace: string, name: string): string {
  return `Secret ${quote(`${namespace}/${name}`)}`;
}

/** The config of a Secret, parsed and bounded, or why it is unusable (never its content). */
function hold(secret: Secret & HeldSecret, namespace: string): HeldSecret["held"] {
  const where = secretName(namespace, secret.metadata.name);
  if (secret.type !== DOCKER_CONFIG_TYPE)
    return { problem: `${where}: type ${quote(String(secret.type))}, not ${DOCKER_CONFIG_TYPE}` };
  const encoded = secret.data?.[DOCKER_CONFIG_KEY];
  if (typeof encoded !== "string") return { problem: `${where}: no ${DOCKER_CONFIG_KEY} key` };
  // Checked on the base64 text first: an oversized value is never decoded.
  const bytes =
    encoded.length > Math.ceil(DOCKER_CONFIG_MAX_BYTES / 3) * 4
      ? Math.floor((encoded.length * 3) / 4)
      : Buffer.byteLength(encoded, "base64");
  if (bytes > DOCKER_CONFIG_MAX_BYTES)
    return {
      problem: `${where}: ${DOCKER_CONFIG_KEY} is ${bytes} bytes, more than ${DOCKER_CONFIG_MAX_BYTES}`,
    };
  try {
    const text = Buffer.from(encoded, "base64").toString("utf8");
    return { config: parseDockerConfig(text, `${where} ${DOCKER_CONFIG_KEY}`) };
  } catch (error) {
    return { problem: (error as Error).message };
  }
}

export class SecretKeyring implements ClusterKeyring, Runnable {
  readonly name = "registry-credentials";
  private readonly namespace: string;
  private readonly logger: Logger;
  private readonly watch: WatchedKind<HeldSecret>;
  /** By Secret name: the config in use (the last good one of a Secret that broke). */
  private serving = new Map<string, Served>();
  /** By Secret name: why a Secret present in the namespace serves nothing. */
  private problems = new Map<string, string>();
  /** By Secret name: the resourceVersion whose problem was logged (each is logged once). */
  private reported = new Map<string, string | undefined>();
  private refused = "";

  constructor(options: SecretKeyringOptions) {
    this.namespace = options.namespace;
    this.logger = componentLogger(options.logger, "credentials");
    this.watch = new WatchedKind<HeldSecret>({
      client: options.client,
      path: resourcePath({ version: "v1", plural: "secrets", namespace: options.namespace }),
      fieldSelector: `type=${DOCKER_CONFIG_TYPE}`,
      logger: this.logger,
      transform: (secret) => ({
        metadata: {
          name: secret.metadata.name,
          uid: secret.metadata.uid,
          resourceVersion: secret.metadata.resourceVersion,
        },
        held: hold(secret, options.namespace),
      }),
      onChange: () => this.rebuild(),
      ...options.retry,
    });
  }

  credentials(source: string | undefined, host: string): Credentials | undefined {
    if (source === undefined) return undefined;
    return this.serving.get(source)?.config.get(keyringHost(host));
  }

  /** True when the named Secret serves credentials (its last good version, if it broke). */
  has(source: string): boolean {
    return this.serving.has(source);
  }

  /**
   * Why the named Secret serves no credentials (not found, unusable, over the bound, not
   * listed yet), for the admission step to report; undefined when it serves, or no Secret is named.
   */
  describeMissing(source: string | undefined): string | undefined {
    if (source === undefined || this.serving.has(source)) return undefined;
    const problem = this.problems.get(source);
    if (problem) return problem;
    if (!this.watch.synced)
      return `${secretName(this.namespace, source)}: registry credentials not listed yet`;
    return `${secretName(this.namespace, source)} of type ${DOCKER_CONFIG_TYPE} not found in namespace ${quote(this.namespace)}`;
  }

  /** Resolves once the first list succeeded or failed; `notReady` tells which. */
  async start(): Promise<void> {
    await this.watch.start();
  }

  async stop(): Promise<void> {
    await this.watch.stop();
  }

  notReady(): string | undefined {
    return this.watch.synced
      ? undefined
      : `registry credentials: Secrets in namespace ${quote(this.namespace)} not listed yet`;
  }

  /** Recomputes what serves from the cache: after every list and every event. */
  private rebuild(): void {
    const secrets = [...this.watch.list()].sort((a, b) => {
      // Secrets in use first: a new Secret never pushes one in use past the bound.
      const rank = Number(!this.serving.has(nameOf(a))) - Number(!this.serving.has(nameOf(b)));
      return rank || (nameOf(a) < nameOf(b) ? -1 : 1);
    });
    const serving = new Map<string, Served>();
    const problems = new Map<string, string>();
    const reported = new Map<string, string | undefined>();
    const over: string[] = [];
    for (const [index, secret] of secrets.entries()) {
      const name = nameOf(secret);
      const { uid, resourceVersion } = secret.metadata;
      const where = secretName(this.namespace, name);
      if (index >= SECRETS_MAX) {
        over.push(name);
        problems.set(
          name,
          `${where}: not used, more than ${SECRETS_MAX} Secrets of type ${DOCKER_CONFIG_TYPE} in namespace ${quote(this.namespace)}`,
        );
        continue;
      }
      const before = this.serving.get(name);
      const { held } = secret;
      if ("config" in held) {
        serving.set(name, { uid, resourceVersion, config: held.config });
        if (before?.resourceVersion !== resourceVersion || before?.uid !== uid)
          this.logger.info(
            { secret: `${this.namespace}/${name}`, registries: held.config.size },
            "registry credentials loaded",
          );
        continue;
      }
      // The same Secret (uid) that served before keeps serving; a re-created one starts afresh.
      const kept = before?.uid === uid ? before : undefined;
      if (kept) serving.set(name, kept);
      else problems.set(name, held.problem);
      reported.set(name, resourceVersion);
      if (this.reported.has(name) && this.reported.get(name) === resourceVersion) continue; // logged once
      this.logger.error(
        { secret: `${this.namespace}/${name}`, problem: held.problem },
        kept
          ? "registry credentials unusable; keeping the last good version of the Secret"
          : "registry credentials unusable; the Secret serves no credentials",
      );
    }
    for (const name of this.serving.keys())
      if (!serving.has(name) && !problems.has(name))
        this.logger.info({ secret: `${this.namespace}/${name}` }, "registry credentials removed");
    const refused = over.join("\n");
    if (refused && refused !== this.refused)
      this.logger.error(
        { namespace: this.namespace, refused: over.length, first: over.slice(0, 10) },
        `more than ${SECRETS_MAX} Secrets of type ${DOCKER_CONFIG_TYPE}; the ones past the bound are not used`,
      );
    this.refused = refused;
    this.serving = serving;
    this.problems = problems;
    this.reported = reported;
  }
}

function nameOf(secret: HeldSecret): string {
  return secret.metadata.name;
}
