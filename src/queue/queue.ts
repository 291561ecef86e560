/**
 * The queue over a LogBook: `openQueue` and the `Queue` it returns (see api.ts for the
 * interface). A push is one append; a pop is one append (the pop record, carrying any acks)
 * plus reading the shard's records appended since this process last read them; which
 * messages the pop received is decided by the shard's state machine (machine.ts) from the
 * log alone.
 */
import type { JsonValue, LogBook, SeqNum, Tag } from "../index.js";
import type {
  Message,
  PeekedMessage,
  PopOptions,
  PopResult,
  PushOptions,
  PushResult,
  Queue,
  QueueLength,
  QueueOptions,
  ReceiptResult,
} from "./api.js";
import { invariant } from "./assert.js";
import { QueueCache, type QueueMeta } from "./cache.js";
import { invalid, QueueError } from "./errors.js";
import {
  describeValue,
  intIn,
  messageIdOf,
  parseConsumerId,
  parseQueueName,
  parseReceipt,
  parseShard,
  parseShardCount,
  queueTags,
  receiptToString,
  shardOfKey,
  type Receipt,
  type ReceiptString,
  type QueueTags,
} from "./ids.js";
import {
  AUX_CHECKPOINT_INTERVAL_RECORDS_DEFAULT,
  CHECKPOINT_INTERVAL_RECORDS_DEFAULT,
  CHECKPOINT_INTERVAL_RECORDS_MAX,
  CHECKPOINT_INTERVAL_RECORDS_MIN,
  LENGTH_CHECK_INTERVAL_MS,
  MAX_DELIVERIES_DEFAULT,
  MAX_DELIVERIES_MAX,
  MESSAGE_BYTES_MAX,
  NACK_DELAY_MS_MAX,
  POP_MESSAGES_MAX,
  POP_WAIT_MS_MAX,
  PUSH_BATCH_MESSAGES_MAX,
  PUSH_RECORD_BYTES_MAX,
  RECEIPTS_PER_RECORD_MAX,
  SHARD_MESSAGES_SOFT_MAX,
  UNPINNED_POP_SHARDS_TRIED_MAX,
  VISIBILITY_MS_DEFAULT,
  VISIBILITY_MS_MAX,
  WAITING_POPS_MAX,
} from "./limits.js";
import type { Delivery, MachineConfig, ShardMachine } from "./machine.js";
import { ShardReader, type DeadLetterSink } from "./reader.js";
import { encodeRecord, pushRecordBytes, type PushMessage, type QueueRecord } from "./records.js";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

// ---- settings ---------------------------------------------------------------------------------

interface MetaRecord extends QueueMeta {
  readonly v: 1;
  readonly type: "meta";
}

