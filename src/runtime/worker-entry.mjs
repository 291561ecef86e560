// Entry of a function worker thread. Module hooks do not carry over into worker threads,
// so tsx is registered here (ESM and CommonJS, as users' .ts files may be either) before
// the worker's TypeScript code and the users' modules are imported.
import { register as registerEsm } from "tsx/esm/api";
import { register as registerCjs } from "tsx/cjs/api";

registerEsm();
registerCjs();
globalThis[Symbol.for("boki-ts.tsx-registered")] = true;
// From a build (dist/) the worker's code is compiled JavaScript; from the sources it is
// TypeScript, loaded through tsx, and users' imports of boki-ts resolve to the sources too
// (source-conditions.mjs).
import { existsSync } from "node:fs";
import { register } from "node:module";
import { URL } from "node:url";
const compiled = new URL("./worker-main.js", import.meta.url);
const fromBuild = existsSync(compiled);
if (!fromBuild) register(new URL("./source-conditions.mjs", import.meta.url));
await import(fromBuild ? compiled.href : "./worker-main.ts");
