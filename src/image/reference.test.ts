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

const SHA256 = `sha256:${"0123456789abcdef".repeat(4)}`;
const SHA384 = `sha384:${"fedcba9876543210".repeat(6)}`;
const SHA512 = `sha512:${"0f".repeat(64)}`;

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

interface ValidCase {
  readonly input: string;
  readonly expected: ImageReference;
  /** Canonical string; defaults to the input itself. */
  readonly canonical?: string;
}

const validCases: readonly ValidCase[] = [
  // Docker Hub short names.
  {
    input: "nginx",
    expected: { domain: "docker.io", path: "library/nginx" },
    canonical: "docker.io/library/nginx",
  },
  {
    input: "nginx:1.25",
    expected: { domain: "docker.io", path: "library/nginx", tag: "1.25" },
    canonical: "docker.io/library/nginx:1.25",
  },
  {
    input: "nginx:latest",
    expected: { domain: "docker.io", path: "library/nginx", tag: "latest" },
    canonical: "docker.io/library/nginx:latest",
  },
  {
    input: "bitnami/nginx",
    expected: { domain: "docker.io", path: "bitnami/nginx" },
    canonical: "docker.io/bitnami/nginx",
  },
  {
    input: "bitnami/nginx:1.25.3-debian-12-r0",
    expected: { domain: "docker.io", path: "bitnami/nginx", tag: "1.25.3-debian-12-r0" },
    canonical: "docker.io/bitnami/nginx:1.25.3-debian-12-r0",
  },
  {
    input: "a/b/c/d",
    expected: { domain: "docker.io", path: "a/b/c/d" },
    canonical: "docker.io/a/b/c/d",
  },
  {
    input: "docker.io/nginx",
    expected: { domain: "docker.io", path: "library/nginx" },
    canonical: "docker.io/library/nginx",
  },
  { input: "docker.io/library/nginx", expected: { domain: "docker.io", path: "library/nginx" } },
  { input: "docker.io/bitnami/nginx", expected: { domain: "docker.io", path: "bitnami/nginx" } },
  {
    input: "index.docker.io/library/nginx",
    expected: { domain: "docker.io", path: "library/nginx" },
    canonical: "docker.io/library/nginx",
  },
  {
    input: "index.docker.io/nginx:1",
    expected: { domain: "docker.io", path: "library/nginx", tag: "1" },
    canonical: "docker.io/library/nginx:1",
  },
  {
    input: "index.docker.io/bitnami/nginx",
    expected: { domain: "docker.io", path: "bitnami/nginx" },
    canonical: "docker.io/bitnami/nginx",
  },
  // A bare word that looks like a host is still a Docker Hub name (as in distribution/reference).
  {
    input: "localhost",
    expected: { domain: "docker.io", path: "library/localhost" },
    canonical: "docker.io/library/localhost",
  },
  {
    input: "example.com",
    expected: { domain: "docker.io", path: "library/example.com" },
    canonical: "docker.io/library/example.com",
  },
  {
    input: "docker.io",
    expected: { domain: "docker.io", path: "library/docker.io" },
    canonical: "docker.io/library/docker.io",
  },
  {
    input: "localhost:5000",
    expected: { domain: "docker.io", path: "library/localhost", tag: "5000" },
    canonical: "docker.io/library/localhost:5000",
  },
  {
    input: "foo_bar.com:8080",
    expected: { domain: "docker.io", path: "library/foo_bar.com", tag: "8080" },
    canonical: "docker.io/library/foo_bar.com:8080",
  },
  {
    input: "foo/foo_bar.com:8080",
    expected: { domain: "docker.io", path: "foo/foo_bar.com", tag: "8080" },
    canonical: "docker.io/foo/foo_bar.com:8080",
  },
  {
    input: "test_com",
    expected: { domain: "docker.io", path: "library/test_com" },
    canonical: "docker.io/library/test_com",
  },
  // localhost and other registries never get library/.
  { input: "localhost/x", expected: { domain: "localhost", path: "x" } },
  {
    input: "localhost:5000/foo/bar:tag",
    expected: { domain: "localhost:5000", path: "foo/bar", tag: "tag" },
  },
  { input: "gcr.io/project/image", expected: { domain: "gcr.io", path: "project/image" } },
  { input: "registry.k8s.io/pause:3.9", expected: { domain: "registry.k8s.io", path: "pause", tag: "3.9" } },
  { input: "quay.io/a/b/c/d:v1", expected: { domain: "quay.io", path: "a/b/c/d", tag: "v1" } },
  { input: "test:5000/repo", expected: { domain: "test:5000", path: "repo" } },
  { input: "test-com:8080/foo", expected: { domain: "test-com:8080", path: "foo" } },
  { input: "sub-dom1.foo.com/bar/baz/quux", expected: { domain: "sub-dom1.foo.com", path: "bar/baz/quux" } },
  {
    input: "b.gcr.io/test.example.com/my-app:test.example.com",
    expected: { domain: "b.gcr.io", path: "test.example.com/my-app", tag: "test.example.com" },
  },
  {
    input: "xn--n3h.com/myimage:xn--n3h.com",
    expected: { domain: "xn--n3h.com", path: "myimage", tag: "xn--n3h.com" },
  },
  { input: "a.b/c", expected: { domain: "a.b", path: "c" } },
  // IP addresses.
  { input: "127.0.0.1:5000/a", expected: { domain: "127.0.0.1:5000", path: "a" } },
  { input: "192.168.1.1/repo", expected: { domain: "192.168.1.1", path: "repo" } },
  {
    input: "192.168.1.1:5000/repo:5050",
    expected: { domain: "192.168.1.1:5000", path: "repo", tag: "5050" },
  },
  { input: "[::1]:5000/foo", expected: { domain: "[::1]:5000", path: "foo" } },
  { input: "[::1]/x", expected: { domain: "[::1]", path: "x" } },
  { input: "[2001:db8::1]/x:y", expected: { domain: "[2001:db8::1]", path: "x", tag: "y" } },
  { input: "[2001:db8::]:5000/repo", expected: { domain: "[2001:db8::]:5000", path: "repo" } },
  {
    input: "[2001:db8:1:2:3:4:5:6]/repo:tag",
    expected: { domain: "[2001:db8:1:2:3:4:5:6]", path: "repo", tag: "tag" },
  },
  {
    input: `[2001:db8::1]:5000/repo:tag@${SHA256}`,
    expected: { domain: "[2001:db8::1]:5000", path: "repo", tag: "tag", digest: SHA256 },
  },
  // A first component that is not all lower case is a domain, as in distribution/reference.
  { input: "Foo/bar", expected: { domain: "Foo", path: "bar" } },
  { input: "Registry.Example.COM/app", expected: { domain: "Registry.Example.COM", path: "app" } },
  // Digests.
  {
    input: `nginx@${SHA256}`,
    expected: { domain: "docker.io", path: "library/nginx", digest: SHA256 },
    canonical: `docker.io/library/nginx@${SHA256}`,
  },
  {
    input: `nginx:1.25@${SHA256}`,
    expected: { domain: "docker.io", path: "library/nginx", tag: "1.25", digest: SHA256 },
    canonical: `docker.io/library/nginx:1.25@${SHA256}`,
  },
  {
    input: `docker.io/library/nginx:1.25@${SHA256}`,
    expected: { domain: "docker.io", path: "library/nginx", tag: "1.25", digest: SHA256 },
  },
  {
    input: `test:5000/repo@${SHA256}`,
    expected: { domain: "test:5000", path: "repo", digest: SHA256 },
  },
  {
    input: `quay.io/x/y@${SHA384}`,
    expected: { domain: "quay.io", path: "x/y", digest: SHA384 },
  },
  {
    input: `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
    expected: { domain: "xn--7o8h.com", path: "myimage", tag: "xn--7o8h.com", digest: SHA512 },
  },
  // "sha256:<hex>" without a name is a Docker Hub repository "sha256" with a hex tag.
  {
    input: SHA256,
    expected: { domain: "docker.io", path: "library/sha256", tag: SHA256.slice("sha256:".length) },
    canonical: `docker.io/library/${SHA256}`,
  },
  // 63 and 65 hex characters are names, only exactly 64 is an ID.
  {
    input: "a".repeat(63),
    expected: { domain: "docker.io", path: `library/${"a".repeat(63)}` },
    canonical: `docker.io/library/${"a".repeat(63)}`,
  },
  {
    input: "f".repeat(65),
    expected: { domain: "docker.io", path: `library/${"f".repeat(65)}` },
    canonical: `docker.io/library/${"f".repeat(65)}`,
  },
  {
    input: `x.io/${"0".repeat(64)}`,
    expected: { domain: "x.io", path: "0".repeat(64) },
  },
  // Tags: case kept, leading underscore and digits allowed.
  {
    input: "lowercase:Uppercase",
    expected: { domain: "docker.io", path: "library/lowercase", tag: "Uppercase" },
    canonical: "docker.io/library/lowercase:Uppercase",
  },
  { input: "x.io/a:_x", expected: { domain: "x.io", path: "a", tag: "_x" } },
  { input: "x.io/a:0", expected: { domain: "x.io", path: "a", tag: "0" } },
  { input: "x.io/a:v1.2_3-rc.4--5", expected: { domain: "x.io", path: "a", tag: "v1.2_3-rc.4--5" } },
  { input: `x.io/a:${"t".repeat(128)}`, expected: { domain: "x.io", path: "a", tag: "t".repeat(128) } },
  // Separators inside path components.
  { input: "x.io/a_b", expected: { domain: "x.io", path: "a_b" } },
  { input: "x.io/a__b", expected: { domain: "x.io", path: "a__b" } },
  { input: "x.io/a-b", expected: { domain: "x.io", path: "a-b" } },
  { input: "x.io/a---b", expected: { domain: "x.io", path: "a---b" } },
  { input: "x.io/a.b", expected: { domain: "x.io", path: "a.b" } },
  { input: "x.io/a1.b2_c3__d4--e5/0", expected: { domain: "x.io", path: "a1.b2_c3__d4--e5/0" } },
];

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

interface InvalidCase {
  readonly input: string;
  /** Part of the reason the error message should give. */
  readonly reason?: RegExp;
}

const invalidCases: readonly InvalidCase[] = [
  // Empty, whitespace and garbage.
  { input: "", reason: /empty/ },
  { input: " " },
  { input: "\t" },
  { input: " nginx" },
  { input: "nginx " },
  { input: "nginx\n" },
  { input: "ngi nx" },
  { input: ":", reason: /tag/ },
  { input: "/" },
  { input: "//" },
  { input: "@", reason: /digest/ },
  { input: "a@b@c", reason: /digest/ },
  { input: "http://x/y" },
  { input: "https://registry.example.com/x" },
  { input: ":justtag", reason: /tag|empty|component/ },
  { input: `@${SHA256}` },
  { input: "aa/asdf$$^/aa" },
  { input: "nginx:1.25:extra" },
  { input: "ｎｇｉｎｘ" },
  { input: "x.io/ñ" },
  // Upper case in the repository path.
  { input: "Nginx", reason: /lower case/ },
  { input: "NGINX:1", reason: /lower case/ },
  { input: "Uppercase:tag", reason: /lower case/ },
  { input: "docker.io/Library/nginx", reason: /lower case/ },
  { input: "bitnami/Nginx", reason: /lower case/ },
  { input: "test:5000/Uppercase/lowercase:tag", reason: /lower case/ },
  { input: "localhost/Foo", reason: /lower case/ },
  // Path component separators.
  { input: "x.io/a___b", reason: /component/ },
  { input: "x.io/a-", reason: /component/ },
  { input: "x.io/-a", reason: /component/ },
  { input: "x.io/a..b", reason: /component/ },
  { input: "x.io/a.", reason: /component/ },
  { input: "x.io/.a", reason: /component/ },
  { input: "x.io/_a", reason: /component/ },
  { input: "x.io/a_", reason: /component/ },
  { input: "x.io/a._b", reason: /component/ },
  { input: "x.io/a.-b", reason: /component/ },
  { input: "x.io/a-_b", reason: /component/ },
  { input: "a___b", reason: /component/ },
  { input: "a-", reason: /component/ },
  { input: "-a", reason: /component/ },
  { input: "a..b", reason: /component/ },
  { input: "x.io/a//b", reason: /component/ },
  { input: "x.io/a/", reason: /component/ },
  { input: "/a", reason: /component/ },
  { input: "a/", reason: /component/ },
  { input: "docker.io/" },
  { input: "localhost/", reason: /empty/ },
  { input: "localhost:5000/", reason: /empty/ },
  // Tags.
  { input: "nginx:", reason: /tag/ },
  { input: "nginx:.x", reason: /tag/ },
  { input: "nginx:-x", reason: /tag/ },
  { input: "nginx:a+b", reason: /tag/ },
  { input: "nginx:ä", reason: /tag/ },
  { input: `x.io/a:${"t".repeat(129)}`, reason: /tag/ },
  // Digests.
  { input: `nginx@sha256:${"a".repeat(63)}`, reason: /sha256/ },
  { input: `nginx@sha256:${"a".repeat(65)}`, reason: /sha256/ },
  { input: "nginx@sha256:", reason: /sha256/ },
  { input: `nginx@sha256:${"A".repeat(64)}`, reason: /lower-case hex/ },
  { input: `nginx@sha256:${"ab".repeat(31)}Ab`, reason: /lower-case hex/ },
  { input: `nginx@sha256:${"g".repeat(64)}`, reason: /sha256/ },
  { input: `nginx@sha512:${"a".repeat(64)}`, reason: /sha512/ },
  { input: `nginx@sha384:${"a".repeat(64)}`, reason: /sha384/ },
  { input: `nginx@md5:${"a".repeat(32)}`, reason: /not supported/ },
  { input: `nginx@sha1:${"a".repeat(40)}`, reason: /not supported/ },
  { input: `nginx@SHA256:${"a".repeat(64)}`, reason: /not supported/ },
  { input: `nginx@1sha:${"a".repeat(64)}`, reason: /malformed/ },
  { input: `nginx@sha256+:${"a".repeat(64)}`, reason: /malformed/ },
  { input: `nginx@:${"a".repeat(64)}`, reason: /algorithm:hex/ },
  { input: `nginx@${"a".repeat(64)}`, reason: /algorithm:hex/ },
  { input: `nginx@${SHA256}:1.25` },
  { input: `nginx@${SHA256}@${SHA256}` },
  { input: `nginx@${SHA256}/x` },
  // A 64-character hex string is an image ID.
  { input: "0123456789abcdef".repeat(4), reason: /ID/ },
  // Registries.
  { input: "[fe80::1%eth0]:5000/repo", reason: /registry/ },
  { input: "[]/x" },
  { input: "[]:5000/x", reason: /registry/ },
  { input: "[::g]/x", reason: /registry/ },
  { input: "[::1/x", reason: /registry/ },
  { input: "[::1]" },
  { input: "[2001:db8::1]" },
  { input: "[2001:db8::1]:5000" },
  { input: "[2001:db8::1]:tag" },
  { input: "-foo.com/x", reason: /registry/ },
  { input: "foo-.com/x", reason: /registry/ },
  { input: "foo..com/x", reason: /registry/ },
  { input: ".foo.com/x", reason: /registry/ },
  { input: "foo_bar.com/x", reason: /registry/ },
  { input: "foo.com:/x", reason: /registry/ },
  { input: "foo.com:port/x", reason: /registry/ },
  { input: "foo.com:50:00/x", reason: /registry/ },
  { input: "nginx:a/b", reason: /registry/ },
];

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
  test("255-character explicit name is accepted, 256 rejected", () => {
    const prefix = "example.com/";
    const ok = prefix + "a".repeat(NAME_MAX_LENGTH - prefix.length);
    assert.equal(ok.length, 255);
    assert.equal(nameOf(parsed(ok)), ok);
    const tooLong = prefix + "a".repeat(NAME_MAX_LENGTH - prefix.length + 1);
    assert.match(rejected(tooLong), /256/);
  });

  test("library/ counts toward the length after normalization", () => {
    const hub = "docker.io/library/";
    const ok = "a".repeat(NAME_MAX_LENGTH - hub.length);
    assert.equal(nameOf(parsed(ok)).length, 255);
    const tooLong = "a".repeat(NAME_MAX_LENGTH - hub.length + 1);
    assert.equal(tooLong.length, 238);
    assert.match(rejected(tooLong), /256/);
    assert.match(rejected(`docker.io/${tooLong}`), /256/);
    assert.match(rejected(`index.docker.io/${tooLong}`), /256/);
  });

  test("docker.io/ counts toward the length of a namespaced Docker Hub name", () => {
    // 255 characters as written, 265 once docker.io/ is added.
    const input = `${"a/".repeat(127)}a:tag-does-not-count`;
    assert.match(rejected(input), /265/);
    const fits = `${"a/".repeat(122)}a`;
    assert.equal(nameOf(parsed(fits)).length, 255);
  });

  test("the length is measured after index.docker.io folds to docker.io", () => {
    const path = `ns/${"b".repeat(NAME_MAX_LENGTH - "docker.io/ns/".length)}`;
    const input = `index.docker.io/${path}`;
    assert.ok(input.length > NAME_MAX_LENGTH);
    const reference = parsed(input);
    assert.equal(nameOf(reference), `docker.io/${path}`);
    assert.equal(nameOf(reference).length, 255);
  });

  test("tag and digest do not count toward the name length", () => {
    const name = `example.com/${"a".repeat(NAME_MAX_LENGTH - "example.com/".length)}`;
    const input = `${name}:${"t".repeat(128)}@${SHA512}`;
    const reference = parsed(input);
    assert.equal(formatReference(reference), input);
  });

  test("the longest valid references fit under the input limit", () => {
    // index.docker.io/ shrinks to docker.io/, so the written name may exceed 255.
    const path = `ns/${"b".repeat(NAME_MAX_LENGTH - "docker.io/ns/".length)}`;
    const input = `index.docker.io/${path}:${"t".repeat(128)}@${SHA512}`;
    const reference = parsed(input);
    assert.equal(reference.digest, SHA512);
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

  test("the default domain counts toward the name length", () => {
    const limit = NAME_MAX_LENGTH - "registry.corp/".length;
    assert.equal(nameOf(parsed("a".repeat(limit), corp)).length, 255);
    assert.match(rejected("a".repeat(limit + 1), corp), /256/);
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
