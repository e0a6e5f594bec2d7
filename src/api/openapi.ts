/**
 * TypeBox schemas to Kubernetes structural OpenAPI v3 schemas, for the CRDs.
 *
 * TypeBox writes JSON Schema; the API server wants its structural subset: `const` and unions
 * of literals become `enum`, records (`patternProperties`) become `additionalProperties`, and
 * keywords outside the subset are dropped. What is left is the schema the engine validates
 * with, so the CRD and the validator cannot disagree on structure.
 */
import type { TSchema } from "@sinclair/typebox";

export type OpenApiSchema = { [key: string]: unknown };

/** JSON Schema keywords a structural schema may carry. */
const KEPT = new Set([
  "type",
  "description",
  "default",
  "enum",
  "format",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "required",
  "x-kubernetes-validations",
]);

export function toOpenApi(schema: TSchema | OpenApiSchema): OpenApiSchema {
  const source = schema as Record<string, unknown>;
  const out: OpenApiSchema = {};
  if ("const" in source) {
    out.type = source.type ?? typeof source.const;
    out.enum = [source.const];
  }
  if (Array.isArray(source.anyOf) && source.anyOf.every((branch: { const?: unknown }) => "const" in branch)) {
    const [first] = source.anyOf as { type?: string; const: unknown }[];
    out.type = first?.type ?? typeof first?.const;
    out.enum = source.anyOf.map((branch: { const: unknown }) => branch.const);
  }
  for (const [key, value] of Object.entries(source)) {
    if (KEPT.has(key) && !(key === "required" && Array.isArray(value) && value.length === 0))
      out[key] = value;
  }
  if (source.properties && typeof source.properties === "object") {
    out.properties = Object.fromEntries(
      Object.entries(source.properties as Record<string, TSchema>).map(([name, child]) => [
        name,
        toOpenApi(child),
      ]),
    );
  }
  if (source.items) out.items = toOpenApi(source.items as TSchema);
  if (source.patternProperties && typeof source.patternProperties === "object") {
    const [value] = Object.values(source.patternProperties as Record<string, TSchema>);
    if (value) out.additionalProperties = toOpenApi(value);
  }
  return out;
}
