import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { selfSignedDir } from "./serve.ts";
import { runCaptured } from "./testing.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const FIXTURES = path.join(ROOT, "test", "fixtures", "cli");
const VALID = path.join(FIXTURES, "valid.yaml");
const INVALID = path.join(FIXTURES, "invalid-regex.yaml");
const NO_RULES = path.join(FIXTURES, "no-rules.yaml");
const BIN = path.join(ROOT, "bin", "imageshift.js");

const cli = runCaptured;

interface PackageJson {
  scripts: { start: string };
}

interface JsonResult {
  input: string;
  output: string;
  changed: boolean;
  rule: { kind: string; name: string; field: string } | null;
  error?: string;
  gating: { applied: boolean; called: boolean; reason: string };
}

/** The gating every element carries when no --namespace-labels are given. */
const NOT_APPLIED = {
  applied: false,
  called: true,
  reason:
    "without --namespace-labels, the namespace is assumed labelled imageshift.dev=enabled or imageshift.dev=strict",
};

/** Parses `--output json` output, checking it is one array of well-formed elements. */
function parseJson(stdout: string): JsonResult[] {
  const value: unknown = JSON.parse(stdout);
  assert.ok(Array.isArray(value), "one JSON array");
  for (const element of value as Record<string, unknown>[]) {
    assert.equal(typeof element.input, "string");
    assert.equal(typeof element.output, "string");
    assert.equal(typeof element.changed, "boolean");
    if (element.rule !== null) {
      assert.deepEqual(Object.keys(element.rule as object).sort(), ["field", "kind", "name"]);
    }
    if ("error" in element) assert.equal(typeof element.error, "string");
    assert.deepEqual(Object.keys(element.gating as object), ["applied", "called", "reason"]);
    if (!element.changed) assert.equal(element.output, element.input, "output equals input when unchanged");
  }
  return value as JsonResult[];
}

const EXAMPLE_IMAGES: readonly [string, string, string | null][] = [
  ["nginx", "internal-registry.corp/approved/nginx:1.25-alpine", "spec.mappings.exactSwap[0]"],
  ["nginx:1.25", "internal-registry.corp/dockerhub/library/nginx:1.25", "spec.mappings.swap[0]"],
  [
    "gcr.io/distroless/static:nonroot",
    "internal-registry.corp/gcr/distroless/static:nonroot",
    "spec.mappings.swap[1]",
  ],
  [
    "quay.io/prometheus/prometheus:v2.53.0",
    "internal-registry.corp/quay/prometheus/prometheus:v2.53.0",
    "spec.rules[0]",
  ],
  [
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1.4",
    "internal-registry.corp/ecr/123456789012/eu-west-1/app:1.4",
    "spec.mappings.regexSwap[0]",
  ],
  ["registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", null],
];

