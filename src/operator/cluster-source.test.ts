/**
 * `ClusterRuleSource` (cluster-source.ts) over an in-memory stand-in for the API server's
 * lists and watches: which generation of each object is served. The real API server is
 * exercised by test/e2e/kube.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import type { KubeClient } from "../k8s/client.ts";
import type { KubeObject, WatchEvent } from "../k8s/objects.ts";
import { captureLogger } from "../telemetry/testing.ts";
import { ClusterRuleSource } from "./cluster-source.ts";
import { desiredStatus } from "./status.ts";

const IMAGESHIFTS = "/apis/imageshift.dev/v1/imageshifts";

/** Lists return nothing; watches stay open until stopped, and `emit` delivers their events. */
class FakeApiServer {
  private readonly watchers = new Map<string, (event: WatchEvent<KubeObject>) => void>();
  private resourceVersion = 1;

  async list(): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    return { items: [], resourceVersion: String(this.resourceVersion) };
  }

  watch(
    path: string,
    _query: unknown,
    onEvent: (event: WatchEvent<KubeObject>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.watchers.set(path, onEvent);
    return new Promise((resolve) => signal.addEventListener("abort", () => resolve()));
  }

  emit(type: WatchEvent<KubeObject>["type"], object: KubeObject): void {
    const onEvent = this.watchers.get(IMAGESHIFTS);
    assert.ok(onEvent, "the Imageshift watch is open");
    this.resourceVersion++;
    onEvent({
      type,
      object: { ...object, metadata: { ...object.metadata, resourceVersion: String(this.resourceVersion) } },
    });
  }
}

/** An `Imageshift` named `name`, generation `generation`; `uid` tells a re-created object apart. */
function imageshift(name: string, generation: number, spec: unknown, uid = `uid-${name}`): KubeObject {
  return {
    apiVersion: "imageshift.dev/v1",
    kind: "Imageshift",
    metadata: { name, uid, generation },
    spec,
  };
}

/** Five swap rules: `r1.example` … `r5.example` to `mirror.example/<tag>/…`. */
function fiveRules(tag: string, extra: Record<string, unknown> = {}) {
  return {
    ...extra,
    mappings: {
      swap: [1, 2, 3, 4, 5].map((i) => ({ registry: `r${i}.example`, target: `mirror.example/${tag}` })),
    },
  };
}

