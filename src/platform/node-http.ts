/**
 * `node:http`, loaded with `require` rather than `import`.
 *
 * Importing a built-in as an ES module builds its namespace from every export, and reading
 * `http.WebSocket` (a lazy getter) loads Node's whole fetch and WebSocket stack (undici). That
 * costs about 8 MB of resident memory in a server that uses neither (docs/performance.md, "Idle
 * memory"). The linter refuses `node:http` anywhere else in production code (biome.json), so
 * its types are re-exported here too (`export type` is erased: nothing is loaded for them).
 */
import { createRequire } from "node:module";

export type { Agent, IncomingMessage, Server, ServerResponse } from "node:http";

export const http: typeof import("node:http") = createRequire(import.meta.url)("node:http");
