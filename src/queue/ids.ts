/**
 * Names, ids and tags of the queue library: queue names, consumer ids, message ids and
 * receipts (validating parsers), and the tags of a queue's sub-streams, all in the
 * "boki-queue" namespace so that queues share a book with other libraries safely.
 */
import { tagOf, type Tag } from "../index.js";
import { invalid } from "./errors.js";
import { CONSUMER_ID_CHARS_MAX, QUEUE_NAME_CHARS_MAX, SHARDS_MAX } from "./limits.js";

const QUEUE_NAME = /^[A-Za-z0-9_.:-]+$/;
const CONSUMER_ID = /^[!-~]+$/;

function show(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "bigint":
      return `${value}n`;
    case "object":
      return value === null ? "null" : Array.isArray(value) ? "an array" : "an object";
    default:
      return `a ${typeof value}`;
  }
}
export { show as describeValue };

export function parseQueueName(value: unknown): string {
  if (
    typeof value !== "string" ||
    value.length === 0 ||
    value.length > QUEUE_NAME_CHARS_MAX ||
    !QUEUE_NAME.test(value)
  ) {
    throw invalid(
      `a queue name is 1 to ${QUEUE_NAME_CHARS_MAX} characters of A-Z a-z 0-9 _ . : -, got ${show(value)}`,
    );
  }
  return value;
}

export function parseConsumerId(value: unknown): string {
  if (
    typeof value !== "string" ||
    value.length === 0 ||
    value.length > CONSUMER_ID_CHARS_MAX ||
    !CONSUMER_ID.test(value)
  ) {
    throw invalid(
      `a consumer id is 1 to ${CONSUMER_ID_CHARS_MAX} visible ASCII characters, got ${show(value)}`,
    );
  }
  return value;
}

/** A non-negative safe integer in [min, max], or an INVALID_ARGUMENT error naming `what`. */
export function intIn(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${what} must be an integer in [${min}, ${max}], got ${show(value)}`);
  }
  return value;
}

export function parseShard(value: unknown, shards: number): number {
  return intIn(value, 0, shards - 1, "shard");
}

export function parseShardCount(value: unknown): number {
  return intIn(value, 1, SHARDS_MAX, "shards");
}

/** One message: the push record's sequence number and the message's index in it. */
export interface ElementRef {
  readonly seq: number;
  readonly idx: number;
}

/** One delivery of a message: what an ack, nack or extend names. */
export interface ReceiptRef extends ElementRef {
  /** Which delivery of the message (1 for the first). */
  readonly delivery: number;
}

/** A receipt as the API hands it out: shard, push seqnum, index, delivery. */
export interface Receipt extends ReceiptRef {
  readonly shard: number;
}

/** `<shard>.<seqnum>.<index>`: stable for a message across its deliveries. */
export type MessageId = string;
/** `<shard>.<seqnum>.<index>.<delivery>`: names one delivery of a message. */
export type ReceiptString = string;

export function messageIdOf(shard: number, e: ElementRef): MessageId {
  return `${shard}.${e.seq}.${e.idx}`;
}

export function receiptToString(r: Receipt): ReceiptString {
  return `${r.shard}.${r.seq}.${r.idx}.${r.delivery}`;
}

const RECEIPT = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,15})\.(0|[1-9]\d{0,4})\.([1-9]\d{0,9})$/;

/** Parses a receipt string (or checks a receipt object) against a queue of `shards` shards. */
export function parseReceipt(value: unknown, shards: number): Receipt {
  let shard: number, seq: number, idx: number, delivery: number;
  if (typeof value === "string") {
    const m = RECEIPT.exec(value);
    if (m === null)
      throw invalid(`a receipt is "<shard>.<seqnum>.<index>.<delivery>", got ${show(value)}`);
    [shard, seq, idx, delivery] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  } else if (typeof value === "object" && value !== null) {
    const r = value as Record<string, unknown>;
    shard = intIn(r["shard"], 0, SHARDS_MAX - 1, "receipt.shard");
    seq = intIn(r["seq"], 0, Number.MAX_SAFE_INTEGER, "receipt.seq");
    idx = intIn(r["idx"], 0, 65_535, "receipt.idx");
    delivery = intIn(r["delivery"], 1, 0xffff_ffff, "receipt.delivery");
  } else {
    throw invalid(`a receipt is a string or a receipt object, got ${show(value)}`);
  }
  if (!Number.isSafeInteger(seq) || idx > 65_535 || delivery > 0xffff_ffff) {
    throw invalid(`receipt out of range: ${show(value)}`);
  }
  if (shard >= shards) throw invalid(`receipt names shard ${shard}; the queue has ${shards}`);
  return { shard, seq, idx, delivery };
}

/** The tags of a queue. */
export interface QueueTags {
  readonly meta: Tag;
  shard(shard: number): Tag;
  checkpoint(shard: number): Tag;
  /** The condition tag that makes a dead letter's copy happen once. */
  deadCopy(shard: number, e: ElementRef): Tag;
}

export function queueTags(name: string): QueueTags {
  const shardTags: Tag[] = [];
  const ckptTags: Tag[] = [];
  return {
    meta: tagOf(`boki-queue/meta/${name}`),
    shard: (s) => (shardTags[s] ??= tagOf(`boki-queue/shard/${name}/${s}`)),
    checkpoint: (s) => (ckptTags[s] ??= tagOf(`boki-queue/checkpoint/${name}/${s}`)),
    deadCopy: (s, e) => tagOf(`boki-queue/dead/${name}/${s}/${e.seq}/${e.idx}`),
  };
}

/** FNV-1a over a string's UTF-16 units: a stable shard for a key. */
export function shardOfKey(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}
