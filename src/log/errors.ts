/**
 * Operating errors of the log. Each has a stable `code`, says whether a retry can help,
 * and keeps its `cause`. Broken invariants are not errors of this kind: they are
 * assertions (see `assert.ts`) that crash loudly.
 */

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "RECORD_TOO_LARGE"
  | "BOOK_EMPTY"
  | "NOT_FOUND"
  | "TIMEOUT"
  | "LOG_CLOSED"
  | "COND_APPEND_FAILED"
  | "APPEND_DISCARDED"
  | "DATA_LOST"
  | "OVERLOADED"
  | "INTERNAL"
  // Coordination store (src/coord):
  | "UNAVAILABLE"
  | "LEASE_LOST"
  | "STORE_LOCKED"
  | "STORE_CLOSED"
  | "LIMIT_EXCEEDED";

export interface BokiErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

/** The class names of a BokiError, from its own class up; global, so it works across copies. */
const ERROR_CLASSES = Symbol.for("boki-ts.BokiError.classes");

export class BokiError extends Error {
  readonly code: ErrorCode;
  /** True when the same call may succeed if tried again later. */
  readonly retryable: boolean;

  /**
   * `instanceof` also holds across copies of the library (a function module may load its
   * own copy, say as CommonJS): an error is an instance of a class whose name it carries.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (typeof value !== "object" || value === null) return false;
    const classes = (value as Record<symbol, unknown>)[ERROR_CLASSES];
    return Array.isArray(classes) && classes.includes(this.name);
  }

  constructor(code: ErrorCode, message: string, options: BokiErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    const classes: string[] = [];
    for (let c: unknown = new.target; c !== Error && typeof c === "function";) {
      classes.push((c as { name: string }).name);
      c = Object.getPrototypeOf(c);
    }
    Object.defineProperty(this, ERROR_CLASSES, { value: classes });
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** An argument was malformed: wrong type, out of range, or not allowed. Never retryable. */
export class InvalidArgumentError extends BokiError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

export class RecordTooLargeError extends BokiError {
  readonly sizeBytes: number;
  readonly limitBytes: number;
  constructor(what: string, sizeBytes: number, limitBytes: number) {
    super("RECORD_TOO_LARGE", `${what} is ${sizeBytes} bytes; the limit is ${limitBytes} bytes`);
    this.sizeBytes = sizeBytes;
    this.limitBytes = limitBytes;
  }
}

/** The operation needs at least one record in the book (or sub-stream) and there is none. */
export class BookEmptyError extends BokiError {
  constructor(message: string) {
    super("BOOK_EMPTY", message);
  }
}

export class NotFoundError extends BokiError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}

export class TimeoutError extends BokiError {
  constructor(message: string, cause?: unknown) {
    super("TIMEOUT", message, { retryable: true, cause });
  }
}

export class LogClosedError extends BokiError {
  constructor(message = "the log is closed") {
    super("LOG_CLOSED", message);
  }
}

/**
 * A conditional append lost: the sub-stream already had a different number of records.
 * The record was ordered but is never visible. Retrying the same condition cannot succeed.
 */
export class CondAppendFailedError extends BokiError {
  /** How many records the condition's sub-stream held when the append was ordered. */
  readonly actualPosition: number;
  /**
   * The metalog position at which the failure was decided: the record that took the
   * position is visible there, so the session that saw the failure moves up to it.
   */
  readonly decidedAt: number | undefined;
  constructor(expected: number, actual: number, decidedAt?: number) {
    super(
      "COND_APPEND_FAILED",
      `conditional append expected position ${expected} in its sub-stream, found ${actual}`,
    );
    this.actualPosition = actual;
    this.decidedAt = decidedAt;
  }
}

/** A reconfiguration discarded the append before it was ordered; it was not written. */
export class AppendDiscardedError extends BokiError {
  constructor(message = "the append was discarded by a reconfiguration") {
    super("APPEND_DISCARDED", message, { retryable: true });
  }
}

/** A record the index knows of can no longer be read from any replica. */
export class DataLostError extends BokiError {
  constructor(message: string) {
    super("DATA_LOST", message);
  }
}

/** A named limit on in-flight work was reached; retry after some of it completes. */
export class OverloadedError extends BokiError {
  constructor(message: string) {
    super("OVERLOADED", message, { retryable: true });
  }
}

/** An unexpected failure on the far side of a request; the message says what. */
export class InternalError extends BokiError {
  constructor(message: string) {
    super("INTERNAL", message);
  }
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "INVALID_ARGUMENT",
  "RECORD_TOO_LARGE",
  "BOOK_EMPTY",
  "NOT_FOUND",
  "TIMEOUT",
  "LOG_CLOSED",
  "COND_APPEND_FAILED",
  "APPEND_DISCARDED",
  "DATA_LOST",
  "OVERLOADED",
  "INTERNAL",
  "UNAVAILABLE",
  "LEASE_LOST",
  "STORE_LOCKED",
  "STORE_CLOSED",
  "LIMIT_EXCEEDED",
]);

/** Rebuilds a typed error from its wire form ({ code, message }). */
export function errorFromWire(e: { code: string; message: string }): BokiError {
  const code = CODES.has(e.code) ? (e.code as ErrorCode) : "INTERNAL";
  const retryable =
    code === "TIMEOUT" ||
    code === "APPEND_DISCARDED" ||
    code === "OVERLOADED" ||
    code === "UNAVAILABLE";
  return new BokiError(code, e.message, { retryable });
}
