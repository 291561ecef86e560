/**
 * The function API: what a user writes. A module exports functions made with
 * `defineFunction`; the runtime calls `handler(ctx, input)` with a JSON input and sends
 * back the JSON output.
 *
 * ```ts
 * import { defineFunction, tagOf } from "boki-ts";
 *
 * export default defineFunction({
 *   name: "counter",
 *   async handler(ctx, input: { key: string }) {
 *     await ctx.log.append([tagOf(`counter:${input.key}`)], "+1");
 *     // ... replay the tag's records to count them
 *   },
 * });
 * ```
 */
import type { LogBook } from "../log/api.js";
import type { BookId } from "../log/types.js";
import { describe } from "../log/types.js";
import { InvalidArgumentError } from "../log/errors.js";
import { FUNCTION_TIMEOUT_MS_MAX } from "./limits.js";
import { isFunctionName, parseUserBook, type InvocationId } from "./ids.js";
import type { JsonValue } from "./json.js";

/** Marks the objects `defineFunction` returns; global, so it holds across module copies. */
export const FUNCTION_BRAND: unique symbol = Symbol.for("boki-ts.function");

/** Structured log lines of an invocation; they carry the function name and invocation id. */
export interface FunctionLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a handler gets besides its input. */
export interface FunctionContext {
  /** This invocation's id (see `InvocationId` for its form). */
  readonly invocationId: InvocationId;
  /** The name of the function being run. */
  readonly functionName: string;
  /** The book `log` is bound to. */
  readonly book: BookId;
  /**
   * The shared log, bound to this invocation's book. It carries the invocation's metalog
   * position: reads see this invocation's own writes, its caller's writes, and the writes
   * of every nested invocation that returned to it.
   */
  readonly log: LogBook;
  readonly logger: FunctionLogger;
  /** When the invocation times out, in milliseconds since the epoch. */
  readonly deadline: number;
  /**
   * Aborted when the invocation times out. A function that waits on something long can
   * pass it on or check it; the runtime cannot stop code that ignores it, only a worker
   * stuck in CPU (which it replaces).
   */
  readonly signal: AbortSignal;
  /**
   * Calls another function and waits for its output. The child runs in the same book and
   * starts at this invocation's position (it sees everything this one wrote); when it
   * returns, this invocation's position moves up to the child's (it sees what the child
   * wrote). A failing child rejects with an `InvocationError` carrying the child's code.
   */
  invoke<O = JsonValue>(name: string, input?: unknown, options?: InvokeOptions): Promise<O>;
  /**
   * Starts another function without waiting, in the same book: the request is recorded in
   * the log before this resolves, and runs at least once even if the process restarts.
   * Resolves to the child's invocation id. The id is derived from this invocation's, so
   * running this handler again (after a restart) does not start the child twice.
   */
  invokeAsync(name: string, input?: unknown, options?: InvokeOptions): Promise<InvocationId>;
  /**
   * A new id, unique within the system and deterministic: the invocation id plus a counter,
   * so a handler run again with the same invocation id derives the same ids in the same order.
   * `invoke` and `invokeAsync` draw from the same counter.
   */
  newId(): string;
}

/** Options of `ctx.invoke` and `ctx.invokeAsync`. */
export interface InvokeOptions {
  /**
   * Runs the child in this book instead of the caller's. Consistency across books: the
   * child starts at a position of its own book (it sees what was acknowledged there before
   * the call), and the caller's position does not move with it.
   */
  readonly book?: number;
}

/** How often the runtime runs a scheduled function. */
export interface FunctionSchedule {
  /** The pause between the end of one run and the start of the next, ms. */
  readonly everyMs: number;
}

/** Least interval of a scheduled function, ms. */
export const SCHEDULE_EVERY_MS_MIN = 100;
/** Longest interval of a scheduled function, ms (one day). */
export const SCHEDULE_EVERY_MS_MAX = 24 * 3600_000;

export type Handler<I = JsonValue, O = unknown> = (
  ctx: FunctionContext,
  input: I,
) => O | Promise<O>;

