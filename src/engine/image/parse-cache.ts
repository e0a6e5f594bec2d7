/**
 * A bounded memo of `parseReference` for the webhook's hot path: a cluster runs the same
 * few hundred images over and over, so most admissions parse strings already seen.
 * Parsing is a pure function of the string, so a cached result is always right; the cache
 * is simply emptied when it reaches its bound, which keeps it O(1) and its memory capped
 * (about 1 MB at 4,096 entries: no key is longer than INPUT_MAX_LENGTH).
 */
import { INPUT_MAX_LENGTH, type ParseResult, parseReference } from "./reference.ts";

const MAX_ENTRIES = 4096;
const cache = new Map<string, ParseResult>();

/** `parseReference(input)` with Docker Hub as the default registry, memoized. */
export function parseCached(input: string): ParseResult {
  // Oversized input is refused at once; caching it would keep the string alive.
  if (input.length > INPUT_MAX_LENGTH) return parseReference(input);
  let result = cache.get(input);
  if (result === undefined) {
    result = parseReference(input);
    if (cache.size >= MAX_ENTRIES) cache.clear();
    cache.set(input, result);
  }
  return result;
}

/** For tests: how many results the memo holds. */
export function cachedParses(): number {
  return cache.size;
}
