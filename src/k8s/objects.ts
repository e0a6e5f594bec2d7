/**
 * The shapes of the Kubernetes objects ImageShift reads and writes, as far as it reads
 * them. Fields it does not touch are carried along untyped, so a read-modify-write (a
 * Lease, a Secret) sends back everything the server returned.
 */

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [field: string]: unknown;
}

export interface ObjectList<T extends KubeObject> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T extends KubeObject> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  /** The object; for ERROR, a `Status` (`code` 410 when the resourceVersion is too old). */
  object: T;
}

export interface Namespace extends KubeObject {}

export interface Secret extends KubeObject {
  type?: string;
  /** Values base64-encoded, as the API returns them. */
  data?: Record<string, string>;
}

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** MicroTime: RFC 3339 with six fractional digits, see `microTime`. */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface WebhookConfiguration extends KubeObject {
  webhooks?: { name: string; clientConfig: { caBundle?: string } }[];
}

/** A `MicroTime` (what Lease times are): the API server rejects an RFC 3339 time with milliseconds. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, "000Z");
}
