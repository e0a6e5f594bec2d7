/**
 * ImageShift's version, package.json's `version`: read once, beside both `src/` and the
 * production `build/`, which sit at the same depth under the package root.
 */
import { readFileSync } from "node:fs";

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** What ImageShift's Kubernetes client sends as `User-Agent`, as client-go sends `<binary>/<version>`. */
export const USER_AGENT = `imageshift/${VERSION}`;

/** The `fieldManager` of every write: managedFields and audit logs name ImageShift. */
export const FIELD_MANAGER = "imageshift";
