/**
 * "A cluster with one node" for the e2e tests: the control plane of controlplane.ts plus
 * kube-controller-manager, kube-scheduler and a real kubelet (all built by
 * test/e2e/controlplane/build.sh), Debian's containerd and runc, and a bridge CNI network, so
 * that Deployments, ReplicaSets, EndpointSlices, scheduling and image pulls are real.
 *
 * Everything is private to one run and chosen at run time: the temp dir (containerd's config,
 * root, state and socket; the kubelet's root; CNI config and IPAM state), every port, the bridge's
 * name and its /24. The host is left as it was:
 * - the kubelet runs with `protectKernelDefaults: true` in a private mount namespace where the
 *   sysctl files it checks are bind-mounted with the values it expects (it never writes them), and
 *   with `makeIPTablesUtilChains: false` (no iptables chains);
 * - the bridge CNI plugin neither masquerades nor acts as gateway (which would switch on
 *   net.ipv4.ip_forward): the harness creates the bridge with the gateway address itself;
 * - teardown removes the pods, then containers and sandboxes (ctr), stops every process by pid,
 *   unmounts whatever is mounted under the temp dir, deletes the bridge, and removes host
 *   directories the kubelet, containerd and CNI create only when this run created them and they
 *   are empty.
 *
 * Pods reach the API server as in any cluster, through the `kubernetes` Service's address and
 * port 443 (KUBERNETES_SERVICE_HOST/PORT): the service range is the /28 at the start of the /24,
 * so that address is the bridge's gateway address, where a small TCP proxy in the test process
 * listens on port 443 and forwards to the API server on loopback. There is no kube-proxy: the API
 * server reaches webhooks through their endpoints (`--enable-aggregator-routing=true`).
 *
 * Registries listen on loopback, which containerd (on the host) reaches but a pod does not. A
 * registry a pod must ask too (ImageShift checking a mirror) is exposed the same way:
 * `exposeRegistry` puts a TCP proxy on `<gateway>:<port>`, and writes containerd's hosts config
 * for that name, so the pod and the node reach the registry at one name, over plain HTTP.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type ControlPlane,
  freePorts,
  type Managed,
  runBuildScript,
  startControlPlane,
  startProcess,
  stopProcess,
  waitReady,
} from "./controlplane.ts";
import {
  ensureHostPackages,
  podmanEnv,
  type Registry,
  removeEmptyCgroups,
  runOk,
  safeReaddir,
  startRegistry,
} from "./image.ts";
import { type Kubectl, kubectlFor, waitUntil } from "./operator.ts";

const execFileAsync = promisify(execFile);
const imagesScript = fileURLToPath(new URL("../node/images.sh", import.meta.url));

/** The images images.sh builds FROM scratch, as the cluster's registry serves them. */
export const nodeImages = {
  pause: "imageshift-e2e/pause:1",
  busybox: "imageshift-e2e/busybox:1",
  /** The same busybox with another image ID (a label): the mirror's copy in the node tests. */
  mirrorBusybox: "imageshift-e2e/busybox-mirror:1",
  /** Another copy (another label): an "upstream" registry's, told apart from both. */
  upstreamBusybox: "imageshift-e2e/busybox-upstream:1",
};

export interface ClusterOptions {
  /** Keep the temp dir (logs) after stop(); default false. */
  keepTempDir?: boolean;
  /** Bound on the node becoming Ready; default 120 s. */
  readyTimeoutMs?: number;
}

export interface Cluster {
  controlPlane: ControlPlane;
  kubeconfigPath: string;
  kubectl: Kubectl;
  /** Temp dir with every component's config, state and log. */
  dir: string;
  /** The node's name. */
  nodeName: string;
  /** The bridge, its /24 and gateway address (also the `kubernetes` Service's address). */
  network: { bridge: string; subnet: string; gateway: string };
  /** The registry holding the pause and busybox images; push more with `registry.push`. */
  registry: Registry;
  /** `<registry>/imageshift-e2e/busybox:1` */
  busyboxImage: string;
  /** Starts another local registry that the node pulls from over plain HTTP. */
  addRegistry(name: string): Promise<Registry>;
  /**
   * Makes a registry reachable from pods: a TCP proxy on the gateway address (a free port)
   * forwarding to it, which the node also pulls from over plain HTTP. Returns `<gateway>:<port>`,
   * the registry's name for images both pods and the node use. Closed by stop().
   */
  exposeRegistry(registry: Registry): Promise<string>;
  /** Reads a component's log (containerd, kubelet, kube-controller-manager, kube-scheduler, ...). */
  log(component: string): string;
  /**
   * Freezes kube-controller-manager (SIGSTOP) until the returned function thaws it (SIGCONT):
   * EndpointSlices then lag behind pods, as on a busy control plane, while the kubelet goes on.
   * stop() thaws it too.
   */
  pauseControllers(): () => void;
  /** Tears everything down (see the module comment); safe to call more than once. */
  stop(): Promise<void>;
}

