/** Backoff between transaction retries: pure, with the randomness passed in. */
import { RETRY_BACKOFF_BASE_MS, RETRY_BACKOFF_CAP_MS } from "./limits.js";

/**
 * Milliseconds to wait before retry number `attempt` (1 for the first retry): exponential
 * from `RETRY_BACKOFF_BASE_MS`, capped at `RETRY_BACKOFF_CAP_MS`, with "equal jitter"
 * (half fixed, half random) so that transactions that conflicted together spread out.
 */
export function backoffMs(attempt: number, random: () => number): number {
  const exp = Math.min(RETRY_BACKOFF_CAP_MS, RETRY_BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  const r = Math.min(1, Math.max(0, random()));
  return exp / 2 + (exp / 2) * r;
}
