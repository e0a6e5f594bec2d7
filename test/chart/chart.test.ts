/**
 * The Helm chart (charts/imageshift) rendered by a real Helm 4: it lints, the generated files
 * derived from it are fresh, its defaults are safe, and every value in values.yaml changes the
 * rendered output as its comment documents (one table row per value).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { before, describe, it } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { helmPath } from "../../scripts/helm.ts";
import { INSTALL_FILE, renderInstall } from "../../scripts/render-install.ts";
import { localhostCertificate } from "../../src/certs/testing.ts";
import { LOG_LEVELS } from "../../src/telemetry/logger.ts";
import { loopbackFlags } from "../../src/testing.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const CHART = join(ROOT, "charts", "imageshift");
const FIXTURES = import.meta.dirname;
const NAMESPACE = "imageshift-system";
const RELEASE = "imageshift";
const APP_VERSION = String(
  (parse(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as { appVersion: unknown }).appVersion,
);
const VALUES = parse(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Rendered objects (only the fields the assertions read are typed).

type Labels = Record<string, string>;
interface Metadata {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Labels;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  args: string[];
  env: EnvVar[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string | number } };
  readinessProbe: { httpGet: { path: string; port: string | number } };
  resources: { requests?: Labels; limits?: Labels };
  securityContext: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    privileged?: boolean;
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  serviceAccountName: string;
  imagePullSecrets?: { name: string }[];
  priorityClassName?: string;
  securityContext: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; secret?: { secretName: string } }[];
  nodeSelector?: Labels;
  tolerations?: unknown[];
  affinity?: Record<string, unknown>;
  topologySpreadConstraints?: unknown[];
  hostNetwork?: boolean;
  hostPID?: boolean;
}
interface Deployment extends Manifest {
  spec: {
    replicas: number;
    selector: { matchLabels: Labels };
    template: { metadata: { labels: Labels; annotations?: Labels }; spec: PodSpec };
  };
}
interface Service extends Manifest {
  spec: { selector: Labels; ports: { name: string; port: number; targetPort: string | number }[] };
}
interface PodDisruptionBudget extends Manifest {
  spec: { minAvailable: number | string; selector: { matchLabels: Labels } };
}
interface MatchExpression {
  key: string;
  operator: string;
  values: string[];
}
interface WebhookRule {
  apiGroups: string[];
  apiVersions: string[];
  operations: string[];
  resources: string[];
  scope?: string;
}
interface Webhook {
  name: string;
  admissionReviewVersions: string[];
  clientConfig: {
    service: { name: string; namespace: string; path: string; port: number };
    caBundle?: string;
  };
  rules: WebhookRule[];
  namespaceSelector?: { matchExpressions: MatchExpression[] };
  failurePolicy: string;
  matchPolicy?: string;
  sideEffects: string;
  reinvocationPolicy?: string;
  timeoutSeconds: number;
}
interface WebhookConfiguration extends Manifest {
  webhooks: Webhook[];
}
interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface RbacRole extends Manifest {
  rules: PolicyRule[];
}
interface RoleBinding extends Manifest {
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}
interface Certificate extends Manifest {
  spec: {
    secretName: string;
    duration: string;
    renewBefore: string;
    dnsNames: string[];
    issuerRef: { name: string; kind: string; group: string };
  };
}
interface ServiceMonitor extends Manifest {
  spec: {
    selector: { matchLabels: Labels };
    endpoints: { port: string; path: string; interval: string }[];
  };
}

interface NetworkPolicy extends Manifest {
  spec: {
    podSelector: { matchLabels: Labels };
    policyTypes: string[];
    ingress: { ports: { port: number; protocol: string }[]; from?: unknown[] }[];
  };
}

const CLUSTER_SCOPED = new Set([
  "ClusterRole",
  "ClusterRoleBinding",
  "MutatingWebhookConfiguration",
  "ValidatingWebhookConfiguration",
  "CustomResourceDefinition",
  "Namespace",
]);

let helm = "";

/** `--set` arguments; `-f` with a fixture of this directory; a fixture parsed. */
const set = (...assignments: string[]): string[] =>
  assignments.flatMap((assignment) => ["--set", assignment]);
const file = (name: string): string[] => ["-f", join(FIXTURES, name)];
const fixture = (name: string): Record<string, unknown> =>
  parse(readFileSync(join(FIXTURES, name), "utf8")) as Record<string, unknown>;

/** `helm template <release> charts/imageshift --namespace <namespace> <args>`, parsed. */
function render(args: string[] = [], release = RELEASE, namespace = NAMESPACE): Rendered {
  const text = execFileSync(
    helm,
    ["template", release, CHART, "--namespace", namespace, "--skip-tests", ...args],
    {
      encoding: "utf8",
      cwd: ROOT,
    },
  );
  return new Rendered(parseManifests(text), release, namespace);
}

function parseManifests(text: string): Manifest[] {
  const objects: Manifest[] = [];
  for (const document of parseAllDocuments(text)) {
    assert.deepEqual(document.errors, [], `rendered YAML does not parse: ${document.errors.join("; ")}`);
    const value = document.toJS() as Manifest | null;
    if (value !== null) objects.push(value);
  }
  return objects;
}

