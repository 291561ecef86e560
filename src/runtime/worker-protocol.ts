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
  /** Move the worker thread to SCHED_BATCH (sched.ts). */
  readonly schedBatch: boolean;
}

/**
 * Log operations a worker may ask for: the LogBook methods (arguments are the method's), and
 * the read-ahead batches (read-ahead.ts) `readNextRange` / `readPrevRange` with arguments
 * `[tag, seqnum, records]`: up to `records` consecutive `readNext` (`readPrev`) results
 * from `seqnum` on, as `PackedRecords`.
 */
export const LOG_OPS = [
  "append",
  "condAppend",
  "readNext",
  "readNextBlocking",
  "readPrev",
  "checkTail",
  "setAuxData",
  "trim",
  "readNextRange",
  "readPrevRange",
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
 * Records as a read-ahead batch carries them to a worker: their data and aux data copied into
 * one buffer (transferred), the rest per record as
 * `[seqnum, book, tags, data bytes, aux data bytes or -1 for none]`.
 */
export interface PackedRecords {
  readonly meta: ReadonlyArray<
    readonly [seqnum: number, book: number, tags: readonly bigint[], data: number, aux: number]
  >;
  readonly bytes: Uint8Array;
}

export function packRecords(records: readonly LogRecord[]): PackedRecords {
  let size = 0;
  for (const r of records) size += r.data.byteLength + (r.auxData?.byteLength ?? 0);
  const bytes = new Uint8Array(size);
  const meta: Array<PackedRecords["meta"][number]> = [];
  let at = 0;
  for (const r of records) {
    bytes.set(r.data, at);
    at += r.data.byteLength;
    if (r.auxData !== null) {
      bytes.set(r.auxData, at);
      at += r.auxData.byteLength;
    }
    meta.push([r.seqnum, r.book, r.tags, r.data.byteLength, r.auxData?.byteLength ?? -1]);
  }
  return { meta, bytes };
}

/** The records of a batch, their data views into the batch's one buffer. */
export function unpackRecords(p: PackedRecords): LogRecord[] {
  const out: LogRecord[] = [];
  let at = 0;
  for (const [seqnum, book, tags, dataBytes, auxBytes] of p.meta) {
    const data = p.bytes.subarray(at, at + dataBytes);
    at += dataBytes;
    let auxData: Uint8Array | null = null;
    if (auxBytes >= 0) {
      auxData = p.bytes.subarray(at, at + auxBytes);
      at += auxBytes;
    }
    out.push({ seqnum, book, tags, data, auxData } as LogRecord);
  }
  return out;
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
