/**
 * Compiled RE2 programs, kept only where they pay for themselves.
 *
 * A compiled re2js program holds about 24 KB (its one-pass program, lazy DFA and prefilter)
 * and takes 100-300 us to build on this machine; 10,000 regex rules held 200+ MB, which
 * crashed replicas under the chart's 96 MB heap (docs/webhook.md, "Limits"). So:
 * - `^literal(.*)$`, the shape most rules have, never gets a program (`regex.ts` matches it
 *   with `startsWith`);
 * - a pattern tried on every image (no literal registry prefix) or an `exclude` keeps its
 *   program: it runs on every admission, and the rule-set budget caps how many there are;
 * - every other pattern is indexed by the registry it names and compiled on first use into
 *   a bounded cache, so memory follows the registries pods really use.
 */
import { RE2JS } from "re2js";

/** Programs cached for indexed patterns: at most about 12 MB. */
const CACHE_MAX = 512;
const cache = new Map<string, RE2JS>();

/** A program for an expression already validated; compiled again if it was dropped. */
export function cachedProgram(expression: string): RE2JS {
  let program = cache.get(expression);
  if (program === undefined) {
    program = RE2JS.compile(expression);
    remember(expression, program);
  }
  return program;
}

/** Keeps a freshly validated program warm, within the bound (the oldest entry goes first). */
export function remember(expression: string, program: RE2JS): void {
  if (cache.size >= CACHE_MAX) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(expression, program);
}

/** For tests and the benchmark: how many programs the cache holds. */
export function cachedPrograms(): number {
  return cache.size;
}