describe("imageshift rewrite", () => {
  test("--output json prints one array, one element per input, in input order", async () => {
    const images = EXAMPLE_IMAGES.map(([input]) => input);
    const { code, stdout, stderr } = await cli("rewrite", "--rules", EXAMPLES, "--output", "json", ...images);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
    const results = parseJson(stdout);
    assert.deepEqual(
      results.map((result) => result.input),
      images,
    );
    for (const [i, [input, output, field]] of EXAMPLE_IMAGES.entries()) {
      const result = results[i]!;
      assert.equal(result.output, output, input);
      assert.equal(result.changed, field !== null, input);
      assert.equal(result.rule?.field ?? null, field, input);
      assert.equal("error" in result, false, input);
    }
    assert.deepEqual(results[0]!.rule, {
      kind: "Imageshift",
      name: "airgap",
      field: "spec.mappings.exactSwap[0]",
    });
    assert.deepEqual(results[3]!.rule, {
      kind: "RegistryRewriteRule",
      name: "docker-hub-to-ecr",
      field: "spec.rules[0]",
    });
    assert.equal(results[5]!.rule, null);
  });

  test("text output is one line per image, in input order", async () => {
    const { code, stdout } = await cli(
      "rewrite",
      "--rules",
      EXAMPLES,
      "nginx:1.25",
      "registry.k8s.io/pause:3.10",
    );
    assert.equal(code, 0);
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines.length, 2);
    assert.equal(
      lines[0],
      "nginx:1.25 -> internal-registry.corp/dockerhub/library/nginx:1.25 (Imageshift/airgap spec.mappings.swap[0])",
    );
    assert.equal(lines[1], "registry.k8s.io/pause:3.10 unchanged: no rule matched");
  });

  test("the same image twice gives two elements", async () => {
    const { code, stdout } = await cli(
      "rewrite",
      "--rules",
      EXAMPLES,
      "--output",
      "json",
      "nginx:1.25",
      "nginx:1.25",
    );
    assert.equal(code, 0);
    const results = parseJson(stdout);
    assert.equal(results.length, 2);
    assert.deepEqual(results[0], results[1]);
  });

  test("images may follow --, even one that starts with a dash", async () => {
    const { code, stdout } = await cli(
      "rewrite",
      "--rules",
      EXAMPLES,
      "--output",
      "json",
      "--",
      "nginx:1.25",
      "-x",
    );
    assert.equal(code, 1);
    const results = parseJson(stdout);
    assert.deepEqual(
      results.map((result) => result.input),
      ["nginx:1.25", "-x"],
    );
    assert.equal(results[0]!.changed, true);
    assert.equal(results[1]!.changed, false);
    assert.match(results[1]!.error ?? "", /invalid image reference/);
  });

  test("an invalid reference: exit 1, output equals input, error set, the other images still processed", async () => {
    const { code, stdout } = await cli(
      "rewrite",
      "--rules",
      EXAMPLES,
      "--output",
      "json",
      "nginx:1.25",
      "Bad//Ref",
      "gcr.io/a/b",
    );
    assert.equal(code, 1);
    const results = parseJson(stdout);
    assert.equal(results.length, 3);
    assert.equal(results[0]!.changed, true);
    assert.deepEqual(
      { ...results[1] },
      {
        input: "Bad//Ref",
        output: "Bad//Ref",
        changed: false,
        rule: null,
        error: results[1]!.error,
        gating: NOT_APPLIED,
      },
    );
    assert.match(results[1]!.error!, /invalid image reference "Bad\/\/Ref"/);
    assert.equal(results[2]!.output, "internal-registry.corp/gcr/a/b");
  });

  test("an invalid reference in text output: exit 1 and an error line", async () => {
    const { code, stdout } = await cli("rewrite", "--rules", EXAMPLES, "UPPER/Case");
    assert.equal(code, 1);
    assert.match(stdout, /^UPPER\/Case: error: invalid image reference/);
  });

  test("--namespace-labels and --pod-labels select Imageshift objects", async () => {
    const args = ["rewrite", "--rules", VALID, "--output", "json", "nginx:1"];
    const none = parseJson((await cli(...args)).stdout);
    assert.equal(none[0]!.changed, false);
    assert.equal(none[0]!.rule, null);

    const both = await cli(
      ...args,
      "--namespace-labels",
      "imageshift.dev=enabled, team=a, env=prod",
      "--pod-labels",
      "tier=web,app=shop",
    );
    assert.equal(both.code, 0);
    const [result] = parseJson(both.stdout);
    assert.equal(result!.output, "mirror-a.local/hub/library/nginx:1");
    assert.deepEqual(result!.rule, { kind: "Imageshift", name: "team-a", field: "spec.mappings.swap[0]" });

    // The pod selector requires tier In (web, api).
    const wrongTier = parseJson(
      (await cli(...args, "--namespace-labels", "imageshift.dev=enabled,team=a", "--pod-labels", "tier=db"))
        .stdout,
    );
    assert.equal(wrongTier[0]!.changed, false);
    const noPodLabels = parseJson(
      (await cli(...args, "--namespace-labels", "imageshift.dev=enabled,team=a")).stdout,
    );
    assert.equal(noPodLabels[0]!.changed, false);
  });

  test("--namespace selects RegistryRewriteRule conditions.namespaces", async () => {
    const args = ["rewrite", "--rules", VALID, "--output", "json", "ghcr.io/org/app:2"];
    const prod = await cli(...args, "--namespace", "prod");
    assert.equal(prod.code, 0);
    const [result] = parseJson(prod.stdout);
    assert.equal(result!.output, "mirror-prod.local/ghcr/org/app:2");
    assert.deepEqual(result!.rule, {
      kind: "RegistryRewriteRule",
      name: "prod-ghcr",
      field: "spec.rules[0]",
    });
    for (const extra of [["--namespace", "dev"], []]) {
      const [other] = parseJson((await cli(...args, ...extra)).stdout);
      assert.equal(other!.changed, false);
      assert.equal(other!.output, "ghcr.io/org/app:2");
    }
  });

  test("a folder of rule files is read (fixtures folder)", async () => {
    const { code, stdout, stderr } = await cli(
      "rewrite",
      "--rules",
      FIXTURES,
      "--output",
      "json",
      "--namespace",
      "prod",
      "ghcr.io/x:1",
      "quay.io/y:1",
    );
    assert.equal(code, 2, "invalid-regex.yaml has errors");
    // The broken rules in invalid-regex.yaml are reported, the good ones still used.
    assert.match(stderr, /invalid-regex\.yaml#1: spec\.mappings\.regexSwap\[0\]\.expression/);
    const results = parseJson(stdout);
    assert.deepEqual(
      results.map((result) => result.output),
      ["mirror-prod.local/ghcr/x:1", "mirror.local/quay/y:1"],
    );
  });

  test("rules with some invalid entries: problems on stderr, the valid rules still apply, exit 2", async () => {
    const { code, stdout, stderr } = await cli(
      "rewrite",
      "--rules",
      INVALID,
      "--output",
      "json",
      "gcr.io/a/b:1",
      "ghcr.io/c:1",
    );
    assert.equal(code, 2, "a CI pipeline running it fails");
    assert.match(
      stderr,
      /^error: .*invalid-regex\.yaml#1: spec\.mappings\.regexSwap\[0\]\.expression: invalid RE2/m,
    );
    const results = parseJson(stdout);
    assert.equal(results[0]!.output, "mirror.local/gcr/a/b:1");
    assert.equal(results[1]!.changed, false);
  });

  test("rules with warnings only: exit 0", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "imageshift-cli-warnings-"));
    try {
      // A ConfigMap beside the rules is skipped with a warning, never an error.
      const file = path.join(dir, "rules.yaml");
      fs.writeFileSync(file, `${fs.readFileSync(VALID, "utf8")}\n---\n${fs.readFileSync(NO_RULES, "utf8")}`);
      const { code, stderr } = await cli("rewrite", "--rules", file, "--namespace", "prod", "ghcr.io/x:1");
      assert.match(stderr, /^warning: .*ConfigMap is not a rule kind/m);
      assert.doesNotMatch(stderr, /^error: /m);
      assert.equal(code, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("namespace gating", () => {
    test("kube-system: the webhook is never called, so nothing is rewritten (text)", async () => {
      const { code, stdout, stderr } = await cli(
        "rewrite",
        "--rules",
        EXAMPLES,
        "--namespace",
        "kube-system",
        "nginx",
      );
      assert.equal(code, 0);
      assert.equal(
        stdout,
        "nginx unchanged: the webhook is not called: namespace kube-system is always excluded\n",
      );
      assert.equal(stderr, "");
    });

    test("kube-system and the excluded namespaces (json)", async () => {
      const json = ["--rules", EXAMPLES, "--output", "json"];
      const [kubeSystem] = parseJson(
        (await cli("rewrite", ...json, "--namespace", "kube-system", "nginx")).stdout,
      );
      assert.deepEqual(kubeSystem, {
        input: "nginx",
        output: "nginx",
        changed: false,
        rule: null,
        gating: { applied: true, called: false, reason: "namespace kube-system is always excluded" },
      });
      const release = ["--namespace", "imageshift-system", "nginx"];
      assert.equal(parseJson((await cli("rewrite", ...json, ...release)).stdout)[0]!.gating.called, false);
      const elsewhere = ["--excluded-namespaces", "mirror-system", ...release];
      assert.equal(parseJson((await cli("rewrite", ...json, ...elsewhere)).stdout)[0]!.changed, true);
    });

    test("with --namespace-labels, only a namespace labelled enabled or strict is rewritten", async () => {
      const args = ["rewrite", "--rules", EXAMPLES, "--output", "json", "--namespace", "prod"];
      for (const [labels, called] of [
        ["imageshift.dev=enabled", true],
        ["imageshift.dev=strict,team=a", true],
        ["team=a", false],
        ["", false],
      ] as const) {
        const { code, stdout } = await cli(...args, "--namespace-labels", labels, "nginx:1.25");
        assert.equal(code, 0);
        const [result] = parseJson(stdout);
        assert.equal(result!.gating.applied, true, labels);
        assert.equal(result!.gating.called, called, labels);
        assert.equal(result!.changed, called, labels);
      }
      const custom = [
        "--namespace-label",
        "example.com/mirror",
        "--namespace-labels",
        "example.com/mirror=enabled",
      ];
      assert.equal(parseJson((await cli(...args, ...custom, "nginx:1.25")).stdout)[0]!.changed, true);
      const text = await cli("rewrite", "--rules", EXAMPLES, "--namespace-labels", "team=a", "nginx:1.25");
      assert.equal(
        text.stdout,
        "nginx:1.25 unchanged: the webhook is not called: the namespace is not labelled imageshift.dev=enabled or imageshift.dev=strict\n",
      );
    });

    test("without --namespace-labels: rewritten, and the output says gating was not applied", async () => {
      const text = await cli("rewrite", "--rules", EXAMPLES, "--namespace", "prod", "nginx:1.25");
      assert.equal(text.code, 0);
      assert.match(text.stdout, /^nginx:1\.25 -> internal-registry\.corp/);
      assert.equal(text.stderr, `note: namespace gating not applied: ${NOT_APPLIED.reason}\n`);
      const json = await cli("rewrite", "--rules", EXAMPLES, "--output", "json", "nginx:1.25");
      assert.equal(json.stderr, "");
      assert.deepEqual(parseJson(json.stdout)[0]!.gating, NOT_APPLIED);
    });

    test("an empty --namespace-label: exit 2", async () => {
      const { code, stderr } = await cli("rewrite", "--rules", EXAMPLES, "--namespace-label", " ", "nginx");
      assert.equal(code, 2);
      assert.match(stderr, /--namespace-label must not be empty/);
    });
  });

  describe("exit 2", () => {
    test("a missing rules path, naming it", async () => {
      const missing = path.join(FIXTURES, "nope.yaml");
      const { code, stdout, stderr } = await cli("rewrite", "--rules", missing, "nginx");
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.ok(stderr.includes(missing), stderr);
    });

    test("no usable rule", async () => {
      const { code, stdout, stderr } = await cli("rewrite", "--rules", NO_RULES, "nginx");
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.match(stderr, /no usable rule/);
      assert.match(stderr, /ConfigMap is not a rule kind/);
    });

    test("--rules missing", async () => {
      const { code, stderr } = await cli("rewrite", "nginx");
      assert.equal(code, 2);
      assert.match(stderr, /--rules PATH is required/);
    });

    test("--rules without a value", async () => {
      assert.equal((await cli("rewrite", "nginx", "--rules")).code, 2);
      assert.equal((await cli("rewrite", "--rules", "", "nginx")).code, 2);
    });

    test("no image", async () => {
      const { code, stderr } = await cli("rewrite", "--rules", EXAMPLES);
      assert.equal(code, 2);
      assert.match(stderr, /no IMAGE given/);
      assert.equal((await cli("rewrite", "--rules", EXAMPLES, "--")).code, 2);
    });

    test("a bad --output value, naming it", async () => {
      const { code, stdout, stderr } = await cli("rewrite", "--rules", EXAMPLES, "--output", "yaml", "nginx");
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.match(stderr, /--output/);
      assert.ok(stderr.includes('"yaml"'), stderr);
    });

    test("a malformed --pod-labels, naming the pair", async () => {
      const { code, stderr } = await cli(
        "rewrite",
        "--rules",
        EXAMPLES,
        "--pod-labels",
        "app=shop,tier",
        "nginx",
      );
      assert.equal(code, 2);
      assert.match(stderr, /--pod-labels/);
      assert.ok(stderr.includes('"tier"'), stderr);
      const noKey = await cli("rewrite", "--rules", EXAMPLES, "--namespace-labels", "=v", "nginx");
      assert.equal(noKey.code, 2);
      assert.match(noKey.stderr, /--namespace-labels: "=v" is not key=value/);
    });

    test("an unknown flag, naming it", async () => {
      const { code, stderr } = await cli("rewrite", "--rules", EXAMPLES, "--frobnicate", "nginx");
      assert.equal(code, 2);
      assert.match(stderr, /--frobnicate/);
    });
  });
});

describe("imageshift validate", () => {
  test("valid rules: exit 0 with a summary", async () => {
    for (const rules of [EXAMPLES, VALID]) {
      const { code, stdout, stderr } = await cli("validate", "--rules", rules);
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      assert.match(stdout, /^valid: 2 object\(s\), \d+ usable rule\(s\), 0 error\(s\)$/m);
    }
    assert.match(
      (await cli("validate", "--rules", EXAMPLES)).stdout,
      /valid: 2 object\(s\), 6 usable rule\(s\)/,
    );
  });

  test("invalid rules: exit 1, every error listed with file, document index and field path", async () => {
    const { code, stdout, stderr } = await cli("validate", "--rules", INVALID);
    assert.equal(code, 1);
    assert.equal(stdout, "");
    const expected = [
      ["#1", "spec.mappings.regexSwap[0].expression", /invalid RE2 expression/],
      ["#1", "spec.mappings.regexSwap[1].expression", /lookahead or lookbehind.*spec\.exclude/],
      ["#1", "spec.mappings.regexSwap[2].target", /group "2"/],
      ["#2", "spec.rules[0].match", /backreference/],
    ] as const;
    const errorLines = stderr.split("\n").filter((line) => line.startsWith("error: "));
    assert.equal(errorLines.length, expected.length, stderr);
    for (const [i, [document, field, message]] of expected.entries()) {
      const line = errorLines[i]!;
      assert.ok(line.startsWith(`error: ${INVALID}${document}: ${field}: `), line);
      assert.match(line, message);
    }
    assert.match(stderr, /^invalid: 3 object\(s\), 2 usable rule\(s\), 4 error\(s\)$/m);
  });

  test("warnings alone keep the rules valid", async () => {
    const { code, stdout } = await cli("validate", "--rules", NO_RULES);
    assert.equal(code, 0);
    assert.match(stdout, /^warning: .*no-rules\.yaml#0: .*ConfigMap/m);
  });

  test("a missing path or missing --rules: exit 2", async () => {
    const missing = await cli("validate", "--rules", path.join(FIXTURES, "nope"));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope/);
    const noFlag = await cli("validate");
    assert.equal(noFlag.code, 2);
    assert.match(noFlag.stderr, /--rules PATH is required/);
    assert.equal((await cli("validate", "--rules", EXAMPLES, "--bogus")).code, 2);
    assert.equal((await cli("validate", "--rules", EXAMPLES, "stray")).code, 2);
  });
});

/** A TCP server holding a loopback port, so that `serve` finds it in use. */
async function occupiedPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  return {
    port: (blocker.address() as net.AddressInfo).port,
    release: () => new Promise((resolve) => blocker.close(() => resolve())),
  };
}

