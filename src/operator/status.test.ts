import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type CompiledObject, compileObject } from "../engine/rules/compile.ts";
import { type ClusterObject, COMPAT_RESOURCE, IMAGESHIFT_RESOURCE } from "./cluster-source.ts";
import { type Condition, desiredStatus, type RuleObjectStatus, statusMatches } from "./status.ts";

const NOW = new Date("2030-01-02T03:04:05.678Z");
const NOW_TEXT = "2030-01-02T03:04:05Z";
const EARLIER = "2029-12-31T00:00:00Z";

function entry(
  spec: unknown,
  extra: { generation?: number; status?: unknown; name?: string } = {},
): ClusterObject {
  const name = extra.name ?? "rules";
  const object = {
    apiVersion: "imageshift.dev/v1",
    kind: "Imageshift",
    metadata: { name, ...(extra.generation === undefined ? {} : { generation: extra.generation }) },
    spec,
    ...(extra.status === undefined ? {} : { status: extra.status }),
  };
  return {
    resource: IMAGESHIFT_RESOURCE,
    object,
    result: compileObject(object, { source: `Imageshift/${name}` }),
  };
}

const VALID = {
  mappings: {
    swap: [
      { registry: "docker.io", target: "mirror.corp/dockerhub" },
      { registry: "gcr.io", target: "mirror.corp/gcr" },
    ],
    exactSwap: [{ reference: "nginx", target: "mirror.corp/nginx:1" }],
  },
};
const PARTLY_INVALID = {
  mappings: {
    swap: [{ registry: "docker.io", target: "mirror.corp/dockerhub" }],
    regexSwap: [
      { expression: "^(ghcr\\.io/(.*)$", target: "mirror.corp/$1" },
      { expression: "^quay\\.io/(.*)$", target: "mirror.corp/quay/$1" },
      { expression: "^k8s\\.io/(.*)$", target: "mirror.corp/$2" },
    ],
  },
};
const WHOLLY_INVALID = {
  priority: "high",
  mappings: { swap: [{ registry: "docker.io", target: "m.corp" }] },
};

function ready(status: RuleObjectStatus): Condition {
  assert.equal(status.conditions.length, 1);
  const [condition] = status.conditions;
  assert.equal(condition?.type, "Ready");
  return condition!;
}

