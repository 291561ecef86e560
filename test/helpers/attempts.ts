/** Appends a failure test issued, and how long the system took to serve them again. */

export interface Attempt {
  readonly engine: string;
  readonly startedAt: number;
  /** When it was acknowledged; null while pending or when it failed. */
  okAt: number | null;
}

/**
 * Time from `since` until every engine of `engines` acknowledged an append issued at or after
 * it (the worst over the engines), or null while one has not.
 */
export function recoveryTime(
  attempts: readonly Attempt[],
  since: number,
  engines: readonly string[],
): number | null {
  let worst = 0;
  for (const e of engines) {
    const first = attempts.find((a) => a.engine === e && a.startedAt >= since && a.okAt !== null);
    if (first === undefined) return null;
    worst = Math.max(worst, first.okAt! - since);
  }
  return worst;
}