describe("imageshift serve", () => {
  const SELF_SIGNED = fs.mkdtempSync(path.join(os.tmpdir(), "imageshift-cli-serve-"));
  after(() => fs.rmSync(SELF_SIGNED, { recursive: true, force: true }));
  const serve = (...flags: string[]) =>
    cli(
      "serve",
      "--rules",
      EXAMPLES,
      "--log-level",
      "silent",
      "--self-signed-dir",
      SELF_SIGNED,
      "--bind-address",
      "127.0.0.1",
      "--metrics-bind-address",
      "127.0.0.1",
      ...flags,
    );

  test("a webhook port in use: exit 2 and one line naming --bind-address and --port", async () => {
    const busy = await occupiedPort();
    try {
      const { code, stdout, stderr } = await serve("--port", String(busy.port), "--metrics-port", "0");
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(
        stderr,
        `imageshift serve: --bind-address 127.0.0.1 --port ${busy.port}: address already in use\n`,
      );
    } finally {
      await busy.release();
    }
  });

  test("a metrics port in use: exit 2 and one line naming --metrics-bind-address and --metrics-port", async () => {
    const busy = await occupiedPort();
    try {
      const { code, stderr } = await serve("--port", "0", "--metrics-port", String(busy.port));
      assert.equal(code, 2);
      assert.equal(
        stderr,
        `imageshift serve: --metrics-bind-address 127.0.0.1 --metrics-port ${busy.port}: address already in use\n`,
      );
    } finally {
      await busy.release();
    }
  });

  test("the curl examples in the README and docs/webhook.md trust the CA file `npm start` writes", () => {
    const start = (JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as PackageJson)
      .scripts.start;
    assert.doesNotMatch(start, /--port|--self-signed-dir/, "npm start serves on the default port 8443");
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = "/tmp";
    const expected = path.join(selfSignedDir(8443), "ca.pem");
    assert.equal(selfSignedDir(0), `/tmp/imageshift/pid-${process.pid}`, "--port 0: a folder per process");
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    for (const doc of ["README.md", path.join("docs", "webhook.md")]) {
      const cacerts = [...fs.readFileSync(path.join(ROOT, doc), "utf8").matchAll(/--cacert (\S+)/g)];
      assert.ok(cacerts.length > 0, doc);
      for (const [, file] of cacerts) assert.equal(file, expected, doc);
    }
  });

  test("--tls-cipher-suites: unknown names exit 2 naming the flag; known ones are taken", async () => {
    const bad = await serve("--tls-cipher-suites", "NOT-A-CIPHER", "--port", "0", "--metrics-port", "0");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--tls-cipher-suites "NOT-A-CIPHER": .*no cipher match/);
    // Accepted, the server goes on to listen: here on a port in use, so it still exits 2, for that.
    const busy = await occupiedPort();
    try {
      const good = await serve(
        "--tls-cipher-suites",
        "TLS_AES_128_GCM_SHA256, ECDHE-ECDSA-AES128-SHA",
        "--port",
        String(busy.port),
        "--metrics-port",
        "0",
      );
      assert.equal(good.code, 2);
      assert.match(good.stderr, /address already in use/);
    } finally {
      await busy.release();
    }
  });

  test("--help states the exit status of a port in use", async () => {
    const { code, stdout } = await cli("serve", "--help");
    assert.equal(code, 0);
    assert.match(
      stdout,
      /Exit status: .*2 for unusable flags or rules,\s+including an address the server cannot listen on/s,
    );
  });
});

