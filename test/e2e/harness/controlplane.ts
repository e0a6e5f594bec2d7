/**
 * A real Kubernetes control plane for end-to-end tests, in the manner of controller-runtime's envtest:
 * etcd and kube-apiserver run as local processes bound to 127.0.0.1 only, with no kubelet, scheduler
 * or controller-manager (pods stay Pending). The binaries come from test/e2e/controlplane/build.sh,
 * which builds them once from Go modules and caches them under ~/.cache/imageshift/controlplane/.
 *
 * Everything else lives in a fresh temp dir: certificates (made with src/certs/authority.ts), the
 * service-account key, the token file, etcd's data, the kubeconfig and the processes' logs.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createCertificateAuthority, createServingCertificate } from "../../../src/certs/authority.ts";

export interface ControlPlaneOptions {
  /** Directory holding `etcd` and `kube-apiserver`; default: $IMAGESHIFT_CONTROLPLANE_BIN_DIR, else build.sh's output. */
  binDir?: string;
  /** Bound on build.sh (a cold build takes minutes); default 45 minutes. */
  buildTimeoutMs?: number;
  /** Bound on each process becoming ready; default 90 s. */
  startTimeoutMs?: number;
  /** Bound between SIGTERM and SIGKILL when stopping a process; default 10 s. */
  stopTimeoutMs?: number;
  /** Extra kube-apiserver flags, appended after the defaults (a later flag wins). */
  apiServerArgs?: string[];
  /** Keep the temp dir (logs, data) after stop() for debugging; default false. */
  keepTempDir?: boolean;
  /** Extra IP addresses in the apiserver's serving certificate (a node's pods reach it on one). */
  servingIPs?: string[];
  /** Keep the ServiceAccount admission plugin (pods get tokens; needs a controller-manager); default false. */
  serviceAccountAdmission?: boolean;
  /**
   * Give the apiserver a client certificate for kubelets (--kubelet-client-certificate/-key,
   * group system:masters, signed by the CA; made with openssl), for logs, exec and port-forward.
   */
  kubeletClientCertificate?: boolean;
}

export interface ControlPlane {
  /** kubeconfig with the admin token and the CA; works with `kubectl --kubeconfig`. */
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** CA that signed the apiserver's serving certificate. */
  caPem: string;
  /** Its private key (to sign more certificates, say the apiserver's kubelet client certificate). */
  caKeyPem: string;
  /** The directory holding the binaries (etcd, kube-apiserver, and the node's when built). */
  binDir: string;
  /** Bearer token of a user in group system:masters. */
  token: string;
  /** Temp dir with certificates, etcd data and the logs (etcd.log, kube-apiserver.log). */
  dir: string;
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  restartApiServer(): Promise<void>;
  /** Stops both processes and removes the temp dir; safe to call more than once. */
  stop(): Promise<void>;
}

const execFileAsync = promisify(execFile);
const buildScript = fileURLToPath(new URL("../controlplane/build.sh", import.meta.url));
const loopback = "127.0.0.1";

/** A child process whose output goes to a log file, with a promise for its exit. */
export interface Managed {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<string>;
  exitDescription?: string;
}

