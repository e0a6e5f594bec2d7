/**
 * Where the API server is and how to authenticate to it, found as controller-runtime finds it:
 * `--kubeconfig`, else `$KUBECONFIG` (every file listed, merged), else the pod's service
 * account (in-cluster), else `~/.kube/config`. What comes out is a `ClusterConnection`: plain TLS material plus a
 * credential that is re-read when it can change (a projected service-account token is
 * rotated by the kubelet; an exec plugin's token expires).
 *
 * Supported: tokens, token files, client certificates (inline or files), exec plugins that
 * return a token, `certificate-authority(-data)`, `insecure-skip-tls-verify`,
 * `tls-server-name`. Refused with a clear error rather than ignored, since ignoring them
 * would connect as someone else: `auth-provider`, username/password, impersonation (`as`,
 * `as-uid`, `as-groups`, `as-user-extra`), and `proxy-url`. docs/operator.md has the whole matrix.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { parse } from "yaml";
import { ConfigError, errorMessage } from "../errors.ts";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A bearer token for the next request, or undefined to send none. */
export interface Credential {
  token(): Promise<string | undefined>;
  /** The server answered 401: drop any cached token so the next call fetches a new one. */
  invalidate(): void;
}

export interface ClusterConnection {
  /** `https://host:port`, without a trailing slash. */
  server: string;
  /** PEM bundle to trust instead of the system's. */
  ca?: string;
  /** PEM client certificate and key. */
  cert?: string;
  key?: string;
  insecureSkipTlsVerify?: boolean;
  tlsServerName?: string;
  credential: Credential;
  /** Where this came from, for logs: `in-cluster` or `kubeconfig <file>, context <name>`. */
  origin: string;
}

const NO_CONFIGURATION =
  "no --rules PATH and no Kubernetes configuration (--kubeconfig, $KUBECONFIG, in-cluster service account or ~/.kube/config): give one or the other";

/**
 * controller-runtime's order (`config.GetConfig`): the `--kubeconfig` file, else $KUBECONFIG
 * (every file listed, merged), else the pod's service account (in-cluster), else
 * `~/.kube/config`. In a pod, in-cluster wins over a stray home kubeconfig.
 */
export function loadClusterConnection(
  env: NodeJS.ProcessEnv = process.env,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
  kubeconfig?: string,
): ClusterConnection {
  if (kubeconfig !== undefined) {
    if (!existsSync(kubeconfig))
      throw new ConfigError(`--kubeconfig ${JSON.stringify(kubeconfig)} does not exist`);
    return fromKubeconfigFiles([kubeconfig]);
  }
  const listed = (env.KUBECONFIG ?? "").split(delimiter).filter((file) => file !== "");
  if (listed.length > 0) {
    const missing = listed.filter((file) => !existsSync(file));
    if (missing.length === listed.length) {
      throw new ConfigError(
        `$KUBECONFIG names ${missing.map((file) => JSON.stringify(file)).join(", ")}, ${missing.length === 1 ? "which does not exist" : "none of which exists"}: ImageShift needs --rules PATH or a Kubernetes configuration (--kubeconfig, $KUBECONFIG, in-cluster service account or ~/.kube/config)`,
      );
    }
    // kubectl skips listed files that do not exist.
    return fromKubeconfigFiles(listed.filter((file) => existsSync(file)));
  }
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(serviceAccountDir, "token")))
    return inCluster(env, serviceAccountDir);
  const home = join(env.HOME ?? homedir(), ".kube", "config");
  if (existsSync(home)) return fromKubeconfigFiles([home]);
  throw new ConfigError(NO_CONFIGURATION);
}

/** The pod's service account: token (re-read as the kubelet rotates it) and cluster CA. */
export function inCluster(
  env: NodeJS.ProcessEnv,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
): ClusterConnection {
  const host = env.KUBERNETES_SERVICE_HOST ?? "";
  const port = env.KUBERNETES_SERVICE_PORT || "443";
  const caFile = join(serviceAccountDir, "ca.crt");
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ...(existsSync(caFile) ? { ca: readFileSync(caFile, "utf8") } : {}),
    credential: tokenFile(join(serviceAccountDir, "token")),
    origin: "in-cluster",
  };
}

interface KubeconfigCluster {
  server?: string;
  "certificate-authority"?: string;
  "certificate-authority-data"?: string;
  "insecure-skip-tls-verify"?: boolean;
  "tls-server-name"?: string;
  "proxy-url"?: string;
}

interface ExecConfig {
  command?: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  apiVersion?: string;
}

interface KubeconfigUser {
  token?: string;
  tokenFile?: string;
  "client-certificate"?: string;
  "client-certificate-data"?: string;
  "client-key"?: string;
  "client-key-data"?: string;
  exec?: ExecConfig;
  "auth-provider"?: unknown;
  username?: string;
  password?: string;
  as?: string;
  "as-uid"?: string;
  "as-groups"?: string[];
  "as-user-extra"?: Record<string, string[]>;
}

