/**
 * Probes a regular-expression rule with images from the major registries, so that a user
 * learns at apply time, and in the object's status, when a rule reaches further than its
 * pattern says. The Mutating Registry Webhook write-up's `^([^/]+/[^/]+)$` ("images without
 * an explicit registry") is the case in point: patterns see normalized names, so it leaves
 * `bitnami/redis` alone (that is `docker.io/bitnami/redis`) and catches
 * `registry.k8s.io/pause:3.9` instead.
 *
 * A rule gets a warning when it matches a probe whose registry its pattern does not name.
 * Two kinds of rule never do: one whose literal prefix pins a registry (`^quay\.io/…`), and
 * one that matches every probe (`^(.*)$`), which plainly means "every image".
 */
import { quote } from "../../errors.ts";
import { literalPrefix, undoubleBackslashes } from "./regex.ts";
import type { RegexRule } from "./rule.ts";
import { tryRule } from "./ruleset.ts";

/** Images as users write them, one or more per major registry, in every spelling that matters. */
export const PROBE_IMAGES: readonly string[] = [
  "nginx:1.25",
  "bitnami/redis:7.2",
  "docker.io/library/busybox:1.36",
  "registry.k8s.io/pause:3.9",
  "registry.k8s.io/ingress-nginx/controller:v1.11.0",
  "gcr.io/distroless/static:nonroot",
  "ghcr.io/fluxcd/source-controller:v1.3.0",
  "quay.io/prometheus/prometheus:v2.53.0",
  "public.ecr.aws/docker/library/alpine:3.20",
  "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0",
  "mcr.microsoft.com/dotnet/runtime:8.0",
  "registry.gitlab.com/group/project:1.0",
  "localhost:5000/app:dev",
];

/** Examples a warning lists; the rest are counted. */
const EXAMPLES = 3;

/** The registry host a probe lives on, without a port (`localhost:5000` -> `localhost`). */
function hostOf(image: string): string {
  const slash = image.indexOf("/");
  const first = slash < 0 ? "" : image.slice(0, slash);
  const host = first.includes(".") || first.includes(":") ? first.replace(/:\d+$/, "") : "docker.io";
  return host;
}

/**
 * True when the pattern's text names the host: the host itself, its last two labels
 * (`amazonaws.com` names every ECR registry, `k8s.io` names `registry.k8s.io`), or, for a
 * two-label host, both labels apart (`^(gcr|ghcr)\.io/` names `gcr.io` and `ghcr.io`).
 */
function names(text: string, host: string): boolean {
  if (text.includes(host)) return true;
  const labels = host.split(".");
  if (labels.length === 2) return labels.every((label) => text.includes(label));
  return labels.length > 2 && text.includes(labels.slice(-2).join("."));
}

/** A warning for the rule's pattern field, or undefined when its reach is what it names. */
export function probeWarning(rule: RegexRule): string | undefined {
  const pattern = rule.pattern.expression;
  if (literalPrefix(pattern).includes("/")) return undefined;
  const text = undoubleBackslashes(rule.pattern.source).replaceAll("\\.", ".");
  const caught: string[] = [];
  let matched = 0;
  for (const image of PROBE_IMAGES) {
    const result = tryRule(rule, image);
    if (result === undefined) continue;
    matched++;
    if (names(text, hostOf(image))) continue;
    caught.push(`${image} -> ${"output" in result ? result.output : "an invalid reference"}`);
  }
  if (caught.length === 0 || matched === PROBE_IMAGES.length) return undefined;
  const more = caught.length > EXAMPLES ? ` (and ${caught.length - EXAMPLES} more)` : "";
  const seen =
    rule.subject === "mrw"
      ? "RegistryRewriteRule patterns see the normalized name, e.g. nginx is docker.io/library/nginx"
      : "regexSwap expressions see the canonical name, e.g. nginx is docker.io/library/nginx";
  return `pattern ${quote(rule.pattern.source)} also catches images of registries it does not name (${seen}): ${caught.slice(0, EXAMPLES).join("; ")}${more}`;
}
