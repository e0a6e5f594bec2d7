import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { crdsYaml, imageshiftCrd, registryRewriteRuleCrd } from "./crds.ts";
import type { OpenApiSchema } from "./openapi.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");
const CHECKED_IN = path.join(ROOT, "charts", "imageshift", "crds", "crds.yaml");

type Schema = { [key: string]: unknown };

interface Version {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: unknown };
  additionalPrinterColumns: { name: string; type: string; jsonPath: string }[];
  schema: { openAPIV3Schema: Schema };
}

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular: string; shortNames: string[]; listKind: string };
    versions: Version[];
  };
}

const asCrd = (value: OpenApiSchema) => value as unknown as Crd;
const versionOf = (crd: Crd): Version => {
  assert.equal(crd.spec.versions.length, 1);
  return crd.spec.versions[0]!;
};
const schemaOf = (crd: Crd) => versionOf(crd).schema.openAPIV3Schema;

/** Every schema node under `schema`, with its path (`.spec.mappings.swap[]`). */
function* nodes(schema: Schema, where = ""): Generator<[string, Schema]> {
  yield [where || ".", schema];
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Schema>))
    yield* nodes(child, `${where}.${name}`);
  if (schema.items) yield* nodes(schema.items as Schema, `${where}[]`);
  if (schema.additionalProperties && typeof schema.additionalProperties === "object")
    yield* nodes(schema.additionalProperties as Schema, `${where}{}`);
}

function at(schema: Schema, dotted: string): Schema {
  let node: Schema | undefined = schema;
  for (const name of dotted.split("."))
    node = (node?.properties as Record<string, Schema> | undefined)?.[name];
  assert.ok(node, `no schema at ${dotted}`);
  return node;
}

/**
 * A small structural validator: type, required, enum, properties (unknown fields are errors,
 * since the API server would prune them silently), additionalProperties, items, minLength,
 * minItems. An object schema with neither properties nor additionalProperties (metadata)
 * accepts anything.
 */
