#!/usr/bin/env node
// The `imageshift` command. ImageShift runs its TypeScript sources directly on Node.js
// >= 22.19 (type stripping; see docs/adr/0001-run-typescript-without-a-build.md).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(
    `imageshift needs Node.js >= 22.19, this is ${process.version}. ` +
      "Run it through npm (`npm start`, `npx imageshift`), which uses the Node 24 that `npm install` brings.\n",
  );
  process.exit(2);
}
await import("../src/main.ts");
