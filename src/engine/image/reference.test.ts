import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DOCKER_HUB,
  formatReference,
  type ImageReference,
  NAME_MAX_LENGTH,
  nameOf,
  type ParseOptions,
  parseReference,
  parseRegistryPrefix,
} from "./reference.ts";
import { invalidCases, SHA256, SHA512, validCases } from "./testing.ts";

function parsed(input: string, options?: ParseOptions): ImageReference {
  const result = parseReference(input, options);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(input)} to parse, got: ${result.error}`);
  return result.reference;
}

/** Asserts rejection, that the message quotes the input, and returns the message. */
function rejected(input: string, options?: ParseOptions): string {
  const result = parseReference(input, options);
  if (result.ok) {
    assert.fail(`expected ${JSON.stringify(input)} to be rejected, got ${formatReference(result.reference)}`);
  }
  assert.equal(typeof result.error, "string");
  assert.ok(
    result.error.includes(JSON.stringify(input)),
    `error ${JSON.stringify(result.error)} does not quote the input ${JSON.stringify(input)}`,
  );
  return result.error;
}

describe("parseReference: valid references", () => {
  for (const { input, expected, canonical } of validCases) {
    test(JSON.stringify(input), () => {
      const reference = parsed(input);
      assert.deepEqual(reference, expected);
      assert.equal(formatReference(reference), canonical ?? input);
      // The canonical string is a fixed point.
      assert.deepEqual(parsed(formatReference(reference)), reference);
    });
  }

  test("never invents a tag", () => {
    const reference = parsed("nginx");
    assert.equal("tag" in reference, false);
    assert.equal("digest" in reference, false);
    assert.equal(formatReference(reference), "docker.io/library/nginx");
  });

  test("keeps both tag and digest", () => {
    const reference = parsed(`nginx:1.25@${SHA256}`);
    assert.equal(reference.tag, "1.25");
    assert.equal(reference.digest, SHA256);
    assert.equal(formatReference(reference), `docker.io/library/nginx:1.25@${SHA256}`);
  });

  test("DOCKER_HUB is docker.io", () => {
    assert.equal(DOCKER_HUB, "docker.io");
    assert.equal(NAME_MAX_LENGTH, 255);
  });
});

describe("parseReference: invalid references", () => {
  for (const { input, reason } of invalidCases) {
    test(JSON.stringify(input), () => {
      const error = rejected(input);
      assert.match(error, /^invalid image reference /);
      if (reason) assert.match(error, reason);
    });
  }

  test("non-string input is rejected, not thrown", () => {
    for (const value of [undefined, null, 42, {}]) {
      const result = parseReference(value as unknown as string);
      assert.equal(result.ok, false);
    }
  });
});

describe("parseReference: length limits", () => {
  // As in Go's distribution/reference: the path is limited, never the domain.
  test("a 255-character path is accepted under any host, 256 rejected", () => {
    for (const host of ["example.com", "localhost:5000", "[2001:db8::1]:5000", `${"h".repeat(63)}.example`]) {
      const ok = `${host}/${"a".repeat(NAME_MAX_LENGTH)}`;
      assert.equal(parsed(ok).path.length, 255);
      assert.equal(formatReference(parsed(ok)), ok);
      const tooLong = `${host}/${"a".repeat(NAME_MAX_LENGTH + 1)}`;
      assert.match(rejected(tooLong), /repository path is 256 characters, more than 255/);
    }
  });

  test("library/ counts toward the path length after normalization", () => {
    const ok = "a".repeat(NAME_MAX_LENGTH - "library/".length);
    assert.equal(parsed(ok).path.length, 255);
    const tooLong = "a".repeat(NAME_MAX_LENGTH - "library/".length + 1);
    assert.equal(tooLong.length, 248);
    assert.match(rejected(tooLong), /256/);
    assert.match(rejected(`docker.io/${tooLong}`), /256/);
    assert.match(rejected(`index.docker.io/${tooLong}`), /256/);
  });

  test("docker.io/ does not count toward the length of a namespaced Docker Hub name", () => {
    const fits = `${"a/".repeat(127)}a`;
    assert.equal(fits.length, 255);
    assert.equal(nameOf(parsed(fits)), `docker.io/${fits}`);
    assert.match(rejected(`${"a/".repeat(127)}ab:tag-does-not-count`), /256/);
  });

  test("a name with no host counts whole: the first component is part of Go's path", () => {
    const first = "my_registry.corp";
    const ok = `${first}/${"a".repeat(NAME_MAX_LENGTH - first.length - 1)}`;
    assert.equal(ok.length, 255);
    assert.deepEqual(parsed(ok), { domain: first, path: ok.slice(first.length + 1) });
    const tooLong = `${ok}b`;
    assert.match(rejected(tooLong), /name is 256 characters, more than 255/);
    // The same path under a real host fits.
    assert.ok(parseReference(`my-registry.corp/${tooLong.slice(first.length + 1)}`).ok);
  });

  test("tag and digest do not count toward the length", () => {
    const name = `example.com/${"a".repeat(NAME_MAX_LENGTH)}`;
    const input = `${name}:${"t".repeat(128)}@${SHA512}`;
    const reference = parsed(input);
    assert.equal(formatReference(reference), input);
  });

  test("the longest references of real hosts fit under the input limit", () => {
    const host = `${`${"h".repeat(63)}.`.repeat(3)}${"h".repeat(61)}:65535`;
    assert.equal(host.length, 253 + ":65535".length);
    const input = `${host}/${"b".repeat(NAME_MAX_LENGTH)}:${"t".repeat(128)}@${SHA512}`;
    assert.ok(input.length < 1024);
    assert.equal(parsed(input).digest, SHA512);
  });

  test("input over 1024 characters is refused and quoted in short", () => {
    const input = "a".repeat(1025);
    const result = parseReference(input);
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.match(result.error, /too long/);
    assert.ok(result.error.includes(`"${"a".repeat(32)}`), result.error);
    assert.ok(result.error.length < 200, "the whole input is not echoed");
  });

  test("very long and pathological inputs return quickly", () => {
    const inputs = [
      "a".repeat(1_000_000),
      `${"a-".repeat(500)}!`,
      `x.io/${"a.".repeat(509)}`,
      `${"a".repeat(60)}.${"-".repeat(900)}/x`,
      `x.io/a:${"_".repeat(1000)}`,
    ];
    const start = performance.now();
    for (const input of inputs) assert.equal(parseReference(input).ok, false);
    assert.ok(performance.now() - start < 1000);
  });
});

