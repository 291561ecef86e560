/**
 * Suite "log": the embedded shared log (sequencer + storage + engine in one process, lmdb
 * under a fresh temporary data directory per run). The load generator runs in the same
 * process and on the same event loop as the log, so its cost is included in every figure.
 *
 *  - append: C closed-loop appenders, each to its own book (books 1..C), tags [], a fixed
 *    random payload; durability "disk" (EmbeddedLog `sync: true`, the default: acknowledged
 *    once its commit is fsync'ed), plus one "no-fsync" row (`sync: false`: written to lmdb
 *    but not fsync'ed, so it survives a process crash but not a machine crash) for comparison.
 *  - read-cache-hit: sequential readNext(0, seqnum) over records appended just before,
 *    all in the engine's record cache.
 *  - read-cache-miss: the same over random seqnums with a 1-byte record cache, so every
 *    read goes to the storage node (lmdb).
 *
 * With `--cluster`, the suite measures the local multi-process cluster instead
 * (suites/log-cluster.ts).
 */
import { randomBytes } from "node:crypto";
import { EmbeddedLog, type LogBook, type SeqNum } from "../../src/index.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { runClosedLoop } from "../lib/runner.js";
import {
  FULL_PHASES,
  QUICK_PHASES,
  runMeasurements,
  windowSeconds,
  type Measurement,
} from "../lib/measure.js";
import type { Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { runLogCluster } from "./log-cluster.js";

/** "disk": each acknowledgement waits for an fsync; "no-fsync": commits are not fsync'ed. */
type Durability = "disk" | "no-fsync";

const APPEND_CONCURRENCY = [1, 16, 64, 256] as const;
const APPEND_PAYLOAD_BYTES = [100, 1024] as const;
/** Records appended before a read measurement. */
const READ_RECORDS = 10_000;
const READ_PAYLOAD_BYTES = 100;
const PRELOAD_CONCURRENCY = 64;
/** Record cache budget that holds nothing, so every read is a miss. */
const NO_CACHE_BYTES = 1;

function payload(bytes: number): Uint8Array {
  return new Uint8Array(randomBytes(bytes));
}

async function withLog<T>(
  durability: Durability,
  cacheBytes: number | undefined,
  fn: (log: EmbeddedLog) => Promise<T>,
): Promise<T> {
  return withTempDir("boki-bench-log", async (dir) => {
    const sync = durability === "disk";
    const log = await EmbeddedLog.open(
      cacheBytes === undefined ? { dir, sync } : { dir, sync, cacheBytes },
    );
    try {
      return await fn(log);
    } finally {
      await log.close();
    }
  });
}

/**
 * Best-effort look at the engine's record-cache counters, to confirm what a read workload
 * actually hit. Reads a private field; returns undefined if its shape is not as expected.
 */
function cacheCounters(log: EmbeddedLog): { hits: number; misses: number } | undefined {
  const engine = (log as unknown as { engine?: { logs?: unknown } }).engine;
  const logs = engine?.logs;
  if (!Array.isArray(logs)) return undefined;
  let hits = 0;
  let misses = 0;
  for (const st of logs as Array<{ cache?: { hits?: unknown; misses?: unknown } }>) {
    const c = st.cache;
    if (typeof c?.hits !== "number" || typeof c.misses !== "number") return undefined;
    hits += c.hits;
    misses += c.misses;
  }
  return { hits, misses };
}

function appendMeasurement(
  concurrency: number,
  payloadBytes: number,
  durability: Durability,
): Measurement {
  const mode = durability === "disk" ? "embedded" : "embedded-nosync";
  return {
    label: `append c=${concurrency} ${payloadBytes} B durability=${durability}`,
    run: (phases, onProgress) =>
      withLog(durability, undefined, async (log) => {
        const books = Array.from({ length: concurrency }, (_, i) => log.book(i + 1));
        const data = payload(payloadBytes);
        const window = await runClosedLoop({
          concurrency,
          warmupMs: phases.warmupMs,
          measureMs: phases.measureMs,
          op: (w) => books[w]!.append([], data),
          ...(onProgress === undefined ? {} : { onProgress }),
        });
        return {
          window,
          row: {
            system: "boki",
            mode,
            workload: "append",
            concurrency,
            payloadBytes,
          },
          extras: { durability, books: concurrency, tags: 0 },
        };
      }),
  };
}

/** Appends `count` records to `book` with a few concurrent appenders; returns their seqnums, sorted. */
async function preload(book: LogBook, count: number, data: Uint8Array): Promise<SeqNum[]> {
  const seqnums: SeqNum[] = [];
  let issued = 0;
  const appender = async (): Promise<void> => {
    while (issued < count) {
      issued++;
      seqnums.push(await book.append([], data));
    }
  };
  await Promise.all(Array.from({ length: PRELOAD_CONCURRENCY }, appender));
  return seqnums.sort((a, b) => a - b);
}

/** Reads every seqnum once through `reader`, checking each comes back. */
async function verifyReads(reader: LogBook, seqnums: readonly SeqNum[]): Promise<void> {
  for (const s of seqnums) {
    const r = await reader.readNext(0, s);
    if (r === null || r.seqnum !== s) {
      throw new Error(`readNext(0, ${s}) returned ${r === null ? "null" : `seqnum ${r.seqnum}`}`);
    }
  }
}

/** xorshift32: a cheap, seeded index stream so runs are repeatable. */
function randomIndices(n: number, seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function readMeasurement(kind: "hit" | "miss"): Measurement {
  const cacheBytes = kind === "hit" ? undefined : NO_CACHE_BYTES;
  return {
    label: `readNext cache ${kind}: ${READ_RECORDS} records of ${READ_PAYLOAD_BYTES} B, ${kind === "hit" ? "sequential" : "random"} seqnums`,
    run: (phases, onProgress) =>
      withLog("disk", cacheBytes, async (log) => {
        const seqnums = await preload(log.book(1), READ_RECORDS, payload(READ_PAYLOAD_BYTES));
        // A fresh handle: its position covers every acknowledged append.
        const reader = log.book(1);
        await verifyReads(reader, seqnums);
        const before = cacheCounters(log);
        let i = 0;
        const next = randomIndices(seqnums.length, 0x9e3779b9);
        const pick =
          kind === "hit"
            ? (): SeqNum => seqnums[i++ % seqnums.length]!
            : (): SeqNum => seqnums[next()]!;
        const window = await runClosedLoop({
          concurrency: 1,
          warmupMs: phases.warmupMs,
          measureMs: phases.measureMs,
          op: () => reader.readNext(0, pick()),
          ...(onProgress === undefined ? {} : { onProgress }),
        });
        const after = cacheCounters(log);
        const extras: Record<string, unknown> = {
          durability: "disk",
          records: seqnums.length,
          access: kind === "hit" ? "sequential" : "random",
          cacheBytes: cacheBytes ?? "default",
        };
        if (before !== undefined && after !== undefined) {
          const hits = after.hits - before.hits;
          const misses = after.misses - before.misses;
          extras["cacheHitRatio"] = hits + misses === 0 ? null : hits / (hits + misses);
        }
        return {
          window,
          row: {
            system: "boki",
            mode: "embedded",
            workload: kind === "hit" ? "read-cache-hit" : "read-cache-miss",
            concurrency: 1,
            payloadBytes: READ_PAYLOAD_BYTES,
          },
          extras,
        };
      }),
  };
}

function measurements(): Measurement[] {
  const out: Measurement[] = [];
  for (const c of APPEND_CONCURRENCY) {
    for (const p of APPEND_PAYLOAD_BYTES) out.push(appendMeasurement(c, p, "disk"));
  }
  out.push(appendMeasurement(64, 100, "no-fsync"));
  out.push(readMeasurement("hit"));
  out.push(readMeasurement("miss"));
  return out;
}

async function run(options: SuiteOptions): Promise<ResultRow[] | SuiteOutput> {
  if (options.cluster) return runLogCluster(options);
  const phases = options.quick ? QUICK_PHASES : FULL_PHASES;
  const list = measurements();
  if (!options.peers) progress("log: --no-peers given (this suite has no peers)");
  progress(
    `log: ${list.length} measurements × ${phases.runs} run(s), warm-up ${phases.warmupMs / 1000} s + ` +
      `window ${phases.measureMs / 1000} s each (~${Math.round(windowSeconds(list.length, phases))} s of windows)`,
  );
  return runMeasurements(list, { phases, quick: options.quick });
}

export const logSuite: Suite = {
  name: "log",
  description:
    "embedded shared log: append throughput/latency (fsync'ed and not), readNext cache hit and miss; " +
    "--cluster: the local multi-process cluster (memory and disk durability, read paths) vs NATS JetStream",
  hasClusterMode: true,
  run,
};
