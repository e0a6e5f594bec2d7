/**
 * Issue 13 in cluster mode: the operator on a real API server (harness/controlplane.ts), pods
 * created with kubectl through the chart's webhook configurations: credentials from a
 * dockerconfigjson Secret a rule object names (`--registry-credentials`), a strict namespace's
 * refusal as kubectl shows it, and the RegistriesReachable condition following a mirror that goes
 * down and comes back. The standalone scenarios are in mirrors.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import {
  chartWebhookConfigurations,
  type Kubectl,
  kubectlFor,
  makeWebhookCertificates,
  type OperatorProcess,
  startOperator,
  waitUntil,
} from "./harness/operator.ts";
import {
  type FaultProxy,
  pushImage,
  type Registry,
  startFaultProxy,
  startRegistry,
} from "./harness/registries.ts";

import { alice, ORIGINAL_IMAGES, REFUSED, type RecordEntry } from "./harness/serve.ts";

// ---------------------------------------------------------------------------------------------
// Cluster mode: the operator on a real API server, pods created with kubectl

interface StoredPod {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { containers: { name: string; image: string }[] };
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

describe("mirror checks in cluster mode: credentials from a Secret, RegistriesReachable, a strict namespace", () => {
  const OWN_NAMESPACE = "imageshift-system";
  const SOURCE = "source.example";
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  let dir: string;
  let operator: OperatorProcess | undefined;
  let privateMirror: Registry;
  let plainMirror: Registry;
  let flaky: FaultProxy;
  let podSeq = 0;

  const json = (value: object) => JSON.stringify(value);

  /** `kubectl create` of a pod; the stored pod (or undefined when refused), and kubectl's stderr. */
  async function createPod(namespace: string, containers: Record<string, string>) {
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `pod-${++podSeq}`, namespace },
      spec: { containers: Object.entries(containers).map(([name, image]) => ({ name, image })) },
    };
    const result = await k.run(["create", "-f", "-", "-o", "json"], { stdin: json(pod) });
    const stored = result.code === 0 ? (JSON.parse(result.stdout) as StoredPod) : undefined;
    return {
      stored,
      stderr: result.stderr,
      images: Object.fromEntries((stored?.spec.containers ?? []).map((c) => [c.name, c.image])),
      record: JSON.parse(stored?.metadata.annotations?.[ORIGINAL_IMAGES] ?? "{}") as Record<
        string,
        RecordEntry
      >,
    };
  }

  async function registriesReachable(name: string): Promise<Condition | undefined> {
    const object = await k.json<{ status?: { conditions?: Condition[] } }>([
      "get",
      "imageshifts.imageshift.dev",
      name,
    ]);
    return object.status?.conditions?.find((c) => c.type === "RegistriesReachable");
  }

  /** Waits (30 s at most) for the object's RegistriesReachable to have `status`; returns it. */
  function reachableTurns(name: string, status: "True" | "False"): Promise<Condition> {
    return waitUntil(
      `Imageshift/${name}'s RegistriesReachable ${status}`,
      async () => {
        const condition = await registriesReachable(name);
        return condition?.status === status && condition;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  }

  before(async () => {
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
    k = kubectlFor(cp.kubeconfigPath);
    dir = await mkdtemp(path.join(tmpdir(), "imageshift-mirrors-cluster-"));
    [privateMirror, plainMirror] = await Promise.all([
      startRegistry("mirrors-private", { auth: { htpasswd: alice } }),
      startRegistry("mirrors-plain"),
    ]);
    flaky = await startFaultProxy(plainMirror);
    await pushImage(privateMirror, "b/app", "v1", { credentials: alice });
    await pushImage(plainMirror, "f/app", "v1");

    await k.ok([
      "apply",
      "-f",
      fileURLToPath(new URL("../../charts/imageshift/crds/crds.yaml", import.meta.url)),
    ]);
    await k.ok([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "crd/imageshifts.imageshift.dev",
      "crd/registryrewriterules.dev.flemzord.fr",
    ]);
    const namespace = (name: string, labels: Record<string, string> = {}) => ({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name, labels },
    });
    await k.ok(
      ["apply", "-f", "-"],
      json({
        apiVersion: "v1",
        kind: "List",
        items: [
          namespace(OWN_NAMESPACE),
          namespace("team-a", { "imageshift.dev": "enabled" }),
          namespace("team-strict", { "imageshift.dev": "strict" }),
        ],
      }),
    );
    // The platform team's Secret, next to ImageShift; pods never name it.
    await k.ok([
      "create",
      "secret",
      "docker-registry",
      "mirror-pull",
      "--namespace",
      OWN_NAMESPACE,
      `--docker-server=${privateMirror.host}`,
      `--docker-username=${alice.username}`,
      `--docker-password=${alice.password}`,
    ]);
    const imageshift = (name: string, verify: object | undefined, from: string, to: string) => ({
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name },
      spec: { ...(verify ? { verify } : {}), mappings: { swap: [{ registry: from, target: to }] } },
    });
    const keep = (registry: { host: string }, more: object = {}) => ({
      mode: "Presence",
      whenUnknown: "KeepOriginal",
      insecureRegistries: [registry.host],
      ...more,
    });
    await k.ok(
      ["apply", "-f", "-"],
      json({
        apiVersion: "v1",
        kind: "List",
        items: [
          imageshift("probe", undefined, "probe.example", "probe-mirror.example"),
          imageshift(
            "private",
            keep(privateMirror, { credentialsSecret: "mirror-pull" }),
            `${SOURCE}/b`,
            `${privateMirror.host}/b`,
          ),
          imageshift(
            "no-secret",
            keep(privateMirror, { credentialsSecret: "not-there" }),
            `${SOURCE}/x`,
            `${privateMirror.host}/b`,
          ),
          imageshift("flaky", keep(flaky), `${SOURCE}/f`, `${flaky.host}/f`),
        ],
      }),
    );

    const certs = await makeWebhookCertificates(dir);
    operator = await startOperator({
      name: "mirrors-operator",
      kubeconfigPath: cp.kubeconfigPath,
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      leaseNamespace: OWN_NAMESPACE,
      logDir: dir,
      extraArgs: ["--registry-credentials"],
    });
    const webhooks = await chartWebhookConfigurations({
      port: operator.webhookPort,
      caBundle: certs.caBundle,
      namespace: OWN_NAMESPACE,
    });
    await k.ok(["apply", "-f", "-"], json({ apiVersion: "v1", kind: "List", items: webhooks }));
    await waitUntil(
      "the operator to hold the 4 objects' rules",
      async () => (await operator?.metric("imageshift_rules_loaded")) === 4,
      {
        timeoutMs: 20_000,
      },
    );
    await waitUntil(
      "the API server to call the mutating webhook",
      async () => {
        const pod = {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "probe", namespace: "team-a" },
          spec: { containers: [{ name: "app", image: "probe.example/app:1" }] },
        };
        const stored = await k.json<StoredPod>(["create", "--dry-run=server", "-f", "-"], json(pod));
        return stored.spec.containers[0]?.image === "probe-mirror.example/app:1";
      },
      { timeoutMs: 20_000 },
    );
  });

  after(async () => {
    await operator?.stop("SIGTERM", 10_000);
    await cp?.stop();
    await flaky?.stop();
    await Promise.all([privateMirror?.stop(), plainMirror?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("checks with the credentials of the Secret the rule object names, and says why a missing one cannot be used", async () => {
    const created = await createPod("team-a", { app: `${SOURCE}/b/app:v1`, other: `${SOURCE}/x/app:v1` });
    assert.ok(created.stored, created.stderr);
    assert.deepEqual(created.images, { app: `${privateMirror.host}/b/app:v1`, other: `${SOURCE}/x/app:v1` });
    assert.equal(
      created.record["containers/app"]?.check,
      `${privateMirror.host}/b/app:v1: present [Imageshift/private spec.mappings.swap[0]]`,
    );
    assert.equal(
      created.record["containers/other"]?.check,
      `${privateMirror.host}/b/app:v1: unknown: Secret "${OWN_NAMESPACE}/not-there" of type kubernetes.io/dockerconfigjson not found in namespace "${OWN_NAMESPACE}" [Imageshift/no-secret spec.mappings.swap[0]]`,
    );
    assert.match(
      created.stderr,
      new RegExp(`Warning: imageshift: containers/other: ${SOURCE}/x/app:v1 kept`),
    );
  });

  it("a strict namespace refuses, through the API server, a pod whose mirror lacks its image", async () => {
    const image = `${SOURCE}/f/missing:v1`;
    const refused = await createPod("team-strict", { app: image });
    assert.equal(refused.stored, undefined);
    assert.ok(
      refused.stderr.includes(
        `containers/app: image "${image}" not rewritten, as its mirror cannot be used: ${flaky.host}/f/missing:v1: absent [Imageshift/flaky spec.mappings.swap[0]]`,
      ),
      refused.stderr,
    );
    assert.match(refused.stderr, /pod refused in strict namespace team-strict/);
  });

  it("RegistriesReachable turns False naming the mirror while it is down, and True again after", async () => {
    const reachable = await reachableTurns("flaky", "True");
    assert.equal(reachable.message, `no failed check on ${flaky.host}`);
    const image = `${SOURCE}/f/app:v1`;
    try {
      await flaky.down();
      const kept = await createPod("team-a", { app: image });
      assert.deepEqual(kept.images, { app: image });
      assert.match(kept.record["containers/app"]?.check ?? "", new RegExp(`: unknown: .*${REFUSED}`));
      // The leader compares the checks' last errors every 10 s.
      const down = await reachableTurns("flaky", "False");
      assert.equal(down.reason, "CheckFailed");
      assert.match(down.message ?? "", new RegExp(`^${flaky.host}: .*${REFUSED}.* \\(at \\d{4}-`));
      assert.equal(
        (await registriesReachable("private"))?.status,
        "True",
        "another object's registry is not blamed",
      );
    } finally {
      await flaky.normal();
    }
    const rewritten = await createPod("team-a", { app: image });
    assert.deepEqual(rewritten.images, { app: `${flaky.host}/f/app:v1` });
    const back = await reachableTurns("flaky", "True");
    assert.equal(back.reason, "Reachable");
  });
});
