/**
 * ImageShift on a real node (harness/node.ts: control plane, controller-manager, scheduler, a
 * kubelet with containerd and runc, a bridge network, local registries).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Cluster, startCluster } from "./harness/node.ts";
import { waitUntil } from "./harness/operator.ts";

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({ keepTempDir: process.env.IMAGESHIFT_E2E_KEEP === "1" });
});

after(async () => {
  await cluster?.stop();
});

interface PodStatus {
  status: {
    phase?: string;
    podIP?: string;
    containerStatuses?: {
      image: string;
      imageID: string;
      ready: boolean;
      state: { waiting?: { reason?: string }; running?: unknown; terminated?: { exitCode: number } };
    }[];
  };
}

describe("a cluster with one node", { timeout: 10 * 60_000 }, () => {
  it("runs a busybox pod from the local registry", async () => {
    const { kubectl } = cluster;
    await kubectl.ok(["create", "namespace", "smoke"]);
    await kubectl.ok(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "busybox", namespace: "smoke" },
        spec: {
          containers: [{ name: "busybox", image: cluster.busyboxImage, command: ["sleep", "3600"] }],
          terminationGracePeriodSeconds: 0,
        },
      }),
    );
    const pod = await waitUntil(
      "the busybox pod to run",
      async () => {
        const pod = await kubectl.json<PodStatus>(["get", "pod", "busybox", "-n", "smoke"]);
        return pod.status.containerStatuses?.[0]?.state.running ? pod : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(pod.status.phase, "Running");
    assert.equal(pod.status.containerStatuses?.[0]?.image, cluster.busyboxImage);
    assert.match(
      pod.status.podIP ?? "",
      new RegExp(`^${cluster.network.gateway.replace(/\.1$/, "").replaceAll(".", "\\.")}\\.`),
    );
  });
});
