import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import jsonpatch from "fast-json-patch";
import { podImageFields } from "./images.ts";

const FIXTURES = new URL("../../test/fixtures/admission/", import.meta.url);

function fixtureObject(name: string): unknown {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8")).request.object;
}

describe("podImageFields", () => {
  test("every image field of a recorded pod, in spec order, with stable keys and JSON pointers", () => {
    const pod = fixtureObject("pod-create-all-image-fields.json");
    const fields = podImageFields(pod);
    assert.deepEqual(
      fields.map(({ key, kind, name, pointer, image }) => ({ key, kind, name, pointer, image })),
      [
        {
          key: "initContainers/fetch-config",
          kind: "initContainers",
          name: "fetch-config",
          pointer: "/spec/initContainers/0/image",
          image: "busybox:1.36",
        },
        {
          key: "initContainers/git-sync",
          kind: "initContainers",
          name: "git-sync",
          pointer: "/spec/initContainers/1/image",
          image: "registry.k8s.io/git-sync/git-sync:v4.2.4",
        },
        {
          key: "containers/server",
          kind: "containers",
          name: "server",
          pointer: "/spec/containers/0/image",
          image: "ghcr.io/acme/inference-server:2.3.0",
        },
        {
          key: "containers/metrics",
          kind: "containers",
          name: "metrics",
          pointer: "/spec/containers/1/image",
          image: "quay.io/prometheus/statsd-exporter:v0.26.1",
        },
        {
          key: "containers/log-shipper",
          kind: "containers",
          name: "log-shipper",
          pointer: "/spec/containers/2/image",
          image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/log-shipper:1.4",
        },
        {
          key: "ephemeralContainers/debugger-x7k2p",
          kind: "ephemeralContainers",
          name: "debugger-x7k2p",
          pointer: "/spec/ephemeralContainers/0/image",
          image: "busybox:1.36",
        },
        {
          // volumes[0] is a configMap volume: skipped, but indexes stay those of the list.
          key: "volumes/model",
          kind: "volumes",
          name: "model",
          pointer: "/spec/volumes/1/image/reference",
          image: "ghcr.io/acme/models/llama:v3",
        },
        {
          key: "volumes/tokenizer",
          kind: "volumes",
          name: "tokenizer",
          pointer: "/spec/volumes/2/image/reference",
          image: "docker.io/acme/tokenizer-data:2024.10",
        },
      ],
    );
  });

  test("every pointer resolves, in the pod, to the image it reports", () => {
    for (const name of [
      "pod-create.json",
      "pod-create-all-image-fields.json",
      "pod-update-set-image.json",
      "pod-ephemeralcontainers-debug.json",
      "pod-create-reinvoked-injected-sidecar.json",
    ]) {
      const pod = fixtureObject(name);
      const fields = podImageFields(pod);
      assert.ok(fields.length > 0, name);
      for (const field of fields) {
        assert.equal(
          jsonpatch.getValueByPointer(pod, field.pointer),
          field.image,
          `${name} ${field.pointer}`,
        );
      }
    }
  });

  test("the pointers of the brief: /spec/containers/1/image and /spec/volumes/0/image/reference", () => {
    const fields = podImageFields({
      spec: {
        containers: [
          { name: "a", image: "a:1" },
          { name: "b", image: "b:1" },
        ],
        volumes: [{ name: "data", image: { reference: "registry.local/data:1" } }],
      },
    });
    assert.deepEqual(
      fields.map((field) => [field.key, field.pointer]),
      [
        ["containers/a", "/spec/containers/0/image"],
        ["containers/b", "/spec/containers/1/image"],
        ["volumes/data", "/spec/volumes/0/image/reference"],
      ],
    );
  });

  test("unnamed containers and volumes are keyed by their index", () => {
    const fields = podImageFields({
      spec: {
        containers: [{ name: "named", image: "a:1" }, { image: "b:1" }, { name: 7, image: "c:1" }],
        volumes: [{ image: { reference: "d:1" } }],
      },
    });
    assert.deepEqual(
      fields.map((field) => [field.key, field.name, field.pointer]),
      [
        ["containers/named", "named", "/spec/containers/0/image"],
        ["containers/1", "1", "/spec/containers/1/image"],
        ["containers/2", "2", "/spec/containers/2/image"],
        ["volumes/0", "0", "/spec/volumes/0/image/reference"],
      ],
    );
  });

  test("odd shapes never throw and yield only real image strings", () => {
    const odd: unknown[] = [
      undefined,
      null,
      0,
      "pod",
      true,
      [],
      [{ spec: { containers: [{ image: "x" }] } }],
      {},
      { metadata: {} },
      { spec: null },
      { spec: "spec" },
      { spec: [] },
      { spec: {} },
      { spec: { containers: null } },
      { spec: { containers: "nginx" } },
      { spec: { containers: { app: { image: "nginx" } } } },
      { spec: { containers: [null, 1, "nginx", [], {}] } },
      { spec: { containers: [{ name: "app" }] } },
      { spec: { containers: [{ name: "app", image: "" }] } },
      { spec: { containers: [{ name: "app", image: 42 }] } },
      { spec: { containers: [{ name: "app", image: null }] } },
      { spec: { containers: [{ name: "app", image: { reference: "nginx" } }] } },
      { spec: { initContainers: {}, ephemeralContainers: 3 } },
      { spec: { volumes: "data" } },
      { spec: { volumes: [null, 1, {}, { name: "cm", configMap: { name: "x" } }] } },
      { spec: { volumes: [{ name: "v", image: null }] } },
      { spec: { volumes: [{ name: "v", image: "nginx" }] } },
      { spec: { volumes: [{ name: "v", image: {} }] } },
      { spec: { volumes: [{ name: "v", image: { reference: "" } }] } },
      { spec: { volumes: [{ name: "v", image: { reference: 5 } }] } },
    ];
    for (const pod of odd) {
      assert.deepEqual(podImageFields(pod), [], JSON.stringify(pod));
    }
  });

  test("valid entries survive next to broken ones", () => {
    const fields = podImageFields({
      spec: {
        containers: [null, { name: "no-image" }, { name: "app", image: "nginx:1.25" }],
        volumes: [
          { name: "broken", image: {} },
          { name: "ok", image: { reference: "busybox" } },
        ],
      },
    });
    assert.deepEqual(
      fields.map((field) => [field.key, field.pointer, field.image]),
      [
        ["containers/app", "/spec/containers/2/image", "nginx:1.25"],
        ["volumes/ok", "/spec/volumes/1/image/reference", "busybox"],
      ],
    );
  });

  test("a container and an init container of the same name get different keys", () => {
    const fields = podImageFields({
      spec: {
        initContainers: [{ name: "app", image: "a:1" }],
        containers: [{ name: "app", image: "a:1" }],
        ephemeralContainers: [{ name: "app", image: "a:1" }],
      },
    });
    assert.deepEqual(
      fields.map((field) => field.key),
      ["initContainers/app", "containers/app", "ephemeralContainers/app"],
    );
  });
});
