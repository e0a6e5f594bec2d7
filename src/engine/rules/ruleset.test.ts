import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { rulesFromYaml } from "./testing.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

function imageshift(name: string, spec: string): string {
  return `---\napiVersion: imageshift.dev/v1\nkind: Imageshift\nmetadata: { name: ${name} }\nspec:\n${spec}\n`;
}

describe("swap", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "mirror",
      `  mappings:
    swap:
    - { registry: docker.io, target: mirror.corp/hub }
    - { registry: docker.io/bitnami, target: mirror.corp/bitnami }
    - { registry: "localhost:5000", target: "mirror.corp/local" }
    - { registry: quay.io, target: "localhost:5000" }`,
    ),
  );

  test("keeps path, tag and digest, and adds library/ for official images", () => {
    assert.equal(ruleSet.rewrite("nginx:1.25").output, "mirror.corp/hub/library/nginx:1.25");
    assert.equal(
      ruleSet.rewrite(`nginx:1.25@${DIGEST}`).output,
      `mirror.corp/hub/library/nginx:1.25@${DIGEST}`,
    );
    assert.equal(ruleSet.rewrite(`nginx@${DIGEST}`).output, `mirror.corp/hub/library/nginx@${DIGEST}`);
    assert.equal(ruleSet.rewrite("index.docker.io/library/nginx").output, "mirror.corp/hub/library/nginx");
  });

  test("the longest prefix wins, on whole path components", () => {
    const bitnami = ruleSet.rewrite("bitnami/redis:7");
    assert.equal(bitnami.output, "mirror.corp/bitnami/redis:7");
    assert.equal(bitnami.rule?.field, "spec.mappings.swap[1]");
    assert.equal(ruleSet.rewrite("bitnamilabs/redis:7").output, "mirror.corp/hub/bitnamilabs/redis:7");
  });

  test("ports on either side", () => {
    assert.equal(ruleSet.rewrite("localhost:5000/team/app:1").output, "mirror.corp/local/team/app:1");
    assert.equal(ruleSet.rewrite("quay.io/org/app:1").output, "localhost:5000/org/app:1");
  });

  test("the new path may have 255 characters, whatever the registry's length (as in Go)", () => {
    const path = `org/${"a".repeat(251)}`;
    assert.equal(ruleSet.rewrite(`quay.io/${path}:1`).output, `localhost:5000/${path}:1`);
    const { ruleSet: deeper } = rulesFromYaml(
      imageshift("deeper", "  mappings:\n    swap: [{ registry: quay.io, target: mirror.corp/q }]"),
    );
    const result = deeper.rewrite(`quay.io/${path}:1`);
    assert.equal(result.output, `quay.io/${path}:1`);
    assert.match(
      result.error ?? "",
      /repository path of mirror\.corp\/q\/org\/a+ is longer than 255 characters/,
    );
  });

  test("no match leaves the image as written", () => {
    const result = ruleSet.rewrite("registry.k8s.io/pause:3.10");
    assert.deepEqual(result, {
      input: "registry.k8s.io/pause:3.10",
      output: "registry.k8s.io/pause:3.10",
      changed: false,
      rule: null,
    });
  });
});

describe("exactSwap", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "pinned",
      `  mappings:
    exactSwap:
    - { reference: "nginx:latest", target: "mirror.corp/approved/nginx:1.25-alpine" }
    - { reference: "redis:7", target: "mirror.corp/redis" }
    - { reference: "busybox@${DIGEST}", target: "mirror.corp/busybox" }`,
    ),
  );

  test("an absent tag means latest", () => {
    for (const image of ["nginx", "nginx:latest", "docker.io/library/nginx:latest", "docker.io/nginx"]) {
      assert.equal(ruleSet.rewrite(image).output, "mirror.corp/approved/nginx:1.25-alpine", image);
    }
    assert.equal(ruleSet.rewrite("nginx:1.24").changed, false);
  });

  test("a target without tag or digest keeps the source's", () => {
    assert.equal(ruleSet.rewrite("redis:7").output, "mirror.corp/redis:7");
    assert.equal(ruleSet.rewrite(`busybox@${DIGEST}`).output, `mirror.corp/busybox@${DIGEST}`);
    assert.equal(ruleSet.rewrite("busybox").changed, false);
  });
});

