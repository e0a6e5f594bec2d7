/**
 * Where a Pod keeps image references. Each extractor returns the JSON pointer of the
 * image with a stable key (`containers/app`) that names it in the annotation, logs and
 * idempotence checks.
 */

export type ImageFieldKind = "containers" | "initContainers" | "ephemeralContainers" | "volumes";

export interface ImageField {
  /** `containers/app`, `volumes/models`: stable across requests, unlike list indexes. */
  readonly key: string;
  readonly kind: ImageFieldKind;
  /** Container or volume name. */
  readonly name: string;
  /** RFC 6901 pointer, e.g. `/spec/containers/0/image`. */
  readonly pointer: string;
  readonly image: string;
}

type Json = Record<string, unknown>;

function containerFields(spec: Json, kind: Exclude<ImageFieldKind, "volumes">): ImageField[] {
  const fields: ImageField[] = [];
  const list = Array.isArray(spec[kind]) ? (spec[kind] as unknown[]) : [];
  list.forEach((container, index) => {
    if (container === null || typeof container !== "object") return;
    const { name, image } = container as Json;
    if (typeof image !== "string" || image === "") return;
    const label = typeof name === "string" ? name : String(index);
    fields.push({
      key: `${kind}/${label}`,
      kind,
      name: label,
      pointer: `/spec/${kind}/${index}/image`,
      image,
    });
  });
  return fields;
}

/** Image volumes (`spec.volumes[*].image.reference`, Kubernetes 1.31+). */
function volumeFields(spec: Json): ImageField[] {
  const fields: ImageField[] = [];
  const list = Array.isArray(spec.volumes) ? (spec.volumes as unknown[]) : [];
  list.forEach((volume, index) => {
    if (volume === null || typeof volume !== "object") return;
    const { name, image } = volume as Json;
    const reference = image && typeof image === "object" ? (image as Json).reference : undefined;
    if (typeof reference !== "string" || reference === "") return;
    const label = typeof name === "string" ? name : String(index);
    fields.push({
      key: `volumes/${label}`,
      kind: "volumes",
      name: label,
      pointer: `/spec/volumes/${index}/image/reference`,
      image: reference,
    });
  });
  return fields;
}

/** Every image field of a Pod object, in spec order. Tolerates any shape. */
export function podImageFields(pod: unknown): ImageField[] {
  if (pod === null || typeof pod !== "object") return [];
  const spec = (pod as Json).spec;
  if (spec === null || typeof spec !== "object") return [];
  const s = spec as Json;
  return [
    ...containerFields(s, "initContainers"),
    ...containerFields(s, "containers"),
    ...containerFields(s, "ephemeralContainers"),
    ...volumeFields(s),
  ];
}
