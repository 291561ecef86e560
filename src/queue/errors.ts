/**
 * Errors of the queue library. Each has a stable `code`, says whether a retry can help, and
 * keeps its `cause`. The log's own errors (a `BokiError`: TIMEOUT, OVERLOADED, LOG_CLOSED,
 * ...) pass through unchanged. Broken invariants are assertions that crash, not these.
 */

export type QueueErrorCode =
  /** An argument is malformed or out of range (never retryable). */
  | "INVALID_ARGUMENT"
  /** A message or a batch of messages is over its byte limit (never retryable). */
  | "MESSAGE_TOO_LARGE"
  /** The shard holds `SHARD_MESSAGES_SOFT_MAX` unfinished messages (retry once consumers catch up). */
  | "QUEUE_FULL"
  /** The queue exists with other settings (shards, maxDeliveries, ...) than the ones given. */
  | "QUEUE_CONFIG_MISMATCH"
  /** Catching up would read more than `CATCH_UP_RECORDS_MAX` records; progress is kept, retry. */
  | "CATCH_UP_LIMIT"
  /** A record the queue needs is gone from the log (trimmed by something else, or lost). */
  | "DATA_LOST"
  /** Waited `LOCK_WAIT_MS_MAX` for another call in this process to finish reading the shard. */
  | "TIMEOUT";

const RETRYABLE: ReadonlySet<QueueErrorCode> = new Set<QueueErrorCode>([
  "QUEUE_FULL",
  "CATCH_UP_LIMIT",
  "TIMEOUT",
]);

/** Marks QueueErrors; global, so `instanceof` holds across copies of the library. */
const QUEUE_ERROR_BRAND = Symbol.for("boki-ts.QueueError");

export class QueueError extends Error {
  readonly code: QueueErrorCode;
  /** True when the same call may succeed if made again later. */
  readonly retryable: boolean;

  static override [Symbol.hasInstance](value: unknown): boolean {
    return (
      typeof value === "object" &&
      value !== null &&
      (value as Record<symbol, unknown>)[QUEUE_ERROR_BRAND] === true
    );
  }

  constructor(code: QueueErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    Object.defineProperty(this, QUEUE_ERROR_BRAND, { value: true });
    this.name = "QueueError";
    this.code = code;
    this.retryable = RETRYABLE.has(code);
  }

  toJSON(): { code: QueueErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function invalid(message: string): QueueError {
  return new QueueError("INVALID_ARGUMENT", message);
}
