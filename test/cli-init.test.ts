import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { initProject, packageNameFor } from "../src/cli/init.js";
import { CliFailure } from "../src/cli/errors.js";
import { tempDir } from "./helpers/tmp.js";

const dirs: Array<() => void> = [];
function fresh(): string {
  const t = tempDir("boki-init-");
  dirs.push(t.remove);
  return t.dir;
}
afterEach(() => dirs.splice(0).forEach((remove) => remove()));

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
}

describe("boki init", () => {
  test("writes a module project with a function, its test and a dependency on boki-ts", () => {
    const dir = join(fresh(), "My App");
    const r = initProject(dir, { bokiTs: "^1.2.3" });
    expect(r.created).toEqual([
      "package.json",
      "tsconfig.json",
      "functions/hello.ts",
      "test/hello.test.ts",
      ".gitignore",
      "README.md",
    ]);
    const pkg = readJson(join(dir, "package.json"));
    expect(pkg).toMatchObject({
      name: "my-app",
      type: "module",
      private: true,
      scripts: { dev: "boki dev", test: "vitest run" },
      dependencies: { "boki-ts": "^1.2.3" },
    });
    expect(Object.keys(pkg["devDependencies"] as object).sort()).toEqual([
      "@types/node",
      "typescript",
      "vitest",
    ]);
    expect(readFileSync(join(dir, "functions/hello.ts"), "utf8")).toContain('from "boki-ts"');
    expect(readFileSync(join(dir, "test/hello.test.ts"), "utf8")).toContain(
      'from "boki-ts/testing"',
    );
  });

  test("run again, it keeps every file as it is", () => {
    const dir = fresh();
    initProject(dir, { bokiTs: "^1.0.0" });
    writeFileSync(join(dir, "functions/hello.ts"), "// mine\n");
    const before = readFileSync(join(dir, "package.json"), "utf8");
    const r = initProject(dir, { bokiTs: "^9.0.0" });
    expect(r.created).toEqual([]);
    expect(r.updatedPackageFields).toEqual([]);
    expect(r.kept).toContain("functions/hello.ts");
    expect(readFileSync(join(dir, "functions/hello.ts"), "utf8")).toBe("// mine\n");
    expect(readFileSync(join(dir, "package.json"), "utf8")).toBe(before);
  });

  test("completes the package.json npm init wrote, keeping its fields and an installed boki-ts", () => {
    const dir = fresh();
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify({
        name: "shop",
        version: "1.0.0",
        license: "ISC",
        type: "commonjs",
        scripts: { test: 'echo "Error: no test specified" && exit 1', lint: "eslint ." },
        dependencies: { "boki-ts": "file:../boki-ts-0.1.0.tgz" },
      }),
    );
    const r = initProject(dir, { bokiTs: "^9.9.9" });
    expect(r.updatedPackageFields).toEqual(
      expect.arrayContaining(["type", "scripts.test", "scripts.dev", "devDependencies.vitest"]),
    );
    const pkg = readJson(join(dir, "package.json"));
    expect(pkg).toMatchObject({
      name: "shop",
      license: "ISC",
      type: "module",
      scripts: { test: "vitest run", lint: "eslint ." },
      dependencies: { "boki-ts": "file:../boki-ts-0.1.0.tgz" },
    });
  });

  test("refuses to turn a CommonJS project with code into ES modules", () => {
    const dir = fresh();
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "old", type: "commonjs" }));
    writeFileSync(join(dir, "index.js"), "module.exports = 1;\n");
    expect(() => initProject(dir, { bokiTs: "^1.0.0" })).toThrow(CliFailure);
    expect(readdirSync(dir).sort()).toEqual(["index.js", "package.json"]);
  });

  test("refuses a package.json that is not JSON, and a path that is a file", () => {
    const dir = fresh();
    writeFileSync(join(dir, "package.json"), "{ nope");
    expect(() => initProject(dir)).toThrow(/not valid JSON/);
    const file = join(fresh(), "f");
    writeFileSync(file, "");
    expect(() => initProject(file)).toThrow(/not a directory/);
  });

  test("makes package names npm accepts from directory names", () => {
    expect(packageNameFor("/x/My App")).toBe("my-app");
    expect(packageNameFor("/x/.hidden")).toBe("hidden");
    expect(packageNameFor("/x/___")).toBe("boki-app");
  });
});
