// Links the example applications (examples/apps/<app>/, each a project of its own that
// depends on boki-ts) to this checkout, as `npm install` of their `file:../../..` dependency
// would: examples/apps/<app>/node_modules/boki-ts → the checkout's root, and
// node_modules/.bin/boki → its CLI (so `npm start` in an app finds `boki`). Their other
// dependencies resolve from the checkout's node_modules. Runs from "prepare" (npm install and
// npm ci in a checkout) and before the tests and benchmarks; idempotent.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const APPS = join(ROOT, "examples", "apps");

export function linkExamples() {
  if (!existsSync(APPS)) return [];
  const linked = [];
  for (const app of readdirSync(APPS, { withFileTypes: true })) {
    if (!app.isDirectory() || !existsSync(join(APPS, app.name, "package.json"))) continue;
    const modules = join(APPS, app.name, "node_modules");
    const link = join(modules, "boki-ts");
    const target = relative(modules, ROOT);
    mkdirSync(modules, { recursive: true });
    let current;
    try {
      current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : "(not a link)";
    } catch {
      current = undefined;
    }
    if (current !== target) {
      if (current !== undefined) rmSync(link, { recursive: true, force: true });
      symlinkSync(target, link, "dir");
      linked.push(app.name);
    }
    linkBin(modules);
  }
  return linked;
}

/** node_modules/.bin/boki → ../boki-ts/bin/boki.js, as npm links a dependency's bin. */
function linkBin(modules) {
  const bin = join(modules, ".bin");
  const link = join(bin, "boki");
  const target = join("..", "boki-ts", "bin", "boki.js");
  mkdirSync(bin, { recursive: true });
  let current;
  try {
    current = readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current === target) return;
  rmSync(link, { force: true });
  symlinkSync(target, link, "file");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) linkExamples();
