#!/usr/bin/env node
// Runs the CLI from dist/ (built by `npm run build`, which `npm install` runs in a checkout)
// when that build is newer than every source file, or when there are no sources (an installed
// package); otherwise from src/ through tsx, so that a changed source tree never runs stale
// code. Users' TypeScript function modules load through tsx either way (the function loader
// registers it).
import { existsSync, readdirSync, statSync } from "node:fs";
import { register } from "node:module";
import process from "node:process";
import { fileURLToPath, URL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function newestMtimeMs(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${e.name}`;
    const t = e.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs;
    if (t > newest) newest = t;
  }
  return newest;
}

function fromBuild() {
  if (!existsSync(`${root}src`)) return true;
  const stamp = `${root}dist/.built`;
  if (process.env.BOKI_FROM_SOURCE === "1" || !existsSync(stamp)) return false;
  return statSync(stamp).mtimeMs >= newestMtimeMs(`${root}src`);
}

if (fromBuild()) {
  await import("../dist/cli/main.js");
} else {
  const { register: registerTsx } = await import("tsx/esm/api");
  registerTsx();
  // Imports of boki-ts by function modules resolve to these sources as well.
  register(new URL("../src/runtime/source-conditions.mjs", import.meta.url));
  await import("../src/cli/main.ts");
}
