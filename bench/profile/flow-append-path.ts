/**
 * What one of a workflow's appends costs in the embedded log, without the gateway or the
 * worker threads: `EmbeddedLog.open` on a temp dir (fsync on, as boki dev runs it) in this
 * process, and S streams each making conditional appends at positions 0, 1, 2, ... in turn,
 * as workflow instances log their start, steps and end (one append in flight per stream).
 *
 * For each stream count it prints appends/s, p50/p99, and per append: WAL group writes
 * (`writev` or `writevSync` calls on the O_DSYNC segment files, counted by wrapping node:fs),
 * their time (call to completion; with `BOKI_WAL_WRITES=sync` the event loop is blocked in
 * them, so it is also the loop's share), and the event loop iterations between the call and the
 * acknowledgement (counted by a setImmediate ticker in a separate pass, which keeps the loop
 * turning, so that pass's latencies are not reported).
 *
 * `--clock microtask` opens the log with a clock whose `afterTurn` is `queueMicrotask` instead
 * of `setImmediate` (an experiment: the storage node's progress report and the sequencer's cut
 * then happen in the same turn as the records' WAL append, so the metalog entry joins the
 * records' group write).
 *
 *   [BOKI_WAL_WRITES=sync] npx tsx bench/profile/flow-append-path.ts [-s 1,16,64] [--seconds 4]
 *     [--clock microtask]
 */
import fs, { mkdtempSync, rmSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Command } from "commander";
import { LatencyHistogram } from "../lib/histogram.js";
import { fmtMs } from "../lib/table.js";

const opts = new Command()
  .option("-s, --streams <list>", "streams appending at once, comma-separated", "1,16,64")
  .option("--seconds <s>", "seconds per measurement", "4")
  .option("--clock <kind>", "system (setImmediate turns) or microtask", "system")
  .parse()
  .opts<{ streams: string; seconds: string; clock: string }>();
if (opts.clock !== "system" && opts.clock !== "microtask") {
  throw new Error(`--clock is system or microtask, got ${opts.clock}`);
}

// Count and time the WAL's group writes: the WAL calls writev/writevSync through its ESM
// import, which syncBuiltinESMExports points at these wrappers (done before the log's modules
// load).
const wal = { calls: 0, ms: 0, bytes: 0 };
const realWritevAsync = fs.writev;
(fs as { writev: unknown }).writev = (
  fd: number,
  buffers: readonly NodeJS.ArrayBufferView[],
  position: number,
  cb: (err: NodeJS.ErrnoException | null, written: number) => void,
) => {
  const t0 = performance.now();
  realWritevAsync(fd, buffers, position, (err, n) => {
    wal.bytes += n;
    wal.ms += performance.now() - t0;
    wal.calls++;
    cb(err, n);
  });
};
const realWritev = fs.writevSync;
fs.writevSync = (fd: number, buffers: readonly NodeJS.ArrayBufferView[], position?: number) => {
  const t0 = performance.now();
  try {
    const n = realWritev(fd, buffers, position);
    wal.bytes += n;
    return n;
  } finally {
    wal.ms += performance.now() - t0;
    wal.calls++;
  }
};
syncBuiltinESMExports();

const { EmbeddedLog, tagOf } = await import("../../src/index.js");

const seconds = Number(opts.seconds);
const dir = mkdtempSync(join(tmpdir(), "boki-append-path-"));
const log = await EmbeddedLog.open(
  opts.clock === "system"
    ? { dir }
    : {
        dir,
        clock: {
          now: () => performance.now(),
          setTimer: (ms, cb) => setTimeout(cb, ms) as unknown as { readonly __timer: true },
          clearTimer: (h) => clearTimeout(h as unknown as NodeJS.Timeout),
          afterTurn: (cb) => queueMicrotask(cb),
        },
      },
);
const book = log.book(1);
const payload = JSON.stringify({
  v: 1,
  k: "step",
  at: Date.now(),
  name: "step-1",
  ok: true,
  value: { k: 1, v: 2 },
});
let streamSeq = 0;

/** Loop iterations counted by a ticker that re-arms itself with setImmediate. */
let ticks = 0;
let ticking = false;
function tick(): void {
  ticks++;
  if (ticking) setImmediate(tick);
}

async function pass(streams: number, ms: number, countTicks: boolean) {
  const hist = new LatencyHistogram();
  let ops = 0;
  let tickSum = 0;
  const end = performance.now() + ms;
  const w0 = { ...wal };
  if (countTicks) {
    ticking = true;
    setImmediate(tick);
  }
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const tag = tagOf(`bench/flow-path/${streamSeq++}`);
      for (let pos = 0; pos < 5 && performance.now() < end; pos++) {
        const k0 = ticks;
        const t0 = performance.now();
        await book.condAppend([tag], payload, tag, pos);
        hist.recordSpan(t0, performance.now());
        tickSum += ticks - k0;
        ops++;
      }
    }
  };
  await Promise.all(Array.from({ length: streams }, worker));
  ticking = false;
  const l = hist.summary();
  hist.destroy();
  return {
    ops,
    opsPerSec: ops / (ms / 1000),
    p50: l.p50Ms,
    p99: l.p99Ms,
    writesPerOp: (wal.calls - w0.calls) / ops,
    writeMsPerOp: (wal.ms - w0.ms) / ops,
    writeMsEach: (wal.ms - w0.ms) / Math.max(1, wal.calls - w0.calls),
    loopShareInWrites: (wal.ms - w0.ms) / ms,
    ticksPerOp: tickSum / ops,
  };
}

try {
  await pass(16, 1000, false); // warm-up
  console.log(
    "streams  appends/s  p50 ms  p99 ms  WAL writes/append  write ms each    time in writes  loop iterations/append",
  );
  for (const s of opts.streams.split(",").map(Number)) {
    const r = await pass(s, seconds * 1000, false);
    const t = await pass(s, Math.min(2000, seconds * 500), true);
    console.log(
      [
        String(s).padStart(7),
        Math.round(r.opsPerSec).toString().padStart(9),
        fmtMs(r.p50).padStart(6),
        fmtMs(r.p99).padStart(6),
        r.writesPerOp.toFixed(3).padStart(17),
        fmtMs(r.writeMsEach).padStart(13),
        `${(r.loopShareInWrites * 100).toFixed(0)} %`.padStart(16),
        t.ticksPerOp.toFixed(2).padStart(22),
      ].join("  "),
    );
  }
} finally {
  await log.close();
  rmSync(dir, { recursive: true, force: true });
}
