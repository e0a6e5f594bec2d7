/**
 * The rule objects' schemas: the single source of truth for the TypeScript types, the
 * structural half of validation, and (later) the CRDs' OpenAPI schemas.
 *
 * Two kinds are accepted:
 * - `imageshift.dev/v1` `Imageshift`: ImageShift's own object (many may exist).
 * - `dev.flemzord.fr/v1alpha1` `RegistryRewriteRule`: the Mutating Registry Webhook's
 *   object, accepted verbatim so its users can switch without rewriting rules.
 *
 * Semantic checks that a schema cannot express (registry syntax, RE2 compilation,
 * replacement groups) live in `validate.ts`.
 */
import { type Static, Type } from "@sinclair/typebox";

export const IMAGESHIFT_GROUP = "imageshift.dev";
export const IMAGESHIFT_API_VERSION = "imageshift.dev/v1";
export const IMAGESHIFT_KIND = "Imageshift";
export const COMPAT_GROUP = "dev.flemzord.fr";
export const COMPAT_API_VERSION = "dev.flemzord.fr/v1alpha1";
export const COMPAT_KIND = "RegistryRewriteRule";

const NonEmptyString = (description: string) => Type.String({ minLength: 1, description });
const StringMap = (description: string) => Type.Record(Type.String(), Type.String(), { description });

export const LabelSelectorSchema = Type.Object(
  {
    matchLabels: Type.Optional(StringMap("Labels that must all be present with these values.")),
    matchExpressions: Type.Optional(
      Type.Array(
        Type.Object({
          key: NonEmptyString("Label key."),
          operator: Type.Union(
            [Type.Literal("In"), Type.Literal("NotIn"), Type.Literal("Exists"), Type.Literal("DoesNotExist")],
            { description: "In, NotIn, Exists or DoesNotExist." },
          ),
          values: Type.Optional(Type.Array(Type.String())),
        }),
      ),
    ),
  },
  { description: "A Kubernetes label selector; empty or absent selects everything." },
);
export type LabelSelector = Static<typeof LabelSelectorSchema>;

export const SwapSchema = Type.Object({
  registry: NonEmptyString("Registry host, optionally with a path prefix (docker.io/bitnami)."),
  target: NonEmptyString("Registry (and optional path) that replaces the matched prefix."),
});
export const ExactSwapSchema = Type.Object({
  reference: NonEmptyString("Image to replace; an absent tag means latest."),
  target: NonEmptyString("Replacement image; without its own tag or digest it keeps the source's."),
});
export const RegexSwapSchema = Type.Object({
  expression: NonEmptyString("RE2 expression matched against the canonical image reference."),
  target: NonEmptyString("Replacement with $1, ${1}, ${name} and $$."),
});

/** The annotation that gives a `RegistryRewriteRule` a verification policy (JSON of `VerifySchema`). */
export const VERIFY_ANNOTATION = "imageshift.dev/verify";

/** At most this many insecure registries per object: a list to scan per check, kept short. */
export const MAX_INSECURE_REGISTRIES = 32;

export const VerifySchema = Type.Object(
  {
    mode: Type.Optional(
      Type.Union([Type.Literal("None"), Type.Literal("Presence"), Type.Literal("Digest")], {
        default: "None",
        description:
          "None: rewrite without asking the target registry. Presence: rewrite only when the target manifest exists. Digest: Presence, and the target must serve the original's digest (pinned, or upstream's digest for the tag).",
      }),
    ),
    whenAbsent: Type.Optional(
      Type.Union([Type.Literal("KeepOriginal"), Type.Literal("NextRule")], {
        default: "KeepOriginal",
        description: "When the target lacks the image: keep the original, or try the next matching rule.",
      }),
    ),
    whenUnknown: Type.Optional(
      Type.Union([Type.Literal("Rewrite"), Type.Literal("KeepOriginal")], {
        default: "Rewrite",
        description:
          "When the registry cannot answer in time (timeout, 5xx, 429, circuit open): trust the rule, or keep the original.",
      }),
    ),
    credentialsSecret: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 253,
        pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description:
          "A kubernetes.io/dockerconfigjson Secret in ImageShift's own namespace with credentials for the registries checked.",
      }),
    ),
    insecureRegistries: Type.Optional(
      Type.Array(NonEmptyString("Registry host reached over plain HTTP."), {
        maxItems: MAX_INSECURE_REGISTRIES,
        description: "Registries asked over plain HTTP instead of HTTPS (a local mirror).",
      }),
    ),
  },
  { description: "Ask the target registry before rewriting (docs/mirrors.md)." },
);
export type Verify = Static<typeof VerifySchema>;

