/**
 * Time as the roles see it. Roles never call `setTimeout` or `Date.now` themselves, so the
 * same code runs on the system clock and under a simulated one.
 */
export type TimerHandle = { readonly __timer: true };

export interface Clock {
  /** Milliseconds since an arbitrary origin; only differences mean anything. */
  now(): number;
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /**
   * Runs `callback` after the events already delivered in this turn of the event loop have
   * been handled (the system clock uses `setImmediate`). Roles batch with it: whatever
   * arrives in one turn leaves in one message.
   */
  afterTurn(callback: () => void): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(delayMs, callback) {
    return setTimeout(callback, delayMs) as unknown as TimerHandle;
  },
  clearTimer(handle) {
    clearTimeout(handle as unknown as NodeJS.Timeout);
  },
  afterTurn(callback) {
    setImmediate(callback);
  },
};
