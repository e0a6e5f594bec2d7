/**
 * The operator modules (src/k8s, src/operator, src/certs) in-process against a real control plane (etcd +
 * kube-apiserver on 127.0.0.1, see harness/controlplane.ts): the cluster rule source over
 * watches, Lease leader election, and status reporting. Objects are created with kubectl, as
 * a user would; the modules under test talk to the API server through ImageShift's own client
 * (src/k8s/client.ts), loaded from the control plane's kubeconfig as in cluster mode.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { CertificateManager } from "../../src/certs/certificate-manager.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { WatchedKind } from "../../src/k8s/informer.ts";
import { fromKubeconfigFiles, staticToken } from "../../src/k8s/kubeconfig.ts";
import { LeaderElector } from "../../src/k8s/leader.ts";
import type { KubeObject } from "../../src/k8s/objects.ts";
import { type ClusterObject, ClusterRuleSource, COMPAT_RESOURCE } from "../../src/operator/cluster-source.ts";
import { startStatusReporting } from "../../src/operator/operator.ts";
import { StatusWriter } from "../../src/operator/status.ts";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import { captureLogger, waitFor } from "./harness/operator.ts";

const execFileAsync = promisify(execFile);
const kubectlBin = process.env.KUBECTL ?? "kubectl";
const CRDS = path.join(import.meta.dirname, "..", "..", "charts", "imageshift", "crds", "crds.yaml");
const LEASE_NAMESPACE = "imageshift-system";
const FAST = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };

interface StoredObject {
  metadata: { name: string; generation: number; resourceVersion: string; uid: string };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    rules?: number;
    conditions?: {
      type: string;
      status: string;
      reason: string;
      message: string;
      observedGeneration?: number;
      lastTransitionTime: string;
    }[];
  };
}

interface StoredLease {
  metadata: { resourceVersion: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

function imageshift(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: "imageshift.dev/v1", kind: "Imageshift", metadata: { name }, spec };
}

function swap(registry: string, target: string): Record<string, unknown> {
  return { mappings: { swap: [{ registry, target }] } };
}

describe("operator modules against a real control plane", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let client: KubeClient;
  /** Run after each test, in reverse order. */
  const cleanups: (() => Promise<unknown>)[] = [];

  async function kubectl(args: string[], stdin?: string): Promise<string> {
    assert.ok(cp, "control plane is running");
    const promise = execFileAsync(
      kubectlBin,
      ["--kubeconfig", cp.kubeconfigPath, "--request-timeout=20s", ...args],
      { timeout: 30_000 },
    );
    if (stdin !== undefined) promise.child.stdin?.end(stdin);
    const { stdout } = await promise;
    return stdout;
  }

  const apply = (object: unknown) => kubectl(["apply", "-f", "-"], JSON.stringify(object));
  const remove = (kind: string, name: string) =>
    kubectl(["delete", kind, name, "--ignore-not-found", "--wait=false"]);
  const getImageshift = async (name: string): Promise<StoredObject> =>
    JSON.parse(await kubectl(["get", "imageshifts.imageshift.dev", name, "-o", "json"]));
  const getLease = async (name: string): Promise<StoredLease> =>
    JSON.parse(await kubectl(["get", "lease", name, "-n", LEASE_NAMESPACE, "-o", "json"]));

  function startSource(options: { watchCompat?: boolean } = {}) {
    const { logger, lines } = captureLogger();
    const source = new ClusterRuleSource({ client, logger, ...options });
    cleanups.push(() => source.stop());
    return { source, lines };
  }

  async function syncedSource(options: { watchCompat?: boolean } = {}) {
    const started = startSource(options);
    await started.source.start();
    await waitFor("the source syncs", 15_000, () => started.source.current());
    return started;
  }

  function rewrite(source: ClusterRuleSource, image: string): string | undefined {
    return source.current()?.ruleSet.rewrite(image).output;
  }

  function entryOf(source: ClusterRuleSource, name: string, kind = "Imageshift"): ClusterObject | undefined {
    return source
      .clusterObjects()
      .find((entry) => entry.object.metadata?.name === name && entry.resource.kind === kind);
  }

  before(async () => {
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
    await kubectl(["apply", "-f", CRDS]);
    await kubectl([
      "wait",
      "--for=condition=Established",
      "crd/imageshifts.imageshift.dev",
      "crd/registryrewriterules.dev.flemzord.fr",
      "--timeout=30s",
    ]);
    await kubectl(["create", "namespace", LEASE_NAMESPACE]);
    client = new KubeClient(fromKubeconfigFiles([cp.kubeconfigPath]));
  });

  // Sources, watches and electors a test started stop after it, even when it failed half way.
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  after(async () => {
    await cp?.stop();
  });

  describe("ClusterRuleSource", () => {
    it("is not ready before its first sync and ready after", { timeout: 30_000 }, async () => {
      const { source } = startSource();
      assert.equal(source.current(), undefined, "before start");
      await source.start();
      assert.equal(source.current(), undefined, "start() does not wait for the sync");
      const rules = await waitFor("the first sync", 15_000, () => source.current());
      assert.equal(source.synced, true);
      assert.equal(rules.ruleSet.size, 0, "no rule objects yet");
      assert.deepEqual(source.clusterObjects(), []);
    });

    it("follows creates, edits and deletes within 1 s, without a status update triggering listeners", {
      timeout: 60_000,
    }, async () => {
      const { source } = await syncedSource();
      let changes = 0;
      source.onChange(() => {
        changes++;
      });
      const image = "crud.example/team/app:1.0";
      assert.equal(rewrite(source, image), image);

      await apply(imageshift("crud", swap("crud.example", "mirror.example/one")));
      await waitFor(
        "the created object is used",
        1000,
        () => rewrite(source, image) === "mirror.example/one/team/app:1.0",
      );
      assert.equal(changes, 1);

      await apply(imageshift("crud", swap("crud.example", "mirror.example/two")));
      await waitFor(
        "the edit is used",
        1000,
        () => rewrite(source, image) === "mirror.example/two/team/app:1.0",
      );
      assert.equal(changes, 2);
      const entry = entryOf(source, "crud");
      assert.equal(entry?.object.metadata?.generation, 2);
      assert.equal(source.current()?.objects.length, 1);

      // A status-only update: same generation, so nothing is recompiled and no listener runs.
      const rulesBefore = source.current();
      await kubectl([
        "patch",
        "imageshifts.imageshift.dev",
        "crud",
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status: { rules: 42 } }),
      ]);
      const updated = await waitFor(
        "the status update reaches the source",
        5000,
        () => (entryOf(source, "crud")?.object.status as { rules?: number } | undefined)?.rules === 42,
      );
      assert.ok(updated);
      await sleep(200);
      assert.equal(changes, 2, "no onChange for a status-only update");
      assert.equal(source.current(), rulesBefore, "the same rule set");
      assert.equal(entryOf(source, "crud")?.result, entry?.result, "not recompiled");

      await remove("imageshifts.imageshift.dev", "crud");
      await waitFor("the delete is seen", 1000, () => rewrite(source, image) === image);
      assert.equal(changes, 3);
      assert.equal(entryOf(source, "crud"), undefined);
      assert.equal(source.current()?.ruleSet.size, 0);
    });

    it("follows namespace labels", { timeout: 30_000 }, async () => {
      const { source } = await syncedSource();
      assert.equal(source.namespaceLabels("labels-e2e"), undefined, "no such namespace yet");
      await kubectl(["create", "namespace", "labels-e2e"]);
      const created = await waitFor("the namespace is seen", 5000, () =>
        source.namespaceLabels("labels-e2e"),
      );
      assert.equal(created["kubernetes.io/metadata.name"], "labels-e2e");
      await kubectl(["label", "namespace", "labels-e2e", "imageshift.dev=enabled", "env=dev"]);
      await waitFor("labels added", 5000, () => source.namespaceLabels("labels-e2e")?.env === "dev");
      assert.equal(source.namespaceLabels("labels-e2e")?.["imageshift.dev"], "enabled");
      await kubectl(["label", "namespace", "labels-e2e", "env-"]);
      await waitFor("label removed", 5000, () => source.namespaceLabels("labels-e2e")?.env === undefined);
      assert.equal(source.namespaceLabels("labels-e2e")?.["imageshift.dev"], "enabled");
      await kubectl(["delete", "namespace", "labels-e2e", "--wait=false"]);
    });

    it("keeps invalid objects with their issues and uses their valid rules", {
      timeout: 30_000,
    }, async () => {
      const { source } = await syncedSource();
      await apply(
        imageshift("partly-invalid", {
          mappings: {
            swap: [{ registry: "partly.example", target: "mirror.example/partly" }],
            regexSwap: [{ expression: "^(broken\\.example/(.*)$", target: "mirror.example/$1" }],
          },
        }),
      );
      // Passes the CRD's schema, but `default` must be a registry host: the whole object is unusable.
      await apply(
        imageshift("wholly-invalid", { default: "not a registry", ...swap("wholly.example", "m.example/w") }),
      );
      await waitFor("both objects are seen", 5000, () => source.clusterObjects().length === 2);

      const partly = entryOf(source, "partly-invalid")!;
      assert.ok(partly.result.object, "still usable");
      assert.equal(partly.result.object.rules.length, 1);
      const partlyErrors = partly.result.issues.filter((issue) => issue.severity === "error");
      assert.deepEqual(
        partlyErrors.map((issue) => [issue.location.source, issue.location.field]),
        [["Imageshift/partly-invalid", "spec.mappings.regexSwap[0].expression"]],
      );
      const wholly = entryOf(source, "wholly-invalid")!;
      assert.equal(wholly.result.object, undefined, "not usable");
      assert.ok(wholly.result.issues.some((issue) => issue.location.field === "spec.default"));

      const rules = source.current()!;
      assert.equal(rules.objects.length, 1);
      assert.equal(rules.issues.filter((issue) => issue.severity === "error").length, 2);
      assert.equal(rewrite(source, "partly.example/app:1"), "mirror.example/partly/app:1");
      assert.equal(rewrite(source, "wholly.example/app:1"), "wholly.example/app:1");

      await remove("imageshifts.imageshift.dev", "partly-invalid");
      await remove("imageshifts.imageshift.dev", "wholly-invalid");
      await waitFor("both deleted", 5000, () => source.clusterObjects().length === 0);
    });

    it("an edit that makes an object unusable keeps its last usable generation, and status says so", {
      timeout: 30_000,
    }, async () => {
      const { source } = await syncedSource();
      const rules = (tag: string) =>
        [1, 2, 3, 4, 5].map((i) => ({ registry: `lg${i}.example`, target: `mirror.example/${tag}` }));
      await apply(imageshift("airgap", { mappings: { swap: rules("one") } }));
      await waitFor("generation 1 in use", 5000, () => source.current()?.ruleSet.size === 5);
      // Accepted here (no validating webhook), as it was while the webhook was down.
      await apply(imageshift("airgap", { default: "not a registry!", mappings: { swap: rules("two") } }));
      await waitFor(
        "generation 2 seen",
        5000,
        () => entryOf(source, "airgap")?.object.metadata?.generation === 2,
      );
      assert.equal(source.current()?.ruleSet.size, 5, "generation 1's rules stay");
      for (const i of [1, 2, 3, 4, 5])
        assert.equal(rewrite(source, `lg${i}.example/app:1`), "mirror.example/one/app:1");

      await new StatusWriter(client, captureLogger().logger).sync(() => source.clusterObjects());
      const stored = await getImageshift("airgap");
      const ready = stored.status?.conditions?.find((condition) => condition.type === "Ready");
      assert.equal(stored.status?.observedGeneration, 2);
      assert.equal(stored.status?.rules, 5);
      assert.equal(ready?.status, "False");
      assert.equal(ready?.reason, "InvalidObjectLastGoodInUse");
      assert.match(
        ready?.message ?? "",
        /^generation 2 not in use, serving generation 1's 5 rule\(s\) instead: spec\.default: /,
      );

      await remove("imageshifts.imageshift.dev", "airgap");
      await waitFor("deleted, kept rules too", 5000, () => source.current()?.ruleSet.size === 0);
    });

    it("watches RegistryRewriteRules unless watchCompat is false", { timeout: 30_000 }, async () => {
      const both = await syncedSource();
      const own = await syncedSource({ watchCompat: false });
      await apply({
        apiVersion: "dev.flemzord.fr/v1alpha1",
        kind: "RegistryRewriteRule",
        metadata: { name: "compat-e2e" },
        spec: { rules: [{ match: "^compat\\.example/(.*)$", replace: "mirror.example/compat/$1" }] },
      });
      await apply(imageshift("own-e2e", swap("own.example", "mirror.example/own")));
      await waitFor("both kinds seen", 5000, () => both.source.clusterObjects().length === 2);
      await waitFor("own kind seen", 5000, () => own.source.clusterObjects().length === 1);
      assert.equal(rewrite(both.source, "compat.example/app:1"), "mirror.example/compat/app:1");
      assert.equal(entryOf(both.source, "compat-e2e", "RegistryRewriteRule")?.resource, COMPAT_RESOURCE);

      assert.equal(rewrite(own.source, "compat.example/app:1"), "compat.example/app:1");
      assert.equal(rewrite(own.source, "own.example/app:1"), "mirror.example/own/app:1");
      assert.deepEqual(
        own.source.clusterObjects().map((entry) => entry.resource.kind),
        ["Imageshift"],
      );
      await sleep(300);
      assert.equal(own.source.clusterObjects().length, 1, "still no RegistryRewriteRule");

      await remove("registryrewriterules.dev.flemzord.fr", "compat-e2e");
      await remove("imageshifts.imageshift.dev", "own-e2e");
      await waitFor("deleted", 5000, () => both.source.clusterObjects().length === 0);
    });

    it("keeps its rule set while the API server restarts and picks up changes afterwards", {
      timeout: 120_000,
    }, async () => {
      const { source, lines } = await syncedSource();
      await apply(imageshift("restart", swap("restart.example", "mirror.example/before")));
      const image = "restart.example/app:1";
      await waitFor(
        "the object is used",
        5000,
        () => rewrite(source, image) === "mirror.example/before/app:1",
      );
      const rules = source.current();

      let restarted = false;
      const restarting = cp!.restartApiServer().finally(() => {
        restarted = true;
      });
      while (!restarted) {
        assert.equal(source.current(), rules, "the same rule set while the API server is away");
        assert.equal(rewrite(source, image), "mirror.example/before/app:1");
        await sleep(100);
      }
      await restarting;
      assert.ok(
        lines.some((line) => line.msg === "watch failed; keeping the last known objects and retrying"),
        "the watches did break",
      );

      await apply(imageshift("restart", swap("restart.example", "mirror.example/after")));
      await waitFor(
        "a change after the restart",
        45_000,
        () => rewrite(source, image) === "mirror.example/after/app:1",
      );
      await remove("imageshifts.imageshift.dev", "restart");
      await waitFor("the delete", 10_000, () => rewrite(source, image) === image);
    });

    it("after a long outage, and after a short one later, a change arrives within 2 s of the API server being ready", {
      timeout: 180_000,
    }, async (t) => {
      // Default backoff. Without a bound on retries of an unreachable server, 20 s away put the
      // next attempt up to 16 s out; without a reset, a later 3 s blip waited as long.
      const { source, lines } = await syncedSource();
      const image = "outage.example/app:1";
      await apply(imageshift("outage", swap("outage.example", "mirror.example/before")));
      await waitFor(
        "the object is used",
        5000,
        () => rewrite(source, image) === "mirror.example/before/app:1",
      );
      for (const [outage, awayMs] of [
        ["long", 20_000],
        ["short", 0],
      ] as const) {
        await cp!.stopApiServer();
        await sleep(awayMs);
        await cp!.startApiServer();
        const ready = Date.now();
        // Through the API, not kubectl: kubectl's first call after a restart takes 1-2 s itself.
        await client.patch(
          "/apis/imageshift.dev/v1/imageshifts/outage",
          { spec: swap("outage.example", `mirror.example/after-${outage}`) },
          "merge",
        );
        await waitFor(
          `the change after the ${outage} outage, within 2 s of the API server being ready`,
          2000 - (Date.now() - ready),
          () => rewrite(source, image) === `mirror.example/after-${outage}/app:1`,
        );
        t.diagnostic(
          `${outage} outage: the change arrived ${Date.now() - ready} ms after the API server was ready`,
        );
      }
      assert.ok(
        lines.some((line) => line.msg === "watch resumed"),
        "the watches did break and resume",
      );
      await remove("imageshifts.imageshift.dev", "outage");
    });
  });

  describe("WatchedKind", () => {
    it("retries a failing list with doubling, bounded backoff and syncs once the resource exists", {
      timeout: 60_000,
    }, async () => {
      const { logger, lines } = captureLogger();
      let changes = 0;
      const watch = new WatchedKind<KubeObject>({
        client,
        path: "/apis/e2e.example/v1/widgets",
        logger,
        onChange: () => {
          changes++;
        },
        minBackoffMs: 50,
        maxBackoffMs: 200,
      });
      cleanups.push(() => watch.stop());
      await watch.start();
      const failures = () => lines.filter((line) => line.msg?.startsWith("watch failed"));
      await waitFor("five failed attempts", 10_000, () => failures().length >= 5);
      assert.equal(watch.synced, false);
      assert.equal(changes, 0);
      assert.deepEqual(
        failures()
          .slice(0, 5)
          .map((line) => line.retryInMs),
        [50, 100, 200, 200, 200],
      );
      assert.match(String((failures()[0]?.err as { message?: string } | undefined)?.message), /: HTTP 404/);

      await apply({
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: "widgets.e2e.example" },
        spec: {
          group: "e2e.example",
          scope: "Cluster",
          names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
            },
          ],
        },
      });
      await kubectl(["wait", "--for=condition=Established", "crd/widgets.e2e.example", "--timeout=30s"]);
      await waitFor("synced once the resource exists", 10_000, () => watch.synced);
      assert.ok(changes >= 1, "onChange after the list");
      assert.ok(lines.some((line) => line.msg === "watch synced"));
      const before = changes;
      await apply({ apiVersion: "e2e.example/v1", kind: "Widget", metadata: { name: "w1" } });
      await waitFor("the new object", 5000, () => watch.get("w1"));
      assert.ok(changes > before);
      assert.deepEqual(
        watch.list().map((object) => object.metadata?.name),
        ["w1"],
      );
      await watch.stop();
      const failuresAtStop = failures().length;
      await kubectl(["delete", "crd", "widgets.e2e.example"]);
      await sleep(500);
      assert.equal(failures().length, failuresAtStop, "a stopped watch does not retry");
    });

    it("retries when the API server cannot be reached at all", { timeout: 30_000 }, async () => {
      const { logger, lines } = captureLogger();
      const nowhere = new KubeClient({
        server: "https://127.0.0.1:1",
        credential: staticToken(undefined),
        origin: "test",
      });
      const watch = new WatchedKind<KubeObject>({
        client: nowhere,
        path: "/api/v1/namespaces",
        logger,
        onChange: () => assert.fail("never synced"),
        minBackoffMs: 20,
        maxBackoffMs: 40,
      });
      cleanups.push(() => watch.stop());
      await watch.start();
      await waitFor(
        "three attempts",
        5000,
        () => lines.filter((line) => line.msg?.startsWith("watch failed")).length >= 3,
      );
      assert.equal(watch.synced, false);
      const failed = lines.find((line) => line.msg?.startsWith("watch failed"));
      assert.match(String((failed?.err as { message?: string } | undefined)?.message), /ECONNREFUSED/);
      await watch.stop();
    });
  });

  describe("LeaderElector", () => {
    function elector(name: string, identity: string) {
      const { logger, lines } = captureLogger();
      const events: string[] = [];
      const instance = new LeaderElector({
        client,
        namespace: LEASE_NAMESPACE,
        name,
        identity,
        logger,
        ...FAST,
        onStartedLeading: () => events.push("started"),
        onStoppedLeading: () => events.push("stopped"),
      });
      cleanups.push(() => instance.stop());
      return { elector: instance, events, lines };
    }

    it("of two electors exactly one leads; when it stops, the other takes over at once", {
      timeout: 60_000,
    }, async () => {
      const a = elector("two-electors", "elector-a");
      const b = elector("two-electors", "elector-b");
      a.elector.start();
      b.elector.start();
      await waitFor("one leads", 5000, () => a.elector.leading || b.elector.leading);
      // Several retry periods: never both, never neither.
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        assert.notEqual(a.elector.leading, b.elector.leading, "exactly one leader");
        await sleep(25);
      }
      const [leader, follower] = a.elector.leading ? [a, b] : [b, a];
      const leaderId = leader === a ? "elector-a" : "elector-b";
      const followerId = leader === a ? "elector-b" : "elector-a";
      assert.deepEqual(leader.events, ["started"]);
      assert.deepEqual(follower.events, []);

      const lease = await getLease("two-electors");
      assert.equal(lease.spec.holderIdentity, leaderId);
      assert.equal(lease.spec.leaseDurationSeconds, 3);
      // MicroTime: the API server accepted and stored six fractional digits.
      assert.match(lease.spec.renewTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      assert.match(lease.spec.acquireTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      assert.ok(Math.abs(Date.parse(lease.spec.renewTime!) - Date.now()) < 2000, "renewed recently");
      // Renewals keep going: renewTime moves on.
      await waitFor(
        "a renewal",
        3000,
        async () => (await getLease("two-electors")).spec.renewTime !== lease.spec.renewTime,
      );

      const stoppedAt = Date.now();
      await leader.elector.stop();
      assert.equal(leader.elector.leading, false);
      assert.deepEqual(leader.events, ["started", "stopped"]);
      await waitFor("the follower takes over", 2000, () => follower.elector.leading);
      const tookOverMs = Date.now() - stoppedAt;
      assert.ok(
        tookOverMs < FAST.leaseDurationMs,
        `took over in ${tookOverMs} ms, before the Lease would expire`,
      );
      const taken = await getLease("two-electors");
      assert.equal(taken.spec.holderIdentity, followerId);
      assert.equal(taken.spec.leaseTransitions, 1);
      assert.deepEqual(follower.events, ["started"]);

      await follower.elector.stop();
      const released = await getLease("two-electors");
      assert.equal(released.spec.holderIdentity, undefined, "released on stop");
      assert.equal(Date.parse(released.spec.renewTime!), 0);
    });

    it("respects a Lease held by another identity until it expires", { timeout: 60_000 }, async () => {
      const micro = (date: Date) => date.toISOString().replace(/Z$/, "000Z");
      const createdAt = new Date();
      await apply({
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: "foreign-held", namespace: LEASE_NAMESPACE },
        spec: {
          holderIdentity: "someone-else",
          leaseDurationSeconds: 3600,
          acquireTime: micro(createdAt),
          renewTime: micro(createdAt),
        },
      });
      const held = elector("foreign-held", "elector-c");
      held.elector.start();
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        assert.equal(held.elector.leading, false, "a live foreign Lease is respected");
        await sleep(50);
      }
      assert.equal((await getLease("foreign-held")).spec.holderIdentity, "someone-else", "not overwritten");
      assert.deepEqual(held.events, []);
      await held.elector.stop();

      // Same again with a short Lease that the holder stops renewing: taken over once expired.
      const renewedAt = new Date();
      await apply({
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: "foreign-expiring", namespace: LEASE_NAMESPACE },
        spec: {
          holderIdentity: "someone-else",
          leaseDurationSeconds: 2,
          acquireTime: micro(renewedAt),
          renewTime: micro(renewedAt),
          leaseTransitions: 4,
        },
      });
      const expiring = elector("foreign-expiring", "elector-d");
      expiring.elector.start();
      while (Date.now() < renewedAt.getTime() + 1500) {
        assert.equal(expiring.elector.leading, false, "not before the Lease expires");
        await sleep(50);
      }
      await waitFor("taken over after expiry", 5000, () => expiring.elector.leading);
      assert.ok(Date.now() >= renewedAt.getTime() + 2000, "only after leaseDurationSeconds");
      const taken = await getLease("foreign-expiring");
      assert.equal(taken.spec.holderIdentity, "elector-d");
      assert.equal(taken.spec.leaseTransitions, 5);
      assert.equal(taken.spec.leaseDurationSeconds, 3);
      await expiring.elector.stop();
    });

    it("does not lead after stop() even if its first attempt was still in flight", {
      timeout: 30_000,
    }, async () => {
      const racy = elector("stop-in-flight", "elector-e");
      racy.elector.start();
      await racy.elector.stop();
      await sleep(1500);
      try {
        const lease = await getLease("stop-in-flight").catch(() => undefined);
        assert.deepEqual(
          {
            events: [...racy.events],
            leading: racy.elector.leading,
            holdsLease: lease?.spec.holderIdentity === "elector-e",
          },
          { events: [], leading: false, holdsLease: false },
          "a stopped elector neither leads nor holds the Lease",
        );
      } finally {
        // Whatever happened, leave no holder behind for later tests.
        await kubectl(["delete", "lease", "stop-in-flight", "-n", LEASE_NAMESPACE, "--ignore-not-found"]);
      }
    });

    it("does not take over a Lease that its holder keeps renewing, whatever the holder's clock says", {
      timeout: 30_000,
    }, async () => {
      // The holder's clock is 30 s behind: every renewal it writes says "30 s ago".
      const micro = (date: Date) => date.toISOString().replace(/Z$/, "000Z");
      const renew = () =>
        apply({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: "skewed-holder", namespace: LEASE_NAMESPACE },
          spec: {
            holderIdentity: "skewed-holder",
            leaseDurationSeconds: 15,
            renewTime: micro(new Date(Date.now() - 30_000)),
          },
        });
      await renew();
      const skewed = elector("skewed-holder", "elector-g");
      skewed.elector.start();
      let everLed = false;
      const until = Date.now() + 2500;
      while (Date.now() < until) {
        await renew(); // the holder renews every ~0.2 s, well within its 15 s
        everLed ||= skewed.elector.leading;
      }
      everLed ||= skewed.elector.leading;
      await skewed.elector.stop();
      await kubectl(["delete", "lease", "skewed-holder", "-n", LEASE_NAMESPACE, "--ignore-not-found"]);
      assert.equal(everLed, false, "took over a Lease renewed every ~0.2 s");
    });

    it("steps down when it cannot renew within renewDeadline, and leads again once it can", {
      timeout: 120_000,
    }, async () => {
      const alone = elector("deadline", "elector-f");
      // A patient one (long renewDeadline) is still leading when stopped with the API server away.
      const patientLines = captureLogger();
      const patient = new LeaderElector({
        client,
        namespace: LEASE_NAMESPACE,
        name: "deadline-patient",
        identity: "elector-patient",
        logger: patientLines.logger,
        leaseDurationMs: 60_000,
        renewDeadlineMs: 50_000,
        retryPeriodMs: 300,
        onStartedLeading: () => undefined,
        onStoppedLeading: () => undefined,
      });
      cleanups.push(() => patient.stop());
      alone.elector.start();
      patient.start();
      await waitFor("leads", 5000, () => alone.elector.leading && patient.leading);
      await cp!.stopApiServer();
      try {
        await waitFor("steps down", FAST.renewDeadlineMs + 3000, () => !alone.elector.leading);
        assert.deepEqual(alone.events, ["started", "stopped"]);
        assert.ok(alone.lines.some((line) => line.msg === "leader election: Lease not read or written"));
        assert.equal(patient.leading, true, "within its renewDeadline");
        await patient.stop();
        assert.equal(patient.leading, false);
        assert.ok(
          patientLines.lines.some((line) => line.msg === "could not release the leader Lease"),
          "the release failed and was logged",
        );
      } finally {
        await cp!.startApiServer();
      }
      await waitFor("leads again", 10_000, () => alone.elector.leading);
      assert.deepEqual(alone.events, ["started", "stopped", "started"]);
      assert.equal((await getLease("deadline")).spec.holderIdentity, "elector-f");
      await alone.elector.stop();
      assert.equal(
        (await getLease("deadline-patient")).spec.holderIdentity,
        "elector-patient",
        "not released",
      );
      await kubectl(["delete", "lease", "deadline-patient", "-n", LEASE_NAMESPACE]);
    });
  });

  describe("status reporting", () => {
    const valid = imageshift("status-valid", {
      mappings: {
        swap: [
          { registry: "sv.example", target: "mirror.example/sv" },
          { registry: "sv2.example", target: "mirror.example/sv2" },
        ],
      },
    });
    const partly = imageshift("status-partly", {
      mappings: {
        swap: [{ registry: "sp.example", target: "mirror.example/sp" }],
        regexSwap: [{ expression: "^(sp2\\.example/(.*)$", target: "mirror.example/$1" }],
      },
    });
    const broken = imageshift("status-broken", {
      default: "not a registry",
      ...swap("sb.example", "m.example"),
    });

    function ready(object: StoredObject) {
      return object.status?.conditions?.find((condition) => condition.type === "Ready");
    }

    it("StatusWriter writes Ready True/False with messages and observedGeneration, and only when needed", {
      timeout: 60_000,
    }, async () => {
      const { source } = await syncedSource();
      for (const object of [valid, partly, broken]) await apply(object);
      await waitFor("objects seen", 5000, () => source.clusterObjects().length === 3);
      const { logger, lines } = captureLogger();
      const writer = new StatusWriter(client, logger);
      await writer.sync(() => source.clusterObjects());

      const stored = {
        valid: await getImageshift("status-valid"),
        partly: await getImageshift("status-partly"),
        broken: await getImageshift("status-broken"),
      };
      assert.equal(stored.valid.status?.observedGeneration, stored.valid.metadata.generation);
      assert.equal(stored.valid.status?.rules, 2);
      assert.deepEqual(
        { ...ready(stored.valid), lastTransitionTime: undefined },
        {
          type: "Ready",
          status: "True",
          reason: "RulesValid",
          message: "2 rule(s) in use",
          observedGeneration: 1,
          lastTransitionTime: undefined,
        },
      );
      assert.match(ready(stored.valid)?.lastTransitionTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(ready(stored.partly)?.status, "False");
      assert.equal(ready(stored.partly)?.reason, "InvalidRules");
      assert.match(
        ready(stored.partly)?.message ?? "",
        /^1 valid rule\(s\) in use; invalid: spec\.mappings\.regexSwap\[0\]\.expression: /,
      );
      assert.equal(stored.partly.status?.rules, 1);
      assert.equal(ready(stored.broken)?.status, "False");
      assert.equal(ready(stored.broken)?.reason, "InvalidObject");
      assert.match(ready(stored.broken)?.message ?? "", /^not in use: spec\.default: /);
      assert.equal(stored.broken.status?.rules, 0);
      assert.equal(lines.filter((line) => line.msg === "status updated").length, 3);

      // Once the source has seen the written statuses, another pass writes nothing.
      await waitFor("the source sees the statuses", 5000, () =>
        source.clusterObjects().every((entry) => entry.object.status !== undefined),
      );
      await writer.sync(() => source.clusterObjects());
      // Overlapping calls coalesce.
      const first = writer.sync(() => source.clusterObjects());
      const second = writer.sync(() => source.clusterObjects());
      assert.equal(first, second, "an overlapping call joins the running pass");
      await second;
      for (const [name, before] of Object.entries(stored)) {
        const now = await getImageshift(`status-${name}`);
        assert.equal(
          now.metadata.resourceVersion,
          before.metadata.resourceVersion,
          `${name} not written again`,
        );
      }
      assert.equal(lines.filter((line) => line.msg === "status updated").length, 3);

      // An object deleted meanwhile: a warning with the API server's message, no throw.
      const ghost = {
        ...source.clusterObjects()[0]!,
        object: { ...valid, metadata: { name: "ghost", generation: 1 } },
      };
      await writer.sync(() => [ghost]);
      const warning = lines.find((line) => line.msg === "status not updated");
      assert.ok(warning, "warned");
      assert.equal(warning.object, "Imageshift/ghost");
      assert.match(String((warning.err as { message?: string }).message), /: HTTP 404: /);

      for (const object of ["status-valid", "status-partly", "status-broken"])
        await remove("imageshifts.imageshift.dev", object);
      await waitFor("deleted", 5000, () => source.clusterObjects().length === 0);
    });

    it("startStatusReporting: the leader keeps statuses current, follows edits, and does not rewrite", {
      timeout: 90_000,
    }, async (t) => {
      const { source } = await syncedSource();
      const { logger, lines } = captureLogger();
      const reporting = startStatusReporting({
        client,
        source,
        logger,
        namespace: LEASE_NAMESPACE,
        leaseName: "status-e2e",
        resyncMs: 300,
        ...FAST,
      });
      cleanups.push(() => reporting.stop());
      await waitFor("leads", 5000, () => reporting.elector.leading);
      assert.match((await getLease("status-e2e")).spec.holderIdentity ?? "", /_\d+_[0-9a-f]{8}$/);

      await apply(valid);
      await apply(compatObject());
      const first = await waitFor("Ready True written", 10_000, async () => {
        const object = await getImageshift("status-valid");
        return ready(object)?.status === "True" ? object : undefined;
      });
      assert.equal(first.status?.observedGeneration, 1);
      assert.equal(first.status?.rules, 2);
      const compat = await waitFor("the RegistryRewriteRule's status", 10_000, async () => {
        const object: StoredObject = JSON.parse(
          await kubectl(["get", "registryrewriterules.dev.flemzord.fr", "status-compat", "-o", "json"]),
        );
        return ready(object)?.status === "True" ? object : undefined;
      });
      assert.equal(compat.status?.rules, 1);

      // An edit that breaks a rule: the status flips, with the new generation and a new transition time.
      await apply({
        ...valid,
        spec: {
          mappings: {
            swap: [{ registry: "sv.example", target: "mirror.example/sv" }],
            regexSwap: [{ expression: "^(x", target: "y" }],
          },
        },
      });
      const flipped = await waitFor("Ready False written", 10_000, async () => {
        const object = await getImageshift("status-valid");
        return ready(object)?.status === "False" ? object : undefined;
      });
      assert.equal(flipped.metadata.generation, 2);
      assert.equal(flipped.status?.observedGeneration, 2);
      assert.equal(ready(flipped)?.observedGeneration, 2);
      assert.equal(ready(flipped)?.reason, "InvalidRules");
      assert.match(ready(flipped)?.message ?? "", /spec\.mappings\.regexSwap\[0\]\.expression: /);
      assert.ok(
        Date.parse(ready(flipped)!.lastTransitionTime) >= Date.parse(ready(first)!.lastTransitionTime),
        "a new transition time",
      );

      // Several resync periods later nothing has been written again.
      await sleep(1500);
      const settled = await getImageshift("status-valid");
      await sleep(1500);
      const later = await getImageshift("status-valid");
      assert.equal(
        later.metadata.resourceVersion,
        settled.metadata.resourceVersion,
        "no write when nothing changed",
      );
      // One write per change, give or take one: a resync that runs after a status patch but before
      // the watch delivers it sees the old status and writes again (merge patch, no precondition).
      const writes = lines.filter(
        (line) => line.msg === "status updated" && line.object === "Imageshift/status-valid",
      );
      t.diagnostic(`status-valid written ${writes.length} time(s) for 2 changes`);
      assert.ok(writes.length >= 2 && writes.length <= 4, JSON.stringify(writes));

      await reporting.stop();
      assert.equal(reporting.elector.leading, false);
      // A stopped reporter writes nothing: an edit keeps its old status.
      await apply(valid);
      await sleep(1500);
      const after = await getImageshift("status-valid");
      assert.equal(after.metadata.generation, 3);
      assert.equal(after.status?.observedGeneration, 2, "not written after stop()");

      await remove("imageshifts.imageshift.dev", "status-valid");
      await remove("registryrewriterules.dev.flemzord.fr", "status-compat");
    });

    it("startStatusReporting: default Lease and timings; the leader reconciles certificates and retries failures", {
      timeout: 60_000,
    }, async () => {
      const { source } = await syncedSource();
      const { logger, lines } = captureLogger();
      let reconciles = 0;
      const certificates = {
        periodMs: 200,
        async reconcile() {
          reconciles++;
          if (reconciles === 1)
            throw Object.assign(new Error("HTTP-Code: 409 ..."), {
              code: 409,
              body: JSON.stringify({ message: "secret changed meanwhile" }),
            });
        },
      } as unknown as CertificateManager;
      const reporting = startStatusReporting({
        client,
        source,
        logger,
        namespace: LEASE_NAMESPACE,
        certificates,
      });
      cleanups.push(() => reporting.stop());
      await waitFor("leads", 5000, () => reporting.elector.leading);
      const lease = await getLease("imageshift-status-writer");
      assert.equal(lease.spec.leaseDurationSeconds, 15, "the default lease duration");
      await waitFor("reconciled at once and then every periodMs", 5000, () => reconciles >= 4);
      const warning = lines.find((line) => line.msg === "certificates not reconciled; retrying");
      // Logged as the error itself (pino's err serializer): its code, message and stack.
      assert.equal((warning?.err as { code?: number } | undefined)?.code, 409);

      await reporting.stop();
      const atStop = reconciles;
      await sleep(600);
      assert.equal(reconciles, atStop, "no reconcile after stop()");
      assert.equal((await getLease("imageshift-status-writer")).spec.holderIdentity, undefined, "released");
    });
  });
});

function compatObject(): Record<string, unknown> {
  return {
    apiVersion: "dev.flemzord.fr/v1alpha1",
    kind: "RegistryRewriteRule",
    metadata: { name: "status-compat" },
    spec: { rules: [{ match: "^sc\\.example/(.*)$", replace: "mirror.example/sc/$1" }] },
  };
}