describe("ClusterRuleSource: which generation of an object is served", () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  async function started() {
    const api = new FakeApiServer();
    const { logger, lines } = captureLogger();
    const source = new ClusterRuleSource({
      client: api as unknown as KubeClient,
      logger,
      watchCompat: false,
    });
    stops.push(() => source.stop());
    await source.start();
    await until("the first sync", () => source.current() !== undefined);
    /** Emits an event and waits for the rebuild it schedules. */
    const emit = async (type: WatchEvent<KubeObject>["type"], object: KubeObject) => {
      const before = source.current();
      const objectsBefore = source.clusterObjects();
      api.emit(type, object);
      await until("the rebuild", () => source.clusterObjects() !== objectsBefore);
      return before;
    };
    const rewrite = (image: string) => source.current()?.ruleSet.rewrite(image).output;
    const entry = (name: string) =>
      source.clusterObjects().find((candidate) => candidate.object.metadata?.name === name);
    return { source, lines, emit, rewrite, entry };
  }

  test("a rule set over budget is refused as a whole; the last good set keeps serving, and statuses say why", async () => {
    const { source, lines, emit, rewrite, entry } = await started();
    await emit("ADDED", imageshift("airgap", 1, fiveRules("one")));
    const regexSwap = Array.from({ length: 10_001 }, (_, i) => ({
      expression: `^big${i}\\.example/(.*)$`,
      target: "mirror.example/big/$1",
    }));
    await emit("ADDED", imageshift("big", 1, { mappings: { regexSwap } }));
    assert.equal(source.current()?.ruleSet.size, 5, "the last good set");
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/one/app:1");
    assert.equal(rewrite("big7.example/app:1"), "big7.example/app:1");
    assert.ok(lines.some((line) => line.msg === "rule set over budget; keeping the last good rule set"));
    const [ready] = desiredStatus(entry("airgap")!).conditions;
    assert.equal(ready?.reason, "RuleSetOverBudget");
    assert.match(ready?.message ?? "", /10001 regular-expression rules, more than 10000/);

    // Counted before compiling: 110,000 declared swap rules are refused without compiling them.
    const swap = Array.from({ length: 110_000 }, (_, i) => ({
      registry: `s${i}.example`,
      target: "m.example/s",
    }));
    await emit("MODIFIED", imageshift("big", 2, { mappings: { swap } }));
    assert.equal(source.current()?.ruleSet.size, 5);
    assert.ok(lines.some((line) => /the rule set has 110005 rules, more than 100000/.test(String(line.err))));

    await emit("DELETED", imageshift("big", 2, {}));
    assert.equal(entry("airgap") && desiredStatus(entry("airgap")!).conditions[0]?.status, "True");
  });

  test("an object-level error in a new generation keeps the last usable generation's rules, and status says so", async () => {
    const { source, lines, emit, rewrite, entry } = await started();
    await emit("ADDED", imageshift("airgap", 1, fiveRules("one")));
    assert.equal(source.current()?.ruleSet.size, 5);

    await emit("MODIFIED", imageshift("airgap", 2, fiveRules("two", { default: "not a registry!" })));
    assert.equal(source.current()?.ruleSet.size, 5, "generation 1's five rules stay in use");
    for (const i of [1, 2, 3, 4, 5])
      assert.equal(rewrite(`r${i}.example/app:1`), "mirror.example/one/app:1", `rule ${i}`);
    assert.deepEqual(
      source.current()?.objects.map((object) => [object.name, object.generation]),
      [["airgap", 1]],
    );
    assert.ok(
      source
        .current()
        ?.issues.some((issue) => issue.severity === "error" && issue.location.field === "spec.default"),
      "generation 2's error is reported",
    );
    const airgap = entry("airgap");
    assert.equal(airgap?.object.metadata?.generation, 2);
    assert.equal(airgap?.lastGood?.generation, 1);
    assert.ok(
      lines.some(
        (line) =>
          line.msg === "object has errors; serving its last usable generation" &&
          line.object === "Imageshift/airgap" &&
          line.serving === 1,
      ),
      "the fallback is logged",
    );

    const status = desiredStatus(airgap!);
    const [ready] = status.conditions;
    assert.equal(status.observedGeneration, 2);
    assert.equal(status.rules, 5, "rules in use");
    assert.equal(ready?.status, "False");
    assert.equal(ready?.reason, "InvalidObjectLastGoodInUse");
    assert.match(
      ready?.message ?? "",
      /^generation 2 not in use, serving generation 1's 5 rule\(s\) instead: spec\.default: /,
    );

    // Fixed: the new generation takes over; broken again: that one is kept instead.
    await emit("MODIFIED", imageshift("airgap", 3, fiveRules("three")));
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/three/app:1");
    assert.equal(entry("airgap")?.lastGood, undefined);
    assert.equal(desiredStatus(entry("airgap")!).conditions[0]?.reason, "RulesValid");
    await emit("MODIFIED", imageshift("airgap", 4, fiveRules("four", { priority: "high" })));
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/three/app:1");
    assert.match(desiredStatus(entry("airgap")!).conditions[0]?.message ?? "", /serving generation 3's/);

    // Deleted: its rules go, last good version included.
    await emit("DELETED", imageshift("airgap", 4, fiveRules("four", { priority: "high" })));
    assert.equal(source.current()?.ruleSet.size, 0);
    assert.equal(rewrite("r1.example/app:1"), "r1.example/app:1");
  });

  test("a per-rule error drops only that rule of the new generation; the last usable generation is not used", async () => {
    const { source, emit, rewrite, entry } = await started();
    await emit("ADDED", imageshift("partly", 1, fiveRules("one")));
    const spec = fiveRules("two");
    spec.mappings.swap[4] = { registry: "r5.example", target: "NOT VALID!!" };
    await emit("MODIFIED", imageshift("partly", 2, spec));
    assert.equal(source.current()?.ruleSet.size, 4);
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/two/app:1");
    assert.equal(rewrite("r5.example/app:1"), "r5.example/app:1");
    assert.equal(entry("partly")?.lastGood, undefined);
    assert.equal(desiredStatus(entry("partly")!).conditions[0]?.reason, "InvalidRules");

    // That generation was usable: an object-level error after it keeps its four rules.
    await emit("MODIFIED", imageshift("partly", 3, fiveRules("three", { default: "no!" })));
    assert.equal(source.current()?.ruleSet.size, 4);
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/two/app:1");
    assert.equal(entry("partly")?.lastGood?.generation, 2);
  });

  test("an object that was never usable serves nothing, nor does one re-created unusable under the same name", async () => {
    const { source, emit, rewrite, entry } = await started();
    await emit("ADDED", imageshift("never", 1, fiveRules("one", { default: "not a registry!" })));
    assert.equal(source.current()?.ruleSet.size, 0);
    assert.equal(entry("never")?.lastGood, undefined);
    const ready = desiredStatus(entry("never")!).conditions[0];
    assert.equal(ready?.reason, "InvalidObject");
    assert.match(ready?.message ?? "", /^not in use: spec\.default: /);

    await emit("ADDED", imageshift("recreated", 1, fiveRules("one")));
    assert.equal(rewrite("r1.example/app:1"), "mirror.example/one/app:1");
    await emit("DELETED", imageshift("recreated", 1, fiveRules("one")));
    // Same name, new uid: another object, with no last usable generation.
    await emit("ADDED", imageshift("recreated", 1, fiveRules("two", { priority: "high" }), "uid-second"));
    assert.equal(source.current()?.ruleSet.size, 0);
    assert.equal(entry("recreated")?.lastGood, undefined);
  });

  test("a status-only update of a kept object changes nothing", async () => {
    const { source, emit, entry } = await started();
    await emit("ADDED", imageshift("kept", 1, fiveRules("one")));
    await emit("MODIFIED", imageshift("kept", 2, fiveRules("two", { default: "not a registry!" })));
    const rules = source.current();
    const kept = entry("kept")?.lastGood;
    await emit("MODIFIED", {
      ...imageshift("kept", 2, fiveRules("two", { default: "not a registry!" })),
      status: {},
    });
    assert.equal(source.current(), rules, "the same rule set");
    assert.equal(entry("kept")?.lastGood, kept);
    assert.deepEqual(entry("kept")?.object.status, {});
  });
});

async function until(description: string, probe: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
