/**
 * The install, against a real kube-apiserver: `dist/install.yaml` and the chart's other modes
 * apply (server-side dry run), and self-managed certificates work end to end. The operator
 * runs on this host with the chart's own ServiceAccount token (so its RBAC is what is tested),
 * creates the certificate Secret, fills both caBundles, and renews certificate and CA with
 * short lifetimes while pods keep being admitted, in a strict namespace too, where a failed
 * TLS handshake would refuse the pod.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import type { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "node:tls";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { helmPath } from "../../scripts/helm.ts";
import { INSTALL_FILE, INSTALL_NAMESPACE } from "../../scripts/render-install.ts";
import { type ControlPlane, freePorts, startControlPlane } from "./harness/controlplane.ts";
import {
  type Kubectl,
  kubectlFor,
  type OperatorProcess,
  startOperator,
  waitUntil,
} from "./harness/operator.ts";

const CHART = fileURLToPath(new URL("../../charts/imageshift", import.meta.url));
const RELEASE = "imageshift";
const SECRET = "imageshift-tls";
type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
};

function manifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((document) => document.toJS() as Manifest | null)
    .filter((object): object is Manifest => object !== null);
}

const toYaml = (objects: object[]) => objects.map((object) => `---\n${stringify(object)}`).join("");

/** Schema-less stand-ins for the cert-manager and Prometheus Operator CRDs: enough to dry-run our objects. */
function stubCrd(group: string, kind: string, plural: string): Manifest {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
        },
      ],
    },
  };
}

/** The serving certificate a TLS client gets from the webhook port now. */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.end();
      if (raw) resolve(raw);
      else reject(new Error("no peer certificate"));
    });
    socket.setTimeout(5_000, () => socket.destroy(new Error("TLS connect timed out")));
    socket.on("error", reject);
  });
}

