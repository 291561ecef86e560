/**
 * The simulator's one source of randomness: a small, fast generator (sfc32) seeded from a
 * 32-bit seed. Every delay and every fault of a run is drawn from it, in the order the run
 * asks, so the same seed gives the same run.
 */
import { InvalidArgumentError } from "../log/errors.js";

/** Largest seed accepted (seeds are unsigned 32-bit integers). */
export const SEED_MAX = 0xffff_ffff;

export function checkSeed(seed: unknown): number {
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) {
    throw new InvalidArgumentError(
      `a seed must be an integer in [0, ${SEED_MAX}], got ${String(seed)}`,
    );
  }
  return seed;
}

export class SimRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Draws so far (printed in traces, to spot where two runs part). */
  draws = 0;

  constructor(readonly seed: number) {
    checkSeed(seed);
    // splitmix32 spreads the seed over the four words of state.
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
    this.draws = 0;
  }

  /** A uniform unsigned 32-bit integer. */
  u32(): number {
    this.draws++;
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + this.float() * (hi - lo);
  }

  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new InvalidArgumentError("pick from an empty list");
    return items[this.int(items.length)]!;
  }

  /** Exponentially distributed with the given mean (for times between events). */
  exponential(mean: number): number {
    return -Math.log(1 - this.float()) * mean;
  }
}
