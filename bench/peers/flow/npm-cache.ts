/**
 * The workflow peers' npm packages, installed at run time into a cache directory outside the
 * repository (not the project's dependencies): `~/.cache/boki-bench/peers/<peer>/` (or under
 * $BOKI_BENCH_CACHE), with its own package.json pinning exact versions, `npm install` on first
 * use, reused afterwards. A stamp file records what was installed, so a changed pin reinstalls;
 * a lock directory keeps two benchmark processes from installing into it at once.
 *
 * The peers' app code (the .mjs files beside this one) is copied into that directory before
 * it runs, so that its imports resolve to the cached packages.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findExecutable, lastLines, runCommand } from "../../lib/peers/proc.js";

/** Set to a directory to keep the peers' packages there instead of ~/.cache/boki-bench/peers. */
export const CACHE_DIR_ENV = "BOKI_BENCH_CACHE";
const INSTALL_TIMEOUT_MS = 10 * 60_000;
/** How long to wait for another process's install into the same directory. */
const LOCK_WAIT_MS = INSTALL_TIMEOUT_MS + 60_000;
const LOCK_POLL_MS = 250;
const STAMP = ".boki-bench-installed.json";

export function peerCacheDir(peer: string): string {
  const base = process.env[CACHE_DIR_ENV];
  return base !== undefined && base !== ""
    ? join(base, peer)
    : join(homedir(), ".cache", "boki-bench", "peers", peer);
}

export interface PeerPackages {
  readonly ok: true;
  readonly dir: string;
  /** Exact versions installed, by package name. */
  readonly versions: Readonly<Record<string, string>>;
  readonly notes: readonly string[];
}

export interface PeerPackagesMissing {
  readonly ok: false;
  readonly reason: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes the lock directory (bounded wait; a lock whose holder is gone is broken). */
async function lock(dir: string): Promise<(() => void) | string> {
  const lockDir = `${dir}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (true) {
    try {
      mkdirSync(lockDir);
      writeFileSync(join(lockDir, "pid"), String(process.pid));
      return () => rmSync(lockDir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(join(lockDir, "pid"), "utf8"));
    } catch {
      // being created or removed; look again
    }
    const age = Date.now() - statSafeMtime(lockDir);
    if (holder !== undefined && Number.isInteger(holder) && !pidAlive(holder)) {
      rmSync(lockDir, { recursive: true, force: true });
      continue;
    }
    if (holder === undefined && age > 10_000) {
      rmSync(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      return `${lockDir} held by process ${holder ?? "?"} for over ${LOCK_WAIT_MS / 1000} s`;
    }
    await sleep(LOCK_POLL_MS);
  }
}

function statSafeMtime(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return Date.now();
  }
}

function installedVersions(
  dir: string,
  names: readonly string[],
): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const n of names) {
    try {
      const pkg = JSON.parse(
        readFileSync(join(dir, "node_modules", n, "package.json"), "utf8"),
      ) as {
        version?: unknown;
      };
      if (typeof pkg.version !== "string") return undefined;
      out[n] = pkg.version;
    } catch {
      return undefined;
    }
  }
  return out;
}

/**
 * Makes sure `dependencies` (exact versions) are installed in the peer's cache directory.
 * Never throws: when they cannot be installed, the result says why.
 */
export async function ensurePeerPackages(o: {
  readonly peer: string;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly say: (line: string) => void;
}): Promise<PeerPackages | PeerPackagesMissing> {
  const dir = peerCacheDir(o.peer);
  const wanted = JSON.stringify(o.dependencies);
  const names = Object.keys(o.dependencies);
  const current = (): Record<string, string> | undefined => {
    try {
      if (readFileSync(join(dir, STAMP), "utf8") !== wanted) return undefined;
    } catch {
      return undefined;
    }
    return installedVersions(dir, names);
  };
  try {
    const have = current();
    if (have !== undefined) return { ok: true, dir, versions: have, notes: [`cached in ${dir}`] };
    mkdirSync(dirname(dir), { recursive: true });
    const unlock = await lock(dir);
    if (typeof unlock === "string") return { ok: false, reason: unlock };
    try {
      const again = current();
      if (again !== undefined)
        return { ok: true, dir, versions: again, notes: [`cached in ${dir}`] };
      const npm =
        findExecutable("npm") ??
        (existsSync(join(dirname(process.execPath), "npm"))
          ? join(dirname(process.execPath), "npm")
          : undefined);
      if (npm === undefined) return { ok: false, reason: "no npm on PATH to install the peer" };
      mkdirSync(dir, { recursive: true });
      rmSync(join(dir, STAMP), { force: true });
      writeFileSync(
        join(dir, "package.json"),
        JSON.stringify(
          {
            name: `boki-bench-peer-${o.peer}`,
            private: true,
            type: "module",
            dependencies: o.dependencies,
          },
          null,
          2,
        ) + "\n",
      );
      const list = names.map((n) => `${n}@${o.dependencies[n]}`).join(" ");
      o.say(`${o.peer}: installing ${list} into ${dir} (npm install, first use only)`);
      const t0 = Date.now();
      const args = ["install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"];
      const r = await runCommand(npm, args, {
        timeoutMs: INSTALL_TIMEOUT_MS,
        // No install-time analytics calls (the network reaches only the registry).
        env: { ...process.env, SCARF_ANALYTICS: "false", DO_NOT_TRACK: "1" },
      });
      if (r.code !== 0) {
        const out = lastLines(`${r.stdout}\n${r.stderr}`, 6).replace(/\n/g, " | ");
        return {
          ok: false,
          reason: `npm install ${list} failed (${r.error ?? `exit code ${r.code}`}): ${out}`,
        };
      }
      const versions = installedVersions(dir, names);
      if (versions === undefined)
        return { ok: false, reason: `npm install ${list} left a package missing in ${dir}` };
      writeFileSync(join(dir, STAMP), wanted);
      return {
        ok: true,
        dir,
        versions,
        notes: [
          `installed into ${dir} with npm install in ${Math.round((Date.now() - t0) / 1000)} s`,
        ],
      };
    } finally {
      unlock();
    }
  } catch (err) {
    return { ok: false, reason: `installing ${o.peer}'s packages: ${String(err)}` };
  }
}

/**
 * Copies the app file `name` (beside this module) into the peer's cache directory and returns
 * its path there. Written under a temporary name and renamed, so a concurrent run never sees
 * half a file.
 */
export function installAppFile(dir: string, name: string): string {
  const src = new URL(`./${name}`, import.meta.url);
  const dst = join(dir, name);
  const tmp = `${dst}.${process.pid}.tmp`;
  copyFileSync(src, tmp);
  renameSync(tmp, dst);
  return dst;
}
