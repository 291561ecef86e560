/**
 * A worker thread of a function pool: loads the function modules, then runs the handlers
 * the host sends it. Many invocations interleave in one worker at their awaits. The log is
 * not here: every `ctx.log` operation and nested invocation is a request to the host over
 * the worker's port, answered with the result and the invocation's new metalog position.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { DataLike, LogBook, SeqNumLike, TagLike } from "../log/api.js";
import type { BokiError } from "../log/errors.js";
import {
  AppendDiscardedError,
  BookEmptyError,
  CondAppendFailedError,
  DataLostError,
  InvalidArgumentError,
  LogClosedError,
  NotFoundError,
  OverloadedError,
  RecordTooLargeError,
  TimeoutError,
  errorFromWire as logErrorFromWire,
} from "../log/errors.js";
import type { LogRecord } from "../log/record.js";
import {
  parseSeqNum,
  parseTag,
  type BookId,
  type MetalogPosition,
  type SeqNum,
} from "../log/types.js";
import { describeThrown, FunctionLoadError, InvocationError, truncate } from "./errors.js";
import type { FunctionContext, FunctionLogger, InvokeOptions } from "./function.js";
import { childId, parseUserBook, type InvocationId } from "./ids.js";
import { toJsonText } from "./json.js";
import { LOG_LINE_CHARS_MAX } from "./limits.js";
import { loadFunctions, type LoadedFunctions } from "./loader.js";
import { ReadAhead, type Direction } from "./read-ahead.js";
import { scheduleThisThreadAsBatch } from "./sched.js";
import {
  errorToWire,
  type FromWorker,
  type LogLevel,
  type LogOp,
  type ToWorker,
  type WireError,
  type WorkerInit,
  Outbox,
  unpackRecords,
  type PackedRecords,
} from "./worker-protocol.js";

const port = parentPort;
if (port === null) throw new Error("worker-main runs only in a worker thread");

const outbox = new Outbox<FromWorker>(
  (batch, transfer) => port.postMessage(batch, transfer),
  queueMicrotask,
);

function post(m: FromWorker): void {
  outbox.post(m);
}

/**
 * Invocation errors the runtime gave a handler (a child's failure, a refused call): a handler
 * that lets one through fails with FUNCTION_ERROR, not with the error's own code, so only
 * the handler's own refusal of its input (see `run`) answers INVALID_ARGUMENT.
 */
const givenByRuntime = new WeakSet<object>();

function given(err: unknown): never {
  if (err instanceof InvocationError) givenByRuntime.add(err);
  throw err;
}

/** Rebuilds an error from the host with the class a user would test with `instanceof`. */
function errorFromWire(e: WireError): Error {
  if (e.kind === "invocation") {
    const err = InvocationError.fromJSON(e);
    givenByRuntime.add(err);
    return err;
  }
  let err: BokiError;
  switch (e.code) {
    case "INVALID_ARGUMENT":
      err = new InvalidArgumentError(e.message);
      break;
    case "RECORD_TOO_LARGE":
      err = new RecordTooLargeError("record", e.sizeBytes ?? 0, e.limitBytes ?? 0);
      break;
    case "BOOK_EMPTY":
      err = new BookEmptyError(e.message);
      break;
    case "NOT_FOUND":
      err = new NotFoundError(e.message);
      break;
    case "TIMEOUT":
      err = new TimeoutError(e.message);
      break;
    case "LOG_CLOSED":
      err = new LogClosedError(e.message);
      break;
    case "COND_APPEND_FAILED":
      err = new CondAppendFailedError(0, e.actualPosition ?? 0);
      break;
    case "APPEND_DISCARDED":
      err = new AppendDiscardedError(e.message);
      break;
    case "DATA_LOST":
      err = new DataLostError(e.message);
      break;
    case "OVERLOADED":
      err = new OverloadedError(e.message);
      break;
    default:
      err = logErrorFromWire(e);
  }
  err.message = e.message;
  return err;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  call: Call;
}

/** One running invocation, as the worker tracks it. */
interface Call {
  readonly id: number;
  /** Made when the handler first reads `ctx.signal` (most never do). */
  controller: AbortController | undefined;
  position: number;
  /** "cancelled": the host gave up on it (timeout) but its handler has not settled yet. */
  state: "running" | "cancelled" | "done";
}

const timedOut = (): InvocationError => new InvocationError("TIMEOUT", "the invocation timed out");

let nextReq = 1;
const pending = new Map<number, Pending>();
const calls = new Map<number, Call>();
/** Cancelled invocations whose handlers still run; reported with each pong. */
let abandoned = 0;

function request(call: Call, m: FromWorker & { req: number }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    pending.set(m.req, { resolve, reject, call });
    post(m);
  });
}

/** Binary data the caller owns is copied out of any larger buffer before it is posted. */
function dataArg(data: unknown): unknown {
  // Uint8Array's constructor copies (a Buffer's slice would be a view of the same memory).
  if (data instanceof Uint8Array && data.byteLength !== data.buffer.byteLength)
    return new Uint8Array(data);
  return data;
}

