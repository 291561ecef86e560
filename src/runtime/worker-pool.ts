/**
 * A pool of worker threads that run function handlers, so that a function busy in CPU
 * cannot stall the thread that owns the log. The main thread keeps the log: workers send
 * it each log operation and nested invocation (see worker-protocol.ts).
 *
 * Scheduling: an invocation goes to the ready worker running the fewest, up to
 * `invocationsPerWorker` each (they interleave at their awaits); beyond that it waits in a
 * FIFO queue of at most `queueMax`, and beyond that it fails with OVERLOADED. Nested
 * invocations skip the queue and the per-worker limit (bounded by NESTED_INVOCATIONS_MAX
 * instead), so parents waiting for their children can never fill the pool and deadlock.
 *
 * Failure: every invocation has a deadline; past it the caller gets TIMEOUT, the worker is
 * told to abort the invocation's signal and ignore its result, and is pinged. A worker that
 * does not answer within WORKER_PING_TIMEOUT_MS is stuck (a function spinning in CPU): it is
 * terminated and replaced, and the invocations it was running fail with WORKER_LOST. A
 * worker that dies is replaced the same way. One that holds more than
 * WORKER_ABANDONED_MAX timed-out handlers that never settle is retired: it takes no new
 * work and is terminated once its other invocations are done.
 */
import { Worker } from "node:worker_threads";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { FunctionLoadError, InvocationError } from "./errors.js";
import {
  INVOCATIONS_QUEUED_MAX_DEFAULT,
  NESTED_INVOCATIONS_MAX,
  WORKER_INVOCATIONS_MAX_DEFAULT,
  WORKER_PING_TIMEOUT_MS,
  WORKER_RESPAWN_DELAY_MS,
  WORKER_RESPAWN_DELAY_MS_MAX,
  WORKER_START_TIMEOUT_MS,
  WORKERS_DEFAULT,
  WORKERS_MAX,
} from "./limits.js";
import type { PoolStats } from "./metrics.js";
import { schedBatchDefault } from "./sched.js";
import {
  errorToWire,
  Outbox,
  type FromWorker,
  type LogLevel,
  type LogOp,
  type ToWorker,
  type WorkerFunctionInfo,
  type WorkerInit,
} from "./worker-protocol.js";

/** Timed-out handlers that never settled a worker may hold before it is retired. */
export const WORKER_ABANDONED_MAX = 256;

/**
 * The worker's first module. Run from the build (dist/*.js), worker-main.js starts directly.
 * Run from source (through tsx, or in tests), a worker would not know TypeScript: module
 * hooks do not carry over into worker threads, so worker-entry.mjs registers tsx first.
 */
const WORKER_ENTRY = import.meta.url.endsWith(".ts")
  ? new URL("./worker-entry.mjs", import.meta.url)
  : new URL("./worker-main.js", import.meta.url);

export interface WorkerPoolOptions {
  /** Absolute paths of the function modules every worker loads. */
  readonly files: readonly string[];
  /** Worker threads (default WORKERS_DEFAULT). */
  readonly size?: number;
  readonly invocationsPerWorker?: number;
  readonly queueMax?: number;
  readonly logger?: Logger;
  /** Workers move to SCHED_BATCH (sched.ts); default: `BOKI_WORKER_SCHED`, else true. */
  readonly schedBatch?: boolean;
}

/** What the pool needs from its owner while a job runs. */
export interface JobHandlers {
  /** A log operation of the invocation; resolves to its result and the new position. */
  logOp(
    op: LogOp,
    args: readonly unknown[],
  ): Promise<{ value: unknown; position: number; transfer?: ArrayBuffer[] }>;
  /** A nested invocation (`async`: ctx.invokeAsync); resolves to its result and the new position. */
  invoke(request: {
    name: string;
    inputJson: string;
    async: boolean;
    invocationId: string;
    book: number | undefined;
  }): Promise<{ value: unknown; position: number }>;
  log(level: LogLevel, message: string, fields: Record<string, unknown> | undefined): void;
}

