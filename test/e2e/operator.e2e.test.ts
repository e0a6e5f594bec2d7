/**
 * The operator end to end: `imageshift serve` in cluster mode against a real etcd +
 * kube-apiserver (test/e2e/harness/controlplane.ts), registered as the mutating and validating
 * webhook with the Helm chart's own webhook configurations (clientConfig pointed at this host), driven with kubectl. Every
 * assertion about a pod is about the pod as the API server stored it (`kubectl get pod -o json`).
 *
 * One control plane for the whole file; the scenarios run in order (the webhook-down, API
 * server restart and two-replica scenarios come last, as they stop and start processes).
 * A cold first run builds the control plane binaries (see test/e2e/README.md).
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import {
  chartWebhookConfigurations,
  type Kubectl,
  kubectlFor,
  makeWebhookCertificates,
  type OperatorProcess,
  type SidecarInjector,
  startOperator,
  startSidecarInjector,
  type WebhookCertificates,
  waitUntil,
} from "./harness/operator.ts";

const repo = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const CRDS = repo("charts/imageshift/crds/crds.yaml");
const SEEDS = repo("test/fixtures/seeds");

/** ImageShift's own namespace: the Lease lives here, and the mutating webhook never touches it. */
const OWN_NAMESPACE = "imageshift-system";
const LEASE_NAME = "imageshift-status-writer";
const ENABLED = { "imageshift.dev": "enabled" };
const NAMESPACES: Record<string, Record<string, string>> = {
  [OWN_NAMESPACE]: ENABLED, // labelled on purpose: excluded by name all the same
  "team-a": ENABLED,
  plain: {},
  west: { ...ENABLED, region: "us-west-2" },
  cached: { ...ENABLED, cache: "true" },
  dev: { ...ENABLED, env: "dev" },
  canary: ENABLED,
  staging: ENABLED,
  production: ENABLED,
  reinvoke: ENABLED,
};

const IMAGESHIFT = "imageshifts.imageshift.dev";
const COMPAT = "registryrewriterules.dev.flemzord.fr";
const ORIGINAL_IMAGES = "imageshift.dev/original-images";
const DIGEST0 = `sha256:${"0".repeat(64)}`;
const DIGEST1 = `sha256:${"1".repeat(64)}`;
const DIGESTE = `sha256:${"e".repeat(64)}`;

interface Container {
  name: string;
  image: string;
}
interface Pod {
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: { containers: Container[]; initContainers?: Container[]; ephemeralContainers?: Container[] };
}
interface RuleObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; generation?: number };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    rules?: number;
    warnings?: string[];
    conditions?: {
      type: string;
      status: string;
      reason?: string;
      message?: string;
      observedGeneration?: number;
    }[];
  };
}
interface Lease {
  spec?: { holderIdentity?: string; leaseTransitions?: number };
}

function imageshift(name: string, spec: Record<string, unknown>): RuleObject {
  return { apiVersion: "imageshift.dev/v1", kind: "Imageshift", metadata: { name }, spec };
}
function registryRewriteRule(name: string, rules: Record<string, unknown>[]): RuleObject {
  return {
    apiVersion: "dev.flemzord.fr/v1alpha1",
    kind: "RegistryRewriteRule",
    metadata: { name },
    spec: { rules },
  };
}
const dockerHubMirror = (name: string, target: string) =>
  imageshift(name, { mappings: { swap: [{ registry: "docker.io", target }] } });

/** name -> image of the regular containers. */
function images(pod: Pod): Record<string, string> {
  return Object.fromEntries(pod.spec.containers.map((c) => [c.name, c.image]));
}
function ephemeralImages(pod: Pod): Record<string, string> {
  return Object.fromEntries((pod.spec.ephemeralContainers ?? []).map((c) => [c.name, c.image]));
}
function allImages(pod: Pod): string[] {
  return [
    ...pod.spec.containers,
    ...(pod.spec.initContainers ?? []),
    ...(pod.spec.ephemeralContainers ?? []),
  ].map((c) => c.image);
}
function originalImages(pod: Pod): Record<string, { original: string; image: string; rule: string }> {
  const text = pod.metadata.annotations?.[ORIGINAL_IMAGES];
  return text === undefined ? {} : JSON.parse(text);
}
const ms = (start: number) => Math.round(performance.now() - start);