describe("desiredStatus", () => {
  test("a valid object: Ready True, RulesValid, the rule count and observedGeneration", () => {
    const status = desiredStatus(entry(VALID, { generation: 4 }), NOW);
    assert.deepEqual(status, {
      observedGeneration: 4,
      rules: 3,
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "RulesValid",
          message: "3 rule(s) in use",
          lastTransitionTime: NOW_TEXT,
          observedGeneration: 4,
        },
      ],
    });
  });

  test("lastTransitionTime is whole seconds (RFC 3339 without fraction)", () => {
    const condition = ready(desiredStatus(entry(VALID), new Date("2030-01-02T03:04:05Z")));
    assert.equal(condition.lastTransitionTime, NOW_TEXT);
  });

  test("a partly invalid object: Ready False, InvalidRules, valid rules counted, field paths in the message", () => {
    const status = desiredStatus(entry(PARTLY_INVALID, { generation: 2 }), NOW);
    assert.equal(status.rules, 2, "the swap and the valid regexSwap");
    assert.equal(status.observedGeneration, 2);
    const condition = ready(status);
    assert.equal(condition.status, "False");
    assert.equal(condition.reason, "InvalidRules");
    assert.equal(condition.observedGeneration, 2);
    assert.match(condition.message, /^2 valid rule\(s\) in use; invalid: /);
    assert.match(condition.message, /spec\.mappings\.regexSwap\[0\]\.expression: /);
    assert.match(condition.message, /; spec\.mappings\.regexSwap\[2\]\.target: /);
    assert.doesNotMatch(condition.message, /regexSwap\[1\]/);
  });

  test("a wholly invalid object: Ready False, InvalidObject, no rules, the field named", () => {
    const status = desiredStatus(entry(WHOLLY_INVALID, { generation: 1 }), NOW);
    assert.equal(status.rules, 0);
    const condition = ready(status);
    assert.equal(condition.status, "False");
    assert.equal(condition.reason, "InvalidObject");
    assert.match(condition.message, /^not in use: spec\.priority: /);
  });

  test("a wholly invalid generation with an earlier one in use: InvalidObjectLastGoodInUse, that one's rules", () => {
    const earlier = entry(VALID, { generation: 3 }).result.object!;
    const broken = { ...entry(WHOLLY_INVALID, { generation: 4 }), lastGood: earlier };
    const status = desiredStatus(broken, NOW);
    assert.equal(status.rules, 3, "the earlier generation's rules are in use");
    assert.equal(status.observedGeneration, 4);
    const condition = ready(status);
    assert.equal(condition.status, "False");
    assert.equal(condition.reason, "InvalidObjectLastGoodInUse");
    assert.match(
      condition.message,
      /^generation 4 not in use, serving generation 3's 3 rule\(s\) instead: spec\.priority: /,
    );
    // No write loop: the stored status is matched by the status computed from it.
    const again = desiredStatus({ ...broken, object: { ...broken.object, status } }, new Date());
    assert.equal(statusMatches(status, again), true);

    // Without generations (not from an API server), the message still reads.
    const bare = { ...entry(WHOLLY_INVALID), lastGood: entry(VALID).result.object! };
    assert.match(
      ready(desiredStatus(bare, NOW)).message,
      /^this generation not in use, serving an earlier generation's 3 rule\(s\) instead: /,
    );
  });

  test("an object-level problem without a field path is reported as (object)", () => {
    const object = {
      apiVersion: "imageshift.dev/v1",
      kind: "Imageshift",
      metadata: { name: "x" },
      spec: VALID,
    };
    const broken: ClusterObject = {
      resource: IMAGESHIFT_RESOURCE,
      object,
      result: {
        issues: [
          { location: { source: "Imageshift/x" }, message: "cannot be read", severity: "error" },
          {
            location: { source: "Imageshift/x", field: "spec.exclude[0]" },
            message: "slow",
            severity: "warning",
          },
        ],
      },
    };
    assert.equal(ready(desiredStatus(broken, NOW)).message, "not in use: (object): cannot be read");
  });

  test("warnings alone keep the object Ready, and the status lists each of them", () => {
    const base = entry(VALID, { generation: 1 });
    const warned: ClusterObject = {
      ...base,
      result: {
        ...base.result,
        issues: [
          {
            location: { source: "Imageshift/rules", field: "spec.exclude[0]" },
            message: "w",
            severity: "warning",
          },
        ],
      },
    };
    const status = desiredStatus(warned, NOW);
    const condition = ready(status);
    assert.equal(condition.status, "True");
    assert.equal(condition.message, "3 rule(s) in use; 1 warning(s), see status.warnings");
    assert.deepEqual(status.warnings, ["spec.exclude[0]: w"]);
    assert.equal(statusMatches({ ...status, warnings: [] }, status), false);
    assert.equal(statusMatches(status, status), true);
  });

  test("a doubled-backslash reinterpretation reaches the status, shown as written", () => {
    const status = desiredStatus(
      entry({ mappings: { regexSwap: [{ expression: "^gcr\\\\.io/(.*)$", target: "mirror.corp/$1" }] } }),
      NOW,
    );
    assert.equal(status.warnings?.length, 1);
    assert.ok(status.warnings?.[0]?.includes('"^gcr\\\\.io/(.*)$" as single ones'), status.warnings?.[0]);
    assert.ok(status.warnings?.[0]?.startsWith("spec.mappings.regexSwap[0].expression: "));
  });

  test("warnings are bounded: at most 20 listed, then a count", () => {
    const base = entry(VALID);
    const issues = Array.from({ length: 25 }, (_, i) => ({
      location: { source: "Imageshift/rules", field: `spec.exclude[${i}]` },
      message: "x".repeat(2000),
      severity: "warning" as const,
    }));
    const status = desiredStatus({ ...base, result: { ...base.result, issues } }, NOW);
    assert.equal(status.warnings?.length, 21);
    assert.equal(status.warnings?.[0]?.length, 1024);
    assert.equal(status.warnings?.[20], "… and 5 more warning(s)");
  });

  test("no generation: no observedGeneration anywhere", () => {
    const status = desiredStatus(entry(VALID), NOW);
    assert.equal("observedGeneration" in status, false);
    assert.equal("observedGeneration" in ready(status), false);
  });

  test("the message is bounded to 4096 characters", () => {
    const regexSwap = Array.from({ length: 200 }, (_, i) => ({ expression: `^(a${i}`, target: "x/$1" }));
    const status = desiredStatus(entry({ mappings: { swap: VALID.mappings.swap, regexSwap } }), NOW);
    const condition = ready(status);
    assert.equal(condition.message.length, 4096);
    assert.equal(status.rules, 2);
  });

  test("lastTransitionTime is kept while the status does not flip, and new when it does", () => {
    const keptTrue = desiredStatus(
      entry(VALID, {
        generation: 2,
        status: {
          conditions: [{ type: "Ready", status: "True", lastTransitionTime: EARLIER, message: "old" }],
        },
      }),
      NOW,
    );
    assert.equal(ready(keptTrue).lastTransitionTime, EARLIER);

    const keptFalse = desiredStatus(
      entry(PARTLY_INVALID, {
        status: { conditions: [{ type: "Ready", status: "False", lastTransitionTime: EARLIER }] },
      }),
      NOW,
    );
    assert.equal(ready(keptFalse).lastTransitionTime, EARLIER);

    const flipped = desiredStatus(
      entry(PARTLY_INVALID, {
        status: { conditions: [{ type: "Ready", status: "True", lastTransitionTime: EARLIER }] },
      }),
      NOW,
    );
    assert.equal(ready(flipped).lastTransitionTime, NOW_TEXT);

    const noTime = desiredStatus(
      entry(VALID, { status: { conditions: [{ type: "Ready", status: "True" }] } }),
      NOW,
    );
    assert.equal(ready(noTime).lastTransitionTime, NOW_TEXT);

    const otherType = desiredStatus(
      entry(VALID, {
        status: { conditions: [{ type: "Other", status: "True", lastTransitionTime: EARLIER }] },
      }),
      NOW,
    );
    assert.equal(ready(otherType).lastTransitionTime, NOW_TEXT);
  });

  test("defaults `now` to the current time", () => {
    const before = Date.now();
    const time = Date.parse(ready(desiredStatus(entry(VALID))).lastTransitionTime);
    assert.ok(time >= Math.floor(before / 1000) * 1000 && time <= Date.now(), String(time));
  });
});

