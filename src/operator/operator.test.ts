/**
 * The leader's status duty (operator.ts, `statusReporting`) over an in-memory stand-in for the
 * API server (Lease and status patches) and a scripted rule source: RegistriesReachable
 * follows the presence checks' last errors, compared periodically, and only objects whose
 * status changed are written. Election and status against a real API server:
 * test/e2e/operator.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { compileObject } from "../engine/rules/compile.ts";
import { KubeApiError } from "../errors.ts";
import type { KubeClient } from "../k8s/client.ts";
import type { KubeObject, Lease } from "../k8s/objects.ts";
import { captureLogger } from "../telemetry/testing.ts";
import { type ClusterObject, type ClusterRuleSource, IMAGESHIFT_RESOURCE } from "./cluster-source.ts";
import { type StatusReporting, startStatusReporting } from "./operator.ts";
import type { RegistryErrors, RuleObjectStatus } from "./status.ts";

const AT = Date.parse("2026-11-30T21:00:00Z");

/** An Imageshift with one swap to `target`, verifying with mode `verify` when given. */
function ruleObject(name: string, target: string, verify?: string): ClusterObject {
  const object = {
    apiVersion: "imageshift.dev/v1",
    kind: "Imageshift",
    metadata: { name, generation: 1 },
    spec: {
      ...(verify ? { verify: { mode: verify } } : {}),
      mappings: { swap: [{ registry: "docker.io", target: `${target}/hub` }] },
    },
  };
  const result = compileObject(object, { source: `Imageshift/${name}` });
  return { resource: IMAGESHIFT_RESOURCE, object, result };
}

/** The Lease, and status patches applied to the source's objects as the watch would bring them. */
class FakeCluster {
  lease: Lease | undefined;
  readonly patches: { path: string; status: RuleObjectStatus }[] = [];
  objects: ClusterObject[];
  /** Status passes: each reads the source's objects once. */
  passes = 0;

  constructor(objects: ClusterObject[]) {
    this.objects = objects;
  }

  async get(path: string): Promise<Lease> {
    if (!this.lease) throw new KubeApiError("GET", path, 404, "{}");
    return this.lease;
  }

  async create(_path: string, lease: Lease): Promise<Lease> {
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: "1" } };
    return this.lease;
  }

  async replace(_path: string, lease: Lease): Promise<Lease> {
    this.lease = lease;
    return lease;
  }

  async patch(path: string, body: { status: RuleObjectStatus }): Promise<KubeObject> {
    this.patches.push({ path, status: body.status });
    this.objects = this.objects.map((entry) =>
      path.includes(`/imageshifts/${entry.object.metadata?.name}/`)
        ? { ...entry, object: { ...entry.object, status: body.status } }
        : entry,
    );
    return {};
  }

  /** What `statusReporting` reads of the rule source. */
  source(): ClusterRuleSource {
    return {
      synced: true,
      clusterObjects: () => {
        this.passes++;
        return this.objects;
      },
      onChange: () => {},
      onRefused: () => {},
    } as unknown as ClusterRuleSource;
  }
}

async function until(what: string, probe: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const reachableOf = (status: RuleObjectStatus) =>
  status.conditions.find((condition) => condition.type === "RegistriesReachable");

describe("statusReporting: RegistriesReachable follows the presence checks", () => {
  const running: StatusReporting[] = [];
  afterEach(async () => {
    for (const reporting of running.splice(0)) await reporting.stop();
  });

  function start(cluster: FakeCluster, extra: { errors?: () => RegistryErrors; healthCheckMs?: number }) {
    const { logger, lines } = captureLogger();
    const reporting = startStatusReporting({
      client: cluster as unknown as KubeClient,
      source: cluster.source(),
      logger,
      namespace: "imageshift-system",
      retryPeriodMs: 20,
      ...(extra.errors ? { registryHealth: { lastErrors: extra.errors } } : {}),
      ...(extra.healthCheckMs ? { healthCheckMs: extra.healthCheckMs } : {}),
    });
    running.push(reporting);
    return { reporting, lines };
  }

  test("a new last error re-syncs within the check period; only the object targeting that registry is written", async () => {
    const cluster = new FakeCluster([
      ruleObject("checked", "127.0.0.1:5000", "Presence"),
      ruleObject("unchecked", "127.0.0.1:5000"),
      ruleObject("elsewhere", "mirror.corp", "Digest"),
    ]);
    let errors: RegistryErrors = new Map();
    let reads = 0;
    const lastErrors = () => {
      reads++;
      return errors;
    };
    const { reporting, lines } = start(cluster, { errors: lastErrors, healthCheckMs: 20 });
    await until("the first status of every object", () => cluster.patches.length === 3);
    const first = new Map(cluster.patches.map(({ path, status }) => [path.split("/")[5], status]));
    assert.equal(reachableOf(first.get("checked")!)?.reason, "Reachable");
    assert.equal(reachableOf(first.get("unchecked")!), undefined);
    assert.equal(reachableOf(first.get("elsewhere")!)?.reason, "Reachable");
    assert.ok(lines.some((line) => line.msg === "status updated" && line.registriesReachable === "True"));

    errors = new Map([["127.0.0.1:5000", { message: "HTTP 503", at: AT }]]);
    await until("the status of the object that checks 127.0.0.1:5000", () => cluster.patches.length === 4);
    const [written] = cluster.patches.slice(3);
    assert.match(written?.path ?? "", /\/imageshifts\/checked\/status$/);
    assert.deepEqual(reachableOf(written!.status), {
      type: "RegistriesReachable",
      status: "False",
      reason: "CheckFailed",
      message: "127.0.0.1:5000: HTTP 503 (at 2026-11-30T21:00:00Z)",
      lastTransitionTime: reachableOf(written!.status)?.lastTransitionTime,
      observedGeneration: 1,
    });

    // Unchanged errors (a new Map, the same content): compared, but no status pass at all.
    await new Promise((resolve) => setTimeout(resolve, 30));
    const passes = cluster.passes;
    const readsBefore = reads;
    errors = new Map([["127.0.0.1:5000", { message: "HTTP 503", at: AT }]]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(reads > readsBefore, "compared periodically");
    assert.equal(cluster.passes, passes);
    assert.equal(cluster.patches.length, 4);

    // Stopped: the periodic comparison ends with leadership.
    await reporting.stop();
    const readsAtStop = reads;
    errors = new Map();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(reads, readsAtStop, "no comparison after stop");
    assert.equal(cluster.patches.length, 4);
  });

  test("without registry health (no checks reported), no check has failed", async () => {
    const cluster = new FakeCluster([ruleObject("checked", "127.0.0.1:5000", "Presence")]);
    start(cluster, {});
    await until("the first status", () => cluster.patches.length === 1);
    assert.equal(reachableOf(cluster.patches[0]!.status)?.message, "no failed check on 127.0.0.1:5000");
  });

  test("the default check period is 10 s: a change is not written at once", async () => {
    const cluster = new FakeCluster([ruleObject("checked", "127.0.0.1:5000", "Presence")]);
    let errors: RegistryErrors = new Map();
    start(cluster, { errors: () => errors });
    await until("the first status", () => cluster.patches.length === 1);
    errors = new Map([["127.0.0.1:5000", { message: "HTTP 503", at: AT }]]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(cluster.patches.length, 1);
  });
});
