import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { formatReference, type ImageReference, NAME_MAX_LENGTH, parseReference } from "./reference.ts";

const RUNS = { numRuns: 300 } as const;

const chars = (text: string): fc.Arbitrary<string> => fc.constantFrom(...text.split(""));
const LOWER = "abcdefghijklmnopqrstuvwxyz";
const DIGITS = "0123456789";
const lowerAlnum = chars(LOWER + DIGITS);
const anyAlnum = chars(LOWER + LOWER.toUpperCase() + DIGITS);
const hexChar = chars("0123456789abcdef");
/** Any code point, lone surrogates included (fast-check's "binary" unit is slow to set up). */
const anyCodePoint = fc.integer({ min: 0, max: 0x10ffff }).map((point) => String.fromCodePoint(point));

// ---------------------------------------------------------------------------
// Grammar of valid references, built independently of the implementation.
// ---------------------------------------------------------------------------

const alnumRun = fc.string({ unit: lowerAlnum, minLength: 1, maxLength: 5 });
const separator = fc.oneof(
  fc.constant("."),
  fc.constant("_"),
  fc.constant("__"),
  fc.integer({ min: 1, max: 3 }).map((n) => "-".repeat(n)),
);
const pathComponent = fc
  .tuple(alnumRun, fc.array(fc.tuple(separator, alnumRun), { maxLength: 3 }))
  .map(([head, tail]) => head + tail.map(([sep, run]) => sep + run).join(""));
const pathComponents = fc.array(pathComponent, { minLength: 1, maxLength: 4 });

const domainComponent = fc.oneof(
  anyAlnum,
  fc
    .tuple(anyAlnum, fc.string({ unit: fc.oneof(anyAlnum, fc.constant("-")), maxLength: 6 }), anyAlnum)
    .map(([a, middle, b]) => a + middle + b),
);
const dnsName = fc.array(domainComponent, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("."));
const port = fc.string({ unit: chars(DIGITS), minLength: 1, maxLength: 5 });
const hexGroup = fc.string({ unit: chars("0123456789abcdefABCDEF"), minLength: 1, maxLength: 4 });
const ipv6 = fc
  .oneof(
    fc.constantFrom("::1", "::", "2001:db8::1", "fe80::1", "2001:db8:1:2:3:4:5:6"),
    fc.array(hexGroup, { minLength: 2, maxLength: 8 }).map((groups) => groups.join(":")),
    fc
      .tuple(fc.array(hexGroup, { maxLength: 3 }), fc.array(hexGroup, { maxLength: 3 }))
      .map(([a, b]) => `${a.join(":")}::${b.join(":")}`),
  )
  .map((address) => `[${address}]`);
const withOptionalPort = (host: fc.Arbitrary<string>) =>
  fc.tuple(host, fc.option(port, { nil: undefined })).map(([h, p]) => (p === undefined ? h : `${h}:${p}`));

/** Would distribution/reference take this first component for a registry? */
function looksLikeDomain(component: string): boolean {
  return /[.:]/.test(component) || component === "localhost" || /[A-Z]/.test(component);
}

const explicitDomain = fc.oneof(
  withOptionalPort(dnsName).filter(looksLikeDomain),
  withOptionalPort(ipv6),
  withOptionalPort(fc.constant("localhost")),
  fc.constantFrom("docker.io", "index.docker.io", "registry.k8s.io", "quay.io", "gcr.io"),
);

const tag = fc
  .tuple(
    chars(`${LOWER}${LOWER.toUpperCase()}${DIGITS}_`),
    fc.oneof(
      fc.string({ unit: chars(`${LOWER}${LOWER.toUpperCase()}${DIGITS}_.-`), maxLength: 12 }),
      fc.string({ unit: chars("aZ9_.-"), minLength: 127, maxLength: 127 }),
    ),
  )
  .map(([first, rest]) => first + rest);

const digest = fc
  .constantFrom(["sha256", 64] as const, ["sha384", 96] as const, ["sha512", 128] as const)
  .chain(([algorithm, length]) =>
    fc.string({ unit: hexChar, minLength: length, maxLength: length }).map((hex) => `${algorithm}:${hex}`),
  );

interface Generated {
  readonly input: string;
  readonly expected: ImageReference;
  /** True when the input is already in canonical form. */
  readonly canonical: boolean;
}

