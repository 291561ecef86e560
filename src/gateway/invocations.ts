/**
 * Invocations as the gateway handles them: synchronous ones (optionally with an idempotency
 * key), asynchronous ones, their status, and their recovery after a restart. Requests and
 * results that must outlive the process are records in the log (see records.ts); the
 * functions themselves run wherever the `Dispatcher` sends them.
 *
 * Guarantees:
 * - An asynchronous request is recorded (durably appended) before it is acknowledged. It
 *   then runs at least once: if the process stops before its result is recorded, the next
 *   start finds it in the log and runs it again. Its result is recorded once (a conditional
 *   append), and later runs of it do not replace it.
 * - A request with an `Idempotency-Key` claims the key with a conditional append, so of any
 *   number of concurrent or repeated requests with one key (in one book) exactly one claims
 *   it; the others wait for that request's recorded result and return it. The claimed
 *   request's result is recorded, including failures (FUNCTION_ERROR, TIMEOUT, ...), so a
 *   repeat returns the same failure. If the process stops while a claimed synchronous
 *   invocation runs, the caller sees the connection fail; the next start runs it again
 *   (like an asynchronous one), and a repeat of the request returns that run's result.
 *   The function therefore runs at least once and its recorded result is returned to every
 *   request with the key; a function that must not repeat its side effects across such a
 *   crash makes them idempotent through the log (e.g. a conditional append keyed by
 *   `ctx.invocationId`, which stays the same across the re-run).
 * - A synchronous request without a key is not recorded: it runs at most once, and
 *   `GET /invocations/<id>` does not know it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { LogBook } from "../log/api.js";
import { BokiError } from "../log/errors.js";
import type { LogRecord } from "../log/record.js";
import { BLOCKING_READ_TIMEOUT_MS_MAX } from "../log/limits.js";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import type {
  AsyncInvokeRequest,
  AsyncInvoker,
  Dispatcher,
  FunctionInfo,
  LogProvider,
} from "../runtime/dispatcher.js";
import {
  describeThrown,
  fromLogError,
  InvocationError,
  type InvocationErrorJSON,
} from "../runtime/errors.js";
import {
  newInvocationId,
  parseFunctionName,
  parseIdempotencyKey,
  parseInvocationId,
  parseUserBook,
  SYSTEM_BOOK,
  type InvocationId,
} from "../runtime/ids.js";
import {
  ASYNC_QUEUED_MAX_DEFAULT,
  ASYNC_RUNNING_MAX_DEFAULT,
  OVERLOADED_RETRY_MS_MAX,
  RECOVERY_BATCH_MAX,
} from "../runtime/limits.js";
import type { RuntimeMetrics } from "../runtime/metrics.js";
import { Scheduler } from "../runtime/scheduler.js";
import { CONSUMER_KIND, ConsumerRunner, type ConsumerMeta } from "../queue/runtime.js";
import {
  CHECKPOINT_TAG,
  decodeRecord,
  encodeCheckpoint,
  encodeRequest,
  encodeResult,
  fingerprint,
  idempotencyTag,
  invocationTag,
  RECORDED_TAG,
  type InvocationMode,
  type RequestRecord,
  type ResultRecord,
} from "./records.js";

/** Runs of a recorded invocation that end with WORKER_LOST before the failure is recorded. */
export const RECORDED_ATTEMPTS_MAX = 3;
/** First pause before a recorded invocation that got OVERLOADED is dispatched again (doubling to 1 s). */
const OVERLOADED_RETRY_DELAY_MS = 50;

export interface InvocationServiceOptions {
  /** Where the invocation records live (the system book of this log). */
  readonly log: LogProvider;
  readonly dispatcher: Dispatcher;
  readonly logger?: Logger;
  readonly metrics?: RuntimeMetrics;
  /** Asynchronous invocations run at once (default 64). */
  readonly asyncRunningMax?: number;
  /** Asynchronous invocations accepted and waiting to run (default 10,000); beyond it OVERLOADED. */
  readonly asyncQueuedMax?: number;
}

export interface InvokeSyncRequest {
  readonly name: string;
  readonly inputJson: string;
  /** Default: the function's book, else 0. */
  readonly book?: number;
  readonly idempotencyKey?: string;
}

