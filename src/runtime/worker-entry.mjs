// Entry of a function worker thread. Module hooks do not carry over into worker threads,
// so tsx is registered here (ESM and CommonJS, as users' .ts files may be either) before
// the worker's TypeScript code and the users' modules are imported.
import { register as registerEsm } from "tsx/esm/api";
import { register as registerCjs } from "tsx/cjs/api";

registerEsm();
registerCjs();
globalThis[Symbol.for("boki-ts.tsx-registered")] = true;
await import("./worker-main.ts");
