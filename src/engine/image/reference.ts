/**
 * Container image references, parsed and normalized exactly as the container ecosystem
 * (distribution/reference, which containerd, CRI-O and the kubelet use) does.
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path          (the path at most 255 characters once normalized)
 *   domain    := host [ ":" port ]            host: DNS name or "[" IPv6 "]"
 *
 * Normalization: the first path component is a domain only if it contains "." or ":",
 * is "localhost", or is not all lower case; otherwise the image lives on Docker Hub
 * ("docker.io", or the caller's default registry) and a single-component Docker Hub path
 * gets "library/". "index.docker.io" folds to "docker.io". No tag is ever invented.
 *
 * As in Go's `ParseNormalizedNamed`, the 255-character limit counts the path only (with
 * "library/" where it is added), never the domain; and a first component taken for a
 * domain that is not a valid host but is a valid path component, such as
 * `my_registry.corp` in `my_registry.corp/app`, makes the whole name a path with no
 * domain (Go's `Domain()` is "", `String()` is `my_registry.corp/app`). ImageShift keeps
 * that component in `domain` and the rest in `path`, so `formatReference` gives Go's
 * `String()` and the name stays what containerd pulls (its resolver takes the text before
 * the first "/" for the host); for such a name the limit counts the whole name, as in Go.
 * `parseRegistryPrefix` stays strict: a rule must name a real host.
 *
 * Agreement with Go (github.com/distribution/reference) is checked on thousands of recorded
 * inputs (reference.differential.test.ts). The one difference: input over 1024 characters is
 * refused unread, where Go, which does not limit the domain, could accept it; a real host
 * name has at most 253 characters, so no valid reference of a real registry is that long.
 *
 * No npm package implements the current grammar, so it is written here. Parsing returns
 * a result instead of throwing: a bad image must never abort the handling of a pod.
 */

export const DOCKER_HUB = "docker.io";
const LEGACY_DOCKER_HUB = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";
export const NAME_MAX_LENGTH = 255;
/**
 * Longer input names no real registry (host 253 + port + path 255 + tag 128 + digest 135 is
 * under 800); it is refused before any other work, and never cached (`parse-cache.ts`):
 * 60 distinct 1 MiB images once left 69 MB on the heap.
 */
export const INPUT_MAX_LENGTH = 1024;

// Pieces of the grammar. All are anchored and free of ambiguous nesting, so they run in
// linear time on any input (they only ever see our own fixed patterns, never user ones).
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DIGEST_ALGORITHM_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*$/;
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;
/** Hex lengths of the digest algorithms the registries and runtimes accept. */
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

export interface ImageReference {
  /**
   * Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`; or
   * a first component Go reads as part of the path, e.g. `my_registry.corp` (see the header).
   */
  readonly domain: string;
  /** Repository path below the domain, e.g. `library/nginx`. */
  readonly path: string;
  readonly tag?: string;
  /** `algorithm:hex`, e.g. `sha256:…`. */
  readonly digest?: string;
}

export type ParseResult =
  | { readonly ok: true; readonly reference: ImageReference }
  | { readonly ok: false; readonly error: string };

export interface ParseOptions {
  /**
   * Registry that names without a domain resolve to (an `Imageshift`'s `spec.default`).
   * `library/` is only added for Docker Hub, the one registry with that convention.
   */
  defaultDomain?: string;
}

function fail(input: string, reason: string): ParseResult {
  return { ok: false, error: `invalid image reference ${JSON.stringify(input)}: ${reason}` };
}

// Character scanners for the grammar in the header (domain components
// `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`, path components `[a-z0-9]+` joined by `.`,
// `_`, `__` or runs of `-`, tags `[\w][\w.-]{0,127}`). They run on every image of every
// pod, so they walk char codes instead of running regular expressions and splitting
// strings: about 4x faster on this machine (docs/performance.md).
const isLowerAlnum = (c: number) => (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
const isAlnum = (c: number) => isLowerAlnum(c) || (c >= 65 && c <= 90);
const isUpper = (c: number) => c >= 65 && c <= 90;

/** True when the first path component names a registry rather than a Docker Hub namespace. */
function isDomain(text: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */ || c === 58 /* : */ || isUpper(c)) return true;
  }
  return end === 9 && text.startsWith("localhost");
}

