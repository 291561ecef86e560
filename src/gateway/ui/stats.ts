/**
 * Per-function invocation figures for the dashboard: totals, and over a sliding window of
 * one-second slots the rate, the error count and latency quantiles from a fixed histogram.
 * I/O-free: every call takes the time, so it is tested by feeding it.
 *
 * `ObservedDispatcher` feeds it from the invocations a gateway dispatches (requests,
 * asynchronous runs, recovery re-runs and schedules; nested `ctx.invoke` calls run inside
 * their caller's engine and are not seen here).
 */
import { performance } from "node:perf_hooks";
import type {
  Dispatcher,
  FunctionInfo,
  InvokeRequest,
  InvokeResult,
} from "../../runtime/dispatcher.js";
import { InvocationError } from "../../runtime/errors.js";

/** Length of one slot of the window. */
export const STATS_SLOT_MS = 1_000;
/** Slots in the window (one minute). */
export const STATS_WINDOW_SLOTS = 60;
/** The short window a "now" rate is taken over. */
export const STATS_SHORT_WINDOW_SLOTS = 10;
/** Most functions tracked; invocations of further names are counted under `other`. */
export const STATS_FUNCTIONS_MAX = 4096;
/** Upper bounds (ms) of the latency histogram's buckets; the last one is open. */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];
const BUCKETS = LATENCY_BUCKETS_MS.length + 1;
/** The name invocations are counted under once `STATS_FUNCTIONS_MAX` names are tracked. */
export const STATS_OVERFLOW_NAME = "(other)";

interface Slot {
  /** Which second this slot holds (`floor(ms / STATS_SLOT_MS)`), or -1. */
  second: number;
  count: number;
  errors: number;
  sumMs: number;
  buckets: Uint32Array;
}

interface Series {
  total: number;
  errors: number;
  lastAtMs: number;
  lastError: string | null;
  readonly slots: Slot[];
}

/** What the dashboard shows of one function. */
export interface FunctionFigures {
  readonly total: number;
  readonly errors: number;
  /** Invocations per second over the last `STATS_SHORT_WINDOW_SLOTS` seconds. */
  readonly ratePerSec: number;
  /** Invocations and failures in the last minute. */
  readonly lastMinute: number;
  readonly lastMinuteErrors: number;
  /** Over the last minute; null without invocations. Quantiles are bucket upper bounds. */
  readonly meanMs: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly lastAtMs: number | null;
  /** The code of the last failure, if any. */
  readonly lastError: string | null;
}

function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) if (ms <= LATENCY_BUCKETS_MS[i]!) return i;
  return LATENCY_BUCKETS_MS.length;
}

/** The upper bound of the bucket holding the q-quantile of `buckets` (n observations). */
function quantileMs(buckets: Uint32Array, n: number, q: number): number {
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += buckets[i]!;
    if (seen >= rank) return LATENCY_BUCKETS_MS[i] ?? Infinity;
  }
  return Infinity;
}

export class FunctionStats {
  private readonly series = new Map<string, Series>();

  /** One finished invocation: `error` is its code, or null when it succeeded. */
  record(name: string, error: string | null, ms: number, nowMs: number): void {
    let s = this.series.get(name);
    if (s === undefined) {
      if (this.series.size >= STATS_FUNCTIONS_MAX && name !== STATS_OVERFLOW_NAME) {
        this.record(STATS_OVERFLOW_NAME, error, ms, nowMs);
        return;
      }
      s = { total: 0, errors: 0, lastAtMs: 0, lastError: null, slots: [] };
      for (let i = 0; i < STATS_WINDOW_SLOTS; i++)
        s.slots.push({
          second: -1,
          count: 0,
          errors: 0,
          sumMs: 0,
          buckets: new Uint32Array(BUCKETS),
        });
      this.series.set(name, s);
    }
    const latency = Number.isFinite(ms) && ms >= 0 ? ms : 0;
    const second = Math.floor(nowMs / STATS_SLOT_MS);
    const slot = s.slots[second % STATS_WINDOW_SLOTS]!;
    if (slot.second !== second) {
      slot.second = second;
      slot.count = 0;
      slot.errors = 0;
      slot.sumMs = 0;
      slot.buckets.fill(0);
    }
    slot.count++;
    slot.sumMs += latency;
    slot.buckets[bucketOf(latency)]!++;
    s.total++;
    s.lastAtMs = Math.max(s.lastAtMs, nowMs);
    if (error !== null) {
      slot.errors++;
      s.errors++;
      s.lastError = error;
    }
  }