describe("statusMatches", () => {
  const wanted = desiredStatus(entry(VALID, { generation: 3 }), NOW);

  test("true for the same status, whatever the times", () => {
    const stored = structuredClone(wanted);
    stored.conditions[0]!.lastTransitionTime = EARLIER;
    assert.equal(statusMatches(stored, wanted), true);
    assert.equal(statusMatches(JSON.parse(JSON.stringify(wanted)), wanted), true);
  });

  test("false when any compared field differs", () => {
    const changes: ((status: RuleObjectStatus) => void)[] = [
      (s) => {
        s.observedGeneration = 2;
      },
      (s) => {
        s.rules = 2;
      },
      (s) => {
        s.conditions[0]!.status = "False";
      },
      (s) => {
        s.conditions[0]!.reason = "InvalidRules";
      },
      (s) => {
        s.conditions[0]!.message = "2 rule(s) in use";
      },
      (s) => {
        s.conditions[0]!.observedGeneration = 2;
      },
      (s) => {
        s.conditions[0]!.type = "Other" as "Ready";
      },
      (s) => {
        s.conditions = [];
      },
    ];
    for (const [i, change] of changes.entries()) {
      const stored = structuredClone(wanted);
      change(stored);
      assert.equal(statusMatches(stored, wanted), false, `change ${i}`);
    }
  });

  test("false for no stored status or an empty one", () => {
    assert.equal(statusMatches(undefined, wanted), false);
    assert.equal(statusMatches({}, wanted), false);
  });

  test("a stored status is matched by the desired status computed from it (no write loop)", () => {
    for (const spec of [VALID, PARTLY_INVALID, WHOLLY_INVALID]) {
      const first = desiredStatus(entry(spec, { generation: 5 }), NOW);
      const second = desiredStatus(entry(spec, { generation: 5, status: first }), new Date());
      assert.equal(statusMatches(first, second), true);
      assert.deepEqual(second, first, "lastTransitionTime kept too");
    }
  });
});