export const ImageshiftSpecSchema = Type.Object({
  default: Type.Optional(
    Type.String({
      minLength: 1,
      default: "docker.io",
      description: "Registry that names without a registry resolve to.",
    }),
  ),
  priority: Type.Optional(Type.Integer({ default: 0, description: "Higher objects are consulted first." })),
  mode: Type.Optional(
    Type.Union([Type.Literal("Enforce"), Type.Literal("Audit")], {
      default: "Enforce",
      description: "Enforce rewrites; Audit only reports what would change.",
    }),
  ),
  namespaceSelector: Type.Optional(LabelSelectorSchema),
  podSelector: Type.Optional(LabelSelectorSchema),
  verify: Type.Optional(VerifySchema),
  exclude: Type.Optional(
    Type.Array(NonEmptyString("RE2 expression over the canonical image."), {
      description: "Images matching any of these are never rewritten by this object.",
    }),
  ),
  mappings: Type.Object(
    {
      swap: Type.Optional(
        Type.Array(SwapSchema, { description: "Registry (prefix) swaps; the longest prefix wins." }),
      ),
      exactSwap: Type.Optional(Type.Array(ExactSwapSchema, { description: "Exact image replacements." })),
      regexSwap: Type.Optional(Type.Array(RegexSwapSchema, { description: "RE2 rewrites, in list order." })),
    },
    {
      description: "The rules; at least one.",
      // Kept in the CRD as a CEL rule, so the API server refuses an empty object even
      // without the validating webhook.
      "x-kubernetes-validations": [
        {
          rule: "(has(self.swap) ? size(self.swap) : 0) + (has(self.exactSwap) ? size(self.exactSwap) : 0) + (has(self.regexSwap) ? size(self.regexSwap) : 0) > 0",
          message: "no rules: add swap, exactSwap or regexSwap entries",
        },
      ],
    },
  ),
});
export type ImageshiftSpec = Static<typeof ImageshiftSpecSchema>;

export const CompatRuleSchema = Type.Object({
  match: NonEmptyString("RE2 expression matched against the image as written in the pod."),
  replace: NonEmptyString("Replacement with $1, ${1}, ${name} and $$."),
  priority: Type.Optional(Type.Integer({ default: 0, description: "Higher rules are tried first." })),
  conditions: Type.Optional(
    Type.Object({
      namespaces: Type.Optional(Type.Array(Type.String(), { description: "Only pods in these namespaces." })),
      labels: Type.Optional(StringMap("Only pods with all these labels.")),
    }),
  ),
});
export const CompatSpecSchema = Type.Object({
  rules: Type.Array(CompatRuleSchema, { minItems: 1 }),
});
export type CompatSpec = Static<typeof CompatSpecSchema>;

/** The part of `metadata` the engine reads. */
export const MetadataSchema = Type.Object({
  name: NonEmptyString("Object name."),
  generation: Type.Optional(Type.Integer()),
  annotations: Type.Optional(StringMap("Object annotations; `imageshift.dev/verify` is read.")),
});

export const ImageshiftSchema = Type.Object({
  apiVersion: Type.Literal(IMAGESHIFT_API_VERSION),
  kind: Type.Literal(IMAGESHIFT_KIND),
  metadata: MetadataSchema,
  spec: ImageshiftSpecSchema,
});
export type Imageshift = Static<typeof ImageshiftSchema>;

export const RegistryRewriteRuleSchema = Type.Object({
  apiVersion: Type.Literal(COMPAT_API_VERSION),
  kind: Type.Literal(COMPAT_KIND),
  metadata: MetadataSchema,
  spec: CompatSpecSchema,
});
export type RegistryRewriteRule = Static<typeof RegistryRewriteRuleSchema>;

export type RuleObject = Imageshift | RegistryRewriteRule;
export type RuleKind = typeof IMAGESHIFT_KIND | typeof COMPAT_KIND;