describe("regexSwap", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "ecr",
      `  mappings:
    regexSwap:
    - expression: '^(\\d+)\\.dkr\\.ecr\\.([^.]+)\\.amazonaws\\.com/(.*)$'
      target: 'mirror.corp/ecr/$1/\${2}/$3'
    - expression: '^docker\\.io/library/(?P<name>[^:@]+)(?P<rest>.*)$'
      target: 'mirror.corp/official/\${name}\${rest}'
    - expression: '^ghcr\\.io/(.*)$'
      target: 'not a reference $1'`,
    ),
  );

  test("matches the canonical reference and expands numbered and named groups", () => {
    assert.equal(
      ruleSet.rewrite("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1.4").output,
      "mirror.corp/ecr/123456789012/eu-west-1/app:1.4",
    );
    assert.equal(ruleSet.rewrite("nginx:1.25").output, "mirror.corp/official/nginx:1.25");
  });

  test("a result that is not a reference is an error for that rule; the image stays", () => {
    const result = ruleSet.rewrite("ghcr.io/org/app:1");
    assert.equal(result.output, "ghcr.io/org/app:1");
    assert.equal(result.changed, false);
    assert.equal(result.rule?.field, "spec.mappings.regexSwap[2]");
    assert.match(
      result.error ?? "",
      /regexSwap\[2\] produced invalid image reference "not a reference org\/app:1"/,
    );
  });
});

describe("evaluation order", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "b-low",
      `  mappings:
    swap: [{ registry: docker.io, target: b.corp }]
    exactSwap: [{ reference: "nginx:1.25", target: "b.corp/exact/nginx:1.25" }]
    regexSwap: [{ expression: '^docker\\.io/library/nginx:.*', target: 'b.corp/regex/nginx:1' }]`,
    ) +
      imageshift("a-low", "  mappings:\n    swap: [{ registry: docker.io/library, target: a.corp }]") +
      imageshift("z-high", "  priority: 5\n  mappings:\n    swap: [{ registry: quay.io, target: z.corp }]") +
      `---
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: compat }
spec:
  rules:
  - { match: '^quay\\.io/(.*)', replace: 'compat.corp/$1', priority: 10 }
  - { match: '^docker\\.io/(.*)', replace: 'never.corp/$1', priority: -1 }
`,
  );

  test("priority first, across kinds", () => {
    assert.equal(ruleSet.rewrite("quay.io/org/app").output, "compat.corp/org/app");
  });

  test("then object name, whatever the prefix length", () => {
    // a-low and b-low both have priority 0: a-low is consulted first.
    assert.equal(ruleSet.rewrite("redis").output, "a.corp/redis");
  });

  test("within an object: exactSwap, then regexSwap, then swap", () => {
    const { ruleSet: single } = rulesFromYaml(
      imageshift(
        "one",
        `  mappings:
    swap: [{ registry: docker.io, target: b.corp }]
    exactSwap: [{ reference: "nginx:1.25", target: "b.corp/exact/nginx:1.25" }]
    regexSwap: [{ expression: '^docker\\.io/library/nginx:.*', target: 'b.corp/regex/nginx:1' }]`,
      ),
    );
    assert.equal(single.rewrite("nginx:1.25").output, "b.corp/exact/nginx:1.25");
    assert.equal(single.rewrite("nginx:1.24").output, "b.corp/regex/nginx:1");
    assert.equal(single.rewrite("redis").output, "b.corp/library/redis");
  });

  test("rewrites never chain", () => {
    // a.corp/redis would match nothing anyway; the point is one rule decides, once.
    assert.equal(ruleSet.rewrite("a.corp/redis").changed, false);
  });
});