/** A RegistryRewriteRule as the Mutating Registry Webhook's users have them. */
function compatEntry(rules: unknown[], status?: unknown): ClusterObject {
  const object = {
    apiVersion: "dev.flemzord.fr/v1alpha1",
    kind: "RegistryRewriteRule",
    metadata: { name: "hub", generation: 2 },
    spec: { rules },
    ...(status === undefined ? {} : { status }),
  };
  return {
    resource: COMPAT_RESOURCE,
    object,
    result: compileObject(object, { source: "RegistryRewriteRule/hub" }),
  };
}

const HUB = { match: "^docker\\.io/(.*)", replace: "mirror.corp/hub/$1" };
const QUAY = { match: "^quay\\.io/(.*)", replace: "mirror.corp/quay/$1" };
const BROKEN = { match: "^(gcr\\.io/(.*)", replace: "mirror.corp/gcr/$1" };
/** What the Mutating Registry Webhook wrote: always ready, its rule count, its own time. */
const MRW_STATUS = { observedGeneration: 2, ready: true, ruleCount: 3, lastUpdateTime: EARLIER };

describe("RegistryRewriteRule status: MRW's fields kept current", () => {
  test("a valid object: ready true, ruleCount the rules in use, lastUpdateTime now", () => {
    const status = desiredStatus(compatEntry([HUB, QUAY]), NOW);
    assert.equal(status.ready, true);
    assert.equal(status.ruleCount, 2);
    assert.equal(status.lastUpdateTime, NOW_TEXT);
    assert.equal(status.rules, 2);
    assert.equal(ready(status).status, "True");
  });

  test("an invalid rule: ready false and only the valid rules counted, where MRW said ready", () => {
    const entry = compatEntry([HUB, QUAY, BROKEN], MRW_STATUS);
    const status = desiredStatus(entry, NOW);
    assert.equal(status.ready, false);
    assert.equal(status.ruleCount, 2);
    assert.equal(ready(status).status, "False");
    assert.equal(statusMatches(entry.object.status, status), false, "MRW's status is rewritten");
  });

  test("Imageshift objects get none of MRW's fields", () => {
    const status = desiredStatus(entry(VALID, { generation: 1 }), NOW);
    for (const field of ["ready", "ruleCount", "lastUpdateTime"]) assert.equal(field in status, false, field);
  });

  test("statusMatches compares ready and ruleCount, not lastUpdateTime", () => {
    const wanted = desiredStatus(compatEntry([HUB, QUAY]), NOW);
    assert.equal(statusMatches({ ...wanted, lastUpdateTime: EARLIER }, wanted), true);
    assert.equal(statusMatches({ ...wanted, ready: false }, wanted), false);
    assert.equal(statusMatches({ ...wanted, ruleCount: 3 }, wanted), false);
    const { ready: _, ...withoutReady } = wanted;
    assert.equal(statusMatches(withoutReady, wanted), false);
  });
});

