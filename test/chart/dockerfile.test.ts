/**
 * What the benchmarks and the chart assume of the image, checked as text (fast, no build): the
 * runtime tuning the figures in docs/performance.md were measured with, a non-root user running
 * the production build, the OCI labels and a build context of only what is copied. The image
 * itself is built and run by test/e2e/image.e2e.test.ts (podman, no Docker engine).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";

const ROOT = join(import.meta.dirname, "..", "..");
const DOCKERFILE = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const VALUES = parse(readFileSync(join(ROOT, "charts", "imageshift", "values.yaml"), "utf8")) as {
  nodeOptions: string;
};
const BENCH = readFileSync(join(ROOT, "bench", "harness.ts"), "utf8");

/** The final stage's `KEY=value` pairs from its ENV instructions (comment lines skipped). */
function finalStageEnv(): Record<string, string> {
  const stages = DOCKERFILE.split(/^FROM /m);
  const lines = (stages.at(-1) ?? "").split("\n").filter((line) => !line.trim().startsWith("#"));
  const instructions = lines.join("\n").replace(/\\\n/g, " ");
  const env: Record<string, string> = {};
  for (const instruction of instructions.split("\n").filter((line) => line.startsWith("ENV "))) {
    for (const [, key, quoted, bare] of instruction.matchAll(/(\w+)=(?:"([^"]*)"|(\S+))/g))
      env[key as string] = quoted ?? bare ?? "";
  }
  return env;
}

describe("Dockerfile", () => {
  const env = finalStageEnv();

  it("sets the NODE_OPTIONS the chart sets and the benchmark measures", () => {
    assert.equal(env.NODE_OPTIONS, VALUES.nodeOptions);
    assert.match(BENCH, new RegExp(`DEPLOYED_NODE_OPTIONS = "${VALUES.nodeOptions}"`));
  });

  it("sets the malloc threshold the benchmark measures", () => {
    assert.equal(env.MALLOC_MMAP_THRESHOLD_, "32768");
    assert.match(BENCH, /MALLOC_MMAP_THRESHOLD_: "32768"/);
  });

  it("runs the production build as a non-root user", () => {
    assert.equal(env.NODE_ENV, "production");
    assert.match(DOCKERFILE, /^USER 1000:1000$/m);
    assert.match(DOCKERFILE, /^ENTRYPOINT \["node", "build\/main\.js"\]$/m);
  });
});

describe("Dockerfile labels and build context", () => {
  it("labels the image with the OCI annotations, the version being package.json's", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    assert.match(DOCKERFILE, /org\.opencontainers\.image\.title="ImageShift"/);
    assert.match(DOCKERFILE, /org\.opencontainers\.image\.licenses="Apache-2\.0"/);
    assert.match(
      DOCKERFILE,
      new RegExp(`org\\.opencontainers\\.image\\.version="${pkg.version.replaceAll(".", "\\.")}"`),
    );
  });

  it("sends only what the Dockerfile copies as the build context", () => {
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.startsWith("#"));
    assert.equal(ignore[0], "**");
    const copied = [...DOCKERFILE.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? "").split(" "),
    );
    assert.deepEqual(copied, [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "src",
    ]);
    for (const source of copied)
      assert.ok(ignore.includes(`!${source}`) || ignore.includes(`!${source}/`), source);
  });
});