describe("imageshift operator in cluster mode", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  let workDir = "";
  let certs: WebhookCertificates;
  let operator: OperatorProcess;
  const operators: OperatorProcess[] = [];
  let injector: SidecarInjector | undefined;
  let podSeq = 0;

  // -------------------------------------------------------------------------------------------
  // Helpers bound to this control plane

  async function launch(name: string, ports: { port?: number; metricsPort?: number } = {}) {
    assert.ok(cp);
    const proc = await startOperator({
      name,
      kubeconfigPath: cp.kubeconfigPath,
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      leaseNamespace: OWN_NAMESPACE,
      logDir: workDir,
      ...ports,
    });
    operators.push(proc);
    return proc;
  }

  /** The chart's webhook configurations, pointed at an operator on this host. */
  async function webhookConfigurations(port: number) {
    const [mutating, validating] = await chartWebhookConfigurations({
      port,
      caBundle: certs.caBundle,
      namespace: OWN_NAMESPACE,
    });
    assert.ok(mutating && validating);
    return { mutating, validating };
  }

  function manifests(objects: object[]): string {
    // One JSON document: kubectl reads a stream that starts with "{" as JSON, not as YAML.
    return JSON.stringify(
      objects.length === 1 ? objects[0] : { apiVersion: "v1", kind: "List", items: objects },
    );
  }

  /** kubectl apply; returns stderr (admission warnings land there). */
  async function apply(...objects: object[]): Promise<string> {
    const result = await k.run(["apply", "-f", "-"], { stdin: manifests(objects) });
    assert.equal(result.code, 0, `kubectl apply failed: ${result.stderr}`);
    return result.stderr;
  }

  function podManifest(namespace: string, name: string, containers: Record<string, string>) {
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, labels: { app: name } },
      spec: { containers: Object.entries(containers).map(([n, image]) => ({ name: n, image })) },
    };
  }

  /** Creates a pod and returns the API server's answer (the object as stored). */
  async function createPodQuick(namespace: string, containers: Record<string, string>, prefix = "pod") {
    const name = `${prefix}-${++podSeq}`;
    return k.json<Pod>(["create", "-f", "-"], JSON.stringify(podManifest(namespace, name, containers)));
  }

  /** Creates a pod, then reads it back with `kubectl get pod -o json`. */
  async function createPod(namespace: string, containers: Record<string, string>, prefix = "pod") {
    const created = await createPodQuick(namespace, containers, prefix);
    return getPod(namespace, created.metadata.name);
  }

  function getPod(namespace: string, name: string): Promise<Pod> {
    return k.json<Pod>(["get", "pod", name, "--namespace", namespace]);
  }

  /** A server-side dry run: what the API server would store, webhooks included, without storing it. */
  function dryRunPod(namespace: string, containers: Record<string, string>) {
    return k.json<Pod>(
      ["create", "--dry-run=server", "-f", "-"],
      JSON.stringify(podManifest(namespace, `dry-${++podSeq}`, containers)),
    );
  }

  function getRuleObject(resource: string, name: string): Promise<RuleObject> {
    return k.json<RuleObject>(["get", resource, name]);
  }

  function resourceOf(object: RuleObject): string {
    return object.kind === "Imageshift" ? IMAGESHIFT : COMPAT;
  }

  /**
   * Waits until the operator uses exactly these objects: each one's status speaks of its
   * current generation (the status is written after the rule set was rebuilt from it), and
   * the rule set holds `rules` rules.
   */
  async function waitInUse(objects: RuleObject[], rules: number, proc = operator, timeoutMs = 20_000) {
    for (const object of objects) {
      await waitUntil(
        `${object.kind}/${object.metadata.name} to have a status for its generation`,
        async () => {
          const stored = await getRuleObject(resourceOf(object), object.metadata.name);
          return stored.status?.observedGeneration === stored.metadata.generation && stored;
        },
        { timeoutMs },
      );
    }
    await waitUntil(
      `${proc.name} to hold ${rules} rule(s)`,
      async () => (await proc.metric("imageshift_rules_loaded")) === rules,
      { timeoutMs },
    );
  }

  /** Deletes every rule object and waits until the operator holds no rule. */
  async function resetRules(proc = operator) {
    await k.ok(["delete", `${IMAGESHIFT},${COMPAT}`, "--all", "--wait=true"]);
    await waitUntil(
      `${proc.name} to hold no rule`,
      async () => (await proc.metric("imageshift_rules_loaded")) === 0,
      { timeoutMs: 20_000 },
    );
  }

  /** Waits (20 s) until the object's status speaks of its current generation. */
  function waitStatusFollows(name: string, what: string): Promise<RuleObject> {
    return waitUntil(
      `Imageshift/${name}'s status to follow ${what}`,
      async () => {
        const object = await getRuleObject(IMAGESHIFT, name);
        return object.status?.observedGeneration === object.metadata.generation && object;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
  }

  async function leaseHolder(): Promise<string | undefined> {
    const result = await k.run(["get", "lease", LEASE_NAME, "--namespace", OWN_NAMESPACE, "-o", "json"]);
    if (result.code !== 0) return undefined;
    return (JSON.parse(result.stdout) as Lease).spec?.holderIdentity;
  }

  /** The operator whose pid the Lease holder's identity (`host_pid_random`) names. */
  function holderProcess(identity: string | undefined, candidates: OperatorProcess[]) {
    return candidates.find((proc) => identity?.split("_").at(-2) === String(proc.pid));
  }

  async function waitValidatingActive(timeoutMs = 20_000) {
    const invalid = imageshift("probe-invalid", {
      mappings: { regexSwap: [{ expression: "^(?=x)(.*)$", target: "x.corp/$1" }] },
    });
    await waitUntil(
      "the validating webhook to deny an invalid object",
      async () => {
        const result = await k.run(["apply", "--dry-run=server", "-f", "-"], { stdin: manifests([invalid]) });
        return result.code !== 0 && /denied the request/.test(result.stderr);
      },
      { timeoutMs },
    );
  }

  // -------------------------------------------------------------------------------------------

  before(async () => {
    // Allows for a cold build of the binaries; a cached start takes seconds.
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
    k = kubectlFor(cp.kubeconfigPath);
    workDir = await mkdtemp(path.join(tmpdir(), "imageshift-operator-e2e-"));
    certs = await makeWebhookCertificates(workDir);

    await k.ok(["apply", "-f", CRDS]);
    await k.ok([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      `crd/${IMAGESHIFT}`,
      `crd/${COMPAT}`,
    ]);
    await apply(
      ...Object.entries(NAMESPACES).map(([name, labels]) => ({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name, labels },
      })),
    );
    // Labelled too, so that only the webhook configuration's exclusion keeps it untouched.
    await k.ok(["label", "namespace", "kube-system", "imageshift.dev=enabled", "--overwrite"]);

    operator = await launch("operator-a");
    const { mutating, validating } = await webhookConfigurations(operator.webhookPort);
    await apply(mutating, validating);

    // Bounded waits until the API server calls both webhooks.
    await waitValidatingActive();
    const probe = imageshift("probe", {
      mappings: { swap: [{ registry: "probe.example", target: "probe-mirror.example" }] },
    });
    await apply(probe);
    await waitInUse([probe], 1);
    await waitUntil(
      "the mutating webhook to rewrite a dry-run pod",
      async () =>
        images(await dryRunPod("team-a", { app: "probe.example/app:1" })).app ===
        "probe-mirror.example/app:1",
      { timeoutMs: 20_000 },
    );
    await resetRules();
  });

  after(async () => {
    await injector?.stop();
    for (const proc of operators) await proc.stop("SIGTERM", 10_000);
    await cp?.stop();
    if (workDir && !process.env.IMAGESHIFT_E2E_KEEP) rmSync(workDir, { recursive: true, force: true });
    else if (workDir) console.log(`operator logs kept in ${workDir}`);
  });

  // -------------------------------------------------------------------------------------------

  it("1. rewrites pods as both seed documents' examples promise", { timeout: 180_000 }, async (t) => {
    const started = performance.now();
    // ImageShift's introduction: all four objects at once, told apart by namespace labels.
    await resetRules();
    const intro = parseAllDocuments(
      readFileSync(path.join(SEEDS, "imageshift-introduction.yaml"), "utf8"),
    ).map((doc) => doc.toJSON() as RuleObject);
    await k.ok(["apply", "-f", path.join(SEEDS, "imageshift-introduction.yaml")]);
    await waitInUse(intro, 6);

    const teamA = await createPod("team-a", {
      hub: "nginx:1.25",
      bitnami: "docker.io/bitnami/redis",
      gcr: `gcr.io/distroless/base@${DIGEST0}`,
      ghcr: `ghcr.io/org/tool:v1@${DIGEST1}`,
      quay: "quay.io/org/app:1",
    });
    assert.deepEqual(images(teamA), {
      hub: "internal-registry.corp/dockerhub/library/nginx:1.25",
      bitnami: "internal-registry.corp/dockerhub/bitnami/redis",
      gcr: `internal-registry.corp/gcr/distroless/base@${DIGEST0}`,
      ghcr: `internal-registry.corp/ghcr/org/tool:v1@${DIGEST1}`,
      quay: "quay.io/org/app:1",
    });
    const recorded = originalImages(teamA);
    assert.deepEqual(recorded["containers/hub"], {
      original: "nginx:1.25",
      image: "internal-registry.corp/dockerhub/library/nginx:1.25",
      rule: "Imageshift/air-gapped spec.mappings.swap[0]",
    });
    assert.deepEqual(Object.keys(recorded).sort(), [
      "containers/bitnami",
      "containers/gcr",
      "containers/ghcr",
      "containers/hub",
    ]);
    for (const [namespace, expected] of [
      ["west", "us-west-2.mirror.example.com/dockerhub/library/nginx:1.25"],
      ["cached", "cache.example.com/docker/library/nginx:1.25"],
      ["dev", "localhost:5000/library/nginx:1.25"],
    ] as const) {
      const pod = await createPod(namespace, { app: "nginx:1.25" });
      assert.equal(images(pod).app, expected, `namespace ${namespace}`);
    }

    // The Mutating Registry Webhook's write-up: each object applied alone (they overlap).
    const cases: Record<string, { namespace: string; images: Record<string, string> }[]> = {
      "docker-hub-to-ecr": [
        {
          namespace: "team-a",
          images: {
            // MRW's outputs: rules see its normalized name (ADR 7).
            "docker.io/nginx:latest": "internal-registry.company.com/dockerhub/library/nginx:latest",
            "bitnami/redis:7.2": "internal-registry.company.com/dockerhub/bitnami/redis:7.2",
            nginx: "internal-registry.company.com/dockerhub/library/nginx",
            "registry.k8s.io/pause:3.9": "internal-registry.company.com/dockerhub/registry.k8s.io/pause:3.9",
            "quay.io/org/app:1": "quay.io/org/app:1",
          },
        },
      ],
      "multi-registry-routing": [
        {
          namespace: "team-a",
          images: {
            "gcr.io/distroless/static:nonroot": "cache.internal.com/gcr.io/distroless/static:nonroot",
            "quay.io/prometheus/node-exporter:v1.8.1":
              "cache.internal.com/quay.io/prometheus/node-exporter:v1.8.1",
            "ghcr.io/fluxcd/flux-cli:v2.3.0": "cache.internal.com/ghcr.io/fluxcd/flux-cli:v2.3.0",
            "docker.io/library/nginx": "docker.io/library/nginx",
          },
        },
      ],
      "enterprise-cache": [
        {
          namespace: "team-a",
          images: {
            "nginx:1.25": "internal-registry.company.com/cache/docker.io/library/nginx:1.25",
            [`ghcr.io/org/app@${DIGESTE}`]: `internal-registry.company.com/cache/ghcr.io/org/app@${DIGESTE}`,
            "internal-registry.company.com/cache/nginx:1.25":
              "internal-registry.company.com/cache/nginx:1.25",
          },
        },
      ],
      "gradual-migration": [
        {
          namespace: "canary",
          images: { "old-registry.company.com/team/app:2.0": "new-registry.company.com/team/app:2.0" },
        },
        {
          namespace: "staging",
          images: { "old-registry.company.com/team/app:2.0": "new-registry.company.com/team/app:2.0" },
        },
        {
          namespace: "production",
          images: { "old-registry.company.com/team/app:2.0": "old-registry.company.com/team/app:2.0" },
        },
        {
          namespace: "team-a",
          images: { "old-registry.company.com/team/app:2.0": "old-registry.company.com/team/app:2.0" },
        },
      ],
      "isolated-dev": [
        {
          namespace: "team-a",
          images: {
            nginx: "dev-registry.local/docker.io/library/nginx",
            "gcr.io/a/b:1": "dev-registry.local/gcr.io/a/b:1",
          },
        },
      ],
    };
    const compat = parseAllDocuments(
      readFileSync(path.join(SEEDS, "mutating-registry-webhook.yaml"), "utf8"),
    ).map((doc) => doc.toJSON() as RuleObject);
    assert.deepEqual(compat.map((object) => object.metadata.name).sort(), Object.keys(cases).sort());
    for (const object of compat) {
      const name = object.metadata.name;
      await resetRules();
      const warnings = await apply(object);
      const rules = object.spec.rules as { match: string }[];
      if (rules.some((rule) => rule.match.includes("\\\\"))) {
        assert.match(warnings, /spec\.rules\[0\]\.match: read the doubled backslashes/, `${name}: warning`);
      }
      if (name === "docker-hub-to-ecr") {
        // The user learns at apply time, and from the status, what the second rule catches.
        assert.match(
          warnings,
          /spec\.rules\[1\]\.match: pattern "\^\(\[\^\/\]\+\/\[\^\/\]\+\)\$" also catches/,
        );
        const stored = await waitUntil(
          "docker-hub-to-ecr's status to list the probe warning",
          async () => {
            const got = await getRuleObject(COMPAT, name);
            return (got.status?.warnings ?? []).some((w) => w.includes("registry.k8s.io/pause:3.9")) && got;
          },
          { timeoutMs: 20_000 },
        );
        assert.equal(stored.status?.warnings?.length, 1);
        assert.match(stored.status?.conditions?.[0]?.message ?? "", /1 warning\(s\), see status\.warnings/);
      }
      await waitInUse([object], rules.length);
      for (const { namespace, images: expected } of cases[name] ?? []) {
        const inputs = Object.keys(expected);
        const pod = await createPod(
          namespace,
          Object.fromEntries(inputs.map((image, i) => [`c${i}`, image])),
        );
        assert.deepEqual(
          images(pod),
          Object.fromEntries(inputs.map((image, i) => [`c${i}`, expected[image]])),
          `${name} in ${namespace}`,
        );
      }
    }
    t.diagnostic(`scenario 1 took ${ms(started)} ms`);
  });

  it("2. rewrites in labelled namespaces only, never in kube-system or its own namespace", {
    timeout: 60_000,
  }, async () => {
    await resetRules();
    const mirror = dockerHubMirror("hub-mirror", "internal-registry.corp/dockerhub");
    await apply(mirror);
    await waitInUse([mirror], 1);

    const labelled = await createPod("team-a", { app: "nginx:1.25" });
    assert.equal(images(labelled).app, "internal-registry.corp/dockerhub/library/nginx:1.25");
    assert.ok(labelled.metadata.annotations?.[ORIGINAL_IMAGES]);
    for (const namespace of ["plain", "kube-system", OWN_NAMESPACE]) {
      const pod = await createPod(namespace, { app: "nginx:1.25" });
      assert.equal(images(pod).app, "nginx:1.25", `namespace ${namespace}`);
      assert.equal(pod.metadata.annotations?.[ORIGINAL_IMAGES], undefined, `namespace ${namespace}`);
    }
  });

  it("3. a rule object edit rewrites the next pod (within 2 s)", { timeout: 60_000 }, async (t) => {
    await resetRules();
    const first = dockerHubMirror("edit-me", "first.corp/hub");
    await apply(first);
    await waitInUse([first], 1);
    assert.equal(
      images(await createPod("team-a", { app: "nginx:1.25" })).app,
      "first.corp/hub/library/nginx:1.25",
    );

    const applyStarted = performance.now();
    await apply(dockerHubMirror("edit-me", "second.corp/hub"));
    const applied = performance.now();
    const expected = "second.corp/hub/library/nginx:1.25";
    let attempts = 0;
    let last: Pod;
    do {
      attempts++;
      last = await createPodQuick("team-a", { app: "nginx:1.25" }, "edit");
    } while (images(last).app !== expected && performance.now() - applied < 2000);
    const elapsed = ms(applied);
    t.diagnostic(
      `CR edit -> rewritten pod: ${elapsed} ms after kubectl apply returned (${ms(applyStarted)} ms including the apply), ${attempts} pod(s) created`,
    );
    const stored = await getPod("team-a", last.metadata.name);
    assert.equal(images(stored).app, expected, `still not rewritten by the edit after ${elapsed} ms`);
    assert.ok(elapsed < 2000, `the edit took ${elapsed} ms to reach the webhook`);
  });

  it("4. the validating webhook refuses an invalid rule object, naming the field path", {
    timeout: 60_000,
  }, async () => {
    await resetRules();
    const bad = imageshift("bad-regex", {
      mappings: {
        swap: [{ registry: "docker.io", target: "good.corp/hub" }],
        regexSwap: [{ expression: "^(?=docker)(.*)$", target: "x.corp/$1" }],
      },
    });
    const created = await k.run(["apply", "-f", "-"], { stdin: manifests([bad]) });
    assert.notEqual(created.code, 0, "the invalid object was admitted");
    assert.match(created.stderr, /denied the request/);
    assert.match(
      created.stderr,
      /Imageshift\/bad-regex is invalid: spec\.mappings\.regexSwap\[0\]\.expression: /,
    );
    assert.match((await k.run(["get", IMAGESHIFT, "bad-regex"])).stderr, /NotFound/);

    const badCompat = registryRewriteRule("bad-match", [{ match: "^(.*", replace: "x.corp/$1" }]);
    const compat = await k.run(["apply", "-f", "-"], { stdin: manifests([badCompat]) });
    assert.notEqual(compat.code, 0, "the invalid RegistryRewriteRule was admitted");
    assert.match(compat.stderr, /RegistryRewriteRule\/bad-match is invalid: spec\.rules\[0\]\.match: /);

    // An UPDATE that breaks a valid object is refused too, and the object keeps its spec.
    const good = dockerHubMirror("good-then-bad", "good.corp/hub");
    await apply(good);
    const breaking = imageshift("good-then-bad", {
      mappings: { swap: [{ registry: "docker.io", target: "mirror" }] },
    });
    const updated = await k.run(["apply", "-f", "-"], { stdin: manifests([breaking]) });
    assert.notEqual(updated.code, 0, "the invalid edit was admitted");
    assert.match(updated.stderr, /spec\.mappings\.swap\[0\]\.target: /);
    const stored = await getRuleObject(IMAGESHIFT, "good-then-bad");
    assert.deepEqual(stored.spec.mappings, { swap: [{ registry: "docker.io", target: "good.corp/hub" }] });
  });

  it("5. writes status conditions: Ready True with the rule count, Ready False naming the bad rule", {
    timeout: 90_000,
  }, async (t) => {
    await resetRules();
    const valid = imageshift("status-ok", {
      mappings: {
        swap: [
          { registry: "quay.io", target: "q.corp/quay" },
          { registry: "gcr.io", target: "g.corp/gcr" },
        ],
        exactSwap: [{ reference: "busybox:1.36", target: "b.corp/busybox:1.36" }],
      },
    });
    await apply(valid);
    await waitInUse([valid], 3);
    const ok = await getRuleObject(IMAGESHIFT, "status-ok");
    assert.equal(ok.status?.rules, 3);
    assert.equal(ok.status?.observedGeneration, ok.metadata.generation);
    assert.deepEqual(
      ok.status?.conditions?.map(({ type, status, reason, message, observedGeneration }) => ({
        type,
        status,
        reason,
        message,
        observedGeneration,
      })),
      [
        {
          type: "Ready",
          status: "True",
          reason: "RulesValid",
          message: "3 rule(s) in use",
          observedGeneration: ok.metadata.generation,
        },
      ],
    );
    assert.match(await k.ok(["get", "ims", "status-ok"]), /status-ok\s+True\s+3\s+Enforce\s+0\s/);

    // Without the validating webhook an invalid object gets in; its status says what is wrong.
    await k.ok(["delete", "validatingwebhookconfiguration", "imageshift"]);
    const invalid = imageshift("status-bad", {
      mappings: {
        regexSwap: [{ expression: "^(?=docker)(.*)$", target: "x.corp/$1" }],
        swap: [{ registry: "docker.io", target: "good.corp/hub" }],
      },
    });
    const admittedAfter = performance.now();
    await waitUntil(
      "the API server to stop calling the deleted validating webhook",
      async () => (await k.run(["apply", "-f", "-"], { stdin: manifests([invalid]) })).code === 0,
      { timeoutMs: 20_000 },
    );
    t.diagnostic(`invalid object admitted ${ms(admittedAfter)} ms after deleting the validating webhook`);
    const bad = await waitUntil(
      "status-bad to get a Ready=False status for its generation",
      async () => {
        const stored = await getRuleObject(IMAGESHIFT, "status-bad");
        return stored.status?.observedGeneration === stored.metadata.generation && stored;
      },
      { timeoutMs: 20_000 },
    );
    assert.equal(bad.status?.rules, 1, "the good rule stays in use");
    const [condition] = bad.status?.conditions ?? [];
    assert.equal(condition?.type, "Ready");
    assert.equal(condition?.status, "False");
    assert.equal(condition?.reason, "InvalidRules");
    assert.equal(condition?.observedGeneration, bad.metadata.generation);
    assert.match(
      condition?.message ?? "",
      /^1 valid rule\(s\) in use; invalid: spec\.mappings\.regexSwap\[0\]\.expression: /,
    );
    assert.match(await k.ok(["get", "ims", "status-bad"]), /status-bad\s+False\s+1\s/);
    // The good rule of the invalid object is used.
    await waitInUse([valid, bad], 4);
    assert.equal(
      images(await createPod("team-a", { app: "nginx:1.25" })).app,
      "good.corp/hub/library/nginx:1.25",
    );

    // Fixing it: the status follows the new generation.
    const fixed = imageshift("status-bad", {
      mappings: { swap: [{ registry: "docker.io", target: "good.corp/hub" }] },
    });
    await apply(fixed);
    const healed = await waitUntil(
      "status-bad to be Ready again for its new generation",
      async () => {
        const stored = await getRuleObject(IMAGESHIFT, "status-bad");
        return (
          stored.status?.observedGeneration === stored.metadata.generation &&
          stored.status?.conditions?.[0]?.status === "True" &&
          stored
        );
      },
      { timeoutMs: 20_000 },
    );
    assert.equal(healed.metadata.generation, (bad.metadata.generation ?? 0) + 1);
    assert.equal(healed.status?.rules, 1);

    await apply((await webhookConfigurations(operator.webhookPort)).validating);
    await waitValidatingActive();
  });

  it("6. rewrites the image of a kubectl debug ephemeral container", { timeout: 60_000 }, async () => {
    await resetRules();
    const mirror = dockerHubMirror("hub-mirror", "internal-registry.corp/dockerhub");
    await apply(mirror);
    await waitInUse([mirror], 1);
    const pod = await createPod("team-a", { web: "nginx:1.25" }, "web");
    assert.equal(images(pod).web, "internal-registry.corp/dockerhub/library/nginx:1.25");

    await k.ok([
      "debug",
      "-n",
      "team-a",
      pod.metadata.name,
      "--image=busybox:1.36",
      "--target=web",
      "-c",
      "dbg",
    ]);
    const debugged = await getPod("team-a", pod.metadata.name);
    assert.deepEqual(ephemeralImages(debugged), {
      dbg: "internal-registry.corp/dockerhub/library/busybox:1.36",
    });
    assert.equal(images(debugged).web, "internal-registry.corp/dockerhub/library/nginx:1.25");
  });

  it("7. UPDATEs and re-invocation never rewrite an image twice, even with a catch-all rule", {
    timeout: 90_000,
  }, async (t) => {
    await resetRules();
    // RegistryRewriteRule patterns see MRW's normalized name: `nginx` is `docker.io/library/nginx`.
    const catchAll = registryRewriteRule("catch-all", [{ match: "^(.*)$", replace: "mirror.local/$1" }]);
    await apply(catchAll);
    await waitInUse([catchAll], 1);
    const noDouble = (pod: Pod, when: string) => {
      for (const image of allImages(pod))
        assert.ok(!image.startsWith("mirror.local/mirror.local/"), `${when}: ${image}`);
    };

    // A second mutating webhook, called after ImageShift's (configurations run in name order),
    // adds a sidecar: the API server re-invokes ImageShift (reinvocationPolicy: IfNeeded).
    injector = await startSidecarInjector(certs, { name: "injected", image: "envoyproxy/envoy:v1.30.1" });
    const injectorName = "zz-e2e-sidecar-injector";
    await apply({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata: { name: injectorName },
      webhooks: [
        {
          name: "sidecar.e2e.imageshift.dev",
          admissionReviewVersions: ["v1"],
          clientConfig: { url: injector.url, caBundle: certs.caBundle },
          rules: [
            {
              apiGroups: [""],
              apiVersions: ["v1"],
              operations: ["CREATE"],
              resources: ["pods"],
              scope: "Namespaced",
            },
          ],
          namespaceSelector: {
            matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["reinvoke"] }],
          },
          failurePolicy: "Fail",
          sideEffects: "None",
          reinvocationPolicy: "Never",
          timeoutSeconds: 5,
        },
      ],
    });
    try {
      await waitUntil(
        "the sidecar injector to be called",
        async () => images(await dryRunPod("reinvoke", { app: "busybox:1.36" })).injected !== undefined,
        { timeoutMs: 20_000 },
      );
      const mutateCalls = () => operator.metric("imageshift_admission_requests_total", { webhook: "mutate" });
      const callsBefore = (await mutateCalls()) ?? 0;
      const created = await createPod("reinvoke", { app: "nginx:1.25", side: "busybox:1.36" });
      const calls = ((await mutateCalls()) ?? 0) - callsBefore;
      t.diagnostic(`ImageShift answered ${calls} admission request(s) for one pod CREATE with the injector`);
      assert.equal(calls, 2, "one call, then one re-invocation after the injector changed the pod");
      assert.deepEqual(images(created), {
        app: "mirror.local/docker.io/library/nginx:1.25",
        side: "mirror.local/docker.io/library/busybox:1.36",
        injected: "mirror.local/docker.io/envoyproxy/envoy:v1.30.1",
      });
      noDouble(created, "create with re-invocation");
      assert.deepEqual(
        Object.fromEntries(
          Object.entries(originalImages(created)).map(([key, entry]) => [key, entry.original]),
        ),
        {
          "containers/app": "nginx:1.25",
          "containers/side": "busybox:1.36",
          "containers/injected": "envoyproxy/envoy:v1.30.1",
        },
      );

      const name = created.metadata.name;
      await k.ok(["label", "pod", name, "-n", "reinvoke", "touched=yes"]);
      const labelled = await getPod("reinvoke", name);
      assert.equal(labelled.metadata.labels?.touched, "yes");
      assert.deepEqual(images(labelled), images(created), "a label update changes no image");

      await k.ok(["annotate", "pod", name, "-n", "reinvoke", "note=hello"]);
      const annotated = await getPod("reinvoke", name);
      assert.equal(annotated.metadata.annotations?.note, "hello");
      assert.deepEqual(images(annotated), images(created), "an annotation update changes no image");

      await k.ok(["set", "image", "-n", "reinvoke", `pod/${name}`, "side=redis:7"]);
      const reimaged = await getPod("reinvoke", name);
      assert.deepEqual(images(reimaged), {
        app: "mirror.local/docker.io/library/nginx:1.25",
        side: "mirror.local/docker.io/library/redis:7",
        injected: "mirror.local/docker.io/envoyproxy/envoy:v1.30.1",
      });
      noDouble(reimaged, "set image");
      assert.equal(originalImages(reimaged)["containers/side"]?.original, "redis:7");

      // Ephemeral containers (their annotation entry is not stored): later updates keep them single.
      await k.ok(["debug", "-n", "reinvoke", name, "--image=busybox:1.36", "--target=app", "-c", "dbg"]);
      await k.ok(["debug", "-n", "reinvoke", name, "--image=alpine:3.20", "--target=app", "-c", "dbg2"]);
      await k.ok(["label", "pod", name, "-n", "reinvoke", "touched=again", "--overwrite"]);
      const final = await getPod("reinvoke", name);
      assert.deepEqual(ephemeralImages(final), {
        dbg: "mirror.local/docker.io/library/busybox:1.36",
        dbg2: "mirror.local/docker.io/library/alpine:3.20",
      });
      assert.deepEqual(images(final), images(reimaged));
      noDouble(final, "ephemeral containers and a later label");
    } finally {
      await k.run(["delete", "mutatingwebhookconfiguration", injectorName, "--ignore-not-found"]);
      await injector.stop();
      injector = undefined;
    }
  });

  it("8. with the webhook down, pods are admitted unchanged (failurePolicy Ignore)", {
    timeout: 90_000,
  }, async (t) => {
    await resetRules();
    const mirror = dockerHubMirror("hub-mirror", "internal-registry.corp/dockerhub");
    await apply(mirror);
    await waitInUse([mirror], 1);
    assert.equal(
      images(await createPod("team-a", { app: "nginx:1.25" })).app,
      "internal-registry.corp/dockerhub/library/nginx:1.25",
    );

    const { webhookPort, metricsPort } = operator;
    // Killed, not stopped: no graceful release of the status writer's Lease either.
    assert.equal(await operator.stop("SIGKILL"), "killed by SIGKILL");
    const killed = performance.now();
    const started = performance.now();
    const unchanged = await createPod("team-a", { app: "nginx:1.25" });
    t.diagnostic(`pod admitted ${ms(started)} ms after the webhook was killed`);
    assert.equal(images(unchanged).app, "nginx:1.25");
    assert.equal(unchanged.metadata.annotations?.[ORIGINAL_IMAGES], undefined);

    // Back on the same ports, as the registered configuration says.
    const restarted = performance.now();
    operator = await launch("operator-a2", { port: webhookPort, metricsPort });
    t.diagnostic(`operator ready ${ms(restarted)} ms after its restart`);
    const rewritten = await waitUntil(
      "a pod to be rewritten again after the restart",
      async () => {
        const pod = await createPod("team-a", { app: "nginx:1.25" });
        return images(pod).app === "internal-registry.corp/dockerhub/library/nginx:1.25" && pod;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    assert.ok(rewritten.metadata.annotations?.[ORIGINAL_IMAGES]);

    // The Lease of the killed process is taken over once it expires (15 s), so that later
    // scenarios have a status writer again.
    const restartedOperator = operator;
    await waitUntil(
      `${restartedOperator.name} to take over the Lease of the killed replica`,
      async () => holderProcess(await leaseHolder(), [restartedOperator]),
      { timeoutMs: 40_000, intervalMs: 500 },
    );
    t.diagnostic(`the restarted operator took the Lease ${ms(killed)} ms after the kill`);
  });

  it("9. survives an API server restart: rules served meanwhile, watches back for edits and namespaces", {
    timeout: 150_000,
  }, async (t) => {
    await resetRules();
    const initial = dockerHubMirror("restart-rule", "before.corp/hub");
    await apply(initial);
    await waitInUse([initial], 1);

    const restartStarted = performance.now();
    await cp!.restartApiServer();
    t.diagnostic(`API server restarted in ${ms(restartStarted)} ms`);
    const restarted = performance.now();

    // Right away, while the operator's watches may still be reconnecting: the last rule set.
    operator.assertRunning();
    const during = await createPod("team-a", { app: "nginx:1.25" });
    assert.equal(images(during).app, "before.corp/hub/library/nginx:1.25");

    await apply(dockerHubMirror("restart-rule", "after.corp/hub"));
    const edited = performance.now();
    let attempts = 0;
    const rewritten = await waitUntil(
      "a pod to be rewritten by the edit made after the API server restart",
      async () => {
        attempts++;
        const pod = await createPodQuick("team-a", { app: "nginx:1.25" }, "after");
        return images(pod).app === "after.corp/hub/library/nginx:1.25" && pod;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    t.diagnostic(
      `edit after the restart reached the webhook ${ms(edited)} ms after the apply (${ms(restarted)} ms after the restart, ${attempts} pod(s))`,
    );
    assert.equal(
      images(await getPod("team-a", rewritten.metadata.name)).app,
      "after.corp/hub/library/nginx:1.25",
    );
    const status = await waitUntil(
      "the status of restart-rule to follow the edit made after the restart",
      async () => {
        const stored = await getRuleObject(IMAGESHIFT, "restart-rule");
        return stored.status?.observedGeneration === stored.metadata.generation && stored;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(status.metadata.generation, 2);
    t.diagnostic(`status followed ${ms(edited)} ms after the edit`);

    // The namespace watch is back too: a namespace made after the restart is selected by its labels.
    await apply({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "late", labels: { ...ENABLED, tier: "late" } },
    });
    const lateOnly = imageshift("late-only", {
      priority: 10,
      namespaceSelector: { matchLabels: { tier: "late" } },
      mappings: { swap: [{ registry: "docker.io", target: "late.corp/hub" }] },
    });
    await apply(lateOnly);
    await waitInUse([lateOnly], 2);
    const late = await waitUntil(
      "a pod in a namespace created after the restart to be rewritten by its namespace's rule",
      async () => {
        const pod = await createPod("late", { app: "nginx:1.25" }, "late");
        return images(pod).app === "late.corp/hub/library/nginx:1.25" && pod;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    assert.equal(originalImages(late)["containers/app"]?.rule, "Imageshift/late-only spec.mappings.swap[0]");
    await k.ok(["delete", IMAGESHIFT, "late-only", "--wait=true"]);
    await waitUntil(
      "late-only to be dropped",
      async () => (await operator.metric("imageshift_rules_loaded")) === 1,
      { timeoutMs: 20_000 },
    );

    const reconnects = operator.logs().filter((line) => line.msg?.startsWith("watch failed")).length;
    t.diagnostic(`operator logged ${reconnects} "watch failed" line(s) during the restart`);
  });

  it("10. two replicas: one Lease holder writes status, the other takes over on SIGTERM", {
    timeout: 120_000,
  }, async (t) => {
    const a = operator;
    a.assertRunning();
    const b = await launch("operator-b");
    const replicas = [a, b];
    const firstHolder = await waitUntil(
      `the Lease ${OWN_NAMESPACE}/${LEASE_NAME} to be held by a running replica`,
      async () => holderProcess(await leaseHolder(), replicas),
      { timeoutMs: 25_000, intervalMs: 500 },
    );
    // A few renew periods (2 s): no second leader appears, the holder stays.
    await sleep(5000);
    const leader = holderProcess(await leaseHolder(), replicas);
    assert.equal(leader, firstHolder, "the Lease changed hands with both replicas running");
    assert.ok(leader);
    const follower = leader === a ? b : a;
    leader.assertRunning();
    follower.assertRunning();
    const leaders = replicas.filter((proc) => proc.logs().some((line) => line.msg === "became the leader"));
    assert.deepEqual(
      leaders.map((proc) => proc.name),
      [leader.name],
      'exactly one replica logged "became the leader"',
    );
    t.diagnostic(
      `leader: ${leader.name} (pid ${leader.pid}), follower: ${follower.name} (pid ${follower.pid})`,
    );

    // Both replicas serve admissions from their own watches; only the leader writes status.
    const statusWrites = (proc: OperatorProcess) =>
      proc.logs().filter((line) => line.msg === "status updated" && line.object === "Imageshift/restart-rule")
        .length;
    const writesBefore = replicas.map(statusWrites);
    await apply(dockerHubMirror("restart-rule", "two-replicas.corp/hub"));
    await waitStatusFollows("restart-rule", "an edit made with two replicas running");
    await waitUntil(
      `${b.name} to hold the rule`,
      async () => (await b.metric("imageshift_rules_loaded")) === 1,
      {
        timeoutMs: 10_000,
      },
    );
    await sleep(500); // a late write by the follower would show by now
    const written = replicas.map((proc, i) => statusWrites(proc) - (writesBefore[i] ?? 0));
    assert.deepEqual(
      written,
      replicas.map((proc) => (proc === leader ? 1 : 0)),
      `status writes for the edit by ${replicas.map((proc) => proc.name).join(", ")}`,
    );

    const stopping = performance.now();
    assert.equal(await leader.stop("SIGTERM"), "exited with code 0");
    const newHolder = await waitUntil(
      "the follower to take the Lease over",
      async () => holderProcess(await leaseHolder(), [follower]),
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    t.diagnostic(`${newHolder.name} took the Lease over ${ms(stopping)} ms after SIGTERM to the leader`);
    await waitUntil(
      `${follower.name} to log "became the leader"`,
      () => follower.logs().some((line) => line.msg === "became the leader"),
      { timeoutMs: 5_000 },
    );

    // The new leader keeps status up to date.
    const followerWrites = statusWrites(follower);
    await apply(dockerHubMirror("restart-rule", "takeover.corp/hub"));
    const edited = performance.now();
    const stored = await waitStatusFollows("restart-rule", "an edit made after the takeover");
    t.diagnostic(`status followed the edit in ${ms(edited)} ms under the new leader`);
    assert.equal(stored.status?.conditions?.[0]?.status, "True");
    assert.equal(statusWrites(follower) - followerWrites, 1, `${follower.name} wrote the status`);
  });
});
