import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { rulesFromYaml } from "../engine/rules/testing.ts";
import type { CheckResult, CheckTarget } from "../registry/presence.ts";
import { readOriginalImages } from "./annotations.ts";
import { planMutation } from "./plan.ts";
import { decodePod, type PodView } from "./pod-view.ts";
import { decodeReview } from "./review.ts";
import { podCreateReview } from "./testing.ts";
import { MAX_CHECKS_PER_ADMISSION, MAX_RULES_TRIED, type ManifestChecker } from "./verify.ts";

const _FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);
const DIGEST_A = `sha256:${"a".repeat(64)}`;
const DIGEST_B = `sha256:${"b".repeat(64)}`;

function podWith(images: string[]): PodView {
  const containers = Object.fromEntries(images.map((image, i) => [`c${i}`, image]));
  const decoded = decodeReview(podCreateReview(containers, { namespace: "team", name: "web" }));
  assert.ok(decoded.ok);
  const view = decodePod(decoded.request);
  assert.ok(view);
  return view;
}

/** Answers by `host/repository:reference` (or `@digest`); unknown when not listed. */
class ScriptedChecker implements ManifestChecker {
  readonly asked: CheckTarget[] = [];
  inFlight = 0;
  mostInFlight = 0;
  private readonly answers: Record<string, CheckResult | "never">;
  constructor(answers: Record<string, CheckResult | "never">) {
    this.answers = answers;
  }
  async check(target: CheckTarget): Promise<CheckResult> {
    this.asked.push(target);
    const separator = target.reference.startsWith("sha256:") ? "@" : ":";
    const answer = this.answers[`${target.host}/${target.repository}${separator}${target.reference}`];
    if (answer === "never") return new Promise(() => {});
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    this.inFlight--;
    return answer ?? { state: "unknown", reason: "HTTP 503", cached: false };
  }
}

const present = (digest?: string): CheckResult =>
  digest ? { state: "present", digest, cached: false } : { state: "present", cached: false };
const absent: CheckResult = { state: "absent", cached: false };

function rules(verify: string, extra = "") {
  return rulesFromYaml(`apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: mirror }
spec:
  priority: 10
  verify: ${verify}
  mappings: { swap: [{ registry: docker.io, target: mirror.corp }] }
${extra}`).ruleSet;
}

const FALLBACK_OBJECT = `---
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: second }
spec:
  mappings: { swap: [{ registry: docker.io, target: second.corp }] }
`;

async function plan(
  images: string[],
  ruleSet: ReturnType<typeof rules>,
  checker: ManifestChecker,
  { strict = false, deadlineMs = 1000 } = {},
) {
  const view = podWith(images);
  const result = await planMutation(view, ruleSet, { namespace: "team" }, strict, { checker, deadlineMs });
  const annotation = result.patch.find((op) => op.path.startsWith("/metadata/annotations"));
  const record = annotation
    ? readOriginalImages({ metadata: { annotations: annotationValue(annotation) } })
    : {};
  const images_ = result.patch.filter((op) => op.path.endsWith("/image")).map((op) => op.value);
  return { ...result, record, images: images_ };
}

function annotationValue(op: { path: string; value?: unknown }): Record<string, unknown> {
  if (op.path === "/metadata/annotations") return op.value as Record<string, unknown>;
  return { "imageshift.dev/original-images": op.value };
}

