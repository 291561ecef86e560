/**
 * What a workflow's handler gets: `wf`, the workflow context. Every operation on it is a
 * numbered position of the instance's step stream in the log. The first execution of an
 * instance runs each operation and logs its result with a conditional append at its
 * position; a later execution (after a crash, a restart, or a duplicate request) finds the
 * logged result and returns it instead of running the operation again. So a handler must
 * be deterministic apart from what goes through `wf`: the same input and the same logged
 * results must make it ask for the same operations in the same order. Use `wf.now()` and
 * `wf.random()` instead of `Date.now()` and `Math.random()`.
 */
import type { FunctionLogger, JsonValue, LogBook } from "../index.js";
import type { RetryPolicy } from "./retry.js";

/** What a step's function gets. */
export interface StepContext {
  /**
   * A key unique to this step of this instance, the same in every execution: pass it as
   * the idempotency key of an external call, so that an attempt repeated after a crash (a
   * step's function may run again if the process dies before its result is logged) has its
   * effect once.
   */
  readonly key: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Aborted when the invocation running the workflow times out. */
  readonly signal: AbortSignal;
  /**
   * The book the instance lives in, for a step that works on the log itself (a library's
   * protocol whose records are idempotent by ids derived from `key`, say): what it appends
   * happens once per execution that runs the step, and only its result is logged.
   */
  readonly log: LogBook;
  /** When the invocation running the workflow times out, ms since the epoch. */
  readonly deadline: number;
  /**
   * Starts function `name` without waiting and without logging anything on the instance's
   * stream (the runtime records it: it runs at least once); resolves to its invocation id.
   */
  invokeAsync(name: string, input: JsonValue): Promise<string>;
}

export interface StepOptions {
  /** How failed attempts are retried (default: 3 attempts, 100 ms doubling up to 10 s). */
  readonly retry?: RetryPolicy;
}

/** A table key's value and version (the number of writes it has had; 0: never written). */
export interface TableEntry<T = JsonValue> {
  readonly value: T | undefined;
  readonly version: number;
}

export interface WorkflowContext {
  /** The instance's id. */
  readonly id: string;
  /** The workflow's name. */
  readonly workflow: string;
  /** The book the instance lives in. */
  readonly book: number;
  /** Log lines of this execution (they carry the function name and invocation id). */
  readonly logger: FunctionLogger;

  /**
   * Runs `fn` once per instance as far as anyone can observe: its JSON result is logged,
   * and every later execution returns the logged result. Failed attempts are retried as
   * `options.retry` says; a `TerminalError` stops at once. When the attempts run out, the
   * failure is logged and the step rejects with a `StepFailedError` (in every execution).
   */
  step<T>(name: string, fn: (s: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T>;

  /**
   * Calls function `name` and returns its output, logged on this instance's stream. When
   * `name` is a workflow, it runs as a child instance (id `<this id>/<position>`) that
   * writes its result into this stream itself (Beldi's callback), so a re-executed caller
   * never runs it twice. A plain function is called again if the caller dies between the
   * call and the log; make it idempotent (e.g. with `ctx.invocationId`) or make it a workflow.
   */
  invoke<O = JsonValue>(name: string, input?: unknown): Promise<O>;

  /**
   * Starts function `name` without waiting (recorded by the runtime: it runs at least
   * once). A workflow gets the child id `<this id>/<position>`, so it starts once.
   * Resolves to that id (or the function's invocation id).
   */
  invokeAsync(name: string, input?: unknown): Promise<string>;

  /** A durable timer: sleeps `ms`, across restarts (long sleeps end the execution and resume it later). */
  sleep(ms: number): Promise<void>;
  /** Sleeps until `when` (a Date or ms since the epoch). */
  sleepUntil(when: Date | number): Promise<void>;
  /** The time, logged: every execution sees the same value (ms since the epoch). */
  now(): Promise<number>;
  /** A number in [0, 1) from a generator seeded by the instance id: the same sequence in every execution. */
  random(): number;

  /**
   * The value of `key` in durable table `table`, or undefined. Reads are not logged: they
   * read the key's newest version at or before this instance's previous operation's log
   * position, which every execution sees identically (Halfmoon's log-free reads).
   */
  read<T = JsonValue>(table: string, key: string): Promise<T | undefined>;
  /** Like `read`, with the key's version, for `condWrite`. */
  readEntry<T = JsonValue>(table: string, key: string): Promise<TableEntry<T>>;
  /** Writes `value` (exactly once: the write is this operation's log record). */
  write(table: string, key: string, value: unknown): Promise<void>;
  /** Deletes `key` (a write of nothing). */
  delete(table: string, key: string): Promise<void>;
  /**
   * Writes only if the key's version is still `expectedVersion` (from `readEntry`; 0 for a
   * key never written); resolves to whether it wrote. The outcome is logged.
   */
  condWrite(
    table: string,
    key: string,
    value: JsonValue,
    expectedVersion: number,
  ): Promise<boolean>;
}
