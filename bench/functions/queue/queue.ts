/**
 * Functions the `queue` benchmark calls through the gateway of `boki dev`: push one message,
 * and pop a batch (acknowledging the previous batch in the same record). One QueueCache per
 * worker thread, so a pop reads only the records appended since this worker's last one.
 */
import { defineFunction } from "boki-ts";
import { openQueue, QueueCache } from "boki-ts/queue";

const cache = new QueueCache();

interface PushInput {
  /** Queue name. */
  readonly q: string;
  readonly shards: number;
  /** The message (a string). */
  readonly m: string;
}

interface PopInput {
  readonly q: string;
  readonly shards: number;
  readonly consumer: string;
  readonly max: number;
  readonly waitMs: number;
  /** Pin this shard (consumers spread over shards). */
  readonly shard?: number;
  /** Receipts of the previous batch, acknowledged in the pop's record. */
  readonly ack: string[];
}

export const push = defineFunction({
  name: "bench-queue-push",
  handler: async (ctx, input: PushInput) => {
    const q = await openQueue(ctx.log, input.q, { cache, shards: input.shards });
    await q.push(input.m);
    return null;
  },
});

export const pop = defineFunction({
  name: "bench-queue-pop",
  handler: async (ctx, input: PopInput) => {
    const q = await openQueue(ctx.log, input.q, { cache, shards: input.shards });
    const r = await q.pop({
      consumer: input.consumer,
      max: input.max,
      waitMs: input.waitMs,
      ack: input.ack,
      ...(input.shard === undefined ? {} : { shard: input.shard }),
    });
    return { r: r.messages.map((m) => m.receipt), m: r.messages.map((m) => m.value as string) };
  },
});
