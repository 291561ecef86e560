/**
 * Caller-side latency histogram over hdr-histogram-js. Values are recorded in nanoseconds
 * (three significant digits, so sub-microsecond resolution) and reported in milliseconds.
 */
import hdr from "hdr-histogram-js";
import type { Histogram } from "hdr-histogram-js";

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

/** Highest latency tracked without resizing: 60 s in ns. */
const HIGHEST_NS = 60_000_000_000;

export class LatencyHistogram {
  private readonly h: Histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_NS,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });

  /** Records one latency given as two `performance.now()` readings (milliseconds). */
  recordSpan(startMs: number, endMs: number): void {
    this.h.recordValue(Math.max(0, Math.round((endMs - startMs) * 1e6)));
  }

  get count(): number {
    return this.h.totalCount;
  }

  summary(): LatencySummary {
    const ms = (ns: number): number => ns / 1e6;
    const max = this.h.maxValue;
    // Percentiles come back as the top of their bucket, which can exceed the exact max.
    const at = (p: number): number => ms(Math.min(this.h.getValueAtPercentile(p), max));
    return {
      count: this.h.totalCount,
      p50Ms: at(50),
      p99Ms: at(99),
      p999Ms: at(99.9),
      maxMs: ms(max),
      meanMs: ms(this.h.mean),
    };
  }

  destroy(): void {
    this.h.destroy();
  }
}