class Rendered {
  readonly objects: Manifest[];
  readonly release: string;
  readonly namespace: string;
  constructor(objects: Manifest[], release: string, namespace: string) {
    this.objects = objects;
    this.release = release;
    this.namespace = namespace;
  }
  all<T extends Manifest>(kind: string): T[] {
    return this.objects.filter((object) => object.kind === kind) as T[];
  }
  find<T extends Manifest>(kind: string, name?: string): T | undefined {
    return this.all<T>(kind).find((object) => name === undefined || object.metadata.name === name);
  }
  /** The one object of `kind` (named `name`, when given). */
  one<T extends Manifest>(kind: string, name?: string): T {
    const found = this.all<T>(kind).filter((object) => name === undefined || object.metadata.name === name);
    assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, got ${found.length}`);
    return found[0]!;
  }
  get deployment(): Deployment {
    return this.one<Deployment>("Deployment");
  }
  get pod(): PodSpec {
    return this.deployment.spec.template.spec;
  }
  get container(): Container {
    assert.equal(this.pod.containers.length, 1);
    return this.pod.containers[0]!;
  }
  get args(): string[] {
    return this.container.args;
  }
  /** The value of `--<flag>=value` in the container args, or undefined. */
  arg(flag: string): string | undefined {
    const prefix = `--${flag}=`;
    const found = this.args.filter((arg) => arg.startsWith(prefix));
    assert.ok(found.length <= 1, `--${flag} given ${found.length} times`);
    return found[0]?.slice(prefix.length);
  }
  env(name: string): EnvVar | undefined {
    return this.container.env.find((variable) => variable.name === name);
  }
  get mutating(): WebhookConfiguration {
    return this.one<WebhookConfiguration>("MutatingWebhookConfiguration");
  }
  get validating(): WebhookConfiguration {
    return this.one<WebhookConfiguration>("ValidatingWebhookConfiguration");
  }
  mutatingEntry(name: string): Webhook {
    const entry = this.mutating.webhooks.find((webhook) => webhook.name === name);
    assert.ok(entry, `no mutating webhook entry ${name}`);
    return entry;
  }
  get clusterRole(): RbacRole {
    return this.one<RbacRole>("ClusterRole");
  }
  get role(): RbacRole {
    return this.one<RbacRole>("Role");
  }
  get services(): Service[] {
    return this.all<Service>("Service");
  }
}

/** The value of `key` in a namespaceSelector's matchExpressions. */
function expression(webhook: Webhook, key: string): MatchExpression | undefined {
  return webhook.namespaceSelector?.matchExpressions.find((entry) => entry.key === key);
}

function excluded(webhook: Webhook): string[] {
  const found = expression(webhook, "kubernetes.io/metadata.name");
  assert.ok(found, `${webhook.name}: no kubernetes.io/metadata.name expression`);
  assert.equal(found.operator, "NotIn");
  return found.values;
}

/** Every permission a role grants, one `group/resource verb [@names]` string each, sorted. */
function permissions(role: RbacRole): string[] {
  const granted: string[] = [];
  for (const rule of role.rules) {
    for (const group of rule.apiGroups) {
      for (const resource of rule.resources) {
        for (const verb of rule.verbs) {
          const names = rule.resourceNames ? ` @${[...rule.resourceNames].sort().join(",")}` : "";
          granted.push(`${group}/${resource} ${verb}${names}`);
        }
      }
    }
  }
  return granted.sort();
}

function grants(spec: Record<string, string[]>): string[] {
  const granted: string[] = [];
  for (const [key, verbs] of Object.entries(spec)) {
    const [resource, names] = key.split(" @");
    for (const verb of verbs) granted.push(`${resource} ${verb}${names ? ` @${names}` : ""}`);
  }
  return granted.sort();
}

/**
 * What src/k8s, src/operator and src/certs call: rule objects and namespaces only through watches (list and watch, never
 * a get), status by patch on the subresource, the Lease by get/create/update, the Secret by
 * get/create/update and a watch by name, the webhook configurations by get and patch.
 */
function expectedClusterPermissions(fullname: string, { compat = true, selfManaged = true } = {}): string[] {
  return grants({
    "imageshift.dev/imageshifts": ["list", "watch"],
    "imageshift.dev/imageshifts/status": ["patch"],
    ...(compat
      ? {
          "dev.flemzord.fr/registryrewriterules": ["list", "watch"],
          "dev.flemzord.fr/registryrewriterules/status": ["patch"],
        }
      : {}),
    "/namespaces": ["list", "watch"],
    ...(selfManaged
      ? {
          [`admissionregistration.k8s.io/mutatingwebhookconfigurations @${fullname}`]: ["get", "patch"],
          [`admissionregistration.k8s.io/validatingwebhookconfigurations @${fullname}`]: ["get", "patch"],
        }
      : {}),
  });
}

function expectedRolePermissions(
  fullname: string,
  { selfManaged = true, credentials = false } = {},
): string[] {
  const granted = grants({
    "coordination.k8s.io/leases": ["create"],
    [`coordination.k8s.io/leases @${fullname}-leader`]: ["get", "update"],
    ...(selfManaged
      ? {
          "/secrets": ["create"],
          [`/secrets @${fullname}-tls`]: ["get", "list", "watch", "update"],
        }
      : {}),
  });
  // Registry credentials: every dockerconfigjson Secret of the namespace, through a watch only.
  return credentials ? [...granted, "/secrets list", "/secrets watch"].sort() : granted;
}

function assertSubset(subset: Labels, of: Labels | undefined, message: string): void {
  for (const [key, value] of Object.entries(subset)) assert.equal(of?.[key], value, `${message}: ${key}`);
}

/**
 * What holds for every render, whatever the values: objects in the release namespace, the
 * pieces that name one another agree, least privilege.
 */
function assertConsistent(r: Rendered): void {
  for (const object of r.objects) {
    if (CLUSTER_SCOPED.has(object.kind)) assert.equal(object.metadata.namespace, undefined);
    else assert.equal(object.metadata.namespace, r.namespace, `${object.kind} ${object.metadata.name}`);
  }
  const deployment = r.deployment;
  const podLabels = deployment.spec.template.metadata.labels;
  assertSubset(deployment.spec.selector.matchLabels, podLabels, "Deployment selector");
  for (const service of r.services)
    assertSubset(service.spec.selector, podLabels, `Service ${service.metadata.name}`);
  for (const pdb of r.all<PodDisruptionBudget>("PodDisruptionBudget")) {
    assertSubset(pdb.spec.selector.matchLabels, podLabels, "PodDisruptionBudget selector");
  }
  for (const monitor of r.all<ServiceMonitor>("ServiceMonitor")) {
    const selected = r.services.filter((service) =>
      Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels?.[k] === v),
    );
    assert.deepEqual(
      selected.map((service) => service.metadata.name),
      [`${r.deployment.metadata.name}-metrics`],
      "the ServiceMonitor selects the metrics Service only",
    );
  }

  // Webhooks call the webhook Service, which reaches the container's webhook port.
  for (const configuration of [r.mutating, r.validating]) {
    for (const webhook of configuration.webhooks) {
      const target = webhook.clientConfig.service;
      assert.equal(target.namespace, r.namespace);
      assert.equal(target.port, 443);
      const service = r.one<Service>("Service", target.name);
      const port = service.spec.ports.find((entry) => entry.port === 443);
      assert.ok(port, `Service ${target.name} has no port 443`);
      assert.ok(r.container.ports.some((entry) => entry.name === port.targetPort));
      assert.equal(webhook.clientConfig.caBundle, undefined, "the caBundle is filled in at run time");
    }
  }

  // RBAC: bound to the pod's service account, no wildcard, nothing on pods.
  const serviceAccount = r.pod.serviceAccountName;
  for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
    const binding = r.one<RoleBinding>(kind);
    assert.deepEqual(binding.subjects, [
      { kind: "ServiceAccount", name: serviceAccount, namespace: r.namespace },
    ]);
    r.one(binding.roleRef.kind, binding.roleRef.name);
  }
  for (const role of [...r.all<RbacRole>("ClusterRole"), ...r.all<RbacRole>("Role")]) {
    for (const rule of role.rules) {
      for (const field of [rule.apiGroups, rule.resources, rule.verbs]) {
        assert.ok(!field.includes("*"), `${role.kind} has a wildcard: ${JSON.stringify(rule)}`);
      }
      assert.ok(
        !rule.resources.some((resource) => resource.split("/")[0] === "pods"),
        `${role.kind} on pods`,
      );
      for (const verb of ["escalate", "bind", "impersonate", "delete", "deletecollection"]) {
        assert.ok(!rule.verbs.includes(verb), `${role.kind} grants ${verb}`);
      }
    }
  }

  // Leader election: the Lease the server is told to use is the one the Role lets it update.
  assert.equal(r.arg("leader-election-id"), `${r.deployment.metadata.name}-leader`);
  assert.ok(
    r.role.rules.some((rule) => rule.resourceNames?.includes(r.arg("leader-election-id") as string)),
    "the Role names the Lease",
  );

  // Certificates: the names the server is given are the ones the chart creates.
  const webhookConfigurations = [r.mutating.metadata.name, r.validating.metadata.name];
  const webhookService = r.mutating.webhooks[0]!.clientConfig.service.name;
  const selfManaged = r.arg("tls-secret") !== undefined;
  if (selfManaged) {
    assert.deepEqual(webhookConfigurations, [r.arg("webhook-configuration"), r.arg("webhook-configuration")]);
    assert.equal(r.arg("service-name"), webhookService);
    assert.equal(r.find("Certificate"), undefined);
    assert.deepEqual(
      permissions(r.role),
      expectedRolePermissions(r.deployment.metadata.name, {
        credentials: r.args.includes("--registry-credentials"),
      }),
    );
    assert.equal(`${r.deployment.metadata.name}-tls`, r.arg("tls-secret"));
  } else {
    const certificate = r.one<Certificate>("Certificate");
    const volume = r.pod.volumes?.find((entry) => entry.name === "tls");
    assert.equal(volume?.secret?.secretName, certificate.spec.secretName);
    for (const configuration of [r.mutating, r.validating]) {
      assert.equal(
        configuration.metadata.annotations?.["cert-manager.io/inject-ca-from"],
        `${r.namespace}/${certificate.metadata.name}`,
      );
    }
    assert.ok(certificate.spec.dnsNames.includes(`${webhookService}.${r.namespace}.svc`));
  }
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  helm = await helmPath();
});

describe("helm lint", () => {
  const cases: [string, string[]][] = [
    ["default values", []],
    ["default values, --strict", ["--strict"]],
    ["certManager mode", ["--set", "certificates.mode=certManager"]],
    ["certManager mode, --strict", ["--strict", "--set", "certificates.mode=certManager"]],
    ["certManager mode with an issuerRef, --strict", ["--strict", "-f", join(FIXTURES, "issuer-ref.yaml")]],
    [
      "scheduling values, --strict",
      ["--strict", "-f", join(FIXTURES, "affinity.yaml"), "-f", join(FIXTURES, "tolerations.yaml")],
    ],
  ];
  for (const [name, args] of cases) {
    it(name, () => {
      const result = spawnSync(helm, ["lint", CHART, ...args], { encoding: "utf8", cwd: ROOT });
      assert.equal(result.status, 0, `helm lint ${args.join(" ")} failed:\n${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    });
  }
});