describe("scope", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "scoped",
      `  namespaceSelector: { matchLabels: { team: a } }
  podSelector: { matchExpressions: [{ key: tier, operator: In, values: [web] }] }
  exclude: ['^docker\\.io/library/postgres:']
  mappings:
    swap: [{ registry: docker.io, target: a.corp }]`,
    ) +
      imageshift(
        "fallback",
        "  priority: -1\n  mappings:\n    swap: [{ registry: docker.io, target: f.corp }]",
      ),
  );
  const inScope = { namespaceLabels: { team: "a" }, podLabels: { tier: "web" } };

  test("selectors pick the object; out of scope falls through to the next rule", () => {
    assert.equal(ruleSet.rewrite("nginx", inScope).output, "a.corp/library/nginx");
    assert.equal(
      ruleSet.rewrite("nginx", { ...inScope, podLabels: { tier: "db" } }).output,
      "f.corp/library/nginx",
    );
    assert.equal(ruleSet.rewrite("nginx", { podLabels: { tier: "web" } }).output, "f.corp/library/nginx");
  });

  test("exclude keeps images out of the object", () => {
    assert.equal(ruleSet.rewrite("postgres:16", inScope).output, "f.corp/library/postgres:16");
  });
});

describe("default registry", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "corp",
      "  default: registry.corp\n  mappings:\n    swap: [{ registry: registry.corp, target: mirror.corp }]",
    ) +
      imageshift("hub", "  priority: -1\n  mappings:\n    swap: [{ registry: docker.io, target: hub.corp }]"),
  );

  test("unqualified names resolve to spec.default for that object only", () => {
    assert.equal(ruleSet.rewrite("team/app:1").output, "mirror.corp/team/app:1");
    assert.equal(ruleSet.rewrite("nginx").output, "mirror.corp/nginx");
    assert.equal(ruleSet.rewrite("docker.io/team/app:1").output, "hub.corp/team/app:1");
  });
});

describe("audit mode", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift(
      "preview",
      "  mode: Audit\n  priority: 100\n  mappings:\n    swap: [{ registry: docker.io, target: next.corp }]",
    ) + imageshift("live", "  mappings:\n    swap: [{ registry: docker.io, target: live.corp }]"),
  );

  test("audit rules report what they would do and change nothing", () => {
    const result = ruleSet.rewrite("nginx:1");
    assert.equal(result.output, "live.corp/library/nginx:1");
    assert.deepEqual(result.audit, {
      output: "next.corp/library/nginx:1",
      rule: { kind: "Imageshift", name: "preview", field: "spec.mappings.swap[0]" },
    });
    assert.equal(ruleSet.rewrite("quay.io/a/b").audit, undefined);
  });
});

describe("robustness", () => {
  const { ruleSet } = rulesFromYaml(
    imageshift("same", "  mappings:\n    swap: [{ registry: docker.io/library, target: docker.io/library }]"),
  );

  test("a rewrite to the identical image is no change", () => {
    const result = ruleSet.rewrite("nginx");
    assert.equal(result.changed, false);
    assert.equal(result.output, "nginx");
  });

  test("invalid input is reported, never thrown", () => {
    const result = ruleSet.rewrite("NGINX");
    assert.equal(result.changed, false);
    assert.equal(result.rule, null);
    assert.match(result.error ?? "", /"NGINX"/);
  });
});

describe("passing over rules (a target that lacked the image)", () => {
  const { ruleSet } = rulesFromYaml(`apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: first }
spec:
  priority: 10
  verify: { mode: Presence, whenAbsent: NextRule }
  mappings: { swap: [{ registry: docker.io, target: mirror-a.corp }] }
---
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: second }
spec:
  mappings: { swap: [{ registry: docker.io, target: mirror-b.corp }] }
`);

  test("an excluded rule is passed over and the next in order decides", () => {
    const first = ruleSet.rewrite("nginx:1.25");
    assert.equal(first.output, "mirror-a.corp/library/nginx:1.25");
    assert.equal(first.verify?.mode, "Presence");
    assert.ok(first.rule);
    const next = ruleSet.rewrite("nginx:1.25", {}, new Set([first.rule]));
    assert.equal(next.output, "mirror-b.corp/library/nginx:1.25");
    assert.equal(next.verify, undefined, "the second object checks nothing");
    assert.ok(next.rule);
    const none = ruleSet.rewrite("nginx:1.25", {}, new Set([first.rule, next.rule]));
    assert.equal(none.changed, false);
    assert.equal(none.rule, null);
  });
});
