/**
 * The two CustomResourceDefinitions, generated from the engine's own schemas
 * (`src/api/schema.ts`). `imageshift crds` prints them; `charts/imageshift/crds/` holds the
 * checked-in copy that a test keeps in step with this file.
 */
import { type TSchema, Type } from "@sinclair/typebox";
import { stringify } from "yaml";
import { type OpenApiSchema, toOpenApi } from "./openapi.ts";
import {
  COMPAT_GROUP,
  COMPAT_KIND,
  CompatSpecSchema,
  IMAGESHIFT_GROUP,
  IMAGESHIFT_KIND,
  ImageshiftSpecSchema,
} from "./schema.ts";

/** What ImageShift reports on every rule object (see `status.ts`). */
export const RuleObjectStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(Type.Integer({ description: "The generation this status is about." })),
    rules: Type.Optional(Type.Integer({ description: "Rules in use (valid rules)." })),
    warnings: Type.Optional(
      Type.Array(Type.String(), {
        description: "Every validation warning, as `field: message` (at most 20 listed).",
      }),
    ),
    conditions: Type.Optional(
      Type.Array(
        Type.Object({
          type: Type.String({ description: "Ready." }),
          status: Type.Union([Type.Literal("True"), Type.Literal("False"), Type.Literal("Unknown")]),
          reason: Type.Optional(Type.String()),
          message: Type.Optional(Type.String()),
          observedGeneration: Type.Optional(Type.Integer()),
          lastTransitionTime: Type.Optional(Type.String({ format: "date-time" })),
        }),
        { description: "Ready: True when every rule is valid; its message names each invalid rule." },
      ),
    ),
  },
  { description: "Set by ImageShift." },
);

/**
 * A RegistryRewriteRule's status: ImageShift's, plus the fields the Mutating Registry Webhook
 * wrote (its CRD declares them), so they survive the switch to this CRD instead of being
 * pruned, and ImageShift keeps `ready` and `ruleCount` current (docs/migrating-from-mrw.md).
 */
export const CompatStatusSchema = Type.Object(
  {
    ...RuleObjectStatusSchema.properties,
    ready: Type.Optional(Type.Boolean({ description: "The Ready condition, as MRW wrote it." })),
    ruleCount: Type.Optional(Type.Integer({ description: "Rules in use, as MRW wrote it." })),
    lastUpdateTime: Type.Optional(
      Type.String({ format: "date-time", description: "Last status write, as MRW wrote it." }),
    ),
  },
  { description: "Set by ImageShift." },
);

const READY = { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' };
const RULES = { name: "Rules", type: "integer", jsonPath: ".status.rules" };
const AGE = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" };

interface CrdOptions {
  group: string;
  version: string;
  kind: string;
  plural: string;
  shortName: string;
  spec: TSchema;
  status: TSchema;
  columns: { name: string; type: string; jsonPath: string }[];
}

function crd(options: CrdOptions): OpenApiSchema {
  const status = toOpenApi(options.status);
  const conditionList = (status.properties as Record<string, OpenApiSchema>).conditions as OpenApiSchema;
  conditionList["x-kubernetes-list-type"] = "map";
  conditionList["x-kubernetes-list-map-keys"] = ["type"];
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${options.plural}.${options.group}` },
    spec: {
      group: options.group,
      scope: "Cluster",
      names: {
        kind: options.kind,
        listKind: `${options.kind}List`,
        plural: options.plural,
        singular: options.kind.toLowerCase(),
        shortNames: [options.shortName],
        categories: ["imageshift"],
      },
      versions: [
        {
          name: options.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: options.columns,
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: toOpenApi(options.spec),
                status,
              },
            },
          },
        },
      ],
    },
  };
}

export function imageshiftCrd(): OpenApiSchema {
  return crd({
    group: IMAGESHIFT_GROUP,
    version: "v1",
    kind: IMAGESHIFT_KIND,
    plural: "imageshifts",
    shortName: "ims",
    spec: ImageshiftSpecSchema,
    status: RuleObjectStatusSchema,
    columns: [
      READY,
      RULES,
      { name: "Mode", type: "string", jsonPath: ".spec.mode" },
      { name: "Priority", type: "integer", jsonPath: ".spec.priority" },
      AGE,
    ],
  });
}

export function registryRewriteRuleCrd(): OpenApiSchema {
  return crd({
    group: COMPAT_GROUP,
    version: "v1alpha1",
    kind: COMPAT_KIND,
    plural: "registryrewriterules",
    shortName: "rrr",
    spec: CompatSpecSchema,
    status: CompatStatusSchema,
    columns: [READY, RULES, AGE],
  });
}

/** Both CRDs as one multi-document YAML, or only ImageShift's own. */
export function crdsYaml({ compat = true } = {}): string {
  const header = "# Generated by `imageshift crds` from src/api/schema.ts; do not edit.\n";
  const documents = compat ? [imageshiftCrd(), registryRewriteRuleCrd()] : [imageshiftCrd()];
  return (
    header +
    documents
      .map((document) => `---\n${stringify(document, { lineWidth: 0, aliasDuplicateObjects: false })}`)
      .join("")
  );
}
