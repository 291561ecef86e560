/**
 * Runs a list of measurements the way the log suite does: each one `runs` times (warm-up,
 * then a fixed window), progress on stderr, and the run with the median throughput reported
 * as one row with the same extras the log suite writes (p999Ms, maxMs, meanMs, samples,
 * warmupSec, windowSec, runs, runOpsPerSec, runP99Ms, then the measurement's own extras).
 */
import { progress as defaultProgress } from "./progress.js";
import type { ResultRow } from "./results.js";
import { medianIndex, type WindowProgress, type WindowResult } from "./runner.js";
import { fmtMs } from "./table.js";

export interface Phases {
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly runs: number;
}

/** The log suite's windows: 1 s warm-up + 5 s window, 3 runs, median reported. */
export const FULL_PHASES: Phases = { warmupMs: 1000, measureMs: 5000, runs: 3 };
/** The log suite's quick windows: 0.3 s warm-up + 1.5 s window, 1 run. */
export const QUICK_PHASES: Phases = { warmupMs: 300, measureMs: 1500, runs: 1 };

/** What identifies a row: everything but the measured figures. */
export type RowKey = Pick<
  ResultRow,
  "system" | "mode" | "workload" | "concurrency" | "payloadBytes"
>;

export interface Measured {
  readonly window: WindowResult;
  readonly row: RowKey;
  readonly extras?: Record<string, unknown>;
}

export interface Measurement {
  readonly label: string;
  readonly run: (phases: Phases, onProgress?: (p: WindowProgress) => void) => Promise<Measured>;
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function describeWindow(w: WindowResult): string {
  const l = w.latency;
  return (
    `${Math.round(w.opsPerSec).toLocaleString("en-US")} ops/s, ` +
    `p50 ${fmtMs(l.p50Ms)} ms, p99 ${fmtMs(l.p99Ms)} ms, max ${fmtMs(l.maxMs)} ms`
  );
}

/** Seconds of warm-up plus windows that `count` measurements take. */
export function windowSeconds(count: number, phases: Phases): number {
  return (count * phases.runs * (phases.warmupMs + phases.measureMs)) / 1000;
}

export interface RunMeasurementsOptions {
  readonly phases: Phases;
  /** Quick runs print no per-second progress lines when stderr is not a terminal. */
  readonly quick: boolean;
  /** Put before every progress line's counter, e.g. "nats replicated-3-default-sync". */
  readonly tag?: string;
  readonly progress?: (msg: string) => void;
  /**
   * Rows are pushed here as each measurement finishes, so a caller that catches an error
   * from a later measurement still has the earlier rows.
   */
  readonly into?: ResultRow[];
  /** Number the measurements `[offset + k + 1/total]` (when a caller runs a longer list piecewise). */
  readonly numbering?: { readonly offset: number; readonly total: number };
  /**
   * Take turns: run 1 of every measurement, then run 2 of every measurement, and so on,
   * instead of all runs of one measurement before the next. For a system and its peer at the
   * same load point, so that both are measured under the same conditions of a shared,
   * drifting machine. Rows are pushed once every run is done, in list order.
   */
  readonly interleave?: boolean;
}

export async function runMeasurements(
  list: readonly Measurement[],
  o: RunMeasurementsOptions,
): Promise<ResultRow[]> {
  const { phases } = o;
  const say = o.progress ?? defaultProgress;
  const rows = o.into ?? [];
  const tty = process.stderr.isTTY;
  const prefix = o.tag === undefined ? "" : `${o.tag} `;
  const results: Measured[][] = list.map(() => []);
  const runOne = async (k: number, r: number): Promise<void> => {
    const m = list[k]!;
    const num = `${(o.numbering?.offset ?? 0) + k + 1}/${o.numbering?.total ?? list.length}`;
    const tag = `${prefix}[${num}${phases.runs > 1 ? ` run ${r + 1}/${phases.runs}` : ""}]`;
    say(`${tag} ${m.label}`);
    const onProgress = (p: WindowProgress): void => {
      const line =
        `${tag} ${p.phase} ${(p.elapsedMs / 1000).toFixed(1)}/${(p.phaseMs / 1000).toFixed(1)} s` +
        (p.phase === "measure" ? `, ${p.ops.toLocaleString("en-US")} ops` : "");
      if (tty) process.stderr.write(`\r        ${line}\x1b[K`);
      else if (!o.quick) say(line);
    };
    let res: Measured;
    try {
      res = await m.run(phases, onProgress);
    } finally {
      if (tty) process.stderr.write("\r\x1b[K");
    }
    say(`${tag} ${describeWindow(res.window)}`);
    results[k]!.push(res);
  };
  const pushRow = (k: number): void => {
    const runs = results[k]!;
    const runOps = runs.map((x) => x.window.opsPerSec);
    const median = runs[medianIndex(runOps)]!;
    const l = median.window.latency;
    rows.push({
      ...median.row,
      opsPerSec: round(median.window.opsPerSec, 1),
      p50Ms: round(l.p50Ms, 4),
      p99Ms: round(l.p99Ms, 4),
      p999Ms: round(l.p999Ms, 4),
      maxMs: round(l.maxMs, 4),
      meanMs: round(l.meanMs, 4),
      samples: l.count,
      warmupSec: phases.warmupMs / 1000,
      windowSec: phases.measureMs / 1000,
      runs: phases.runs,
      runOpsPerSec: runOps.map((x) => round(x, 1)),
      runP99Ms: runs.map((x) => round(x.window.latency.p99Ms, 3)),
      ...median.extras,
    });
  };
  if (o.interleave === true) {
    for (let r = 0; r < phases.runs; r++) for (let k = 0; k < list.length; k++) await runOne(k, r);
    for (let k = 0; k < list.length; k++) pushRow(k);
  } else {
    for (let k = 0; k < list.length; k++) {
      for (let r = 0; r < phases.runs; r++) await runOne(k, r);
      pushRow(k);
    }
  }
  return rows;
}
