/**
 * ImageShift's container image for the e2e tests, built from the repository's Dockerfile without a
 * Docker engine (test/e2e/image/build.sh: podman with runc, a project-owned configuration and
 * image store under ~/.cache/imageshift/containers, a stand-in base image), plus local image
 * registries (Debian's `docker-registry`) on free 127.0.0.1 ports, optionally behind htpasswd or
 * token auth (the token server, image pushes and a fault proxy are in registries.ts).
 *
 * The host packages come from test/e2e/setup-host.sh, which installs them only when missing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import bcrypt from "bcryptjs";
import { freePorts } from "./controlplane.ts";

const e2eDir = fileURLToPath(new URL("../", import.meta.url));
const setupScript = path.join(e2eDir, "setup-host.sh");
const imageBuildScript = path.join(e2eDir, "image", "build.sh");
const loopback = "127.0.0.1";

/** The tag the e2e tests build the Dockerfile as. */
export const e2eImageTag = "localhost/imageshift:e2e";

// Children still running when the test process exits are killed, not orphaned.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion (bounded); never rejects on a non-zero exit, only on a timeout or a
 * spawn failure. `echoStderr` passes its stderr through (build progress).
 */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; stdin?: string; echoStderr?: boolean } = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    // Its own process group, so that a timeout stops whatever it started too.
    const child = spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: options.env ?? process.env,
      detached: true,
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (options.echoStderr) process.stderr.write(chunk);
    });
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
      }
      reject(
        new Error(`${command} ${args.join(" ")} did not finish within ${timeoutMs} ms; ${tail(stderr)}`),
      );
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      children.delete(child);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(options.stdin ?? "");
  });
}

/** `run`, rejecting on a non-zero exit with the tail of stderr; resolves to stdout. */
export async function runOk(
  command: string,
  args: string[],
  options: Parameters<typeof run>[2] = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited with ${result.code}:\n${tail(result.stderr)}`);
  }
  return result.stdout;
}

let hostReady: Promise<void> | undefined;

/** Installs the Debian packages the image and node tests need, once per process, when missing. */
export function ensureHostPackages(): Promise<void> {
  hostReady ??= runOk("bash", [setupScript], { timeoutMs: 15 * 60_000, echoStderr: true }).then(() => {});
  return hostReady;
}

let containersEnv: Promise<NodeJS.ProcessEnv> | undefined;

/** The environment every podman call uses: CONTAINERS_CONF and friends from build.sh env. */
export function podmanEnv(): Promise<NodeJS.ProcessEnv> {
  containersEnv ??= (async () => {
    await ensureHostPackages();
    const out = await runOk("bash", [imageBuildScript, "env"]);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const line of out.trim().split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) env[line.slice(0, at)] = line.slice(at + 1);
    }
    return env;
  })();
  return containersEnv;
}

/** Runs podman with the project's configuration; resolves to stdout, rejects on failure. */
export async function podman(args: string[], options: { timeoutMs?: number; stdin?: string } = {}) {
  return runOk("podman", args, { ...options, env: await podmanEnv() });
}

/** Runs podman with the project's configuration; never rejects on a non-zero exit. */
export async function podmanRun(args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run("podman", args, { ...options, env: await podmanEnv() });
}

/** Whether podman's cgroup (cgroupfs: libpod_parent) was there before this process used podman. */
const podmanCgroupPreexisting =
  existsSync("/sys/fs/cgroup/memory/libpod_parent") || existsSync("/sys/fs/cgroup/libpod_parent");

/** Removes podman's libpod_parent cgroups when this process made them and they are empty. */
export function tidyPodmanCgroups(): void {
  if (!podmanCgroupPreexisting) removeEmptyCgroups("libpod_parent");
}

let built: Promise<string> | undefined;

/**
 * Builds the Dockerfile as `e2eImageTag` once per process (the stand-in base image first, when it
 * is not in the store). With the base image and the layers cached, a rebuild takes seconds.
 */
export function buildImage(timeoutMs = 30 * 60_000): Promise<string> {
  built ??= (async () => {
    await podmanEnv();
    const out = await runOk("bash", [imageBuildScript, "image", e2eImageTag], {
      timeoutMs,
      echoStderr: true,
    });
    return out.trim().split("\n").at(-1) ?? e2eImageTag;
  })();
  return built;
}

// ---------------------------------------------------------------------------------------------
// Local registries

/** A user name and password (htpasswd users, token server users, pushing). */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** What a token-auth registry needs to trust a token server (see registries.ts). */
export interface RegistryTokenAuth {
  /** The token endpoint sent in the registry's `WWW-Authenticate` challenge. */
  realm: string;
  /** The registry's name as a token audience (`aud`). */
  service: string;
  /** The `iss` the registry accepts. */
  issuer: string;
  /** PEM file with the certificate(s) the token's `x5c` chain must lead to. */
  rootCertBundlePath: string;
}

export interface RegistryOptions {
  /**
   * None (anyone may pull and push), htpasswd Basic auth with one user (written as a bcrypt hash,
   * the only kind distribution accepts), or token auth from a token server.
   */
  auth?: { htpasswd: RegistryCredentials } | { token: RegistryTokenAuth };
}

/** One line of the registry's access log. */
export interface RegistryRequest {
  method: string;
  /** The request path with its query, e.g. `/v2/app/manifests/v1`. */
  path: string;
  status: number;
}

export interface Registry {
  /** 127.0.0.1:<port>, the prefix of the images it holds. */
  host: string;
  /** Copies a local image into the registry as `<host>/<repository>` (plain HTTP). */
  push(localImage: string, repository: string, credentials?: RegistryCredentials): Promise<string>;
  /** The repositories it holds (/v2/_catalog; with the htpasswd user's credentials when it has one). */
  catalog(): Promise<string[]>;
  /** The requests the registry has answered so far, from its access log, oldest first. */
  requests(): RegistryRequest[];
  /** Stops the registry (by pid) and removes its storage. */
  stop(): Promise<void>;
}

/**
 * Starts Debian's docker-registry on a free loopback port, its storage in a temp dir; with
 * `options.auth`, behind htpasswd Basic auth or token auth.
 */
export async function startRegistry(name = "registry", options: RegistryOptions = {}): Promise<Registry> {
  await ensureHostPackages();
  const dir = await mkdtemp(path.join(tmpdir(), `imageshift-${name}-`));
  const [port] = await freePorts(1);
  const host = `${loopback}:${port}`;
  const basic =
    options.auth && "htpasswd" in options.auth
      ? `Basic ${Buffer.from(`${options.auth.htpasswd.username}:${options.auth.htpasswd.password}`).toString("base64")}`
      : undefined;
  const config = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${dir}/data`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`,
    ...(await authConfig(dir, options.auth)),
    "",
  ].join("\n");
  await writeFile(path.join(dir, "config.yml"), config);
  const logPath = path.join(dir, "registry.log");
  const fd = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = spawn("docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  children.add(child);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      children.delete(child);
      resolve();
    });
    child.once("error", () => {
      exited = true;
      resolve();
    });
  });
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      // An unref'd timer: it must not keep the process alive once the registry is gone.
      await Promise.race([exit, sleep(5000, undefined, { ref: false })]);
      if (!exited) {
        child.kill("SIGKILL");
        await exit;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    // An auth registry answers /v2/ with 401 once it serves.
    const { status } = await httpGet(`http://${host}/v2/`);
    if (status === 200 || (options.auth && status === 401)) break;
    if (exited || Date.now() > deadline) {
      const log = readLog(logPath);
      await stop();
      throw new Error(`docker-registry on ${host} did not start; log:\n${tail(log)}`);
    }
    await sleep(100);
  }
  return {
    host,
    push: async (localImage, repository, credentials) => {
      const target = `${host}/${repository}`;
      const creds = credentials ? [`--creds=${credentials.username}:${credentials.password}`] : [];
      await podman(["push", "--tls-verify=false", ...creds, localImage, `docker://${target}`], {
        timeoutMs: 5 * 60_000,
      });
      return target;
    },
    catalog: async () => {
      const reply = await httpGet(`http://${host}/v2/_catalog`, 2000, basic);
      return (JSON.parse(reply.body) as { repositories: string[] }).repositories;
    },
    requests: () => parseAccessLog(readLog(logPath)),
    stop,
  };
}

