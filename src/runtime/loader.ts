/**
 * Loading function modules. A path is a module file or a directory; a directory contributes
 * every module file directly in it (not in subdirectories), in name order, leaving out
 * declaration files (`.d.ts`), tests (`*.test.*`, `*.spec.*`) and names starting with `.`
 * or `_` (helpers a function module imports). `.ts`/`.mts` modules load through tsx, so
 * users need no build step; `.js`/`.mjs` load natively.
 *
 * Every function defined with `defineFunction` that a module exports (default or named)
 * is loaded. Mistakes fail loading with a `FunctionLoadError` naming the file: a module
 * that cannot be imported (with the cause), a module that exports no function, two
 * functions with one name.
 */
import { readdirSync, statSync } from "node:fs";
import { basename, extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { register as registerTsxEsm } from "tsx/esm/api";
import { register as registerTsxCjs } from "tsx/cjs/api";
import { describeThrown, FunctionLoadError } from "./errors.js";
import { isBokiFunction, type BokiFunction } from "./function.js";

/** File name endings of function modules. */
export const MODULE_EXTENSIONS: readonly string[] = [".ts", ".mts", ".js", ".mjs"];

/** Set (to true) on globalThis by whoever registered tsx's hooks in this thread. */
const TSX_REGISTERED = Symbol.for("boki-ts.tsx-registered");

/**
 * Registers tsx's ESM and CommonJS hooks in this thread, once. Both are needed: a `.ts` file
 * outside any package with `"type": "module"` is loaded as CommonJS.
 */
export function registerTypeScript(): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[TSX_REGISTERED] === true) return;
  g[TSX_REGISTERED] = true;
  registerTsxEsm();
  registerTsxCjs();
}

function isModuleFile(name: string): boolean {
  if (name.startsWith(".") || name.startsWith("_")) return false;
  if (name.endsWith(".d.ts") || name.endsWith(".d.mts")) return false;
  if (/\.(test|spec)\.[cm]?[jt]s$/.test(name)) return false;
  return MODULE_EXTENSIONS.includes(extname(name));
}

/** The module files `path` stands for (absolute paths, in load order). */
export function findFunctionModules(path: string): string[] {
  const abs = resolve(path);
  let isDir: boolean;
  try {
    isDir = statSync(abs).isDirectory();
  } catch (err) {
    const missing = (err as { code?: unknown }).code === "ENOENT";
    throw new FunctionLoadError(
      missing
        ? `no function module or directory at ${abs}`
        : `cannot read functions from ${abs}: ${describeThrown(err)}`,
      { file: abs, cause: err },
    );
  }
  if (!isDir) {
    if (!MODULE_EXTENSIONS.includes(extname(abs))) {
      throw new FunctionLoadError(
        `${abs} is not a function module: the name must end in ${MODULE_EXTENSIONS.join(", ")}`,
        { file: abs },
      );
    }
    return [abs];
  }
  const files = readdirSync(abs, { withFileTypes: true })
    .filter((e) => e.isFile() && isModuleFile(e.name))
    .map((e) => resolve(abs, e.name))
    .sort();
  if (files.length === 0) {
    throw new FunctionLoadError(
      `no function modules in ${abs} (files ending in ${MODULE_EXTENSIONS.join(", ")}; subdirectories are not searched)`,
      { file: abs },
    );
  }
  return files;
}

/** One loaded function and where it came from. */
export interface LoadedFunction {
  readonly fn: BokiFunction<never, unknown>;
  readonly file: string;
  /** The export it came from ("default" or the export's name). */
  readonly exportName: string;
}

/** The functions of a set of modules, by name. */
export interface LoadedFunctions {
  readonly files: readonly string[];
  readonly byName: ReadonlyMap<string, LoadedFunction>;
}

function exportsOf(ns: Record<string, unknown>): Array<[string, unknown]> {
  const out = Object.entries(ns);
  // A .ts file loaded as CommonJS puts its ESM exports on module.exports, which arrives
  // here as the default export.
  const d = ns["default"];
  if (typeof d === "object" && d !== null && !isBokiFunction(d) && "__esModule" in d) {
    out.push(...Object.entries(d as Record<string, unknown>));
  }
  return out;
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new FunctionLoadError(`could not load ${file}: ${describeThrown(err)}`, {
      file,
      cause: err,
    });
  }
}

/**
 * Imports `path` (a module file, a directory, or a list of module files) and collects the
 * functions it exports. Registers tsx in this thread first.
 */
export async function loadFunctions(path: string | readonly string[]): Promise<LoadedFunctions> {
  const files = typeof path === "string" ? findFunctionModules(path) : path.map((p) => resolve(p));
  const fromDirectory = typeof path === "string" && files[0] !== resolve(path);
  registerTypeScript();
  const byName = new Map<string, LoadedFunction>();
  /** Functions a library brings along (`companions`); another copy of one is skipped. */
  const companion = new Set<string>();
  const add = (
    fn: BokiFunction<never, unknown>,
    file: string,
    exportName: string,
    isCompanion: boolean,
  ): void => {
    const earlier = byName.get(fn.name);
    if (earlier !== undefined) {
      if (earlier.fn === fn || (isCompanion && companion.has(fn.name))) return;
      throw new FunctionLoadError(
        `function "${fn.name}" is defined twice: by export ${earlier.exportName} of ${earlier.file} and by ${isCompanion ? "a library function of " : ""}export ${exportName} of ${file}`,
        { file },
      );
    }
    byName.set(fn.name, { fn, file, exportName });
    if (isCompanion) companion.add(fn.name);
    for (const c of fn.companions ?? []) add(c, file, exportName, true);
  };
  for (const file of files) {
    const ns = await importModule(file);
    const seen = new Set<unknown>();
    for (const [exportName, value] of exportsOf(ns)) {
      if (!isBokiFunction(value) || seen.has(value)) continue;
      seen.add(value);
      add(value, file, exportName, false);
    }
    if (seen.size === 0) {
      throw new FunctionLoadError(
        `${file} exports no function: export one made with defineFunction (as the default export or a named export)` +
          (fromDirectory
            ? `; a helper module in a functions directory can be named _${basename(file)} to be skipped`
            : ""),
        { file },
      );
    }
  }
  return { files, byName };
}
