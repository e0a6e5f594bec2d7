/**
 * The limits on what users put in rules, in one place, each with the reason for its value.
 * Over a limit, a pattern or a rule set is refused with an error naming the value and the
 * limit; the rules already serving stay in use (docs/webhook.md, "Limits").
 */

/**
 * Characters in one pattern. An image reference is at most 1,024 characters (a repository
 * path 255, a tag 128, a digest 135, and the registry host), so a pattern twice that says
 * nothing more; a 199 KB alternation took 2.2 s to compile and blocked every admission meanwhile.
 */
export const PATTERN_MAX_LENGTH = 2048;

/**
 * Capture groups in one pattern. A template refers to a handful (`$1`…`$4` in practice);
 * matching cost grows with groups, and a 5,000-group pattern cost 185 ms per image.
 */
export const PATTERN_MAX_GROUPS = 32;

/**
 * Instructions of one compiled RE2 program. Counted repetitions inflate a short pattern
 * (`(x{1000}){100}`); a 2,000-character alternation of registry names needs about 2,100.
 */
export const PROGRAM_MAX_SIZE = 5_000;

/**
 * Rules in the whole rule set: 100,000 swap and exact rules serve in the chart's 96 MB heap
 * (`BENCH_RULES=swap100k npm run bench:webhook`), with compiled rules at about 450 bytes each
 * (`compact.ts`); the file text or watched objects are parsed next to them at load time.
 */
export const RULES_MAX = 100_000;

/**
 * Regular-expression rules in the whole rule set. Validating one takes 100-300 us when it is
 * not `^literal(.*)$`, so 10,000 bound a reload to a few seconds at worst.
 */
export const REGEX_RULES_MAX = 10_000;

/**
 * Patterns tried on every image: regular expressions without a literal registry prefix,
 * and `exclude` expressions. Each keeps its compiled program (about 24 KB) and runs on every
 * admission, so they bound both memory (about 6 MB) and latency.
 */
export const ALWAYS_TRIED_MAX = 256;

/**
 * Characters of one rule file. The YAML parser's document tree takes 20-30 times the text, so a
 * 4 MiB YAML file (about 50,000 rules) already needs most of the chart's 96 MB heap. JSON is
 * parsed without a tree; 16 MiB hold the 100,000-rule budget.
 */
export const YAML_FILE_MAX_BYTES = 4 * 1024 * 1024;
export const JSON_FILE_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Nesting of collections in a rule document. A rule object is about six levels deep; a
 * 100,000-deep flow sequence (200 KB of brackets) ran the parser out of heap.
 */
export const DOCUMENT_MAX_DEPTH = 64;

/**
 * Alias expansions in one YAML document (the `yaml` library's guard against "billion laughs";
 * over it the library throws, which once crashed the server: now the document is refused).
 */
export const YAML_MAX_ALIASES = 100;