describe("install", { timeout: 50 * 60_000 }, () => {
  let cp: ControlPlane | undefined;
  let k: Kubectl;
  let workDir: string;
  let operator: OperatorProcess | undefined;

  before(async () => {
    cp = await startControlPlane({
      buildTimeoutMs: 45 * 60_000,
      keepTempDir: Boolean(process.env.IMAGESHIFT_E2E_KEEP),
    });
    k = kubectlFor(cp.kubeconfigPath);
    workDir = await mkdtemp(path.join(tmpdir(), "imageshift-install-e2e-"));
  });

  after(async () => {
    await operator?.stop();
    await cp?.stop();
    if (workDir && !process.env.IMAGESHIFT_E2E_KEEP) await rm(workDir, { recursive: true, force: true });
    else if (workDir) console.log(`kept ${workDir}`);
  });

  it("dist/install.yaml applies (server-side dry run)", { timeout: 120_000 }, async () => {
    // A dry run cannot create objects in a namespace that does not exist yet: create it first.
    await k.ok(["create", "namespace", INSTALL_NAMESPACE]);
    const output = await k.ok(["apply", "--dry-run=server", "-f", INSTALL_FILE]);
    for (const kind of [
      "customresourcedefinition",
      "deployment",
      "mutatingwebhookconfiguration",
      "validatingwebhookconfiguration",
      "clusterrole",
      "role",
      "poddisruptionbudget",
    ]) {
      assert.match(output, new RegExp(`${kind}[^\\n]*\\(server dry run\\)`), `${kind} in:\n${output}`);
    }
  });

  it("the chart's certManager mode with a ServiceMonitor applies (server-side dry run)", {
    timeout: 120_000,
  }, async () => {
    await k.ok(
      ["apply", "-f", "-"],
      toYaml([
        stubCrd("cert-manager.io", "Issuer", "issuers"),
        stubCrd("cert-manager.io", "Certificate", "certificates"),
        stubCrd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
      ]),
    );
    await k.ok([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "crd/issuers.cert-manager.io",
      "crd/certificates.cert-manager.io",
      "crd/servicemonitors.monitoring.coreos.com",
    ]);
    const rendered = execFileSync(
      await helmPath(),
      [
        "template",
        RELEASE,
        CHART,
        "--namespace",
        INSTALL_NAMESPACE,
        "--include-crds",
        "--set",
        "certificates.mode=certManager",
        "--set",
        "metrics.serviceMonitor.enabled=true",
      ],
      { encoding: "utf8" },
    );
    const output = await k.ok(["apply", "--dry-run=server", "-f", "-"], rendered);
    for (const kind of ["issuer", "certificate", "servicemonitor", "deployment"]) {
      assert.match(output, new RegExp(`${kind}[^\\n]*\\(server dry run\\)`), `${kind} in:\n${output}`);
    }
  });

  it("self-managed certificates: Secret, both caBundles, and rotations without a failed admission", {
    timeout: 240_000,
  }, async () => {
    assert.ok(cp);
    // Everything dist/install.yaml holds but the Deployment (no kubelet here: the operator runs
    // on this host), with the webhooks pointed at it. The port is fixed before the operator
    // starts, since the webhook configurations must name it.
    const [port] = (await freePorts(1)) as [number];
    const objects = manifests(await readFile(INSTALL_FILE, "utf8")).filter(
      (object) => object.kind !== "Deployment",
    );
    for (const configuration of objects.filter((object) => object.kind.endsWith("WebhookConfiguration"))) {
      for (const webhook of configuration.webhooks as {
        clientConfig: { service?: { path: string }; url?: string };
      }[]) {
        webhook.clientConfig = { url: `https://127.0.0.1:${port}${webhook.clientConfig.service?.path}` };
      }
    }
    await k.ok(["apply", "-f", "-"], toYaml(objects));

    // The operator's own identity: a token for the chart's ServiceAccount.
    const token = (
      await k.ok(["create", "token", RELEASE, "--namespace", INSTALL_NAMESPACE, "--duration=1h"])
    ).trim();
    const config = JSON.parse(await k.ok(["config", "view", "--raw", "-o", "json"])) as {
      clusters: { cluster: Record<string, string> }[];
    };
    const serviceAccountKubeconfig = path.join(workDir, "serviceaccount.kubeconfig");
    await writeFile(
      serviceAccountKubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "e2e", cluster: config.clusters[0]?.cluster }],
        users: [{ name: "imageshift", user: { token } }],
        contexts: [{ name: "e2e", context: { cluster: "e2e", user: "imageshift" } }],
        "current-context": "e2e",
      }),
    );

    // Short lifetimes: the serving certificate is renewed every ~10 s, the CA replaced after ~30 s.
    operator = await startOperator({
      name: "self-managed",
      kubeconfigPath: serviceAccountKubeconfig,
      leaseNamespace: INSTALL_NAMESPACE,
      logDir: workDir,
      port,
      readyTimeoutMs: 60_000,
      extraArgs: [
        "--tls-secret",
        SECRET,
        "--webhook-configuration",
        RELEASE,
        "--service-name",
        RELEASE,
        "--leader-election-id",
        `${RELEASE}-leader`, // the Lease the chart's Role names
        "--certificate-names",
        "127.0.0.1,localhost",
        "--ca-validity",
        "45s",
        "--certificate-validity",
        "20s",
        "--renew-before",
        "10s",
      ],
    });

    const secret = await k.json<{ type: string; data: Record<string, string> }>([
      "get",
      "secret",
      SECRET,
      "--namespace",
      INSTALL_NAMESPACE,
    ]);
    assert.equal(secret.type, "kubernetes.io/tls");
    for (const key of ["ca.crt", "ca.key", "tls.crt", "tls.key"])
      assert.ok(secret.data[key], `${key} in the Secret`);
    const caBundles = async () => {
      const bundles: string[] = [];
      for (const kind of ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"]) {
        const configuration = await k.json<{ webhooks: { clientConfig: { caBundle?: string } }[] }>([
          "get",
          kind,
          RELEASE,
        ]);
        for (const webhook of configuration.webhooks) bundles.push(webhook.clientConfig.caBundle ?? "");
      }
      return bundles;
    };
    const bundles = await caBundles();
    assert.equal(bundles.length, 3, "two mutating entries (enabled, strict) and one validating");
    const caPem = Buffer.from(secret.data["ca.crt"] as string, "base64").toString();
    for (const bundle of bundles)
      assert.ok(Buffer.from(bundle, "base64").toString().includes(caPem), "the CA is in every caBundle");

    // Admissions go through the webhook: rules, labelled and strict namespaces.
    await k.ok(
      ["apply", "-f", "-"],
      toYaml([
        {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name: "apps", labels: { "imageshift.dev": "enabled" } },
        },
        {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name: "locked", labels: { "imageshift.dev": "strict" } },
        },
        {
          apiVersion: "imageshift.dev/v1",
          kind: "Imageshift",
          metadata: { name: "mirror" },
          spec: { mappings: { swap: [{ registry: "docker.io", target: "mirror.corp/hub" }] } },
        },
      ]),
    );
    await waitUntil(
      "the rule to reach the operator",
      async () => (await operator?.metric("imageshift_rules_loaded")) === 1,
      { timeoutMs: 20_000 },
    );

    // For ~40 s: a pod every ~500 ms in each namespace, and the served certificate sampled.
    const started = Date.now();
    const leafs = new Set<string>();
    const issuers = new Set<string>();
    let pods = 0;
    for (let i = 0; Date.now() - started < 40_000; i++) {
      for (const namespace of ["apps", "locked"]) {
        const name = `p${i}`;
        const created = await k.run([
          "run",
          name,
          "--namespace",
          namespace,
          "--image=nginx:1.25",
          "--restart=Never",
        ]);
        assert.equal(
          created.code,
          0,
          `pod ${namespace}/${name} was refused ${Math.round((Date.now() - started) / 1000)} s in: ${created.stderr}`,
        );
        const image = (
          await k.ok([
            "get",
            "pod",
            name,
            "--namespace",
            namespace,
            "-o",
            "jsonpath={.spec.containers[0].image}",
          ])
        ).trim();
        assert.equal(image, "mirror.corp/hub/library/nginx:1.25", `pod ${namespace}/${name}`);
        pods++;
      }
      const served = await servedCertificate(port);
      leafs.add(served.fingerprint256);
      issuers.add(served.issuer);
      await sleep(500);
    }
    assert.ok(pods >= 40, `admitted ${pods} pods`);
    assert.ok(leafs.size >= 3, `the serving certificate was renewed while serving (${leafs.size} seen)`);
    assert.ok(issuers.size >= 2, `the CA was replaced while serving (${issuers.size} issuers seen)`);
    // After a CA rotation the bundle holds the new CA and the previous one.
    const rotated = Buffer.from((await caBundles())[0] as string, "base64").toString();
    assert.equal(rotated.match(/BEGIN CERTIFICATE/g)?.length, 2, "new and previous CA in the caBundle");
    assert.ok(
      operator.logs().some((line) => line.msg === "new webhook CA" && line.reason !== "missing"),
      "a CA rotation was logged",
    );
  });
});
