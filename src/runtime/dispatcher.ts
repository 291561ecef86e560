/**
 * The seams between the gateway, the places functions run, and the log. The gateway talks
 * only to a `Dispatcher`; in one process that is the `FunctionHost` itself, in a cluster a
 * dispatcher that balances invocations over engines. Both give functions their LogBooks
 * through a `LogProvider`: the embedded log, or an engine's own log.
 */
import type { LogBook } from "../log/api.js";
import type { InvocationId } from "./ids.js";
import type { JsonValue } from "./json.js";

/** Where LogBook sessions come from. `EmbeddedLog` is one. */
export interface LogProvider {
  /**
   * A LogBook session for `book`, starting at metalog `position` (default: at least
   * everything acknowledged before the call).
   */
  book(book: number, options?: { position?: number }): LogBook;
}

/** A function as callers see it. */
export interface FunctionInfo {
  readonly name: string;
  /** The book invocations use when the request names none (undefined: book 0). */
  readonly book: number | undefined;
  /** The function's time limit in ms (its own, else its host's default). */
  readonly timeoutMs: number;
  /** What it is, when a library says ("workflow", ...). */
  readonly kind?: string;
  /** Set for a function the runtime runs every `everyMs`. */
  readonly scheduleEveryMs?: number;
  /** A library's description of it (e.g. the queue a consumer is bound to). */
  readonly meta?: JsonValue;
}

export interface InvokeRequest {
  readonly name: string;
  /** The input as JSON text. */
  readonly inputJson: string;
  readonly book: number;
  /**
   * Metalog position the invocation starts at: a nested invocation passes its caller's, so
   * it reads what the caller wrote. Default: whatever the log has acknowledged.
   */
  readonly position?: number;
  readonly invocationId: InvocationId;
  /** When the invocation fails with TIMEOUT, in ms since the epoch. */
  readonly deadline: number;
  /** How many invocations this one is nested in (0 for a request from outside). */
  readonly depth?: number;
}

export interface InvokeResult {
  /** The output as JSON text. */
  readonly outputJson: string;
  /** The invocation's metalog position when it returned: at or after every write it made. */
  readonly position: number;
}

/**
 * Runs invocations somewhere. Failures reject with an `InvocationError` (FUNCTION_NOT_FOUND,
 * FUNCTION_ERROR, INVALID_OUTPUT, TIMEOUT, OVERLOADED, WORKER_LOST, UNAVAILABLE, ...).
 */
export interface Dispatcher {
  /** The functions that can be invoked. */
  functions(): readonly FunctionInfo[];
  invoke(request: InvokeRequest): Promise<InvokeResult>;
}

export interface AsyncInvokeRequest {
  readonly name: string;
  readonly inputJson: string;
  readonly book: number;
  readonly position?: number;
  /** The id to record it under (a derived id from `ctx.invokeAsync`); default: a new one. */
  readonly invocationId?: InvocationId;
}

/**
 * Records an asynchronous invocation durably and starts it; resolves to its id once it is
 * recorded. Asking again with the same `invocationId` starts nothing new.
 */
export interface AsyncInvoker {
  invokeAsync(request: AsyncInvokeRequest): Promise<InvocationId>;
}
