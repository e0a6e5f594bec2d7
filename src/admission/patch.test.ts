import assert from "node:assert/strict";
import { describe, test } from "node:test";
import jsonpatch, { type Operation } from "fast-json-patch";
import { ORIGINAL_IMAGES_ANNOTATION, type OriginalImages, readOriginalImages } from "./annotations.ts";
import { escapePointer, type PatchOperation, replaceImage, setOriginalImages } from "./patch.ts";

const RECORD: OriginalImages = {
  "containers/app": {
    original: "nginx:1.25",
    image: "mirror.local/hub/library/nginx:1.25",
    rule: "Imageshift/mirror spec.mappings.swap[0]",
  },
};

/** Applies ops the way the API server does: to a copy, every op validated. */
function apply<T>(document: T, ops: readonly PatchOperation[]): T {
  return jsonpatch.applyPatch(structuredClone(document), ops as Operation[], true).newDocument;
}

describe("escapePointer", () => {
  test("escapes ~ before / (RFC 6901)", () => {
    assert.equal(escapePointer("imageshift.dev/original-images"), "imageshift.dev~1original-images");
    assert.equal(escapePointer("a~b"), "a~0b");
    assert.equal(escapePointer("a/b~c"), "a~1b~0c");
    // "~1" written literally must not turn into "/" when read back.
    assert.equal(escapePointer("~1"), "~01");
    assert.equal(escapePointer("//~~"), "~1~1~0~0");
    assert.equal(escapePointer("plain"), "plain");
    assert.equal(escapePointer(""), "");
  });

  test("agrees with fast-json-patch and round-trips", () => {
    for (const segment of ["a/b", "~", "~1", "~0/", "x~/~y", "imageshift.dev/original-images", ""]) {
      assert.equal(escapePointer(segment), jsonpatch.escapePathComponent(segment), segment);
      assert.equal(jsonpatch.unescapePathComponent(escapePointer(segment)), segment, segment);
    }
  });

  test("an escaped key addresses exactly that member", () => {
    const doc = { m: { "a/b": 1, a: { b: 2 }, "~1": 3, "/": 4 } };
    for (const key of ["a/b", "~1", "/"] as const) {
      const ops: PatchOperation[] = [{ op: "replace", path: `/m/${escapePointer(key)}`, value: "new" }];
      const out = apply(doc, ops);
      assert.equal(out.m[key], "new", key);
      assert.deepEqual(out.m.a, { b: 2 });
    }
  });
});

describe("replaceImage", () => {
  test("a replace op at the pointer, which fast-json-patch applies", () => {
    const op = replaceImage("/spec/containers/1/image", "mirror.local/b:1");
    assert.deepEqual(op, { op: "replace", path: "/spec/containers/1/image", value: "mirror.local/b:1" });
    const pod = {
      spec: {
        containers: [
          { name: "a", image: "a:1" },
          { name: "b", image: "b:1" },
        ],
      },
    };
    assert.deepEqual(apply(pod, [op]).spec.containers, [
      { name: "a", image: "a:1" },
      { name: "b", image: "mirror.local/b:1" },
    ]);
  });

  test("works on image volume references", () => {
    const pod = { spec: { volumes: [{ name: "m", image: { reference: "m:1", pullPolicy: "Always" } }] } };
    const out = apply(pod, [replaceImage("/spec/volumes/0/image/reference", "mirror.local/m:1")]);
    assert.deepEqual(out.spec.volumes[0], {
      name: "m",
      image: { reference: "mirror.local/m:1", pullPolicy: "Always" },
    });
  });

  test("a pointer to nothing is refused in validate mode (the patch would be rejected)", () => {
    assert.throws(() => apply({ spec: { containers: [] } }, [replaceImage("/spec/containers/0/image", "x")]));
  });
});

describe("setOriginalImages", () => {
  test("pod with annotations: adds the member, keeps the others", () => {
    const pod = { metadata: { name: "p", annotations: { team: "a", "example.com/x": "y" } }, spec: {} };
    const op = setOriginalImages(pod, RECORD);
    assert.deepEqual(op, {
      op: "add",
      path: "/metadata/annotations/imageshift.dev~1original-images",
      value: JSON.stringify(RECORD),
    });
    const out = apply(pod, [op]);
    assert.deepEqual(out, {
      metadata: {
        name: "p",
        annotations: {
          team: "a",
          "example.com/x": "y",
          [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD),
        },
      },
      spec: {},
    });
    assert.deepEqual(readOriginalImages(out), RECORD);
  });

  test("pod that already has the annotation: the value is replaced", () => {
    const pod = { metadata: { annotations: { [ORIGINAL_IMAGES_ANNOTATION]: "{}", team: "a" } } };
    const out = apply(pod, [setOriginalImages(pod, RECORD)]);
    assert.deepEqual(out.metadata.annotations, {
      [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD),
      team: "a",
    });
  });

  test("pod with empty annotations: member added", () => {
    const pod = { metadata: { annotations: {} } };
    const out = apply(pod, [setOriginalImages(pod, RECORD)]);
    assert.deepEqual(out.metadata.annotations, { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) });
  });

  test("pod without metadata.annotations: the map is created, other metadata kept", () => {
    const pod = { metadata: { name: "p", labels: { app: "x" } }, spec: { containers: [] } };
    const op = setOriginalImages(pod, RECORD);
    assert.deepEqual(op, {
      op: "add",
      path: "/metadata/annotations",
      value: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) },
    });
    const out = apply(pod, [op]);
    assert.deepEqual(out, {
      metadata: {
        name: "p",
        labels: { app: "x" },
        annotations: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) },
      },
      spec: { containers: [] },
    });
  });

  test("annotations: null is treated as absent and replaced by a map", () => {
    const pod = { metadata: { name: "p", annotations: null } };
    const out = apply(pod, [setOriginalImages(pod, RECORD)]);
    assert.deepEqual(out.metadata, {
      name: "p",
      annotations: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) },
    });
  });

  test("pod without metadata: metadata is created", () => {
    const pod = { spec: { containers: [{ name: "a", image: "a" }] } };
    const op = setOriginalImages(pod, RECORD);
    assert.deepEqual(op, {
      op: "add",
      path: "/metadata",
      value: { annotations: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) } },
    });
    const out = apply(pod, [op]);
    assert.deepEqual(out, {
      spec: { containers: [{ name: "a", image: "a" }] },
      metadata: { annotations: { [ORIGINAL_IMAGES_ANNOTATION]: JSON.stringify(RECORD) } },
    });
  });

  test("image ops then the annotation op apply together", () => {
    const pod = { metadata: { name: "p" }, spec: { containers: [{ name: "app", image: "nginx:1.25" }] } };
    const ops = [
      replaceImage("/spec/containers/0/image", "mirror.local/hub/library/nginx:1.25"),
      setOriginalImages(pod, RECORD),
    ];
    const out = apply(pod, ops);
    assert.equal(out.spec.containers[0]?.image, "mirror.local/hub/library/nginx:1.25");
    assert.deepEqual(readOriginalImages(out), RECORD);
  });

  test("the value is the JSON of the record, readable back", () => {
    const record: OriginalImages = {
      ...RECORD,
      "volumes/model": { original: "ghcr.io/a/m:1", image: "mirror.local/ghcr/a/m:1", rule: "R" },
    };
    const op = setOriginalImages({ metadata: { annotations: {} } }, record);
    assert.equal(typeof op.value, "string");
    assert.deepEqual(JSON.parse(op.value as string), record);
  });
});