export interface PoolJob {
  readonly name: string;
  readonly inputJson: string;
  readonly invocationId: string;
  readonly book: number;
  readonly position: number;
  /** Milliseconds since the epoch. */
  readonly deadline: number;
  /** A nested invocation (skips the queue; see the module comment). */
  readonly nested: boolean;
  readonly handlers: JobHandlers;
}

interface Job {
  readonly spec: PoolJob;
  readonly call: number;
  state: "queued" | "running" | "settled";
  worker: PoolWorker | undefined;
  timer: NodeJS.Timeout | undefined;
  resolve(outputJson: string): void;
  reject(err: InvocationError): void;
}

interface PoolWorker {
  readonly id: number;
  readonly thread: Worker;
  state: "starting" | "ready" | "retiring" | "gone";
  readonly running: Map<number, Job>;
  readonly outbox: Outbox<ToWorker>;
  ping: { n: number; timer: NodeJS.Timeout } | undefined;
}

export class WorkerPool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Job[] = [];
  private readonly size: number;
  private readonly perWorker: number;
  private readonly queueMax: number;
  private readonly logger: Logger;
  private nextCall = 1;
  private nextWorkerId = 1;
  private nextPing = 1;
  private nested = 0;
  private restarts = 0;
  private respawnDelayMs = WORKER_RESPAWN_DELAY_MS;
  private closing = false;
  private readonly respawnTimers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly options: WorkerPoolOptions,
    /** What the modules define, as the first worker reported it. */
    readonly functions: readonly WorkerFunctionInfo[],
  ) {
    this.size = options.size ?? WORKERS_DEFAULT;
    this.perWorker = options.invocationsPerWorker ?? WORKER_INVOCATIONS_MAX_DEFAULT;
    this.queueMax = options.queueMax ?? INVOCATIONS_QUEUED_MAX_DEFAULT;
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Starts `size` workers and waits until each has loaded the modules. Fails with a
   * `FunctionLoadError` if a module does not load (no worker is left running).
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const size = options.size ?? WORKERS_DEFAULT;
    if (!Number.isInteger(size) || size < 1 || size > WORKERS_MAX) {
      throw new RangeError(`pool size must be an integer in [1, ${WORKERS_MAX}], got ${size}`);
    }
    const perWorker = options.invocationsPerWorker ?? WORKER_INVOCATIONS_MAX_DEFAULT;
    if (!Number.isInteger(perWorker) || perWorker < 1) {
      throw new RangeError(`invocationsPerWorker must be a positive integer, got ${perWorker}`);
    }
    const queueMax = options.queueMax ?? INVOCATIONS_QUEUED_MAX_DEFAULT;
    if (!Number.isInteger(queueMax) || queueMax < 0) {
      throw new RangeError(`queueMax must be a non-negative integer, got ${queueMax}`);
    }
    // The policy is settled once, here: a worker replaced later starts with the same one.
    const resolved: WorkerPoolOptions = {
      ...options,
      schedBatch: options.schedBatch ?? schedBatchDefault(),
    };
    const threads: Worker[] = [];
    try {
      const started = await Promise.all(
        Array.from({ length: size }, () => {
          const t = WorkerPool.spawn(resolved);
          threads.push(t);
          return WorkerPool.whenReady(t);
        }),
      );
      const pool = new WorkerPool(resolved, started[0]!);
      for (const t of threads) pool.adopt(t, "ready");
      return pool;
    } catch (err) {
      await Promise.all(threads.map((t) => t.terminate()));
      throw err;
    }
  }

  private static spawn(options: WorkerPoolOptions): Worker {
    const init: WorkerInit = { files: options.files, schedBatch: options.schedBatch ?? true };
    return new Worker(WORKER_ENTRY, { workerData: init });
  }

  /** Resolves with what the worker loaded, or rejects if it fails to load or to start. */
  private static whenReady(thread: Worker): Promise<readonly WorkerFunctionInfo[]> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        thread.off("message", onMessage);
        thread.off("error", onError);
        thread.off("exit", onExit);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new FunctionLoadError(
            `a function worker did not load its modules within ${WORKER_START_TIMEOUT_MS} ms`,
          ),
        );
      }, WORKER_START_TIMEOUT_MS);
      const onMessage = (batch: FromWorker[]): void => {
        const m = batch[0];
        if (m === undefined) return;
        if (m.t === "ready") {
          done();
          resolve(m.functions);
        } else if (m.t === "load-error") {
          done();
          reject(new FunctionLoadError(m.message, m.file === undefined ? {} : { file: m.file }));
        }
      };
      const onError = (err: Error): void => {
        done();
        reject(
          new FunctionLoadError(`a function worker failed to start: ${err.message}`, {
            cause: err,
          }),
        );
      };
      const onExit = (code: number): void => {
        done();
        reject(new FunctionLoadError(`a function worker exited with code ${code} while starting`));
      };
      thread.on("message", onMessage);
      thread.on("error", onError);
      thread.on("exit", onExit);
    });
  }

  private adopt(thread: Worker, state: "starting" | "ready"): PoolWorker {
    const w: PoolWorker = {
      id: this.nextWorkerId++,
      thread,
      state,
      running: new Map(),
      outbox: new Outbox<ToWorker>((batch, transfer) => {
        if (w.state !== "gone") thread.postMessage(batch, transfer);
      }),
      ping: undefined,
    };
    this.workers.push(w);
    thread.on("message", (batch: FromWorker[]) => {
      for (const m of batch) this.onMessage(w, m);
    });
    thread.on("error", (err) => {
      this.logger.error({ worker: w.id, err: err.message }, "function worker failed");
    });
    thread.on("exit", (code) => this.onExit(w, code));
    return w;
  }

  stats(): PoolStats {
    let running = 0;
    let workers = 0;
    for (const w of this.workers) {
      running += w.running.size;
      if (w.state === "ready") workers++;
    }
    return { workers, running, queued: this.queue.length, workerRestarts: this.restarts };
  }

  /** Runs one invocation; resolves to its output as JSON text. */
  run(spec: PoolJob): Promise<string> {
    if (this.closing) {
      return Promise.reject(
        new InvocationError("UNAVAILABLE", "the function pool is shutting down"),
      );
    }
    if (spec.nested && this.nested >= NESTED_INVOCATIONS_MAX) {
      return Promise.reject(
        new InvocationError(
          "OVERLOADED",
          `${NESTED_INVOCATIONS_MAX} nested invocations are running (NESTED_INVOCATIONS_MAX)`,
        ),
      );
    }
    return new Promise<string>((resolve, reject) => {
      const job: Job = {
        spec,
        call: this.nextCall++,
        state: "queued",
        worker: undefined,
        timer: undefined,
        resolve,
        reject,
      };
      const worker = this.pick(spec.nested);
      if (worker === undefined) {
        if (!spec.nested && this.queue.length >= this.queueMax) {
          reject(
            new InvocationError(
              "OVERLOADED",
              `every worker is busy and ${this.queue.length} invocations are queued (queue limit ${this.queueMax})`,
            ),
          );
          return;
        }
        if (spec.nested) this.queue.unshift(job);
        else this.queue.push(job);
      }
      if (spec.nested) this.nested++;
      const remainingMs = spec.deadline - Date.now();
      job.timer = setTimeout(() => this.timeout(job), Math.max(0, remainingMs));
      if (worker !== undefined) this.assign(job, worker);
    });
  }

  private pick(nested: boolean): PoolWorker | undefined {
    let best: PoolWorker | undefined;
    let bestLoad = Infinity;
    for (const w of this.workers) {
      if (w.state !== "ready") continue;
      // A worker pinged after a timeout may be stuck in CPU: it gets no new work until it
      // answers (a live worker does within milliseconds) or is replaced.
      if (w.ping !== undefined) continue;
      const load = w.running.size;
      if (!nested && load >= this.perWorker) continue;
      if (load < bestLoad) {
        best = w;
        bestLoad = load;
      }
    }
    return best;
  }

  private assign(job: Job, w: PoolWorker): void {
    job.state = "running";
    job.worker = w;
    w.running.set(job.call, job);
    const s = job.spec;
    this.post(w, {
      t: "run",
      call: job.call,
      name: s.name,
      inputJson: s.inputJson,
      invocationId: s.invocationId,
      book: s.book,
      position: s.position,
      deadline: s.deadline,
    });
  }

  /** Starts queued jobs on free workers. */
  private pump(): void {
    while (this.queue.length > 0) {
      const job = this.queue[0]!;
      const w = this.pick(job.spec.nested);
      if (w === undefined) return;
      this.queue.shift();
      this.assign(job, w);
    }
  }

  private settle(
    job: Job,
    result: { ok: true; outputJson: string } | { ok: false; error: InvocationError },
  ): void {
    if (job.state === "settled") return;
    if (job.state === "queued") {
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
    }
    job.state = "settled";
    clearTimeout(job.timer);
    if (job.spec.nested) this.nested--;
    const w = job.worker;
    if (w !== undefined) {
      w.running.delete(job.call);
      if (w.state === "retiring" && w.running.size === 0) this.terminate(w);
    }
    if (result.ok) job.resolve(result.outputJson);
    else job.reject(result.error);
    this.pump();
  }

  private timeout(job: Job): void {
    if (job.state === "settled") return;
    const s = job.spec;
    const w = job.worker;
    const message =
      job.state === "queued"
        ? `${s.name} did not get a worker before its deadline (${this.queue.length} invocations queued)`
        : `${s.name} did not finish before its deadline`;
    this.settle(job, { ok: false, error: new InvocationError("TIMEOUT", message) });
    if (w !== undefined && w.state !== "gone") {
      this.post(w, { t: "cancel", call: job.call });
      this.ping(w);
    }
  }

  private ping(w: PoolWorker): void {
    if (w.ping !== undefined) return;
    const n = this.nextPing++;
    const timer = setTimeout(() => {
      if (w.ping?.n !== n || w.state === "gone") return;
      this.logger.warn(
        { worker: w.id, running: w.running.size },
        `function worker did not answer within ${WORKER_PING_TIMEOUT_MS} ms after a timeout; replacing it`,
      );
      this.replace(w, "a function in the same worker was stuck and its worker was replaced");
    }, WORKER_PING_TIMEOUT_MS);
    w.ping = { n, timer };
    this.post(w, { t: "ping", n });
  }

  private post(w: PoolWorker, m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (w.state === "gone") return;
    w.outbox.post(m, transfer);
  }

  private onMessage(w: PoolWorker, m: FromWorker): void {
    switch (m.t) {
      case "done": {
        const job = w.running.get(m.call);
        if (job === undefined) return; // timed out already: the result is ignored
        this.respawnDelayMs = WORKER_RESPAWN_DELAY_MS;
        if (m.ok) this.settle(job, { ok: true, outputJson: m.outputJson });
        else this.settle(job, { ok: false, error: InvocationError.fromJSON(m.error) });
        return;
      }
      case "log-op": {
        const job = w.running.get(m.call);
        if (job === undefined) {
          this.replyOver(w, m.req);
          return;
        }
        job.spec.handlers.logOp(m.op, m.args).then(
          (r) =>
            this.post(
              w,
              { t: "reply", req: m.req, ok: true, value: r.value, position: r.position },
              r.transfer,
            ),
          (err: unknown) =>
            this.post(w, { t: "reply", req: m.req, ok: false, error: errorToWire(err) }),
        );
        return;
      }
      case "invoke": {
        const job = w.running.get(m.call);
        if (job === undefined) {
          this.replyOver(w, m.req);
          return;
        }
        job.spec.handlers
          .invoke({
            name: m.name,
            inputJson: m.inputJson,
            async: m.async,
            invocationId: m.invocationId,
            book: m.book,
          })
          .then(
            (r) =>
              this.post(w, {
                t: "reply",
                req: m.req,
                ok: true,
                value: r.value,
                position: r.position,
              }),
            (err: unknown) =>
              this.post(w, { t: "reply", req: m.req, ok: false, error: errorToWire(err) }),
          );
        return;
      }
      case "log": {
        const job = m.call === undefined ? undefined : w.running.get(m.call);
        if (job !== undefined) job.spec.handlers.log(m.level, m.message, m.fields);
        else this.logger[m.level]({ worker: w.id, ...m.fields }, m.message);
        return;
      }
      case "pong": {
        if (w.ping?.n !== m.n) return;
        clearTimeout(w.ping.timer);
        w.ping = undefined;
        if (m.abandoned > WORKER_ABANDONED_MAX && w.state === "ready") this.retire(w);
        this.pump();
        return;
      }
      case "ready":
        if (w.state === "starting") {
          w.state = "ready";
          this.pump();
        }
        return;
      case "load-error":
        this.logger.error(
          { worker: w.id, file: m.file },
          `a new function worker could not load: ${m.message}`,
        );
        this.replace(w, "the worker failed to load its modules");
        return;
    }
  }

  /** Answers a request of an invocation that is over (it timed out): it fails. */
  private replyOver(w: PoolWorker, req: number): void {
    this.post(w, {
      t: "reply",
      req,
      ok: false,
      error: {
        kind: "invocation",
        code: "TIMEOUT",
        message: "the invocation is over: it timed out",
      },
    });
  }

  private failRunning(w: PoolWorker, why: string): void {
    for (const job of [...w.running.values()]) {
      this.settle(job, {
        ok: false,
        error: new InvocationError("WORKER_LOST", `${job.spec.name}: ${why}`),
      });
    }
  }

  private onExit(w: PoolWorker, code: number): void {
    if (w.state === "gone") return;
    const wasStarting = w.state === "starting";
    this.logger.error({ worker: w.id, code }, "function worker exited");
    this.replace(w, `its worker exited with code ${code}`, wasStarting);
  }

  /** Ends a worker now: its invocations fail with WORKER_LOST; a new worker takes its place. */
  private replace(w: PoolWorker, why: string, failedToStart = false): void {
    this.terminate(w);
    this.failRunning(w, why);
    if (this.closing) return;
    this.restarts++;
    const delay = failedToStart ? this.respawnDelayMs : WORKER_RESPAWN_DELAY_MS;
    if (failedToStart)
      this.respawnDelayMs = Math.min(this.respawnDelayMs * 2, WORKER_RESPAWN_DELAY_MS_MAX);
    this.scheduleSpawn(delay);
  }

  /** Stops giving a worker new work; it is terminated once its invocations are done. */
  private retire(w: PoolWorker): void {
    this.logger.warn(
      { worker: w.id },
      `function worker holds over ${WORKER_ABANDONED_MAX} timed-out handlers; retiring it`,
    );
    w.state = "retiring";
    this.restarts++;
    this.scheduleSpawn(0);
    if (w.running.size === 0) this.terminate(w);
  }

  private scheduleSpawn(delayMs: number): void {
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (this.closing) return;
      this.adopt(WorkerPool.spawn(this.options), "starting");
    }, delayMs);
    this.respawnTimers.add(timer);
  }

  private terminate(w: PoolWorker): void {
    if (w.state === "gone") return;
    w.state = "gone";
    if (w.ping !== undefined) clearTimeout(w.ping.timer);
    w.ping = undefined;
    const i = this.workers.indexOf(w);
    if (i >= 0) this.workers.splice(i, 1);
    void w.thread.terminate();
  }

  /** Invocations running or queued. */
  get busy(): number {
    let n = this.queue.length;
    for (const w of this.workers) n += w.running.size;
    return n;
  }

  /**
   * Stops the pool: queued invocations fail with UNAVAILABLE at once, running ones get up to
   * `graceMs` to finish, then the workers are terminated (what still runs fails UNAVAILABLE).
   */
  async close(graceMs = 0): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const t of this.respawnTimers) clearTimeout(t);
    this.respawnTimers.clear();
    for (const job of [...this.queue]) {
      this.settle(job, {
        ok: false,
        error: new InvocationError("UNAVAILABLE", "the function pool is shutting down"),
      });
    }
    const until = Date.now() + graceMs;
    while (this.busy > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const threads = this.workers.map((w) => w.thread);
    for (const w of [...this.workers]) {
      for (const job of [...w.running.values()]) {
        this.settle(job, {
          ok: false,
          error: new InvocationError("UNAVAILABLE", "the function pool shut down"),
        });
      }
      this.terminate(w);
    }
    await Promise.all(threads.map((t) => t.terminate()));
  }
}
