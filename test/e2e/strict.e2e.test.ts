/**
 * Strict namespaces end to end (issue 9): a pod author cannot get an original image past
 * ImageShift in a namespace labelled `imageshift.dev=strict`. `imageshift serve` in cluster mode
 * against a real etcd + kube-apiserver, registered with the Helm chart's own webhook
 * configurations (whose strict entry calls `/mutate/strict`); every assertion about a pod is
 * about the pod as the API server stored it, or the API server's refusal.
 *
 * In the strict namespace each bypass (`imageshift.dev/skip`, `rewrite-disabled`, a hand-written
 * original-images entry) still gets the pod rewritten, and a rule that fails refuses it; in an
 * enabled namespace the opt-out is honoured, and logged and counted.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
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
  type WebhookCertificates,
  waitUntil,
} from "./harness/operator.ts";

const CRDS = fileURLToPath(new URL("../../charts/imageshift/crds/crds.yaml", import.meta.url));
const OWN_NAMESPACE = "imageshift-system";
const STRICT = "locked";
const ENABLED = "open";
const ORIGINAL_IMAGES = "imageshift.dev/original-images";
const IMAGESHIFT = "imageshifts.imageshift.dev";
const COMPAT = "registryrewriterules.dev.flemzord.fr";

const NGINX = "nginx:1.25";
const MIRRORED = "mirror.corp/hub/library/nginx:1.25";
/** An image the `too-long` rule makes a name of more than 255 characters of. */
const LONG_SOURCE = "long.example/team/service-with-a-long-name:1.0";

interface Pod {
  metadata: { name: string; namespace: string; annotations?: Record<string, string> };
  spec: { containers: { name: string; image: string }[] };
}

