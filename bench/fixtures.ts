/** Rule sets and images shared by the benchmarks. */
import type { RuleDocument } from "../src/engine/rules/load.ts";

function imageshift(name: string, mappings: Record<string, unknown[]>): RuleDocument {
  return {
    location: { source: "bench", document: 0 },
    value: { apiVersion: "imageshift.dev/v1", kind: "Imageshift", metadata: { name }, spec: { mappings } },
  };
}

/** n swap + exact rules: half registry/org prefixes, half pinned images. */
export function swapAndExact(n: number): RuleDocument[] {
  const swap = [{ registry: "docker.io", target: "mirror.corp/hub" }];
  const exactSwap = [];
  for (let i = 0; swap.length + exactSwap.length < n; i++) {
    if (i % 2 === 0)
      swap.push({
        registry: i % 4 === 0 ? `registry-${i}.example.com` : `docker.io/org${i}`,
        target: `mirror.corp/m${i}`,
      });
    else exactSwap.push({ reference: `org${i}/app:v${i}`, target: `mirror.corp/pinned/app${i}:v1` });
  }
  return [imageshift("bench", { swap, exactSwap })];
}

/** n regex rules, one per registry, the way users write them. */
export function regexes(n: number): RuleDocument[] {
  const regexSwap = [];
  for (let i = 0; i < n; i++) {
    regexSwap.push({ expression: `^registry-${i}\\.example\\.com/(.*)$`, target: `mirror.corp/r${i}/$1` });
  }
  return [imageshift("bench", { regexSwap })];
}

/** n regex rules that are not `^literal(.*)$`: each keeps a capture in the middle (indexed by registry). */
export function generalRegexes(n: number): RuleDocument[] {
  const regexSwap = [];
  for (let i = 0; i < n; i++) {
    regexSwap.push({
      expression: `^registry-${i}\\.example\\.com/([a-z]+)/(.*)$`,
      target: `mirror.corp/r${i}/$1/$2`,
    });
  }
  return [imageshift("bench", { regexSwap })];
}

/** n RegistryRewriteRule rules in one object, as the attack had them (`^literal(.*)$`). */
export function compatRegexes(n: number): RuleDocument[] {
  const rules = [];
  for (let i = 0; i < n; i++)
    rules.push({ match: `^registry-${i}\\.example\\.com/(.*)$`, replace: `mirror.corp/r${i}/$1` });
  return [
    {
      location: { source: "bench", document: 0 },
      value: {
        apiVersion: "dev.flemzord.fr/v1alpha1",
        kind: "RegistryRewriteRule",
        metadata: { name: "bench" },
        spec: { rules },
      },
    },
  ];
}

const DIGEST = `sha256:${"c".repeat(64)}`;
export function imageMix(): string[] {
  const images: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const k = i % 10;
    images.push(
      [
        "nginx",
        `nginx:1.${i % 30}`,
        `org${(i * 2 + 1) % 9000}/app:v${(i * 2 + 1) % 9000}`,
        `docker.io/org${(i * 4 + 2) % 9000}/tool:${i}`,
        `localhost:5000/team/app:${i}`,
        `registry-${(i * 4) % 1000}.example.com/team/app:${i}`,
        `registry-${(i * 4) % 1000}.example.com/team/app@${DIGEST}`,
        `quay.io/org/app:1.${i}@${DIGEST}`,
        `registry.k8s.io/pause:3.${i % 10}`,
        `123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc-${i}:v1`,
      ][k] as string,
    );
  }
  return images;
}
