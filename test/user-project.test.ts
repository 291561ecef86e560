/**
 * Boki.ts as a dependency of a user's own project, the way it is used: the package is built
 * and packed (`npm pack`), `boki init` writes a new project depending on the tarball, `npm
 * install` installs it for real (no path imports), and the project's function runs through
 * the installed `boki dev` over HTTP and through the project's own `npm test`.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { call } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Building, packing and a real `npm install` of the project's dependencies take a while. */
const SETUP_TIMEOUT_MS = 300_000;
const STEP_TIMEOUT_MS = 180_000;

const tmp = tempDir("boki-user-project-");
let tarball = "";
let packed: string[] = [];
const app = join(tmp.dir, "app");
const installedBin = join(app, "node_modules", "boki-ts", "bin", "boki.js");

async function sh(cmd: string, args: readonly string[], cwd: string): Promise<string> {
  try {
    const r = await run(cmd, args, { cwd, timeout: STEP_TIMEOUT_MS, maxBuffer: 32 * 2 ** 20 });
    return r.stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
  }
}

beforeAll(async () => {
  // The package is built from the current sources into a staging copy, so that the
  // checkout's own dist/ (which other tests' processes may be running) is left alone.
  const stage = join(tmp.dir, "stage");
  mkdirSync(stage);
  for (const f of ["package.json", "README.md", "bin", "docs", "config"]) {
    cpSync(join(ROOT, f), join(stage, f), { recursive: true });
  }
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  await sh(
    process.execPath,
    [tsc, "-p", "tsconfig.build.json", "--outDir", join(stage, "dist")],
    ROOT,
  );
  await sh(
    process.execPath,
    [join(ROOT, "scripts", "finish-build.mjs"), join(stage, "dist")],
    ROOT,
  );
  const out = await sh(
    "npm",
    ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp.dir],
    stage,
  );
  const info = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(tmp.dir, info[0]!.filename);
  packed = info[0]!.files.map((f) => f.path);

  // As a user starts: an empty npm project, boki-ts installed into it, then the installed
  // CLI's `boki init .` fills in the rest, and `npm install` brings the dev dependencies.
  mkdirSync(app);
  const install = ["install", "--prefer-offline", "--no-audit", "--no-fund"];
  await sh("npm", ["init", "-y"], app);
  await sh("npm", [...install, tarball], app);
  await sh(process.execPath, [installedBin, "init", "."], app);
  await sh("npm", install, app);
}, SETUP_TIMEOUT_MS);

afterAll(() => tmp.remove());

describe("the packed package", () => {
  test("holds the build with its type declarations, the CLI and the docs, and no tests or benchmarks", () => {
    for (const f of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/client/index.d.ts",
      "dist/testing/index.d.ts",
      "dist/flow/index.d.ts",
      "dist/store/index.d.ts",
      "dist/objects/index.d.ts",
      "dist/queue/index.d.ts",
      "dist/.built",
      "bin/boki.js",
      "README.md",
      "docs/runtime.md",
    ]) {
      expect(packed).toContain(f);
    }
    expect(packed.filter((f) => /^(test|bench|src|examples|scripts)\//.test(f))).toEqual([]);
    expect(packed.filter((f) => f.endsWith(".map"))).toEqual([]);
  });

  test("declares an export, with types, for the main entry and each subpath", () => {
    const pkg = JSON.parse(
      readFileSync(join(app, "node_modules", "boki-ts", "package.json"), "utf8"),
    ) as {
      exports: Record<string, { types?: string; default?: string } | string>;
    };
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") continue;
      const d = target.default!;
      const built = existsSync(join(app, "node_modules", "boki-ts", d));
      // Subpaths of libraries not in this build are declared ahead; every built one resolves.
      if (built)
        expect(existsSync(join(app, "node_modules", "boki-ts", target.types!)), subpath).toBe(true);
    }
    expect(existsSync(join(app, "node_modules", "boki-ts", "dist", "index.js"))).toBe(true);
  });
});

describe("a project made by boki init, installed from the tarball", () => {
  test("has the files init writes and depends on the tarball", () => {
    expect(readdirSync(app).sort()).toEqual(
      expect.arrayContaining([
        ".gitignore",
        "README.md",
        "functions",
        "package.json",
        "test",
        "tsconfig.json",
      ]),
    );
    const pkg = JSON.parse(readFileSync(join(app, "package.json"), "utf8")) as {
      type: string;
      dependencies: Record<string, string>;
    };
    expect(pkg.type).toBe("module");
    expect(pkg.dependencies["boki-ts"]).toMatch(/^file:.*boki-ts-[0-9.]+\.tgz$/);
    // A real install: a copy of the package, not a link to this checkout.
    expect(existsSync(join(app, "node_modules", "boki-ts", "src"))).toBe(false);
  });

  test(
    "serves its function through the installed boki dev over HTTP",
    async () => {
      let dev: DevProcess | undefined;
      try {
        dev = await startDevProcess(["--functions", "functions", "--data", join(tmp.dir, "data")], {
          bin: installedBin,
          cwd: app,
        });
        const first = await call(dev.url, "hello", { name: "Ada" });
        expect([first.status, first.json]).toEqual([200, { greeting: "Hello, Ada!", count: 1 }]);
        const second = await call(dev.url, "hello", { name: "Ada" });
        expect([second.status, second.json]).toEqual([200, { greeting: "Hello, Ada!", count: 2 }]);
      } finally {
        await dev?.stop();
      }
    },
    STEP_TIMEOUT_MS,
  );

  test(
    "passes its own type check and its own npm test",
    async () => {
      await sh("npm", ["run", "typecheck"], app);
      const out = await sh("npm", ["test"], app);
      expect(out).toMatch(/2 passed/);
    },
    STEP_TIMEOUT_MS,
  );

  test(
    "boki dev in a folder without functions says what is wrong in two lines and exits with 1",
    async () => {
      const empty = join(tmp.dir, "empty");
      mkdirSync(empty);
      const r = await run(process.execPath, [installedBin, "dev", "--port", "0"], {
        cwd: empty,
        timeout: STEP_TIMEOUT_MS,
      }).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
      expect(r.code).toBe(1);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toBe(`boki: no function module or directory at ${join(empty, "functions")}`);
      expect(lines[1]).toMatch(/--functions/);
    },
    STEP_TIMEOUT_MS,
  );
});
