/**
 * The typed boundary of admission: an AdmissionReview's pod, decoded once into what the
 * mutation reads. The JSON comes from the API server, or from anyone who can reach the port,
 * so nothing past this file casts or guesses: every field here was checked for its type.
 * The `kubernetes-types` package gives the shapes; it has no runtime code.
 */
import type { Pod } from "kubernetes-types/core/v1.js";
import type { Labels } from "../engine/rules/selector.ts";
import { type OriginalImages, optOutAnnotations, readOriginalImages } from "./annotations.ts";
import { type ImageField, podImageFields } from "./images.ts";
import type { AdmissionRequest } from "./review.ts";

export interface PodView {
  readonly uid: string;
  readonly namespace: string;
  /** For logs: the name, the request's name, or `generateName*`. */
  readonly name: string;
  readonly dryRun: boolean;
  /** The pod object as sent, for patches that need to know what exists (annotations). */
  readonly object: Pod;
  readonly labels: Labels;
  /** `imageshift.dev/skip` / `rewrite-disabled` set to "true". */
  readonly optOut: readonly string[];
  /** The original-images record as the pod carries it (a claim, checked by the plan). */
  readonly record: OriginalImages;
  /** Image fields to look at: all on CREATE, new or changed ones on UPDATE. */
  readonly candidates: readonly ImageField[];
}

/** Pods and the `ephemeralcontainers` subresource, on CREATE and UPDATE. */
export function appliesTo(request: AdmissionRequest): boolean {
  const { resource, subResource, operation } = request;
  if (resource?.group !== "" || resource.resource !== "pods") return false;
  if (subResource && subResource !== "ephemeralcontainers") return false;
  return operation === "CREATE" || operation === "UPDATE";
}

/** Image fields worth looking at: all on CREATE, only new or changed ones on UPDATE. */
export function candidates(request: AdmissionRequest): ImageField[] {
  const fields = podImageFields(request.object);
  const before = new Map<string, string>();
  if (request.operation === "UPDATE")
    for (const field of podImageFields(request.oldObject)) before.set(field.key, field.image);
  return fields.filter((field) => before.get(field.key) !== field.image);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** String-valued labels only: anything else in `metadata.labels` is not a label. */
function labelsOf(metadata: Record<string, unknown>): Labels {
  const labels = metadata.labels;
  if (!isObject(labels)) return {};
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) if (typeof value === "string") out[key] = value;
  return out;
}

/** The pod a request is about, or undefined when this webhook has nothing to do with it. */
export function decodePod(request: AdmissionRequest): PodView | undefined {
  if (!appliesTo(request) || !isObject(request.object)) return undefined;
  const object = request.object as Pod;
  const metadata = isObject(request.object.metadata) ? request.object.metadata : {};
  const name = typeof metadata.name === "string" ? metadata.name : "";
  const generateName = typeof metadata.generateName === "string" ? metadata.generateName : "";
  return {
    uid: request.uid,
    namespace: request.namespace ?? "",
    name: name || request.name || (generateName ? `${generateName}*` : ""),
    dryRun: request.dryRun === true,
    object,
    labels: labelsOf(metadata),
    optOut: optOutAnnotations(object),
    record: readOriginalImages(object),
    candidates: candidates(request),
  };
}
