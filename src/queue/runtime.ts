/**
 * The queue inside the runtime: the library's own functions (push, pop, ack, nack, length,
 * for workflows and for calls from other functions), functions bound as consumers of a
 * queue, and what a runtime runs to feed them (`ConsumerRunner`).
 *
 * A consumer is a function with `kind: "queue-consumer"`: the runtime pops messages from its
 * queue in `concurrency` loops, at most `ratePerSec` messages a second, and invokes the
 * function once per message; a message whose invocation succeeds is acknowledged with the
 * loop's next pop, one whose invocation fails is given back (`nack`, with a growing delay)
 * and, after `maxDeliveries`, goes to the dead-letter queue. Delivery is at least once: a
 * consumer that must not repeat an effect keys it on `message.id`.
 */
import {
  defineFunction,
  type BokiFunction,
  type FunctionContext,
  type JsonValue,
} from "../index.js";
import type { Message, PopResult, QueueOptions, ReceiptResult } from "./api.js";
import { QueueCache } from "./cache.js";
import { QueueError } from "./errors.js";
import { openQueue } from "./queue.js";

/** Names of the library's own functions. */
export const QUEUE_FUNCTIONS = {
  push: "boki-queue.push",
  pop: "boki-queue.pop",
  ack: "boki-queue.ack",
  nack: "boki-queue.nack",
  length: "boki-queue.length",
} as const;
export const CONSUMER_KIND = "queue-consumer";

/** Most consumer loops one consumer function may ask for. */
export const CONSUMER_CONCURRENCY_MAX = 256;
/** How long one of a consumer's pops waits for a message, ms. */
export const CONSUMER_WAIT_MS = 1_000;
/** Longest pause before a failed message is delivered again, ms (it doubles from 100 ms). */
export const CONSUMER_RETRY_DELAY_MS_MAX = 30_000;
/** Longest wait of a pop made through the library's function (its caller holds a request), ms. */
export const FUNCTION_POP_WAIT_MS_MAX = 20_000;

/** One cache per book in this thread (a cache serves one log). */
const caches = new Map<number, QueueCache>();
const CACHES_MAX = 1_024;
export function cacheFor(book: number): QueueCache {
  let c = caches.get(book);
  if (c === undefined) {
    if (caches.size >= CACHES_MAX) caches.delete(caches.keys().next().value!);
    c = new QueueCache();
    caches.set(book, c);
  }
  return c;
}

function queueName(input: unknown): string {
  const q = (input as { queue?: unknown } | null)?.queue;
  if (typeof q !== "string") throw new QueueError("INVALID_ARGUMENT", "the call needs { queue }");
  return q;
}

async function queueOf(
  ctx: FunctionContext,
  input: unknown,
): Promise<Awaited<ReturnType<typeof openQueue>>> {
  return openQueue(ctx.log, queueName(input), { cache: cacheFor(ctx.book) });
}

let library: readonly BokiFunction<never, unknown>[] | undefined;

/** The library's functions (the same objects every time). */
export function queueLibraryFunctions(): readonly BokiFunction<never, unknown>[] {
  library ??= [
    defineFunction({
      name: QUEUE_FUNCTIONS.push,
      async handler(ctx, input: { queue: string; value: JsonValue; key?: string; shard?: number }) {
        const q = await queueOf(ctx, input);
        return (await q.push(input.value, {
          ...(input.key === undefined ? {} : { key: input.key }),
          ...(input.shard === undefined ? {} : { shard: input.shard }),
        })) as unknown as JsonValue;
      },
    }),
    defineFunction({
      name: QUEUE_FUNCTIONS.pop,
      async handler(
        ctx,
        input: {
          queue: string;
          consumer: string;
          max?: number;
          visibilityMs?: number;
          waitMs?: number;
          shard?: number;
        },
      ) {
        const q = await queueOf(ctx, input);
        const r: PopResult = await q.pop({
          consumer: input.consumer,
          ...(input.max === undefined ? {} : { max: input.max }),
          ...(input.visibilityMs === undefined ? {} : { visibilityMs: input.visibilityMs }),
          waitMs: Math.min(
            input.waitMs ?? 0,
            FUNCTION_POP_WAIT_MS_MAX,
            Math.max(0, ctx.deadline - Date.now() - 500),
          ),
          ...(input.shard === undefined ? {} : { shard: input.shard }),
        });
        return r as unknown as JsonValue;
      },
    }),
    defineFunction({
      name: QUEUE_FUNCTIONS.ack,
      async handler(ctx, input: { queue: string; receipts: string[] }) {
        const q = await queueOf(ctx, input);
        return (await q.ack(input.receipts)) as unknown as JsonValue;
      },
    }),
    defineFunction({
      name: QUEUE_FUNCTIONS.nack,
      async handler(ctx, input: { queue: string; receipts: string[]; delayMs?: number }) {
        const q = await queueOf(ctx, input);
        return (await q.nack(
          input.receipts,
          input.delayMs === undefined ? {} : { delayMs: input.delayMs },
        )) as unknown as JsonValue;
      },
    }),
    defineFunction({
      name: QUEUE_FUNCTIONS.length,
      async handler(ctx, input: { queue: string; shard?: number }) {
        const q = await queueOf(ctx, input);
        return (await q.length(
          input.shard === undefined ? {} : { shard: input.shard },
        )) as unknown as JsonValue;
      },
    }),
  ] as unknown as readonly BokiFunction<never, unknown>[];
  return library;
}