describe("strict namespaces cannot be bypassed", { timeout: 15 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  let workDir = "";
  let certs: WebhookCertificates;
  let operator: OperatorProcess | undefined;
  let podSeq = 0;

  function podManifest(namespace: string, image: string, annotations: Record<string, string> = {}) {
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `pod-${++podSeq}`, namespace, annotations },
      spec: { containers: [{ name: "app", image }] },
    };
  }

  /** `kubectl create`; the code, the stored pod (when created) and stderr (warnings, refusals). */
  async function create(namespace: string, image: string, annotations: Record<string, string> = {}) {
    const result = await k.run(["create", "-o", "json", "-f", "-"], {
      stdin: JSON.stringify(podManifest(namespace, image, annotations)),
    });
    const pod = result.code === 0 ? (JSON.parse(result.stdout) as Pod) : undefined;
    return { code: result.code, pod, stderr: result.stderr };
  }

  /** Creates the pod, expecting success, and reads it back as stored. */
  async function createStored(namespace: string, image: string, annotations: Record<string, string> = {}) {
    const created = await create(namespace, image, annotations);
    assert.equal(created.code, 0, `pod creation in ${namespace} failed: ${created.stderr}`);
    assert.ok(created.pod);
    const stored = await k.json<Pod>(["get", "pod", created.pod.metadata.name, "--namespace", namespace]);
    return { pod: stored, stderr: created.stderr };
  }

  const imageOf = (pod: Pod) => pod.spec.containers[0]?.image;
  const recordOf = (pod: Pod) => JSON.parse(pod.metadata.annotations?.[ORIGINAL_IMAGES] ?? "{}");
  const metric = (name: string, labels: Record<string, string>) => {
    assert.ok(operator);
    return operator.metric(name, labels);
  };

  before(async () => {
    cp = await startControlPlane({ buildTimeoutMs: 45 * 60_000 });
    k = kubectlFor(cp.kubeconfigPath);
    workDir = await mkdtemp(path.join(tmpdir(), "imageshift-strict-e2e-"));
    certs = await makeWebhookCertificates(workDir);

    await k.ok(["apply", "-f", CRDS]);
    await k.ok([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      `crd/${IMAGESHIFT}`,
      `crd/${COMPAT}`,
    ]);
    const namespaces = [
      { name: OWN_NAMESPACE, labels: {} },
      { name: STRICT, labels: { "imageshift.dev": "strict" } },
      { name: ENABLED, labels: { "imageshift.dev": "enabled" } },
    ].map((metadata) => ({ apiVersion: "v1", kind: "Namespace", metadata }));
    const rules = [
      {
        apiVersion: "imageshift.dev/v1",
        kind: "Imageshift",
        metadata: { name: "mirror" },
        spec: { mappings: { swap: [{ registry: "docker.io", target: "mirror.corp/hub" }] } },
      },
      {
        apiVersion: "dev.flemzord.fr/v1alpha1",
        kind: "RegistryRewriteRule",
        metadata: { name: "too-long" },
        // The repository nine times over: a name of 281 characters, over the 255 allowed.
        spec: {
          rules: [{ match: "^long\\.example/([^:@]+)(.*)$", replace: `mirror.corp/${"$1/".repeat(8)}$1$2` }],
        },
      },
    ];
    await k.ok(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: [...namespaces, ...rules] }),
    );

    operator = await startOperator({
      name: "strict",
      kubeconfigPath: cp.kubeconfigPath,
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      leaseNamespace: OWN_NAMESPACE,
      logDir: workDir,
    });
    const configurations = await chartWebhookConfigurations({
      port: operator.webhookPort,
      caBundle: certs.caBundle,
      namespace: OWN_NAMESPACE,
    });
    await k.ok(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: configurations }),
    );

    await waitUntil(
      "the operator to hold both rules",
      async () => (await metric("imageshift_rules_loaded", {})) === 2,
      {
        timeoutMs: 20_000,
      },
    );
    // Bounded waits until the API server calls the webhook for both namespaces.
    for (const namespace of [STRICT, ENABLED]) {
      await waitUntil(
        `the mutating webhook to rewrite a dry-run pod in ${namespace}`,
        async () => {
          const pod = await k.json<Pod>(
            ["create", "--dry-run=server", "-f", "-"],
            JSON.stringify(podManifest(namespace, NGINX)),
          );
          return imageOf(pod) === MIRRORED;
        },
        { timeoutMs: 20_000 },
      );
    }
  });

  after(async () => {
    await operator?.stop("SIGTERM", 10_000);
    await cp?.stop();
    if (workDir && !process.env.IMAGESHIFT_E2E_KEEP) rmSync(workDir, { recursive: true, force: true });
    else if (workDir) console.log(`operator logs kept in ${workDir}`);
  });

  for (const annotation of ["imageshift.dev/skip", "rewrite-disabled"]) {
    it(`strict: ${annotation}: "true" is ignored with a warning; the stored pod is rewritten`, async () => {
      const { pod, stderr } = await createStored(STRICT, NGINX, { [annotation]: "true" });
      assert.equal(imageOf(pod), MIRRORED);
      assert.equal(pod.metadata.annotations?.[annotation], "true");
      assert.match(
        stderr,
        new RegExp(
          `Warning: imageshift: annotation ${annotation.replace(".", "\\.")}: "true" is ignored in strict namespace ${STRICT}`,
        ),
      );
      assert.deepEqual(recordOf(pod)["containers/app"], {
        original: NGINX,
        image: MIRRORED,
        rule: "Imageshift/mirror spec.mappings.swap[0]",
      });
    });
  }

  it("strict: a hand-written original-images entry naming the pod's own image is ignored", async () => {
    const forged = JSON.stringify({
      "containers/app": { original: NGINX, image: NGINX, rule: "Imageshift/mirror" },
    });
    const { pod } = await createStored(STRICT, NGINX, { [ORIGINAL_IMAGES]: forged });
    assert.equal(imageOf(pod), MIRRORED);
    assert.equal(recordOf(pod)["containers/app"]?.image, MIRRORED, "the forged entry was replaced");
    assert.ok(
      operator?.logs().some((line) => line.msg === "skip ignored" && line.reason === "record_ignored"),
      "the ignored entry is logged",
    );
  });

  it("strict: a rule that fails refuses the pod, naming the field, the image, the rule and the reason", async () => {
    const created = await create(STRICT, LONG_SOURCE, { "imageshift.dev/skip": "true" });
    assert.notEqual(created.code, 0, "the pod was refused");
    assert.match(created.stderr, /admission webhook "strict-pods\.imageshift\.dev" denied the request/);
    assert.match(created.stderr, /pod refused in strict namespace locked/);
    assert.match(
      created.stderr,
      /containers\/app: image "long\.example\/team\/service-with-a-long-name:1\.0" not rewritten: rule RegistryRewriteRule\/too-long spec\.rules\[0\] produced /,
    );
    assert.match(created.stderr, /repository path is 269 characters, more than 255/);
    const listed = await k.json<{ items: Pod[] }>(["get", "pods", "--namespace", STRICT]);
    assert.ok(
      listed.items.every((pod) => imageOf(pod) !== LONG_SOURCE),
      "no pod with the original image was stored",
    );
  });

  it("enabled: the opt-out is honoured (pod stored unchanged), logged and counted", async () => {
    const before = (await metric("imageshift_skips_total", { reason: "opt_out" })) ?? 0;
    const { pod, stderr } = await createStored(ENABLED, NGINX, { "rewrite-disabled": "true" });
    assert.equal(imageOf(pod), NGINX);
    assert.equal(pod.metadata.annotations?.[ORIGINAL_IMAGES], undefined);
    assert.doesNotMatch(stderr, /Warning/);
    assert.equal(await metric("imageshift_skips_total", { reason: "opt_out" }), before + 1);
    const skipped = operator?.logs().filter((line) => line.msg === "skipped" && line.reason === "opt_out");
    assert.ok(
      skipped?.some((line) => line.namespace === ENABLED && line.pod === pod.metadata.name),
      "the skip is logged with the pod",
    );
  });

  it("enabled: a hand-written entry is ignored there too; a failing rule only warns", async () => {
    const forged = JSON.stringify({ "containers/app": { original: NGINX, image: NGINX } });
    const { pod } = await createStored(ENABLED, NGINX, { [ORIGINAL_IMAGES]: forged });
    assert.equal(imageOf(pod), MIRRORED);

    const { pod: kept, stderr } = await createStored(ENABLED, LONG_SOURCE);
    assert.equal(imageOf(kept), LONG_SOURCE);
    assert.match(stderr, /Warning: imageshift: containers\/app: rule RegistryRewriteRule\/too-long/);
  });

  it("the skips and the strict path are counted", async () => {
    assert.equal(await metric("imageshift_skips_total", { reason: "opt_out_ignored" }), 3);
    assert.equal(await metric("imageshift_skips_total", { reason: "record_ignored" }), 2);
    assert.equal(
      await metric("imageshift_admission_requests_total", { webhook: "mutate/strict", outcome: "denied" }),
      1,
    );
    assert.ok(
      ((await metric("imageshift_admission_requests_total", {
        webhook: "mutate/strict",
        outcome: "patched",
      })) ?? 0) >= 3,
    );
  });
});