interface KubeconfigContext {
  cluster?: string;
  user?: string;
}

/** One entry of a kubeconfig list (`clusters`, `users`, `contexts`) with the file it came from. */
interface Found<T> {
  value: T;
  file: string;
}

/** Merges the files kubectl's way: the first file to set a name (or current-context) wins. */
export function fromKubeconfigFiles(files: string[]): ClusterConnection {
  const clusters = new Map<string, Found<KubeconfigCluster>>();
  const users = new Map<string, Found<KubeconfigUser>>();
  const contexts = new Map<string, Found<KubeconfigContext>>();
  let current: string | undefined;
  for (const file of files) {
    let document: Record<string, unknown>;
    try {
      document = (parse(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`kubeconfig ${file}: ${errorMessage(error)}`);
    }
    collect(document.clusters, "cluster", file, clusters);
    collect(document.users, "user", file, users);
    collect(document.contexts, "context", file, contexts);
    current ??= (document["current-context"] as string | undefined) || undefined;
  }
  const where = files.join(delimiter);
  if (!current) throw new ConfigError(`kubeconfig ${where}: no current-context`);
  const context = contexts.get(current);
  if (!context) throw new ConfigError(`kubeconfig ${where}: context ${JSON.stringify(current)} not found`);
  const clusterName = context.value.cluster ?? "";
  const cluster = clusters.get(clusterName);
  if (!cluster?.value.server)
    throw new ConfigError(
      `kubeconfig ${where}: context ${JSON.stringify(current)}: cluster ${JSON.stringify(clusterName)} not found or has no server`,
    );
  const userName = context.value.user;
  const user = userName === undefined ? undefined : users.get(userName);
  if (userName && !user)
    throw new ConfigError(
      `kubeconfig ${where}: context ${JSON.stringify(current)}: user ${JSON.stringify(userName)} not found`,
    );
  return {
    ...clusterPart(cluster, `${where}: cluster ${JSON.stringify(clusterName)}`),
    ...userPart(user, `${where}: user ${JSON.stringify(userName)}`),
    origin: `kubeconfig ${where}, context ${current}`,
  };
}

function collect<T>(list: unknown, field: string, file: string, into: Map<string, Found<T>>): void {
  if (!Array.isArray(list)) return;
  for (const entry of list as (Record<string, unknown> | null)[]) {
    const value = entry?.[field] as T | undefined;
    if (typeof entry?.name === "string" && value && !into.has(entry.name))
      into.set(entry.name, { value, file });
  }
}

/** `inline` base64 data, else the file (relative to the kubeconfig's folder), else undefined. */
function material(inline: string | undefined, path: string | undefined, file: string): string | undefined {
  if (inline) return Buffer.from(inline, "base64").toString("utf8");
  if (!path) return undefined;
  const full = isAbsolute(path) ? path : resolve(dirname(file), path);
  try {
    return readFileSync(full, "utf8");
  } catch (error) {
    throw new ConfigError(`kubeconfig ${file}: cannot read ${full}: ${errorMessage(error)}`);
  }
}

function clusterPart({ value, file }: Found<KubeconfigCluster>, where: string) {
  if (value["proxy-url"]) throw new ConfigError(`kubeconfig ${where}: proxy-url is not supported`);
  const ca = material(value["certificate-authority-data"], value["certificate-authority"], file);
  return {
    server: (value.server ?? "").replace(/\/+$/, ""),
    ...(ca ? { ca } : {}),
    ...(value["insecure-skip-tls-verify"] ? { insecureSkipTlsVerify: true } : {}),
    ...(value["tls-server-name"] ? { tlsServerName: value["tls-server-name"] } : {}),
  };
}

function userPart(found: Found<KubeconfigUser> | undefined, where: string) {
  if (!found) return { credential: staticToken(undefined) };
  const { value, file } = found;
  const unsupported = [
    value["auth-provider"] ? "auth-provider (use an exec plugin instead)" : "",
    value.username || value.password ? "username/password" : "",
    impersonation(value),
  ].filter(Boolean);
  if (unsupported.length > 0)
    throw new ConfigError(`kubeconfig ${where}: not supported: ${unsupported.join(", ")}`);
  const cert = material(value["client-certificate-data"], value["client-certificate"], file);
  const key = material(value["client-key-data"], value["client-key"], file);
  if (Boolean(cert) !== Boolean(key))
    throw new ConfigError(`kubeconfig ${where}: a client certificate needs both certificate and key`);
  let credential: Credential;
  if (value.token) credential = staticToken(value.token);
  else if (value.tokenFile)
    credential = tokenFile(
      isAbsolute(value.tokenFile) ? value.tokenFile : resolve(dirname(file), value.tokenFile),
    );
  else if (value.exec) credential = execPlugin(value.exec, dirname(file), where);
  else credential = staticToken(undefined);
  return { ...(cert && key ? { cert, key } : {}), credential };
}

/** Impersonation settings present in a kubeconfig user, named, or "" for none. */
function impersonation(user: KubeconfigUser): string {
  const present = IMPERSONATION.filter((field) => user[field] !== undefined && user[field] !== "");
  return present.length > 0 ? `impersonation (${present.join(", ")})` : "";
}

const IMPERSONATION = ["as", "as-uid", "as-groups", "as-user-extra"] as const;

export function staticToken(token: string | undefined): Credential {
  return { token: async () => token, invalidate: () => {} };
}

/** How long a token file is trusted before it is read again; the kubelet rotates well before expiry. */
const TOKEN_FILE_TTL_MS = 60_000;

/** A token file, re-read every minute and after a 401 (client-go does the same). */
export function tokenFile(path: string, ttlMs = TOKEN_FILE_TTL_MS): Credential {
  let cached: { token: string; at: number } | undefined;
  return {
    async token() {
      if (!cached || Date.now() - cached.at > ttlMs) {
        try {
          cached = { token: readFileSync(path, "utf8").trim(), at: Date.now() };
        } catch (error) {
          // Keep the last token: a rotation replaces the file atomically, so a failed read is brief.
          if (!cached) throw new ConfigError(`cannot read the token file ${path}: ${errorMessage(error)}`);
        }
      }
      return cached.token;
    },
    invalidate() {
      cached = undefined;
    },
  };
}

/** Bounds a plugin that hangs (waiting for a browser login, say): it never gets a terminal. */
const EXEC_TIMEOUT_MS = 30_000;
/** A token is fetched again this long before its stated expiry. */
const EXEC_EXPIRY_MARGIN_MS = 10_000;

interface ExecCredentialStatus {
  token?: string;
  expirationTimestamp?: string;
}

/** A client-go credential plugin (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`). */
export function execPlugin(exec: ExecConfig, baseDir: string, where: string): Credential {
  const apiVersion = exec.apiVersion ?? "client.authentication.k8s.io/v1";
  /** The last token and when to stop using it; a run in progress, shared by concurrent callers. */
  let valid: { token: string; expiresAt: number } | undefined;
  let pending: Promise<{ token: string; expiresAt: number }> | undefined;
  const run = () =>
    new Promise<{ token: string; expiresAt: number }>((resolvePromise, reject) => {
      const command = exec.command ?? "";
      // A relative command with a slash is relative to the kubeconfig (as in client-go).
      const file = command.includes("/") && !isAbsolute(command) ? resolve(baseDir, command) : command;
      const env = { ...process.env };
      for (const { name, value } of exec.env ?? []) env[name] = value;
      env.KUBERNETES_EXEC_INFO = JSON.stringify({
        apiVersion,
        kind: "ExecCredential",
        spec: { interactive: false },
      });
      execFile(file, exec.args ?? [], { env, timeout: EXEC_TIMEOUT_MS }, (error, stdout, stderr) => {
        if (error) {
          reject(
            new ConfigError(
              `kubeconfig ${where}: exec plugin ${JSON.stringify(command)} failed: ${stderr.trim() || error.message}`,
            ),
          );
          return;
        }
        let status: ExecCredentialStatus | undefined;
        try {
          status = (JSON.parse(stdout) as { status?: ExecCredentialStatus }).status;
        } catch {
          status = undefined;
        }
        if (!status?.token) {
          reject(
            new ConfigError(
              `kubeconfig ${where}: exec plugin ${JSON.stringify(command)} returned no status.token (client certificates from plugins are not supported)`,
            ),
          );
          return;
        }
        const expiresAt = status.expirationTimestamp
          ? Date.parse(status.expirationTimestamp) - EXEC_EXPIRY_MARGIN_MS
          : Number.POSITIVE_INFINITY;
        if (Number.isNaN(expiresAt)) {
          reject(
            new ConfigError(
              `kubeconfig ${where}: exec plugin ${JSON.stringify(command)} returned an unreadable status.expirationTimestamp ${JSON.stringify(status.expirationTimestamp)}`,
            ),
          );
          return;
        }
        resolvePromise({ token: status.token, expiresAt });
      });
    });
  return {
    async token() {
      if (valid && valid.expiresAt > Date.now()) return valid.token;
      pending ??= run()
        .then((fetched) => {
          valid = fetched;
          return fetched;
        })
        .finally(() => {
          pending = undefined;
        });
      return (await pending).token;
    },
    invalidate() {
      valid = undefined;
    },
  };
}
