// Completes `npm run build` after tsc: copies the files of src/ that tsc does not emit (.mjs
// modules, such as the function workers' entry, and the dashboard's page and style sheet,
// .html and .css) into dist/, then writes the stamp that tells bin/boki.js the build is
// complete. An argument names another output directory (a build made with tsc's --outDir
// elsewhere, as the packaging test does).
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, URL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const src = join(root, "src");
const dist = process.argv[2] === undefined ? join(root, "dist") : resolve(process.argv[2]);
/** Files copied as they are. */
const COPIED = /\.(mjs|html|css)$/;

function copyModules(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) copyModules(path);
    else if (COPIED.test(e.name)) {
      const to = join(dist, relative(src, path));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(path, to);
    }
  }
}

copyModules(src);
writeFileSync(join(dist, ".built"), "");