describe("parseReference: defaultDomain option", () => {
  const corp: ParseOptions = { defaultDomain: "registry.corp" };

  const cases: readonly [input: string, options: ParseOptions, canonical: string][] = [
    ["nginx", corp, "registry.corp/nginx"],
    ["nginx:1.25", corp, "registry.corp/nginx:1.25"],
    [`nginx@${SHA256}`, corp, `registry.corp/nginx@${SHA256}`],
    ["bitnami/nginx", corp, "registry.corp/bitnami/nginx"],
    ["quay.io/x/y:1", corp, "quay.io/x/y:1"],
    ["docker.io/nginx", corp, "docker.io/library/nginx"],
    ["index.docker.io/nginx", corp, "docker.io/library/nginx"],
    ["localhost/x", corp, "localhost/x"],
    ["[::1]:5000/x", corp, "[::1]:5000/x"],
    ["Foo/bar", corp, "Foo/bar"],
    ["nginx", { defaultDomain: "localhost:5000" }, "localhost:5000/nginx"],
    ["nginx", { defaultDomain: "docker.io" }, "docker.io/library/nginx"],
    ["nginx", { defaultDomain: "index.docker.io" }, "docker.io/library/nginx"],
    ["bitnami/nginx", { defaultDomain: "index.docker.io" }, "docker.io/bitnami/nginx"],
    ["nginx", {}, "docker.io/library/nginx"],
    ["nginx", { defaultDomain: undefined }, "docker.io/library/nginx"],
  ];
  for (const [input, options, canonical] of cases) {
    test(`${JSON.stringify(input)} with ${JSON.stringify(options)}`, () => {
      const reference = parsed(input, options);
      assert.equal(formatReference(reference), canonical);
      // Once qualified, the canonical form no longer depends on the option.
      assert.deepEqual(parsed(canonical), reference);
    });
  }

  test("the domain part is separate from the path", () => {
    assert.deepEqual(parsed("nginx", corp), { domain: "registry.corp", path: "nginx" });
  });

  test("errors still quote the input", () => {
    assert.match(rejected("Nginx", corp), /lower case/);
    assert.match(rejected("a___b", corp), /component/);
  });

  test("the default domain does not count toward the length, as once qualified in Go", () => {
    assert.equal(parsed("a".repeat(NAME_MAX_LENGTH), corp).path.length, 255);
    assert.match(rejected("a".repeat(NAME_MAX_LENGTH + 1), corp), /256/);
  });

  test("the options object is not modified", () => {
    const options: ParseOptions = { defaultDomain: "registry.corp" };
    parsed("nginx", options);
    assert.deepEqual(options, { defaultDomain: "registry.corp" });
  });
});

