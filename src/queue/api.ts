/**
 * The queue API: what a function (or a runtime binding consumers to queues) sees. A queue is
 * opened over a LogBook (`ctx.log` in a function) with `openQueue`; its implementation is in
 * queue.ts.
 */
import type { JsonValue, SeqNum } from "../index.js";
import type { MessageId, Receipt, ReceiptString } from "./ids.js";
import type { DeadLetterOrigin } from "./records.js";
import type { QueueCache } from "./cache.js";

export interface QueueOptions {
  /**
   * Sub-queues (default 1, at most `SHARDS_MAX`). Fixed when the queue is first opened;
   * opening it later with another number fails with QUEUE_CONFIG_MISMATCH.
   */
  readonly shards?: number;
  /** Deliveries of a message before it is dead-lettered (default 5). Fixed like `shards`. */
  readonly maxDeliveries?: number;
  /**
   * The queue dead letters are copied to (shard 0 of it), or null to drop them. Default
   * `<name>.dead`. Fixed like `shards`.
   */
  readonly deadLetterQueue?: string | null;
  /** Records between durable checkpoints of a shard (each followed by a trim). Fixed like `shards`. */
  readonly checkpointIntervalRecords?: number;
  /** Records between aux-data checkpoints of a shard. Fixed like `shards`. */
  readonly auxCheckpointIntervalRecords?: number;
  /**
   * Where the shards' replayed state is kept between calls, so that a pop reads only the
   * records appended since the last one. Keep one cache per process (a module-level
   * constant in a function module) and use it with one log only. Without it, the queue
   * object keeps its own.
   */
  readonly cache?: QueueCache;
  /** Milliseconds since the epoch; stamped into every record (default `Date.now`). */
  readonly clock?: () => number;
  /**
   * Coalesce pushes (default true): while a push to a shard is being appended, other pushes
   * of this process to that shard (through this queue object, or any sharing its `cache`)
   * gather into the next push record, appended through the LogBook of the first of them.
   * A push's own LogBook then may not have seen its record yet; pass false where a caller
   * must read its own push right after with its own LogBook.
   */
  readonly coalescePushes?: boolean;
  /** In [0, 1): picks the shard of a push without a key (default `Math.random`). */
  readonly random?: () => number;
}

export interface PushOptions {
  /** Push into this shard. */
  readonly shard?: number;
  /** Push into the shard this key hashes to (messages with one key keep their order). */
  readonly key?: string;
}

export interface PushResult {
  readonly id: MessageId;
  readonly shard: number;
  /** The push record's sequence number. */
  readonly seqnum: SeqNum;
  /** The message's index in its push record (0 unless pushed with `pushMany`). */
  readonly index: number;
}

export interface PopOptions {
  /** Who pops (1 to 128 visible ASCII characters); recorded with the delivery. */
  readonly consumer: string;
  /** Most messages to receive (default 1, at most `POP_MESSAGES_MAX`). */
  readonly max?: number;
  /**
   * How long the messages are this consumer's, in ms of log time (default 30 s): unless
   * acked (or extended) before, they are delivered again after it.
   */
  readonly visibilityMs?: number;
  /**
   * How long to wait for a message when none is available, in ms (default 0: answer at
   * once). The wait ends early when a message arrives.
   */
  readonly waitMs?: number;
  /** Pop from this shard only. Without it, shards known to hold messages are tried first. */
  readonly shard?: number;
  /**
   * Receipts to acknowledge in the same record as the pop (those of the pop's shard; any
   * others are acked in records of their own shards). The outcome is in `PopResult.acks`.
   */
  readonly ack?: readonly (ReceiptString | Receipt)[];
}

interface MessageBase {
  /** Stable across deliveries: `<shard>.<seqnum>.<index>`. */
  readonly id: MessageId;
  /** Names this delivery; pass it to `ack`, `nack` or `extend`. */
  readonly receipt: ReceiptString;
  readonly shard: number;
  /** The push record's sequence number. */
  readonly seqnum: SeqNum;
  readonly index: number;
  /** 1 for the first delivery. */
  readonly delivery: number;
  /** The pusher's clock when it pushed (ms since the epoch). */
  readonly pushedAt: number;
  /** Log time of the delivery (ms since the epoch). */
  readonly deliveredAt: number;
  /** Log time until which the delivery is the consumer's; ack before it. */
  readonly visibleUntil: number;
  /** For a message of a dead-letter queue: where it came from. */
  readonly origin?: DeadLetterOrigin;
}

export type Message = MessageBase &
  (
    | { readonly encoding: "json"; readonly value: JsonValue }
    | { readonly encoding: "bytes"; readonly value: Uint8Array }
  );

/** What `peek` shows: the message the next pop would receive, without claiming it. */
export type PeekedMessage = Omit<
  MessageBase,
  "receipt" | "delivery" | "deliveredAt" | "visibleUntil"
> & {
  /** Deliveries so far. */
  readonly deliveries: number;
} & (
    | { readonly encoding: "json"; readonly value: JsonValue }
    | { readonly encoding: "bytes"; readonly value: Uint8Array }
  );

export interface ReceiptResult {
  /** Receipts that took effect. */
  readonly accepted: number;
  /**
   * Receipts that did not: the message was delivered again since, acked already, nacked, or
   * never delivered with this receipt.
   */
  readonly rejected: readonly ReceiptString[];
}

export interface PopResult {
  /** The shard popped from. */
  readonly shard: number;
  /** The pop record's sequence number (null if the pop did not reach the log). */
  readonly popSeq: SeqNum | null;
  /** The messages received, oldest first (empty if none came within `waitMs`). */
  readonly messages: readonly Message[];
  /** Outcome of `PopOptions.ack`, when given. */
  readonly acks?: ReceiptResult;
}

export interface QueueLength {
  /** A pop would receive these now. */
  readonly available: number;
  readonly inFlight: number;
  readonly delayed: number;
  /** Past their last delivery, not yet copied to the dead-letter queue. */
  readonly deadPending: number;
  readonly total: number;
}

export interface Queue {
  readonly name: string;
  readonly shards: number;
  readonly maxDeliveries: number;
  readonly deadLetterQueue: string | null;

  /** Pushes a JSON value; durable once the promise resolves. */
  push(value: JsonValue, options?: PushOptions): Promise<PushResult>;
  /** Pushes bytes; durable once the promise resolves. */
  pushBytes(bytes: Uint8Array, options?: PushOptions): Promise<PushResult>;
  /** Pushes JSON values as one record into one shard (all or none), in order. */
  pushMany(values: readonly JsonValue[], options?: PushOptions): Promise<PushResult[]>;
  /** Receives up to `max` messages, waiting up to `waitMs` for the first. */
  pop(options: PopOptions): Promise<PopResult>;
  /** Acknowledges deliveries: their messages are done. */
  ack(receipts: readonly (ReceiptString | Receipt)[]): Promise<ReceiptResult>;
  /** Gives deliveries back: visible again after `delayMs` (default 0). */
  nack(
    receipts: readonly (ReceiptString | Receipt)[],
    options?: { delayMs?: number },
  ): Promise<ReceiptResult>;
  /** Keeps deliveries for `visibilityMs` more (from now, in log time). */
  extend(
    receipts: readonly (ReceiptString | Receipt)[],
    visibilityMs: number,
  ): Promise<ReceiptResult>;
  /** The message the next pop would receive (of one shard, or the oldest of all), or null. */
  peek(options?: { shard?: number }): Promise<PeekedMessage | null>;
  /** Counts of unfinished messages (of one shard, or summed over all). */
  length(options?: { shard?: number }): Promise<QueueLength>;
}
