/**
 * One execution of a workflow instance over a LogBook: it replays what the instance's step
 * stream holds and runs, then logs, what it does not hold yet. The decisions are machine.ts's;
 * this file carries them out and keeps the order of the stream:
 *
 * - Positions are given out in call order (`alloc`), so concurrent operations of a handler
 *   (`Promise.all` of steps) get the same positions in every execution.
 * - Reads of the stream are sequential (`readMore`): an operation at position p replays the
 *   record found there, or runs once the stream is known to end before p.
 * - Appends are in position order (`commit` waits for p - 1): each is a conditional append
 *   at its position, so of racing executions one writes each position. An execution whose
 *   append loses to another execution's record stops and waits for the instance's end.
 */
import { createHash } from "node:crypto";
import type { FunctionLogger, JsonValue, LogBook, TagLike } from "../index.js";
import { toJsonText } from "../index.js";
import type { StepContext, StepOptions, TableEntry, WorkflowContext } from "./context.js";
import {
  CallFailedError,
  errorInfo,
  FlowError,
  isExecutionStop,
  isRetryable,
  StepFailedError,
  stopExecution,
} from "./errors.js";
import { raceVerdict, replayVerdict, type OpDesc } from "./machine.js";
import {
  decodeFlowRecord,
  encodeFlowRecord,
  INTENTS_TAG,
  stepsTag,
  tableTag,
  type CallRecord,
  type EndRecord,
  type FlowRecord,
  type Known,
  type Outcome,
  type StartRecord,
  type TableVersionRecord,
} from "./records.js";
import { resolveRetryPolicy, retryDelayMs } from "./retry.js";
import { flowCallOf, type FlowCall, type FlowOutcome } from "./protocol.js";
import {
  END_ATTEMPTS_MAX,
  INSTANCE_ID_CHARS_MAX,
  OPERATIONS_PER_EXECUTION_MAX,
  PIPELINED_APPENDS_MAX,
  SLEEP_DEADLINE_MARGIN_MS,
  SLEEP_IN_PROCESS_MS_MAX,
  TABLE_WALK_RECORDS_MAX,
  TABLE_WRITE_ATTEMPTS_MAX,
} from "./limits.js";

/** What an execution needs from the function it runs in. */
export interface ExecutionEnv {
  readonly log: LogBook;
  readonly book: number;
  readonly logger: FunctionLogger;
  /** When the invocation running it times out, ms since the epoch. */
  readonly deadline: number;
  readonly signal: AbortSignal;
  now(): number;
  /** Resolves after `ms`. */
  sleep(ms: number): Promise<void>;
  invoke(name: string, input: JsonValue): Promise<JsonValue>;
  invokeAsync(name: string, input: JsonValue): Promise<string>;
  /** Whether `name` is a workflow (its calls take a FlowCall and answer a FlowOutcome). */
  isWorkflow(name: string): boolean;
}

/** What a workflow definition gives its executions. */
export interface ExecutionDefinition {
  readonly name: string;
  readonly timeoutMs: number;
  readonly retentionMs: number;
  readonly handler: (wf: WorkflowContext, input: JsonValue) => unknown;
}

type StopKind = "superseded" | "cancelled" | "suspended" | "waiting" | "failed-execution";

interface Stop {
  readonly kind: StopKind;
  readonly error: Error;
  /** For "suspended": when the sleep ends. */
  readonly until?: number;
}

interface Waiter {
  readonly pos: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

function isCondFailure(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "COND_APPEND_FAILED";
}

/** A JSON value as records keep it; anything else fails the operation with a clear message. */
function jsonValue(value: unknown, what: string): JsonValue {
  return JSON.parse(toJsonText(value, what, "INVALID_OUTPUT")) as JsonValue;
}

/** A generator of numbers in [0, 1) seeded by a string (sfc32 over SHA-256 of it). */
function seededRandom(seed: string): () => number {
  const h = createHash("sha256").update(seed, "utf8").digest();
  let a = h.readUInt32LE(0);
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  return () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (a + b + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

export function checkInstanceId(id: unknown): string {
  if (
    typeof id !== "string" ||
    id.length === 0 ||
    id.length > INSTANCE_ID_CHARS_MAX ||
    !/^[\x21-\x7e]+$/.test(id)
  ) {
    throw new FlowError(
      "INVALID_ARGUMENT",
      `a workflow id is 1 to ${INSTANCE_ID_CHARS_MAX} visible ASCII characters, got ${typeof id === "string" ? JSON.stringify(id.slice(0, 40)) : typeof id}`,
    );
  }
  return id;
}

function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 256) {
    throw new FlowError("INVALID_ARGUMENT", `${what} must be a string of 1 to 256 characters`);
  }
  return value;
}

export class Execution {
  readonly tag: TagLike;
  private readonly known: Known[] = [];
  private allocated = 0;
  /** Whether the stream is known to hold nothing past `known` (besides this execution's own appends). */
  private atTail = false;
  private reading: Promise<void> | undefined;
  /** Positions this execution's own conditional appends are in flight for. */
  private readonly appending = new Set<number>();
  /** Commits waiting for an own append to start below them (see `mayPipeline`). */
  private appendStarted: Array<() => void> = [];
  private waiters: Waiter[] = [];
  private stopped: Stop | undefined;
  private stopSignal!: (s: Stop) => void;
  private readonly stopPromise: Promise<Stop>;
  private readonly random: () => number;
  private start: StartRecord | undefined;
  /**
   * Whether this execution runs a parent's `wf.invoke` of this instance: the parent's
   * execution waits for its answer, so the parent needs no resuming when it ends.
   */
  private awaitedByParent = false;

