/**
 * Operating errors of the coordination store. They are `BokiError`s: each has a stable
 * `code`, says whether a retry can help, and keeps its `cause`. Arguments that break the
 * store's rules fail with `InvalidArgumentError`, keys and values over their size limit with
 * `RecordTooLargeError`, and bounded waits with `TimeoutError` (all from `src/log/errors.ts`).
 */
import { BokiError } from "../log/errors.js";

/**
 * The store could not be reached (etcd down, connection lost) or failed to answer. Retrying
 * later can help. When `outcomeUnknown` is true the request may have been applied before the
 * failure: read the key to learn whether it was.
 */
export class CoordUnavailableError extends BokiError {
  readonly outcomeUnknown: boolean;
  constructor(message: string, options: { cause?: unknown; outcomeUnknown?: boolean } = {}) {
    super("UNAVAILABLE", message, { retryable: true, cause: options.cause });
    this.outcomeUnknown = options.outcomeUnknown ?? false;
  }
}

/**
 * A lease ended without being revoked by its owner: it expired, or its keep-alives failed for
 * longer than its TTL. Its keys are gone (or will be once the store notices). Also the reason
 * a leadership ends when its lease does, or when its election key was deleted.
 */
export class LeaseLostError extends BokiError {
  constructor(message: string, cause?: unknown) {
    super("LEASE_LOST", message, { cause });
  }
}

/** The file-backed store's directory is in use by another process (see its lock file). */
export class StoreLockedError extends BokiError {
  readonly lockPath: string;
  readonly ownerPid: number;
  constructor(lockPath: string, ownerPid: number) {
    super(
      "STORE_LOCKED",
      `the coordination store is in use by process ${ownerPid} (lock file ${lockPath}); ` +
        "the file-backed store serves one process: use etcd to share coordination between processes",
    );
    this.lockPath = lockPath;
    this.ownerPid = ownerPid;
  }
}

/** The store (this client) was closed; the operation was not performed or was abandoned. */
export class StoreClosedError extends BokiError {
  constructor(message = "the coordination store is closed") {
    super("STORE_CLOSED", message);
  }
}

/** A named limit of the store was reached (entries in a list, leases, watches, state size). */
export class LimitExceededError extends BokiError {
  readonly limit: number;
  constructor(message: string, limit: number) {
    super("LIMIT_EXCEEDED", message);
    this.limit = limit;
  }
}
