/**
 * JSON Patch (RFC 6902) operations for a pod: minimal `replace` ops for images and one op
 * for the annotation, with RFC 6901 pointer escaping (`imageshift.dev/original-images`
 * becomes `imageshift.dev~1original-images`).
 */
import { hasAnnotations, ORIGINAL_IMAGES_ANNOTATION, type OriginalImages } from "./annotations.ts";

export type PatchOperation =
  | { op: "replace"; path: string; value: unknown }
  | { op: "add"; path: string; value: unknown };

export function escapePointer(segment: string): string {
  return segment.replaceAll("~", "~0").replaceAll("/", "~1");
}

export function replaceImage(pointer: string, image: string): PatchOperation {
  return { op: "replace", path: pointer, value: image };
}

/** Sets the annotation, creating `metadata.annotations` when the pod has none. Other annotations are untouched. */
export function setOriginalImages(pod: unknown, record: OriginalImages): PatchOperation {
  const value = JSON.stringify(record);
  const metadata = (pod as { metadata?: unknown } | null)?.metadata;
  if (!metadata || typeof metadata !== "object") {
    return { op: "add", path: "/metadata", value: { annotations: { [ORIGINAL_IMAGES_ANNOTATION]: value } } };
  }
  if (!hasAnnotations(pod))
    return { op: "add", path: "/metadata/annotations", value: { [ORIGINAL_IMAGES_ANNOTATION]: value } };
  // "add" on an object member replaces it when present, so this works either way.
  return { op: "add", path: `/metadata/annotations/${escapePointer(ORIGINAL_IMAGES_ANNOTATION)}`, value };
}
