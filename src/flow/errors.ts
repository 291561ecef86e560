/**
 * Errors of `boki-ts/flow`. Each has a stable `code` and says whether retrying helps, as the
 * log's and the runtime's errors do. Test `err.code` rather than `instanceof` when a module
 * may load another copy of the library.
 */
import type { ErrorInfo } from "./records.js";

export type FlowErrorCode =
  /** Bad arguments to a flow API (the message says which). */
  | "INVALID_ARGUMENT"
  /** A step failed for good (its attempts ran out, or it threw a TerminalError). */
  | "STEP_FAILED"
  /** A synchronous call made with `wf.invoke` failed. */
  | "CALL_FAILED"
  /** The instance was cancelled. */
  | "CANCELLED"
  /** A re-execution asked for a different operation than the log holds at that position. */
  | "NON_DETERMINISTIC"
  /** Another execution of the instance wrote this step first; this one stops. */
  | "SUPERSEDED"
  /** The workflow failed (its handler threw). */
  | "WORKFLOW_FAILED"
  /** No instance with that id (never started, or trimmed after its retention). */
  | "NOT_FOUND"
  /** The id belongs to an instance of another workflow. */
  | "ID_CONFLICT"
  /** A flow record is not what flow writes: a broken invariant. */
  | "CORRUPT_RECORD";

export class FlowError extends Error {
  readonly code: FlowErrorCode;
  readonly retryable: boolean;
  constructor(
    code: FlowErrorCode,
    message: string,
    options: { cause?: unknown; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FlowError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/**
 * Thrown by a step's function to fail the step at once, without further attempts. Thrown
 * by a handler (or left uncaught from a failed step), it fails the workflow.
 */
export class TerminalError extends Error {
  readonly code: string;
  /** Retry policies read this: a terminal error is never retried. */
  readonly retryable = false;
  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TerminalError";
    this.code = options.code ?? "TERMINAL";
  }
}

/** A step failed for good; `step` names it, `cause` is what its function threw (as logged). */
export class StepFailedError extends FlowError {
  readonly step: string;
  readonly error: ErrorInfo;
  constructor(step: string, error: ErrorInfo) {
    super("STEP_FAILED", `step ${JSON.stringify(step)} failed: ${error.name}: ${error.message}`);
    this.name = "StepFailedError";
    this.step = step;
    this.error = error;
  }
}

/** A call made with `wf.invoke` failed; `error` is the callee's error (as logged). */
export class CallFailedError extends FlowError {
  readonly fn: string;
  readonly error: ErrorInfo;
  constructor(fn: string, error: ErrorInfo) {
    super(
      "CALL_FAILED",
      `call of ${JSON.stringify(fn)} failed: ${error.code ?? error.name}: ${error.message}`,
    );
    this.name = "CallFailedError";
    this.fn = fn;
    this.error = error;
  }
}

/**
 * Errors that end an execution without ending the instance: the instance goes on elsewhere
 * (superseded), later (asleep, or the log was unavailable), or after a code fix
 * (non-deterministic). They carry this mark so that a handler catching and rethrowing them,
 * or wrapping them, does not turn them into the workflow's failure.
 */
export const EXECUTION_STOP = Symbol.for("boki-ts.flow.execution-stop");

export function isExecutionStop(err: unknown): boolean {
  return (
    typeof err === "object" &&
    err !== null &&
    (err as Record<symbol, unknown>)[EXECUTION_STOP] === true
  );
}

export function stopExecution<E extends Error>(err: E): E {
  Object.defineProperty(err, EXECUTION_STOP, { value: true });
  return err;
}

/** The description of a thrown value that records keep. */
export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const message = err.message.length > 4096 ? `${err.message.slice(0, 4095)}…` : err.message;
    return typeof code === "string"
      ? { name: err.name, message, code }
      : { name: err.name, message };
  }
  let text: string;
  try {
    text = typeof err === "string" ? err : (JSON.stringify(err) ?? String(err));
  } catch {
    text = String(err);
  }
  return { name: "Error", message: text.slice(0, 4096) };
}

/** Whether a retry policy may try again after `err`. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TerminalError) return false;
  const r = (err as { retryable?: unknown } | null)?.retryable;
  return r !== false;
}