/**
 * The library's functions as one export: `export const queues = defineQueueFunctions();`
 * in a function module makes them available (workflows use them through
 * `popInWorkflow`/`ackInWorkflow`; other functions with `ctx.invoke`).
 */
export function defineQueueFunctions(): BokiFunction<never, unknown> {
  const [first, ...rest] = queueLibraryFunctions();
  return defineFunction({
    name: first!.name,
    handler: first!.handler,
    companions: rest,
  });
}

/** How a consumer is bound (the function's `meta`). */
export interface ConsumerMeta {
  readonly queue: string;
  readonly concurrency: number;
  readonly ratePerSec: number | null;
  readonly visibilityMs: number;
  readonly book: number;
}

export interface ConsumerOptions<T> {
  /** The function's name. */
  readonly name: string;
  /** The queue it consumes (in `book`). */
  readonly queue: string;
  /** Runs once per message; a throw gives the message back. */
  readonly handler: (ctx: FunctionContext, message: Message & { readonly value: T }) => unknown;
  /** Messages handled at once (default 1). */
  readonly concurrency?: number;
  /** At most this many messages a second (default: no limit). */
  readonly ratePerSec?: number;
  /** How long a message is this consumer's before it comes back, ms (default 30 s). */
  readonly visibilityMs?: number;
  /** The book the queue lives in (default 0). */
  readonly book?: number;
  readonly timeoutMs?: number;
}

/** A function the runtime feeds with the messages of a queue. */
export function defineConsumer<T = JsonValue>(
  o: ConsumerOptions<T>,
): BokiFunction<{ message: Message }, unknown> {
  if (typeof o?.queue !== "string" || typeof o.handler !== "function") {
    throw new QueueError("INVALID_ARGUMENT", "defineConsumer needs { name, queue, handler }");
  }
  const concurrency = o.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > CONSUMER_CONCURRENCY_MAX) {
    throw new QueueError(
      "INVALID_ARGUMENT",
      `consumer ${o.name}: concurrency must be an integer in [1, ${CONSUMER_CONCURRENCY_MAX}]`,
    );
  }
  if (
    o.ratePerSec !== undefined &&
    !(typeof o.ratePerSec === "number" && o.ratePerSec > 0 && o.ratePerSec <= 1e6)
  ) {
    throw new QueueError(
      "INVALID_ARGUMENT",
      `consumer ${o.name}: ratePerSec must be a number in (0, 1000000]`,
    );
  }
  const visibilityMs = o.visibilityMs ?? 30_000;
  if (!Number.isInteger(visibilityMs) || visibilityMs < 100 || visibilityMs > 12 * 3600_000) {
    throw new QueueError(
      "INVALID_ARGUMENT",
      `consumer ${o.name}: visibilityMs must be an integer in [100, 43200000]`,
    );
  }
  const meta: ConsumerMeta = {
    queue: o.queue,
    concurrency,
    ratePerSec: o.ratePerSec ?? null,
    visibilityMs,
    book: o.book ?? 0,
  };
  return defineFunction({
    name: o.name,
    kind: CONSUMER_KIND,
    meta: meta as unknown as JsonValue,
    companions: queueLibraryFunctions(),
    ...(o.book === undefined ? {} : { book: o.book }),
    ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
    handler: (ctx, input: { message: Message }) =>
      o.handler(ctx, input.message as Message & { value: T }),
  });
}

/** What a workflow needs of its context (structurally, so this module needs no import of flow). */
interface WorkflowLike {
  readonly id: string;
  invoke<O>(name: string, input?: unknown): Promise<O>;
}

/**
 * Pops inside a workflow: the messages are the workflow's operation's logged result, so a
 * re-execution processes the same messages from its log instead of popping again. Ack them
 * (`ackInWorkflow`) once processed; within `visibilityMs` (of log time) the receipts stay
 * valid. Needs the library's functions loaded (`defineQueueFunctions`, or any consumer).
 */
