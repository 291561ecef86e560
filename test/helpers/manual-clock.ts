import type { Clock, TimerHandle } from "../../src/clock/clock.js";

interface Timer {
  readonly id: number;
  at: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told: `advance(ms)` runs every timer due within `ms`, in
 * deadline order, each with `now()` at its deadline (so timers set by timers run too).
 */
export class ManualClock implements Clock {
  private time = 0;
  private nextId = 1;
  private readonly timers = new Map<number, Timer>();

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const t: Timer = { id: this.nextId++, at: this.time + Math.max(0, delayMs), callback };
    this.timers.set(t.id, t);
    return t.id as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    this.timers.delete(handle as unknown as number);
  }

  afterTurn(callback: () => void): void {
    setImmediate(callback);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.time + ms;
    while (true) {
      let next: Timer | null = null;
      for (const t of this.timers.values()) {
        if (
          t.at <= end &&
          (next === null || t.at < next.at || (t.at === next.at && t.id < next.id))
        ) {
          next = t;
        }
      }
      if (next === null) break;
      this.timers.delete(next.id);
      this.time = next.at;
      next.callback();
    }
    this.time = end;
  }
}