function build(
  domain: string | undefined,
  components: readonly string[],
  tagValue: string | undefined,
  digestValue: string | undefined,
  defaultDomain = "docker.io",
): Generated {
  const path = components.join("/");
  let input = domain === undefined ? path : `${domain}/${path}`;
  if (tagValue !== undefined) input += `:${tagValue}`;
  if (digestValue !== undefined) input += `@${digestValue}`;
  let expectedDomain = domain ?? defaultDomain;
  if (expectedDomain === "index.docker.io") expectedDomain = "docker.io";
  const expectedPath = expectedDomain === "docker.io" && components.length === 1 ? `library/${path}` : path;
  const expected: ImageReference = {
    domain: expectedDomain,
    path: expectedPath,
    ...(tagValue === undefined ? {} : { tag: tagValue }),
    ...(digestValue === undefined ? {} : { digest: digestValue }),
  };
  const canonical = domain === expectedDomain && path === expectedPath;
  return { input, expected, canonical };
}

const optionalTag = fc.option(tag, { nil: undefined });
const optionalDigest = fc.option(digest, { nil: undefined });

/** Go limits the path, not the domain (the generated domains are all real hosts). */
function fitsNameLimit(generated: Generated): boolean {
  return generated.expected.path.length <= NAME_MAX_LENGTH && !/^[a-f0-9]{64}$/.test(generated.input);
}

const withDomain = fc
  .tuple(explicitDomain, pathComponents, optionalTag, optionalDigest)
  .map(([d, p, t, g]) => build(d, p, t, g))
  .filter(fitsNameLimit);

/** Names without a registry; a first component with "." would be read as one, so it is left out. */
const implicitComponents = pathComponents.filter(
  (components) => components.length === 1 || !looksLikeDomain(components[0]!),
);
const withoutDomain = fc
  .tuple(implicitComponents, optionalTag, optionalDigest)
  .map(([p, t, g]) => build(undefined, p, t, g))
  .filter(fitsNameLimit);

const validReference = fc.oneof(withDomain, withoutDomain);

/** Already-canonical references: explicit, folded domain and library/ where Docker Hub wants it. */
const canonicalReference = withDomain.filter((generated) => generated.canonical);

// Strings assembled from the grammar's tokens, valid and invalid alike.
const grammarish = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        "a",
        "b1",
        "nginx",
        "Foo",
        "/",
        "//",
        ":",
        "@",
        ".",
        "..",
        "-",
        "_",
        "__",
        "___",
        "[",
        "]",
        "[::1]",
        "::",
        "5000",
        "localhost",
        "docker.io",
        "index.docker.io",
        "library",
        "sha256:",
        "sha512:",
        "md5:",
        " ",
        "\n",
        "é",
        "\u{1F433}",
      ),
      fc.string({ unit: hexChar, minLength: 1, maxLength: 70 }),
      pathComponent,
      tag,
      digest,
    ),
    { maxLength: 12 },
  )
  .map((tokens) => tokens.join(""));