export function popInWorkflow(
  wf: WorkflowLike,
  queue: string,
  options: { max?: number; visibilityMs?: number; waitMs?: number; shard?: number } = {},
): Promise<PopResult> {
  return wf.invoke<PopResult>(QUEUE_FUNCTIONS.pop, {
    queue,
    consumer: `wf:${wf.id}`.slice(0, 128),
    ...options,
  });
}

/** Acknowledges receipts inside a workflow (a logged operation). */
export function ackInWorkflow(
  wf: WorkflowLike,
  queue: string,
  receipts: readonly string[],
): Promise<ReceiptResult> {
  return wf.invoke<ReceiptResult>(QUEUE_FUNCTIONS.ack, { queue, receipts });
}

/** What the runner needs from the runtime. */
export interface ConsumerRunnerDeps {
  /** The consumer functions (kind "queue-consumer") with their meta and time limit. */
  readonly consumers: ReadonlyArray<{
    readonly name: string;
    readonly meta: ConsumerMeta;
    readonly timeoutMs: number;
  }>;
  /** A LogBook session of `book`. */
  readonly book: (book: number) => Parameters<typeof openQueue>[0];
  /** Invokes a function with JSON text; rejects when it fails. */
  readonly invoke: (
    name: string,
    inputJson: string,
    book: number,
    deadline: number,
  ) => Promise<unknown>;
  readonly warn: (message: string, fields: Record<string, unknown>) => void;
  /** Distinguishes this runner's consumer ids from another process's. */
  readonly runId: string;
}

/** Feeds consumer functions with their queues' messages; see the module comment. */
export class ConsumerRunner {
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly caches = new Map<number, QueueCache>();

  constructor(private readonly deps: ConsumerRunnerDeps) {}

  start(): void {
    for (const c of this.deps.consumers) {
      const bucket = { tokens: c.meta.ratePerSec ?? 0, at: Date.now() };
      for (let i = 0; i < c.meta.concurrency; i++) this.loops.push(this.loop(c, i, bucket));
    }
  }

  private cache(book: number): QueueCache {
    let q = this.caches.get(book);
    if (q === undefined) {
      q = new QueueCache();
      this.caches.set(book, q);
    }
    return q;
  }

  /** Waits for the consumer's rate limit to allow one more message. */
  private async take(rate: number | null, bucket: { tokens: number; at: number }): Promise<void> {
    if (rate === null) return;
    for (;;) {
      const now = Date.now();
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
      bucket.at = now;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.ceil(((1 - bucket.tokens) / rate) * 1000)));
      if (this.stopped) return;
    }
  }

  private async loop(
    c: ConsumerRunnerDeps["consumers"][number],
    i: number,
    bucket: { tokens: number; at: number },
  ): Promise<void> {
    const consumer = `${c.name}@${this.deps.runId}/${i}`.slice(0, 128);
    let acks: string[] = [];
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.take(c.meta.ratePerSec, bucket);
        if (this.stopped) break;
        const q = await openQueue(this.deps.book(c.meta.book), c.meta.queue, {
          cache: this.cache(c.meta.book),
        });
        const r = await q.pop({
          consumer,
          max: 1,
          waitMs: CONSUMER_WAIT_MS,
          visibilityMs: c.meta.visibilityMs,
          ack: acks,
        });
        acks = [];
        failures = 0;
        for (const m of r.messages) {
          try {
            await this.deps.invoke(
              c.name,
              JSON.stringify({ message: m }),
              c.meta.book,
              Date.now() + c.timeoutMs,
            );
            acks.push(m.receipt);
          } catch (err) {
            const delayMs = Math.min(
              CONSUMER_RETRY_DELAY_MS_MAX,
              100 * 2 ** Math.min(20, m.delivery - 1),
            );
            this.deps.warn("a queue consumer failed a message; it comes back later", {
              consumer: c.name,
              message: m.id,
              delayMs,
              error: String((err as Error).message ?? err),
            });
            await q.nack([m.receipt], { delayMs }).catch(() => undefined);
          }
        }
      } catch (err) {
        if (this.stopped) break;
        failures++;
        this.deps.warn("a queue consumer's pop failed; it tries again", {
          consumer: c.name,
          error: String((err as Error).message ?? err),
        });
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** Math.min(6, failures))));
      }
    }
    if (acks.length > 0) {
      const q = await openQueue(this.deps.book(c.meta.book), c.meta.queue, {
        cache: this.cache(c.meta.book),
      }).catch(() => undefined);
      await q?.ack(acks).catch(() => undefined);
    }
  }

  /** Stops popping; waits up to `graceMs` for the loops (each ends after its pop's wait and its invocation). */
  async close(graceMs: number): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.loops),
      new Promise((r) => {
        timer = setTimeout(r, graceMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

export type { QueueOptions };
