import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Type } from "@sinclair/typebox";
import { toOpenApi } from "./openapi.ts";

describe("toOpenApi", () => {
  test("const becomes a one-value enum with the literal's type", () => {
    assert.deepEqual(toOpenApi(Type.Literal("imageshift.dev/v1")), {
      type: "string",
      enum: ["imageshift.dev/v1"],
    });
    assert.deepEqual(toOpenApi(Type.Literal(true)), { type: "boolean", enum: [true] });
    assert.deepEqual(toOpenApi(Type.Literal(3)), { type: "number", enum: [3] });
  });

  test("const without a type takes the type of the value", () => {
    assert.deepEqual(toOpenApi({ const: "x" }), { type: "string", enum: ["x"] });
    assert.deepEqual(toOpenApi({ const: 7 }), { type: "number", enum: [7] });
  });

  test("a union of string literals becomes a string enum, keeping description and default", () => {
    const schema = Type.Union([Type.Literal("Enforce"), Type.Literal("Audit")], {
      default: "Enforce",
      description: "Mode.",
    });
    assert.deepEqual(toOpenApi(schema), {
      type: "string",
      enum: ["Enforce", "Audit"],
      default: "Enforce",
      description: "Mode.",
    });
  });

  test("a union of number literals becomes an enum of the literals' own type", () => {
    const out = toOpenApi(Type.Union([Type.Literal(1), Type.Literal(2)]));
    assert.deepEqual(out.enum, [1, 2]);
    assert.equal(out.type, "number");
    assert.deepEqual(toOpenApi(Type.Union([Type.Literal(true), Type.Literal(false)])), {
      type: "boolean",
      enum: [true, false],
    });
  });

  test("a union that is not all literals is dropped, not passed on as anyOf", () => {
    const out = toOpenApi(Type.Union([Type.String(), Type.Integer()], { description: "d" }));
    assert.equal("anyOf" in out, false);
    assert.equal("enum" in out, false);
    assert.equal(out.description, "d");
  });

  test("Record becomes additionalProperties with the value schema converted", () => {
    const out = toOpenApi(Type.Record(Type.String(), Type.String(), { description: "Labels." }));
    assert.deepEqual(out, {
      type: "object",
      description: "Labels.",
      additionalProperties: { type: "string" },
    });
    const nested = toOpenApi(Type.Record(Type.String(), Type.Union([Type.Literal("a"), Type.Literal("b")])));
    assert.deepEqual(nested.additionalProperties, { type: "string", enum: ["a", "b"] });
  });

  test("keywords outside the structural subset are dropped, kept ones are copied", () => {
    const out = toOpenApi(
      Type.Object(
        { name: Type.String({ minLength: 1, maxLength: 63, pattern: "^[a-z]+$", format: "hostname" }) },
        { $id: "Thing", additionalProperties: false, title: "A thing", examples: [{ name: "a" }] },
      ),
    );
    assert.deepEqual(out, {
      type: "object",
      required: ["name"],
      properties: {
        name: { type: "string", minLength: 1, maxLength: 63, pattern: "^[a-z]+$", format: "hostname" },
      },
    });
    const numbers = toOpenApi(Type.Integer({ minimum: 0, maximum: 10, default: 1, $comment: "c" }));
    assert.deepEqual(numbers, { type: "integer", minimum: 0, maximum: 10, default: 1 });
    const list = toOpenApi(Type.Array(Type.String(), { minItems: 1, maxItems: 5, uniqueItems: true }));
    assert.deepEqual(list, { type: "array", minItems: 1, maxItems: 5, items: { type: "string" } });
  });

  test("an empty required list is dropped; optional properties are not required", () => {
    const out = toOpenApi(Type.Object({ a: Type.Optional(Type.String()) }));
    assert.equal("required" in out, false);
    assert.deepEqual(out.properties, { a: { type: "string" } });
    assert.deepEqual(toOpenApi({ type: "object", required: [] }), { type: "object" });
  });

  test("nested arrays and objects are converted all the way down", () => {
    const schema = Type.Object({
      outer: Type.Array(
        Type.Object({
          inner: Type.Array(Type.Array(Type.Literal("x"))),
          kind: Type.Union([Type.Literal("A"), Type.Literal("B")]),
          tags: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()))),
        }),
      ),
    });
    assert.deepEqual(toOpenApi(schema), {
      type: "object",
      required: ["outer"],
      properties: {
        outer: {
          type: "array",
          items: {
            type: "object",
            required: ["inner", "kind"],
            properties: {
              inner: { type: "array", items: { type: "array", items: { type: "string", enum: ["x"] } } },
              kind: { type: "string", enum: ["A", "B"] },
              tags: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } },
            },
          },
        },
      },
    });
  });

  test("x-kubernetes-validations is kept as is", () => {
    const validations = [{ rule: "size(self.a) > 0", message: "a must not be empty" }];
    const out = toOpenApi(
      Type.Object({ inner: Type.Object({ a: Type.String() }, { "x-kubernetes-validations": validations }) }),
    );
    const inner = (out.properties as Record<string, Record<string, unknown>>).inner;
    assert.deepEqual(inner?.["x-kubernetes-validations"], validations);
  });

  test("does not modify its input", () => {
    const schema = Type.Object({ m: Type.Union([Type.Literal("a"), Type.Literal("b")]) });
    const before = JSON.stringify(schema);
    toOpenApi(schema);
    assert.equal(JSON.stringify(schema), before);
  });
});