describe("formatReference and nameOf", () => {
  const base = { domain: "docker.io", path: "library/nginx" } as const;
  const cases: readonly [reference: ImageReference, formatted: string][] = [
    [base, "docker.io/library/nginx"],
    [{ ...base, tag: "1.25" }, "docker.io/library/nginx:1.25"],
    [{ ...base, digest: SHA256 }, `docker.io/library/nginx@${SHA256}`],
    [{ ...base, tag: "1.25", digest: SHA256 }, `docker.io/library/nginx:1.25@${SHA256}`],
    [{ domain: "[::1]:5000", path: "a/b", tag: "t" }, "[::1]:5000/a/b:t"],
  ];
  for (const [reference, formatted] of cases) {
    test(formatted, () => {
      assert.equal(formatReference(reference), formatted);
      assert.equal(nameOf(reference), `${reference.domain}/${reference.path}`);
      assert.deepEqual(parsed(formatted), reference);
    });
  }

  test("nameOf drops tag and digest", () => {
    assert.equal(nameOf(parsed(`localhost:5000/foo/bar:tag@${SHA256}`)), "localhost:5000/foo/bar");
    assert.equal(nameOf(parsed("nginx:1")), "docker.io/library/nginx");
  });
});

describe("parseRegistryPrefix", () => {
  const valid: readonly [input: string, prefix: string][] = [
    ["docker.io", "docker.io"],
    ["index.docker.io", "docker.io"],
    ["docker.io/bitnami", "docker.io/bitnami"],
    ["index.docker.io/bitnami", "docker.io/bitnami"],
    ["docker.io/library", "docker.io/library"],
    ["localhost", "localhost"],
    ["localhost:5000", "localhost:5000"],
    ["127.0.0.1:5000", "127.0.0.1:5000"],
    ["[::1]:5000", "[::1]:5000"],
    ["[2001:db8::1]/mirror", "[2001:db8::1]/mirror"],
    ["registry.corp/team/sub-team", "registry.corp/team/sub-team"],
    ["mirror.gcr.io/a_b/c.d/e--f", "mirror.gcr.io/a_b/c.d/e--f"],
  ];
  for (const [input, prefix] of valid) {
    test(`accepts ${JSON.stringify(input)}`, () => {
      const slash = prefix.indexOf("/");
      const domain = slash < 0 ? prefix : prefix.slice(0, slash);
      const path = slash < 0 ? "" : prefix.slice(slash + 1);
      assert.deepEqual(parseRegistryPrefix(input), { ok: true, prefix, domain, path });
    });
  }

  const invalid: readonly [input: string, reason: RegExp][] = [
    ["", /empty/],
    ["/bitnami", /empty/],
    ["mirror", /not a registry host.*docker\.io\/mirror/],
    ["mirror/team", /not a registry host/],
    ["docker.io/", /component/],
    ["bad_host", /host/],
    // Go reads `my_registry.corp/app` as a path with no host; a rule must name a real host.
    ["my_registry.corp", /host/],
    ["my_registry.corp/team", /host/],
    ["-x.com", /host/],
    ["x-.com", /host/],
    ["x..com", /host/],
    ["x.com:", /host/],
    ["x.com:port", /host/],
    ["[fe80::1%eth0]", /host/],
    ["https://x.com", /host/],
    [" docker.io", /host/],
    ["docker.io/Bitnami", /lower case/],
    ["docker.io/a..b", /component/],
    ["docker.io/a___b", /component/],
    ["docker.io/-a", /component/],
    ["docker.io//x", /component/],
    ["docker.io/x/", /component/],
    ["docker.io/nginx:1.25", /component/],
    [`docker.io/nginx@${SHA256}`, /component/],
  ];
  for (const [input, reason] of invalid) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      const result = parseRegistryPrefix(input);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.match(result.error, /^invalid registry /);
      assert.ok(result.error.includes(JSON.stringify(input)), result.error);
      assert.match(result.error, reason);
    });
  }

  test("a prefix joins with a repository path into a parseable reference", () => {
    const result = parseRegistryPrefix("index.docker.io/bitnami");
    assert.ok(result.ok);
    if (!result.ok) return;
    assert.deepEqual(parsed(`${result.prefix}/nginx:1`), {
      domain: "docker.io",
      path: "bitnami/nginx",
      tag: "1",
    });
  });
});