function parseOk(input: string, options?: { defaultDomain?: string }): ImageReference {
  const result = parseReference(input, options);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(input)} to parse: ${result.error}`);
  return result.reference;
}

describe("parseReference properties", () => {
  test("never throws, and every failure quotes its input", () => {
    const anyInput = fc.oneof(
      fc.string(),
      fc.string({ unit: anyCodePoint, maxLength: 64 }),
      fc.string({ unit: "grapheme", maxLength: 32 }),
      // Long inputs on both sides of the 1024-character cut-off.
      fc
        .tuple(
          fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 8 }),
          fc.integer({ min: 30, max: 300 }),
        )
        .map(([chunk, times]) => chunk.repeat(times)),
      grammarish,
    );
    fc.assert(
      fc.property(anyInput, (input) => {
        const result = parseReference(input);
        assert.equal(typeof result.ok, "boolean");
        if (!result.ok) {
          assert.equal(typeof result.error, "string");
          if (input.length <= 1024) assert.ok(result.error.includes(JSON.stringify(input)), result.error);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("whatever is accepted normalizes idempotently", () => {
    fc.assert(
      fc.property(grammarish, (input) => {
        const result = parseReference(input);
        if (!result.ok) return;
        const canonical = formatReference(result.reference);
        const again = parseOk(canonical);
        assert.deepEqual(again, result.reference);
        assert.equal(formatReference(again), canonical);
      }),
      { numRuns: 500 },
    );
  });

  test("generated valid references parse to the expected parts", () => {
    fc.assert(
      fc.property(validReference, ({ input, expected }) => {
        assert.deepEqual(parseOk(input), expected);
      }),
      RUNS,
    );
  });

  test("formatting then parsing gives back the identical reference", () => {
    fc.assert(
      fc.property(validReference, ({ input }) => {
        const reference = parseOk(input);
        const canonical = formatReference(reference);
        assert.deepEqual(parseOk(canonical), reference);
        assert.equal(formatReference(parseOk(canonical)), canonical);
      }),
      RUNS,
    );
  });

  test("canonical input is its own canonical string", () => {
    fc.assert(
      fc.property(canonicalReference, ({ input, expected }) => {
        const reference = parseOk(input);
        assert.equal(formatReference(reference), input);
        assert.deepEqual(reference, expected);
      }),
      RUNS,
    );
  });

  test("tag and digest are preserved exactly", () => {
    fc.assert(
      fc.property(
        fc.oneof(explicitDomain, fc.constant(undefined)),
        pathComponent,
        optionalTag,
        optionalDigest,
        (domain, component, tagValue, digestValue) => {
          const generated = build(domain, [component], tagValue, digestValue);
          fc.pre(fitsNameLimit(generated));
          const reference = parseOk(generated.input);
          assert.equal(reference.tag, tagValue);
          assert.equal(reference.digest, digestValue);
          assert.equal("tag" in reference, tagValue !== undefined);
          assert.equal("digest" in reference, digestValue !== undefined);
          const formatted = formatReference(reference);
          if (tagValue !== undefined) assert.ok(formatted.includes(`:${tagValue}`));
          if (digestValue !== undefined) assert.ok(formatted.endsWith(`@${digestValue}`));
        },
      ),
      RUNS,
    );
  });

  test("a name without a registry takes the default domain, without library/", () => {
    const defaultDomain = withOptionalPort(dnsName).filter(
      (d) => /[.:]/.test(d) && d !== "docker.io" && d !== "index.docker.io",
    );
    fc.assert(
      fc.property(defaultDomain, implicitComponents, optionalTag, optionalDigest, (d, p, t, g) => {
        const generated = build(undefined, p, t, g, d);
        fc.pre(fitsNameLimit(generated));
        const reference = parseOk(generated.input, { defaultDomain: d });
        assert.deepEqual(reference, generated.expected);
        assert.equal(reference.path, p.join("/"));
        // The qualified form parses the same way without the option.
        assert.deepEqual(parseOk(formatReference(reference)), reference);
      }),
      RUNS,
    );
  });

  test("an explicit registry ignores the default domain", () => {
    fc.assert(
      fc.property(withDomain, dnsName, ({ input, expected }, d) => {
        assert.deepEqual(parseOk(input, { defaultDomain: `${d}.example` }), expected);
      }),
      RUNS,
    );
  });

  test("accepted exactly when the normalized path has at most 255 characters", () => {
    const nearLimit = fc
      .tuple(
        fc.option(explicitDomain, { nil: undefined }),
        fc.boolean(),
        fc.integer({ min: NAME_MAX_LENGTH - 12, max: NAME_MAX_LENGTH + 12 }),
        lowerAlnum,
        optionalTag,
      )
      .map(([domain, namespaced, target, fill, tagValue]) => {
        const probe = build(domain, namespaced ? ["ns", fill] : [fill], undefined, undefined);
        const prefix = probe.expected.path.length - 1;
        const last = fill.repeat(Math.max(1, target - prefix));
        return { target, generated: build(domain, namespaced ? ["ns", last] : [last], tagValue, undefined) };
      });
    fc.assert(
      fc.property(nearLimit, ({ target, generated: { input, expected } }) => {
        const length = expected.path.length;
        assert.equal(length, target);
        const result = parseReference(input);
        assert.equal(result.ok, length <= NAME_MAX_LENGTH, `${input} (${length})`);
        if (result.ok) assert.deepEqual(result.reference, expected);
        else assert.match(result.error, new RegExp(`\\b${length}\\b`));
      }),
      RUNS,
    );
  });

  test("a first component that is a path component but no host: kept as written, whole name limited", () => {
    // Go reads `my_registry.corp/app` as a path with no domain; it needs a "." to be taken
    // for a domain at all, and an "_" (no host has one) to be no host.
    const notAHost = fc
      .tuple(pathComponent, pathComponent, pathComponent)
      .map(([a, b, c]) => `${a}_${b}.${c}`);
    fc.assert(
      fc.property(notAHost, pathComponents, optionalTag, optionalDigest, (first, rest, t, g) => {
        const name = `${first}/${rest.join("/")}`;
        const input = name + (t === undefined ? "" : `:${t}`) + (g === undefined ? "" : `@${g}`);
        const result = parseReference(input);
        assert.equal(result.ok, name.length <= NAME_MAX_LENGTH, input);
        if (!result.ok) return;
        assert.deepEqual(result.reference, {
          domain: first,
          path: rest.join("/"),
          ...(t === undefined ? {} : { tag: t }),
          ...(g === undefined ? {} : { digest: g }),
        });
        assert.equal(formatReference(result.reference), input);
        // Longer than 255 only with the first component, as Go counts it.
        const padded = `${first}/${"a".repeat(NAME_MAX_LENGTH - first.length)}`;
        assert.equal(padded.length, NAME_MAX_LENGTH + 1);
        assert.equal(parseReference(padded).ok, false);
        assert.equal(parseReference(padded.slice(0, -1)).ok, true);
      }),
      RUNS,
    );
  });

  test("upper case anywhere in the repository path is rejected", () => {
    const withLetter = withDomain.filter(({ expected }) => /[a-z]/.test(expected.path));
    fc.assert(
      fc.property(withLetter, fc.nat(), ({ expected }, pick) => {
        const name = `${expected.domain}/${expected.path}`;
        const letters = [...name.matchAll(/[a-z]/g)]
          .map((match) => match.index)
          .filter((index) => index > expected.domain.length);
        fc.pre(letters.length > 0);
        const at = letters[pick % letters.length]!;
        const suffix =
          (expected.tag === undefined ? "" : `:${expected.tag}`) +
          (expected.digest === undefined ? "" : `@${expected.digest}`);
        const mutated = `${name.slice(0, at)}${name[at]!.toUpperCase()}${name.slice(at + 1)}${suffix}`;
        const result = parseReference(mutated);
        assert.equal(result.ok, false, mutated);
        if (!result.ok) assert.ok(result.error.includes(JSON.stringify(mutated)));
      }),
      RUNS,
    );
  });
});

// ---------------------------------------------------------------------------
// Component-level oracles, written as plain loops rather than regular expressions.
// ---------------------------------------------------------------------------

function isAlnum(c: string): boolean {
  return (c >= "a" && c <= "z") || (c >= "0" && c <= "9");
}

/** Path component: alnum runs joined by ".", "_", "__" or any number of "-". */
function pathComponentOracle(s: string): boolean {
  let i = 0;
  const run = (): boolean => {
    const start = i;
    while (i < s.length && isAlnum(s[i]!)) i++;
    return i > start;
  };
  if (!run()) return false;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ".") i += 1;
    else if (c === "_") i += s[i + 1] === "_" ? 2 : 1;
    else if (c === "-") while (s[i] === "-") i++;
    else return false;
    if (!run()) return false;
  }
  return true;
}

function tagOracle(s: string): boolean {
  if (s.length < 1 || s.length > 128) return false;
  const word = (c: string) => /^[A-Za-z0-9_]$/.test(c);
  return word(s[0]!) && [...s].every((c) => word(c) || c === "." || c === "-");
}

describe("component rules agree with independent oracles", () => {
  test("path components", () => {
    const run = fc.constantFrom("a", "b0", "9", "", "A", "é");
    const sep = fc.constantFrom(".", "_", "__", "-", "---", "..", "___", "._", "-_", "_-");
    const candidate = fc
      .tuple(run, fc.array(fc.tuple(sep, run), { maxLength: 4 }))
      .map(([head, tail]) => head + tail.map(([a, b]) => a + b).join(""));
    fc.assert(
      fc.property(candidate, (component) => {
        const input = `registry.example/${component}`;
        assert.equal(parseReference(input).ok, pathComponentOracle(component), input);
      }),
      { numRuns: 500 },
    );
  });

  test("tags", () => {
    const candidate = fc.oneof(
      fc.string({ unit: chars("aZ9_.-+"), maxLength: 10 }),
      fc.string({ unit: chars("aZ9_.-"), minLength: 125, maxLength: 131 }),
    );
    fc.assert(
      fc.property(candidate, (tagValue) => {
        const input = `registry.example/app:${tagValue}`;
        assert.equal(parseReference(input).ok, tagOracle(tagValue), input);
      }),
      { numRuns: 500 },
    );
  });

  test("digests: only sha256/384/512 with the exact number of lower-case hex digits", () => {
    const lengths: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
    const candidate = fc.tuple(
      fc.constantFrom("sha256", "sha384", "sha512", "sha1", "md5", "SHA256", "blake3"),
      fc.oneof(
        fc.constantFrom(64, 96, 128).chain((n) => fc.string({ unit: hexChar, minLength: n, maxLength: n })),
        fc.string({ unit: chars("0123456789abcdefABCDEFg"), minLength: 60, maxLength: 130 }),
      ),
    );
    fc.assert(
      fc.property(candidate, ([algorithm, hex]) => {
        const input = `registry.example/app@${algorithm}:${hex}`;
        const expected = lengths[algorithm] === hex.length && /^[0-9a-f]+$/.test(hex);
        assert.equal(parseReference(input).ok, expected, input);
      }),
      { numRuns: 300 },
    );
  });
});