describe("help and commands", () => {
  test("--help and -h on imageshift itself print usage and exit 0", async () => {
    for (const flag of ["--help", "-h", "help"]) {
      const { code, stdout, stderr } = await cli(flag);
      assert.equal(code, 0);
      assert.equal(stderr, "");
      assert.match(stdout, /^Usage: imageshift COMMAND/);
      assert.match(stdout, /rewrite/);
      assert.match(stdout, /validate/);
    }
  });

  test("--help on every command prints its usage and exits 0", async () => {
    for (const command of ["rewrite", "validate"]) {
      for (const flag of ["--help", "-h"]) {
        const { code, stdout, stderr } = await cli(command, flag);
        assert.equal(code, 0, `${command} ${flag}`);
        assert.equal(stderr, "");
        assert.ok(stdout.startsWith(`Usage: imageshift ${command} --rules PATH`), stdout);
      }
    }
    // Help wins over otherwise missing arguments.
    assert.equal((await cli("rewrite", "--rules", EXAMPLES, "--help")).code, 0);
  });

  test("rewrite --help documents the flags", async () => {
    const { stdout } = await cli("rewrite", "--help");
    for (const flag of ["--rules", "--namespace", "--namespace-labels", "--pod-labels", "--output"]) {
      assert.ok(stdout.includes(flag), flag);
    }
  });

  test("an unknown command exits 2, naming it", async () => {
    const { code, stderr } = await cli("frobnicate", "--rules", EXAMPLES);
    assert.equal(code, 2);
    assert.match(stderr, /unknown command "frobnicate"/);
    assert.match(stderr, /Usage: imageshift COMMAND/);
  });

  test("no command exits 2 with the usage", async () => {
    const { code, stdout, stderr } = await cli();
    assert.equal(code, 2);
    assert.match(stdout + stderr, /Usage: imageshift COMMAND/);
  });
});