/** A record of a read-ahead batch handed to the caller: its bytes in buffers of their own. */
function copyRecord(r: LogRecord): LogRecord {
  return {
    ...r,
    data: new Uint8Array(r.data),
    auxData: r.auxData === null ? null : new Uint8Array(r.auxData),
  };
}

/** The tag and seqnum of a read as read-ahead keys, or undefined for arguments the host refuses. */
function readKey(tag: TagLike, s: SeqNumLike): { key: string; s: number } | undefined {
  try {
    return { key: String(parseTag(tag)), s: parseSeqNum(s) };
  } catch {
    return undefined;
  }
}

class WorkerLogBook implements LogBook {
  private readonly ahead = new ReadAhead();

  constructor(
    private readonly call: Call,
    readonly book: BookId,
  ) {}

  get position(): MetalogPosition {
    return this.call.position as MetalogPosition;
  }

  private op(op: LogOp, args: unknown[]): Promise<unknown> {
    return request(this.call, { t: "log-op", call: this.call.id, req: nextReq++, op, args });
  }

  /** `readNext` or `readPrev`, answered from what read-ahead knows or asking the host. */
  private async read(dir: Direction, tag: TagLike, s: SeqNumLike): Promise<LogRecord | null> {
    // Only a running invocation reads ahead: a timed-out one's operations go to the host, which
    // refuses them.
    const k = this.call.state === "running" ? readKey(tag, s) : undefined;
    const known = k === undefined ? undefined : this.ahead.lookup(k.key, dir, k.s);
    if (known !== undefined) return copyRecord(known);
    const n = k === undefined ? 1 : this.ahead.batchFor(k.key, dir, k.s);
    if (n <= 1) {
      const r = (await this.op(dir === "next" ? "readNext" : "readPrev", [
        tag,
        s,
      ])) as LogRecord | null;
      if (k !== undefined) this.ahead.learn(k.key, dir, k.s, 1, r === null ? [] : [r]);
      return r;
    }
    const range = dir === "next" ? "readNextRange" : "readPrevRange";
    const batch = unpackRecords((await this.op(range, [tag, s, n])) as PackedRecords);
    this.ahead.learn(k!.key, dir, k!.s, n, batch);
    return batch.length === 0 ? null : copyRecord(batch[0]!);
  }

  append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum> {
    return this.op("append", [tags, dataArg(data)]) as Promise<SeqNum>;
  }
  condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum> {
    return this.op("condAppend", [tags, dataArg(data), condTag, condPosition]) as Promise<SeqNum>;
  }
  readNext(tag: TagLike, minSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return this.read("next", tag, minSeqnum);
  }
  readNextBlocking(
    tag: TagLike,
    minSeqnum: SeqNumLike,
    timeoutMs: number,
  ): Promise<LogRecord | null> {
    return this.op("readNextBlocking", [tag, minSeqnum, timeoutMs]) as Promise<LogRecord | null>;
  }
  readPrev(tag: TagLike, maxSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return this.read("prev", tag, maxSeqnum);
  }
  checkTail(tag: TagLike): Promise<LogRecord | null> {
    return this.op("checkTail", [tag]) as Promise<LogRecord | null>;
  }
  setAuxData(seqnum: SeqNumLike, data: DataLike): Promise<void> {
    this.ahead.clear();
    return this.op("setAuxData", [seqnum, dataArg(data)]) as Promise<void>;
  }
  trim(tag: TagLike, seqnum: SeqNumLike): Promise<void> {
    this.ahead.clear();
    return this.op("trim", [tag, seqnum]) as Promise<void>;
  }
}

/** Log fields as plain data: whatever cannot be sent as JSON is described instead. */
function plainFields(fields: unknown): Record<string, unknown> | undefined {
  if (fields === undefined) return undefined;
  try {
    const text = JSON.stringify(fields, (_k, v: unknown) =>
      typeof v === "bigint" ? v.toString() : v,
    );
    const value = text === undefined ? undefined : (JSON.parse(text) as unknown);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
    return { value };
  } catch (err) {
    return { fields: `not loggable: ${describeThrown(err)}` };
  }
}

function logger(call: number | undefined): FunctionLogger {
  const line =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      post({
        t: "log",
        call,
        level,
        message: truncate(String(message), LOG_LINE_CHARS_MAX),
        fields: plainFields(fields),
      });
    };
  return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
}