/** How an invocation ended; `replayed`: the recorded result of an earlier request with the key. */
export type SyncOutcome =
  | {
      readonly invocationId: InvocationId;
      readonly replayed: boolean;
      readonly ok: true;
      readonly outputJson: string;
    }
  | {
      readonly invocationId: InvocationId;
      readonly replayed: boolean;
      readonly ok: false;
      readonly error: InvocationError;
    };

export interface InvokeAsyncRequest extends Omit<AsyncInvokeRequest, "book"> {
  /** Default: the function's book, else 0. */
  readonly book?: number;
  readonly idempotencyKey?: string;
}

export interface AsyncAccepted {
  readonly invocationId: InvocationId;
  /** The key (or the derived id) was used before: this is the earlier request's invocation. */
  readonly replayed: boolean;
}

export interface InvocationStatus {
  readonly invocationId: InvocationId;
  readonly function: string;
  readonly book: number;
  readonly mode: InvocationMode;
  /** pending: recorded, not running here; running: running in this process; then the outcome. */
  readonly status: "pending" | "running" | "succeeded" | "failed";
  readonly requestedAt: string;
  readonly finishedAt?: string;
  readonly output?: unknown;
  readonly error?: InvocationErrorJSON;
}

type Outcome = { ok: true; outputJson: string } | { ok: false; error: InvocationError };

interface Pending {
  readonly id: InvocationId;
  readonly name: string;
  readonly inputJson: string;
  readonly book: number;
  readonly position: number | undefined;
  readonly requestSeqnum: number;
}

function asInvocationError(err: unknown): InvocationError {
  if (err instanceof InvocationError) return err;
  return fromLogError(err, "running the invocation");
}

function isCondFailure(err: unknown): boolean {
  return err instanceof BokiError && err.code === "COND_APPEND_FAILED";
}

function outcomeOf(result: ResultRecord): Outcome {
  return result.ok
    ? { ok: true, outputJson: JSON.stringify(result.output) }
    : { ok: false, error: InvocationError.fromJSON(result.error) };
}

export class InvocationService implements AsyncInvoker {
  private readonly system: LogBook;
  private readonly dispatcher: Dispatcher;
  private readonly logger: Logger;
  private readonly asyncRunningMax: number;
  private readonly asyncQueuedMax: number;
  private readonly queue: Pending[] = [];
  private asyncRunning = 0;
  /** Recorded invocations this process is running (or has queued to run). */
  private readonly active = new Map<InvocationId, "queued" | "running">();
  private syncRunning = 0;
  private started = false;
  private closed = false;
  private rescanWhenDrained = false;

  private readonly scheduler: Scheduler;
  private readonly logProvider: LogProvider;
  private consumers: ConsumerRunner | undefined;

  constructor(options: InvocationServiceOptions) {
    this.logProvider = options.log;
    this.system = options.log.book(SYSTEM_BOOK);
    this.dispatcher = options.dispatcher;
    this.logger = options.logger ?? silentLogger;
    this.scheduler = new Scheduler(this.dispatcher, this.logger);
    this.asyncRunningMax = options.asyncRunningMax ?? ASYNC_RUNNING_MAX_DEFAULT;
    this.asyncQueuedMax = options.asyncQueuedMax ?? ASYNC_QUEUED_MAX_DEFAULT;
    options.metrics?.observeAsync(() => ({
      queued: this.queue.length,
      running: this.asyncRunning,
    }));
  }

  private fn(name: string): FunctionInfo {
    parseFunctionName(name);
    const info = this.dispatcher.functions().find((f) => f.name === name);
    if (info === undefined) {
      throw new InvocationError("FUNCTION_NOT_FOUND", `no function named ${JSON.stringify(name)}`);
    }
    return info;
  }

  /** A LogBook session of a book (for routes that use a library on the log directly). */
  logBook(book: number): LogBook {
    return this.logProvider.book(book);
  }