describe("verification in the plan (Presence)", () => {
  test("present: rewritten, and the record says what the mirror answered", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": present(DIGEST_A) });
    const result = await plan(["nginx:1.25"], rules("{ mode: Presence }"), checker);
    assert.equal(result.outcome, "patched");
    assert.deepEqual(result.images, ["mirror.corp/library/nginx:1.25"]);
    assert.match(
      result.record["containers/c0"]?.check ?? "",
      /^mirror\.corp\/library\/nginx:1\.25: present \[/,
    );
    assert.deepEqual(result.warnings, []);
    assert.deepEqual(checker.asked, [
      { host: "mirror.corp", repository: "library/nginx", reference: "1.25" },
    ]);
  });

  test("absent: the original is kept with a warning, and the record carries the outcome", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": absent });
    const result = await plan(["nginx:1.25"], rules("{ mode: Presence }"), checker);
    assert.equal(result.outcome, "patched", "only the record is written");
    assert.deepEqual(result.images, []);
    const entry = result.record["containers/c0"];
    assert.equal(entry?.image, "nginx:1.25");
    assert.equal(entry?.original, "nginx:1.25");
    assert.match(entry?.check ?? "", /absent/);
    assert.match(
      result.warnings[0] ?? "",
      /nginx:1\.25 kept, as its mirror cannot be used: mirror\.corp\/library\/nginx:1\.25: absent/,
    );
    assert.ok(result.events.some((event) => event.type === "fallback"));
  });

  test("absent with NextRule: the next matching rule decides (and is checked if it asks)", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": absent });
    const result = await plan(
      ["nginx:1.25"],
      rules("{ mode: Presence, whenAbsent: NextRule }", FALLBACK_OBJECT),
      checker,
    );
    assert.deepEqual(result.images, ["second.corp/library/nginx:1.25"]);
    assert.match(result.record["containers/c0"]?.check ?? "", /absent/);
  });

  test("NextRule with no other rule: the original is kept", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": absent });
    const result = await plan(["nginx:1.25"], rules("{ mode: Presence, whenAbsent: NextRule }"), checker);
    assert.deepEqual(result.images, []);
    assert.equal(result.record["containers/c0"]?.image, "nginx:1.25");
  });

  test(`NextRule tries at most ${MAX_RULES_TRIED} rules per image`, async () => {
    const objects = Array.from(
      { length: MAX_RULES_TRIED + 3 },
      (_, i) => `---
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: m${String(i).padStart(2, "0")} }
spec:
  verify: { mode: Presence, whenAbsent: NextRule }
  mappings: { swap: [{ registry: docker.io, target: m${i}.corp }] }
`,
    ).join("");
    const checker = new ScriptedChecker(
      Object.fromEntries(
        Array.from({ length: MAX_RULES_TRIED + 3 }, (_, i) => [`m${i}.corp/library/a:1`, absent]),
      ),
    );
    const result = await plan(["a:1"], rulesFromYaml(objects).ruleSet, checker);
    assert.equal(checker.asked.length, MAX_RULES_TRIED);
    assert.deepEqual(result.images, []);
  });

  test("unknown: the rule is trusted by default, the original kept when the object says so", async () => {
    const trusted = await plan(["nginx:1.25"], rules("{ mode: Presence }"), new ScriptedChecker({}));
    assert.deepEqual(trusted.images, ["mirror.corp/library/nginx:1.25"]);
    assert.match(trusted.record["containers/c0"]?.check ?? "", /unknown: HTTP 503/);
    const kept = await plan(
      ["nginx:1.25"],
      rules("{ mode: Presence, whenUnknown: KeepOriginal }"),
      new ScriptedChecker({}),
    );
    assert.deepEqual(kept.images, []);
    assert.match(kept.warnings[0] ?? "", /unknown: HTTP 503/);
  });

  test("a strict namespace refuses a pod whose mirror lacks the image, naming the image and the mirror", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": absent });
    const result = await plan(["nginx:1.25"], rules("{ mode: Presence }"), checker, { strict: true });
    assert.equal(result.outcome, "denied");
    assert.match(
      result.refusal ?? "",
      /image "nginx:1\.25" not rewritten, as its mirror cannot be used: mirror\.corp\/library\/nginx:1\.25: absent/,
    );
  });

  test("all images are checked at once, and one deadline bounds them all", async () => {
    const checker = new ScriptedChecker({
      "mirror.corp/library/a:1": present(),
      "mirror.corp/library/b:1": present(),
      "mirror.corp/library/c:1": "never",
    });
    const started = Date.now();
    const result = await plan(["a:1", "b:1", "c:1"], rules("{ mode: Presence }"), checker, {
      deadlineMs: 50,
    });
    assert.ok(Date.now() - started < 1000, "answered near the deadline, not never");
    assert.equal(checker.mostInFlight, 2, "a and b were in flight together");
    assert.equal(result.images.length, 3, "c's unknown is trusted (whenUnknown: Rewrite)");
    assert.match(
      result.record["containers/c2"]?.check ?? "",
      /no answer within the 50 ms admission deadline/,
    );
  });

  test(`one pod starts at most ${MAX_CHECKS_PER_ADMISSION} checks; the rest are unknown`, async () => {
    const images = Array.from({ length: MAX_CHECKS_PER_ADMISSION + 6 }, (_, i) => `app${i}:1`);
    const checker = new ScriptedChecker(
      Object.fromEntries(images.map((image) => [`mirror.corp/library/${image}`, present()])),
    );
    const result = await plan(images, rules("{ mode: Presence, whenUnknown: KeepOriginal }"), checker);
    assert.equal(checker.asked.length, MAX_CHECKS_PER_ADMISSION);
    assert.equal(result.images.length, MAX_CHECKS_PER_ADMISSION);
    assert.match(
      result.warnings.at(-1) ?? "",
      new RegExp(`unknown: more than ${MAX_CHECKS_PER_ADMISSION} registry checks for one pod`),
    );
  });

  test("without verification wired in, rewrites are used as the rules say", async () => {
    const view = podWith(["nginx:1.25"]);
    const result = await planMutation(view, rules("{ mode: Presence }"), {}, false);
    assert.equal(result.outcome, "patched");
  });

  test("a credentials Secret and insecure registries reach the checker", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": present() });
    await plan(
      ["nginx:1.25"],
      rules("{ mode: Presence, credentialsSecret: pull, insecureRegistries: [mirror.corp] }"),
      checker,
    );
    assert.deepEqual(checker.asked[0], {
      host: "mirror.corp",
      repository: "library/nginx",
      reference: "1.25",
      credentials: "pull",
      insecure: true,
    });
  });
});

