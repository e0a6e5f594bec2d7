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
  { input: "foo_bar.com/x", reason: /registry/ },
  { input: "foo.com:/x", reason: /registry/ },
  { input: "foo.com:port/x", reason: /registry/ },
  { input: "foo.com:50:00/x", reason: /registry/ },
  { input: "nginx:a/b", reason: /registry/ },
];