  /** Feeds the functions bound to queues (boki-ts/queue consumers) with their messages. */
  private startConsumers(): void {
    const consumers = this.dispatcher
      .functions()
      .filter((f) => f.kind === CONSUMER_KIND && f.meta !== undefined)
      .map((f) => ({
        name: f.name,
        meta: f.meta as unknown as ConsumerMeta,
        timeoutMs: f.timeoutMs,
      }));
    if (consumers.length === 0) return;
    this.consumers = new ConsumerRunner({
      consumers,
      book: (book) => this.logProvider.book(book),
      invoke: (name, inputJson, book, deadline) =>
        this.dispatcher.invoke({
          name,
          inputJson,
          book,
          invocationId: newInvocationId(),
          deadline,
        }),
      warn: (message, fields) => this.logger.warn(fields, message),
      runId: newInvocationId().slice(0, 12),
    });
    this.consumers.start();
  }

  private checkOpen(): void {
    if (this.closed) throw new InvocationError("UNAVAILABLE", "the gateway is shutting down");
  }

  // ---- recovery ------------------------------------------------------------------------

  /**
   * Finds recorded invocations without a result (from the last checkpoint on) and queues
   * them to run; records a new checkpoint. Call once, before taking requests.
   */
  async start(): Promise<{ recovered: number }> {
    if (this.started) throw new Error("InvocationService.start was called twice");
    this.started = true;
    const recovered = await this.recover();
    this.scheduler.start();
    this.startConsumers();
    return { recovered };
  }

  private async recover(): Promise<number> {
    let lowWater = 0;
    try {
      const cp = await this.system.checkTail(CHECKPOINT_TAG);
      const rec = cp === null ? null : decodeRecord(cp.data);
      if (rec?.type === "checkpoint") lowWater = Number(rec.lowWater);
    } catch (err) {
      throw fromLogError(err, "reading the recovery checkpoint");
    }
    const pending = new Map<InvocationId, Pending>();
    let truncatedAt: number | undefined;
    let last = lowWater - 1;
    try {
      for (
        let r = await this.system.readNext(RECORDED_TAG, lowWater);
        r !== null;
        r = await this.system.readNext(RECORDED_TAG, r.seqnum + 1)
      ) {
        last = r.seqnum;
        const rec = decodeRecord(r.data);
        if (rec === null) continue;
        if (rec.type === "result") pending.delete(rec.id);
        else if (rec.type === "request") {
          if (pending.size >= RECOVERY_BATCH_MAX) {
            truncatedAt ??= r.seqnum;
            continue;
          }
          pending.set(rec.id, {
            id: rec.id,
            name: rec.fn,
            inputJson: JSON.stringify(rec.input),
            book: rec.book,
            position: undefined,
            requestSeqnum: r.seqnum,
          });
        }
      }
    } catch (err) {
      throw fromLogError(err, "scanning invocation records");
    }
    let next = last + 1;
    for (const p of pending.values()) next = Math.min(next, p.requestSeqnum);
    if (truncatedAt !== undefined) next = Math.min(next, truncatedAt);
    if (next !== lowWater) {
      try {
        await this.system.append([CHECKPOINT_TAG], encodeCheckpoint(next, Date.now()));
      } catch (err) {
        throw fromLogError(err, "recording the recovery checkpoint");
      }
    }
    this.rescanWhenDrained = truncatedAt !== undefined;
    for (const p of pending.values()) this.enqueue(p);
    if (pending.size > 0) {
      this.logger.info(
        { recovered: pending.size },
        "re-running recorded invocations that had no result",
      );
    }
    return pending.size;
  }

  // ---- running recorded invocations ------------------------------------------------------

