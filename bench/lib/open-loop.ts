/**
 * Open-loop, fixed-arrival-rate runner: request i is due at `start + i / rate`, whether or not
 * earlier ones have completed, as users arrive at a web application. Latency is measured from
 * the request's due time, not from when it could be sent, so a system that falls behind is
 * charged for the queue it builds (no coordinated omission).
 *
 * The first `warmupMs` are discarded; requests due inside the following `measureMs` window
 * count. Requests that cannot be sent because `inFlightMax` are already outstanding are
 * counted as `shed` (the system is saturated); so are failures, separately. A run ends when
 * the window's requests have all completed, or `drainMs` after the window, whichever is
 * first; requests still outstanding then are counted as `late`.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { LatencyHistogram, type LatencySummary } from "./histogram.js";

export interface OpenLoopOptions {
  /** Requests per second offered. */
  readonly rate: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Requests outstanding at most; beyond it, due requests are shed. */
  readonly inFlightMax: number;
  /** How long after the window outstanding requests may still complete. */
  readonly drainMs: number;
  /**
   * Sends request `i` (0-based); resolves with its kind (for per-kind latency) and whether it
   * succeeded. It must not reject for a failed request; a rejection aborts the run.
   */
  readonly send: (i: number) => Promise<{ kind: string; ok: boolean }>;
}

export interface OpenLoopResult {
  readonly offeredPerSec: number;
  /** Requests of the window that completed successfully, per second of window. */
  readonly achievedPerSec: number;
  readonly windowMs: number;
  readonly due: number;
  readonly ok: number;
  readonly failed: number;
  readonly shed: number;
  readonly late: number;
  /** Highest number of requests outstanding at once. */
  readonly inFlightPeak: number;
  /** Latency of the window's successful requests, from their due time. */
  readonly latency: LatencySummary;
  readonly byKind: Readonly<Record<string, LatencySummary>>;
  /** How far behind schedule the sender ever was, ms (the load generator's own lag). */
  readonly senderLagMaxMs: number;
}

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/** The sender's tick: it wakes this often and sends every request that has come due. */
const TICK_MS = 1;

export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  if (!(o.rate > 0)) throw new Error(`rate must be > 0, got ${o.rate}`);
  const all = new LatencyHistogram();
  const kinds = new Map<string, LatencyHistogram>();
  const start = performance.now();
  const measureStart = start + o.warmupMs;
  const measureEnd = measureStart + o.measureMs;
  const total = Math.floor(((o.warmupMs + o.measureMs) / 1000) * o.rate);
  const interval = 1000 / o.rate;
  let inFlight = 0;
  let inFlightPeak = 0;
  let windowOutstanding = 0;
  let due = 0;
  let ok = 0;
  let failed = 0;
  let shed = 0;
  let lagMax = 0;
  let error: unknown;
  let allSettled: (() => void) | undefined;

  const one = (i: number, dueAt: number, counts: boolean): void => {
    inFlight++;
    if (inFlight > inFlightPeak) inFlightPeak = inFlight;
    if (counts) windowOutstanding++;
    o.send(i).then(
      (r) => {
        const t = performance.now();
        inFlight--;
        if (!counts) return;
        windowOutstanding--;
        if (r.ok) {
          ok++;
          all.recordSpan(dueAt, t);
          let h = kinds.get(r.kind);
          if (h === undefined) kinds.set(r.kind, (h = new LatencyHistogram()));
          h.recordSpan(dueAt, t);
        } else {
          failed++;
        }
        if (windowOutstanding === 0) allSettled?.();
      },
      (err: unknown) => {
        inFlight--;
        if (counts) windowOutstanding--;
        error ??= err;
        allSettled?.();
      },
    );
  };

  try {
    for (let i = 0; i < total && error === undefined;) {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        const dueAt = start + i * interval;
        lagMax = Math.max(lagMax, now - dueAt);
        const counts = dueAt >= measureStart && dueAt < measureEnd;
        if (counts) due++;
        if (inFlight >= o.inFlightMax) {
          if (counts) shed++;
        } else {
          one(i, dueAt, counts);
        }
        i++;
      }
      await sleep(TICK_MS);
    }
    if (error !== undefined) throw asError(error);
    if (windowOutstanding > 0) {
      const drained = new Promise<void>((resolve) => (allSettled = resolve));
      await Promise.race([drained, sleep(Math.max(0, measureEnd + o.drainMs - performance.now()))]);
    }
    if (error !== undefined) throw asError(error);
    const byKind: Record<string, LatencySummary> = {};
    for (const [k, h] of [...kinds].sort((a, b) => a[0].localeCompare(b[0])))
      byKind[k] = h.summary();
    return {
      offeredPerSec: o.rate,
      achievedPerSec: ok / (o.measureMs / 1000),
      windowMs: o.measureMs,
      due,
      ok,
      failed,
      shed,
      late: windowOutstanding,
      inFlightPeak,
      latency: all.summary(),
      byKind,
      senderLagMaxMs: lagMax,
    };
  } finally {
    all.destroy();
    for (const h of kinds.values()) h.destroy();
  }
}
