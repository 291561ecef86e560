/**
 * The gateway's queue routes (`boki-ts/queue`), served on the gateway's own thread with the
 * library over the gateway's log (no function invocation in between):
 *
 *   POST /queue/<name>/push     body: the message (JSON); ?key= or ?shard= picks the shard
 *   POST /queue/<name>/pop      body: { consumer, max?, visibilityMs?, waitMs?, shard?, ack? }
 *   POST /queue/<name>/ack      body: { receipts }
 *   POST /queue/<name>/nack     body: { receipts, delayMs? }
 *   GET  /queue/<name>          lengths (?shard=)
 *
 * `X-Boki-Book` selects the book. A pop waits at most `QUEUE_HTTP_WAIT_MS_MAX`. Errors are
 * `{ error: { code, message } }`: 400 for bad input and oversized messages, 409 for a queue
 * opened with other settings, 503 (retryable) for a full queue or a retryable failure.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { LogBook } from "../log/api.js";
import type { Queue } from "../queue/api.js";
import { openQueue } from "../queue/queue.js";
import { QueueCache } from "../queue/cache.js";
import { parseQueueName, queueTags } from "../queue/ids.js";
import { InvocationError } from "../runtime/errors.js";
import type { JsonValue } from "../runtime/json.js";

/** Longest wait of one pop over HTTP, ms. */
export const QUEUE_HTTP_WAIT_MS_MAX = 30_000;
/** Books whose queue caches the gateway keeps (the oldest is dropped beyond it). */
const QUEUE_CACHES_MAX = 1_024;

const STATUS: Readonly<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  MESSAGE_TOO_LARGE: 413,
  QUEUE_CONFIG_MISMATCH: 409,
  QUEUE_FULL: 503,
  CATCH_UP_LIMIT: 503,
  TIMEOUT: 503,
  DATA_LOST: 500,
};

/**
 * The queues as this gateway opens them: one cache per book (a shard's replayed state is kept
 * between calls), shared by the routes and the dashboard.
 */
export class GatewayQueues {
  private readonly caches = new Map<number, QueueCache>();

  constructor(private readonly log: (book: number) => LogBook) {}

  private cache(book: number): QueueCache {
    let cache = this.caches.get(book);
    if (cache === undefined) {
      if (this.caches.size >= QUEUE_CACHES_MAX)
        this.caches.delete(this.caches.keys().next().value!);
      cache = new QueueCache();
      this.caches.set(book, cache);
    }
    return cache;
  }

  /** Opens a queue, creating it (its settings record) on first use. */
  open(book: number, name: string): Promise<Queue> {
    return openQueue(this.log(book), name, { cache: this.cache(book) });
  }

  /** Opens a queue if it exists (its settings record is in the log); creates nothing. */
  async openExisting(book: number, name: string): Promise<Queue | null> {
    const cache = this.cache(book);
    const log = this.log(book);
    const qname = parseQueueName(name);
    if (cache.meta(`${log.book}/${qname}`) === undefined) {
      if ((await log.checkTail(queueTags(qname).meta)) === null) return null;
    }
    return openQueue(log, qname, { cache });
  }
}

export interface QueueRouteDeps {
  readonly queues: GatewayQueues;
  readonly bookOf: (req: FastifyRequest) => number | undefined;
  readonly inputOf: (req: FastifyRequest) => string;
  /** Told of every queue a request opened (the dashboard's recently seen queues). */
  readonly seen?: (queue: string, book: number) => void;
}

function intParam(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(v))
    throw new InvocationError("INVALID_ARGUMENT", `${what} must be a non-negative integer`);
  return Number(v);
}

function bodyObject(text: string): Record<string, unknown> {
  const v = JSON.parse(text) as unknown;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvocationError("INVALID_ARGUMENT", "the request body must be a JSON object");
  }
  return v as Record<string, unknown>;
}

export function registerQueueRoutes(app: FastifyInstance, d: QueueRouteDeps): void {
  const open = async (req: FastifyRequest, name: string): Promise<Queue> => {
    const book = d.bookOf(req) ?? 0;
    const q = await d.queues.open(book, name);
    d.seen?.(q.name, book);
    return q;
  };
  const run = async (reply: FastifyReply, op: () => Promise<unknown>): Promise<FastifyReply> => {
    try {
      return reply.code(200).send(await op());
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === "string" && code in STATUS) {
        if (STATUS[code] === 503) void reply.header("retry-after", "1");
        return reply.code(STATUS[code]!).send({ error: { code, message: (err as Error).message } });
      }
      throw err;
    }
  };

  app.post<{ Params: { name: string }; Querystring: { key?: string; shard?: string } }>(
    "/queue/:name/push",
    (req, reply) =>
      run(reply, async () => {
        const q = await open(req, req.params.name);
        const shard = intParam(req.query.shard, "shard");
        return q.push(JSON.parse(d.inputOf(req)) as JsonValue, {
          ...(req.query.key === undefined ? {} : { key: req.query.key }),
          ...(shard === undefined ? {} : { shard }),
        });
      }),
  );

  app.post<{ Params: { name: string } }>("/queue/:name/pop", (req, reply) =>
    run(reply, async () => {
      const b = bodyObject(d.inputOf(req));
      const waitMs = b["waitMs"];
      if (
        waitMs !== undefined &&
        (typeof waitMs !== "number" || waitMs < 0 || waitMs > QUEUE_HTTP_WAIT_MS_MAX)
      ) {
        throw new InvocationError(
          "INVALID_ARGUMENT",
          `waitMs must be a number in [0, ${QUEUE_HTTP_WAIT_MS_MAX}]`,
        );
      }
      const q = await open(req, req.params.name);
      return q.pop(b as unknown as Parameters<typeof q.pop>[0]);
    }),
  );

  app.post<{ Params: { name: string } }>("/queue/:name/ack", (req, reply) =>
    run(reply, async () => {
      const b = bodyObject(d.inputOf(req));
      const q = await open(req, req.params.name);
      return q.ack(b["receipts"] as Parameters<typeof q.ack>[0]);
    }),
  );

  app.post<{ Params: { name: string } }>("/queue/:name/nack", (req, reply) =>
    run(reply, async () => {
      const b = bodyObject(d.inputOf(req));
      const q = await open(req, req.params.name);
      const delayMs = b["delayMs"];
      return q.nack(
        b["receipts"] as Parameters<typeof q.nack>[0],
        typeof delayMs === "number" ? { delayMs } : {},
      );
    }),
  );

  app.get<{ Params: { name: string }; Querystring: { shard?: string } }>(
    "/queue/:name",
    (req, reply) =>
      run(reply, async () => {
        const q = await open(req, req.params.name);
        const shard = intParam(req.query.shard, "shard");
        return q.length(shard === undefined ? {} : { shard });
      }),
  );
}
