// Differential test: parseReference against Go's github.com/distribution/reference
// (ParseNormalizedNamed, what containerd and the kubelet use), as recorded by
// test/fixtures/reference/recorder. Go is not needed here; README.md there says how to
// re-record after the inputs (src/engine/image/testing.ts) change.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { formatReference, type ImageReference, parseReference } from "./reference.ts";
import { differentialInputs } from "./testing.ts";

interface GoRecord {
  readonly input: string;
  readonly ok: boolean;
  readonly error?: string;
  /** "" (omitted) when Go reads the whole name as a path, e.g. `my_registry.corp/app`. */
  readonly domain?: string;
  readonly path?: string;
  readonly tag?: string;
  readonly digest?: string;
  /** `String()`. */
  readonly string?: string;
}

const fixture = JSON.parse(
  readFileSync(new URL("../../../test/fixtures/reference/go-recorded.json", import.meta.url), "utf8"),
) as { library: string; records: GoRecord[] };

/** Longer input is refused before parsing; Go has no such limit (its hosts have no length limit). */
const INPUT_MAX_LENGTH = 1024;

/**
 * The ImageReference Go's parts stand for. Where Go has no domain its path's first
 * component stands in that place, so formatReference still gives Go's String().
 */
function expectedReference(record: GoRecord): ImageReference {
  let domain = record.domain ?? "";
  let path = record.path ?? "";
  if (domain === "") {
    const slash = path.indexOf("/");
    domain = path.slice(0, slash);
    path = path.slice(slash + 1);
  }
  return {
    domain,
    path,
    ...(record.tag === undefined ? {} : { tag: record.tag }),
    ...(record.digest === undefined ? {} : { digest: record.digest }),
  };
}

/** How ImageShift and Go differ on one input, or undefined when they agree. */
function disagreement(record: GoRecord): string | undefined {
  const result = parseReference(record.input);
  const input = JSON.stringify(record.input);
  if (!record.ok) return result.ok ? `${input}: Go rejects (${record.error}), ImageShift accepts` : undefined;
  if (!result.ok) return `${input}: Go accepts as ${record.string}, ImageShift rejects: ${result.error}`;
  const expected = expectedReference(record);
  const formatted = formatReference(result.reference);
  try {
    assert.deepEqual(result.reference, expected);
    assert.equal(formatted, record.string);
  } catch {
    return `${input}: Go reads ${JSON.stringify(expected)} (${record.string}), ImageShift ${JSON.stringify(result.reference)} (${formatted})`;
  }
  return undefined;
}

describe("parseReference agrees with Go's distribution/reference", () => {
  test(`the recording (${fixture.library}) covers every generated input`, () => {
    const recorded = fixture.records.map((record) => record.input);
    assert.deepEqual(
      recorded,
      differentialInputs(),
      "the inputs changed: re-record test/fixtures/reference/go-recorded.json (see the README there)",
    );
    assert.ok(fixture.records.length > 3000);
    assert.ok(fixture.records.some((record) => record.ok && record.domain === undefined));
  });

  test("same verdict and same parts on every recorded input", () => {
    const found = fixture.records
      .filter((record) => record.input.length <= INPUT_MAX_LENGTH)
      .map(disagreement)
      .filter((problem) => problem !== undefined);
    assert.equal(
      found.length,
      0,
      `${found.length} disagreements with Go, the first ones:\n${found.slice(0, 25).join("\n")}`,
    );
  });

  test("the one deliberate difference: input over 1024 characters is refused", () => {
    const long = fixture.records.filter((record) => record.input.length > INPUT_MAX_LENGTH);
    assert.ok(
      long.some((record) => record.ok),
      "a valid over-long reference is recorded",
    );
    for (const record of long) assert.equal(parseReference(record.input).ok, false);
  });
});