describe("generated files are up to date", () => {
  it("dist/install.yaml is the chart's default render", async () => {
    const expected = await renderInstall();
    assert.ok(
      readFileSync(INSTALL_FILE, "utf8") === expected,
      "dist/install.yaml is stale: run `node scripts/render-install.ts`",
    );
  });

  // The chart's CRDs against `imageshift crds`: src/api/crds.test.ts.

  it("dist/install.yaml holds a Namespace, the CRDs and the chart's objects", () => {
    const objects = parseManifests(readFileSync(INSTALL_FILE, "utf8"));
    assert.equal(objects[0]?.kind, "Namespace");
    assert.equal(objects[0]?.metadata.name, NAMESPACE);
    assert.deepEqual(
      objects
        .filter((object) => object.kind === "CustomResourceDefinition")
        .map((object) => object.metadata.name),
      ["imageshifts.imageshift.dev", "registryrewriterules.dev.flemzord.fr"],
    );
    assert.equal(objects.filter((object) => object.kind === "Deployment").length, 1);
    assert.equal(objects[0]?.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
    // `kubectl apply -f` follows the file: the webhooks are registered after what serves them.
    const kinds = objects.map((object) => object.kind);
    const last = (kind: string): number => kinds.lastIndexOf(kind);
    for (const kind of [
      "CustomResourceDefinition",
      "ServiceAccount",
      "ClusterRoleBinding",
      "Service",
      "Deployment",
    ]) {
      assert.ok(last(kind) < kinds.indexOf("MutatingWebhookConfiguration"), `${kind} after the webhooks`);
      assert.ok(last(kind) < kinds.indexOf("ValidatingWebhookConfiguration"), `${kind} after the webhooks`);
    }
  });
});

/** NOTES.txt, as `helm install --dry-run=client` prints it (no cluster: KUBECONFIG names no file). */
function notes(args: string[]): string {
  const output = execFileSync(
    helm,
    ["install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=client", ...args],
    { encoding: "utf8", cwd: ROOT, env: { ...process.env, KUBECONFIG: join(FIXTURES, "absent-kubeconfig") } },
  );
  const start = output.indexOf("NOTES:\n");
  assert.ok(start >= 0, "no NOTES in helm install --dry-run output");
  return output.slice(start);
}

describe("NOTES.txt", () => {
  it("default: the label to set and both kinds to check", () => {
    const text = notes([]);
    assert.match(text, new RegExp(`installed in ${NAMESPACE}\\.`));
    assert.match(text, /kubectl label namespace NAME imageshift\.dev=enabled/);
    assert.match(text, /imageshift\.dev=strict/);
    assert.match(text, /kubectl get ims,rrr\n/);
  });

  it("the command that labels the release namespace for the restricted pod security level", () => {
    const label = "pod-security\\.kubernetes\\.io/enforce=restricted";
    assert.match(notes([]), new RegExp(`kubectl label namespace ${NAMESPACE} ${label}\\n`));
  });

  it("namespaceLabel and compatKind.enabled=false", () => {
    const text = notes(set("namespaceLabel=example.com/shift", "compatKind.enabled=false"));
    assert.match(text, /kubectl label namespace NAME example\.com\/shift=enabled/);
    assert.doesNotMatch(text, /imageshift\.dev=/);
    assert.match(text, /kubectl get ims\n/);
  });

  it("allNamespaces=true: no label to set; the namespaces left out and the pod opt-out", () => {
    const text = notes(set("allNamespaces=true", "excludedNamespaces={monitoring}"));
    assert.doesNotMatch(text, /imageshift\.dev=enabled/);
    assert.match(
      text,
      new RegExp(`every namespace are rewritten, except in kube-system, ${NAMESPACE}, monitoring;`),
    );
    assert.match(text, /imageshift\.dev\/skip: "true"/);
  });

  it("strictNamespaces.enabled=false: no strict label suggested", () => {
    assert.doesNotMatch(notes(set("strictNamespaces.enabled=false")), /=strict/);
  });
});

describe("safe defaults (default render)", () => {
  let r: Rendered;
  before(() => {
    r = render();
  });

  it("renders a consistent set of objects", () => {
    assertConsistent(r);
    assert.deepEqual(r.objects.map((object) => `${object.kind}/${object.metadata.name}`).sort(), [
      "ClusterRole/imageshift",
      "ClusterRoleBinding/imageshift",
      "Deployment/imageshift",
      "MutatingWebhookConfiguration/imageshift",
      "NetworkPolicy/imageshift",
      "PodDisruptionBudget/imageshift",
      "Role/imageshift",
      "RoleBinding/imageshift",
      "Service/imageshift",
      "Service/imageshift-metrics",
      "ServiceAccount/imageshift",
      "ValidatingWebhookConfiguration/imageshift",
    ]);
  });

  it("two replicas, a PodDisruptionBudget of minAvailable 1, anti-affinity across nodes", () => {
    assert.equal(r.deployment.spec.replicas, 2);
    assert.equal(r.one<PodDisruptionBudget>("PodDisruptionBudget").spec.minAvailable, 1);
    assert.deepEqual(r.pod.affinity, {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              topologyKey: "kubernetes.io/hostname",
              labelSelector: { matchLabels: r.deployment.spec.selector.matchLabels },
            },
          },
        ],
      },
    });
  });

  it("restricted pod security", () => {
    assert.equal(r.pod.securityContext.runAsNonRoot, true);
    assert.notEqual(r.pod.securityContext.runAsUser, 0);
    assert.deepEqual(r.pod.securityContext.seccompProfile, { type: "RuntimeDefault" });
    assert.equal(r.pod.hostNetwork, undefined);
    assert.equal(r.pod.hostPID, undefined);
    const security = r.container.securityContext;
    assert.equal(security.allowPrivilegeEscalation, false);
    assert.equal(security.readOnlyRootFilesystem, true);
    assert.deepEqual(security.capabilities, { drop: ["ALL"] });
    assert.equal(security.privileged, undefined);
  });

  it("requests and limits", () => {
    assert.deepEqual(r.container.resources, VALUES.resources);
    assert.ok(r.container.resources.requests?.cpu && r.container.resources.requests.memory);
    assert.ok(r.container.resources.limits?.memory);
  });

  it("image, probes, args and environment", () => {
    assert.equal(r.container.image, `ghcr.io/imageshift/imageshift:${APP_VERSION}`);
    assert.equal(r.container.imagePullPolicy, "IfNotPresent");
    assert.deepEqual(r.container.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
    assert.deepEqual(r.container.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
    assert.ok(r.container.ports.some((port) => port.name === "metrics"));
    assert.deepEqual(r.args, [
      "serve",
      "--port=8443",
      "--metrics-port=8080",
      "--log-level=info",
      "--namespace-label=imageshift.dev",
      "--shutdown-delay=5",
      `--leader-election-namespace=${NAMESPACE}`,
      "--leader-election-id=imageshift-leader",
      "--verify-deadline=2s",
      "--registry-timeout=5s",
      "--verify-positive-ttl=5m",
      "--verify-negative-ttl=30s",
      "--verify-stale=1h",
      "--breaker-failures=5",
      "--breaker-cool-down=30s",
      "--tls-secret=imageshift-tls",
      "--webhook-configuration=imageshift",
      "--service-name=imageshift",
      "--ca-validity=87600h",
      "--certificate-validity=2160h",
      "--renew-before=720h",
    ]);
    assert.deepEqual(r.env("POD_NAMESPACE"), {
      name: "POD_NAMESPACE",
      valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } },
    });
    assert.equal(r.env("NODE_OPTIONS")?.value, "--max-semi-space-size=2 --max-old-space-size=96");
    assert.equal(r.pod.serviceAccountName, "imageshift");
    assert.equal(r.pod.volumes, undefined);
  });

  it("MutatingWebhookConfiguration: a fail-open and a strict entry", () => {
    const webhooks = r.mutating.webhooks;
    assert.deepEqual(
      webhooks.map((webhook) => [webhook.name, webhook.failurePolicy]),
      [
        ["pods.imageshift.dev", "Ignore"],
        ["strict-pods.imageshift.dev", "Fail"],
      ],
    );
    const labelValues = ["enabled", "strict"];
    // The strict entry has its own path: the handler knows the namespace is strict from it.
    const paths = ["/mutate", "/mutate/strict"];
    webhooks.forEach((webhook, index) => {
      assert.deepEqual(expression(webhook, "imageshift.dev"), {
        key: "imageshift.dev",
        operator: "In",
        values: [labelValues[index]],
      });
      assert.deepEqual(excluded(webhook), ["kube-system", NAMESPACE]);
      assert.deepEqual(webhook.rules, [
        {
          apiGroups: [""],
          apiVersions: ["v1"],
          operations: ["CREATE", "UPDATE"],
          resources: ["pods", "pods/ephemeralcontainers"],
          scope: "Namespaced",
        },
      ]);
      assert.equal(webhook.sideEffects, "None");
      assert.equal(webhook.reinvocationPolicy, "IfNeeded");
      assert.equal(webhook.timeoutSeconds, 5);
      assert.deepEqual(webhook.admissionReviewVersions, ["v1"]);
      assert.deepEqual(webhook.clientConfig.service, {
        name: "imageshift",
        namespace: NAMESPACE,
        path: paths[index],
        port: 443,
      });
    });
    assert.equal(r.mutating.metadata.annotations, undefined);
  });

  it("ValidatingWebhookConfiguration covers both rule kinds", () => {
    const [webhook, ...rest] = r.validating.webhooks;
    assert.ok(webhook);
    assert.deepEqual(rest, []);
    assert.deepEqual(
      webhook.rules.map((rule) => [rule.apiGroups, rule.resources, rule.operations]),
      [
        [["imageshift.dev"], ["imageshifts"], ["CREATE", "UPDATE"]],
        [["dev.flemzord.fr"], ["registryrewriterules"], ["CREATE", "UPDATE"]],
      ],
    );
    assert.deepEqual(webhook.clientConfig.service, {
      name: "imageshift",
      namespace: NAMESPACE,
      path: "/validate",
      port: 443,
    });
    assert.equal(webhook.sideEffects, "None");
    assert.equal(webhook.timeoutSeconds, 5);
  });

  it("a NetworkPolicy: ingress to the webhook port only, from any source (no API server range known)", () => {
    const policy = r.one<NetworkPolicy>("NetworkPolicy");
    assert.deepEqual(policy.spec.podSelector.matchLabels, r.deployment.spec.selector.matchLabels);
    assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
    assert.deepEqual(policy.spec.ingress, [{ ports: [{ port: 8443, protocol: "TCP" }] }]);
    const ports = r.container.ports;
    assert.equal(ports.find((port) => port.name === "webhook")?.containerPort, 8443);
    assert.equal(ports.find((port) => port.name === "metrics")?.containerPort, 8080);
  });

  it("the webhook Service listens on 443", () => {
    const service = r.one<Service>("Service", "imageshift");
    assert.deepEqual(service.spec.ports, [{ name: "webhook", port: 443, targetPort: "webhook" }]);
  });

  it("RBAC is least privilege", () => {
    assert.deepEqual(permissions(r.clusterRole), expectedClusterPermissions("imageshift"));
    assert.deepEqual(permissions(r.role), expectedRolePermissions("imageshift"));
  });
});

