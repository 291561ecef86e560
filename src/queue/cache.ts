/**
 * What a process keeps between queue calls: each shard's replayed state (a `ShardReader`),
 * the payloads of pushed messages read while replaying (so a pop rarely reads a push record
 * twice), and the queues' settings. One cache serves one log.
 */
import { invalid } from "./errors.js";
import { intIn } from "./ids.js";
import { CACHE_SHARDS_MAX, PAYLOAD_CACHE_BYTES_DEFAULT } from "./limits.js";
import type { PushMessage } from "./records.js";
import type { ShardReader } from "./reader.js";

/** A queue's settings, as its meta record fixes them. */
export interface QueueMeta {
  readonly shards: number;
  readonly maxDeliveries: number;
  readonly deadLetterQueue: string | null;
  readonly checkpointIntervalRecords: number;
  readonly auxCheckpointIntervalRecords: number;
}

export interface QueueCacheOptions {
  /** Payload bytes kept (default `PAYLOAD_CACHE_BYTES_DEFAULT`). */
  readonly payloadBytesMax?: number;
  /** Shards whose state is kept (default `CACHE_SHARDS_MAX`). */
  readonly shardsMax?: number;
}

export interface QueueCacheStats {
  readonly shards: number;
  readonly payloadBytes: number;
  readonly payloadHits: number;
  readonly payloadMisses: number;
}

/** Push records' messages by (shard key, seqnum), evicted oldest first beyond a byte budget. */
export class PayloadCache {
  private readonly entries = new Map<string, { messages: readonly PushMessage[]; bytes: number }>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly bytesMax: number) {}

  get size(): number {
    return this.bytes;
  }

  put(key: string, messages: readonly PushMessage[], bytes: number): void {
    if (bytes > this.bytesMax || this.entries.has(key)) return;
    this.entries.set(key, { messages, bytes });
    this.bytes += bytes;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.bytesMax) break;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
  }

  get(key: string): readonly PushMessage[] | undefined {
    const e = this.entries.get(key);
    if (e === undefined) this.misses++;
    else this.hits++;
    return e?.messages;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

export class QueueCache {
  /** @internal */
  readonly payloads: PayloadCache;
  private readonly readers = new Map<string, ShardReader>();
  private readonly metas = new Map<string, QueueMeta>();
  private readonly shardsMax: number;

  constructor(options: QueueCacheOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw invalid("QueueCache options must be an object");
    }
    const payloadBytesMax =
      options.payloadBytesMax === undefined
        ? PAYLOAD_CACHE_BYTES_DEFAULT
        : intIn(options.payloadBytesMax, 0, 2 ** 40, "payloadBytesMax");
    this.shardsMax =
      options.shardsMax === undefined
        ? CACHE_SHARDS_MAX
        : intIn(options.shardsMax, 1, 1_000_000, "shardsMax");
    this.payloads = new PayloadCache(payloadBytesMax);
  }

  /** @internal The reader of a shard, made on first use; least recently used ones are dropped. */
  reader(key: string, make: () => ShardReader): ShardReader {
    let r = this.readers.get(key);
    if (r !== undefined) {
      // Move to the end: the Map's order is the use order.
      this.readers.delete(key);
      this.readers.set(key, r);
      return r;
    }
    r = make();
    this.readers.set(key, r);
    for (const [k, old] of this.readers) {
      if (this.readers.size <= this.shardsMax) break;
      // A reader in use keeps working; it is only no longer shared.
      if (old.busy) continue;
      this.readers.delete(k);
    }
    return r;
  }

  /** @internal */
  meta(key: string): QueueMeta | undefined {
    return this.metas.get(key);
  }

  /** @internal */
  setMeta(key: string, meta: QueueMeta): void {
    this.metas.set(key, meta);
    if (this.metas.size > this.shardsMax) {
      for (const k of this.metas.keys()) {
        this.metas.delete(k);
        break;
      }
    }
  }

  /** Forgets everything (the next call of each shard starts from a checkpoint). */
  clear(): void {
    this.readers.clear();
    this.metas.clear();
    this.payloads.clear();
  }

  stats(): QueueCacheStats {
    return {
      shards: this.readers.size,
      payloadBytes: this.payloads.size,
      payloadHits: this.payloads.hits,
      payloadMisses: this.payloads.misses,
    };
  }
}
