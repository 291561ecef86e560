/** The results file every suite writes (see /work/shared/BENCHMARKS.md for the shape). */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface ResultRow {
  readonly system: string;
  readonly mode: string;
  readonly workload: string;
  readonly concurrency: number;
  readonly payloadBytes: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly [extra: string]: unknown;
}

export interface Machine {
  readonly cpus: number;
  readonly node: string;
  readonly [extra: string]: unknown;
}

export interface ResultsFile {
  readonly suite: string;
  readonly when: string;
  readonly quick: boolean;
  readonly machine: Machine;
  readonly rows: readonly ResultRow[];
  readonly [extra: string]: unknown;
}

/** bench/results, wherever the process was started from. */
export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "results");

export function machineInfo(): Machine {
  const cpuList = cpus();
  return {
    cpus: cpuList.length,
    node: process.version,
    cpuModel: cpuList[0]?.model ?? "unknown",
    platform: `${process.platform}-${process.arch}`,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

/** One-minute load average: the machines are shared, so say how busy this one was. */
export function loadAverage1m(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

/**
 * A fingerprint of the code measured (no VCS needed): sha256 over every file under src/,
 * path and content, in path order. Take it when the suite starts, since modules are loaded then.
 */
export function sourceFingerprint(
  root: string = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src"),
): { srcSha256: string; files: number } {
  const files = readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f.slice(root.length));
    h.update("\0");
    h.update(readFileSync(f));
  }
  return { srcSha256: h.digest("hex").slice(0, 16), files: files.length };
}

/** ISO time to the second, e.g. 2026-11-22T12:00:00Z. */
export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Writes `<suite>-latest.json` and a dated copy `<suite>-<when with ':' → '-'>.json`.
 * Returns both paths.
 */
export function writeResults(
  file: ResultsFile,
  dir: string = RESULTS_DIR,
): { latest: string; dated: string } {
  mkdirSync(dir, { recursive: true });
  const text = JSON.stringify(file, null, 2) + "\n";
  const latest = join(dir, `${file.suite}-latest.json`);
  const dated = join(dir, `${file.suite}-${file.when.replace(/:/g, "-")}.json`);
  writeFileSync(latest, text);
  writeFileSync(dated, text);
  return { latest, dated };
}