// ---------------------------------------------------------------------------------------------

interface Row {
  /** The values.yaml paths this row covers (a path covers everything under it). */
  values: string[];
  /** What the row sets, as passed to helm template. */
  args: string[];
  /** Documented effect. */
  effect: string;
  release?: string;
  namespace?: string;
  todo?: string;
  check: (r: Rendered) => void;
}

const ROWS: Row[] = [
  {
    values: ["image.repository"],
    args: set("image.repository=registry.example.com/mirror/imageshift"),
    effect: "the container image's repository",
    check: (r) => assert.equal(r.container.image, `registry.example.com/mirror/imageshift:${APP_VERSION}`),
  },
  {
    values: ["image.tag"],
    args: ["--set-string", "image.tag=1.2.3-rc.1"],
    effect: "the container image's tag",
    check: (r) => assert.equal(r.container.image, "ghcr.io/imageshift/imageshift:1.2.3-rc.1"),
  },
  {
    values: ["image.tag"],
    args: set("image.tag="),
    effect: "an empty tag defaults to the chart's appVersion",
    check: (r) => assert.equal(r.container.image, `ghcr.io/imageshift/imageshift:${APP_VERSION}`),
  },
  {
    values: ["image.pullPolicy"],
    args: set("image.pullPolicy=Always"),
    effect: "imagePullPolicy",
    check: (r) => assert.equal(r.container.imagePullPolicy, "Always"),
  },
  {
    values: ["imagePullSecrets"],
    args: set("imagePullSecrets[0].name=regcred", "imagePullSecrets[1].name=other"),
    effect: "the pod's imagePullSecrets",
    check: (r) => assert.deepEqual(r.pod.imagePullSecrets, [{ name: "regcred" }, { name: "other" }]),
  },
  {
    values: ["replicaCount"],
    args: set("replicaCount=3"),
    effect: "the Deployment's replicas",
    check: (r) => assert.equal(r.deployment.spec.replicas, 3),
  },
  {
    values: ["resources"],
    args: file("resources.yaml"),
    effect: "the container's requests and limits",
    check: (r) => assert.deepEqual(r.container.resources, fixture("resources.yaml").resources),
  },
  {
    values: ["nodeSelector"],
    args: set("nodeSelector.kubernetes\\.io/os=linux", "nodeSelector.pool=infra"),
    effect: "the pod's nodeSelector",
    check: (r) => assert.deepEqual(r.pod.nodeSelector, { "kubernetes.io/os": "linux", pool: "infra" }),
  },
  {
    values: ["tolerations"],
    args: file("tolerations.yaml"),
    effect: "the pod's tolerations",
    check: (r) => assert.deepEqual(r.pod.tolerations, fixture("tolerations.yaml").tolerations),
  },
  {
    values: ["affinity"],
    args: file("affinity.yaml"),
    effect: "the pod's affinity, replacing the default pod anti-affinity",
    check: (r) => {
      assert.deepEqual(r.pod.affinity, fixture("affinity.yaml").affinity);
      assert.equal(r.pod.affinity?.podAntiAffinity, undefined);
    },
  },
  {
    values: ["topologySpreadConstraints"],
    args: file("topology-spread.yaml"),
    effect: "the pod's topologySpreadConstraints (the default anti-affinity stays)",
    check: (r) => {
      assert.deepEqual(
        r.pod.topologySpreadConstraints,
        fixture("topology-spread.yaml").topologySpreadConstraints,
      );
      assert.ok(r.pod.affinity?.podAntiAffinity);
    },
  },
  {
    values: ["priorityClassName"],
    args: set("priorityClassName=system-cluster-critical"),
    effect: "the pod's priorityClassName",
    check: (r) => assert.equal(r.pod.priorityClassName, "system-cluster-critical"),
  },
  {
    values: ["podDisruptionBudget.enabled"],
    args: set("podDisruptionBudget.enabled=false"),
    effect: "no PodDisruptionBudget",
    check: (r) => assert.equal(r.find("PodDisruptionBudget"), undefined),
  },
  {
    values: ["podDisruptionBudget.minAvailable"],
    args: set("podDisruptionBudget.minAvailable=2"),
    effect: "the PodDisruptionBudget's minAvailable",
    check: (r) => assert.equal(r.one<PodDisruptionBudget>("PodDisruptionBudget").spec.minAvailable, 2),
  },
  {
    values: ["podDisruptionBudget.minAvailable"],
    args: set("podDisruptionBudget.minAvailable=50%"),
    effect: "a percentage minAvailable",
    check: (r) => assert.equal(r.one<PodDisruptionBudget>("PodDisruptionBudget").spec.minAvailable, "50%"),
  },
  {
    values: ["namespaceLabel"],
    args: set("namespaceLabel=example.com/imageshift"),
    effect: "the namespace label key both mutating entries select on, and the server's --namespace-label",
    check: (r) => {
      assert.equal(r.arg("namespace-label"), "example.com/imageshift");
      const [first, strict] = r.mutating.webhooks;
      assert.deepEqual(expression(first!, "example.com/imageshift")?.values, ["enabled"]);
      assert.deepEqual(expression(strict!, "example.com/imageshift")?.values, ["strict"]);
      assert.equal(expression(first!, "imageshift.dev"), undefined);
      assert.equal(expression(strict!, "imageshift.dev"), undefined);
    },
  },
  {
    values: ["allNamespaces"],
    args: set("allNamespaces=true"),
    effect: "the first entry serves every namespace but the strict ones and the excluded; strict unchanged",
    check: (r) => {
      const first = r.mutatingEntry("pods.imageshift.dev");
      assert.deepEqual(first.namespaceSelector?.matchExpressions, [
        { key: "imageshift.dev", operator: "NotIn", values: ["strict"] },
        { key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system", NAMESPACE] },
      ]);
      const strict = r.mutatingEntry("strict-pods.imageshift.dev");
      assert.deepEqual(expression(strict, "imageshift.dev"), {
        key: "imageshift.dev",
        operator: "In",
        values: ["strict"],
      });
      assert.deepEqual(excluded(strict), ["kube-system", NAMESPACE]);
      assert.deepEqual(
        expression(render().mutatingEntry("pods.imageshift.dev"), "imageshift.dev")?.values,
        ["enabled"],
        "label gating by default",
      );
    },
  },
  {
    values: ["allNamespaces"],
    args: set("allNamespaces=true", "strictNamespaces.enabled=false", "excludedNamespaces={monitoring}"),
    effect: "without the strict entry, every namespace but the excluded (strict-labelled ones too)",
    check: (r) => {
      assert.deepEqual(
        r.mutating.webhooks.map((webhook) => webhook.name),
        ["pods.imageshift.dev"],
      );
      assert.deepEqual(r.mutating.webhooks[0]!.namespaceSelector?.matchExpressions, [
        {
          key: "kubernetes.io/metadata.name",
          operator: "NotIn",
          values: ["kube-system", NAMESPACE, "monitoring"],
        },
      ]);
    },
  },
  {
    values: ["allNamespaces", "namespaceLabel"],
    args: set("allNamespaces=true", "namespaceLabel=example.com/imageshift"),
    effect: "the strict exception uses the namespace label key",
    check: (r) =>
      assert.deepEqual(expression(r.mutatingEntry("pods.imageshift.dev"), "example.com/imageshift"), {
        key: "example.com/imageshift",
        operator: "NotIn",
        values: ["strict"],
      }),
  },
  {
    values: ["failurePolicy"],
    args: set("failurePolicy=Fail"),
    effect: "the failurePolicy of the first mutating entry only",
    check: (r) => {
      assert.equal(r.mutatingEntry("pods.imageshift.dev").failurePolicy, "Fail");
      assert.equal(r.mutatingEntry("strict-pods.imageshift.dev").failurePolicy, "Fail");
      assert.equal(r.validating.webhooks[0]!.failurePolicy, "Ignore");
    },
  },
  {
    values: ["strictNamespaces.enabled"],
    args: set("strictNamespaces.enabled=false"),
    effect: "one mutating entry (no strict entry)",
    check: (r) => {
      assert.deepEqual(
        r.mutating.webhooks.map((webhook) => webhook.name),
        ["pods.imageshift.dev"],
      );
      assert.equal(r.mutating.webhooks[0]!.failurePolicy, "Ignore");
    },
  },
  {
    values: ["timeoutSeconds"],
    args: set("timeoutSeconds=12"),
    effect: "every webhook's timeoutSeconds",
    check: (r) => {
      const webhooks = [...r.mutating.webhooks, ...r.validating.webhooks];
      assert.equal(webhooks.length, 3);
      for (const webhook of webhooks) assert.equal(webhook.timeoutSeconds, 12, webhook.name);
    },
  },
  {
    values: ["excludedNamespaces"],
    args: set("excludedNamespaces={monitoring,cert-manager,kube-system}"),
    effect: "added to both mutating entries; kube-system and the release namespace stay",
    check: (r) => {
      for (const webhook of r.mutating.webhooks) {
        assert.deepEqual(excluded(webhook), ["kube-system", NAMESPACE, "monitoring", "cert-manager"]);
      }
    },
  },
  {
    values: [],
    args: [],
    namespace: "platform",
    effect: "the release namespace is excluded and holds the namespaced objects",
    check: (r) => {
      for (const webhook of r.mutating.webhooks)
        assert.deepEqual(excluded(webhook), ["kube-system", "platform"]);
      assert.equal(r.arg("leader-election-namespace"), "platform");
    },
  },
  {
    values: ["logLevel"],
    args: set("logLevel=debug"),
    effect: "--log-level",
    check: (r) => assert.equal(r.arg("log-level"), "debug"),
  },
  {
    values: ["shutdownDelaySeconds"],
    args: set("shutdownDelaySeconds=12"),
    effect: "--shutdown-delay, and a termination grace period that covers it and the 25 s drain",
    check: (r) => {
      assert.equal(r.arg("shutdown-delay"), "12");
      assert.equal(r.pod.terminationGracePeriodSeconds, 42);
      const byDefault = render();
      assert.equal(byDefault.arg("shutdown-delay"), "5");
      assert.equal(byDefault.pod.terminationGracePeriodSeconds, 35);
    },
  },
  {
    values: ["failClosed"],
    args: set("failClosed=true"),
    effect: "--fail-closed",
    check: (r) => {
      assert.ok(r.args.includes("--fail-closed"));
      assert.ok(!render().args.includes("--fail-closed"), "not by default");
    },
  },
  {
    values: ["registryCredentials.enabled"],
    args: set("registryCredentials.enabled=true"),
    effect: "--registry-credentials; list and watch on the release namespace's Secrets, in the Role only",
    check: (r) => {
      assert.ok(r.args.includes("--registry-credentials"));
      const byDefault = render();
      assert.ok(!byDefault.args.includes("--registry-credentials"), "not by default");
      assert.deepEqual(permissions(r.role), expectedRolePermissions("imageshift", { credentials: true }));
      assert.deepEqual(permissions(byDefault.role), expectedRolePermissions("imageshift"));
      assert.deepEqual(permissions(r.clusterRole), expectedClusterPermissions("imageshift"));
      // Also in certManager mode, where the Role otherwise holds no Secret at all.
      const certManager = render(set("registryCredentials.enabled=true", "certificates.mode=certManager"));
      assert.deepEqual(
        permissions(certManager.role),
        expectedRolePermissions("imageshift", { selfManaged: false, credentials: true }),
      );
    },
  },
  ...(
    [
      ["verification.deadline", "0.5s", "verify-deadline"],
      ["verification.requestTimeout", "2.5s", "registry-timeout"],
      ["verification.positiveTtl", "12h", "verify-positive-ttl"],
      ["verification.negativeTtl", "10s", "verify-negative-ttl"],
      ["verification.staleFor", "30m", "verify-stale"],
      ["verification.breaker.failures", "3", "breaker-failures"],
      ["verification.breaker.coolDown", "2m", "breaker-cool-down"],
    ] as const
  ).map(
    ([value, given, flag]): Row => ({
      values: [value],
      args: set(`${value}=${given}`),
      effect: `--${flag}`,
      check: (r) => {
        assert.equal(r.arg(flag), given);
        assert.notEqual(render().arg(flag), given, "not the default");
      },
    }),
  ),
  {
    values: ["nodeOptions"],
    args: ["--set-string", "nodeOptions=--max-old-space-size=200 --max-semi-space-size=4"],
    effect: "the NODE_OPTIONS environment variable",
    check: (r) =>
      assert.deepEqual(r.env("NODE_OPTIONS"), {
        name: "NODE_OPTIONS",
        value: "--max-old-space-size=200 --max-semi-space-size=4",
      }),
  },
  {
    values: ["metrics.mrwCompat"],
    args: set("metrics.mrwCompat=true"),
    effect: "--mrw-metrics",
    check: (r) => {
      assert.ok(r.args.includes("--mrw-metrics"));
      assert.ok(!render().args.includes("--mrw-metrics"), "not by default");
    },
  },
  {
    values: ["metrics.service.enabled"],
    args: set("metrics.service.enabled=false"),
    effect: "no metrics Service (the webhook Service stays)",
    check: (r) =>
      assert.deepEqual(
        r.services.map((service) => service.metadata.name),
        ["imageshift"],
      ),
  },
  {
    values: ["metrics.service.port"],
    args: set("metrics.service.port=9090"),
    effect: "the metrics Service's port (to the container's metrics port)",
    check: (r) =>
      assert.deepEqual(r.one<Service>("Service", "imageshift-metrics").spec.ports, [
        { name: "metrics", port: 9090, targetPort: "metrics" },
      ]),
  },
  {
    values: ["metrics.serviceMonitor.enabled"],
    args: set("metrics.serviceMonitor.enabled=true"),
    effect: "a ServiceMonitor scraping the metrics Service every 30s",
    check: (r) => {
      const monitor = r.one<ServiceMonitor>("ServiceMonitor", "imageshift");
      assert.equal(monitor.apiVersion, "monitoring.coreos.com/v1");
      assert.deepEqual(monitor.spec.endpoints, [{ port: "metrics", path: "/metrics", interval: "30s" }]);
      assert.equal(render().find("ServiceMonitor"), undefined, "none by default");
    },
  },
  {
    values: ["metrics.serviceMonitor.interval"],
    args: set("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.interval=15s"),
    effect: "the ServiceMonitor's scrape interval",
    check: (r) => assert.equal(r.one<ServiceMonitor>("ServiceMonitor").spec.endpoints[0]?.interval, "15s"),
  },
  {
    values: ["metrics.serviceMonitor.labels"],
    args: set("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=kube-prometheus"),
    effect: "labels on the ServiceMonitor (for the Prometheus selector)",
    check: (r) => {
      const labels = r.one<ServiceMonitor>("ServiceMonitor").metadata.labels;
      assert.equal(labels?.release, "kube-prometheus");
      assert.equal(labels?.["app.kubernetes.io/name"], "imageshift");
    },
  },
  {
    values: ["compatKind.enabled"],
    args: set("compatKind.enabled=false"),
    effect: "--disable-compat-kind; no registryrewriterules in RBAC or the validating webhook",
    check: (r) => {
      assert.ok(r.args.includes("--disable-compat-kind"));
      assert.ok(!render().args.includes("--disable-compat-kind"), "not by default");
      assert.deepEqual(
        permissions(r.clusterRole),
        expectedClusterPermissions("imageshift", { compat: false }),
      );
      assert.deepEqual(
        r.validating.webhooks.flatMap((webhook) => webhook.rules.flatMap((rule) => rule.resources)),
        ["imageshifts"],
      );
    },
  },
  {
    values: ["certificates.mode"],
    args: set("certificates.mode=certManager"),
    effect: "a self-signed Issuer and a Certificate; cainjector annotations; the secret mounted",
    check: (r) => {
      const issuer = r.one("Issuer", "imageshift-selfsigned");
      assert.equal(issuer.apiVersion, "cert-manager.io/v1");
      const certificate = r.one<Certificate>("Certificate", "imageshift");
      assert.equal(certificate.apiVersion, "cert-manager.io/v1");
      assert.equal(certificate.spec.secretName, "imageshift-tls");
      assert.deepEqual(certificate.spec.dnsNames, [
        `imageshift.${NAMESPACE}.svc`,
        `imageshift.${NAMESPACE}.svc.cluster.local`,
      ]);
      assert.deepEqual(certificate.spec.issuerRef, {
        name: "imageshift-selfsigned",
        kind: "Issuer",
        group: "cert-manager.io",
      });
      for (const configuration of [r.mutating, r.validating]) {
        assert.deepEqual(configuration.metadata.annotations, {
          "cert-manager.io/inject-ca-from": `${NAMESPACE}/imageshift`,
        });
      }
      assert.deepEqual(r.pod.volumes, [{ name: "tls", secret: { secretName: "imageshift-tls" } }]);
      assert.deepEqual(r.container.volumeMounts, [
        { name: "tls", mountPath: "/etc/imageshift/tls", readOnly: true },
      ]);
      assert.equal(r.arg("tls-cert-file"), "/etc/imageshift/tls/tls.crt");
      assert.equal(r.arg("tls-key-file"), "/etc/imageshift/tls/tls.key");
      for (const flag of [
        "tls-secret",
        "webhook-configuration",
        "service-name",
        "ca-validity",
        "certificate-validity",
        "renew-before",
      ]) {
        assert.equal(r.arg(flag), undefined, `--${flag} in certManager mode`);
      }
      assert.deepEqual(
        permissions(r.clusterRole),
        expectedClusterPermissions("imageshift", { selfManaged: false }),
      );
      assert.deepEqual(permissions(r.role), expectedRolePermissions("imageshift", { selfManaged: false }));
    },
  },
  {
    values: ["certificates.certManager.issuerRef"],
    args: file("issuer-ref.yaml"),
    effect: "no Issuer; the Certificate uses the given issuerRef",
    check: (r) => {
      assert.equal(r.find("Issuer"), undefined);
      assert.deepEqual(r.one<Certificate>("Certificate").spec.issuerRef, {
        name: "my-ca-issuer",
        kind: "ClusterIssuer",
        group: "cert-manager.io",
      });
    },
  },
  {
    values: ["certificates.certManager.duration"],
    args: set("certificates.mode=certManager", "certificates.certManager.duration=8760h"),
    effect: "the Certificate's duration",
    check: (r) => {
      const certificate = r.one<Certificate>("Certificate");
      assert.equal(certificate.spec.duration, "8760h");
      assert.equal(certificate.spec.renewBefore, "720h");
    },
  },
  {
    values: ["certificates.certManager.renewBefore"],
    args: set("certificates.mode=certManager", "certificates.certManager.renewBefore=360h"),
    effect: "the Certificate's renewBefore",
    check: (r) => {
      const certificate = r.one<Certificate>("Certificate");
      assert.equal(certificate.spec.renewBefore, "360h");
      assert.equal(certificate.spec.duration, "2160h");
    },
  },
  {
    values: ["certificates.selfManaged.caValidity"],
    args: set("certificates.selfManaged.caValidity=24000h"),
    effect: "--ca-validity",
    check: (r) => assert.equal(r.arg("ca-validity"), "24000h"),
  },
  {
    values: ["certificates.selfManaged.certificateValidity"],
    args: set("certificates.selfManaged.certificateValidity=1080h"),
    effect: "--certificate-validity",
    check: (r) => assert.equal(r.arg("certificate-validity"), "1080h"),
  },
  {
    values: ["certificates.selfManaged.renewBefore"],
    args: set("certificates.selfManaged.renewBefore=240h"),
    effect: "--renew-before",
    check: (r) => assert.equal(r.arg("renew-before"), "240h"),
  },
  {
    values: ["serviceAccount.create", "serviceAccount.name"],
    args: set("serviceAccount.create=false", "serviceAccount.name=shared-sa"),
    effect: "no ServiceAccount; the Deployment and both bindings use the given name",
    check: (r) => {
      assert.equal(r.find("ServiceAccount"), undefined);
      assert.equal(r.pod.serviceAccountName, "shared-sa");
      for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
        assert.equal(r.one<RoleBinding>(kind).subjects[0]?.name, "shared-sa");
      }
    },
  },
  {
    values: ["serviceAccount.name"],
    args: set("serviceAccount.name=custom-sa"),
    effect: "the created ServiceAccount's name",
    check: (r) => {
      assert.equal(r.one("ServiceAccount").metadata.name, "custom-sa");
      assert.equal(r.pod.serviceAccountName, "custom-sa");
    },
  },
  {
    values: ["podAnnotations"],
    // --set-string: `--set` would make "true" a boolean, which the API server refuses as an annotation.
    args: [
      "--set-string",
      "podAnnotations.prometheus\\.io/scrape=true",
      ...set("podAnnotations.team=platform"),
    ],
    effect: "annotations on the pod template",
    check: (r) =>
      assert.deepEqual(r.deployment.spec.template.metadata.annotations, {
        "prometheus.io/scrape": "true",
        team: "platform",
      }),
  },
  {
    values: ["podLabels"],
    args: set("podLabels.team=platform", "podLabels.example\\.com/tier=admission"),
    effect: "labels on the pod template (the selector labels stay, the selector is unchanged)",
    check: (r) => {
      assert.deepEqual(r.deployment.spec.template.metadata.labels, {
        "app.kubernetes.io/name": "imageshift",
        "app.kubernetes.io/instance": "imageshift",
        team: "platform",
        "example.com/tier": "admission",
      });
      assert.deepEqual(r.deployment.spec.selector.matchLabels, {
        "app.kubernetes.io/name": "imageshift",
        "app.kubernetes.io/instance": "imageshift",
      });
    },
  },
  {
    values: [],
    args: set("certificates.mode=certManager"),
    release: "edge",
    effect: 'a release name without "imageshift": <release>-imageshift (certManager names too)',
    check: (r) => {
      assert.equal(r.one<Certificate>("Certificate").metadata.name, "edge-imageshift");
      assert.equal(r.one("Issuer").metadata.name, "edge-imageshift-selfsigned");
      assert.equal(r.one<Certificate>("Certificate").spec.secretName, "edge-imageshift-tls");
      assert.ok(r.one<Certificate>("Certificate").spec.dnsNames.includes(`edge-imageshift.${NAMESPACE}.svc`));
    },
  },
  {
    values: ["nameOverride"],
    args: set("nameOverride=shift"),
    release: "edge",
    effect: "<release>-<nameOverride> names the objects; app.kubernetes.io/name is nameOverride",
    check: (r) => {
      assert.equal(r.deployment.metadata.name, "edge-shift");
      assert.equal(r.arg("leader-election-id"), "edge-shift-leader");
      assert.equal(r.arg("tls-secret"), "edge-shift-tls");
      assert.equal(r.deployment.spec.selector.matchLabels["app.kubernetes.io/name"], "shift");
      for (const object of r.objects)
        assert.equal(object.metadata.labels?.["app.kubernetes.io/name"], "shift");
    },
  },
  {
    values: ["fullnameOverride"],
    args: set("fullnameOverride=gateway"),
    release: "edge",
    effect: "the whole name of every object, Lease and Secret included",
    check: (r) => {
      for (const object of r.objects)
        assert.ok(object.metadata.name.startsWith("gateway"), `${object.kind} ${object.metadata.name}`);
      assert.equal(r.deployment.metadata.name, "gateway");
      assert.equal(r.arg("leader-election-id"), "gateway-leader");
      assert.equal(r.arg("tls-secret"), "gateway-tls");
      assert.equal(r.deployment.spec.selector.matchLabels["app.kubernetes.io/name"], "imageshift");
    },
  },
  {
    values: ["networkPolicy.enabled"],
    args: set("networkPolicy.enabled=false"),
    effect: "no NetworkPolicy",
    check: (r) => assert.equal(r.find("NetworkPolicy"), undefined),
  },
  {
    values: ["networkPolicy.apiServerCIDRs"],
    args: set("networkPolicy.apiServerCIDRs={10.0.0.0/24,192.168.1.5/32}"),
    effect: "the webhook port admits those source ranges only",
    check: (r) =>
      assert.deepEqual(r.one<NetworkPolicy>("NetworkPolicy").spec.ingress, [
        {
          ports: [{ port: 8443, protocol: "TCP" }],
          from: [{ ipBlock: { cidr: "10.0.0.0/24" } }, { ipBlock: { cidr: "192.168.1.5/32" } }],
        },
      ]),
  },
  {
    values: ["networkPolicy.metricsFrom"],
    args: file("network-policy.yaml"),
    effect: "the metrics port admits those peers",
    check: (r) =>
      assert.deepEqual(r.one<NetworkPolicy>("NetworkPolicy").spec.ingress, [
        { ports: [{ port: 8443, protocol: "TCP" }] },
        {
          ports: [{ port: 8080, protocol: "TCP" }],
          from: (fixture("network-policy.yaml").networkPolicy as { metricsFrom: unknown }).metricsFrom,
        },
      ]),
  },
];

