/**
 * Closed-loop, fixed-time-window runner: `concurrency` workers each await one operation
 * and then issue the next. The first `warmupMs` are discarded; every operation that
 * completes inside the following `measureMs` window counts towards throughput, and its
 * caller-side latency goes into the histogram.
 *
 * Time is checked on every completion rather than with timers, so the runner also works
 * for operations that resolve synchronously (a loop of resolved promises never yields to
 * the timer queue).
 */
import { performance } from "node:perf_hooks";
import { LatencyHistogram, type LatencySummary } from "./histogram.js";

export interface WindowProgress {
  readonly phase: "warmup" | "measure";
  /** Milliseconds into the current phase. */
  readonly elapsedMs: number;
  readonly phaseMs: number;
  /** Operations completed in the measurement window so far. */
  readonly ops: number;
}

export interface ClosedLoopOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** One operation of worker `worker` (0-based). */
  readonly op: (worker: number) => Promise<unknown>;
  readonly onProgress?: (p: WindowProgress) => void;
  readonly progressEveryMs?: number;
}

export interface WindowResult {
  readonly ops: number;
  readonly windowMs: number;
  readonly opsPerSec: number;
  readonly latency: LatencySummary;
}

export async function runClosedLoop(o: ClosedLoopOptions): Promise<WindowResult> {
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1) {
    throw new Error(`concurrency must be a positive integer, got ${o.concurrency}`);
  }
  const hist = new LatencyHistogram();
  const start = performance.now();
  const measureStart = start + o.warmupMs;
  const measureEnd = measureStart + o.measureMs;
  const every = o.progressEveryMs ?? 1000;
  let nextProgress = start + every;
  let ops = 0;
  let stop = false;

  const worker = async (w: number): Promise<void> => {
    let t0 = performance.now();
    while (!stop) {
      await o.op(w);
      const t1 = performance.now();
      if (t1 >= measureEnd) {
        stop = true;
        break;
      }
      if (t1 >= measureStart) {
        ops++;
        hist.recordSpan(t0, t1);
      }
      if (o.onProgress !== undefined && t1 >= nextProgress) {
        nextProgress = t1 + every;
        o.onProgress(
          t1 < measureStart
            ? { phase: "warmup", elapsedMs: t1 - start, phaseMs: o.warmupMs, ops }
            : { phase: "measure", elapsedMs: t1 - measureStart, phaseMs: o.measureMs, ops },
        );
      }
      t0 = t1;
    }
  };

  try {
    const workers = Array.from({ length: o.concurrency }, (_, w) =>
      worker(w).catch((err: unknown) => {
        stop = true;
        throw err;
      }),
    );
    await Promise.all(workers);
    return {
      ops,
      windowMs: o.measureMs,
      opsPerSec: ops / (o.measureMs / 1000),
      latency: hist.summary(),
    };
  } finally {
    hist.destroy();
  }
}

/** Index of the median of `values` (the lower middle one for an even count). */
export function medianIndex(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of nothing");
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  return order[Math.floor((order.length - 1) / 2)]![1];
}
