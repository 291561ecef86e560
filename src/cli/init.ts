/**
 * `boki init [dir]`: a new project that uses Boki.ts as a dependency: package.json, a
 * TypeScript config, one function and a test of it. Files that exist are kept (a
 * package.json gets only the fields it lacks), so init can also be run in a project that
 * has just installed boki-ts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CliFailure } from "./errors.js";

/** The boki-ts package this command runs from (a checkout or an installed package). */
const PACKAGE_ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface OwnPackage {
  readonly version: string;
  readonly devDependencies?: Readonly<Record<string, string>>;
}

function ownPackage(): OwnPackage {
  return JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as OwnPackage;
}

/**
 * What the new project depends on: the given spec; else, when this command runs from a
 * checkout of Boki.ts, that checkout (`file:`); else the running version from the registry.
 */
export function defaultBokiSpec(): string {
  if (existsSync(join(PACKAGE_ROOT, "src"))) return `file:${PACKAGE_ROOT.replace(/\/+$/, "")}`;
  return `^${ownPackage().version}`;
}

/** An npm package name made from a directory name. */
export function packageNameFor(dir: string): string {
  const name = basename(resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9._~-]+/g, "-")
    .replace(/^[._-]+/, "")
    .slice(0, 214);
  return name === "" ? "boki-app" : name;
}

const HELLO_TS = `import { defineFunction, tagOf } from "boki-ts";

/**
 * Greets someone and counts how often they were greeted. Each greeting is a record in the
 * shared log, tagged with the name; the count is the number of records with that tag.
 */
export const hello = defineFunction({
  name: "hello",
  async handler(ctx, input: { name?: unknown } | null) {
    const name = input?.name ?? "world";
    if (typeof name !== "string" || name === "") throw new Error("input.name must be a non-empty string");
    const tag = tagOf(\`hello:\${name}\`);
    await ctx.log.append([tag], JSON.stringify({ by: ctx.invocationId }));
    // ctx.log reads its own writes: the count includes the record just appended.
    let count = 0;
    for (let r = await ctx.log.readNext(tag, 0); r !== null; r = await ctx.log.readNext(tag, r.seqnum + 1)) {
      count++;
    }
    return { greeting: \`Hello, \${name}!\`, count };
  },
});
`;

const HELLO_TEST_TS = `import { afterAll, beforeAll, expect, test } from "vitest";
import { startDevServer, type TestServer } from "boki-ts/testing";

// The runtime in this process: the log on a temporary directory, the functions in worker
// threads, the HTTP gateway on a free port.
let dev: TestServer;
beforeAll(async () => {
  dev = await startDevServer({ functions: "functions" });
});
afterAll(async () => {
  await dev?.close();
});

test("hello counts the greetings of each name", async () => {
  expect(await dev.client.invoke("hello", { name: "Ada" })).toEqual({ greeting: "Hello, Ada!", count: 1 });
  expect(await dev.client.invoke("hello", { name: "Ada" })).toEqual({ greeting: "Hello, Ada!", count: 2 });
  expect(await dev.client.invoke("hello", { name: "Alan" })).toEqual({ greeting: "Hello, Alan!", count: 1 });
});

test("hello refuses a name that is not a string", async () => {
  await expect(dev.client.invoke("hello", { name: 7 })).rejects.toMatchObject({ code: "FUNCTION_ERROR" });
});
`;

const TSCONFIG = `${JSON.stringify(
  {
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2022"],
      types: ["node"],
      strict: true,
      noUncheckedIndexedAccess: true,
      isolatedModules: true,
      verbatimModuleSyntax: true,
      skipLibCheck: true,
      noEmit: true,
    },
    include: ["functions", "test"],
  },
  null,
  2,
)}\n`;

const GITIGNORE = "node_modules/\ndata/\n";

function readme(name: string): string {
  return `# ${name}

Stateful serverless functions on [Boki.ts](https://www.npmjs.com/package/boki-ts).

\`\`\`sh
npm install
npx boki dev      # serves functions/ on http://127.0.0.1:8080 (data in ./data/dev)
npm test          # runs test/ against the runtime in-process
\`\`\`

\`\`\`sh
curl -X POST localhost:8080/function/hello -d '{"name":"Ada"}'   # {"greeting":"Hello, Ada!","count":1}
\`\`\`

Each module in \`functions/\` exports functions made with \`defineFunction\`; \`ctx.log\` is the
invocation's LogBook.
`;
}

export interface InitOptions {
  /** The boki-ts dependency to write into package.json (default: defaultBokiSpec()). */
  readonly bokiTs?: string;
}

export interface InitResult {
  readonly dir: string;
  readonly created: readonly string[];
  readonly kept: readonly string[];
  /** Fields added to an existing package.json. */
  readonly updatedPackageFields: readonly string[];
}

type PackageJson = Record<string, unknown> & {
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
};

