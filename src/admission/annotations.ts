/**
 * The annotations ImageShift reads and writes on pods.
 *
 * `imageshift.dev/original-images` records, per image field, the original image, the image
 * ImageShift produced and the rule that did it. It is what makes the webhook idempotent:
 * an image equal to the one recorded as produced is not rewritten again (re-invocation), and
 * it tells a user what happened and why. Anyone who writes the pod can write the annotation,
 * so an entry is trusted only when the current rules make its image of its original
 * (`recordAgrees` in mutate.ts).
 */

export const ORIGINAL_IMAGES_ANNOTATION = "imageshift.dev/original-images";
export const SKIP_ANNOTATION = "imageshift.dev/skip";
/** The Mutating Registry Webhook's opt-out, honoured for its users. */
export const COMPAT_SKIP_ANNOTATION = "rewrite-disabled";

export interface OriginalImage {
  /** The image as the user wrote it. */
  readonly original: string;
  /** The image ImageShift wrote. */
  readonly image: string;
  /** `Kind/name field`, e.g. `Imageshift/airgap spec.mappings.swap[0]`. */
  readonly rule: string;
  /** What the target registry said, when the rule object asks for checks (docs/mirrors.md). */
  readonly check?: string;
}

export type OriginalImages = Record<string, OriginalImage>;

function annotationsOf(pod: unknown): Record<string, unknown> {
  const metadata = (pod as { metadata?: { annotations?: unknown } } | null)?.metadata;
  const annotations = metadata?.annotations;
  return annotations && typeof annotations === "object" ? (annotations as Record<string, unknown>) : {};
}

export function hasAnnotations(pod: unknown): boolean {
  const metadata = (pod as { metadata?: { annotations?: unknown } } | null)?.metadata;
  return Boolean(metadata?.annotations && typeof metadata.annotations === "object");
}

/**
 * The opt-out annotations the pod carries with the value `"true"` (`imageshift.dev/skip`,
 * `rewrite-disabled`); empty when it did not opt out.
 */
export function optOutAnnotations(pod: unknown): string[] {
  const annotations = annotationsOf(pod);
  return [SKIP_ANNOTATION, COMPAT_SKIP_ANNOTATION].filter((name) => annotations[name] === "true");
}

/** Reads the record; a value that is not ours (hand-edited, garbage) reads as empty. */
export function readOriginalImages(pod: unknown): OriginalImages {
  const raw = annotationsOf(pod)[ORIGINAL_IMAGES_ANNOTATION];
  if (typeof raw !== "string") return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    const record: OriginalImages = {};
    for (const [key, value] of Object.entries(parsed)) {
      const entry = value as Partial<OriginalImage> | null;
      if (entry && typeof entry.original === "string" && typeof entry.image === "string") {
        record[key] = {
          original: entry.original,
          image: entry.image,
          rule: String(entry.rule ?? ""),
          ...(typeof entry.check === "string" ? { check: entry.check } : {}),
        };
      }
    }
    return record;
  } catch {
    return {};
  }
}
