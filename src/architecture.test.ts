// The folders of src/ and what each may import (docs/architecture.md): only downward, so the
// Kubernetes client library never depends on the app, and the engine on neither.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { test } from "node:test";

const SRC = import.meta.dirname;

/** Folder (or root file) -> what it may import besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  "errors.ts": [],
  "testing.ts": [],
  "version.ts": [],
  platform: [],
  telemetry: ["errors.ts"],
  api: ["errors.ts"],
  engine: ["errors.ts", "telemetry", "platform", "api"],
  k8s: ["errors.ts", "version.ts", "telemetry", "platform"],
  manager: ["errors.ts", "telemetry"],
  registry: ["errors.ts", "version.ts", "telemetry", "platform"],
  admission: ["errors.ts", "telemetry", "api", "engine", "registry"],
  certs: ["errors.ts", "telemetry", "platform", "k8s"],
  operator: ["errors.ts", "telemetry", "platform", "api", "engine", "k8s", "registry", "certs", "manager"],
  webhook: ["errors.ts", "telemetry", "platform", "engine", "admission", "certs", "manager"],
  cli: [
    "errors.ts",
    "telemetry",
    "api",
    "engine",
    "admission",
    "certs",
    "operator",
    "webhook",
    "registry",
    "manager",
  ],
  "main.ts": ["cli"],
};

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") && entry.name !== "testing.ts"
      ? [path]
      : [];
  });
}

/** `engine` for src/engine/rules/x.ts, `errors.ts` for src/errors.ts. */
function layerOf(path: string): string {
  return relative(SRC, path).split("/")[0] as string;
}

test("every folder of src/ imports only the folders below it", () => {
  const violations: string[] = [];
  for (const file of sources(SRC)) {
    const from = layerOf(file);
    assert.ok(from in ALLOWED, `${relative(SRC, file)}: ${from} has no place in docs/architecture.md`);
    for (const match of readFileSync(file, "utf8").matchAll(/from\s+"(\.{1,2}\/[^"]+)"/g)) {
      const to = layerOf(normalize(join(dirname(file), match[1] as string)));
      if (to !== from && !ALLOWED[from]?.includes(to))
        violations.push(`${relative(SRC, file)} imports ${to}`);
    }
  }
  assert.deepEqual(violations, []);
});
