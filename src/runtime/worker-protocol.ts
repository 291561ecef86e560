/**
 * Messages between a function host (main thread, which owns the log) and its worker threads
 * (which run the handlers), over the worker's MessagePort. Every log operation and nested
 * invocation a function makes is a request from the worker, answered by the host. Each
 * `postMessage` carries an array of messages (see `Outbox`).
 */
import { BokiError, CondAppendFailedError, RecordTooLargeError } from "../log/errors.js";
import type { JsonValue } from "./json.js";
import type { LogRecord } from "../log/record.js";
import { InvocationError } from "./errors.js";

/** What a worker's modules define, as it reports it when ready. */
export interface WorkerFunctionInfo {
  readonly name: string;
  readonly book: number | undefined;
  readonly timeoutMs: number | undefined;
  readonly kind: string | undefined;
  readonly scheduleEveryMs: number | undefined;
  readonly meta: JsonValue | undefined;
  readonly file: string;
}

/** The data a worker starts with. */
export interface WorkerInit {
  /** Absolute paths of the function modules to load. */
  readonly files: readonly string[];
}

/** LogBook operations a worker may ask for; arguments are the LogBook method's. */
export const LOG_OPS = [
  "append",
  "condAppend",
  "readNext",
  "readNextBlocking",
  "readPrev",
  "checkTail",
  "setAuxData",
  "trim",
] as const;
export type LogOp = (typeof LOG_OPS)[number];

/** An error as it crosses a thread: the log's `BokiError` or an `InvocationError`. */
export interface WireError {
  readonly kind: "log" | "invocation";
  readonly code: string;
  readonly message: string;
  readonly actualPosition?: number;
  readonly sizeBytes?: number;
  readonly limitBytes?: number;
}

export type ToWorker =
  | {
      readonly t: "run";
      readonly call: number;
      readonly name: string;
      readonly inputJson: string;
      readonly invocationId: string;
      readonly book: number;
      readonly position: number;
      readonly deadline: number;
    }
  | {
      readonly t: "reply";
      readonly req: number;
      readonly ok: true;
      readonly value: unknown;
      /** The invocation's metalog position after the operation. */
      readonly position: number;
    }
  | { readonly t: "reply"; readonly req: number; readonly ok: false; readonly error: WireError }
  /** The host gave up on the call (timeout); its signal is aborted and its result ignored. */
  | { readonly t: "cancel"; readonly call: number }
  | { readonly t: "ping"; readonly n: number };

export type LogLevel = "debug" | "info" | "warn" | "error";

export type FromWorker =
  | { readonly t: "ready"; readonly functions: readonly WorkerFunctionInfo[] }
  | { readonly t: "load-error"; readonly message: string; readonly file: string | undefined }
  | {
      readonly t: "log-op";
      readonly call: number;
      readonly req: number;
      readonly op: LogOp;
      readonly args: readonly unknown[];
    }
  | {
      readonly t: "invoke";
      readonly call: number;
      readonly req: number;
      readonly name: string;
      readonly inputJson: string;
      readonly async: boolean;
      readonly invocationId: string;
      /** Another book than the caller's (ctx.invoke's `book` option). */
      readonly book: number | undefined;
    }
  | { readonly t: "done"; readonly call: number; readonly ok: true; readonly outputJson: string }
  | { readonly t: "done"; readonly call: number; readonly ok: false; readonly error: WireError }
  | {
      readonly t: "log";
      readonly call: number | undefined;
      readonly level: LogLevel;
      readonly message: string;
      readonly fields: Record<string, unknown> | undefined;
    }
  /** `abandoned`: cancelled invocations whose handlers have not settled yet. */
  | { readonly t: "pong"; readonly n: number; readonly abandoned: number };

/** Most messages one batch carries; a fuller outbox is sent at once. */
export const OUTBOX_MESSAGES_MAX = 1024;

/**
 * Coalesces the messages one side posts in one turn of its event loop into one
 * `postMessage` of an array: the invocations of every HTTP request read in one turn, a batch
 * of appends answered together, or many invocations' log operations cross the thread
 * boundary once instead of once each. (`setImmediate` runs the flush in the same turn's
 * check phase, or at once in the next turn without waiting for I/O.)
 */
export class Outbox<M> {
  private batch: M[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;

  constructor(
    private readonly send: (batch: M[], transfer: ArrayBuffer[]) => void,
    /** When to send what has gathered: `setImmediate` (the default) or `queueMicrotask`. */
    private readonly schedule: (flush: () => void) => void = setImmediate,
  ) {}

  post(m: M, transfer?: readonly ArrayBuffer[]): void {
    this.batch.push(m);
    if (transfer !== undefined) this.transfer.push(...transfer);
    if (this.batch.length >= OUTBOX_MESSAGES_MAX) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    const transfer = this.transfer;
    this.batch = [];
    this.transfer = [];
    this.send(batch, transfer);
  };
}

export function errorToWire(err: unknown): WireError {
  if (err instanceof InvocationError) {
    return { kind: "invocation", code: err.code, message: err.message };
  }
  if (err instanceof BokiError) {
    const e: { -readonly [K in keyof WireError]: WireError[K] } = {
      kind: "log",
      code: err.code,
      message: err.message,
    };
    if (err instanceof CondAppendFailedError) e.actualPosition = err.actualPosition;
    if (err instanceof RecordTooLargeError) {
      e.sizeBytes = err.sizeBytes;
      e.limitBytes = err.limitBytes;
    }
    return e;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { kind: "invocation", code: "INTERNAL", message };
}

/**
 * A record as it crosses to a worker: its bytes copied out of whatever larger buffer they
 * sit in, since posting a view would copy the whole underlying buffer.
 */
export function recordToWire(r: LogRecord | null): LogRecord | null {
  if (r === null) return null;
  return {
    seqnum: r.seqnum,
    book: r.book,
    tags: r.tags,
    // Copies into buffers of their own: the record's bytes may be a view into a buffer the
    // log keeps (a cache entry, a stored batch) and the copies are transferred to the worker.
    // (Buffer#slice makes a view, not a copy: Uint8Array's constructor copies.)
    data: new Uint8Array(r.data),
    auxData: r.auxData === null ? null : new Uint8Array(r.auxData),
  };
}
