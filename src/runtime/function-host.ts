/**
 * The main-thread side of running functions: a worker pool, plus the LogBook sessions of
 * the invocations running in it. It is a `Dispatcher` (what the gateway calls in one
 * process); a cluster engine runs one over its local log, behind a dispatcher of its own.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { BokiError } from "../log/errors.js";
import { parseBookId } from "../log/types.js";
import type {
  AsyncInvoker,
  Dispatcher,
  FunctionInfo,
  InvokeRequest,
  InvokeResult,
  LogProvider,
} from "./dispatcher.js";
import { InvocationError } from "./errors.js";
import { parseInvocationId, parseUserBook } from "./ids.js";
import {
  FUNCTION_TIMEOUT_MS_DEFAULT,
  FUNCTION_TIMEOUT_MS_MAX,
  INVOCATION_DEPTH_MAX,
} from "./limits.js";
import { findFunctionModules } from "./loader.js";
import type { RuntimeMetrics } from "./metrics.js";
import { SessionLogBook } from "./session.js";
import { WorkerPool, type JobHandlers } from "./worker-pool.js";
import { packRecords, recordToWire, type LogOp } from "./worker-protocol.js";
import type { LogRecord } from "../log/record.js";
import { bindToContext, traceInvocation, traceLogOp, tracingEnabled } from "../tracing/spans.js";

export interface FunctionHostOptions {
  /** A module file, a directory of modules (see loader.ts), or a list of module files. */
  readonly functions: string | readonly string[];
  /** Where invocations get their LogBooks. */
  readonly log: LogProvider;
  /** Worker threads (default 2). */
  readonly workers?: number;
  /** Time limit of functions that set none, in ms (default 30 s). */
  readonly timeoutMs?: number;
  /** Invocations one worker runs at once (default 64). */
  readonly invocationsPerWorker?: number;
  /** Invocations that may wait for a worker (default 1024); beyond it OVERLOADED. */
  readonly queueMax?: number;
  readonly logger?: Logger;
  readonly metrics?: RuntimeMetrics;
  /** Workers move to SCHED_BATCH (see sched.ts); default: `BOKI_WORKER_SCHED`, else true. */
  readonly schedBatch?: boolean;
}

const READ_OPS: ReadonlySet<LogOp> = new Set<LogOp>([
  "readNext",
  "readNextBlocking",
  "readPrev",
  "checkTail",
]);

export class FunctionHost implements Dispatcher {
  private readonly catalogue: ReadonlyMap<string, FunctionInfo>;
  private readonly catalogueList: readonly FunctionInfo[];
  private asyncInvoker: AsyncInvoker | undefined;
  private readonly logger: Logger;

  private constructor(
    private readonly pool: WorkerPool,
    private readonly log: LogProvider,
    private readonly metrics: RuntimeMetrics | undefined,
    timeoutMs: number,
    logger: Logger,
  ) {
    this.logger = logger;
    this.catalogue = new Map(
      pool.functions.map((f) => [
        f.name,
        {
          name: f.name,
          book: f.book,
          timeoutMs: f.timeoutMs ?? timeoutMs,
          ...(f.kind === undefined ? {} : { kind: f.kind }),
          ...(f.scheduleEveryMs === undefined ? {} : { scheduleEveryMs: f.scheduleEveryMs }),
          ...(f.meta === undefined ? {} : { meta: f.meta }),
        },
      ]),
    );
    this.catalogueList = Object.freeze([...this.catalogue.values()]);
    metrics?.observePool(() => pool.stats());
  }

