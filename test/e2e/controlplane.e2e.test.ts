/**
 * Smoke test of the e2e control plane: a real etcd + kube-apiserver on 127.0.0.1, driven with kubectl.
 * A cold first run builds the binaries (see test/e2e/README.md); later runs take seconds.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";

const run = promisify(execFile);
const kubectlBin = process.env.KUBECTL ?? "kubectl";

const pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web", namespace: "smoke" },
  spec: { containers: [{ name: "web", image: "nginx" }] },
};

describe("e2e control plane", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;

  async function kubectl(args: string[], stdin?: string): Promise<string> {
    assert.ok(cp, "control plane is running");
    const promise = run(kubectlBin, ["--kubeconfig", cp.kubeconfigPath, "--request-timeout=20s", ...args], {
      timeout: 30_000,
    });
    if (stdin !== undefined) promise.child.stdin?.end(stdin);
    const { stdout } = await promise;
    return stdout;
  }

  async function getPod(): Promise<{
    metadata: { uid: string };
    spec: { containers: { image: string }[] };
    status: { phase?: string };
  }> {
    return JSON.parse(await kubectl(["get", "pod", "web", "--namespace", "smoke", "-o", "json"]));
  }

  before(async () => {
    // Allows for a cold build of the binaries; a cached start takes seconds.
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
  });

  after(async () => {
    await cp?.stop();
  });

  it("stores a namespace and a pod, and keeps them across an apiserver restart", {
    timeout: 180_000,
  }, async () => {
    assert.match(cp!.server, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(await kubectl(["create", "namespace", "smoke"]), /namespace\/smoke created/);
    assert.match(await kubectl(["apply", "-f", "-"], JSON.stringify(pod)), /pod\/web created/);

    const stored = await getPod();
    assert.equal(stored.spec.containers[0]?.image, "nginx");
    assert.equal(stored.status.phase, "Pending", "no kubelet or scheduler, so the pod stays Pending");

    await cp!.restartApiServer();
    const afterRestart = await getPod();
    assert.equal(afterRestart.metadata.uid, stored.metadata.uid, "same pod after the restart");
    assert.equal(afterRestart.spec.containers[0]?.image, "nginx");
  });
});
