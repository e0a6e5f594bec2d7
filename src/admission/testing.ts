/**
 * Test and benchmark helper: the AdmissionReview the API server sends for a pod CREATE, for a
 * pod whose containers (name -> image) the caller gives. One builder, so tests, e2e suites and
 * benchmarks send the same shape.
 */

export interface PodReviewOptions {
  uid?: string;
  namespace?: string;
  /** The pod's name; without it, `generateName: "web-"` as a ReplicaSet's pods have. */
  name?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function podCreateReview(containers: Record<string, string>, options: PodReviewOptions = {}) {
  const namespace = options.namespace ?? "default";
  const metadata = {
    ...(options.name ? { name: options.name } : { generateName: "web-" }),
    namespace,
    ...(options.labels ? { labels: options.labels } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: options.uid ?? "00000000-0000-4000-8000-000000000001",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      requestKind: { group: "", version: "v1", kind: "Pod" },
      requestResource: { group: "", version: "v1", resource: "pods" },
      ...(options.name ? { name: options.name } : {}),
      namespace,
      operation: "CREATE",
      userInfo: { username: "system:serviceaccount:kube-system:replicaset-controller" },
      object: {
        apiVersion: "v1",
        kind: "Pod",
        metadata,
        spec: { containers: Object.entries(containers).map(([name, image]) => ({ name, image })) },
      },
      oldObject: null,
      dryRun: false,
    },
  };
}