describe("verification in the plan (Digest)", () => {
  const digest = rules("{ mode: Digest }");

  test("a pinned original: the mirror is asked for that digest", async () => {
    const image = `nginx:1.25@${DIGEST_A}`;
    const checker = new ScriptedChecker({ [`mirror.corp/library/nginx@${DIGEST_A}`]: present(DIGEST_A) });
    const result = await plan([image], digest, checker);
    assert.deepEqual(result.images, [`mirror.corp/library/nginx:1.25@${DIGEST_A}`]);
    assert.match(result.record["containers/c0"]?.check ?? "", /present at sha256:a/);
  });

  test("a pinned original the mirror answers with another digest: not used", async () => {
    const checker = new ScriptedChecker({ [`mirror.corp/library/nginx@${DIGEST_A}`]: present(DIGEST_B) });
    const result = await plan([`nginx@${DIGEST_A}`], digest, checker);
    assert.deepEqual(result.images, []);
    assert.match(result.warnings[0] ?? "", /stale: serves sha256:b+, not sha256:a+/);
  });

  test("a tag: the mirror's digest must be upstream's", async () => {
    const same = new ScriptedChecker({
      "mirror.corp/library/nginx:1.25": present(DIGEST_A),
      "docker.io/library/nginx:1.25": present(DIGEST_A),
    });
    assert.deepEqual((await plan(["nginx:1.25"], digest, same)).images, ["mirror.corp/library/nginx:1.25"]);
    assert.equal(same.asked.length, 2);
    const stale = new ScriptedChecker({
      "mirror.corp/library/nginx:1.25": present(DIGEST_B),
      "docker.io/library/nginx:1.25": present(DIGEST_A),
    });
    const result = await plan(["nginx:1.25"], digest, stale);
    assert.deepEqual(result.images, []);
    assert.match(result.warnings[0] ?? "", /stale: has sha256:b+, upstream nginx:1\.25 has sha256:a+/);
  });

  test("a tag whose upstream cannot answer: presence is enough", async () => {
    const checker = new ScriptedChecker({ "mirror.corp/library/nginx:1.25": present(DIGEST_B) });
    const result = await plan(["nginx:1.25"], digest, checker);
    assert.deepEqual(result.images, ["mirror.corp/library/nginx:1.25"]);
    assert.match(result.record["containers/c0"]?.check ?? "", /upstream's digest unknown, not compared/);
  });

  test("a mirror that sends no digest cannot be compared: unknown", async () => {
    const checker = new ScriptedChecker({
      "mirror.corp/library/nginx:1.25": present(),
      "docker.io/library/nginx:1.25": present(DIGEST_A),
    });
    const result = await plan(["nginx:1.25"], rules("{ mode: Digest, whenUnknown: KeepOriginal }"), checker);
    assert.deepEqual(result.images, []);
    assert.match(result.warnings[0] ?? "", /sent no digest/);
  });

  test("cached answers are marked in the record", async () => {
    const cached = (answer: CheckResult): CheckResult => ({ ...answer, cached: true });
    const checker = new ScriptedChecker({
      "mirror.corp/library/nginx:1.25": cached(present(DIGEST_A)),
      "docker.io/library/nginx:1.25": cached(present(DIGEST_A)),
    });
    const result = await plan(["nginx:1.25"], digest, checker);
    assert.match(result.record["containers/c0"]?.check ?? "", /\(cached\)/);
  });
});