describe("bin/imageshift.js", () => {
  test("runs on this Node: exit code and JSON output", () => {
    const child = spawnSync(
      process.execPath,
      [
        BIN,
        "rewrite",
        "--rules",
        EXAMPLES,
        "--output",
        "json",
        "--",
        "gcr.io/distroless/static:nonroot",
        "Bad//Ref",
      ],
      { cwd: ROOT, encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(child.error, undefined);
    assert.equal(child.status, 1, child.stderr);
    const results = parseJson(child.stdout);
    assert.deepEqual(
      results.map((result) => [result.input, result.output, result.changed]),
      [
        ["gcr.io/distroless/static:nonroot", "internal-registry.corp/gcr/distroless/static:nonroot", true],
        ["Bad//Ref", "Bad//Ref", false],
      ],
    );

    const ok = spawnSync(
      process.execPath,
      [BIN, "rewrite", "--rules", EXAMPLES, "--output", "json", "nginx:1.25"],
      {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(parseJson(ok.stdout)[0]?.output, "internal-registry.corp/dockerhub/library/nginx:1.25");
  });

  test("refuses a Node older than 22.19, naming the required version", (t) => {
    const oldNode = "/usr/bin/node";
    if (!fs.existsSync(oldNode)) {
      t.skip(`${oldNode} is absent`);
      return;
    }
    const version = spawnSync(oldNode, ["--version"], { encoding: "utf8", timeout: 30_000 }).stdout.trim();
    const [major = 0, minor = 0] = version.replace(/^v/, "").split(".").map(Number);
    if (major > 22 || (major === 22 && minor >= 19)) {
      t.skip(`${oldNode} is ${version}, new enough`);
      return;
    }
    const child = spawnSync(oldNode, [BIN, "rewrite", "--rules", EXAMPLES, "nginx"], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(child.status, 2, child.stderr);
    assert.equal(child.stdout, "");
    assert.match(child.stderr, /22\.19/);
    assert.ok(child.stderr.includes(version), child.stderr);
  });
});