/** Writes the project into `dir` (created if missing). */
export function initProject(dirArg: string, options: InitOptions = {}): InitResult {
  const dir = resolve(dirArg);
  if (existsSync(dir) && !isDirectory(dir))
    throw new CliFailure(`${dir} exists and is not a directory`);
  const own = ownPackage();
  const devVersion = (name: string, fallback: string): string =>
    own.devDependencies?.[name] ?? fallback;
  const spec = options.bokiTs ?? defaultBokiSpec();
  const wanted: PackageJson = {
    name: packageNameFor(dir),
    version: "0.1.0",
    private: true,
    type: "module",
    scripts: { dev: "boki dev", start: "boki dev", test: "vitest run", typecheck: "tsc --noEmit" },
    dependencies: { "boki-ts": spec },
    devDependencies: {
      "@types/node": devVersion("@types/node", "^20.19.0"),
      typescript: devVersion("typescript", "^5.9.0"),
      vitest: devVersion("vitest", "^4.0.0"),
    },
  };
  const created: string[] = [];
  const kept: string[] = [];
  const updatedPackageFields: string[] = [];
  mkdirSync(dir, { recursive: true });

  const pkgPath = join(dir, "package.json");
  if (existsSync(pkgPath)) {
    let pkg: PackageJson;
    try {
      pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as PackageJson;
    } catch (err) {
      throw new CliFailure(`${pkgPath} is not valid JSON: ${(err as Error).message}`);
    }
    if (pkg["type"] === "commonjs") {
      // `npm init -y` writes "commonjs"; in a project with no code yet it is safe to change.
      if (!isFreshProject(dir)) {
        throw new CliFailure(
          `${pkgPath} says "type": "commonjs"; the generated modules are ES modules`,
          'Set "type": "module" in it (or remove the field) and run boki init again.',
        );
      }
      pkg["type"] = "module";
      updatedPackageFields.push("type");
    } else if (pkg["type"] === undefined) {
      pkg["type"] = "module";
      updatedPackageFields.push("type");
    }
    if (pkg.scripts?.["test"] === NPM_INIT_TEST_SCRIPT) delete pkg.scripts["test"];
    for (const group of ["scripts", "dependencies", "devDependencies"] as const) {
      const have = (pkg[group] ??= {});
      for (const [k, v] of Object.entries(wanted[group] ?? {})) {
        if (
          have[k] === undefined &&
          !(group === "devDependencies" && pkg.dependencies?.[k] !== undefined)
        ) {
          have[k] = v;
          updatedPackageFields.push(`${group}.${k}`);
        }
      }
    }
    if (updatedPackageFields.length > 0)
      writeFileSync(pkgPath, `${JSON.stringify(pkg, null, 2)}\n`);
    else kept.push("package.json");
  } else {
    writeFileSync(pkgPath, `${JSON.stringify(wanted, null, 2)}\n`);
    created.push("package.json");
  }

  const files: ReadonlyArray<readonly [string, string]> = [
    ["tsconfig.json", TSCONFIG],
    ["functions/hello.ts", HELLO_TS],
    ["test/hello.test.ts", HELLO_TEST_TS],
    [".gitignore", GITIGNORE],
    ["README.md", readme(String(wanted.name))],
  ];
  for (const [rel, text] of files) {
    const path = join(dir, rel);
    if (existsSync(path)) {
      kept.push(rel);
      continue;
    }
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    created.push(rel);
  }
  return { dir, created, kept, updatedPackageFields };
}

/** The `test` script `npm init` writes, which always fails. */
const NPM_INIT_TEST_SCRIPT = 'echo "Error: no test specified" && exit 1';

/** Whether `dir` holds nothing but what `npm init` and `npm install` make. */
function isFreshProject(dir: string): boolean {
  const allowed = new Set([
    "package.json",
    "package-lock.json",
    "node_modules",
    ".git",
    ".gitignore",
  ]);
  return readdirSync(dir).every((f) => allowed.has(f) || /^readme(\.md)?$/i.test(f));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The `boki init` command: writes the project and says what to type next. */
export function initCommand(dir: string | undefined, o: { bokiTs?: string }): void {
  const r = initProject(dir ?? ".", o.bokiTs === undefined ? {} : { bokiTs: o.bokiTs });
  const where = relative(process.cwd(), r.dir) || ".";
  console.log(`Boki.ts project in ${r.dir}`);
  if (r.created.length > 0) console.log(`  created: ${r.created.join(", ")}`);
  if (r.updatedPackageFields.length > 0)
    console.log(`  package.json: added ${r.updatedPackageFields.join(", ")}`);
  if (r.kept.length > 0) console.log(`  kept as they were: ${r.kept.join(", ")}`);
  console.log("Next:");
  console.log(`  ${where === "." ? "" : `cd ${where} && `}npm install`);
  console.log("  npx boki dev     # serves functions/ on http://127.0.0.1:8080");
  console.log("  npm test         # tests the function against the runtime");
}