  /** The figures of `name` at `nowMs` (zeros for a function never invoked). */
  figures(name: string, nowMs: number): FunctionFigures {
    const s = this.series.get(name);
    if (s === undefined) {
      return {
        total: 0,
        errors: 0,
        ratePerSec: 0,
        lastMinute: 0,
        lastMinuteErrors: 0,
        meanMs: null,
        p50Ms: null,
        p99Ms: null,
        lastAtMs: null,
        lastError: null,
      };
    }
    const now = Math.floor(nowMs / STATS_SLOT_MS);
    const merged = new Uint32Array(BUCKETS);
    let count = 0;
    let errors = 0;
    let sumMs = 0;
    let recent = 0;
    for (const slot of s.slots) {
      const age = now - slot.second;
      if (slot.second < 0 || age < 0 || age >= STATS_WINDOW_SLOTS) continue;
      count += slot.count;
      errors += slot.errors;
      sumMs += slot.sumMs;
      for (let i = 0; i < BUCKETS; i++) merged[i]! += slot.buckets[i]!;
      if (age < STATS_SHORT_WINDOW_SLOTS) recent += slot.count;
    }
    return {
      total: s.total,
      errors: s.errors,
      ratePerSec: recent / ((STATS_SHORT_WINDOW_SLOTS * STATS_SLOT_MS) / 1000),
      lastMinute: count,
      lastMinuteErrors: errors,
      meanMs: count === 0 ? null : sumMs / count,
      p50Ms: count === 0 ? null : quantileMs(merged, count, 0.5),
      p99Ms: count === 0 ? null : quantileMs(merged, count, 0.99),
      lastAtMs: s.lastAtMs,
      lastError: s.lastError,
    };
  }

  /** Names with figures, in the order first seen. */
  names(): string[] {
    return [...this.series.keys()];
  }
}

/** A dispatcher that records each invocation's outcome and latency in `stats`. */
export class ObservedDispatcher implements Dispatcher {
  constructor(
    private readonly inner: Dispatcher,
    readonly stats: FunctionStats,
    private readonly now: () => number = Date.now,
  ) {}

  functions(): readonly FunctionInfo[] {
    return this.inner.functions();
  }

  async invoke(request: InvokeRequest): Promise<InvokeResult> {
    const started = performance.now();
    try {
      const r = await this.inner.invoke(request);
      this.stats.record(request.name, null, performance.now() - started, this.now());
      return r;
    } catch (err) {
      const code = err instanceof InvocationError ? err.code : "INTERNAL";
      this.stats.record(request.name, code, performance.now() - started, this.now());
      throw err;
    }
  }
}

/** Samples a `RateWindow` keeps per series. */
export const RATE_SAMPLES_MAX = 32;
/** The span a rate is taken over: the newest sample against the oldest within it. */
export const RATE_WINDOW_MS = 10_000;
/** Samples closer together than this replace each other (several viewers poll at once). */
export const RATE_SAMPLE_SPACING_MS = 250;
/** Most series a `RateWindow` keeps; the least recently sampled one is dropped beyond it. */
export const RATE_SERIES_MAX = 1024;

/**
 * Rates of cumulative counters (a log's metalog position, appends): each `sample` adds the
 * counter's value at a time and returns the rate per second over the last `RATE_WINDOW_MS`,
 * or null until two samples at least `RATE_SAMPLE_SPACING_MS` apart exist. A counter that
 * went down (a restarted node) starts its series again. I/O-free.
 */
export class RateWindow {
  private readonly series = new Map<string, Array<{ v: number; at: number }>>();

  sample(key: string, value: number | null, nowMs: number): number | null {
    if (value === null || !Number.isFinite(value)) return null;
    let s = this.series.get(key);
    if (s === undefined) {
      if (this.series.size >= RATE_SERIES_MAX) {
        const oldest = this.series.keys().next().value;
        if (oldest !== undefined) this.series.delete(oldest);
      }
      s = [];
    }
    // Re-inserting keeps the map in order of the latest sample, for the eviction above.
    this.series.delete(key);
    this.series.set(key, s);
    const last = s[s.length - 1];
    if (last !== undefined && value < last.v) s.length = 0;
    const newest = s[s.length - 1];
    if (newest !== undefined && nowMs - newest.at < RATE_SAMPLE_SPACING_MS && s.length > 1) s.pop();
    s.push({ v: value, at: nowMs });
    while (s.length > RATE_SAMPLES_MAX || (s.length > 2 && nowMs - s[1]!.at >= RATE_WINDOW_MS))
      s.shift();
    const first = s[0]!;
    const spanMs = nowMs - first.at;
    if (s.length < 2 || spanMs < RATE_SAMPLE_SPACING_MS) return null;
    return ((value - first.v) * 1000) / spanMs;
  }
}