function validate(schema: Schema, value: unknown, where = ""): string[] {
  const here = where || ".";
  const type = schema.type as string | undefined;
  const typeOk =
    type === undefined ||
    (type === "object" && value !== null && typeof value === "object" && !Array.isArray(value)) ||
    (type === "array" && Array.isArray(value)) ||
    (type === "string" && typeof value === "string") ||
    (type === "integer" && Number.isInteger(value)) ||
    (type === "number" && typeof value === "number") ||
    (type === "boolean" && typeof value === "boolean");
  if (!typeOk) return [`${here}: want ${type}, got ${JSON.stringify(value)}`];
  const errors: string[] = [];
  if (Array.isArray(schema.enum) && !schema.enum.includes(value))
    errors.push(`${here}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (typeof value === "string" && typeof schema.minLength === "number" && value.length < schema.minLength)
    errors.push(`${here}: shorter than ${schema.minLength}`);
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems)
      errors.push(`${here}: fewer than ${schema.minItems} items`);
    if (schema.items)
      for (const [i, item] of value.entries())
        errors.push(...validate(schema.items as Schema, item, `${where}[${i}]`));
  }
  if (type === "object") {
    const object = value as Record<string, unknown>;
    for (const name of (schema.required ?? []) as string[])
      if (!(name in object)) errors.push(`${where}.${name}: required`);
    const properties = schema.properties as Record<string, Schema> | undefined;
    const additional = schema.additionalProperties as Schema | undefined;
    for (const [name, child] of Object.entries(object)) {
      const sub = properties?.[name] ?? additional;
      if (sub) errors.push(...validate(sub, child, `${where}.${name}`));
      else if (properties || additional) errors.push(`${where}.${name}: unknown field (would be pruned)`);
    }
  }
  return errors;
}

function documentsIn(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((doc) => doc.toJS() as unknown)
    .filter((value) => value !== null && value !== undefined);
}

const CRDS = [asCrd(imageshiftCrd()), asCrd(registryRewriteRuleCrd())];

function crdFor(document: { apiVersion?: string; kind?: string }): Crd | undefined {
  return CRDS.find(
    (crd) =>
      crd.spec.names.kind === document.kind &&
      `${crd.spec.group}/${versionOf(crd).name}` === document.apiVersion,
  );
}

describe("CRDs", () => {
  test("charts/imageshift/crds/crds.yaml is up to date with the schemas", () => {
    const generated = crdsYaml();
    const checkedIn = readFileSync(CHECKED_IN, "utf8");
    const a = generated.split("\n");
    const b = checkedIn.split("\n");
    const line =
      Array.from({ length: Math.max(a.length, b.length) }, (_, i) => i).find((i) => a[i] !== b[i]) ?? 0;
    assert.ok(
      generated === checkedIn,
      `charts/imageshift/crds/crds.yaml is stale (first difference at line ${line + 1}: ` +
        `generated ${JSON.stringify(a[line])}, checked in ${JSON.stringify(b[line])}); ` +
        "run `node bin/imageshift.js crds > charts/imageshift/crds/crds.yaml`",
    );
  });

  test("the YAML holds both CRDs, equal to the builders' objects, after a header comment", () => {
    const text = crdsYaml();
    assert.match(text, /^# Generated by `imageshift crds`/);
    const documents = parseAllDocuments(text).map((doc) => doc.toJS());
    assert.deepEqual(documents, [imageshiftCrd(), registryRewriteRuleCrd()]);
  });

  test("with {compat: false} the RegistryRewriteRule CRD is omitted", () => {
    const documents = parseAllDocuments(crdsYaml({ compat: false })).map((doc) => doc.toJS());
    assert.deepEqual(documents, [imageshiftCrd()]);
    assert.doesNotMatch(crdsYaml({ compat: false }), /registryrewriterules/);
    assert.equal(crdsYaml({ compat: true }), crdsYaml());
  });

  test("names, scope, short names, categories and version flags", () => {
    const [ims, rrr] = CRDS as [Crd, Crd];
    assert.equal(ims.apiVersion, "apiextensions.k8s.io/v1");
    assert.equal(ims.kind, "CustomResourceDefinition");
    assert.equal(ims.metadata.name, "imageshifts.imageshift.dev");
    assert.equal(rrr.metadata.name, "registryrewriterules.dev.flemzord.fr");
    assert.deepEqual(ims.spec.names, {
      kind: "Imageshift",
      listKind: "ImageshiftList",
      plural: "imageshifts",
      singular: "imageshift",
      shortNames: ["ims"],
      categories: ["imageshift"],
    });
    assert.deepEqual(rrr.spec.names.shortNames, ["rrr"]);
    assert.equal(rrr.spec.names.singular, "registryrewriterule");
    for (const crd of CRDS) {
      assert.equal(crd.spec.scope, "Cluster");
      const version = versionOf(crd);
      assert.equal(version.served, true);
      assert.equal(version.storage, true);
      assert.deepEqual(version.subresources, { status: {} }, "status subresource");
    }
    assert.equal(versionOf(ims).name, "v1");
    assert.equal(versionOf(rrr).name, "v1alpha1");
  });

  test("printer columns", () => {
    const [ims, rrr] = CRDS as [Crd, Crd];
    const columns = (crd: Crd) => versionOf(crd).additionalPrinterColumns;
    assert.deepEqual(
      columns(ims).map((column) => column.name),
      ["Ready", "Rules", "Mode", "Priority", "Age"],
    );
    assert.deepEqual(
      columns(rrr).map((column) => column.name),
      ["Ready", "Rules", "Age"],
    );
    const byName = Object.fromEntries(columns(ims).map((column) => [column.name, column]));
    assert.deepEqual(byName.Ready, {
      name: "Ready",
      type: "string",
      jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    });
    assert.deepEqual(byName.Rules, { name: "Rules", type: "integer", jsonPath: ".status.rules" });
    assert.deepEqual(byName.Mode, { name: "Mode", type: "string", jsonPath: ".spec.mode" });
    assert.deepEqual(byName.Age, { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" });
  });

  test("schemas are structural: a type on every node, no anyOf, patternProperties or const", () => {
    for (const crd of CRDS) {
      for (const [where, node] of nodes(schemaOf(crd))) {
        assert.equal(typeof node.type, "string", `${crd.metadata.name} ${where} has a type`);
        for (const keyword of ["anyOf", "oneOf", "allOf", "not", "patternProperties", "const", "$id"])
          assert.equal(keyword in node, false, `${crd.metadata.name} ${where} has no ${keyword}`);
        for (const name of (node.required ?? []) as string[])
          assert.ok(
            (node.properties as Record<string, unknown> | undefined)?.[name],
            `${where}: required ${name} is a property`,
          );
        if (Array.isArray(node.enum))
          for (const value of node.enum)
            assert.deepEqual(validate({ type: node.type }, value), [], `${where}: enum value ${value}`);
        if ("default" in node)
          assert.deepEqual(validate(node, node.default), [], `${where}: default valid against its schema`);
      }
      // Anything left over after conversion would show up as a keyword in the YAML.
      const text = JSON.stringify(crd);
      for (const word of ['"anyOf"', '"patternProperties"', '"const"'])
        assert.equal(text.includes(word), false, `${word} left in ${crd.metadata.name}`);
    }
  });

  test("top level: spec required, status from the status schema with Ready conditions as a map list", () => {
    for (const crd of CRDS) {
      const schema = schemaOf(crd);
      assert.equal(schema.type, "object");
      assert.deepEqual(schema.required, ["spec"]);
      assert.deepEqual(at(schema, "metadata"), { type: "object" });
      const conditions = at(schema, "status.conditions");
      assert.equal(conditions.type, "array");
      assert.equal(conditions["x-kubernetes-list-type"], "map");
      assert.deepEqual(conditions["x-kubernetes-list-map-keys"], ["type"]);
      const condition = conditions.items as Schema;
      assert.deepEqual(at(condition, "status").enum, ["True", "False", "Unknown"]);
      assert.deepEqual(condition.required, ["type", "status"]);
      assert.equal(at(schema, "status.observedGeneration").type, "integer");
      assert.equal(at(schema, "status.rules").type, "integer");
    }
  });

  test("defaults for spec.default, spec.priority and spec.mode, and the CEL rule on mappings", () => {
    const schema = schemaOf(CRDS[0]!);
    assert.equal(at(schema, "spec.default").default, "docker.io");
    assert.equal(at(schema, "spec.priority").default, 0);
    assert.equal(at(schema, "spec.priority").type, "integer");
    assert.equal(at(schema, "spec.mode").default, "Enforce");
    assert.deepEqual(at(schema, "spec.mode").enum, ["Enforce", "Audit"]);
    assert.deepEqual(at(schema, "spec").required, ["mappings"]);
    const mappings = at(schema, "spec.mappings");
    const [rule] = mappings["x-kubernetes-validations"] as { rule: string; message: string }[];
    assert.match(rule?.rule ?? "", /size\(self\.swap\)/);
    assert.match(rule?.message ?? "", /no rules/);
    const labels = at(schema, "spec.namespaceSelector.matchLabels");
    assert.deepEqual(labels.additionalProperties, { type: "string" });
    const operator = (at(schema, "spec.namespaceSelector.matchExpressions").items as Schema)
      .properties as Record<string, Schema>;
    assert.deepEqual(operator.operator?.enum, ["In", "NotIn", "Exists", "DoesNotExist"]);
    const compat = schemaOf(CRDS[1]!);
    assert.equal(at(compat, "spec.rules").minItems, 1);
    assert.deepEqual(
      ((at(compat, "spec.rules").items as Schema).properties as Record<string, Schema>).conditions
        ?.properties,
      {
        namespaces: {
          type: "array",
          description: "Only pods in these namespaces.",
          items: { type: "string" },
        },
        labels: {
          type: "object",
          description: "Only pods with all these labels.",
          additionalProperties: { type: "string" },
        },
      },
    );
  });

  test("every example and seed object validates against its CRD's schema", () => {
    const files = [
      ...readdirSync(path.join(ROOT, "examples")).map((name) => path.join(ROOT, "examples", name)),
      ...readdirSync(path.join(ROOT, "test", "fixtures", "seeds"))
        .filter((name) => name.endsWith(".yaml"))
        .map((name) => path.join(ROOT, "test", "fixtures", "seeds", name)),
    ].filter((file) => /\.ya?ml$/.test(file));
    let checked = 0;
    for (const file of files) {
      for (const [index, document] of documentsIn(file).entries()) {
        const crd = crdFor(document as { apiVersion?: string; kind?: string });
        assert.ok(crd, `${file}#${index}: a kind one of the CRDs defines`);
        assert.deepEqual(validate(schemaOf(crd), document), [], `${file}#${index}`);
        checked++;
      }
    }
    assert.ok(checked >= 8, `checked ${checked} objects`);
  });

  test("the checker itself rejects what the API server would reject", () => {
    const schema = schemaOf(CRDS[0]!);
    const good = parse(`
apiVersion: imageshift.dev/v1
kind: Imageshift
metadata: { name: a, anything: [1] }
spec:
  mappings: { swap: [{ registry: docker.io, target: mirror.corp }] }
`);
    assert.deepEqual(validate(schema, good), []);
    const bad = structuredClone(good);
    bad.spec.mode = "Sometimes";
    bad.spec.priority = 1.5;
    bad.spec.mappings.swap[0].target = "";
    bad.spec.extra = true;
    delete bad.spec.mappings.swap[0].registry;
    assert.deepEqual(
      validate(schema, bad).sort(),
      [
        ".spec.mappings.swap[0].registry: required",
        ".spec.mappings.swap[0].target: shorter than 1",
        ".spec.extra: unknown field (would be pruned)",
        '.spec.mode: "Sometimes" not in ["Enforce","Audit"]',
        ".spec.priority: want integer, got 1.5",
      ].sort(),
    );
    assert.deepEqual(validate(schema, { apiVersion: "imageshift.dev/v1", kind: "Imageshift" }), [
      ".spec: required",
    ]);
    assert.deepEqual(validate(schemaOf(CRDS[1]!), { spec: { rules: [] } }), [
      ".spec.rules: fewer than 1 items",
    ]);
  });
});