/** A release name without "imageshift" gets a suffix; one with it is used as it is. */
for (const [release, fullname] of [
  ["prod", "prod-imageshift"],
  ["imageshift-prod", "imageshift-prod"],
  ["my-imageshift", "my-imageshift"],
] as const) {
  ROWS.push({
    values: [],
    args: [],
    release,
    effect: `release "${release}" names its objects ${fullname}`,
    check: (r) => {
      const names = r.objects.map((object) => `${object.kind}/${object.metadata.name}`).sort();
      assert.deepEqual(names, [
        `ClusterRole/${fullname}`,
        `ClusterRoleBinding/${fullname}`,
        `Deployment/${fullname}`,
        `MutatingWebhookConfiguration/${fullname}`,
        `NetworkPolicy/${fullname}`,
        `PodDisruptionBudget/${fullname}`,
        `Role/${fullname}`,
        `RoleBinding/${fullname}`,
        `Service/${fullname}`,
        `Service/${fullname}-metrics`,
        `ServiceAccount/${fullname}`,
        `ValidatingWebhookConfiguration/${fullname}`,
      ]);
      assert.equal(r.arg("tls-secret"), `${fullname}-tls`);
      assert.equal(r.arg("webhook-configuration"), fullname);
      assert.equal(r.arg("service-name"), fullname);
      assert.equal(r.arg("leader-election-id"), `${fullname}-leader`);
      assert.equal(r.deployment.spec.selector.matchLabels["app.kubernetes.io/instance"], release);
      assert.deepEqual(permissions(r.clusterRole), expectedClusterPermissions(fullname));
      assert.deepEqual(permissions(r.role), expectedRolePermissions(fullname));
      for (const webhook of [...r.mutating.webhooks, ...r.validating.webhooks]) {
        assert.equal(webhook.clientConfig.service.name, fullname);
      }
    },
  });
}

