/**
 * ImageShift's container image for the e2e tests, built from the repository's Dockerfile without a
 * Docker engine (test/e2e/image/build.sh: podman with runc, a project-owned configuration and
 * image store under ~/.cache/imageshift/containers, a stand-in base image), plus local image
 * registries (Debian's `docker-registry`) on free 127.0.0.1 ports.
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

export interface Registry {
  /** 127.0.0.1:<port>, the prefix of the images it holds. */
  host: string;
  /** Copies a local image into the registry as `<host>/<repository>` (plain HTTP). */
  push(localImage: string, repository: string): Promise<string>;
  /** The repositories it holds (/v2/_catalog). */
  catalog(): Promise<string[]>;
  /** Stops the registry (by pid) and removes its storage. */
  stop(): Promise<void>;
}

/** Starts Debian's docker-registry on a free loopback port, its storage in a temp dir. */
export async function startRegistry(name = "registry"): Promise<Registry> {
  await ensureHostPackages();
  const dir = await mkdtemp(path.join(tmpdir(), `imageshift-${name}-`));
  const [port] = await freePorts(1);
  const host = `${loopback}:${port}`;
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
      await Promise.race([exit, sleep(5000)]);
      if (!exited) {
        child.kill("SIGKILL");
        await exit;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if ((await httpGet(`http://${host}/v2/`)).status === 200) break;
    if (exited || Date.now() > deadline) {
      const log = readLog(logPath);
      await stop();
      throw new Error(`docker-registry on ${host} did not start; log:\n${tail(log)}`);
    }
    await sleep(100);
  }
  return {
    host,
    push: async (localImage, repository) => {
      const target = `${host}/${repository}`;
      await podman(["push", "--tls-verify=false", localImage, `docker://${target}`], {
        timeoutMs: 5 * 60_000,
      });
      return target;
    },
    catalog: async () => {
      const reply = await httpGet(`http://${host}/v2/_catalog`);
      return (JSON.parse(reply.body) as { repositories: string[] }).repositories;
    },
    stop,
  };
}

/** A bounded HTTP GET; status 0 on a connection error. */
export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
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