  /** Loads the functions into a new worker pool. Fails with a `FunctionLoadError`. */
  static async start(options: FunctionHostOptions): Promise<FunctionHost> {
    const timeoutMs = options.timeoutMs ?? FUNCTION_TIMEOUT_MS_DEFAULT;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > FUNCTION_TIMEOUT_MS_MAX) {
      throw new RangeError(
        `timeoutMs must be an integer in [1, ${FUNCTION_TIMEOUT_MS_MAX}], got ${timeoutMs}`,
      );
    }
    const files =
      typeof options.functions === "string"
        ? findFunctionModules(options.functions)
        : options.functions;
    const logger = options.logger ?? silentLogger;
    const pool = await WorkerPool.start({
      files,
      logger,
      ...(options.workers === undefined ? {} : { size: options.workers }),
      ...(options.invocationsPerWorker === undefined
        ? {}
        : { invocationsPerWorker: options.invocationsPerWorker }),
      ...(options.queueMax === undefined ? {} : { queueMax: options.queueMax }),
      ...(options.schedBatch === undefined ? {} : { schedBatch: options.schedBatch }),
    });
    return new FunctionHost(pool, options.log, options.metrics, timeoutMs, logger);
  }

  functions(): readonly FunctionInfo[] {
    return this.catalogueList;
  }

  /** Where `ctx.invokeAsync` records and starts invocations; without one it fails. */
  setAsyncInvoker(invoker: AsyncInvoker): void {
    this.asyncInvoker = invoker;
  }

  stats(): ReturnType<WorkerPool["stats"]> {
    return this.pool.stats();
  }

  invoke(req: InvokeRequest): Promise<InvokeResult> {
    const fn = this.catalogue.get(req.name);
    // Tracing off (the default) costs this one branch.
    if (!tracingEnabled()) return this.run(req, fn);
    return traceInvocation(
      {
        name: req.name,
        invocationId: req.invocationId,
        book: req.book,
        depth: req.depth ?? 0,
        kind: fn?.kind,
        inputJson: req.inputJson,
      },
      () => this.run(req, fn),
    );
  }

  private async run(req: InvokeRequest, fn: FunctionInfo | undefined): Promise<InvokeResult> {
    if (fn === undefined) {
      throw new InvocationError(
        "FUNCTION_NOT_FOUND",
        `no function named ${JSON.stringify(req.name)}`,
      );
    }
    const depth = req.depth ?? 0;
    if (depth > INVOCATION_DEPTH_MAX) {
      throw new InvocationError(
        "INVALID_ARGUMENT",
        `invocations nest deeper than ${INVOCATION_DEPTH_MAX} (INVOCATION_DEPTH_MAX)`,
      );
    }
    const invocationId = parseInvocationId(req.invocationId);
    const book = parseBookId(req.book);
    const deadline = Math.min(req.deadline, Date.now() + fn.timeoutMs);
    const started = performance.now();
    let outcome = "ok";
    try {
      let session: SessionLogBook;
      try {
        session = new SessionLogBook(this.log, book, req.position, this.metrics?.logOps);
      } catch (err) {
        throw err instanceof BokiError && err.code === "LOG_CLOSED"
          ? new InvocationError("UNAVAILABLE", "the log is closed", { cause: err })
          : err;
      }
      const log = (
        level: "debug" | "info" | "warn" | "error",
        message: string,
        fields?: Record<string, unknown>,
      ): void => {
        this.logger[level]({ ...fields, function: fn.name, invocationId }, message);
      };
      const outputJson = await this.pool.run({
        name: fn.name,
        inputJson: req.inputJson,
        invocationId,
        book,
        position: session.position,
        deadline,
        nested: depth > 0,
        // The handlers are called from the worker's messages; bound, they run (and trace)
        // in this invocation's context.
        handlers: {
          logOp: bindToContext(async (op: LogOp, args: readonly unknown[]) => {
            const value = tracingEnabled()
              ? await traceLogOp(op, args, book, () => session.perform(op, args))
              : await session.perform(op, args);
            if (op === "readNextRange" || op === "readPrevRange") {
              const packed = packRecords(value as LogRecord[]);
              return {
                value: packed,
                position: session.position,
                transfer: [packed.bytes.buffer as ArrayBuffer],
              };
            }
            if (READ_OPS.has(op)) {
              const record = recordToWire(value as LogRecord | null);
              const transfer =
                record === null
                  ? undefined
                  : [
                      record.data.buffer as ArrayBuffer,
                      ...(record.auxData === null ? [] : [record.auxData.buffer as ArrayBuffer]),
                    ];
              return transfer === undefined
                ? { value: record, position: session.position }
                : { value: record, position: session.position, transfer };
            }
            return { value, position: session.position };
          }),
          invoke: bindToContext(async (child: Parameters<JobHandlers["invoke"]>[0]) => {
            const childId = parseInvocationId(child.invocationId);
            // A child in another book starts at that book's own position and does not move
            // the caller's (positions of different books are not comparable).
            const sameBook = child.book === undefined || child.book === book;
            const childBook = sameBook ? book : parseUserBook(child.book, "the child's book");
            if (child.async) {
              if (this.asyncInvoker === undefined) {
                throw new InvocationError(
                  "UNAVAILABLE",
                  "asynchronous invocations are not available here",
                );
              }
              const id = await this.asyncInvoker.invokeAsync({
                name: child.name,
                inputJson: child.inputJson,
                book: childBook,
                ...(sameBook ? { position: session.position } : {}),
                invocationId: childId,
              });
              return { value: id, position: session.position };
            }
            const r = await this.invoke({
              name: child.name,
              inputJson: child.inputJson,
              book: childBook,
              ...(sameBook ? { position: session.position } : {}),
              invocationId: childId,
              deadline,
              depth: depth + 1,
            });
            if (sameBook) session.advanceTo(r.position);
            return { value: r.outputJson, position: session.position };
          }),
          log,
        },
      });
      return { outputJson, position: session.position };
    } catch (err) {
      outcome = err instanceof InvocationError ? err.code : "INTERNAL";
      throw err;
    } finally {
      this.metrics?.invocation(fn.name, outcome, (performance.now() - started) / 1000);
    }
  }

  /** Stops the workers, letting running invocations finish for up to `graceMs`. */
  close(graceMs = 0): Promise<void> {
    return this.pool.close(graceMs);
  }
}
