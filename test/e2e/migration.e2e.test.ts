/**
 * Switching a cluster from the Mutating Registry Webhook (MRW) to ImageShift, as its users
 * would (docs/migrating-from-mrw.md), against a real kube-apiserver: MRW's CRD
 * (test/fixtures/mrw/crd.yaml) with RegistryRewriteRule objects and the status MRW wrote, then
 * ImageShift installed over them, with Helm and with `kubectl apply -f dist/install.yaml`.
 *
 * What Helm 4 really does is asserted, not assumed: it server-side applies `crds/`, so over
 * MRW's kubectl-applied CRD `helm install` is refused (cleanly) until the documented
 * `kubectl apply` of ImageShift's CRDs; it reads `helm.sh/resource-policy` from a release's
 * manifest, not from the live object. Every object keeps its spec, status and resourceVersion
 * through every step, and ImageShift then serves those rules, in every namespace with
 * `allNamespaces` (each by exactly one webhook entry), with MRW's status fields and metric names.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { helmPath } from "../../scripts/helm.ts";
import { INSTALL_FILE, INSTALL_NAMESPACE } from "../../scripts/render-install.ts";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import {
  type Kubectl,
  kubectlFor,
  makeWebhookCertificates,
  type OperatorProcess,
  startOperator,
  type WebhookCertificates,
  waitUntil,
} from "./harness/operator.ts";

const repo = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const CHART = repo("charts/imageshift");
const CHART_CRDS = repo("charts/imageshift/crds/crds.yaml");
const MRW_CRD = repo("test/fixtures/mrw/crd.yaml");
const MRW_RULES = repo("test/fixtures/mrw/rules.yaml");
const COMPAT_CRD = "registryrewriterules.dev.flemzord.fr";
const IMAGESHIFT_CRD = "imageshifts.imageshift.dev";
const RELEASE = "imageshift";

interface Crd {
  metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: {
    versions: {
      name: string;
      additionalPrinterColumns?: { name: string; type: string; jsonPath: string }[];
      schema: { openAPIV3Schema: Record<string, unknown> };
    }[];
  };
}
interface StoredRule {
  metadata: { name: string; uid: string; generation: number; resourceVersion: string };
  spec: { rules: Record<string, unknown>[] };
  status?: Record<string, unknown>;
}
interface Pod {
  metadata: { name: string };
  spec: { containers: { name: string; image: string }[] };
}

/** The CRD ImageShift ships for RegistryRewriteRule, from the chart. */
async function shippedCompatCrd(): Promise<Crd> {
  const documents = parseAllDocuments(await readFile(CHART_CRDS, "utf8")).map((d) => d.toJS() as Crd);
  const crd = documents.find((document) => document?.metadata?.name === COMPAT_CRD);
  assert.ok(crd);
  return crd;
}