describe("every value changes the render as documented", () => {
  for (const row of ROWS) {
    const label = [
      row.values.join(", ") || "(release)",
      row.args.map((arg) => arg.replace(FIXTURES, "test/chart")).join(" "),
      row.release ? `release=${row.release}` : "",
      row.namespace ? `namespace=${row.namespace}` : "",
    ]
      .filter(Boolean)
      .join(" ");
    it(`${label}: ${row.effect}`, row.todo ? { todo: row.todo } : {}, () => {
      const r = render(row.args, row.release, row.namespace);
      row.check(r);
      assertConsistent(r);
    });
  }

  it("the table covers every value in values.yaml", () => {
    const leaves: string[] = [];
    const walk = (value: unknown, path: string): void => {
      if (
        value !== null &&
        typeof value === "object" &&
        !Array.isArray(value) &&
        Object.keys(value).length > 0
      ) {
        for (const [key, child] of Object.entries(value)) walk(child, path ? `${path}.${key}` : key);
      } else leaves.push(path);
    };
    walk(VALUES, "");
    const covered = ROWS.flatMap((row) => row.values);
    const missing = leaves.filter(
      (leaf) => !covered.some((path) => leaf === path || leaf.startsWith(`${path}.`)),
    );
    assert.deepEqual(missing, [], "values.yaml values without a row in this table");
  });
});