  private enqueue(p: Pending): void {
    if (this.active.has(p.id)) return;
    this.active.set(p.id, "queued");
    this.queue.push(p);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.asyncRunning < this.asyncRunningMax && this.queue.length > 0) {
      const p = this.queue.shift()!;
      this.asyncRunning++;
      this.active.set(p.id, "running");
      void this.runAndRecord(p, undefined).finally(() => {
        this.asyncRunning--;
        this.active.delete(p.id);
        this.pump();
      });
    }
    if (
      this.rescanWhenDrained &&
      this.asyncRunning === 0 &&
      this.queue.length === 0 &&
      !this.closed
    ) {
      this.rescanWhenDrained = false;
      this.recover().catch((err: unknown) => {
        this.logger.error({ err: describeThrown(err) }, "recovering invocations failed");
      });
    }
  }

  /**
   * Runs a recorded invocation and records its result. `deadline` bounds the whole
   * (a synchronous caller's); without it each run gets the function's own time limit.
   * Resolves to the recorded outcome, or to this run's when it could not be recorded.
   */
  private async runAndRecord(p: Pending, deadline: number | undefined): Promise<Outcome> {
    const outcome = await this.run(p, deadline);
    if (!outcome.ok && outcome.error.code === "UNAVAILABLE") {
      // Shutting down: no result is recorded, so the next start runs it again.
      return outcome;
    }
    return this.record(p.id, p.requestSeqnum, outcome);
  }

  private async run(p: Pending, deadline: number | undefined): Promise<Outcome> {
    let info: FunctionInfo;
    try {
      info = this.fn(p.name);
    } catch (err) {
      return { ok: false, error: asInvocationError(err) };
    }
    const giveUpAt = deadline ?? Date.now() + OVERLOADED_RETRY_MS_MAX;
    let delayMs = OVERLOADED_RETRY_DELAY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.dispatcher.invoke({
          name: p.name,
          inputJson: p.inputJson,
          book: p.book,
          ...(p.position === undefined ? {} : { position: p.position }),
          invocationId: p.id,
          deadline: deadline ?? Date.now() + info.timeoutMs,
        });
        return { ok: true, outputJson: r.outputJson };
      } catch (err) {
        const e = asInvocationError(err);
        if (this.closed && e.code === "UNAVAILABLE") return { ok: false, error: e };
        if (e.code === "OVERLOADED" && Date.now() + delayMs < giveUpAt) {
          await sleep(delayMs);
          delayMs = Math.min(delayMs * 2, 1000);
          continue;
        }
        if (e.code === "WORKER_LOST" && attempt < RECORDED_ATTEMPTS_MAX && !this.closed) continue;
        return { ok: false, error: e };
      }
    }
  }

  /** Records the result unless one is there already; resolves to the recorded one. */
  private async record(
    id: InvocationId,
    requestSeqnum: number,
    outcome: Outcome,
  ): Promise<Outcome> {
    const data = encodeResult(
      id,
      Date.now(),
      outcome.ok ? outcome : { ok: false, error: outcome.error.toJSON() },
    );
    try {
      await this.system.condAppend([invocationTag(id), RECORDED_TAG], data, invocationTag(id), 1);
      return outcome;
    } catch (err) {
      if (isCondFailure(err)) {
        const earlier = await this.resultOf(id, requestSeqnum).catch(() => null);
        return earlier === null ? outcome : outcomeOf(earlier);
      }
      this.logger.error(
        { invocationId: id, err: describeThrown(err) },
        "could not record an invocation's result; it will run again at the next start",
      );
      return outcome;
    }
  }

  private async resultOf(id: InvocationId, requestSeqnum: number): Promise<ResultRecord | null> {
    const r = await this.system.readNext(invocationTag(id), requestSeqnum + 1);
    return this.asResult(id, r);
  }

  private asResult(id: InvocationId, r: LogRecord | null): ResultRecord | null {
    if (r === null) return null;
    const rec = decodeRecord(r.data);
    return rec?.type === "result" && rec.id === id ? rec : null;
  }

  /** The request record of `id`, with its seqnum, or null. */
  private async requestOf(
    id: InvocationId,
  ): Promise<{ rec: RequestRecord; seqnum: number } | null> {
    const r = await this.system.readNext(invocationTag(id), 0);
    if (r === null) return null;
    const rec = decodeRecord(r.data);
    return rec?.type === "request" && rec.id === id ? { rec, seqnum: r.seqnum } : null;
  }

  // ---- synchronous ---------------------------------------------------------------------

  async invokeSync(req: InvokeSyncRequest): Promise<SyncOutcome> {
    this.checkOpen();
    const info = this.fn(req.name);
    const book = parseUserBook(req.book ?? info.book ?? 0);
    const deadline = Date.now() + info.timeoutMs;
    const invocationId = newInvocationId();
    if (req.idempotencyKey === undefined) {
      try {
        const r = await this.dispatcher.invoke({
          name: info.name,
          inputJson: req.inputJson,
          book,
          invocationId,
          deadline,
        });
        return { invocationId, replayed: false, ok: true, outputJson: r.outputJson };
      } catch (err) {
        return { invocationId, replayed: false, ok: false, error: asInvocationError(err) };
      }
    }
    const key = parseIdempotencyKey(req.idempotencyKey);
    const claim = await this.claim(
      info.name,
      book,
      req.inputJson,
      key,
      invocationId,
      "sync",
      undefined,
    );
    if (claim.won) {
      this.syncRunning++;
      this.active.set(invocationId, "running");
      try {
        const p: Pending = {
          id: invocationId,
          name: info.name,
          inputJson: req.inputJson,
          book,
          position: undefined,
          requestSeqnum: claim.seqnum,
        };
        const outcome = await this.runAndRecord(p, deadline);
        return { invocationId, replayed: false, ...outcome };
      } finally {
        this.syncRunning--;
        this.active.delete(invocationId);
      }
    }
    const outcome = await this.awaitResult(claim.id, claim.seqnum, deadline);
    return { invocationId: claim.id, replayed: true, ...outcome };
  }

  /** Waits until the invocation's result is recorded or `deadline` passes (TIMEOUT). */
  private async awaitResult(
    id: InvocationId,
    requestSeqnum: number,
    deadline: number,
  ): Promise<Outcome> {
    try {
      for (;;) {
        const remainingMs = deadline - Date.now();
        if (remainingMs <= 0) break;
        const r = await this.system.readNextBlocking(
          invocationTag(id),
          requestSeqnum + 1,
          Math.min(remainingMs, BLOCKING_READ_TIMEOUT_MS_MAX),
        );
        const result = this.asResult(id, r);
        if (result !== null) return outcomeOf(result);
        if (r !== null) requestSeqnum = r.seqnum; // not a result of ours: skip it
      }
    } catch (err) {
      return { ok: false, error: fromLogError(err, "waiting for the first request's result") };
    }
    return {
      ok: false,
      error: new InvocationError(
        "TIMEOUT",
        `an earlier request with this idempotency key (invocation ${id}) has not finished yet`,
      ),
    };
  }

  /**
   * Claims an idempotency key with a request record at position 0 of the key's sub-stream.
   * If another request claimed it first, returns that request's invocation instead (after
   * checking it asked for the same thing).
   */
  private async claim(
    name: string,
    book: number,
    inputJson: string,
    key: string,
    id: InvocationId,
    mode: InvocationMode,
    position: number | undefined,
  ): Promise<{ won: boolean; id: InvocationId; seqnum: number }> {
    const fp = fingerprint(name, book, inputJson);
    const tag = idempotencyTag(book, key);
    const data = encodeRequest(
      {
        id,
        fn: name,
        book,
        mode,
        at: Date.now(),
        key,
        fp,
        ...(position === undefined ? {} : { position }),
      },
      inputJson,
    );
    try {
      const seqnum = await this.system.condAppend(
        [tag, invocationTag(id), RECORDED_TAG],
        data,
        tag,
        0,
      );
      return { won: true, id, seqnum };
    } catch (err) {
      if (!isCondFailure(err)) throw fromLogError(err, "recording the request");
    }
    let first: LogRecord | null;
    try {
      first = await this.system.readNext(tag, 0);
    } catch (err) {
      throw fromLogError(err, "reading the idempotency key's first request");
    }
    const rec = first === null ? null : decodeRecord(first.data);
    if (first === null || rec?.type !== "request") {
      throw new InvocationError(
        "INTERNAL",
        `the idempotency key ${JSON.stringify(key)} has no readable request record`,
      );
    }
    if (rec.fp !== fp) {
      throw new InvocationError(
        "IDEMPOTENCY_CONFLICT",
        `idempotency key ${JSON.stringify(key)} was used for another request (function ${rec.fn}, book ${rec.book}, a different input)`,
      );
    }
    return { won: false, id: rec.id, seqnum: first.seqnum };
  }

  // ---- asynchronous --------------------------------------------------------------------

  /** `AsyncInvoker` for `ctx.invokeAsync`: records and starts the invocation. */
  async invokeAsync(req: AsyncInvokeRequest): Promise<InvocationId> {
    return (await this.acceptAsync(req)).invocationId;
  }

  /**
   * Records an asynchronous invocation and queues it; resolves once the request is durable.
   * With an idempotency key, or a derived invocation id that was recorded before, nothing
   * new is recorded or run and the earlier invocation is returned.
   */
  async acceptAsync(req: InvokeAsyncRequest): Promise<AsyncAccepted> {
    this.checkOpen();
    const info = this.fn(req.name);
    const book = parseUserBook(req.book ?? info.book ?? 0);
    if (this.queue.length >= this.asyncQueuedMax) {
      throw new InvocationError(
        "OVERLOADED",
        `${this.queue.length} asynchronous invocations are waiting to run (limit ${this.asyncQueuedMax})`,
      );
    }
    const id =
      req.invocationId === undefined ? newInvocationId() : parseInvocationId(req.invocationId);
    const position = req.position;
    let seqnum: number;
    if (req.idempotencyKey !== undefined) {
      const key = parseIdempotencyKey(req.idempotencyKey);
      const claim = await this.claim(info.name, book, req.inputJson, key, id, "async", position);
      if (!claim.won) return { invocationId: claim.id, replayed: true };
      seqnum = claim.seqnum;
    } else {
      const data = encodeRequest(
        {
          id,
          fn: info.name,
          book,
          mode: "async",
          at: Date.now(),
          ...(position === undefined ? {} : { position }),
        },
        req.inputJson,
      );
      const tags = [invocationTag(id), RECORDED_TAG];
      try {
        seqnum =
          req.invocationId === undefined
            ? await this.system.append(tags, data)
            : await this.system.condAppend(tags, data, invocationTag(id), 0);
      } catch (err) {
        if (isCondFailure(err)) return { invocationId: id, replayed: true };
        throw fromLogError(err, "recording the request");
      }
    }
    this.enqueue({
      id,
      name: info.name,
      inputJson: req.inputJson,
      book,
      position,
      requestSeqnum: seqnum,
    });
    return { invocationId: id, replayed: false };
  }

  // ---- status --------------------------------------------------------------------------

  async status(idText: string): Promise<InvocationStatus> {
    const id = parseInvocationId(idText);
    let request: { rec: RequestRecord; seqnum: number } | null;
    let result: ResultRecord | null = null;
    try {
      request = await this.requestOf(id);
      if (request !== null) result = await this.resultOf(id, request.seqnum);
    } catch (err) {
      throw fromLogError(err, "reading the invocation's records");
    }
    if (request === null) {
      throw new InvocationError(
        "NOT_FOUND",
        `no recorded invocation ${id} (only asynchronous invocations and those with an Idempotency-Key are recorded)`,
      );
    }
    const { rec } = request;
    const base = {
      invocationId: id,
      function: rec.fn,
      book: rec.book,
      mode: rec.mode,
      requestedAt: new Date(rec.at).toISOString(),
    };
    if (result === null) {
      return { ...base, status: this.active.get(id) === "running" ? "running" : "pending" };
    }
    const finishedAt = new Date(result.at).toISOString();
    return result.ok
      ? { ...base, status: "succeeded", finishedAt, output: result.output }
      : { ...base, status: "failed", finishedAt, error: result.error };
  }

  /** Invocations waiting to run and running, for health and metrics. */
  load(): { asyncQueued: number; asyncRunning: number; syncRecordedRunning: number } {
    return {
      asyncQueued: this.queue.length,
      asyncRunning: this.asyncRunning,
      syncRecordedRunning: this.syncRunning,
    };
  }

  /**
   * Stops taking requests and starting queued invocations (they stay recorded, and run at
   * the next start), and waits up to `graceMs` for running ones to finish.
   */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    this.scheduler.close();
    const consumersStopped = this.consumers?.close(graceMs);
    this.queue.length = 0;
    for (const [id, state] of this.active) if (state === "queued") this.active.delete(id);
    const until = Date.now() + graceMs;
    while (this.asyncRunning + this.syncRunning > 0 && Date.now() < until) {
      await sleep(10);
    }
    await consumersStopped;
  }
}