const hostDirsToTidy = [
  "/var/lib/kubelet/device-plugins",
  "/var/lib/kubelet",
  "/var/log/containers",
  "/var/log/pods",
  "/var/lib/cni/results",
  "/var/lib/cni/networks",
  "/var/lib/cni",
  "/run/containerd/s",
  "/run/containerd/runc",
  "/run/containerd",
  "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
  "/usr/libexec/kubernetes/kubelet-plugins/volume",
  "/usr/libexec/kubernetes/kubelet-plugins",
  "/usr/libexec/kubernetes",
];

/** What the kubelet checks with protectKernelDefaults (pkg/kubelet/cm/container_manager_linux.go). */
const kubeletSysctls: Record<string, string> = {
  "vm/overcommit_memory": "1",
  "vm/panic_on_oom": "0",
  "kernel/panic": "10",
  "kernel/panic_on_oops": "1",
  "kernel/keys/root_maxkeys": "1000000",
  "kernel/keys/root_maxbytes": "25000000",
};

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  await ensureHostPackages();
  const binDir = process.env.IMAGESHIFT_CONTROLPLANE_BIN_DIR ?? (await runBuildScript(45 * 60_000));
  await runOk("bash", [imagesScript], { timeoutMs: 10 * 60_000, echoStderr: true, env: await podmanEnv() });

  const preexisting = new Set(hostDirsToTidy.filter((dir) => existsSync(dir)));
  const cgroupsPreexisting =
    existsSync("/sys/fs/cgroup/memory/k8s.io") || existsSync("/sys/fs/cgroup/k8s.io");
  const network = await pickNetwork();
  const procs: Record<string, Managed | undefined> = {};
  const registries: Registry[] = [];
  let controlPlane: ControlPlane | undefined;
  let dir = "";
  let bridgeCreated = false;
  let stopped = false;
  /** TCP proxies on the gateway address (the API server's, exposed registries') and their sockets. */
  const proxies: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  /** Listens on `<gateway>:<port>` (0: a free one) and forwards each connection to 127.0.0.1:<target>. */
  const proxyOnGateway = async (port: number, target: number): Promise<number> => {
    const server = net.createServer((client) => {
      const upstream = net.connect(target, "127.0.0.1");
      sockets.add(client);
      sockets.add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on("error", close);
      upstream.on("error", close);
      client.on("close", close);
      upstream.on("close", close);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    proxies.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, network.gateway, () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const errors: string[] = [];
    const attempt = async (what: string, action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (error) {
        errors.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    const sock = dir && path.join(dir, "containerd", "containerd.sock");
    procs.controllerManager?.child.kill("SIGCONT"); // paused by pauseControllers(): stoppable again
    // 1. Pods deleted through the API, while the kubelet runs, so that it stops their sandboxes
    //    (CNI DEL, network namespaces) itself.
    if (controlPlane && procs.kubelet?.exitDescription === undefined) {
      const kubectl = kubectlFor(controlPlane.kubeconfigPath);
      await attempt("deleting pods", async () => {
        await kubectl.run([
          "delete",
          "deployments,replicasets,daemonsets,statefulsets,jobs",
          "--all",
          "-A",
          "--wait=false",
        ]);
        await kubectl.run(["delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--wait=false"]);
        // Until containerd runs no task and CNI holds no result for this network (its DEL ran).
        // Bounded; what is left is removed by force below.
        await waitUntil(
          "the kubelet to stop the pods' containers and sandboxes",
          async () => {
            const tasks = await ctr(sock, ["tasks", "ls"]);
            const running = tasks.split("\n").filter((line) => / RUNNING\s*$/.test(line)).length;
            return running === 0 && cniResults(network.bridge).length === 0;
          },
          { timeoutMs: 60_000, intervalMs: 500 },
        ).catch((error: Error) => process.stderr.write(`cluster teardown: ${error.message}\n`));
      });
    }
    await attempt("kube-scheduler", () => stopProcess(procs.scheduler, 10_000));
    await attempt("kube-controller-manager", () => stopProcess(procs.controllerManager, 10_000));
    await attempt("kubelet", () => stopProcess(procs.kubelet, 15_000));
    // 2. Whatever is left in containerd: tasks killed, containers removed.
    if (procs.containerd && procs.containerd.exitDescription === undefined) {
      await attempt("containerd tasks", async () => {
        for (const id of (await ctr(sock, ["tasks", "ls", "-q"])).split("\n").filter(Boolean)) {
          await ctr(sock, ["tasks", "kill", "-a", "-s", "SIGKILL", id]).catch(() => "");
          await ctr(sock, ["tasks", "delete", "-f", id]).catch(() => "");
        }
        for (const id of (await ctr(sock, ["containers", "ls", "-q"])).split("\n").filter(Boolean)) {
          await ctr(sock, ["containers", "delete", id]).catch(() => "");
        }
      });
    }
    await attempt("containerd", () => stopProcess(procs.containerd, 15_000));
    // 3. Shims (and anything else) still running from this run's dir, by pid.
    if (dir) await attempt("leftover processes", () => killProcessesUnder(dir));
    // 4. Mounts under the temp dir (the kubelet root's shared bind mount, pod volumes, netns,
    //    rootfs), deepest first, before the control plane's stop() removes the dir.
    if (dir) await attempt("unmounting", () => unmountUnder(dir));
    if (bridgeCreated) {
      // Pods' veths whose sandbox was not torn down by CNI (deleting one end removes its pair and
      // frees the pod's network namespace), then the bridge, then CNI's cached results.
      await attempt("veths", async () => {
        const { stdout } = await execFileAsync("ip", ["-o", "link", "show", "master", network.bridge]);
        for (const line of stdout.split("\n")) {
          const name = /^\d+: ([^@:]+)/.exec(line)?.[1];
          if (name) await execFileAsync("ip", ["link", "del", name]).catch(() => undefined);
        }
      });
      await attempt("bridge", () => execFileAsync("ip", ["link", "del", network.bridge]));
      for (const result of cniResults(network.bridge)) {
        const sandbox = result.slice(`imageshift-e2e-${network.bridge}-`.length).replace(/-eth0$/, "");
        rmSync(path.join("/var/lib/cni/results", result), { force: true });
        rmSync(path.join("/var/lib/cni/results", `cni-loopback-${sandbox}-lo`), { force: true });
      }
    }
    // The kubelet's fixed host paths: container log links into this run's pod logs, the device
    // plugin socket; then the cgroups containerd made (cgroupfs, under k8s.io).
    if (dir) {
      await attempt("host paths", async () => {
        for (const link of safeReaddir("/var/log/containers")) {
          const full = path.join("/var/log/containers", link);
          if (safeReadlink(full).startsWith(`${dir}/`)) rmSync(full, { force: true });
        }
        if (!preexisting.has("/var/lib/kubelet"))
          rmSync("/var/lib/kubelet/device-plugins/kubelet.sock", { force: true });
        if (!cgroupsPreexisting) removeEmptyCgroups("k8s.io");
      });
    }
    for (const hostDir of hostDirsToTidy) {
      if (preexisting.has(hostDir)) continue;
      try {
        rmdirSync(hostDir); // only when empty
      } catch {}
    }
    for (const server of proxies) server.close();
    for (const socket of sockets) socket.destroy();
    // The API server and etcd last; this removes the temp dir unless keepTempDir.
    if (controlPlane) await attempt("control plane", () => (controlPlane as ControlPlane).stop());
    for (const registry of registries) await attempt("registry", () => registry.stop());
    if (errors.length > 0) throw new Error(`cluster teardown: ${errors.join("; ")}`);
  };

  try {
    // The bridge first: the API server's certificate and the node IP use its gateway address.
    await execFileAsync("ip", ["link", "add", "name", network.bridge, "type", "bridge"]);
    bridgeCreated = true;
    await execFileAsync("ip", ["addr", "add", `${network.gateway}/24`, "dev", network.bridge]);
    await execFileAsync("ip", ["link", "set", network.bridge, "up"]);

    const serviceRange = `${network.prefix}.0/28`;
    controlPlane = await startControlPlane({
      binDir,
      keepTempDir: options.keepTempDir ?? false,
      servingIPs: [network.gateway],
      serviceAccountAdmission: true,
      kubeletClientCertificate: true,
      apiServerArgs: [
        `--service-cluster-ip-range=${serviceRange}`,
        "--enable-aggregator-routing=true",
        "--kubelet-preferred-address-types=Hostname",
      ],
    });
    dir = controlPlane.dir;
    const file = (...parts: string[]) => path.join(dir, ...parts);
    const kubectl = kubectlFor(controlPlane.kubeconfigPath);

    // The API server's address for pods: the `kubernetes` Service's ClusterIP (the gateway) port 443.
    await proxyOnGateway(443, Number(new URL(controlPlane.server).port));

    // The registry with the node's own images.
    const registry = await startRegistry("node-registry");
    registries.push(registry);
    const pauseImage = await registry.push(`localhost/${nodeImages.pause}`, nodeImages.pause);
    const busyboxImage = await registry.push(`localhost/${nodeImages.busybox}`, nodeImages.busybox);

    // containerd
    await Promise.all(
      [
        "containerd/root",
        "containerd/state",
        "containerd/certs.d",
        "containerd/opt",
        "cni/net.d",
        "cni/ipam",
      ].map((sub) => mkdir(file(sub), { recursive: true })),
    );
    const writeHosts = async (host: string) => {
      await mkdir(file("containerd/certs.d", host), { recursive: true });
      await writeFile(
        file("containerd/certs.d", host, "hosts.toml"),
        `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
    };
    await writeHosts(registry.host);
    await writeFile(
      file("containerd/config.toml"),
      containerdConfig(file("containerd"), file("cni"), pauseImage),
    );
    await writeFile(
      file("cni/net.d/10-imageshift-e2e.conflist"),
      `${JSON.stringify(cniConfig(network, file("cni/ipam")), null, 2)}\n`,
    );
    const sock = file("containerd/containerd.sock");
    procs.containerd = startProcess("containerd", "containerd", dir, [
      "--config",
      file("containerd/config.toml"),
    ]);
    await waitReady(procs.containerd, 30_000, async () => {
      try {
        await ctr(sock, ["version"]);
        return true;
      } catch {
        return false;
      }
    });

    // kubelet: a client certificate for the API server (logs, exec), its config, its root as a
    // shared bind mount, and a private mount namespace with the sysctl values it checks.
    const [kubeletPort, kubeletHealthzPort, controllerManagerPort, schedulerPort] = await freePorts(4);
    const kubeletRoot = file("kubelet");
    await mkdir(kubeletRoot, { recursive: true });
    await mkdir(file("sysctl"), { recursive: true });
    for (const [name, value] of Object.entries(kubeletSysctls)) {
      await writeFile(file("sysctl", name.replaceAll("/", ".")), `${value}\n`);
    }
    await writeFile(
      file("kubelet-config.yaml"),
      `${JSON.stringify(
        kubeletConfig({
          port: kubeletPort as number,
          healthzPort: kubeletHealthzPort as number,
          clientCAFile: file("ca.crt"),
          runtimeEndpoint: `unix://${sock}`,
          podLogsDir: file("pod-logs"),
          volumePluginDir: file("volume-plugins"),
        }),
        null,
        2,
      )}\n`,
    );
    await execFileAsync("mount", ["--bind", kubeletRoot, kubeletRoot]);
    await execFileAsync("mount", ["--make-shared", kubeletRoot]);
    const binds = Object.keys(kubeletSysctls)
      .map((name) => `mount --bind ${file("sysctl", name.replaceAll("/", "."))} /proc/sys/${name}`)
      .join(" && ");
    const kubeletArgs = [
      `--config=${file("kubelet-config.yaml")}`,
      `--kubeconfig=${controlPlane.kubeconfigPath}`,
      `--root-dir=${kubeletRoot}`,
      `--cert-dir=${file("kubelet-pki")}`,
      "--hostname-override=localhost",
      `--node-ip=${network.gateway}`,
      "--v=2",
    ];
    procs.kubelet = startProcess("kubelet", "unshare", dir, [
      "--mount",
      "--propagation",
      "unchanged",
      "sh",
      "-c",
      `mount --make-rprivate /proc && ${binds} && exec "$0" "$@"`,
      path.join(binDir, "kubelet"),
      ...kubeletArgs,
    ]);

    const commonArgs = (port: number) => [
      `--kubeconfig=${controlPlane?.kubeconfigPath}`,
      `--authentication-kubeconfig=${controlPlane?.kubeconfigPath}`,
      `--authorization-kubeconfig=${controlPlane?.kubeconfigPath}`,
      "--bind-address=127.0.0.1",
      `--secure-port=${port}`,
      "--leader-elect=false",
    ];
    procs.controllerManager = startProcess(
      "kube-controller-manager",
      path.join(binDir, "kube-controller-manager"),
      dir,
      [
        ...commonArgs(controllerManagerPort as number),
        `--root-ca-file=${file("ca.crt")}`,
        `--service-account-private-key-file=${file("sa.key")}`,
        "--use-service-account-credentials=false",
        `--service-cluster-ip-range=${serviceRange}`,
        "--concurrent-deployment-syncs=5",
      ],
    );
    procs.scheduler = startProcess(
      "kube-scheduler",
      path.join(binDir, "kube-scheduler"),
      dir,
      commonArgs(schedulerPort as number),
    );

    const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
    const alive = () => {
      for (const proc of Object.values(procs)) {
        if (proc?.exitDescription !== undefined) {
          throw new Error(`${proc.name} ${proc.exitDescription}; ${tailOf(proc.logPath)}`);
        }
      }
    };
    await waitUntil(
      "node localhost to be Ready",
      async () => {
        alive();
        const node = await kubectl.json<{ status: { conditions?: { type: string; status: string }[] } }>([
          "get",
          "node",
          "localhost",
        ]);
        return node.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 500 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nkubelet: ${tailOf(file("kubelet.log"))}`);
    });
    await waitUntil(
      "the default ServiceAccount and kube-root-ca.crt (controller-manager)",
      async () => {
        alive();
        const sa = await kubectl.run(["get", "serviceaccount", "default", "-n", "default"]);
        const ca = await kubectl.run(["get", "configmap", "kube-root-ca.crt", "-n", "default"]);
        return sa.code === 0 && ca.code === 0;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );

    return {
      controlPlane,
      kubeconfigPath: controlPlane.kubeconfigPath,
      kubectl,
      dir,
      nodeName: "localhost",
      network: { bridge: network.bridge, subnet: `${network.prefix}.0/24`, gateway: network.gateway },
      registry,
      busyboxImage,
      addRegistry: async (name) => {
        const added = await startRegistry(name);
        registries.push(added);
        await writeHosts(added.host);
        return added;
      },
      exposeRegistry: async (exposed) => {
        const port = await proxyOnGateway(0, Number(exposed.host.split(":")[1]));
        const host = `${network.gateway}:${port}`;
        await writeHosts(host);
        return host;
      },
      pauseControllers: () => {
        const child = procs.controllerManager?.child;
        child?.kill("SIGSTOP");
        return () => void child?.kill("SIGCONT");
      },
      log: (component) => {
        try {
          return readFileSync(file(`${component}.log`), "utf8");
        } catch {
          return "";
        }
      },
      stop,
    };
  } catch (error) {
    await stop().catch((teardown: Error) => {
      if (error instanceof Error) error.message += `\n(${teardown.message})`;
    });
    throw error;
  }
}

interface PickedNetwork {
  bridge: string;
  /** The first three octets, e.g. 10.213.7 */
  prefix: string;
  gateway: string;
}

/** A bridge name and a 10.x.y.0/24 that no host route or address uses yet. */
async function pickNetwork(): Promise<PickedNetwork> {
  const { stdout: routes } = await execFileAsync("ip", ["-4", "route", "show", "table", "all"]);
  const { stdout: addresses } = await execFileAsync("ip", ["-4", "addr"]);
  for (let attempt = 0; attempt < 50; attempt++) {
    const [a = 0, b = 0] = randomBytes(2);
    const prefix = `10.${200 + (a % 50)}.${b}`;
    if (routes.includes(`${prefix}.`) || addresses.includes(`${prefix}.`)) continue;
    return { bridge: `isb${randomBytes(4).toString("hex")}`, prefix, gateway: `${prefix}.1` };
  }
  throw new Error("no free 10.x.y.0/24 found for the pod network");
}

function containerdConfig(root: string, cni: string, pauseImage: string): string {
  return `# Written by test/e2e/harness/node.ts: containerd private to one e2e run.
version = 2
root = "${root}/root"
state = "${root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${root}/containerd.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE, runc cannot lower oom_score_adj below containerd's (the kubelet asks -998).
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "runc"
        Root = "${root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cni}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${root}/certs.d"
`;
}

function cniConfig(network: PickedNetwork, ipamDir: string) {
  return {
    cniVersion: "1.0.0",
    name: `imageshift-e2e-${network.bridge}`,
    plugins: [
      {
        type: "bridge",
        bridge: network.bridge,
        // The harness gave the bridge its gateway address; as gateway the plugin would also
        // switch on net.ipv4.ip_forward, which the host does not need (pods talk to the host only).
        isGateway: false,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: ipamDir,
          // .1 is the gateway, .1-.14 the Services' /28; pods from .16.
          ranges: [
            [
              {
                subnet: `${network.prefix}.0/24`,
                rangeStart: `${network.prefix}.16`,
                gateway: network.gateway,
              },
            ],
          ],
          routes: [{ dst: "0.0.0.0/0", gw: network.gateway }],
        },
      },
    ],
  };
}

function kubeletConfig(options: {
  port: number;
  healthzPort: number;
  clientCAFile: string;
  runtimeEndpoint: string;
  podLogsDir: string;
  volumePluginDir: string;
}) {
  return {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: "127.0.0.1",
    port: options.port,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: options.healthzPort,
    containerRuntimeEndpoint: options.runtimeEndpoint,
    cgroupDriver: "cgroupfs",
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    failCgroupV1: false,
    protectKernelDefaults: true,
    makeIPTablesUtilChains: false,
    podLogsDir: options.podLogsDir,
    volumePluginDir: options.volumePluginDir,
    authentication: {
      x509: { clientCAFile: options.clientCAFile },
      webhook: { enabled: false },
      anonymous: { enabled: false },
    },
    authorization: { mode: "AlwaysAllow" },
    serializeImagePulls: false,
    // A busy shared disk must not evict the tests' pods.
    evictionHard: { "memory.available": "10Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    syncFrequency: "5s",
    fileCheckFrequency: "5s",
    nodeStatusUpdateFrequency: "5s",
  };
}

async function ctr(sock: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync("ctr", ["--address", sock, "--namespace", "k8s.io", ...args], {
    timeout: 20_000,
  });
  return stdout;
}

/** Kills (SIGKILL) processes whose command line names `dir` (containerd shims), by pid. */
async function killProcessesUnder(dir: string): Promise<void> {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (cmdline.includes(dir)) {
      try {
        process.kill(Number(entry), "SIGKILL");
      } catch {}
    }
  }
}

/** Unmounts every mount point at or under `dir`, deepest first (lazily, should one be busy). */
async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[4] ?? "")
      .map((point) => point.replace(/\\040/g, " "))
      .filter((point) => point === dir || point.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    if (points.length === 0) return;
    for (const point of points) await execFileAsync("umount", ["-l", point]).catch(() => undefined);
  }
}

/** CNI's cached ADD results for this run's network (libcni keeps them under /var/lib/cni until DEL). */
function cniResults(bridge: string): string[] {
  return safeReaddir("/var/lib/cni/results").filter((name) => name.startsWith(`imageshift-e2e-${bridge}-`));
}

function safeReadlink(at: string): string {
  try {
    return readlinkSync(at);
  } catch {
    return "";
  }
}

function tailOf(file: string, lines = 25): string {
  try {
    return `last lines of ${file}:\n${readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n")}`;
  } catch {
    return `(no ${file})`;
  }
}
