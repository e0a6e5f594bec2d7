/**
 * A rule object's verification policy (docs/mirrors.md): whether its rewrites are checked
 * against the target registry before they are used, and what to do when the image is absent
 * or the registry cannot answer.
 *
 * `Imageshift` objects say it in `spec.verify`. `RegistryRewriteRule` objects are accepted
 * verbatim, so the same policy rides on an annotation, `imageshift.dev/verify`, holding the same
 * JSON: annotations survive the Mutating Registry Webhook's own CRD (whose schema would prune an
 * unknown spec field) and leave the spec exactly as that tool reads it.
 *
 * A policy that does not validate is an error on the object as a whole (its last good version
 * keeps serving): rewriting without the checks the user asked for, or not at all, would both
 * be worse than the rules of a moment ago.
 */
import { Value } from "@sinclair/typebox/value";
import { VERIFY_ANNOTATION, type Verify, VerifySchema } from "../../api/schema.ts";
import { quote } from "../../errors.ts";
import { parseRegistryPrefix } from "../image/reference.ts";
import type { Rule, VerifyPolicy } from "./rule.ts";

export interface VerifyProblem {
  readonly field: string;
  readonly message: string;
}

export type VerifyResult = { policy?: VerifyPolicy; problems: readonly VerifyProblem[] };

/** The field a compat object's policy is reported at. */
export const VERIFY_ANNOTATION_FIELD = `metadata.annotations[${quote(VERIFY_ANNOTATION)}]`;

/** The policy of an already schema-checked `spec.verify` (undefined: none). */
export function compileVerify(verify: Verify | undefined, field = "spec.verify"): VerifyResult {
  if (!verify || (verify.mode ?? "None") === "None") return { problems: [] };
  const problems: VerifyProblem[] = [];
  const insecure = new Set<string>();
  (verify.insecureRegistries ?? []).forEach((host, i) => {
    const parsed = parseRegistryPrefix(host);
    if (!parsed.ok || parsed.path !== "")
      problems.push({
        field: `${field}.insecureRegistries[${i}]`,
        message: parsed.ok ? `${quote(host)} must be a registry host, without a path` : parsed.error,
      });
    else insecure.add(parsed.domain);
  });
  if (problems.length > 0) return { problems };
  return {
    policy: {
      mode: verify.mode === "Digest" ? "Digest" : "Presence",
      whenAbsent: verify.whenAbsent ?? "KeepOriginal",
      whenUnknown: verify.whenUnknown ?? "Rewrite",
      ...(verify.credentialsSecret ? { credentials: verify.credentialsSecret } : {}),
      insecure,
    },
    problems,
  };
}

/** The policy a `RegistryRewriteRule` carries in its annotation, checked like `spec.verify`. */
export function compileVerifyAnnotation(annotations: Record<string, string> | undefined): VerifyResult {
  const raw = annotations?.[VERIFY_ANNOTATION];
  if (raw === undefined) return { problems: [] };
  const field = VERIFY_ANNOTATION_FIELD;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    return { problems: [{ field, message: `not JSON: ${(error as Error).message}` }] };
  }
  const first = Value.Errors(VerifySchema, parsed).First();
  if (first) {
    const at = first.path ? `${field}${first.path.replaceAll("/", ".")}` : field;
    return {
      problems: [
        { field: at, message: `${first.message} (got ${JSON.stringify(first.value) ?? "nothing"})` },
      ],
    };
  }
  return compileVerify(parsed as Verify, field);
}

/**
 * The registries an object's rules send images to, as far as the rules say literally: swap and
 * exact targets, and the literal host a regular expression's template starts with. For status
 * (a condition per target registry), never for decisions.
 */
export function targetRegistries(rules: readonly Rule[]): string[] {
  const hosts = new Set<string>();
  for (const rule of rules) {
    if (rule.type === "regex") {
      const first = rule.template[0];
      const slash = typeof first === "string" ? first.indexOf("/") : -1;
      if (typeof first === "string" && slash > 0) hosts.add(first.slice(0, slash));
    } else hosts.add(rule.target.domain);
  }
  return [...hosts].sort();
}