// Children still running when the test process exits without stop() are killed, not orphaned.
const running = new Set<Managed>();
process.once("exit", () => {
  for (const proc of running) proc.child.kill("SIGKILL");
});

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const startTimeoutMs = options.startTimeoutMs ?? 90_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
  const binDir =
    options.binDir ??
    process.env.IMAGESHIFT_CONTROLPLANE_BIN_DIR ??
    (await runBuildScript(options.buildTimeoutMs ?? 45 * 60_000));

  const dir = await mkdtemp(path.join(tmpdir(), "imageshift-controlplane-"));
  const procs: { etcd?: Managed; apiServer?: Managed } = {};
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopProcess(procs.apiServer, stopTimeoutMs);
    await stopProcess(procs.etcd, stopTimeoutMs);
    if (!options.keepTempDir) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [etcdClientPort, etcdPeerPort, apiServerPort] = await freePorts(3);
    const server = `https://${loopback}:${apiServerPort}`;
    const etcdUrl = `http://${loopback}:${etcdClientPort}`;
    const etcdPeerUrl = `http://${loopback}:${etcdPeerPort}`;
    const file = (name: string) => path.join(dir, name);

    const ca = await createCertificateAuthority({ commonName: "imageshift-e2e-ca", validityDays: 7 });
    const serving = await createServingCertificate(ca, {
      commonName: "kube-apiserver",
      dnsNames: [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
      ],
      ipAddresses: [loopback, "10.0.0.1", ...(options.servingIPs ?? [])],
      validityDays: 7,
    });
    const serviceAccountKey = generateKeyPairSync("ec", {
      namedCurve: "prime256v1",
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    const token = randomBytes(32).toString("hex");
    await Promise.all([
      writeFile(file("ca.crt"), ca.certPem),
      writeFile(file("apiserver.crt"), serving.certPem),
      writeFile(file("apiserver.key"), serving.keyPem, { mode: 0o600 }),
      writeFile(file("sa.pub"), serviceAccountKey.publicKey),
      writeFile(file("sa.key"), serviceAccountKey.privateKey, { mode: 0o600 }),
      writeFile(file("tokens.csv"), `${token},imageshift-e2e-admin,imageshift-e2e-admin,"system:masters"\n`, {
        mode: 0o600,
      }),
      writeFile(file("kubeconfig"), kubeconfig(server, ca.certPem, token), { mode: 0o600 }),
    ]);
    if (options.kubeletClientCertificate) await kubeletClientCertificate(dir, ca.keyPem);

    procs.etcd = startProcess("etcd", path.join(binDir, "etcd"), dir, [
      "--name=imageshift-e2e",
      `--data-dir=${file("etcd-data")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=imageshift-e2e=${etcdPeerUrl}`,
      "--unsafe-no-fsync=true",
    ]);
    await waitReady(procs.etcd, startTimeoutMs, () => httpGetOk(`${etcdUrl}/health`));

    const apiServerArgs = [
      `--bind-address=${loopback}`,
      `--advertise-address=${loopback}`,
      `--secure-port=${apiServerPort}`,
      `--tls-cert-file=${file("apiserver.crt")}`,
      `--tls-private-key-file=${file("apiserver.key")}`,
      `--client-ca-file=${file("ca.crt")}`,
      `--etcd-servers=${etcdUrl}`,
      `--token-auth-file=${file("tokens.csv")}`,
      "--authorization-mode=RBAC",
      ...(options.serviceAccountAdmission ? [] : ["--disable-admission-plugins=ServiceAccount"]),
      "--service-cluster-ip-range=10.0.0.0/24",
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${file("sa.pub")}`,
      `--service-account-signing-key-file=${file("sa.key")}`,
      "--endpoint-reconciler-type=none",
      "--allow-privileged=true",
      ...(options.kubeletClientCertificate
        ? [
            `--kubelet-client-certificate=${file("kubelet-client.crt")}`,
            `--kubelet-client-key=${file("kubelet-client.key")}`,
          ]
        : []),
      ...(options.apiServerArgs ?? []),
    ];
    const readyz = () => httpGetOk(`${server}/readyz`, { ca: ca.certPem, token });

    const startApiServer = async (): Promise<void> => {
      if (stopped) throw new Error("the control plane has been stopped");
      if (procs.apiServer && procs.apiServer.exitDescription === undefined) {
        throw new Error("kube-apiserver is already running");
      }
      procs.apiServer = startProcess(
        "kube-apiserver",
        path.join(binDir, "kube-apiserver"),
        dir,
        apiServerArgs,
      );
      await waitReady(procs.apiServer, startTimeoutMs, readyz);
    };
    const stopApiServer = () => stopProcess(procs.apiServer, stopTimeoutMs);

    await startApiServer();
    return {
      kubeconfigPath: file("kubeconfig"),
      server,
      caPem: ca.certPem,
      caKeyPem: ca.keyPem,
      binDir,
      token,
      dir,
      startApiServer,
      stopApiServer,
      restartApiServer: async () => {
        await stopApiServer();
        await startApiServer();
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** kubelet-client.crt/.key in `dir`: a clientAuth certificate signed by the CA (ca.crt there). */
async function kubeletClientCertificate(dir: string, caKeyPem: string): Promise<void> {
  const file = (name: string) => path.join(dir, name);
  await writeFile(file("ca.key"), caKeyPem, { mode: 0o600 });
  await writeFile(
    file("kubelet-client.ext"),
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
  );
  const openssl = (args: string[]) => execFileAsync("openssl", args, { cwd: dir, timeout: 20_000 });
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-subj",
    "/O=system:masters/CN=kube-apiserver-kubelet-client",
    "-keyout",
    "kubelet-client.key",
    "-out",
    "kubelet-client.csr",
  ]);
  await openssl([
    "x509",
    "-req",
    "-in",
    "kubelet-client.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "7",
    "-extfile",
    "kubelet-client.ext",
    "-out",
    "kubelet-client.crt",
  ]);
}

/** Runs build.sh (fast when the binaries are cached) and returns the directory it prints last. */
export function runBuildScript(timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // Its own process group, so that a timeout stops the go build under it too.
    const child = spawn("bash", [buildScript], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    }, timeoutMs);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk); // build progress; a cold build takes minutes
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const binDir = stdout.trim().split("\n").at(-1) ?? "";
      if (code === 0 && binDir !== "") resolve(binDir);
      else {
        const why = timedOut ? `did not finish within ${timeoutMs} ms` : `exited with code ${code}`;
        reject(new Error(`${buildScript} ${why}:\n${tail(stderr)}`));
      }
    });
  });
}

export function startProcess(name: string, binary: string, dir: string, args: string[]): Managed {
  const logPath = path.join(dir, `${name}.log`);
  const fd = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { cwd: dir, stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  let proc: Managed;
  const exited = new Promise<string>((resolve) => {
    const done = (description: string) => {
      if (proc.exitDescription !== undefined) return;
      proc.exitDescription = description;
      running.delete(proc);
      resolve(description);
    };
    child.once("error", (err) => done(`failed to start: ${err.message}`));
    child.once("exit", (code, signal) => done(signal ? `killed by ${signal}` : `exited with code ${code}`));
  });
  proc = { name, child, logPath, exited };
  running.add(proc);
  return proc;
}

/** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. */
export async function stopProcess(proc: Managed | undefined, timeoutMs: number): Promise<void> {
  if (!proc || proc.exitDescription !== undefined) return;
  proc.child.kill("SIGTERM");
  const timer = new AbortController();
  const exitedInTime = await Promise.race([
    proc.exited.then(() => true),
    sleep(timeoutMs, false, { signal: timer.signal }).catch(() => true),
  ]);
  timer.abort();
  if (!exitedInTime) {
    proc.child.kill("SIGKILL");
    await proc.exited;
  }
}

/** Polls `probe` until it succeeds; fails early if the process exits, with the tail of its log. */
export async function waitReady(
  proc: Managed,
  timeoutMs: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitDescription !== undefined) {
      throw new Error(`${proc.name} ${proc.exitDescription} before becoming ready; ${logTail(proc)}`);
    }
    if (await probe()) return;
    await sleep(250);
  }
  throw new Error(`${proc.name} was not ready within ${timeoutMs} ms; ${logTail(proc)}`);
}

/** GET returning true on a 2xx answer, false on any error or other status (bounded to 2 s). */
export function httpGetOk(url: string, auth?: { ca: string; token: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const get = url.startsWith("https:") ? https.get : http.get;
    const req = get(
      url,
      {
        timeout: 2000,
        agent: false,
        ...(auth ? { ca: auth.ca, headers: { authorization: `Bearer ${auth.token}` } } : {}),
      },
      (res) => {
        res.resume();
        resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300);
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

/** `count` distinct free TCP ports on 127.0.0.1 (free when asked; the usual small race applies). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (server) =>
        new Promise<number>((resolve, reject) => {
          server.once("error", reject);
          server.listen(0, loopback, () => {
            const address = server.address();
            if (address && typeof address === "object") resolve(address.port);
            else reject(new Error("could not read a listening port"));
          });
        }),
    ),
  );
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function kubeconfig(server: string, caPem: string, token: string): string {
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "imageshift-e2e",
        cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") },
      },
    ],
    users: [{ name: "imageshift-e2e-admin", user: { token } }],
    contexts: [
      { name: "imageshift-e2e", context: { cluster: "imageshift-e2e", user: "imageshift-e2e-admin" } },
    ],
    "current-context": "imageshift-e2e",
  };
  return `${JSON.stringify(config, null, 2)}\n`; // JSON is valid YAML
}

function logTail(proc: Managed): string {
  let log = "";
  try {
    log = readFileSync(proc.logPath, "utf8");
  } catch {}
  return `last lines of ${proc.logPath}:\n${tail(log)}`;
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
