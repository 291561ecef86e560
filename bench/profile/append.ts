/**
 * A bare append load for profiling, outside the suite's bookkeeping:
 *
 *   npx tsx bench/profile/append.ts [-c 64] [-p 100] [-s 10] [-d disk|no-fsync] [--cpu-profile out.cpuprofile]
 *   npx tsx bench/profile/summarize.ts out.cpuprofile
 *
 * With --cpu-profile, V8's sampling profiler runs (through node:inspector) for the load only,
 * not start-up, and each frame in a TypeScript file is mapped back to its source line via the
 * source maps tsx registers (tsx emits whitespace-minified code, so raw profiles such as
 * `node --cpu-prof --import tsx` show every function at line 1). Prints ops/s on stderr.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import type { Profiler } from "node:inspector";
import { findSourceMap } from "node:module";
import { performance } from "node:perf_hooks";
import { Command, InvalidArgumentError } from "commander";
import { EmbeddedLog } from "../../src/index.js";
import { withTempDir } from "../lib/tmpdir.js";

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

const opts = new Command()
  .name("profile-append")
  .option("-c, --concurrency <n>", "concurrent appenders (one book each)", positiveInt, 64)
  .option("-p, --payload <bytes>", "payload bytes", positiveInt, 100)
  .option("-s, --seconds <s>", "seconds of load", positiveInt, 10)
  .option("-d, --durability <d>", "disk (sync: true) or no-fsync (sync: false)", "disk")
  .option("--cpu-profile <file>", "write a source-mapped V8 CPU profile of the load here")
  .parse()
  .opts<{
    concurrency: number;
    payload: number;
    seconds: number;
    durability: string;
    cpuProfile?: string;
  }>();
if (opts.durability !== "disk" && opts.durability !== "no-fsync") {
  throw new Error(`durability must be disk or no-fsync, got ${opts.durability}`);
}

/** Rewrites generated positions of frames in source-mapped files to original ones. */
function mapToSources(profile: Profiler.Profile): void {
  for (const node of profile.nodes) {
    const cf = node.callFrame;
    if (!cf.url.startsWith("file:") || cf.lineNumber < 0) continue;
    const map = findSourceMap(cf.url);
    if (map === undefined) continue;
    const entry = map.findEntry(cf.lineNumber, cf.columnNumber) as {
      originalLine?: number;
      originalColumn?: number;
      name?: string;
    };
    if (entry.originalLine === undefined) continue;
    cf.lineNumber = entry.originalLine;
    cf.columnNumber = entry.originalColumn ?? 0;
    // Per-line ticks are in generated lines, which mean nothing after minification.
    delete node.positionTicks;
  }
}

await withTempDir("boki-bench-prof", async (dir) => {
  const log = await EmbeddedLog.open({ dir, sync: opts.durability === "disk" });
  const session = opts.cpuProfile === undefined ? undefined : new Session();
  try {
    const data = new Uint8Array(randomBytes(opts.payload));
    const books = Array.from({ length: opts.concurrency }, (_, i) => log.book(i + 1));
    if (session !== undefined) {
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.setSamplingInterval", { interval: 200 });
      await session.post("Profiler.start");
    }
    const end = performance.now() + opts.seconds * 1000;
    let ops = 0;
    await Promise.all(
      books.map(async (book) => {
        while (performance.now() < end) {
          await book.append([], data);
          ops++;
        }
      }),
    );
    if (session !== undefined && opts.cpuProfile !== undefined) {
      const { profile } = await session.post("Profiler.stop");
      mapToSources(profile);
      writeFileSync(opts.cpuProfile, JSON.stringify(profile));
    }
    process.stderr.write(
      `append c=${opts.concurrency} ${opts.payload} B ${opts.durability}: ` +
        `${Math.round(ops / opts.seconds)} ops/s over ${opts.seconds} s\n`,
    );
  } finally {
    session?.disconnect();
    await log.close();
  }
});