/** The `auth:` section of the registry's config (and its htpasswd file). */
async function authConfig(dir: string, auth: RegistryOptions["auth"]): Promise<string[]> {
  if (!auth) return [];
  if ("htpasswd" in auth) {
    const file = path.join(dir, "htpasswd");
    const hash = await bcrypt.hash(auth.htpasswd.password, 4);
    await writeFile(file, `${auth.htpasswd.username}:${hash}\n`);
    return ["auth:", "  htpasswd:", "    realm: imageshift-e2e", `    path: ${file}`];
  }
  const { realm, service, issuer, rootCertBundlePath } = auth.token;
  return [
    "auth:",
    "  token:",
    `    realm: ${JSON.stringify(realm)}`,
    `    service: ${JSON.stringify(service)}`,
    `    issuer: ${JSON.stringify(issuer)}`,
    `    rootcertbundle: ${JSON.stringify(rootCertBundlePath)}`,
  ];
}

/** The access log lines (Apache combined format, which distribution writes to stdout). */
export function parseAccessLog(log: string): RegistryRequest[] {
  const requests: RegistryRequest[] = [];
  for (const match of log.matchAll(/"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /g)) {
    requests.push({ method: match[1] as string, path: match[2] as string, status: Number(match[3]) });
  }
  return requests;
}

/** A bounded HTTP GET; status 0 on a connection error. */
export function httpGet(
  url: string,
  timeoutMs = 2000,
  authorization?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const headers = authorization ? { authorization } : {};
    const req = http.get(url, { timeout: timeoutMs, agent: false, headers }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", () => resolve({ status: 0, body }));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve({ status: 0, body: "" }));
  });
}

/**
 * Removes the cgroup directory `name` and its descendants in every hierarchy, deepest first, where
 * they are empty (rmdir fails on a cgroup with processes, which are then left alone).
 */
export function removeEmptyCgroups(name: string): void {
  const roots = [
    "/sys/fs/cgroup",
    ...safeReaddir("/sys/fs/cgroup").map((entry) => path.join("/sys/fs/cgroup", entry)),
  ];
  for (const root of roots) {
    const top = path.join(root, name);
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = (at: string) => {
      dirs.push(at);
      for (const entry of safeReaddir(at, true)) walk(path.join(at, entry));
    };
    walk(top);
    for (const at of dirs.sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(at);
      } catch {}
    }
  }
}

export function safeReaddir(at: string, directoriesOnly = false): string[] {
  try {
    return readdirSync(at, { withFileTypes: true })
      .filter((entry) => !directoriesOnly || entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

export function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
