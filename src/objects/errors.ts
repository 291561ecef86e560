/**
 * Errors of `boki-ts/objects`. A handler fails a request by throwing; a `HandlerError`
 * carries a code of the handler's choosing (e.g. "INSUFFICIENT_FUNDS") that callers and
 * coordinators see as it is.
 */
import type { ErrorInfo } from "./records.js";

export type ObjectErrorCode =
  | "INVALID_ARGUMENT"
  | "HANDLER_NOT_FOUND"
  | "OBJECT_NOT_FOUND"
  /** A transaction's prepare met a lock of an older transaction (wait-die): retry it. */
  | "TXN_DIED"
  /** Too many requests wait behind a transaction's lock. */
  | "OBJECT_BUSY"
  /** No result within the invocation's time limit; the request stays and is applied later. */
  | "TIMEOUT"
  | "STATE_TOO_LARGE"
  /** A shared (read-only) handler tried to change state. */
  | "READ_ONLY"
  | "CORRUPT_RECORD";

export class ObjectError extends Error {
  readonly code: ObjectErrorCode;
  readonly retryable: boolean;
  constructor(
    code: ObjectErrorCode,
    message: string,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ObjectError";
    this.code = code;
    this.retryable =
      options.retryable ?? (code === "TXN_DIED" || code === "OBJECT_BUSY" || code === "TIMEOUT");
  }
}

/** Thrown by a handler to fail its request with a code of its own. */
export class HandlerError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "HandlerError";
    this.code = code;
  }
}

/** A request failed: `error` is what its handler threw (or why it was refused), as logged. */
export class RequestFailedError extends Error {
  readonly code: string;
  readonly error: ErrorInfo;
  readonly retryable: boolean;
  constructor(what: string, error: ErrorInfo) {
    super(`${what} failed: ${error.code ?? error.name}: ${error.message}`);
    this.name = "RequestFailedError";
    this.code = error.code ?? "HANDLER_ERROR";
    this.error = error;
    this.retryable =
      error.code === "TXN_DIED" || error.code === "OBJECT_BUSY" || error.code === "TIMEOUT";
  }
}

export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const message = err.message.length > 4096 ? `${err.message.slice(0, 4095)}…` : err.message;
    return typeof code === "string"
      ? { name: err.name, message, code }
      : { name: err.name, message };
  }
  return { name: "Error", message: String(err).slice(0, 4096) };
}
