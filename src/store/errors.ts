/**
 * Errors of the store. Each has a stable `code`, says whether a retry can help, and keeps
 * its `cause`. Bad arguments are the log's `InvalidArgumentError` (code INVALID_ARGUMENT);
 * failures of the log itself (timeouts, a closed log) reach callers unchanged.
 */

export type StoreErrorCode =
  /** A transaction lost to a conflicting committed write; running it again may succeed. */
  | "TRANSACTION_CONFLICT"
  /** A read or commit decision walked more records or bytes than its limit allows. */
  | "READ_LIMIT_EXCEEDED"
  /** An operation does not apply to the value at its path (type mismatch, index out of range). */
  | "OP_FAILED"
  /** The transaction was already committed or aborted. */
  | "TRANSACTION_CLOSED"
  /** A write in a read-only transaction. */
  | "READ_ONLY_TRANSACTION"
  /** A transaction wrote or read more objects than one commit record may carry. */
  | "TRANSACTION_TOO_LARGE";

/** Marks StoreErrors; global, so `instanceof` holds across copies of the library. */
const STORE_ERROR_CLASSES = Symbol.for("boki-ts.StoreError.classes");

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  /** True when the same call may succeed if tried again. */
  readonly retryable: boolean;

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (typeof value !== "object" || value === null) return false;
    const classes = (value as Record<symbol, unknown>)[STORE_ERROR_CLASSES];
    return Array.isArray(classes) && classes.includes(this.name);
  }

  constructor(
    code: StoreErrorCode,
    message: string,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    const classes: string[] = [];
    for (let c: unknown = new.target; c !== Error && typeof c === "function";) {
      classes.push((c as { name: string }).name);
      c = Object.getPrototypeOf(c);
    }
    Object.defineProperty(this, STORE_ERROR_CLASSES, { value: classes });
  }

  toJSON(): { code: StoreErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/**
 * The transaction's commit record lost: an object it read (serializable) or wrote (both
 * levels) had a committed write between its snapshot and its commit. Nothing it wrote is
 * visible. Retryable: run the transaction again (`store.transaction` does).
 */
export class TransactionConflictError extends StoreError {
  /** The object whose committed write caused the abort. */
  readonly object: string | undefined;
  /** The record of that write. */
  readonly conflictSeqnum: number | undefined;
  /** The transaction's own commit record (aborted). */
  readonly commitSeqnum: number;
  /** How many times the transaction ran (set by `store.transaction`). */
  readonly attempts: number;

  constructor(o: {
    object: string | undefined;
    conflictSeqnum: number | undefined;
    commitSeqnum: number;
    attempts?: number;
  }) {
    const attempts = o.attempts ?? 1;
    super(
      "TRANSACTION_CONFLICT",
      `transaction aborted (commit record ${o.commitSeqnum}): ` +
        (o.object === undefined
          ? "a conflicting write committed after its snapshot"
          : `object ${JSON.stringify(o.object)} has a committed write at ${o.conflictSeqnum} after its snapshot`) +
        (attempts > 1 ? `; gave up after ${attempts} attempts` : ""),
      { retryable: true },
    );
    this.object = o.object;
    this.conflictSeqnum = o.conflictSeqnum;
    this.commitSeqnum = o.commitSeqnum;
    this.attempts = attempts;
  }

  withAttempts(attempts: number): TransactionConflictError {
    return new TransactionConflictError({
      object: this.object,
      conflictSeqnum: this.conflictSeqnum,
      commitSeqnum: this.commitSeqnum,
      attempts,
    });
  }
}

/** Which limit a read hit. */
export type ReadLimit = "recordsWalkedMax" | "replayBytesMax" | "decisionsPendingMax";

/**
 * A read walked too far back without finding a checkpoint (or a commit decision had to
 * decide too many earlier transactions). Not retryable as such: raise the limit in
 * `StoreOptions`, or keep objects small enough to be checkpointed (see docs/store.md).
 */
export class ReadLimitError extends StoreError {
  readonly limit: ReadLimit;
  readonly limitValue: number;
  constructor(limit: ReadLimit, limitValue: number, what: string) {
    super("READ_LIMIT_EXCEEDED", `${what} exceeded ${limit} (${limitValue})`);
    this.limit = limit;
    this.limitValue = limitValue;
  }
}

export type OpFailure = "TYPE_MISMATCH" | "OUT_OF_RANGE" | "NOT_FINITE";

/**
 * An operation did not apply: e.g. `add` on a string, `push` on an object, `set` below a
 * number. A record whose operation fails changes nothing (all its operations on that
 * object are skipped, in every replay alike). Not retryable.
 */
export class OpFailedError extends StoreError {
  readonly reason: OpFailure;
  readonly object: string;
  /** Index of the failing operation in its batch (0 for a single operation). */
  readonly opIndex: number;
  constructor(reason: OpFailure, object: string, opIndex: number, detail: string) {
    super("OP_FAILED", `object ${JSON.stringify(object)}: ${detail}`);
    this.reason = reason;
    this.object = object;
    this.opIndex = opIndex;
  }
}

export class TransactionClosedError extends StoreError {
  constructor(state: string) {
    super("TRANSACTION_CLOSED", `the transaction is already ${state}`);
  }
}

export class ReadOnlyTransactionError extends StoreError {
  constructor() {
    super("READ_ONLY_TRANSACTION", "a read-only transaction cannot write");
  }
}

export class TransactionTooLargeError extends StoreError {
  constructor(what: string, limit: number) {
    super("TRANSACTION_TOO_LARGE", `a transaction may ${what} at most ${limit} objects`);
  }
}