/**
 * Switching from the Mutating Registry Webhook (docs/migrating-from-mrw.md): ImageShift's
 * RegistryRewriteRule CRD replaces MRW's over objects that already exist, so it must accept
 * every field, type, default and version MRW's does, or the API server would prune or refuse
 * what MRW's users stored. The fixture is MRW's CRD as controller-gen generates it.
 */
describe("the RegistryRewriteRule CRD against the Mutating Registry Webhook's", () => {
  const [mrw] = documentsIn(path.join(ROOT, "test", "fixtures", "mrw", "crd.yaml")) as Crd[];
  const ours = CRDS[1]!;

  /** The schema node at a path `nodes()` yields, in another schema. */
  function nodeAt(schema: Schema, where: string): Schema | undefined {
    let node: Schema | undefined = schema;
    for (const step of where.match(/\.[^.[{]+|\[\]|\{\}/g) ?? []) {
      if (step === "[]") node = node?.items as Schema | undefined;
      else if (step === "{}") node = node?.additionalProperties as Schema | undefined;
      else node = (node?.properties as Record<string, Schema> | undefined)?.[step.slice(1)];
    }
    return node;
  }

  /** The constraints `ours` adds to `theirs` at one node. */
  function stricter(theirs: Schema, ours: Schema, where: string): string[] {
    const found: string[] = [];
    const theirRequired = (theirs.required ?? []) as string[];
    for (const name of (ours.required ?? []) as string[])
      if (!theirRequired.includes(name)) found.push(`${where}.${name}: required`);
    for (const keyword of ["minLength", "minItems", "minimum"])
      if (typeof ours[keyword] === "number" && (ours[keyword] as number) > ((theirs[keyword] as number) ?? 0))
        found.push(`${where}: ${keyword} ${ours[keyword]}`);
    for (const keyword of ["maxLength", "maxItems", "maximum", "pattern", "enum", "x-kubernetes-validations"])
      if (keyword in ours && JSON.stringify(ours[keyword]) !== JSON.stringify(theirs[keyword]))
        found.push(`${where}: ${keyword}`);
    return found;
  }

  test("the fixture is MRW's CRD: one version, v1alpha1, with its status fields", () => {
    assert.ok(mrw);
    assert.equal(mrw.metadata.name, ours.metadata.name);
    assert.deepEqual(Object.keys((at(schemaOf(mrw), "status").properties ?? {}) as object).sort(), [
      "lastUpdateTime",
      "observedGeneration",
      "ready",
      "ruleCount",
    ]);
  });

  test("same group, scope, names and versions (served, storage, status subresource)", () => {
    assert.ok(mrw);
    assert.equal(ours.spec.group, mrw.spec.group);
    assert.equal(ours.spec.scope, mrw.spec.scope);
    for (const key of ["kind", "listKind", "plural", "singular"] as const)
      assert.equal(ours.spec.names[key], mrw.spec.names[key], key);
    for (const shortName of mrw.spec.names.shortNames)
      assert.ok(ours.spec.names.shortNames.includes(shortName));
    for (const theirs of mrw.spec.versions) {
      const version = ours.spec.versions.find((candidate) => candidate.name === theirs.name);
      assert.ok(version, `version ${theirs.name}`);
      assert.equal(version.served, theirs.served);
      assert.equal(version.storage, theirs.storage);
      assert.deepEqual(version.subresources, theirs.subresources);
    }
  });

  test("every field of MRW's schema is in ours, with the same type, string format and default", () => {
    assert.ok(mrw);
    const schema = schemaOf(ours);
    for (const [where, theirs] of nodes(schemaOf(mrw))) {
      const node = nodeAt(schema, where === "." ? "" : where);
      assert.ok(node, `${where}: missing (the API server would prune it)`);
      assert.equal(node.type, theirs.type, `${where}: type`);
      if (theirs.type === "string") assert.equal(node.format, theirs.format, `${where}: format`);
      assert.deepEqual(node.default, theirs.default, `${where}: default`);
    }
  });

  test("ours is no stricter than MRW's, but for the rule constraints ImageShift's validation enforces", () => {
    assert.ok(mrw);
    const schema = schemaOf(ours);
    const found = [...nodes(schemaOf(mrw))].flatMap(([where, theirs]) => {
      const node = nodeAt(schema, where === "." ? "" : where);
      return node ? stricter(theirs, node, where === "." ? "" : where) : [];
    });
    // An empty pattern or replacement, or an object without a spec, is refused by ImageShift's
    // validation too; objects MRW stored that way survive the switch (docs/migrating-from-mrw.md).
    assert.deepEqual(found.sort(), [
      ".spec.rules[].match: minLength 1",
      ".spec.rules[].replace: minLength 1",
      ".spec: required",
    ]);
  });

  test("an object as MRW stored it, status included, validates with nothing pruned", () => {
    const object = parse(`
apiVersion: dev.flemzord.fr/v1alpha1
kind: RegistryRewriteRule
metadata: { name: hub, generation: 3 }
spec:
  rules:
    - match: '^docker\\.io/(.*)'
      replace: 'mirror.corp/hub/$1'
      priority: 0
      conditions: { namespaces: [apps], labels: { team: a } }
status:
  observedGeneration: 3
  ready: true
  ruleCount: 1
  lastUpdateTime: "2025-06-01T10:00:00Z"
`);
    assert.deepEqual(validate(schemaOf(ours), object), []);
    assert.deepEqual(validate(schemaOf(mrw!), object), [], "and against MRW's own");
  });

  test("MRW's status fields are on RegistryRewriteRule only, not on Imageshift", () => {
    for (const field of ["ready", "ruleCount", "lastUpdateTime"]) {
      assert.ok(at(schemaOf(ours), `status.${field}`));
      assert.equal(
        ((at(schemaOf(CRDS[0]!), "status").properties ?? {}) as Record<string, unknown>)[field],
        undefined,
      );
    }
  });
});