describe("switching from the Mutating Registry Webhook", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  let helm = "";
  let workDir = "";
  let certs: WebhookCertificates;
  let operator: OperatorProcess | undefined;
  let podSeq = 0;

  before(async () => {
    cp = await startControlPlane({
      buildTimeoutMs: 45 * 60_000,
      keepTempDir: Boolean(process.env.IMAGESHIFT_E2E_KEEP),
    });
    k = kubectlFor(cp.kubeconfigPath);
    helm = await helmPath();
    workDir = await mkdtemp(path.join(tmpdir(), "imageshift-migration-e2e-"));
    certs = await makeWebhookCertificates(workDir);
  });

  after(async () => {
    await operator?.stop();
    await cp?.stop();
    if (workDir && !process.env.IMAGESHIFT_E2E_KEEP) await rm(workDir, { recursive: true, force: true });
    else if (workDir) console.log(`kept ${workDir}`);
  });

  // -------------------------------------------------------------------------------------------
  // Helpers bound to this control plane

  async function runHelm(args: string[]): Promise<string> {
    assert.ok(cp);
    const { stdout, stderr } = await promisify(execFile)(helm, args, {
      env: { ...process.env, KUBECONFIG: cp.kubeconfigPath },
      timeout: 120_000,
    });
    return stdout + stderr;
  }

  const getCrd = (name: string) => k.json<Crd>(["get", "crd", name]);

  async function rules(): Promise<StoredRule[]> {
    const list = await k.json<{ items: StoredRule[] }>(["get", COMPAT_CRD]);
    return list.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  /** What must survive the switch untouched: identity, spec, status, and the stored version. */
  async function snapshot() {
    return (await rules()).map((rule) => ({
      name: rule.metadata.name,
      uid: rule.metadata.uid,
      generation: rule.metadata.generation,
      resourceVersion: rule.metadata.resourceVersion,
      spec: rule.spec,
      status: rule.status,
    }));
  }

  /** MRW's CRD and objects, each with the status MRW's controller writes on every change. */
  async function installMrwObjects(): Promise<Awaited<ReturnType<typeof snapshot>>> {
    await k.ok(["wait", "--for=condition=Established", "--timeout=60s", `crd/${COMPAT_CRD}`]);
    await k.ok(["apply", "-f", MRW_RULES]);
    for (const rule of await rules()) {
      const status = {
        observedGeneration: rule.metadata.generation,
        ready: true,
        ruleCount: rule.spec.rules.length,
        lastUpdateTime: "2026-01-15T08:30:00Z",
      };
      await k.ok([
        "patch",
        COMPAT_CRD,
        rule.metadata.name,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status }),
      ]);
    }
    const before = await snapshot();
    assert.deepEqual(
      before.map((rule) => [rule.name, rule.spec.rules.map((r) => r.priority), rule.status?.ruleCount]),
      [
        ["docker-hub", [10], 1],
        ["old-prefix", [0], 1],
        ["team-a-quay", [0, 0], 2],
      ],
      "MRW's CRD defaulted priority to 0 and kept MRW's status",
    );
    return before;
  }

  /** Points every entry of the installed webhook configurations at the operator on this host. */
  async function pointWebhooksAt(port: number): Promise<void> {
    for (const kind of ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"]) {
      const configuration = await k.json<{ webhooks: { clientConfig: { service?: { path: string } } }[] }>([
        "get",
        kind,
        RELEASE,
      ]);
      for (const webhook of configuration.webhooks) {
        const endpoint = webhook.clientConfig.service?.path ?? "/mutate";
        webhook.clientConfig = {
          url: `https://127.0.0.1:${port}${endpoint}`,
          caBundle: certs.caBundle,
        } as typeof webhook.clientConfig;
      }
      await k.ok(["replace", "-f", "-"], JSON.stringify(configuration));
    }
  }

  async function createPod(namespace: string, name: string, labels: Record<string, string>): Promise<Pod> {
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, labels },
      spec: {
        containers: [
          { name: "hub", image: "docker.io/library/nginx:1.25" },
          { name: "quay", image: "quay.io/prometheus/node-exporter:v1.8.1" },
          { name: "gcr", image: "gcr.io/distroless/static:nonroot" },
          { name: "old", image: "old.corp/team/tool:2" },
        ],
      },
    };
    return k.json<Pod>(["create", "-f", "-"], JSON.stringify(pod));
  }

  const images = (pod: Pod) => Object.fromEntries(pod.spec.containers.map((c) => [c.name, c.image]));
  const UNCHANGED = {
    hub: "docker.io/library/nginx:1.25",
    quay: "quay.io/prometheus/node-exporter:v1.8.1",
    gcr: "gcr.io/distroless/static:nonroot",
    old: "old.corp/team/tool:2",
  };

  // -------------------------------------------------------------------------------------------

  it("MRW's CRD applied with kubectl; ImageShift with Helm, after the documented CRD step", {
    timeout: 10 * 60_000,
  }, async () => {
    await k.ok(["apply", "-f", MRW_CRD]);
    const before = await installMrwObjects();
    const mrwCrd = await getCrd(COMPAT_CRD);

    // Without the CRD step, Helm 4 (server-side apply of crds/) refuses: the CRD's fields
    // belong to kubectl. It refuses before any release exists, and changes none of MRW's.
    // (Helm 3 skips a CRD that exists instead, leaving MRW's in place.)
    const refused = await runHelm([
      "install",
      RELEASE,
      CHART,
      "--namespace",
      INSTALL_NAMESPACE,
      "--create-namespace",
    ]).then(
      () => "",
      (error: { stderr?: string }) => error.stderr ?? String(error),
    );
    assert.match(refused, /failed to install CRD crds\/crds\.yaml: conflict occurred/);
    assert.match(refused, new RegExp(`${COMPAT_CRD}.*conflict with "kubectl-client-side-apply"`));
    assert.deepEqual((await getCrd(COMPAT_CRD)).spec, mrwCrd.spec);
    assert.deepEqual(await snapshot(), before);
    assert.equal((await runHelm(["list", "--all-namespaces", "--short"])).trim(), "", "no release");

    // Step 3: ImageShift's CRDs over MRW's, with kubectl.
    await k.ok(["apply", "-f", CHART_CRDS]);
    const shipped = await shippedCompatCrd();
    const adopted = await getCrd(COMPAT_CRD);
    assert.deepEqual(adopted.spec.versions[0]?.schema, shipped.spec.versions[0]?.schema);
    assert.deepEqual(
      adopted.spec.versions[0]?.additionalPrinterColumns,
      shipped.spec.versions[0]?.additionalPrinterColumns,
    );
    assert.deepEqual(await snapshot(), before, "objects unchanged, status included, by the CRD switch");

    // Step 4: helm install, now without a conflict (same values); the CRD stays ImageShift's.
    await runHelm([
      "install",
      RELEASE,
      CHART,
      "--namespace",
      INSTALL_NAMESPACE,
      "--create-namespace",
      "--set",
      "allNamespaces=true",
    ]);
    assert.deepEqual((await getCrd(COMPAT_CRD)).spec.versions[0]?.schema, shipped.spec.versions[0]?.schema);
    assert.deepEqual(await snapshot(), before, "objects unchanged by helm install");

    // ImageShift serves them: the chart's webhook configurations (allNamespaces) pointed here.
    operator = await startOperator({
      name: "after-mrw",
      kubeconfigPath: cp!.kubeconfigPath,
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      leaseNamespace: INSTALL_NAMESPACE,
      logDir: workDir,
      extraArgs: ["--mrw-metrics"],
    });
    await pointWebhooksAt(operator.webhookPort);
    await waitUntil(
      "the three valid rules in use",
      async () => (await operator?.metric("imageshift_rules_loaded")) === 3,
      { timeoutMs: 20_000 },
    );
    await k.ok(["create", "namespace", "apps"]);
    await k.ok(["create", "namespace", "locked"]);
    await k.ok(["label", "namespace", "locked", "imageshift.dev=strict"]);

    const rewritten = {
      hub: "mirror.corp/hub/library/nginx:1.25",
      quay: "mirror.corp/quay/prometheus/node-exporter:v1.8.1",
      gcr: "mirror.corp/gcr/distroless/static:nonroot",
      old: "old.corp/team/tool:2",
    };
    // The enabled entry calls /mutate, the strict entry /mutate/strict.
    const calls = async () =>
      ((await operator?.metric("imageshift_admission_requests_total", { webhook: "mutate" })) ?? 0) +
      ((await operator?.metric("imageshift_admission_requests_total", { webhook: "mutate/strict" })) ?? 0);
    for (const [namespace, labels, expected] of [
      ["apps", { team: "a" }, rewritten],
      ["apps", {}, { ...rewritten, quay: UNCHANGED.quay }],
      ["locked", { team: "a" }, rewritten],
      ["kube-system", { team: "a" }, UNCHANGED],
      [INSTALL_NAMESPACE, { team: "a" }, UNCHANGED],
    ] as const) {
      const before = await calls();
      const pod = await createPod(namespace, `pod-${++podSeq}`, labels);
      assert.deepEqual(images(pod), expected, `${namespace} ${JSON.stringify(labels)}`);
      const excluded = namespace === "kube-system" || namespace === INSTALL_NAMESPACE;
      assert.equal(await calls(), before + (excluded ? 0 : 1), `${namespace}: served by exactly one entry`);
    }
    assert.equal(
      await operator.metric("registry_rewriter_mutations_total", {
        namespace: "apps",
        source_registry: "quay.io",
        target_registry: "mirror.corp",
        status: "success",
      }),
      1,
    );
    assert.equal(await operator.metric("registry_rewriter_cache_hits_total"), 3);
    assert.equal(await operator.metric("registry_rewriter_rules_count"), 3);

    // Status: ImageShift's condition, and MRW's ready and ruleCount made true again.
    const statuses = await waitUntil(
      "every object's status written by ImageShift",
      async () => {
        const stored = await rules();
        return stored.every((rule) => Array.isArray(rule.status?.conditions)) && stored;
      },
      { timeoutMs: 20_000 },
    );
    assert.deepEqual(
      statuses.map((rule) => [
        rule.metadata.name,
        rule.status?.ready,
        rule.status?.ruleCount,
        rule.status?.rules,
      ]),
      [
        ["docker-hub", true, 1, 1],
        ["old-prefix", false, 0, 0],
        ["team-a-quay", true, 2, 2],
      ],
    );
    for (const [i, rule] of statuses.entries()) {
      assert.deepEqual(rule.spec, before[i]?.spec, `${rule.metadata.name}: spec untouched by ImageShift`);
      assert.notEqual(rule.status?.lastUpdateTime, "2026-01-15T08:30:00Z");
    }
    await operator.stop();
    operator = undefined;

    // helm uninstall ImageShift: its CRDs (in crds/) and every object stay.
    await runHelm(["uninstall", RELEASE, "--namespace", INSTALL_NAMESPACE]);
    await getCrd(IMAGESHIFT_CRD);
    assert.deepEqual(
      (await snapshot()).map((rule) => rule.spec),
      before.map((rule) => rule.spec),
    );
  });

  it("MRW installed with Helm: its release uninstalled keeping the CRD; `kubectl apply -f dist/install.yaml`", {
    timeout: 5 * 60_000,
  }, async () => {
    await k.ok(["delete", "crd", COMPAT_CRD, IMAGESHIFT_CRD, "--wait=true"]);
    // A stand-in for MRW's chart, which keeps its CRD among its templates: the CRD belongs to
    // the release, and `helm uninstall` deletes it, and every object, unless the release's
    // manifest marks it to be kept (kubebuilder's charts: the value crd.keep).
    const mrwChart = path.join(workDir, "mrw-chart");
    await mkdir(path.join(mrwChart, "templates"), { recursive: true });
    await writeFile(
      path.join(mrwChart, "Chart.yaml"),
      "apiVersion: v2\nname: mutating-registry-webhook\nversion: 0.4.0\n",
    );
    await writeFile(path.join(mrwChart, "values.yaml"), "crd:\n  keep: false\n");
    const keepable = (await readFile(MRW_CRD, "utf8")).replace(
      "  annotations:\n",
      '  annotations:\n    {{- if .Values.crd.keep }}\n    "helm.sh/resource-policy": keep\n    {{- end }}\n',
    );
    await writeFile(path.join(mrwChart, "templates", "crd.yaml"), keepable);
    const installMrw = () =>
      runHelm(["install", "mrw", mrwChart, "--namespace", "mrw-system", "--create-namespace"]);

    // The trap: the annotation on the live CRD is not what Helm reads.
    await installMrw();
    assert.equal((await getCrd(COMPAT_CRD)).metadata.annotations?.["meta.helm.sh/release-name"], "mrw");
    await k.ok(["annotate", "crd", COMPAT_CRD, "helm.sh/resource-policy=keep"]);
    await runHelm(["uninstall", "mrw", "--namespace", "mrw-system", "--wait"]);
    const gone = await k.run(["get", "crd", COMPAT_CRD]);
    assert.match(gone.stderr, /NotFound/, "Helm deleted the CRD its manifest did not mark to keep");

    // Or Helm made to forget the release, deleting nothing: its release records removed.
    await installMrw();
    await k.ok(["delete", "secret", "--namespace", "mrw-system", "--selector", "owner=helm,name=mrw"]);
    assert.equal((await runHelm(["list", "--all-namespaces", "--short"])).trim(), "", "no release");
    await getCrd(COMPAT_CRD);
    await k.ok(["delete", "crd", COMPAT_CRD, "--wait=true"]);

    // Step 2 as documented: the release marked to keep the CRD, then uninstalled.
    await installMrw();
    const before = await installMrwObjects();
    assert.doesNotMatch(
      await runHelm(["get", "manifest", "mrw", "--namespace", "mrw-system"]),
      /resource-policy/,
    );
    await runHelm([
      "upgrade",
      "mrw",
      mrwChart,
      "--namespace",
      "mrw-system",
      "--reuse-values",
      "--set",
      "crd.keep=true",
    ]);
    assert.match(
      await runHelm(["get", "manifest", "mrw", "--namespace", "mrw-system"]),
      /"helm.sh\/resource-policy": keep/,
    );
    assert.deepEqual(await snapshot(), before, "objects unchanged by the upgrade");
    assert.match(
      await runHelm(["uninstall", "mrw", "--namespace", "mrw-system"]),
      /release "mrw" uninstalled/,
    );
    assert.deepEqual(await snapshot(), before, "CRD and objects kept");

    // Steps 3 and 4 at once: dist/install.yaml holds both CRDs.
    const output = await k.ok(["apply", "-f", INSTALL_FILE]);
    assert.match(
      output,
      new RegExp(`customresourcedefinition.apiextensions.k8s.io/${COMPAT_CRD} configured`),
    );
    assert.match(output, /deployment.apps\/imageshift created/);
    const adopted = await getCrd(COMPAT_CRD);
    const shipped = await shippedCompatCrd();
    assert.deepEqual(
      adopted.spec.versions.map((version) => version.name),
      ["v1alpha1"],
    );
    assert.deepEqual(adopted.spec.versions[0]?.schema, shipped.spec.versions[0]?.schema);
    assert.deepEqual(await snapshot(), before, "objects unchanged, status included");
  });
});
