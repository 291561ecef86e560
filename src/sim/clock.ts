/**
 * Simulated time. `SimScheduler` is the only clock of a simulated cluster: timers, network
 * deliveries and disk completions are events in one queue, ordered by (time, insertion), and
 * `run` executes them one at a time. After each event every promise continuation it caused
 * runs before the next event (the queue waits for a `setImmediate`, which Node runs only once
 * the microtask queue is empty), as in a real event loop. Nothing else in a run advances, so
 * the order of everything is a function of the seed.
 *
 * Each node sees the scheduler through its own `NodeClock`, which forgets the node's timers
 * when the node crashes.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import { InvalidArgumentError } from "../log/errors.js";

/** Most events one run may execute: a run that needs more is stuck in a loop. */
export const SIM_EVENTS_MAX = 50_000_000;
/**
 * Most events in one simulated second. A cluster under the simulator's load runs some
 * thousands; more means nodes are flooding each other (say, a retry loop with no pause).
 */
export const SIM_EVENTS_PER_SECOND_MAX = 1_000_000;
/** Most events pending at once. */
export const SIM_PENDING_EVENTS_MAX = 5_000_000;

interface SimEvent {
  readonly at: number;
  readonly seq: number;
  fn: (() => void) | null;
}

export class SimScheduler implements Clock {
  private time = 0;
  private seq = 0;
  private readonly heap: SimEvent[] = [];
  /** Events executed so far. */
  executed = 0;
  private windowStart = 0;
  private windowEvents = 0;

  now(): number {
    return this.time;
  }

  /** Runs `fn` at `now() + delayMs` (never earlier than now). */
  setTimer(delayMs: number, fn: () => void): TimerHandle {
    if (!Number.isFinite(delayMs)) throw new InvalidArgumentError(`timer delay ${delayMs}`);
    return this.push(this.time + Math.max(0, delayMs), fn) as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    (handle as unknown as SimEvent).fn = null;
  }

  /** Runs `fn` after the events already due now. */
  afterTurn(fn: () => void): void {
    this.push(this.time, fn);
  }

  get pending(): number {
    return this.heap.length;
  }

  private push(at: number, fn: () => void): SimEvent {
    if (this.heap.length >= SIM_PENDING_EVENTS_MAX) {
      throw new InvalidArgumentError(
        `more than ${SIM_PENDING_EVENTS_MAX} simulated events pending`,
      );
    }
    const e: SimEvent = { at, seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
    return e;
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
      if (!before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }

  /**
   * Executes events up to time `until` (then time stands at `until`), or until `stop`
   * returns true after an event. Rejects if the event budget runs out.
   */
  async run(until: number, stop?: () => boolean): Promise<void> {
    for (;;) {
      const next = this.heap[0];
      if (next === undefined || next.at > until) break;
      this.pop();
      const fn = next.fn;
      if (fn === null) continue;
      next.fn = null;
      this.time = next.at;
      if (++this.executed > SIM_EVENTS_MAX) {
        throw new InvalidArgumentError(`the run exceeded ${SIM_EVENTS_MAX} events`);
      }
      if (this.time - this.windowStart >= 1000) {
        this.windowStart = this.time;
        this.windowEvents = 0;
      }
      if (++this.windowEvents > SIM_EVENTS_PER_SECOND_MAX) {
        throw new InvalidArgumentError(
          `more than ${SIM_EVENTS_PER_SECOND_MAX} events within one simulated second: a message storm`,
        );
      }
      fn();
      await drain();
      if (stop?.() === true) return;
    }
    this.time = Math.max(this.time, until);
  }
}

function before(x: SimEvent, y: SimEvent): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

/** Resolves once every pending promise continuation has run. */
function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * One node's view of the scheduler. `crash` cancels every timer the node set and makes it
 * deaf to time from then on: a crashed node's code never runs again.
 */
export class NodeClock implements Clock {
  private readonly timers = new Set<TimerHandle>();
  private dead = false;

  constructor(private readonly scheduler: SimScheduler) {}

  now(): number {
    return this.scheduler.now();
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    if (this.dead) return { __timer: true };
    const handle = this.scheduler.setTimer(delayMs, () => {
      this.timers.delete(handle);
      if (!this.dead) fn();
    });
    this.timers.add(handle);
    return handle;
  }

  clearTimer(handle: TimerHandle): void {
    if (this.timers.delete(handle)) this.scheduler.clearTimer(handle);
  }

  afterTurn(fn: () => void): void {
    if (this.dead) return;
    this.scheduler.afterTurn(() => {
      if (!this.dead) fn();
    });
  }

  get isDead(): boolean {
    return this.dead;
  }

  crash(): void {
    this.dead = true;
    for (const t of this.timers) this.scheduler.clearTimer(t);
    this.timers.clear();
  }
}