function parseMeta(text: string, name: string): QueueMeta {
  let m: Partial<MetaRecord>;
  try {
    m = JSON.parse(text) as Partial<MetaRecord>;
  } catch (err) {
    throw new QueueError("DATA_LOST", `queue ${name}: its settings record is not JSON`, {
      cause: err,
    });
  }
  try {
    return {
      shards: parseShardCount(m.shards),
      maxDeliveries: intIn(m.maxDeliveries, 1, MAX_DELIVERIES_MAX, "maxDeliveries"),
      deadLetterQueue: m.deadLetterQueue === null ? null : parseQueueName(m.deadLetterQueue),
      checkpointIntervalRecords: intIn(
        m.checkpointIntervalRecords,
        CHECKPOINT_INTERVAL_RECORDS_MIN,
        CHECKPOINT_INTERVAL_RECORDS_MAX,
        "checkpointIntervalRecords",
      ),
      auxCheckpointIntervalRecords: intIn(
        m.auxCheckpointIntervalRecords,
        CHECKPOINT_INTERVAL_RECORDS_MIN,
        CHECKPOINT_INTERVAL_RECORDS_MAX,
        "auxCheckpointIntervalRecords",
      ),
    };
  } catch (err) {
    throw new QueueError(
      "DATA_LOST",
      `queue ${name}: its settings record is malformed: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The settings given to `openQueue` (only those given), validated. */
function requestedMeta(name: string, o: QueueOptions): Partial<QueueMeta> {
  const r: { -readonly [K in keyof QueueMeta]?: QueueMeta[K] } = {};
  if (o.shards !== undefined) r.shards = parseShardCount(o.shards);
  if (o.maxDeliveries !== undefined) {
    r.maxDeliveries = intIn(o.maxDeliveries, 1, MAX_DELIVERIES_MAX, "maxDeliveries");
  }
  if (o.deadLetterQueue !== undefined) {
    r.deadLetterQueue = o.deadLetterQueue === null ? null : parseQueueName(o.deadLetterQueue);
    if (r.deadLetterQueue === name)
      throw invalid(`queue ${name} cannot be its own dead-letter queue`);
  }
  if (o.checkpointIntervalRecords !== undefined) {
    r.checkpointIntervalRecords = intIn(
      o.checkpointIntervalRecords,
      CHECKPOINT_INTERVAL_RECORDS_MIN,
      CHECKPOINT_INTERVAL_RECORDS_MAX,
      "checkpointIntervalRecords",
    );
  }
  if (o.auxCheckpointIntervalRecords !== undefined) {
    r.auxCheckpointIntervalRecords = intIn(
      o.auxCheckpointIntervalRecords,
      CHECKPOINT_INTERVAL_RECORDS_MIN,
      CHECKPOINT_INTERVAL_RECORDS_MAX,
      "auxCheckpointIntervalRecords",
    );
  }
  return r;
}

async function readMeta(log: LogBook, tag: Tag, name: string): Promise<QueueMeta | undefined> {
  const r = await log.readNext(tag, 0);
  return r === null ? undefined : parseMeta(utf8Decoder.decode(r.data), name);
}

/** The queue's settings: its meta record, written first (once, by a conditional append). */
async function ensureMeta(
  log: LogBook,
  name: string,
  tags: QueueTags,
  requested: Partial<QueueMeta>,
  cache: QueueCache,
): Promise<QueueMeta> {
  const key = `${log.book}/${name}`;
  let meta = cache.meta(key) ?? (await readMeta(log, tags.meta, name));
  if (meta === undefined) {
    const desired: QueueMeta = {
      shards: 1,
      maxDeliveries: MAX_DELIVERIES_DEFAULT,
      deadLetterQueue: `${name}.dead`.length <= 128 ? `${name}.dead` : null,
      checkpointIntervalRecords: CHECKPOINT_INTERVAL_RECORDS_DEFAULT,
      auxCheckpointIntervalRecords: AUX_CHECKPOINT_INTERVAL_RECORDS_DEFAULT,
      ...requested,
    };
    const record: MetaRecord = { v: 1, type: "meta", ...desired };
    try {
      await log.condAppend([tags.meta], JSON.stringify(record), tags.meta, 0);
      meta = desired;
    } catch (err) {
      if ((err as { code?: unknown }).code !== "COND_APPEND_FAILED") throw err;
      // Another opener created it first: theirs holds.
      meta = await readMeta(log, tags.meta, name);
      if (meta === undefined) {
        throw new QueueError("DATA_LOST", `queue ${name}: its settings record is gone`);
      }
    }
  }
  cache.setMeta(key, meta);
  const differ = (Object.keys(requested) as (keyof QueueMeta)[]).filter(
    (k) => requested[k] !== meta[k],
  );
  if (differ.length > 0) {
    throw new QueueError(
      "QUEUE_CONFIG_MISMATCH",
      `queue ${name} exists with ${differ.map((k) => `${k}=${JSON.stringify(meta[k])}`).join(", ")}; it was opened with ${differ.map((k) => `${k}=${JSON.stringify(requested[k])}`).join(", ")}`,
    );
  }
  return meta;
}

// ---- values -----------------------------------------------------------------------------------

/** JSON text of a value, refusing what JSON.stringify would drop or mangle silently. */
function jsonText(value: unknown): string {
  const check = (_key: string, v: unknown): unknown => {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw invalid(`a message must be JSON; it contains the number ${v}`);
    }
    if (typeof v === "function" || typeof v === "symbol" || typeof v === "bigint") {
      throw invalid(`a message must be JSON; it contains ${describeValue(v)}`);
    }
    if (Array.isArray(v) && v.includes(undefined)) {
      throw invalid("a message must be JSON; it contains an undefined array item");
    }
    return v;
  };
  const text = JSON.stringify(value, check) as string | undefined;
  if (text === undefined) throw invalid(`a message must be JSON, got ${describeValue(value)}`);
  return text;
}

function checkSize(bytes: number): void {
  if (bytes > MESSAGE_BYTES_MAX) {
    throw new QueueError(
      "MESSAGE_TOO_LARGE",
      `a message is ${bytes} bytes; the limit is ${MESSAGE_BYTES_MAX} bytes`,
    );
  }
}

function payloadOf(
  m: PushMessage,
): { encoding: "json"; value: JsonValue } | { encoding: "bytes"; value: Uint8Array } {
  if (m.json) {
    try {
      return { encoding: "json", value: JSON.parse(utf8Decoder.decode(m.data)) as JsonValue };
    } catch {
      // Not JSON after all (written by something else): hand over the bytes.
    }
  }
  return { encoding: "bytes", value: new Uint8Array(m.data) };
}

// ---- the queue --------------------------------------------------------------------------------

/**
 * Opens (creating on first use) the queue `name` in the LogBook's book. In a function, pass
 * `ctx.log`, and a module-level `QueueCache` so that calls share the replayed state:
 *
 * ```ts
 * const cache = new QueueCache();
 * export const consume = defineFunction({
 *   name: "consume",
 *   async handler(ctx, input: { consumer: string }) {
 *     const q = await openQueue(ctx.log, "jobs", { cache });
 *     const { messages } = await q.pop({ consumer: input.consumer, max: 10, waitMs: 1000 });
 *     // ... work, then q.ack(messages.map((m) => m.receipt))
 *   },
 * });
 * ```
 */
export async function openQueue(
  log: LogBook,
  name: string,
  options: QueueOptions = {},
): Promise<Queue> {
  if (typeof options !== "object" || options === null) {
    throw invalid(`openQueue options must be an object, got ${describeValue(options)}`);
  }
  const qname = parseQueueName(name);
  const requested = requestedMeta(qname, options);
  const cache = options.cache ?? new QueueCache();
  if (!(cache instanceof QueueCache)) throw invalid("options.cache must be a QueueCache");
  const clock = options.clock ?? Date.now;
  const random = options.random ?? Math.random;
  if (typeof clock !== "function") throw invalid("options.clock must be a function");
  if (typeof random !== "function") throw invalid("options.random must be a function");
  const tags = queueTags(qname);
  const meta = await ensureMeta(log, qname, tags, requested, cache);
  if (options.coalescePushes !== undefined && typeof options.coalescePushes !== "boolean") {
    throw invalid("options.coalescePushes must be a boolean");
  }
  return new LogQueue(log, qname, tags, meta, cache, clock, random, options.coalescePushes ?? true);
}

interface ReceiptOp {
  readonly what: string;
  record(at: number, receipts: readonly Receipt[]): QueueRecord;
}

class LogQueue implements Queue {
  private nextShard: number;
  private readonly machineConfig: MachineConfig;
  private readonly deadLetterSink: DeadLetterSink | null;

  constructor(
    private readonly log: LogBook,
    readonly name: string,
    private readonly tags: QueueTags,
    private readonly meta: QueueMeta,
    private readonly cache: QueueCache,
    private readonly clock: () => number,
    random: () => number,
    private readonly coalesce: boolean,
  ) {
    this.nextShard = Math.floor(random() * meta.shards) % meta.shards;
    this.machineConfig = {
      maxDeliveries: meta.maxDeliveries,
      deadLetter: meta.deadLetterQueue !== null,
      checkpointIntervalRecords: meta.checkpointIntervalRecords,
      auxIntervalRecords: meta.auxCheckpointIntervalRecords,
      waitingPopsMax: WAITING_POPS_MAX,
    };
    this.deadLetterSink = meta.deadLetterQueue === null ? null : this.sinkFor(meta.deadLetterQueue);
  }

  get shards(): number {
    return this.meta.shards;
  }
  get maxDeliveries(): number {
    return this.meta.maxDeliveries;
  }
  get deadLetterQueue(): string | null {
    return this.meta.deadLetterQueue;
  }

  private reader(shard: number): ShardReader {
    return this.cache.reader(
      `${this.log.book}/${this.name}/${shard}`,
      () =>
        new ShardReader(
          shard,
          this.tags.shard(shard),
          this.tags.checkpoint(shard),
          this.machineConfig,
          this.cache.payloads,
          `${this.log.book}/${this.name}/${shard}/`,
          this.clock,
          this.deadLetterSink,
        ),
    );
  }

  private sinkFor(dlqName: string): DeadLetterSink {
    const dlqTags = queueTags(dlqName);
    return {
      copy: async (log, shard, letters) => {
        // The dead-letter queue is an ordinary queue; make sure it exists.
        await ensureMeta(log, dlqName, dlqTags, {}, this.cache);
        for (const { letter, message } of letters) {
          const rec: QueueRecord = {
            type: "push",
            at: this.clock(),
            messages: [
              {
                json: message.json,
                data: message.data,
                origin: {
                  queue: this.name,
                  shard,
                  seq: letter.seq,
                  idx: letter.idx,
                  deliveries: letter.deliveries,
                  pushedAt: letter.pushedAt,
                },
              },
            ],
          };
          const once = this.tags.deadCopy(shard, letter);
          try {
            await log.condAppend([dlqTags.shard(0), once], encodeRecord(rec), once, 0);
          } catch (err) {
            // Copied already (by this process before a crash, or by another reader).
            if ((err as { code?: unknown }).code !== "COND_APPEND_FAILED") throw err;
          }
        }
      },
    };
  }

  // ---- push -----------------------------------------------------------------------------------

  private pickShard(options: PushOptions | undefined): number {
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw invalid(`push options must be an object, got ${describeValue(options)}`);
    }
    if (options?.shard !== undefined) {
      if (options.key !== undefined) throw invalid("push takes a shard or a key, not both");
      return parseShard(options.shard, this.meta.shards);
    }
    if (options?.key !== undefined) {
      if (typeof options.key !== "string") throw invalid("push key must be a string");
      return shardOfKey(options.key, this.meta.shards);
    }
    const s = this.nextShard;
    this.nextShard = (s + 1) % this.meta.shards;
    return s;
  }

  /** The soft limit: the shard's length as this process last saw it (refreshed now and then). */
  private async checkLength(shard: number, adding: number): Promise<void> {
    const m = await this.reader(shard).refreshIfIdle(this.log, LENGTH_CHECK_INTERVAL_MS);
    if (m === null) return;
    const total = m.length().total;
    if (total + adding > SHARD_MESSAGES_SOFT_MAX) {
      throw new QueueError(
        "QUEUE_FULL",
        `shard ${shard} of queue ${this.name} holds ${total} unfinished messages; the limit is ${SHARD_MESSAGES_SOFT_MAX}`,
      );
    }
  }

  private async pushMessages(
    messages: readonly PushMessage[],
    options: PushOptions | undefined,
  ): Promise<PushResult[]> {
    if (messages.length === 0) throw invalid("pushMany needs at least one message");
    if (messages.length > PUSH_BATCH_MESSAGES_MAX) {
      throw invalid(
        `pushMany takes at most ${PUSH_BATCH_MESSAGES_MAX} messages, got ${messages.length}`,
      );
    }
    const bytes = pushRecordBytes(messages.map((m) => m.data.byteLength));
    if (bytes > PUSH_RECORD_BYTES_MAX) {
      throw new QueueError(
        "MESSAGE_TOO_LARGE",
        `the push record would be ${bytes} bytes; the limit is ${PUSH_RECORD_BYTES_MAX} bytes`,
      );
    }
    const shard = this.pickShard(options);
    await this.checkLength(shard, messages.length);
    const { seq, first } = await this.reader(shard).push(this.log, messages, this.coalesce);
    return messages.map((_, i) => ({
      id: messageIdOf(shard, { seq, idx: first + i }),
      shard,
      seqnum: seq as SeqNum,
      index: first + i,
    }));
  }

  async push(value: JsonValue, options?: PushOptions): Promise<PushResult> {
    const data = utf8.encode(jsonText(value));
    checkSize(data.byteLength);
    const [r] = await this.pushMessages([{ json: true, data }], options);
    return r!;
  }

  async pushBytes(bytes: Uint8Array, options?: PushOptions): Promise<PushResult> {
    if (!(bytes instanceof Uint8Array)) {
      throw invalid(`pushBytes takes a Uint8Array, got ${describeValue(bytes)}`);
    }
    checkSize(bytes.byteLength);
    const [r] = await this.pushMessages([{ json: false, data: bytes }], options);
    return r!;
  }

  async pushMany(values: readonly JsonValue[], options?: PushOptions): Promise<PushResult[]> {
    if (!Array.isArray(values))
      throw invalid(`pushMany takes an array, got ${describeValue(values)}`);
    const messages = values.map((v) => {
      const data = utf8.encode(jsonText(v));
      checkSize(data.byteLength);
      return { json: true, data };
    });
    return this.pushMessages(messages, options);
  }

  // ---- pop ------------------------------------------------------------------------------------

  private parseReceipts(list: unknown, what: string): Receipt[] {
    if (!Array.isArray(list)) throw invalid(`${what} takes an array of receipts`);
    return list.map((r) => parseReceipt(r, this.meta.shards));
  }

  /** Shards to try for an unpinned pop: those this process saw holding messages, then one more. */
  private popOrder(prefer: number | undefined): number[] {
    const n = this.meta.shards;
    const order: number[] = [];
    const add = (s: number): void => {
      if (!order.includes(s) && order.length < UNPINNED_POP_SHARDS_TRIED_MAX) order.push(s);
    };
    if (prefer !== undefined) add(prefer);
    const seen: { shard: number; available: number }[] = [];
    for (let s = 0; s < n; s++) {
      const m = this.reader(s).state;
      if (m === null || !m.hasAvailable(this.clock())) continue;
      seen.push({ shard: s, available: m.length().available });
    }
    seen.sort((a, b) => b.available - a.available || a.shard - b.shard);
    for (const x of seen) add(x.shard);
    const rotate = this.nextShard;
    this.nextShard = (rotate + 1) % n;
    if (order.length < UNPINNED_POP_SHARDS_TRIED_MAX) add(rotate);
    return order;
  }

  async pop(options: PopOptions): Promise<PopResult> {
    if (typeof options !== "object" || options === null) {
      throw invalid(`pop needs options with a consumer id, got ${describeValue(options)}`);
    }
    const consumer = parseConsumerId(options.consumer);
    const max = options.max === undefined ? 1 : intIn(options.max, 1, POP_MESSAGES_MAX, "pop max");
    const visibilityMs =
      options.visibilityMs === undefined
        ? VISIBILITY_MS_DEFAULT
        : intIn(options.visibilityMs, 1, VISIBILITY_MS_MAX, "visibilityMs");
    const waitMs =
      options.waitMs === undefined ? 0 : intIn(options.waitMs, 0, POP_WAIT_MS_MAX, "waitMs");
    const acks = options.ack === undefined ? [] : this.parseReceipts(options.ack, "pop ack");
    if (acks.length > RECEIPTS_PER_RECORD_MAX) {
      throw invalid(`pop acks at most ${RECEIPTS_PER_RECORD_MAX} receipts, got ${acks.length}`);
    }
    const pinned =
      options.shard === undefined ? undefined : parseShard(options.shard, this.meta.shards);
    const order = pinned !== undefined ? [pinned] : this.popOrder(acks[0]?.shard);
    const waitEnd = this.clock() + waitMs;

    // Acks go in the first pop record of their shard; those of shards not tried, in acks.
    const acksOf = new Map<number, Receipt[]>();
    for (const r of acks) {
      const list = acksOf.get(r.shard) ?? [];
      list.push(r);
      acksOf.set(r.shard, list);
    }
    const ackOutcomes: ReceiptResult[] = [];
    for (const [s, list] of acksOf) {
      if (!order.includes(s)) ackOutcomes.push(await this.receiptOp(s, list, ACK));
    }

    let result: PopResult | undefined;
    for (let i = 0; i < order.length; i++) {
      const shard = order[i]!;
      const last = i === order.length - 1;
      const shardAcks = acksOf.get(shard) ?? [];
      acksOf.delete(shard);
      const reader = this.reader(shard);
      const appending = reader.append(
        this.log,
        {
          type: "pop",
          at: this.clock(),
          consumer,
          max,
          visibilityMs,
          waitMs: last ? Math.max(0, waitEnd - this.clock()) : 0,
          acks: shardAcks,
        },
        { watch: true },
      );
      // Read what is already there while the pop record is being made durable.
      // (A failed read-ahead only loses the overlap: the catch-up reads and reports.)
      const [popSeq] = await Promise.all([
        appending,
        reader.prefetch(this.log).catch(() => undefined),
      ]);
      const outcome = await reader.awaitPop(this.log, popSeq, last ? waitEnd : 0);
      if (shardAcks.length > 0)
        ackOutcomes.push(receiptResult(shardAcks, reader.receiptsAt(popSeq)));
      if (outcome.status === "delivered") {
        const messages = await this.messages(reader, shard, outcome.deliveries, outcome.at);
        result = { shard, popSeq: popSeq as SeqNum, messages };
        break;
      }
      if (last) result = { shard, popSeq: popSeq as SeqNum, messages: [] };
    }
    invariant(result !== undefined, "pop tried no shard");
    if (acks.length === 0) return result;
    return {
      ...result,
      acks: {
        accepted: ackOutcomes.reduce((n, p) => n + p.accepted, 0),
        rejected: ackOutcomes.flatMap((p) => p.rejected),
      },
    };
  }

  private async messages(
    reader: ShardReader,
    shard: number,
    deliveries: readonly Delivery[],
    deliveredAt: number,
  ): Promise<Message[]> {
    const out: Message[] = [];
    for (const d of deliveries) {
      const msgs = await reader.messagesOf(this.log, d.seq);
      const m = msgs[d.idx];
      if (m === undefined) {
        throw new QueueError("DATA_LOST", `push record ${d.seq} has no message ${d.idx}`);
      }
      out.push({
        id: messageIdOf(shard, d),
        receipt: receiptToString({ shard, seq: d.seq, idx: d.idx, delivery: d.delivery }),
        shard,
        seqnum: d.seq as SeqNum,
        index: d.idx,
        delivery: d.delivery,
        pushedAt: d.pushedAt,
        deliveredAt,
        visibleUntil: d.deadline,
        ...(m.origin === undefined ? {} : { origin: m.origin }),
        ...payloadOf(m),
      });
    }
    return out;
  }

  // ---- ack, nack, extend ----------------------------------------------------------------------

  private async receiptOp(
    shard: number,
    list: readonly Receipt[],
    op: ReceiptOp,
  ): Promise<ReceiptResult> {
    const reader = this.reader(shard);
    const accepted: boolean[] = [];
    for (let i = 0; i < list.length; i += RECEIPTS_PER_RECORD_MAX) {
      const chunk = list.slice(i, i + RECEIPTS_PER_RECORD_MAX);
      const seq = await reader.append(this.log, op.record(this.clock(), chunk), { watch: true });
      accepted.push(...(await reader.receiptsOf(this.log, seq, op.what)));
    }
    return receiptResult(list, accepted);
  }

  private async receipts(
    receipts: readonly (ReceiptString | Receipt)[],
    op: ReceiptOp,
  ): Promise<ReceiptResult> {
    const list = this.parseReceipts(receipts, op.what);
    const byShard = new Map<number, Receipt[]>();
    for (const r of list) {
      const l = byShard.get(r.shard) ?? [];
      l.push(r);
      byShard.set(r.shard, l);
    }
    const parts = await Promise.all([...byShard].map(([s, l]) => this.receiptOp(s, l, op)));
    return {
      accepted: parts.reduce((n, p) => n + p.accepted, 0),
      rejected: parts.flatMap((p) => p.rejected),
    };
  }

  ack(receipts: readonly (ReceiptString | Receipt)[]): Promise<ReceiptResult> {
    return this.receipts(receipts, ACK);
  }

  nack(
    receipts: readonly (ReceiptString | Receipt)[],
    options: { delayMs?: number } = {},
  ): Promise<ReceiptResult> {
    const delayMs =
      options.delayMs === undefined ? 0 : intIn(options.delayMs, 0, NACK_DELAY_MS_MAX, "delayMs");
    return this.receipts(receipts, {
      what: "nack",
      record: (at, r) => ({ type: "nack", at, receipts: r, delayMs }),
    });
  }

  extend(
    receipts: readonly (ReceiptString | Receipt)[],
    visibilityMs: number,
  ): Promise<ReceiptResult> {
    const ms = intIn(visibilityMs, 1, VISIBILITY_MS_MAX, "visibilityMs");
    return this.receipts(receipts, {
      what: "extend",
      record: (at, r) => ({ type: "extend", at, receipts: r, visibilityMs: ms }),
    });
  }

  // ---- peek, length ---------------------------------------------------------------------------

  private shardList(options: { shard?: number } | undefined): number[] {
    if (options?.shard !== undefined) return [parseShard(options.shard, this.meta.shards)];
    return Array.from({ length: this.meta.shards }, (_, s) => s);
  }

  private state<T>(shard: number, what: string, fn: (m: ShardMachine) => T): Promise<T> {
    return this.reader(shard).withState(this.log, what, "tail", fn);
  }

  async peek(options?: { shard?: number }): Promise<PeekedMessage | null> {
    let best: PeekedMessage | null = null;
    for (const shard of this.shardList(options)) {
      const p = await this.state(shard, "peek", (m) => m.peek(this.clock()));
      if (p === null || (best !== null && best.pushedAt <= p.pushedAt)) continue;
      const msgs = await this.reader(shard).messagesOf(this.log, p.seq);
      const m = msgs[p.idx];
      if (m === undefined)
        throw new QueueError("DATA_LOST", `push record ${p.seq} has no message ${p.idx}`);
      best = {
        id: messageIdOf(shard, p),
        shard,
        seqnum: p.seq as SeqNum,
        index: p.idx,
        pushedAt: p.pushedAt,
        deliveries: p.deliveries,
        ...(m.origin === undefined ? {} : { origin: m.origin }),
        ...payloadOf(m),
      };
    }
    return best;
  }

  async length(options?: { shard?: number }): Promise<QueueLength> {
    const total = { available: 0, inFlight: 0, delayed: 0, deadPending: 0, total: 0 };
    for (const shard of this.shardList(options)) {
      const l = await this.state(shard, "length", (m) => m.length(this.clock()));
      total.available += l.available;
      total.inFlight += l.inFlight;
      total.delayed += l.delayed;
      total.deadPending += l.deadPending;
      total.total += l.total;
    }
    return total;
  }
}

const ACK: ReceiptOp = {
  what: "ack",
  record: (at, receipts) => ({ type: "ack", at, receipts }),
};

function receiptResult(
  list: readonly Receipt[],
  accepted: readonly boolean[] | undefined,
): ReceiptResult {
  invariant(
    accepted === undefined || accepted.length === list.length,
    "receipt outcomes do not match the receipts",
  );
  const rejected: ReceiptString[] = [];
  let n = 0;
  list.forEach((r, i) => {
    if (accepted?.[i] === true) n++;
    else rejected.push(receiptToString(r));
  });
  return { accepted: n, rejected };
}