function run(loaded: LoadedFunctions, m: Extract<ToWorker, { t: "run" }>): void {
  const call: Call = {
    id: m.call,
    controller: undefined,
    position: m.position,
    state: "running",
  };
  calls.set(m.call, call);
  const finish = (result: FromWorker): void => {
    if (call.state === "cancelled") abandoned--;
    const report = call.state === "running";
    call.state = "done";
    calls.delete(m.call);
    if (report) post(result);
  };
  const loadedFn = loaded.byName.get(m.name);
  if (loadedFn === undefined) {
    finish({
      t: "done",
      call: m.call,
      ok: false,
      error: { kind: "invocation", code: "FUNCTION_NOT_FOUND", message: `no function ${m.name}` },
    });
    return;
  }
  const invocationId = m.invocationId as InvocationId;
  let derived = 0;
  const nested = (
    name: string,
    input: unknown,
    async: boolean,
    options: InvokeOptions | undefined,
  ): Promise<unknown> => {
    let inputJson: string;
    let book: BookId | undefined;
    try {
      inputJson = toJsonText(input, `input of ${name}`, "INVALID_ARGUMENT");
      book = options?.book === undefined ? undefined : parseUserBook(options.book, "invoke's book");
    } catch (err) {
      given(err);
    }
    return request(call, {
      t: "invoke",
      call: m.call,
      req: nextReq++,
      name,
      inputJson,
      async,
      invocationId: childId(invocationId, ++derived),
      book,
    });
  };
  const ctx: FunctionContext = {
    invocationId,
    functionName: m.name,
    book: m.book as BookId,
    log: new WorkerLogBook(call, m.book as BookId),
    logger: logger(m.call),
    deadline: m.deadline,
    get signal(): AbortSignal {
      call.controller ??= new AbortController();
      if (call.state === "cancelled" && !call.controller.signal.aborted) {
        call.controller.abort(timedOut());
      }
      return call.controller.signal;
    },
    invoke: async <O>(name: string, input?: unknown, options?: InvokeOptions): Promise<O> =>
      JSON.parse((await nested(name, input, false, options)) as string) as O,
    invokeAsync: async (
      name: string,
      input?: unknown,
      options?: InvokeOptions,
    ): Promise<InvocationId> => (await nested(name, input, true, options)) as InvocationId,
    newId: () => childId(invocationId, ++derived),
  };
  let input: unknown;
  try {
    input = JSON.parse(m.inputJson);
  } catch (err) {
    finish({ t: "done", call: m.call, ok: false, error: errorToWire(err) });
    return;
  }
  const handler = loadedFn.fn.handler as (ctx: FunctionContext, input: unknown) => unknown;
  new Promise<unknown>((resolve) => resolve(handler(ctx, input))).then(
    (output) => {
      let outputJson: string;
      try {
        outputJson = toJsonText(output, `output of ${m.name}`, "INVALID_OUTPUT");
      } catch (err) {
        finish({ t: "done", call: m.call, ok: false, error: errorToWire(err) });
        return;
      }
      finish({ t: "done", call: m.call, ok: true, outputJson });
    },
    (err: unknown) => {
      // A handler refuses its input by throwing InvocationError("INVALID_ARGUMENT", ...) itself:
      // its caller sees the runtime's code for a bad request (HTTP 400), not a failure.
      const refused =
        err instanceof InvocationError &&
        err.code === "INVALID_ARGUMENT" &&
        !givenByRuntime.has(err);
      finish({
        t: "done",
        call: m.call,
        ok: false,
        error: refused
          ? {
              kind: "invocation",
              code: "INVALID_ARGUMENT",
              message: truncate(`function ${m.name} refused its input: ${err.message}`),
            }
          : {
              kind: "invocation",
              code: "FUNCTION_ERROR",
              message: `function ${m.name} threw ${describeThrown(err)}`,
            },
      });
    },
  );
}

function onMessage(loaded: LoadedFunctions, m: ToWorker): void {
  switch (m.t) {
    case "run":
      run(loaded, m);
      return;
    case "reply": {
      const p = pending.get(m.req);
      if (p === undefined) return;
      pending.delete(m.req);
      if (m.ok) {
        if (m.position > p.call.position) p.call.position = m.position;
        p.resolve(m.value);
      } else {
        p.reject(errorFromWire(m.error));
      }
      return;
    }
    case "cancel": {
      const call = calls.get(m.call);
      if (call?.state !== "running") return;
      call.state = "cancelled";
      abandoned++;
      call.controller?.abort(timedOut());
      return;
    }
    case "ping":
      post({ t: "pong", n: m.n, abandoned });
      return;
  }
}

// A stray rejection in user code is reported, not fatal to the worker's other invocations.
process.on("unhandledRejection", (reason) => {
  logger(undefined).error(`unhandled rejection in a function: ${describeThrown(reason)}`);
});

const init = workerData as WorkerInit;
if (init.schedBatch) scheduleThisThreadAsBatch();
try {
  const loaded = await loadFunctions(init.files);
  port.on("message", (batch: ToWorker[]) => {
    for (const m of batch) onMessage(loaded, m);
  });
  post({
    t: "ready",
    functions: [...loaded.byName.values()].map((f) => ({
      name: f.fn.name,
      book: f.fn.book,
      timeoutMs: f.fn.timeoutMs,
      kind: f.fn.kind,
      scheduleEveryMs: f.fn.schedule?.everyMs,
      meta: f.fn.meta,
      file: f.file,
    })),
  });
} catch (err) {
  post({
    t: "load-error",
    message: err instanceof Error ? err.message : String(err),
    file: err instanceof FunctionLoadError ? err.file : undefined,
  });
}