  constructor(
    private readonly def: ExecutionDefinition,
    readonly id: string,
    private readonly env: ExecutionEnv,
  ) {
    this.tag = stepsTag(id);
    this.random = seededRandom(`boki-flow/${id}`);
    this.stopPromise = new Promise<Stop>((resolve) => (this.stopSignal = resolve));
  }

  // ------------------------------------------------------------------ the stream

  private lastSeqnum(): number {
    return this.known[this.known.length - 1]!.seqnum;
  }

  private push(k: Known): void {
    this.known.push(k);
    const ready = this.waiters.filter((w) => w.pos < this.known.length);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.pos >= this.known.length);
    for (const w of ready) w.resolve();
  }

  /** Resolves once position `pos` is known (its record read or written). */
  private waitKnown(pos: number): Promise<void> {
    if (pos < this.known.length) return Promise.resolve();
    if (this.stopped !== undefined) return Promise.reject(this.stopped.error);
    return new Promise((resolve, reject) => this.waiters.push({ pos, resolve, reject }));
  }

  private stop(s: Stop): never {
    if (this.stopped === undefined) {
      this.stopped = s;
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.reject(s.error);
      this.stopSignal(s);
    }
    throw this.stopped.error;
  }

  private throwIfStopped(): void {
    if (this.stopped !== undefined) throw this.stopped.error;
  }