/** `entry` whose rules in use verify (`verify.mode`) against these target registries. */
function verifying(base: ClusterObject, mode: string, targetRegistries?: readonly string[]): ClusterObject {
  const policy = {
    mode,
    whenAbsent: "KeepOriginal",
    whenUnknown: "Rewrite",
    insecure: new Set<string>(),
  } as const;
  // compile.ts sets `verify` only for Presence and Digest.
  const object: CompiledObject = {
    ...base.result.object!,
    ...(mode === "Presence" || mode === "Digest" ? { verify: { ...policy, mode } } : {}),
    ...(targetRegistries ? { targetRegistries } : {}),
  };
  return { ...base, result: { ...base.result, object } };
}

const AT = Date.parse("2026-11-30T21:00:00.250Z");
const ERRORS = new Map([
  ["127.0.0.1:5000", { message: "HTTP 503", at: AT }],
  ["elsewhere.example", { message: "connection refused", at: AT }],
]);

function readyOf(status: RuleObjectStatus): Condition | undefined {
  return status.conditions.find((condition) => condition.type === "Ready");
}

function reachable(status: RuleObjectStatus): Condition | undefined {
  return status.conditions.find((condition) => condition.type === "RegistriesReachable");
}

describe("RegistriesReachable: the last error of each target registry, for objects that verify", () => {
  const targets = ["mirror.corp", "127.0.0.1:5000"];

  test("an object that does not verify, or verifies with mode None, gets no such condition", () => {
    assert.equal(reachable(desiredStatus(entry(VALID, { generation: 1 }), NOW, ERRORS)), undefined);
    const none = verifying(entry(VALID, { generation: 1 }), "None", targets);
    assert.deepEqual(
      desiredStatus(none, NOW, ERRORS).conditions.map((condition) => condition.type),
      ["Ready"],
    );
  });

  test("no target registry failing: True, Reachable, the registries named", () => {
    const status = desiredStatus(
      verifying(entry(VALID, { generation: 2 }), "Presence", targets),
      NOW,
      new Map(),
    );
    assert.deepEqual(status.conditions[1], {
      type: "RegistriesReachable",
      status: "True",
      reason: "Reachable",
      message: "no failed check on mirror.corp, 127.0.0.1:5000",
      lastTransitionTime: NOW_TEXT,
      observedGeneration: 2,
    });
    assert.equal(
      reachable(desiredStatus(verifying(entry(VALID), "Digest", targets), NOW))?.status,
      "True",
      "Digest too",
    );
    const noTargets = desiredStatus(verifying(entry(VALID), "Digest", []), NOW);
    assert.equal(reachable(noTargets)?.message, "no target registries");
    const unknownTargets = desiredStatus(verifying(entry(VALID), "Presence"), NOW, ERRORS);
    assert.equal(reachable(unknownTargets)?.message, "no target registries");
  });

  test("a target registry with a last error: False, CheckFailed, each failing target with its error and time", () => {
    const status = desiredStatus(verifying(entry(VALID, { generation: 2 }), "Digest", targets), NOW, ERRORS);
    const condition = reachable(status);
    assert.equal(condition?.status, "False");
    assert.equal(condition?.reason, "CheckFailed");
    assert.equal(
      condition?.message,
      "127.0.0.1:5000: HTTP 503 (at 2026-11-30T21:00:00Z)",
      "only its own targets",
    );
    assert.equal(readyOf(status)?.status, "True", "Ready is about the rules, not the registries");

    const both = new Map([...ERRORS, ["mirror.corp", { message: "HTTP 429", at: AT + 5000 }]]);
    assert.equal(
      reachable(desiredStatus(verifying(entry(VALID), "Presence", targets), NOW, both))?.message,
      "mirror.corp: HTTP 429 (at 2026-11-30T21:00:05Z); 127.0.0.1:5000: HTTP 503 (at 2026-11-30T21:00:00Z)",
    );
  });

  test("bounded: ten registries listed, each error cut to 256 characters without control characters", () => {
    const many = Array.from({ length: 15 }, (_, i) => `r${i}.example`);
    const errors = new Map(
      many.map((host) => [host, { message: `HTTP 500\n\u001b[31m${"x".repeat(1000)}`, at: AT }] as const),
    );
    const failed = reachable(desiredStatus(verifying(entry(VALID), "Presence", many), NOW, errors));
    const parts = failed?.message.split("; ") ?? [];
    assert.equal(parts.length, 11);
    assert.equal(parts[10], "… and 5 more");
    assert.match(parts[0] ?? "", /^r0\.example: HTTP 500 \[31mxxx+ \(at 2026-11-30T21:00:00Z\)$/);
    assert.equal(parts[0]?.length, "r0.example: ".length + 256 + " (at 2026-11-30T21:00:00Z)".length);
    assert.ok((failed?.message.length ?? 0) <= 4096);

    const fine = reachable(desiredStatus(verifying(entry(VALID), "Presence", many), NOW));
    assert.equal(fine?.message, `no failed check on ${many.slice(0, 10).join(", ")}, … and 5 more`);
  });

  test("an unusable generation reports the registries of the generation in use", () => {
    const earlier = verifying(entry(VALID, { generation: 3 }), "Presence", ["127.0.0.1:5000"]).result.object!;
    const broken = { ...entry(WHOLLY_INVALID, { generation: 4 }), lastGood: earlier };
    assert.equal(reachable(desiredStatus(broken, NOW, ERRORS))?.reason, "CheckFailed");
    assert.equal(reachable(desiredStatus(entry(WHOLLY_INVALID), NOW, ERRORS)), undefined, "nothing in use");
  });

  test("each condition keeps its own transition time", () => {
    const stored = {
      conditions: [
        { type: "Ready", status: "False", lastTransitionTime: EARLIER },
        { type: "RegistriesReachable", status: "True", lastTransitionTime: EARLIER },
      ],
    };
    const status = desiredStatus(verifying(entry(VALID, { status: stored }), "Presence", targets), NOW);
    assert.equal(readyOf(status)?.lastTransitionTime, NOW_TEXT, "Ready flipped");
    assert.equal(reachable(status)?.lastTransitionTime, EARLIER, "RegistriesReachable did not");
    const flipped = desiredStatus(
      verifying(entry(VALID, { status: stored }), "Presence", targets),
      NOW,
      ERRORS,
    );
    assert.equal(reachable(flipped)?.lastTransitionTime, NOW_TEXT);
  });

  test("statusMatches compares the condition, and sees it gone when verification is turned off", () => {
    const on = desiredStatus(verifying(entry(VALID, { generation: 1 }), "Presence", targets), NOW, ERRORS);
    assert.equal(statusMatches(on, on), true);
    const again = desiredStatus(
      verifying(entry(VALID, { generation: 1, status: on }), "Presence", targets),
      new Date(),
      ERRORS,
    );
    assert.deepEqual(again, on, "no write loop: the stored status is what is wanted");
    const recovered = desiredStatus(verifying(entry(VALID, { generation: 1 }), "Presence", targets), NOW);
    assert.equal(statusMatches(on, recovered), false, "the registry recovered");

    const off = desiredStatus(entry(VALID, { generation: 1, status: on }), NOW, ERRORS);
    assert.deepEqual(
      off.conditions.map((condition) => condition.type),
      ["Ready"],
      "the condition is removed (the merge patch replaces the conditions list)",
    );
    assert.equal(statusMatches(on, off), false);
    assert.equal(statusMatches(off, on), false);
  });
});
