/**
 * Retry policies of steps, as data. A step's function runs up to `maxAttempts` times; the
 * pause before attempt n+1 is `initialIntervalMs * backoffFactor^(n-1)`, at most
 * `maxIntervalMs`. A `TerminalError` (or any error with `retryable: false`) stops at once.
 */
import { FlowError } from "./errors.js";

export interface RetryPolicy {
  /** Pause before the second attempt, ms (default 100). */
  readonly initialIntervalMs?: number;
  /** Each pause is this many times the one before (default 2). */
  readonly backoffFactor?: number;
  /** Longest pause, ms (default 10,000). */
  readonly maxIntervalMs?: number;
  /** Attempts in all, the first included (default 3; 1: no retry). */
  readonly maxAttempts?: number;
}

export type ResolvedRetryPolicy = Required<RetryPolicy>;

export const RETRY_POLICY_DEFAULT: ResolvedRetryPolicy = Object.freeze({
  initialIntervalMs: 100,
  backoffFactor: 2,
  maxIntervalMs: 10_000,
  maxAttempts: 3,
});
/** Most attempts a policy may ask for. */
export const RETRY_ATTEMPTS_MAX = 1000;
/** Longest pause a policy may ask for, ms (longer waits belong in `wf.sleep`). */
export const RETRY_INTERVAL_MS_MAX = 10 * 60_000;

function bad(message: string): never {
  throw new FlowError("INVALID_ARGUMENT", `retry policy: ${message}`);
}

/** The policy with defaults filled in; a bad field fails with an exact message. */
export function resolveRetryPolicy(p: RetryPolicy | undefined): ResolvedRetryPolicy {
  if (p === undefined) return RETRY_POLICY_DEFAULT;
  if (typeof p !== "object" || p === null) bad("must be an object");
  const r = { ...RETRY_POLICY_DEFAULT, ...p };
  if (
    typeof r.initialIntervalMs !== "number" ||
    !(r.initialIntervalMs > 0) ||
    r.initialIntervalMs > RETRY_INTERVAL_MS_MAX
  )
    bad(
      `initialIntervalMs must be in (0, ${RETRY_INTERVAL_MS_MAX}], got ${String(r.initialIntervalMs)}`,
    );
  if (typeof r.backoffFactor !== "number" || !(r.backoffFactor >= 1) || r.backoffFactor > 100)
    bad(`backoffFactor must be in [1, 100], got ${String(r.backoffFactor)}`);
  if (
    typeof r.maxIntervalMs !== "number" ||
    !(r.maxIntervalMs >= r.initialIntervalMs) ||
    r.maxIntervalMs > RETRY_INTERVAL_MS_MAX
  )
    bad(
      `maxIntervalMs must be in [initialIntervalMs, ${RETRY_INTERVAL_MS_MAX}], got ${String(r.maxIntervalMs)}`,
    );
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1 || r.maxAttempts > RETRY_ATTEMPTS_MAX)
    bad(
      `maxAttempts must be an integer in [1, ${RETRY_ATTEMPTS_MAX}], got ${String(r.maxAttempts)}`,
    );
  return r;
}

/** The pause after failed attempt `attempt` (1-based), ms. */
export function retryDelayMs(p: ResolvedRetryPolicy, attempt: number): number {
  return Math.min(p.maxIntervalMs, p.initialIntervalMs * p.backoffFactor ** (attempt - 1));
}
