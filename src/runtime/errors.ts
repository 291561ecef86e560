/**
 * Errors of the function runtime, as callers of an invocation see them. Each has a stable
 * `code` (which the gateway maps to an HTTP status), says whether a retry can help, and
 * travels as `{ code, message }` between threads, processes and the log.
 */
import { BokiError } from "../log/errors.js";
import { ERROR_MESSAGE_CHARS_MAX } from "./limits.js";

export type InvocationErrorCode =
  /** The request was malformed: bad JSON, bad header, bad function name or book. */
  | "INVALID_ARGUMENT"
  /** No function of that name is loaded. */
  | "FUNCTION_NOT_FOUND"
  /** No invocation of that id is recorded (or the route does not exist). */
  | "NOT_FOUND"
  /** The input or output is larger than `PAYLOAD_BYTES_MAX`. */
  | "PAYLOAD_TOO_LARGE"
  /** An `Idempotency-Key` was used before for another function or another input. */
  | "IDEMPOTENCY_CONFLICT"
  /** The function threw (or rejected); the message says what it threw. */
  | "FUNCTION_ERROR"
  /** The function returned something that is not a JSON value. */
  | "INVALID_OUTPUT"
  /** The invocation did not finish within its time limit. */
  | "TIMEOUT"
  /** Too much work queued: no worker slot, or the async backlog is full. Retry later. */
  | "OVERLOADED"
  /** The worker running the invocation died or was replaced; the function may have run partly. */
  | "WORKER_LOST"
  /** The runtime is shutting down or its log is closed. */
  | "UNAVAILABLE"
  /** An unexpected failure; the message says what. */
  | "INTERNAL";

const CODES: ReadonlySet<string> = new Set<InvocationErrorCode>([
  "INVALID_ARGUMENT",
  "FUNCTION_NOT_FOUND",
  "NOT_FOUND",
  "PAYLOAD_TOO_LARGE",
  "IDEMPOTENCY_CONFLICT",
  "FUNCTION_ERROR",
  "INVALID_OUTPUT",
  "TIMEOUT",
  "OVERLOADED",
  "WORKER_LOST",
  "UNAVAILABLE",
  "INTERNAL",
]);

const RETRYABLE: ReadonlySet<InvocationErrorCode> = new Set<InvocationErrorCode>([
  "TIMEOUT",
  "OVERLOADED",
  "WORKER_LOST",
  "UNAVAILABLE",
]);

/** The wire form of an invocation error. */
export interface InvocationErrorJSON {
  readonly code: InvocationErrorCode;
  readonly message: string;
}

/** Marks InvocationErrors; global, so `instanceof` holds across copies of the library. */
const INVOCATION_ERROR_BRAND = Symbol.for("boki-ts.InvocationError");

export class InvocationError extends Error {
  readonly code: InvocationErrorCode;
  /** True when the same request may succeed if sent again later. */
  readonly retryable: boolean;

  /**
   * A function module may load its own copy of boki-ts (say, the built one while the
   * runtime runs from source); errors the runtime throws into it still pass `instanceof`.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return (
      typeof value === "object" &&
      value !== null &&
      (value as Record<symbol, unknown>)[INVOCATION_ERROR_BRAND] === true
    );
  }

  constructor(code: InvocationErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(truncate(message), options.cause === undefined ? undefined : { cause: options.cause });
    Object.defineProperty(this, INVOCATION_ERROR_BRAND, { value: true });
    this.name = "InvocationError";
    this.code = code;
    this.retryable = RETRYABLE.has(code);
  }

  toJSON(): InvocationErrorJSON {
    return { code: this.code, message: this.message };
  }

  /** Rebuilds an error from its wire form; an unknown code becomes INTERNAL. */
  static fromJSON(e: { code: unknown; message: unknown }): InvocationError {
    const code =
      typeof e.code === "string" && CODES.has(e.code)
        ? (e.code as InvocationErrorCode)
        : "INTERNAL";
    return new InvocationError(code, typeof e.message === "string" ? e.message : String(e.message));
  }
}

export function truncate(message: string, max = ERROR_MESSAGE_CHARS_MAX): string {
  return message.length > max ? message.slice(0, max - 1) + "…" : message;
}

/**
 * The invocation error for a failure of the runtime's own log work (recording a request,
 * reading a result). A function's own failures are FUNCTION_ERROR instead.
 */
export function fromLogError(err: unknown, doing: string): InvocationError {
  if (err instanceof InvocationError) return err;
  if (err instanceof BokiError) {
    const message = `${doing}: ${err.message}`;
    switch (err.code) {
      case "INVALID_ARGUMENT":
        return new InvocationError("INVALID_ARGUMENT", message, { cause: err });
      case "RECORD_TOO_LARGE":
        return new InvocationError("PAYLOAD_TOO_LARGE", message, { cause: err });
      case "OVERLOADED":
        return new InvocationError("OVERLOADED", message, { cause: err });
      case "LOG_CLOSED":
        return new InvocationError("UNAVAILABLE", message, { cause: err });
      case "TIMEOUT":
      case "APPEND_DISCARDED":
        return new InvocationError("UNAVAILABLE", message, { cause: err });
      default:
        return new InvocationError("INTERNAL", `${doing}: ${err.code}: ${err.message}`, {
          cause: err,
        });
    }
  }
  return new InvocationError("INTERNAL", `${doing}: ${describeThrown(err)}`, { cause: err });
}

/** "Name: message" for an Error, or a short description of whatever else was thrown. */
export function describeThrown(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const prefix = typeof code === "string" ? `${err.name} ${code}` : err.name;
    return `${prefix}: ${err.message}`;
  }
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

/** A function module could not be loaded, or the modules do not define a usable set of functions. */
export class FunctionLoadError extends Error {
  /** The module file the error is about, when there is one. */
  readonly file: string | undefined;

  constructor(message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FunctionLoadError";
    this.file = options.file;
  }
}
