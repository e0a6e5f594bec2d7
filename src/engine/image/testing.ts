/**
 * Test data for the image reference grammar (not part of the build): the table cases of
 * reference.test.ts, and the inputs whose parse by Go's distribution/reference is recorded
 * in test/fixtures/reference/go-recorded.json for reference.differential.test.ts.
 */
import type { ImageReference } from "./reference.ts";

export const SHA256 = `sha256:${"0123456789abcdef".repeat(4)}`;
export const SHA384 = `sha384:${"fedcba9876543210".repeat(6)}`;
export const SHA512 = `sha512:${"0f".repeat(64)}`;

export interface ValidCase {
  readonly input: string;
  readonly expected: ImageReference;
  /** Canonical string; defaults to the input itself. */
  readonly canonical?: string;
}

export const validCases: readonly ValidCase[] = [
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
  // A first component that looks like a host but is none, and is a path component, makes
  // the whole name a path with no domain in Go; it stays in `domain` here (reference.ts).
  { input: "foo_bar.com/x", expected: { domain: "foo_bar.com", path: "x" } },
  {
    input: "my_registry.corp/team/app:1",
    expected: { domain: "my_registry.corp", path: "team/app", tag: "1" },
  },
  {
    input: `a__b.c-d.e/f@${SHA256}`,
    expected: { domain: "a__b.c-d.e", path: "f", digest: SHA256 },
  },
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

export interface InvalidCase {
  readonly input: string;
  /** Part of the reason the error message should give. */
  readonly reason?: RegExp;
}

export const invalidCases: readonly InvalidCase[] = [
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
  { input: "foo_bar.com:5000/x", reason: /registry/ },
  { input: "_foo.com/x", reason: /registry/ },
  { input: "foo_.com/x", reason: /registry/ },
  { input: "foo___bar.com/x", reason: /registry/ },
  { input: "Foo_bar.com/x", reason: /registry/ },
  { input: "foo_bar.com/X", reason: /lower case/ },
  { input: "foo_bar.com/", reason: /empty/ },
  { input: "foo.com:/x", reason: /registry/ },
  { input: "foo.com:port/x", reason: /registry/ },
  { input: "foo.com:50:00/x", reason: /registry/ },
  { input: "nginx:a/b", reason: /registry/ },
];

// ---------------------------------------------------------------------------
// Inputs for the differential test against Go (test/fixtures/reference/README.md).
// ---------------------------------------------------------------------------

/** A small deterministic PRNG (mulberry32), so the generated inputs never change by accident. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** First components: hosts, ports, IPv6, upper case, and the non-hosts Go reads as paths. */
const FIRST_COMPONENTS = [
  "a",
  "app",
  "library",
  "sha256",
  "1",
  "a_b",
  "a__b",
  "a___b",
  "a-b",
  "a---b",
  "a.b",
  "a.b.c.d.e",
  "0.0",
  "my_registry.corp",
  "my__registry.corp",
  "my___registry.corp",
  "registry.my_corp",
  "a_b.c",
  "a.b_c",
  "a-b_c.d",
  "_a.b",
  "a_.b",
  "a._b",
  "a_b.c:5000",
  "a_b:5000",
  "-a.b",
  "a-.b",
  "a--b.c",
  "a..b",
  ".a",
  "a.",
  "xn--n3h.com",
  "sub-dom1.foo.com",
  "localhost",
  "localhost:5000",
  "localhost:",
  "Localhost",
  "LOCALHOST",
  "localhost.localdomain",
  "docker.io",
  "Docker.io",
  "index.docker.io",
  "INDEX.DOCKER.IO",
  "registry-1.docker.io",
  "127.0.0.1",
  "127.0.0.1:5000",
  "1.2.3.4:65536",
  "a.b:0",
  "a.b:00005000",
  "a.b:5000:1",
  "a.b:port",
  "a:b",
  "a:1",
  "a:",
  ":5000",
  "[::1]",
  "[::1]:5000",
  "[::]",
  "[2001:db8::1]",
  "[2001:DB8::1]:443",
  "[fe80::1%eth0]",
  "[::g]",
  "[]",
  "[::1",
  "::1",
  "[::1]:",
  "Foo",
  "FOO",
  "fOo",
  "Foo_bar",
  "Foo.bar",
  "foo_Bar.com",
  "Registry.Example.COM",
  "a b.c",
  "é.com",
];

/** What follows the first component and its "/". */
function remainders(sha256: string): string[] {
  return [
    "app",
    "app/sub",
    "library/app",
    "a_b.c/d",
    "app:tag",
    "app:Tag.1-2_3",
    "app:5000",
    `app@${sha256}`,
    `app:tag@${sha256}`,
    "App",
    "app/",
    "",
    ":tag",
    "app__x/y---z",
    "a.b:5000/c",
  ];
}

/** Separators and runs inside path components, valid and invalid. */
const PATH_COMPONENTS = [
  "a",
  "a.b",
  "a_b",
  "a__b",
  "a___b",
  "a-b",
  "a--b",
  "a.-b",
  "a-.b",
  "a._b",
  "a_.b",
  "a-_b",
  "a_-b",
  "a..b",
  "a.",
  "a_",
  "a-",
  ".a",
  "_a",
  "-a",
  "0",
  "A",
  "aB",
];

const INVALID_CHARACTERS = [
  " ",
  "\t",
  "\n",
  "\r",
  "\u0000",
  "!",
  '"',
  "#",
  "$",
  "%",
  "&",
  "'",
  "(",
  "*",
  "+",
  ",",
  ";",
  "<",
  "=",
  "?",
  "\\",
  "^",
  "`",
  "{",
  "|",
  "~",
  "é",
  "\u{1F433}",
  "A",
  "[",
  "]",
  "/",
  ":",
  "@",
  ".",
  "_",
  "-",
];

function lengthEdges(sha256: string, sha512: string): string[] {
  const out: string[] = [];
  const fill = (n: number) => "abcdefghij".repeat(Math.ceil(n / 10)).slice(0, Math.max(n, 1));
  const near = (limit: number) => [limit - 2, limit - 1, limit, limit + 1, limit + 2];
  // Docker Hub single names: the path is "library/" + name.
  for (const n of [...near(237), ...near(247)]) {
    out.push(fill(n), `docker.io/${fill(n)}`, `index.docker.io/${fill(n)}:t`);
  }
  // Docker Hub namespaced names: the path is the name as written.
  for (const n of [...near(245), ...near(255)]) {
    const name = `ns/${fill(n - 3)}`;
    out.push(name, `docker.io/${name}`, `index.docker.io/${name}@${sha256}`);
  }
  // Hosts of every size: the path alone near 255, and domain plus path near 255.
  const hosts = [
    "x.io",
    "localhost",
    "localhost:5000",
    "[::1]:5000",
    "registry.example.com:443",
    `${"h".repeat(60)}.example.com`,
    `${"h".repeat(63)}.${"i".repeat(63)}.${"j".repeat(63)}.${"k".repeat(40)}.com`,
    "Registry.Example.COM",
  ];
  for (const host of hosts) {
    for (const n of [...near(255), ...near(254 - host.length)]) {
      out.push(`${host}/${fill(n)}`, `${host}/team/${fill(n - 5)}:${"t".repeat(128)}`);
    }
  }
  // First components Go reads as a path: the whole name counts.
  for (const first of ["my_registry.corp", "a_b.c", "a__b.c.d"]) {
    for (const n of [...near(255), ...near(254 - first.length)]) {
      out.push(`${first}/${fill(n)}`, `${first}/${fill(n)}@${sha512}`);
    }
  }
  // The longest references, and input over 1024 characters.
  const longHost = `${"h".repeat(63)}.`.repeat(12).slice(0, 700);
  out.push(
    `${longHost}/${fill(255)}:${"t".repeat(60)}`,
    `${longHost}.com/${fill(255)}:${"t".repeat(128)}@${sha512}`,
    `${"a/".repeat(127)}a`,
    `${"a/".repeat(122)}a`,
    `${"a/".repeat(123)}a`,
    `${fill(255)}/a`,
    fill(1025),
  );
  return out;
}

function tagsAndDigests(): string[] {
  const out: string[] = [];
  for (const n of [1, 127, 128, 129]) {
    for (const first of ["a", "A", "0", "_", ".", "-"]) {
      out.push(`x.io/a:${first}${"v".repeat(n - 1)}`);
    }
    out.push(`nginx:${"V1.-_".repeat(26).slice(0, n)}`);
  }
  for (const tag of ["", "a+b", "a/b", "ä", "a:b", "a b", "latest", "LATEST", "0", "_x", "x--y..z__"]) {
    out.push(`x.io/a:${tag}`, `nginx:${tag}`);
  }
  const hex = (n: number, digit = "a") => digit.repeat(n);
  for (const [algorithm, length] of [
    ["sha256", 64],
    ["sha384", 96],
    ["sha512", 128],
  ] as const) {
    for (const n of [31, 32, 63, length - 1, length, length + 1]) out.push(`x.io/a@${algorithm}:${hex(n)}`);
    out.push(
      `x.io/a@${algorithm}:${hex(length, "A")}`,
      `x.io/a@${algorithm}:${hex(length - 1)}G`,
      `x.io/a@${algorithm.toUpperCase()}:${hex(length)}`,
      `nginx:1@${algorithm}:${hex(length, "0")}`,
      `x.io/a@${algorithm}:`,
      `x.io/a@${algorithm}`,
    );
  }
  for (const algorithm of [
    "md5",
    "sha1",
    "blake3",
    "sha256+b64u",
    "multihash+base58",
    "a.b",
    "a_b",
    "a-b",
    "1sha",
    "sha256+",
    "",
  ]) {
    out.push(`x.io/a@${algorithm}:${hex(32)}`, `x.io/a@${algorithm}:${hex(64)}`);
  }
  out.push(`x.io/a@${hex(64)}`, `x.io/a@sha256:${hex(64)}@sha256:${hex(64)}`, `x.io/a@sha256:${hex(64)}:t`);
  return out;
}

const TOKENS = [
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
  "my_registry.corp",
  "sha256:",
  "sha512:",
  "0123456789abcdef".repeat(4),
  " ",
  "é",
];

/**
 * Every input the differential test compares with Go: the table cases above and a
 * deterministic set stressing the grammar's edges. Changing it means re-recording.
 */
export function differentialInputs(): string[] {
  const out: string[] = [];
  out.push(
    ...validCases.map((c) => c.input),
    ...validCases.flatMap((c) => (c.canonical ? [c.canonical] : [])),
  );
  out.push(...invalidCases.map((c) => c.input));
  for (const first of FIRST_COMPONENTS) {
    out.push(first);
    for (const rest of remainders(SHA256)) out.push(`${first}/${rest}`);
  }
  for (const component of PATH_COMPONENTS) {
    out.push(
      component,
      `${component}/x`,
      `x/${component}`,
      `x.io/${component}`,
      `localhost/x/${component}:t`,
    );
  }
  out.push(...lengthEdges(SHA256, SHA512), ...tagsAndDigests());
  const bases = ["a.b:5/c_d/e:f", `x.io/y@${SHA256.slice(0, 12)}${"0".repeat(57)}`];
  for (const base of bases) {
    for (let at = 0; at <= base.length; at += base === bases[0] ? 1 : 7) {
      for (const c of INVALID_CHARACTERS) out.push(base.slice(0, at) + c + base.slice(at));
    }
  }
  const next = random(10);
  for (let i = 0; i < 1200; i++) {
    let text = "";
    const count = 1 + Math.floor(next() * 8);
    for (let j = 0; j < count; j++) text += TOKENS[Math.floor(next() * TOKENS.length)];
    out.push(text);
  }
  return [...new Set(out)];
}