/** `path-component ("/" path-component)*` with the grammar's separators. */
function isValidPath(path: string): boolean {
  // state: 0 expect alnum (component start or after "." / "__"), 1 after alnum,
  // 2 after one "_", 3 after "-" run
  let state = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (isLowerAlnum(c)) state = 1;
    else if (state === 1 && (c === 46 || c === 47)) state = 0;
    else if (state === 1 && c === 95) state = 2;
    else if (state === 2 && c === 95) state = 0;
    else if ((state === 1 || state === 3) && c === 45) state = 3;
    else return false;
  }
  return state === 1;
}

/** `host[:port]`, host a DNS name or a bracketed IPv6 address. */
function isValidDomain(domain: string): boolean {
  let i = 0;
  const n = domain.length;
  if (domain.charCodeAt(0) === 91 /* [ */) {
    i = 1;
    while (i < n && (isAlnum(domain.charCodeAt(i)) || domain.charCodeAt(i) === 58)) {
      const c = domain.charCodeAt(i);
      if (!((c >= 48 && c <= 58) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false;
      i++;
    }
    if (i === 1 || domain.charCodeAt(i) !== 93 /* ] */) return false;
    i++;
  } else {
    while (true) {
      // One DNS label: alnum, then alnum or "-", not ending in "-".
      if (i >= n || !isAlnum(domain.charCodeAt(i))) return false;
      while (i < n && (isAlnum(domain.charCodeAt(i)) || domain.charCodeAt(i) === 45)) i++;
      if (domain.charCodeAt(i - 1) === 45) return false;
      if (i < n && domain.charCodeAt(i) === 46) {
        i++;
        continue;
      }
      break;
    }
  }
  if (i === n) return true;
  if (domain.charCodeAt(i) !== 58 || i + 1 === n) return false;
  for (i++; i < n; i++) if (domain.charCodeAt(i) < 48 || domain.charCodeAt(i) > 57) return false;
  return true;
}

function isValidTag(tag: string): boolean {
  if (tag.length === 0 || tag.length > 128) return false;
  for (let i = 0; i < tag.length; i++) {
    const c = tag.charCodeAt(i);
    if (!(isAlnum(c) || c === 95 || (i > 0 && (c === 46 || c === 45)))) return false;
  }
  return true;
}

function pathProblem(path: string): string {
  if (path.toLowerCase() !== path) return `repository name ${JSON.stringify(path)} must be lower case`;
  const component = path.split("/").find((part) => !PATH_COMPONENT_RE.test(part)) ?? path;
  return `repository path component ${JSON.stringify(component)} is invalid`;
}

function isLowerHex(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function checkDigest(digest: string): string | undefined {
  const colon = digest.indexOf(":");
  if (colon <= 0) return `digest ${JSON.stringify(digest)} must be algorithm:hex`;
  const algorithm = digest.slice(0, colon);
  const length = Object.hasOwn(DIGEST_HEX_LENGTH, algorithm) ? DIGEST_HEX_LENGTH[algorithm] : undefined;
  if (length === undefined) {
    return DIGEST_ALGORITHM_RE.test(algorithm)
      ? `digest algorithm ${JSON.stringify(algorithm)} is not supported`
      : `digest algorithm ${JSON.stringify(algorithm)} is malformed`;
  }
  if (digest.length - colon - 1 !== length || !isLowerHex(digest, colon + 1)) {
    return `${algorithm} digest must be ${length} lower-case hex characters, got ${JSON.stringify(digest.slice(colon + 1))}`;
  }
  return undefined;
}

/** Parses and normalizes an image reference. Never throws. */
export function parseReference(input: string, options: ParseOptions = {}): ParseResult {
  if (typeof input !== "string" || input.length === 0) return fail(String(input ?? ""), "empty");
  if (input.length > INPUT_MAX_LENGTH) return fail(`${input.slice(0, 64)}…`, "too long");
  if (input.length === 64 && IDENTIFIER_RE.test(input))
    return fail(input, "a 64-character hex string is an image ID, not a name");

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const problem = checkDigest(digest);
    if (problem) return fail(input, problem);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) return fail(input, `tag ${JSON.stringify(tag)} is invalid`);
  }

  const slash = rest.indexOf("/");
  let domain: string;
  let path: string;
  // What Go limits to 255 characters: the path, or the whole name when it has no host.
  let limited: string;
  if (slash >= 0 && isDomain(rest, slash)) {
    domain = rest.slice(0, slash);
    path = rest.slice(slash + 1);
    limited = path;
    if (!isValidDomain(domain)) {
      // Go's domain is optional: a first component that is no host but a path component
      // (`my_registry.corp`) makes the whole name a path. See the header.
      if (!isValidPath(domain)) return fail(input, `registry ${JSON.stringify(domain)} is invalid`);
      limited = rest;
    }
    if (domain === LEGACY_DOCKER_HUB) domain = DOCKER_HUB;
  } else {
    domain = options.defaultDomain ?? DOCKER_HUB;
    if (domain === LEGACY_DOCKER_HUB) domain = DOCKER_HUB;
    path = rest;
    limited = path;
  }
  if (domain === DOCKER_HUB && !path.includes("/")) path = limited = OFFICIAL_REPO_PREFIX + path;

  if (path.length === 0) return fail(input, "repository name is empty");
  if (!isValidPath(path)) return fail(input, pathProblem(path));
  if (limited.length > NAME_MAX_LENGTH) {
    const what = limited === path ? "repository path" : "name";
    return fail(input, `${what} is ${limited.length} characters, more than ${NAME_MAX_LENGTH}`);
  }

  const reference: ImageReference =
    tag === undefined && digest === undefined
      ? { domain, path }
      : digest === undefined
        ? { domain, path, tag }
        : tag === undefined
          ? { domain, path, digest }
          : { domain, path, tag, digest };
  return { ok: true, reference };
}

/** `domain/path`, the repository name without tag or digest. */
export function nameOf(reference: ImageReference): string {
  return `${reference.domain}/${reference.path}`;
}

/** The canonical string `domain/path[:tag][@digest]`. */
export function formatReference(reference: ImageReference): string {
  let text = nameOf(reference);
  if (reference.tag !== undefined) text += `:${reference.tag}`;
  if (reference.digest !== undefined) text += `@${reference.digest}`;
  return text;
}

/** Parses a registry-with-optional-path such as `docker.io` or `docker.io/bitnami`. */
export function parseRegistryPrefix(
  input: string,
): { ok: true; prefix: string; domain: string; path: string } | { ok: false; error: string } {
  const slash = input.indexOf("/");
  let domain = slash >= 0 ? input.slice(0, slash) : input;
  const path = slash >= 0 ? input.slice(slash + 1) : "";
  const bad = (reason: string) => ({
    ok: false as const,
    error: `invalid registry ${JSON.stringify(input)}: ${reason}`,
  });
  if (domain.length === 0) return bad("empty");
  if (!isValidDomain(domain)) return bad(`host ${JSON.stringify(domain)} is invalid`);
  // A first component that is not a domain would be read as a Docker Hub namespace by
  // every runtime, so `mirror` must be written `docker.io/mirror` if that is what is meant.
  if (!isDomain(domain, domain.length)) {
    return bad(
      `${JSON.stringify(domain)} is not a registry host (it needs a "." or a port, or is localhost); write docker.io/${domain} for a Docker Hub namespace`,
    );
  }
  if (domain === LEGACY_DOCKER_HUB) domain = DOCKER_HUB;
  if (slash >= 0 && !isValidPath(path)) return bad(pathProblem(path));
  return { ok: true, prefix: path.length > 0 ? `${domain}/${path}` : domain, domain, path };
}