export interface FunctionOptions<I = JsonValue, O = unknown> {
  /** Unique among the loaded functions: a letter or _ then letters, digits, _, . or - (≤ 128). */
  readonly name: string;
  readonly handler: Handler<I, O>;
  /** The book invocations use unless the request names one (`X-Boki-Book`); default 0. */
  readonly book?: number;
  /** Time limit of one invocation, in ms (default: the host's, 30 s unless configured). */
  readonly timeoutMs?: number;
  /**
   * The runtime invokes the function with input null in its book every `everyMs`, one run at
   * a time (each gateway of a cluster does; a scheduled function must tolerate that).
   */
  readonly schedule?: FunctionSchedule;
  /** For libraries built on functions: what this function is ("workflow", ...); /functions shows it. */
  readonly kind?: string;
  /** For libraries: functions loaded along with this one (the same object loaded twice counts once). */
  readonly companions?: readonly BokiFunction<never, unknown>[];
  /** For libraries: a JSON value the runtime passes on with the function's description. */
  readonly meta?: JsonValue;
}

export interface BokiFunction<I = JsonValue, O = unknown> {
  readonly [FUNCTION_BRAND]: true;
  readonly name: string;
  readonly handler: Handler<I, O>;
  readonly book: BookId | undefined;
  readonly timeoutMs: number | undefined;
  readonly schedule: FunctionSchedule | undefined;
  readonly kind: string | undefined;
  readonly companions: readonly BokiFunction<never, unknown>[];
  readonly meta: JsonValue | undefined;
}

/**
 * Defines a function. Export the result from a module (default or named export; one module
 * may export several). Bad options throw at once, so a module with a mistake fails to load
 * with a clear message.
 */
export function defineFunction<I = JsonValue, O = unknown>(
  options: FunctionOptions<I, O>,
): BokiFunction<I, O> {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(
      `defineFunction needs an options object, got ${describe(options)}`,
    );
  }
  if (!isFunctionName(options.name)) {
    throw new InvalidArgumentError(
      `a function name is 1 to 128 characters: a letter or _ then letters, digits, _, . or -; got ${describe(options.name)}`,
    );
  }
  if (typeof options.handler !== "function") {
    throw new InvalidArgumentError(
      `function ${options.name}: handler must be a function, got ${describe(options.handler)}`,
    );
  }
  let book: BookId | undefined;
  if (options.book !== undefined) {
    try {
      book = parseUserBook(options.book, `function ${options.name}: book`);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  }
  const timeoutMs = options.timeoutMs;
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== "number" ||
      !Number.isInteger(timeoutMs) ||
      timeoutMs < 1 ||
      timeoutMs > FUNCTION_TIMEOUT_MS_MAX)
  ) {
    throw new InvalidArgumentError(
      `function ${options.name}: timeoutMs must be an integer in [1, ${FUNCTION_TIMEOUT_MS_MAX}], got ${describe(timeoutMs)}`,
    );
  }
  const schedule = options.schedule;
  if (
    schedule !== undefined &&
    (typeof schedule !== "object" ||
      schedule === null ||
      !Number.isInteger(schedule.everyMs) ||
      schedule.everyMs < SCHEDULE_EVERY_MS_MIN ||
      schedule.everyMs > SCHEDULE_EVERY_MS_MAX)
  ) {
    throw new InvalidArgumentError(
      `function ${options.name}: schedule.everyMs must be an integer in [${SCHEDULE_EVERY_MS_MIN}, ${SCHEDULE_EVERY_MS_MAX}], got ${describe(schedule?.everyMs)}`,
    );
  }
  const kind = options.kind;
  if (kind !== undefined && (typeof kind !== "string" || !/^[a-z][a-z0-9-]{0,31}$/.test(kind))) {
    throw new InvalidArgumentError(
      `function ${options.name}: kind must be 1 to 32 lowercase letters, digits or -, got ${describe(kind)}`,
    );
  }
  const companions = options.companions ?? [];
  if (!Array.isArray(companions) || !companions.every((c) => isBokiFunction(c))) {
    throw new InvalidArgumentError(
      `function ${options.name}: companions must be an array of functions made with defineFunction`,
    );
  }
  return Object.freeze({
    [FUNCTION_BRAND]: true as const,
    name: options.name,
    handler: options.handler,
    book,
    timeoutMs,
    schedule: schedule === undefined ? undefined : Object.freeze({ everyMs: schedule.everyMs }),
    kind,
    companions: Object.freeze([...companions]),
    meta:
      options.meta === undefined
        ? undefined
        : (JSON.parse(JSON.stringify(options.meta)) as JsonValue),
  });
}

export function isBokiFunction(value: unknown): value is BokiFunction<never, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<symbol, unknown>)[FUNCTION_BRAND] === true
  );
}