describe("helm test (templates/tests)", () => {
  interface TestPod extends Manifest {
    spec: PodSpec & { restartPolicy: string; automountServiceAccountToken?: boolean };
  }
  const testPod = (args: string[] = [], release = RELEASE): TestPod => {
    const text = execFileSync(
      helm,
      [
        "template",
        release,
        CHART,
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/tests/webhook.yaml",
        ...args,
      ],
      { encoding: "utf8", cwd: ROOT },
    );
    const objects = parseManifests(text);
    assert.equal(objects.length, 1);
    return objects[0] as TestPod;
  };

  for (const [mode, args] of [
    ["selfManaged", []],
    ["certManager", set("certificates.mode=certManager")],
  ] as const) {
    it(`${mode}: a test hook pod that calls the webhook Service over TLS with the certificate Secret's CA`, () => {
      const pod = testPod([...args]);
      const r = render([...args]);
      assert.equal(pod.kind, "Pod");
      assert.equal(pod.metadata.annotations?.["helm.sh/hook"], "test");
      assert.equal(pod.metadata.namespace, NAMESPACE);
      assert.equal(pod.spec.restartPolicy, "Never");
      const container = pod.spec.containers[0]!;
      assert.equal(container.image, r.container.image, "the image the chart already runs");
      const service = r.mutating.webhooks[0]!.clientConfig.service;
      const url = container.env.find((variable) => variable.name === "WEBHOOK_URL")?.value;
      assert.equal(url, `https://${service.name}.${NAMESPACE}.svc:${service.port}${service.path}`);
      const secret = pod.spec.volumes?.find((volume) => volume.name === "ca")?.secret?.secretName;
      assert.equal(secret, r.arg("tls-secret") ?? r.one<Certificate>("Certificate").spec.secretName);
      // Not selected by the chart's Services, PDB or NetworkPolicy: it is no webhook replica.
      const selector = r.deployment.spec.selector.matchLabels;
      assert.ok(
        Object.entries(selector).some(([key, value]) => pod.metadata.labels?.[key] !== value),
        "the test pod does not carry the selector labels",
      );
      // Restricted pod security, like the chart's own pods.
      assert.equal(pod.spec.securityContext.runAsNonRoot, true);
      assert.equal(pod.spec.securityContext.seccompProfile?.type, "RuntimeDefault");
      assert.equal(container.securityContext.allowPrivilegeEscalation, false);
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.deepEqual(container.securityContext.capabilities?.drop, ["ALL"]);
      assert.equal(pod.spec.automountServiceAccountToken, false);
    });
  }

  it("is named after the release and follows fullnameOverride", () => {
    assert.equal(testPod([], "edge").metadata.name, "edge-imageshift-test");
    assert.equal(testPod(set("fullnameOverride=gateway")).metadata.name, "gateway-test");
  });

  it("is left out of dist/install.yaml and of helm template --skip-tests", () => {
    assert.equal(render().find("Pod"), undefined);
    const objects = parseManifests(readFileSync(INSTALL_FILE, "utf8"));
    assert.equal(objects.filter((object) => object.kind === "Pod").length, 0);
  });

  it("its script passes against a running webhook with the right CA, and fails with another", {
    timeout: 60_000,
  }, async () => {
    const pod = testPod();
    const container = pod.spec.containers[0] as Container & { command: string[] };
    const dir = mkdtempSync(join(tmpdir(), "imageshift-helm-test-"));
    const server = spawn(
      process.execPath,
      [
        join(ROOT, "bin", "imageshift.js"),
        "serve",
        ...["--rules", join(ROOT, "examples"), "--self-signed-dir", dir],
        ...loopbackFlags(),
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const webhook = await new Promise<string>((resolve, reject) => {
        createInterface({ input: server.stdout! }).on("line", (line) => {
          const entry = JSON.parse(line) as { msg?: string; webhook?: string };
          if (entry.msg === "serving" && entry.webhook) resolve(entry.webhook);
        });
        server.once("exit", (code) => reject(new Error(`imageshift serve exited with ${code}`)));
      });
      const runScript = (ca: string) => {
        const [node, ...flags] = container.command;
        assert.equal(node, "node");
        return spawnSync(process.execPath, [...flags, ...container.args], {
          encoding: "utf8",
          timeout: 30_000,
          env: { ...process.env, WEBHOOK_URL: `${webhook}/mutate`, NODE_EXTRA_CA_CERTS: ca },
        });
      };
      const passed = runScript(join(dir, "ca.pem"));
      assert.equal(passed.status, 0, passed.stderr);
      assert.match(passed.stdout, /answered over TLS: allowed, with a patch/);
      const { caPem } = await localhostCertificate("another CA");
      writeFileSync(join(dir, "other-ca.pem"), caPem);
      const failed = runScript(join(dir, "other-ca.pem"));
      assert.notEqual(failed.status, 0, "a certificate from another CA is not trusted");
    } finally {
      server.kill("SIGTERM");
      await new Promise((resolve) => server.once("exit", resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("values.schema.json refuses, at install, values the pod would crash-loop on", () => {
  const SCHEMA = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8")) as {
    properties: Record<string, unknown>;
  };
  const refusedBySchema = (args: string[]) => {
    const result = spawnSync(helm, ["template", RELEASE, CHART, "--namespace", NAMESPACE, ...args], {
      encoding: "utf8",
      cwd: ROOT,
    });
    assert.notEqual(result.status, 0, `accepted: ${args.join(" ")}`);
    assert.match(result.stderr, /values don't meet the specifications of the schema/);
    return result.stderr;
  };
  const cases: [string, string[], RegExp][] = [
    [
      "certificates.mode=selfmanaged (the wrong case)",
      set("certificates.mode=selfmanaged"),
      /\/certificates\/mode/,
    ],
    ["certificates.mode=vault", set("certificates.mode=vault"), /'selfManaged', 'certManager'/],
    [
      "a duration in days (90d)",
      set("certificates.selfManaged.certificateValidity=90d"),
      /certificateValidity/,
    ],
    ["a compound duration (1h30m)", set("certificates.certManager.duration=1h30m"), /duration/],
    ["a duration without a unit", set("metrics.serviceMonitor.interval=30"), /interval/],
    ["a mistyped value name (replicas)", set("replicas=3"), /'replicas' not allowed/],
    ["a mistyped nested name", set("certificates.selfManaged.caValidityDays=3650"), /caValidityDays/],
    ["logLevel=verbose", set("logLevel=verbose"), /\/logLevel/],
    ["failurePolicy=fail (the wrong case)", set("failurePolicy=fail"), /\/failurePolicy/],
    ["replicaCount=0", set("replicaCount=0"), /\/replicaCount/],
    ["shutdownDelaySeconds=61", set("shutdownDelaySeconds=61"), /\/shutdownDelaySeconds/],
    ["timeoutSeconds=31 (the API server's maximum is 30)", set("timeoutSeconds=31"), /\/timeoutSeconds/],
    ["image.pullPolicy=always", set("image.pullPolicy=always"), /\/image\/pullPolicy/],
    ["a fullnameOverride over 53 characters", set(`fullnameOverride=${"x".repeat(54)}`), /fullnameOverride/],
    ["a nameOverride that is no DNS label", set("nameOverride=Image_Shift"), /nameOverride/],
    ["a namespaceLabel with a space", set("namespaceLabel=a b"), /namespaceLabel/],
    ["an apiServerCIDR that is no CIDR", set("networkPolicy.apiServerCIDRs[0]=10.0.0.1"), /apiServerCIDRs/],
    ["a verification deadline in minutes", set("verification.deadline=1m"), /\/verification\/deadline/],
    ["a verification deadline of 0s", set("verification.deadline=0s"), /\/verification\/deadline/],
    ["a request timeout in milliseconds", set("verification.requestTimeout=500ms"), /requestTimeout/],
    ["a TTL in days", set("verification.positiveTtl=1d"), /positiveTtl/],
    ["breaker.failures=0", set("verification.breaker.failures=0"), /\/verification\/breaker\/failures/],
    [
      "registryCredentials.enabled=yes",
      ["--set-string", "registryCredentials.enabled=yes"],
      /registryCredentials/,
    ],
  ];
  for (const [name, args, names] of cases) {
    it(name, () => assert.match(refusedBySchema(args), names));
  }

  it("refuses a verification deadline not under timeoutSeconds, naming both; accepts it under a raised timeout", () => {
    for (const args of [
      set("verification.deadline=5s"),
      set("timeoutSeconds=3", "verification.deadline=3.5s"),
    ]) {
      const result = spawnSync(helm, ["template", RELEASE, CHART, "--namespace", NAMESPACE, ...args], {
        encoding: "utf8",
        cwd: ROOT,
      });
      assert.notEqual(result.status, 0, `accepted: ${args.join(" ")}`);
      assert.match(
        result.stderr,
        /verification\.deadline \d+(\.\d+)?s must be less than timeoutSeconds \(\d+ s\)/,
      );
    }
    assert.equal(
      render(set("timeoutSeconds=10", "verification.deadline=9.5s")).arg("verify-deadline"),
      "9.5s",
    );
  });

  it("accepts what Kubernetes accepts: a numeric image tag from --set, resources with claims", () => {
    assert.equal(render(set("image.tag=2")).container.image, "ghcr.io/imageshift/imageshift:2");
    const claims = render(set("resources.claims[0].name=gpu")).container.resources as { claims?: unknown };
    assert.deepEqual(claims.claims, [{ name: "gpu" }]);
  });

  it("helm install --dry-run refuses certificates.mode=selfmanaged before anything reaches the cluster", () => {
    const result = spawnSync(
      helm,
      [
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--set",
        "certificates.mode=selfmanaged",
      ],
      { encoding: "utf8", cwd: ROOT },
    );
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /\/certificates\/mode/);
  });

  it("declares every value in values.yaml, and logLevel's choices are the server's", () => {
    type Node = { properties?: Record<string, Node> } | undefined;
    const declared = (path: string[]): Node => {
      let node = SCHEMA as Node;
      for (const key of path) node = node?.properties?.[key];
      return node;
    };
    const missing: string[] = [];
    // Objects the schema leaves free-form (resources, affinity, …) are not walked into.
    const walk = (value: unknown, path: string[]): void => {
      const node = declared(path);
      if (!node) missing.push(path.join("."));
      else if (node.properties && value !== null && typeof value === "object" && !Array.isArray(value))
        for (const [key, child] of Object.entries(value)) walk(child, [...path, key]);
    };
    for (const [key, value] of Object.entries(VALUES)) walk(value, [key]);
    assert.deepEqual(missing, []);
    assert.deepEqual((SCHEMA.properties.logLevel as { enum: string[] }).enum, [...LOG_LEVELS]);
  });
});

describe("values the chart refuses", () => {
  const refused = (args: string[]) =>
    spawnSync(helm, ["template", RELEASE, CHART, "--namespace", NAMESPACE, ...args], {
      encoding: "utf8",
      cwd: ROOT,
    });

  it("serviceAccount.create=false without a name: refused, naming the value", () => {
    const result = refused(["--set", "serviceAccount.create=false"]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /serviceAccount\.name is required/);
  });

  it("a ServiceMonitor without the metrics Service: refused, naming both values", () => {
    const result = refused([
      "--set",
      "metrics.serviceMonitor.enabled=true",
      "--set",
      "metrics.service.enabled=false",
    ]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /metrics\.serviceMonitor\.enabled needs metrics\.service\.enabled/);
  });
});