  /** Log errors end the execution (the instance goes on later); they are not the workflow's failure. */
  private async logOp<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (isCondFailure(err)) throw err;
      const e = stopExecution(
        new FlowError(
          "INVALID_ARGUMENT",
          `workflow ${this.id}: ${what} failed: ${errorInfo(err).message}`,
          {
            cause: err,
            retryable: true,
          },
        ),
      );
      return this.stop({ kind: "failed-execution", error: e });
    }
  }

  /** Reads the record after the last known one (one read at a time). */
  private readMore(): Promise<void> {
    this.reading ??= (async () => {
      try {
        const r = await this.logOp("reading the step stream", () =>
          this.env.log.readNext(this.tag, this.lastSeqnum() + 1),
        );
        if (r === null) this.atTail = true;
        else this.push(decodeFlowRecord(r));
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  private alloc(): number {
    this.throwIfStopped();
    if (this.allocated >= OPERATIONS_PER_EXECUTION_MAX) {
      throw new FlowError(
        "INVALID_ARGUMENT",
        `workflow ${this.id} asked for more than ${OPERATIONS_PER_EXECUTION_MAX} operations (OPERATIONS_PER_EXECUTION_MAX)`,
      );
    }
    return this.allocated++;
  }

  /**
   * The record at `pos` if the stream holds one (checked against `d`), or undefined when
   * the operation is this execution's to run.
   */
  private async decide(pos: number, d: OpDesc): Promise<Known | undefined> {
    for (;;) {
      this.throwIfStopped();
      const k = this.known[pos];
      if (k !== undefined) {
        const v = replayVerdict(d, k.rec, pos);
        if (v.t === "result") return k;
        if (v.t === "cancelled") this.cancelled(v.reason);
        return this.stop({
          kind: "failed-execution",
          error: stopExecution(
            new FlowError("NON_DETERMINISTIC", `workflow ${this.id}: ${v.message}`),
          ),
        });
      }
      if (this.atTail) return undefined;
      await this.readMore();
    }
  }

  private cancelled(reason: string): never {
    return this.stop({
      kind: "cancelled",
      error: new FlowError(
        "CANCELLED",
        `workflow ${this.id} was cancelled${reason === "" ? "" : `: ${reason}`}`,
      ),
    });
  }

  private superseded(pos: number): never {
    return this.stop({
      kind: "superseded",
      error: stopExecution(
        new FlowError(
          "SUPERSEDED",
          `workflow ${this.id}: another execution wrote position ${pos} first`,
        ),
      ),
    });
  }

  /** Reads the record another writer put at `pos` (the position after the last known). */
  private async readAt(pos: number): Promise<Known> {
    if (this.known.length !== pos)
      throw stopExecution(
        new Error(`flow invariant: reading position ${pos} with ${this.known.length} known`),
      );
    const r = await this.logOp("reading the step stream", () =>
      this.env.log.readNext(this.tag, this.lastSeqnum() + 1),
    );
    if (r === null)
      throw stopExecution(
        new Error(`flow invariant: position ${pos} of ${this.id} was taken but reads as empty`),
      );
    const k = decodeFlowRecord(r);
    this.push(k);
    return k;
  }

  /**
   * Whether an append at `pos` may go out now, before the positions below it are known: when
   * every one of them is this execution's own append in flight (operations started together,
   * e.g. under `Promise.all`, finishing together). The log keeps one session's appends in
   * the order they were made, so it usually lands right after them; if not, `commit` finds
   * out from the failed condition and appends again.
   */
  private mayPipeline(pos: number): boolean {
    if (!this.atTail || pos - this.known.length > PIPELINED_APPENDS_MAX) return false;
    for (let q = this.known.length; q < pos; q++) if (!this.appending.has(q)) return false;
    return true;
  }

  /** Appends this execution's record for `d` at `pos`, in position order. */
  private async commit(
    pos: number,
    d: OpDesc,
    rec: FlowRecord,
    extraTags: readonly TagLike[] = [],
  ): Promise<Known> {
    const data = encodeFlowRecord(rec);
    const append = async (): Promise<number> => {
      this.appending.add(pos);
      const started = this.appendStarted;
      this.appendStarted = [];
      for (const wake of started) wake();
      try {
        return await this.logOp("logging a step", () =>
          this.env.log.condAppend([this.tag, ...extraTags], data, this.tag, pos),
        );
      } finally {
        this.appending.delete(pos);
      }
    };
    // Until the position below is known, go out as soon as every position below is an own
    // append in flight.
    while (this.known.length < pos) {
      this.throwIfStopped();
      if (!this.mayPipeline(pos)) {
        await Promise.race([
          this.waitKnown(pos - 1),
          new Promise<void>((resolve) => this.appendStarted.push(resolve)),
        ]);
        continue;
      }
      let seqnum: number | undefined;
      try {
        seqnum = await append();
      } catch (err) {
        if (!isCondFailure(err)) throw err;
      }
      await this.waitKnown(pos - 1);
      this.throwIfStopped();
      if (seqnum !== undefined) {
        // Exactly `pos` records came before it: it is the one at `pos`, whoever wrote those.
        if (this.known.length > pos) return this.known[pos]!;
        const k: Known = { seqnum, rec };
        this.push(k);
        return k;
      }
      // Taken by another writer, or this append was ordered before the one at pos - 1.
      if (this.known.length === pos) {
        const r = await this.logOp("reading the step stream", () =>
          this.env.log.readNext(this.tag, this.lastSeqnum() + 1),
        );
        if (r !== null) return this.afterRace(pos, d, this.pushRead(r));
      }
      break;
    }
    this.throwIfStopped();
    if (this.known.length > pos) {
      // Read while waiting (a replaying execution reached the tail late): take what is there.
      const k = this.known[pos]!;
      const v = raceVerdict(d, k.rec);
      if (v.t === "adopt") return k;
      if (v.t === "cancelled") this.cancelled(v.reason);
      return this.superseded(pos);
    }
    try {
      const seqnum = await append();
      const k: Known = { seqnum, rec };
      this.push(k);
      return k;
    } catch (err) {
      if (!isCondFailure(err)) throw err;
      const found = await this.readAt(pos);
      const v = raceVerdict(d, found.rec);
      if (v.t === "adopt") return found;
      if (v.t === "cancelled") this.cancelled(v.reason);
      return this.superseded(pos);
    }
  }

  /** The outcome of an operation: replayed from the log, or run and logged by `produce`. */
  private async operate(d: OpDesc, produce: (pos: number) => Promise<Known>): Promise<Known> {
    const pos = this.alloc();
    const found = await this.decide(pos, d);
    if (found !== undefined) return found;
    return produce(pos);
  }

  private at(): number {
    return this.env.now();
  }

  // ------------------------------------------------------------------ operations

  private async step<T>(
    name: string,
    fn: (s: StepContext) => T | Promise<T>,
    options?: StepOptions,
  ): Promise<T> {
    checkName(name, "a step name");
    if (typeof fn !== "function")
      throw new FlowError("INVALID_ARGUMENT", `step ${name}: fn must be a function`);
    const policy = resolveRetryPolicy(options?.retry);
    const d: OpDesc = { k: "step", name };
    const k = await this.operate(d, async (pos) => {
      let outcome: Outcome | undefined;
      for (let attempt = 1; outcome === undefined; attempt++) {
        this.throwIfStopped();
        try {
          const value = await fn({
            key: `${this.id}:${pos}`,
            attempt,
            signal: this.env.signal,
            log: this.env.log,
            deadline: this.env.deadline,
            invokeAsync: (n, i) => this.env.invokeAsync(n, i),
          });
          outcome = {
            ok: true,
            value: jsonValue(value, `the result of step ${JSON.stringify(name)}`),
          };
        } catch (err) {
          if (isExecutionStop(err)) throw err;
          const delay = retryDelayMs(policy, attempt);
          const last =
            attempt >= policy.maxAttempts ||
            !isRetryable(err) ||
            this.at() + delay >= this.env.deadline;
          if (last) outcome = { ok: false, error: errorInfo(err) };
          else {
            this.env.logger.warn(
              `step ${name} attempt ${attempt} failed; retrying in ${delay} ms`,
              {
                workflowId: this.id,
                error: errorInfo(err).message,
              },
            );
            await this.env.sleep(delay);
          }
        }
      }
      return this.commit(pos, d, { v: 1, k: "step", at: this.at(), name, ...outcome });
    });
    const rec = k.rec as Extract<FlowRecord, { k: "step" }>;
    if (!rec.ok) throw new StepFailedError(name, rec.error);
    return rec.value as T;
  }

  private async invoke<O>(name: string, input: unknown): Promise<O> {
    checkName(name, "a function name");
    const d: OpDesc = { k: "call", fn: name };
    const arg = jsonValue(input ?? null, `the input of ${name}`);
    const k = await this.operate(d, async (pos) => {
      let outcome: Outcome;
      let child: string | undefined;
      if (this.env.isWorkflow(name)) {
        child = `${this.id}/${pos}`;
        const call: FlowCall = {
          $flow: "start",
          id: child,
          input: arg,
          parent: { id: this.id, pos, wf: this.def.name },
        };
        const out = await this.callChild(name, call);
        if (out.status === "succeeded") outcome = { ok: true, value: out.output };
        else if (out.status === "failed" || out.status === "cancelled")
          outcome = { ok: false, error: out.error };
        else {
          // The child sleeps or runs elsewhere: it writes its result here when it ends and
          // resumes this instance then.
          return this.stop({
            kind: "waiting",
            error: stopExecution(
              new FlowError("SUPERSEDED", `workflow ${this.id} waits for ${child}`),
            ),
          });
        }
      } else {
        try {
          outcome = { ok: true, value: await this.env.invoke(name, arg) };
        } catch (err) {
          if (isExecutionStop(err)) throw err;
          const code = (err as { code?: unknown }).code;
          // Failures of the runtime itself (a lost worker, overload) end this execution; the
          // instance calls again when it is resumed.
          if ((err as { retryable?: unknown }).retryable === true && code !== "FUNCTION_ERROR") {
            return this.stop({
              kind: "failed-execution",
              error: stopExecution(
                new FlowError(
                  "CALL_FAILED",
                  `workflow ${this.id}: call of ${name}: ${errorInfo(err).message}`,
                  { cause: err, retryable: true },
                ),
              ),
            });
          }
          outcome = { ok: false, error: errorInfo(err) };
        }
      }
      const rec: CallRecord = {
        v: 1,
        k: "call",
        at: this.at(),
        fn: name,
        ...(child === undefined ? {} : { child }),
        ...outcome,
      };
      return this.commit(pos, d, rec);
    });
    const rec = k.rec as CallRecord;
    if (!rec.ok) throw new CallFailedError(name, rec.error);
    return rec.value as O;
  }

  private async callChild(name: string, call: FlowCall): Promise<FlowOutcome> {
    let out: JsonValue;
    try {
      out = await this.env.invoke(name, call);
    } catch (err) {
      if (isExecutionStop(err)) throw err;
      return this.stop({
        kind: "failed-execution",
        error: stopExecution(
          new FlowError(
            "CALL_FAILED",
            `workflow ${this.id}: call of workflow ${name}: ${errorInfo(err).message}`,
            { cause: err, retryable: true },
          ),
        ),
      });
    }
    return out as unknown as FlowOutcome;
  }

  private async invokeAsync(name: string, input: unknown): Promise<string> {
    checkName(name, "a function name");
    const d: OpDesc = { k: "spawn", fn: name };
    const arg = jsonValue(input ?? null, `the input of ${name}`);
    const k = await this.operate(d, async (pos) => {
      let child: string;
      const isWf = this.env.isWorkflow(name);
      const callInput: JsonValue = isWf
        ? { $flow: "start", id: `${this.id}/${pos}`, input: arg }
        : arg;
      try {
        const invocationId = await this.env.invokeAsync(name, callInput);
        child = isWf ? `${this.id}/${pos}` : invocationId;
      } catch (err) {
        if (isExecutionStop(err)) throw err;
        return this.stop({
          kind: "failed-execution",
          error: stopExecution(
            new FlowError(
              "CALL_FAILED",
              `workflow ${this.id}: starting ${name}: ${errorInfo(err).message}`,
              { cause: err, retryable: true },
            ),
          ),
        });
      }
      return this.commit(pos, d, { v: 1, k: "spawn", at: this.at(), fn: name, child });
    });
    return (k.rec as Extract<FlowRecord, { k: "spawn" }>).child;
  }

  private async now(): Promise<number> {
    const d: OpDesc = { k: "now" };
    const k = await this.operate(d, (pos) =>
      this.commit(pos, d, { v: 1, k: "now", at: this.at() }),
    );
    return k.rec.at;
  }

  private async sleepUntil(until: number, what: string): Promise<void> {
    if (!Number.isFinite(until))
      throw new FlowError("INVALID_ARGUMENT", `${what} must be a finite time`);
    const d: OpDesc = { k: "sleep" };
    const k = await this.operate(d, (pos) =>
      this.commit(pos, d, { v: 1, k: "sleep", at: this.at(), until }),
    );
    const end = (k.rec as Extract<FlowRecord, { k: "sleep" }>).until;
    const pos = this.known.indexOf(k);
    // Alone (no other operation in flight), the sleep waits on the stream itself, so a
    // cancel (or another execution moving on) ends it early.
    const alone = pos === this.known.length - 1 && this.allocated === pos + 1;
    if (alone && !this.atTail) {
      await this.readMore();
      const next = this.known[pos + 1];
      if (next !== undefined) {
        if (next.rec.k === "cancel") this.cancelled(next.rec.reason);
        return; // an earlier execution slept through and went on
      }
    }
    const left = end - this.at();
    if (left <= 0) return;
    const window = Math.min(
      SLEEP_IN_PROCESS_MS_MAX,
      this.env.deadline - this.at() - SLEEP_DEADLINE_MARGIN_MS,
    );
    if (left > window) {
      return this.stop({
        kind: "suspended",
        until: end,
        error: stopExecution(
          new FlowError(
            "SUPERSEDED",
            `workflow ${this.id} sleeps until ${new Date(end).toISOString()}`,
          ),
        ),
      });
    }
    if (!alone) {
      await this.env.sleep(left);
      this.throwIfStopped();
      return;
    }
    const r = await this.logOp("waiting on the step stream", () =>
      this.env.log.readNextBlocking(this.tag, this.lastSeqnum() + 1, Math.max(1, Math.ceil(left))),
    );
    this.throwIfStopped();
    if (r !== null) {
      const next = this.pushRead(r);
      if (next.rec.k === "cancel") this.cancelled(next.rec.reason);
    }
  }

  /** The seqnum reads of the operation about to get position `allocated` are bounded by. */
  private async readBound(): Promise<number> {
    const prev = this.allocated - 1;
    if (prev < 0) throw new Error("flow invariant: a read before the start record");
    for (;;) {
      this.throwIfStopped();
      if (prev < this.known.length) return this.known[prev]!.seqnum;
      if (!this.atTail) await this.readMore();
      else await this.waitKnown(prev);
    }
  }

  private async readEntry<T>(table: string, key: string, bound: number): Promise<TableEntry<T>> {
    const tag = tableTag(checkName(table, "a table name"), checkName(key, "a table key"));
    const r = await this.logOp("reading a table", () => this.env.log.readPrev(tag, bound));
    if (r === null) return { value: undefined, version: 0 };
    const w = decodeFlowRecord(r).rec as TableVersionRecord;
    return { value: w.value as T | undefined, version: w.ver + 1 };
  }

  /**
   * Looks for this operation's own version of the key, written after `after` (the previous
   * operation's record): an earlier execution, or a racing one, may have written it before
   * logging the operation. Walks back from the key's tail; returns it, or the key's newest
   * version when this operation wrote none.
   */
  private async ownVersion(
    tag: TagLike,
    pos: number,
    after: number,
  ): Promise<{ own?: Known<TableVersionRecord>; current: number }> {
    let r = await this.logOp("reading a table", () => this.env.log.checkTail(tag));
    const current = r === null ? 0 : (decodeFlowRecord(r).rec as TableVersionRecord).ver + 1;
    for (let walked = 0; r !== null && r.seqnum > after; walked++) {
      const k = decodeFlowRecord(r) as Known<TableVersionRecord>;
      if (k.rec.by === this.id && k.rec.pos === pos) return { own: k, current };
      if (walked >= TABLE_WALK_RECORDS_MAX) {
        throw new FlowError(
          "INVALID_ARGUMENT",
          `workflow ${this.id}: more than ${TABLE_WALK_RECORDS_MAX} writes of one key during one operation (TABLE_WALK_RECORDS_MAX)`,
          { retryable: true },
        );
      }
      const prev = r.seqnum - 1;
      r = await this.logOp("reading a table", () => this.env.log.readPrev(tag, prev));
    }
    return { current };
  }

  /**
   * A table write, exactly once, in one append. The new version is a record on the key's
   * stream, a conditional append at the key's version count (so versions are dense and a
   * condWrite is a compare-and-set), carrying this instance's id and the operation's
   * position; it carries the step stream's tag too, and is the operation's record there.
   * It needs no condition on the step stream: every position below is known before it goes
   * out, and the only other record that can take the operation's position is a racing
   * execution's for the same operation (its own version of the key, which the condition on
   * the key lets only one of them write, or a failed condWrite's record, which cannot
   * coexist with a version written at the version it expected) or a cancel. So before it
   * writes, an execution looks for its own version (a racing execution may have written it),
   * and after, it reads which record took the position. A condWrite whose condition fails
   * logs a `cwrite` record at the position instead.
   */
  private async tableWrite(
    table: string,
    key: string,
    value: unknown,
    expected: number | undefined,
  ): Promise<boolean> {
    checkName(table, "a table name");
    checkName(key, "a table key");
    const d: OpDesc =
      expected === undefined ? { k: "write", table, key } : { k: "cwrite", table, key };
    const stored =
      value === undefined ? undefined : jsonValue(value, `the value written to ${table}/${key}`);
    const tag = tableTag(table, key);
    const k = await this.operate(d, async (pos) => {
      await this.waitKnown(pos - 1);
      const after = this.known[pos - 1]!.seqnum;
      for (let attempt = 1; ; attempt++) {
        this.throwIfStopped();
        const { own, current } = await this.ownVersion(tag, pos, after);
        if (own !== undefined) {
          if (own.rec.table === undefined) {
            // A version written before versions were step records: log the operation.
            return this.commit(pos, d, {
              v: 1,
              k: "write",
              at: this.at(),
              table,
              key,
              ver: own.rec.ver,
            });
          }
          return this.placed(pos, d, own);
        }
        if (expected !== undefined && current !== expected) {
          return this.commit(pos, d, {
            v: 1,
            k: "cwrite",
            at: this.at(),
            table,
            key,
            ver: current,
          });
        }
        const version: TableVersionRecord = {
          v: 1,
          k: "tver",
          at: this.at(),
          ver: current,
          by: this.id,
          pos,
          table,
          key,
          ...(stored === undefined ? {} : { value: stored }),
        };
        let seqnum: number;
        try {
          seqnum = await this.logOp("writing a table", () =>
            this.env.log.condAppend([tag, this.tag], encodeFlowRecord(version), tag, current),
          );
        } catch (err) {
          if (!isCondFailure(err)) throw err;
          // Another version came first: a racing execution's own (found next time round),
          // or another writer's (a condWrite then finds the version moved; a write tries again).
          if (attempt >= TABLE_WRITE_ATTEMPTS_MAX) {
            throw new FlowError(
              "INVALID_ARGUMENT",
              `workflow ${this.id}: ${table}/${key} changed under ${attempt} write attempts (TABLE_WRITE_ATTEMPTS_MAX)`,
              { retryable: true },
            );
          }
          continue;
        }
        return this.placed(pos, d, { seqnum, rec: version });
      }
    });
    return k.rec.k === "write" || k.rec.k === "tver";
  }

  /**
   * The record at `pos` once this operation's own version of a key (`mine`, which carries
   * the step stream's tag) is in the log: `mine` itself, unless a cancel took the position
   * before it.
   */
  private async placed(pos: number, d: OpDesc, mine: Known<TableVersionRecord>): Promise<Known> {
    while (this.known.length <= pos) {
      this.throwIfStopped();
      if (this.reading !== undefined) {
        await this.reading;
        continue;
      }
      const r = await this.logOp("reading the step stream", () =>
        this.env.log.readNext(this.tag, this.lastSeqnum() + 1),
      );
      if (r === null)
        throw stopExecution(
          new Error(`flow invariant: version ${mine.seqnum} of ${this.id} is not in its stream`),
        );
      if (this.known.length <= pos) this.pushRead(r);
    }
    const k = this.known[pos]!;
    if (k.seqnum === mine.seqnum) return k;
    const v = replayVerdict(d, k.rec, pos);
    if (v.t === "cancelled") this.cancelled(v.reason);
    return this.superseded(pos);
  }

  private pushRead(r: Parameters<typeof decodeFlowRecord>[0]): Known {
    const k = decodeFlowRecord(r);
    this.push(k);
    return k;
  }

  private afterRace(pos: number, d: OpDesc, found: Known): Known {
    const v = raceVerdict(d, found.rec);
    if (v.t === "adopt") return found;
    if (v.t === "cancelled") this.cancelled(v.reason);
    return this.superseded(pos);
  }

  // ------------------------------------------------------------------ the whole run

  private context(): WorkflowContext {
    return {
      id: this.id,
      workflow: this.def.name,
      book: this.env.book,
      logger: this.env.logger,
      step: (name, fn, options) => this.step(name, fn, options),
      invoke: (name, input) => this.invoke(name, input),
      invokeAsync: (name, input) => this.invokeAsync(name, input),
      sleep: (ms) => {
        if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
          return Promise.reject(
            new FlowError("INVALID_ARGUMENT", `sleep needs a number of ms ≥ 0, got ${String(ms)}`),
          );
        }
        return this.sleepUntil(this.at() + ms, "sleep's end");
      },
      sleepUntil: (when) =>
        this.sleepUntil(when instanceof Date ? when.getTime() : when, "sleepUntil's time"),
      now: () => this.now(),
      random: () => this.random(),
      read: async (table, key) =>
        (await this.readEntry(table, key, await this.readBound())).value as never,
      readEntry: async (table, key) => this.readEntry(table, key, await this.readBound()),
      write: async (table, key, value) => {
        await this.tableWrite(table, key, value, undefined);
      },
      delete: async (table, key) => {
        await this.tableWrite(table, key, undefined, undefined);
      },
      condWrite: (table, key, value, expectedVersion) => {
        if (!Number.isInteger(expectedVersion) || expectedVersion < 0) {
          return Promise.reject(
            new FlowError(
              "INVALID_ARGUMENT",
              `condWrite needs a version ≥ 0, got ${String(expectedVersion)}`,
            ),
          );
        }
        return this.tableWrite(table, key, value, expectedVersion);
      },
    };
  }

  /**
   * Starts the instance (or finds it started) and runs the handler to its end, or until
   * this execution has to stop. The call says whether this is a new instance (`start`,
   * with its input) or a resumption (`resume`).
   */
  async run(call: FlowCall): Promise<FlowOutcome> {
    this.awaitedByParent = call.$flow === "start" && call.parent !== undefined;
    const started = await this.begin(call);
    if (started !== undefined) return started;
    const handlerDone = (async (): Promise<Outcome> => {
      try {
        const value = await this.def.handler(this.context(), this.start!.input);
        return { ok: true, value: jsonValue(value, `the output of workflow ${this.def.name}`) };
      } catch (err) {
        // The machinery's own stops are never the workflow's failure.
        if (isExecutionStop(err) && this.stopped === undefined) {
          try {
            this.stop({ kind: "failed-execution", error: err as Error });
          } catch {
            // recorded as this execution's stop
          }
        }
        return { ok: false, error: errorInfo(err) };
      }
    })();
    const first = await Promise.race([handlerDone, this.stopPromise]);
    if (this.stopped !== undefined) return this.afterStop(this.stopped);
    const outcome = first as Outcome;
    return this.finish(
      outcome.ok ? { status: "succeeded", ...outcome } : { status: "failed", ...outcome },
    );
  }

  /** Undefined when the handler is to run; otherwise the outcome at once (an ended instance). */
  private async begin(call: FlowCall): Promise<FlowOutcome | undefined> {
    const at = this.at();
    if (call.$flow === "start") {
      const start: StartRecord = {
        v: 1,
        k: "start",
        at,
        wf: this.def.name,
        id: this.id,
        input: call.input ?? null,
        timeoutMs: this.def.timeoutMs,
        retentionMs: this.def.retentionMs,
        ...(call.parent === undefined ? {} : { parent: call.parent }),
      };
      try {
        const seqnum = await this.logOp("logging the start", () =>
          this.env.log.condAppend([this.tag, INTENTS_TAG], encodeFlowRecord(start), this.tag, 0),
        );
        this.push({ seqnum, rec: start });
        this.start = start;
        this.allocated = 1;
        this.atTail = true;
        return undefined;
      } catch (err) {
        if (!isCondFailure(err)) return this.afterStop(this.stopped!);
      }
    }
    // Started before: replay it, unless it has ended.
    let first;
    try {
      first = await this.logOp("reading the start", () => this.env.log.readNext(this.tag, 0));
    } catch {
      return this.afterStop(this.stopped!);
    }
    if (first === null) {
      throw new FlowError(
        "NOT_FOUND",
        `no workflow instance ${this.id} (never started, or trimmed after its retention)`,
      );
    }
    const k = decodeFlowRecord(first);
    if (k.rec.k !== "start")
      throw new FlowError(
        "CORRUPT_RECORD",
        `workflow ${this.id}: its stream does not begin with a start record`,
      );
    if (k.rec.wf !== this.def.name) {
      throw new FlowError(
        "ID_CONFLICT",
        `workflow id ${this.id} belongs to an instance of ${k.rec.wf}, not ${this.def.name}`,
      );
    }
    this.push(k);
    this.start = k.rec;
    this.allocated = 1;
    let tail;
    try {
      tail = await this.logOp("reading the stream's tail", () => this.env.log.checkTail(this.tag));
    } catch {
      return this.afterStop(this.stopped!);
    }
    if (tail !== null) {
      const t = decodeFlowRecord(tail);
      if (t.rec.k === "end") return this.endOutcome(t.rec);
    }
    return undefined;
  }

  private endOutcome(end: EndRecord): FlowOutcome {
    if (end.ok) return { status: "succeeded", output: end.value };
    return { status: end.status === "cancelled" ? "cancelled" : "failed", error: end.error };
  }

  private endRecord(o: { status: EndRecord["status"] } & Outcome): EndRecord {
    const at = this.at();
    return {
      v: 1,
      k: "end",
      at,
      id: this.id,
      status: o.status,
      gcAt: at + this.start!.retentionMs,
      ...(o.ok ? { ok: true, value: o.value } : { ok: false, error: o.error }),
    };
  }

  private async finish(o: { status: EndRecord["status"] } & Outcome): Promise<FlowOutcome> {
    let k: Known;
    try {
      if (this.stopped === undefined) {
        const pos = this.alloc();
        k =
          (await this.decide(pos, { k: "end" })) ??
          (await this.commit(pos, { k: "end" }, this.endRecord(o), [INTENTS_TAG]));
      } else {
        k = await this.appendEndAfterStop(this.endRecord(o));
      }
    } catch (err) {
      const s = this.stopped;
      if (s === undefined || (s.kind === "cancelled" && o.status === "cancelled")) throw err;
      // A cancel that came before the end in the log makes the instance cancelled.
      if (s.kind === "cancelled")
        return this.finish({ status: "cancelled", ok: false, error: errorInfo(s.error) });
      return this.afterStop(s);
    }
    await this.callBack(k.rec as EndRecord);
    return this.endOutcome(k.rec as EndRecord);
  }

  /**
   * After a stop (a cancel) the end goes after everything this execution knows: positions
   * given out to operations that stopped without a record are not waited for. A record
   * taking that position first is read, and an end found is the instance's.
   */
  private async appendEndAfterStop(end: EndRecord): Promise<Known> {
    for (let attempt = 0; attempt < END_ATTEMPTS_MAX; attempt++) {
      const pos = this.known.length;
      try {
        const seqnum = await this.env.log.condAppend(
          [this.tag, INTENTS_TAG],
          encodeFlowRecord(end),
          this.tag,
          pos,
        );
        const k: Known = { seqnum, rec: end };
        this.push(k);
        return k;
      } catch (err) {
        if (!isCondFailure(err)) throw err;
        const r = await this.env.log.readNext(this.tag, this.lastSeqnum() + 1);
        if (r === null)
          throw new Error(
            `flow invariant: position ${pos} of ${this.id} was taken but reads as empty`,
          );
        const k = this.pushRead(r);
        if (k.rec.k === "end") return k;
      }
    }
    throw new FlowError(
      "SUPERSEDED",
      `workflow ${this.id}: ending it lost ${END_ATTEMPTS_MAX} races`,
      { retryable: true },
    );
  }

  /** Beldi's callback: a child started by `wf.invoke` writes its result into its parent's stream. */
  private async callBack(end: EndRecord): Promise<void> {
    const parent = this.start?.parent;
    if (parent === undefined) return;
    const rec: CallRecord = {
      v: 1,
      k: "call",
      at: this.at(),
      fn: this.def.name,
      child: this.id,
      cb: true,
      ...(end.ok ? { ok: true, value: end.value } : { ok: false, error: end.error }),
    };
    try {
      await this.env.log.condAppend(
        [stepsTag(parent.id)],
        encodeFlowRecord(rec),
        stepsTag(parent.id),
        parent.pos,
      );
    } catch (err) {
      if (isCondFailure(err)) return; // the parent logged the result itself
      this.env.logger.warn(
        "writing a result into the calling workflow failed; it calls again when it resumes",
        {
          workflowId: this.id,
          error: errorInfo(err).message,
        },
      );
      return;
    }
    // The parent's execution that called this one gets the outcome as its answer (were it
    // gone meanwhile, the recovery task resumes the parent). Any other execution ends the
    // child after the parent stopped waiting for it (the child slept, or was resumed after
    // a crash): resume the parent.
    if (this.awaitedByParent) return;
    try {
      await this.env.invokeAsync(parent.wf, {
        $flow: "resume",
        id: parent.id,
      });
    } catch (err) {
      this.env.logger.warn("resuming the calling workflow failed; the recovery task resumes it", {
        workflowId: this.id,
        error: errorInfo(err).message,
      });
    }
  }

  private async afterStop(s: Stop): Promise<FlowOutcome> {
    switch (s.kind) {
      case "cancelled":
        return this.finish({ status: "cancelled", ok: false, error: errorInfo(s.error) });
      case "suspended":
        return { status: "sleeping", until: s.until! };
      case "waiting":
        return { status: "running" };
      case "superseded":
        return this.awaitEnd();
      case "failed-execution":
        throw s.error;
    }
  }

  /** Waits (until the invocation's deadline) for another execution to end the instance. */
  private async awaitEnd(): Promise<FlowOutcome> {
    let after = this.lastSeqnum() + 1;
    for (;;) {
      const left = this.env.deadline - this.at() - SLEEP_DEADLINE_MARGIN_MS;
      if (left <= 0) return { status: "running" };
      let r;
      try {
        r = await this.env.log.readNextBlocking(
          this.tag,
          after,
          Math.max(1, Math.floor(Math.min(left, SLEEP_IN_PROCESS_MS_MAX))),
        );
      } catch {
        return { status: "running" };
      }
      if (r === null) continue;
      const k = decodeFlowRecord(r);
      if (k.rec.k === "end") return this.endOutcome(k.rec);
      after = k.seqnum + 1;
    }
  }
}

/** Runs one call of workflow `def` (what its function does with each invocation). */
export function executionFor(
  def: ExecutionDefinition,
  input: unknown,
  env: ExecutionEnv,
  defaultId: string,
): { execution: Execution; call: FlowCall } {
  const call = flowCallOf(input, defaultId);
  return { execution: new Execution(def, checkInstanceId(call.id), env), call };
}
