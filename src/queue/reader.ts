/**
 * A shard's reader: the state machine of one shard plus the I/O that feeds it. It reads the
 * shard's records forward from where its state stands (a checkpoint, or the state left by
 * the previous call of this process), applies them, and remembers the pops' outcomes for the
 * calls waiting on them. It also does the duties the machine assigns to this process's pops:
 * aux-data checkpoints, durable checkpoints followed by a trim, and dead-letter copies.
 *
 * One call at a time reads (a lock); the others wait for the outcome they need, which the
 * reading call's progress usually brings.
 */
import type { LogBook, LogRecord, Tag } from "../index.js";
import { invariant } from "./assert.js";
import type { PayloadCache } from "./cache.js";
import { QueueError } from "./errors.js";
import type { ElementRef } from "./ids.js";
import {
  AUX_CHECKPOINT_BYTES_MAX,
  AUX_WALK_BACK_RECORDS_MAX,
  BLOCKING_SLICE_MS_MAX,
  CATCH_UP_RECORDS_MAX,
  CATCH_UP_RESTARTS_MAX,
  EXTRA_RECORDS_MAX,
  READ_AHEAD_MAX,
  CHECKPOINT_BYTES_MAX,
  DEAD_LETTER_GRACE_MS,
  DEAD_LETTERS_PER_CATCH_UP_MAX,
  LOCK_WAIT_MS_MAX,
  OUTCOMES_KEPT_MAX,
  PUSH_BATCH_MESSAGES_MAX,
  PUSH_RECORD_BYTES_MAX,
} from "./limits.js";
import {
  ShardMachine,
  type DeadLetter,
  type Effect,
  type MachineConfig,
  type PopOutcome,
  type ShardSnapshot,
} from "./machine.js";
import {
  decodeRecord,
  encodeRecord,
  pushRecordBytes,
  type PushMessage,
  type QueueRecord,
} from "./records.js";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** What a reader needs from its queue to copy dead letters. */
export interface DeadLetterSink {
  /** Copies the letters (once each, whoever else tries too). */
  copy(
    log: LogBook,
    shard: number,
    letters: readonly { letter: DeadLetter; message: PushMessage }[],
  ): Promise<void>;
}

/** Counts of a reader's log work, for tests and metrics. */
export interface ReaderStats {
  reads: number;
  appends: number;
  loads: number;
  restarts: number;
  checkpoints: number;
  auxCheckpoints: number;
  trims: number;
}

class Mutex {
  private held = false;
  private readonly waiters: (() => void)[] = [];

  get locked(): boolean {
    return this.held;
  }

  tryAcquire(): boolean {
    if (this.held) return false;
    this.held = true;
    return true;
  }

  acquire(timeoutMs: number, what: string): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const entry = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(entry);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(
          new QueueError(
            "TIMEOUT",
            `${what}: another call of this process read the shard for over ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(entry);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.held = false;
  }
}

/** Parses a checkpoint's JSON; undefined if it is not a shard snapshot. */
function parseSnapshot(text: string): ShardSnapshot | undefined {
  try {
    const s = JSON.parse(text) as ShardSnapshot;
    return typeof s === "object" && s !== null && s.v === 1 && Array.isArray(s.fresh)
      ? s
      : undefined;
  } catch {
    return undefined;
  }
}

export class ShardReader {
  private machine: ShardMachine | null = null;
  private readonly lock = new Mutex();
  private readonly outcomes = new Map<number, PopOutcome>();
  private readonly receiptOutcomes = new Map<number, readonly boolean[]>();
  /** Records whose outcome a call of this process is waiting for: never forgotten meanwhile. */
  private readonly watched = new Set<number>();
  /** Pops appended by this process (their owner's duties are ours). */
  private readonly ownPops = new Set<number>();
  private readonly listeners = new Set<() => void>();
  /** Reads a prefetch sends together: about twice the records a catch-up found lately. */
  private readAhead = 8;
  /** Records read ahead by `prefetch`: a chain following seqnum `from`. */
  private prefetched: { readonly from: number; readonly chain: LogRecord[] } | null = null;
  private prefetching = false;
  /** Coalesced pushes appended and not yet acknowledged. */
  private pushesInFlight = 0;
  /** Pushes waiting for the next coalesced push record. */
  private pushOpen: {
    readonly log: LogBook;
    readonly messages: PushMessage[];
    bytes: number;
    readonly waiters: {
      readonly first: number;
      resolve(r: { seq: number; first: number }): void;
      reject(err: unknown): void;
    }[];
  } | null = null;
  /** Whether a waiting pop of this process is blocked reading the shard's next record. */
  private blocking = false;
  private lastAuxFor = -1;
  private lastCheckpointFor = -1;
  private readonly copying = new Set<string>();
  /** Local clock reading of the last catch-up to the tail. */
  private lastCaughtUpAt = -Infinity;
  readonly stats: ReaderStats = {
    reads: 0,
    appends: 0,
    loads: 0,
    restarts: 0,
    checkpoints: 0,
    auxCheckpoints: 0,
    trims: 0,
  };

  constructor(
    readonly shard: number,
    readonly shardTag: Tag,
    readonly checkpointTag: Tag,
    readonly config: MachineConfig,
    private readonly payloads: PayloadCache,
    /** Key prefix of this shard's payloads in the shared payload cache. */
    private readonly payloadPrefix: string,
    private readonly clock: () => number,
    private readonly deadLetters: DeadLetterSink | null,
  ) {}

  /** Whether a call is reading the shard now. */
  get busy(): boolean {
    return this.lock.locked;
  }

  /** The state as of the last catch-up (null before the first). */
  get state(): ShardMachine | null {
    return this.machine;
  }

  // ---- reading ------------------------------------------------------------------------------

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves at the next progress (records applied, or the lock released), or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.listeners.add(done);
    });
  }

  private remember<V>(map: Map<number, V>, key: number, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > OUTCOMES_KEPT_MAX) {
      for (const k of map.keys()) {
        if (this.watched.has(k)) continue;
        map.delete(k);
        break;
      }
    }
  }

  private applyRecord(m: ShardMachine, r: LogRecord): QueueRecord | null {
    const rec = decodeRecord(r.data);
    if (rec?.type === "push") {
      this.payloads.put(`${this.payloadPrefix}${r.seqnum}`, rec.messages, r.data.byteLength);
    }
    const effects: Effect[] = m.apply(r.seqnum, rec);
    for (const e of effects) {
      if (e.type === "pop") this.remember(this.outcomes, e.popSeq, e.outcome);
      else if (e.type === "receipts") this.remember(this.receiptOutcomes, e.recordSeq, e.accepted);
    }
    return rec;
  }

  /**
   * A state to start from: an aux checkpoint near `before` (unless `durableOnly`), else the
   * durable checkpoint before it, else empty.
   */
  private async load(
    log: LogBook,
    before: number | null,
    durableOnly: boolean,
  ): Promise<ShardMachine> {
    this.stats.loads++;
    let cursor = before === null ? Number.MAX_SAFE_INTEGER : before - 1;
    for (let i = 0; !durableOnly && i < AUX_WALK_BACK_RECORDS_MAX && cursor >= 0; i++) {
      const r = await log.readPrev(this.shardTag, cursor);
      this.stats.reads++;
      if (r === null) break;
      if (r.auxData !== null) {
        const s = parseSnapshot(utf8Decoder.decode(r.auxData));
        if (s !== undefined && s.lastSeq === r.seqnum) return ShardMachine.restore(this.config, s);
      }
      cursor = r.seqnum - 1;
    }
    let c = before === null ? null : await log.readPrev(this.checkpointTag, before - 1);
    c ??= await log.checkTail(this.checkpointTag);
    this.stats.reads += before === null ? 1 : 2;
    if (c !== null) {
      const rec = decodeRecord(c.data);
      const s = rec?.type === "checkpoint" ? parseSnapshot(rec.stateJson) : undefined;
      if (s === undefined) {
        throw new QueueError(
          "DATA_LOST",
          `the queue's checkpoint record ${c.seqnum} does not parse; the shard cannot be replayed`,
        );
      }
      return ShardMachine.restore(this.config, s);
    }
    return new ShardMachine(this.config);
  }

  /**
   * The shard's next records from `from` on, as many as one round of reads finds: the API
   * reads one record per call, and each call from a function's worker thread is a message
   * to the log's thread, so the calls for seqnums `from`, `from + 1`, ... go out together
   * (one message) and the answers are chained: record r is followed by the answer for
   * r + 1, so the chain has no holes whatever the records of other tags in between. `k`
   * calls go out (at least one).
   */
  private async readChain(log: LogBook, from: number, k: number): Promise<LogRecord[]> {
    const answers =
      k <= 1
        ? [await log.readNext(this.shardTag, from)]
        : await Promise.all(
            Array.from({ length: k }, (_, i) => log.readNext(this.shardTag, from + i)),
          );
    this.stats.reads += answers.length;
    const chain: LogRecord[] = [];
    for (let r = answers[0] ?? null; r !== null;) {
      chain.push(r);
      const i = r.seqnum + 1 - from;
      r = i < answers.length ? (answers[i] ?? null) : null;
    }
    return chain;
  }

  /**
   * Reads the shard's next records without applying them, for the catch-up that follows
   * (a pop calls it while its own record is being appended, so the two overlap). Records
   * read before a catch-up starts are covered by its check for trims like its own reads.
   */
  async prefetch(log: LogBook): Promise<void> {
    const m = this.machine;
    if (m === null || this.prefetching || this.lock.locked) return;
    this.prefetching = true;
    try {
      const from = m.lastSeq;
      const chain = await this.readChain(log, from + 1, this.readAhead);
      if (chain.length > 0) this.prefetched = { from, chain };
    } finally {
      this.prefetching = false;
    }
  }

  /** The prefetched records that follow `lastSeq` without a hole, if any (taken once). */
  private takePrefetched(lastSeq: number): LogRecord[] | undefined {
    const p = this.prefetched;
    if (p === null) return undefined;
    this.prefetched = null;
    if (p.from === lastSeq) return p.chain;
    // The state moved on meanwhile: the chain still fits if it contains the new position.
    const i = p.chain.findIndex((r) => r.seqnum === lastSeq);
    return i < 0 || i === p.chain.length - 1 ? undefined : p.chain.slice(i + 1);
  }

  /** The largest record a call of this process is waiting for. */
  private wantedMax(): number {
    let max = -1;
    for (const s of this.watched) if (s > max) max = s;
    return max;
  }

  /**
   * Reads and applies the shard's records up to `target` at least (the lock must be held),
   * and on to what other calls of this process wait for, within `EXTRA_RECORDS_MAX` more.
   * `before`: the record a fresh state should start before (a pop's own record), if any.
   *
   * Records the reader has not applied may be trimmed under it (by another process that
   * checkpointed further on): after applying anything, it checks that the record its state
   * started from is still there. If it is, no trim reached past it before any of the reads;
   * if not, it starts over from the durable checkpoint.
   */
  private async catchUp(
    log: LogBook,
    target: number,
    before: number | null,
  ): Promise<ShardMachine> {
    let durableOnly = false;
    for (let restart = 0; ; restart++) {
      this.machine ??= await this.load(log, before, durableOnly);
      const m = this.machine;
      const start = m.lastSeq;
      let first = -1;
      let reads = 0;
      let extra = 0;
      for (;;) {
        let goal = target;
        if (m.lastSeq >= target) {
          const wanted = this.wantedMax();
          if (m.lastSeq >= wanted || extra >= EXTRA_RECORDS_MAX) break;
          goal = Math.min(wanted, m.lastSeq + EXTRA_RECORDS_MAX - extra);
        }
        const batch =
          this.takePrefetched(m.lastSeq) ??
          (await this.readChain(
            log,
            m.lastSeq + 1,
            Math.max(1, Math.min(goal - m.lastSeq, READ_AHEAD_MAX)),
          ));
        if (batch.length === 0) break;
        for (const r of batch) {
          if (first < 0) first = r.seqnum;
          this.applyRecord(m, r);
          if (r.seqnum > target) extra++;
        }
        reads += batch.length;
        if (reads > CATCH_UP_RECORDS_MAX) {
          throw new QueueError(
            "CATCH_UP_LIMIT",
            `catching up on the shard read ${CATCH_UP_RECORDS_MAX} records without reaching record ${target}; call again to go on`,
          );
        }
      }
      // A prefetch asks for about twice what a catch-up found lately.
      this.readAhead = Math.max(2, Math.min(READ_AHEAD_MAX, 2 * reads));
      if (reads === 0) return m;
      const check =
        start >= 0
          ? await log.readPrev(this.shardTag, start)
          : await log.readNext(this.shardTag, 0);
      this.stats.reads++;
      if (check !== null && check.seqnum === (start >= 0 ? start : first)) return m;
      this.stats.restarts++;
      this.machine = null;
      durableOnly = true;
      if (restart >= CATCH_UP_RESTARTS_MAX) {
        throw new QueueError(
          "DATA_LOST",
          `the shard was trimmed under its reader ${CATCH_UP_RESTARTS_MAX + 1} times in a row`,
        );
      }
    }
  }

  /** Catches up to the shard's tail as of now (lock held). */
  private async catchUpToTail(log: LogBook): Promise<ShardMachine> {
    const tail = await log.checkTail(this.shardTag);
    this.stats.reads++;
    const m = await this.catchUp(log, tail?.seqnum ?? -1, null);
    this.lastCaughtUpAt = this.clock();
    return m;
  }

  /** Runs `fn` holding the lock, with the state caught up to `target` (or the tail). */
  async withState<T>(
    log: LogBook,
    what: string,
    target: number | "tail",
    fn: (m: ShardMachine) => Promise<T> | T,
  ): Promise<T> {
    await this.lock.acquire(LOCK_WAIT_MS_MAX, what);
    try {
      const m =
        target === "tail" ? await this.catchUpToTail(log) : await this.catchUp(log, target, null);
      return await fn(m);
    } finally {
      this.lock.release();
      this.notify();
    }
  }

  /** Catches up to the tail if no other call is reading and the state is older than `maxAgeMs`. */
  async refreshIfIdle(log: LogBook, maxAgeMs: number): Promise<ShardMachine | null> {
    if (this.clock() - this.lastCaughtUpAt < maxAgeMs || !this.lock.tryAcquire()) {
      return this.machine;
    }
    try {
      return await this.catchUpToTail(log);
    } finally {
      this.lock.release();
      this.notify();
    }
  }

  /**
   * Appends a record of this shard. With `watch`, its outcome is kept until `unwatch` (the
   * seqnum is registered as soon as the append returns, before any other call can read far
   * enough past the record to forget it).
   */
  async append(
    log: LogBook,
    rec: QueueRecord,
    options: { extraTags?: readonly Tag[]; watch?: boolean } = {},
  ): Promise<number> {
    this.stats.appends++;
    const tags =
      options.extraTags === undefined ? [this.shardTag] : [this.shardTag, ...options.extraTags];
    const seq = await log.append(tags, encodeRecord(rec));
    if (options.watch === true) this.watched.add(seq);
    return seq;
  }

  /**
   * Pushes messages as one push record, coalesced with the pushes of other calls of this
   * process: while a push of the shard is being appended, later pushes gather into the
   * next record, appended (through the LogBook of the first call in it) as soon as one in
   * flight completes. No push waits for a timer; under load, one append carries many. A
   * call's messages stay together in one record. Resolves to the record and the index of
   * the call's first message in it.
   */
  push(
    log: LogBook,
    messages: readonly PushMessage[],
    coalesce: boolean,
  ): Promise<{ seq: number; first: number }> {
    const bytes = pushRecordBytes(messages.map((m) => m.data.byteLength));
    if (!coalesce || this.pushesInFlight === 0) return this.appendPush(log, messages, bytes);
    let b = this.pushOpen;
    if (
      b !== null &&
      (b.messages.length + messages.length > PUSH_BATCH_MESSAGES_MAX ||
        b.bytes + bytes > PUSH_RECORD_BYTES_MAX)
    ) {
      this.flushPushes(); // full: off it goes, the rest start the next one
      b = null;
    }
    if (b === null) {
      b = { log, messages: [], bytes: pushRecordBytes([]), waiters: [] };
      this.pushOpen = b;
    }
    const first = b.messages.length;
    b.messages.push(...messages);
    b.bytes += bytes - pushRecordBytes([]);
    const batch = b;
    return new Promise((resolve, reject) => {
      batch.waiters.push({ first, resolve, reject });
    });
  }

  private async appendPush(
    log: LogBook,
    messages: readonly PushMessage[],
    bytes: number,
  ): Promise<{ seq: number; first: number }> {
    invariant(bytes <= PUSH_RECORD_BYTES_MAX, "push record over its limit");
    this.pushesInFlight++;
    try {
      const seq = await this.append(log, { type: "push", at: this.clock(), messages });
      return { seq, first: 0 };
    } finally {
      this.pushesInFlight--;
      this.flushPushes();
    }
  }

  private flushPushes(): void {
    const b = this.pushOpen;
    if (b === null) return;
    this.pushOpen = null;
    this.appendPush(b.log, b.messages, b.bytes).then(
      ({ seq }) => {
        for (const w of b.waiters) w.resolve({ seq, first: w.first });
      },
      (err: unknown) => {
        for (const w of b.waiters) w.reject(err);
      },
    );
  }

  unwatch(seq: number): void {
    this.watched.delete(seq);
  }

  /** The receipts' outcome of an applied record with receipts (a watched one), or undefined. */
  receiptsAt(seq: number): readonly boolean[] | undefined {
    return this.receiptOutcomes.get(seq);
  }

  /** The outcome of a (watched) ack, nack or extend record, catching up as needed. */
  async receiptsOf(log: LogBook, recordSeq: number, what: string): Promise<readonly boolean[]> {
    try {
      const known = this.receiptOutcomes.get(recordSeq);
      if (known !== undefined) return known;
      return await this.withState(log, what, recordSeq, (m) => {
        invariant(
          m.lastSeq >= recordSeq,
          () => `record ${recordSeq} not visible to its own caller`,
        );
        const r = this.receiptOutcomes.get(recordSeq);
        if (r === undefined) {
          // The state started after the record (from a checkpoint): its outcome is not known.
          throw new QueueError(
            "DATA_LOST",
            `the outcome of record ${recordSeq} is not known: this process's state of the shard starts after it`,
          );
        }
        return r;
      });
    } finally {
      this.unwatch(recordSeq);
    }
  }

  private outcomeOf(popSeq: number): PopOutcome | undefined {
    const o = this.outcomes.get(popSeq);
    if (o !== undefined) return o;
    const m = this.machine;
    if (m === null || m.lastSeq < popSeq) return undefined;
    // The state started after the pop (a checkpoint), or the outcome was forgotten.
    if (m.isWaiting(popSeq)) return { status: "waiting" };
    const d = m.inFlightOf(popSeq);
    return d.length > 0 ? { status: "delivered", at: m.now, deliveries: d } : { status: "empty" };
  }

  /**
   * Waits for pop `popSeq`'s outcome until `waitEnd` (local clock); a pop still waiting then is
   * cancelled (a cancel record), and its outcome is final once that record is applied. One
   * waiting call of the process blocks on the shard's next record (without the lock); the
   * others wait for the progress it brings.
   */
  async awaitPop(log: LogBook, popSeq: number, waitEnd: number): Promise<PopOutcome> {
    try {
      return await this.waitForPop(log, popSeq, waitEnd);
    } finally {
      this.unwatch(popSeq);
    }
  }

  private async waitForPop(log: LogBook, popSeq: number, waitEnd: number): Promise<PopOutcome> {
    this.ownPops.add(popSeq);
    if (this.ownPops.size > OUTCOMES_KEPT_MAX) {
      for (const k of this.ownPops) {
        this.ownPops.delete(k);
        break;
      }
    }
    let cancelSeq = -1;
    /** A record arrived since the last catch-up of this call. */
    let staleUntil = -1;
    const giveUpAt = Math.max(waitEnd, this.clock()) + LOCK_WAIT_MS_MAX;
    for (;;) {
      const o = this.outcomeOf(popSeq);
      if (o !== undefined && o.status !== "waiting") return o;
      invariant(
        cancelSeq < 0 || this.machine === null || this.machine.lastSeq < cancelSeq,
        () => `pop ${popSeq} still waits after its cancel ${cancelSeq} was applied`,
      );
      if (this.clock() > giveUpAt) {
        throw new QueueError(
          "TIMEOUT",
          `pop: no outcome ${LOCK_WAIT_MS_MAX} ms after its wait ended (another call of this process kept the shard busy)`,
        );
      }
      if (o !== undefined && cancelSeq < 0 && this.clock() >= waitEnd) {
        cancelSeq = await this.append(log, { type: "cancel", at: this.clock(), popSeq });
        continue;
      }
      const m = this.machine;
      // Behind the pop (or its cancel): catch up, unless another call is doing so already.
      const target = Math.max(popSeq, cancelSeq, staleUntil);
      if (m === null || m.lastSeq < target) {
        if (this.lock.tryAcquire()) {
          try {
            const caught = await this.catchUp(log, target, popSeq);
            invariant(
              caught.lastSeq >= popSeq,
              () => `pop ${popSeq} not visible to its own caller`,
            );
            const now = this.outcomeOf(popSeq);
            if (now !== undefined && now.status !== "waiting") await this.duties(log, caught);
          } finally {
            this.lock.release();
            this.notify();
          }
        } else {
          await this.changed(Math.min(giveUpAt - this.clock(), BLOCKING_SLICE_MS_MAX));
        }
        continue;
      }
      // Waiting, caught up: block on the next record, or let the call already blocking do it.
      if (this.blocking) {
        await this.changed(Math.min(waitEnd - this.clock(), BLOCKING_SLICE_MS_MAX));
        continue;
      }
      this.blocking = true;
      try {
        // Wake up in time to move log time past the earliest deadline of a delivery, so
        // that a message coming back reaches the waiting pops.
        let slice = Math.min(waitEnd - this.clock(), BLOCKING_SLICE_MS_MAX);
        const tickAt = m.nextDeadline();
        if (tickAt !== null) slice = Math.min(slice, tickAt - this.clock());
        const r = await log.readNextBlocking(
          this.shardTag,
          m.lastSeq + 1,
          Math.max(1, Math.ceil(slice)),
        );
        this.stats.reads++;
        if (r !== null) staleUntil = Math.max(staleUntil, r.seqnum);
        else if (tickAt !== null && this.clock() >= tickAt && m.now < tickAt) {
          const tick = await this.append(log, { type: "tick", at: this.clock() });
          staleUntil = Math.max(staleUntil, tick);
        }
      } finally {
        this.blocking = false;
        this.notify();
      }
    }
  }

  // ---- duties -------------------------------------------------------------------------------

  /** Checkpoints and dead-letter copies the machine assigned to this process's pops. */
  private async duties(log: LogBook, m: ShardMachine): Promise<void> {
    const aux = m.auxDuePop;
    if (aux !== null && aux !== this.lastAuxFor && this.ownPops.has(aux)) {
      this.lastAuxFor = aux;
      const bytes = utf8.encode(JSON.stringify(m.snapshot()));
      if (bytes.byteLength <= AUX_CHECKPOINT_BYTES_MAX) {
        try {
          await log.setAuxData(m.lastSeq, bytes);
          this.stats.auxCheckpoints++;
        } catch (err) {
          // Best effort by design: a record trimmed meanwhile keeps no aux data.
          if ((err as { code?: unknown }).code !== "NOT_FOUND") throw err;
        }
      }
    }
    const due = m.checkpointDuePop;
    if (due !== null && due !== this.lastCheckpointFor && this.ownPops.has(due)) {
      this.lastCheckpointFor = due;
      await this.checkpoint(log, m);
    }
    if (this.deadLetters !== null) await this.copyDeadLetters(log, m);
  }

  private async checkpoint(log: LogBook, m: ShardMachine): Promise<void> {
    const asOf = m.lastSeq;
    // Keep record `asOf` itself, so that a reader starting from this checkpoint can verify
    // that nothing after it was trimmed.
    const trimBelow = Math.max(m.trimBelow, Math.min(m.lowWater(), asOf));
    const stateJson = JSON.stringify(m.snapshot());
    if (
      stateJson.length * 3 > CHECKPOINT_BYTES_MAX &&
      utf8.encode(stateJson).byteLength > CHECKPOINT_BYTES_MAX
    ) {
      return; // too many unfinished messages to checkpoint; the next owner tries again
    }
    const previous = m.lastCheckpointSeq;
    await this.append(
      log,
      { type: "checkpoint", at: this.clock(), asOf, trimBelow, stateJson },
      { extraTags: [this.checkpointTag] },
    );
    this.stats.checkpoints++;
    if (trimBelow > m.trimBelow) {
      await log.trim(this.shardTag, trimBelow);
      this.stats.trims++;
    }
    // Keep the previous checkpoint too: a pop started before this one starts from it.
    if (previous > 0) {
      await log.trim(this.checkpointTag, previous);
      this.stats.trims++;
    }
  }

  private async copyDeadLetters(log: LogBook, m: ShardMachine): Promise<void> {
    const due: { letter: DeadLetter; message: PushMessage }[] = [];
    for (const letter of m.deadLetters()) {
      if (due.length >= DEAD_LETTERS_PER_CATCH_UP_MAX) break;
      const key = `${letter.seq}:${letter.idx}`;
      if (this.copying.has(key)) continue;
      if (!this.ownPops.has(letter.popSeq) && m.now < letter.markedAt + DEAD_LETTER_GRACE_MS)
        continue;
      const messages = await this.messagesOf(log, letter.seq);
      const message = messages[letter.idx];
      if (message === undefined) {
        throw new QueueError("DATA_LOST", `push record ${letter.seq} has no message ${letter.idx}`);
      }
      due.push({ letter, message });
    }
    if (due.length === 0) return;
    for (const d of due) this.copying.add(`${d.letter.seq}:${d.letter.idx}`);
    try {
      await this.deadLetters!.copy(log, this.shard, due);
      const elements: ElementRef[] = due.map((d) => ({ seq: d.letter.seq, idx: d.letter.idx }));
      await this.append(log, { type: "dead-done", at: this.clock(), elements });
    } finally {
      for (const d of due) this.copying.delete(`${d.letter.seq}:${d.letter.idx}`);
    }
  }

  // ---- payloads -----------------------------------------------------------------------------

  /** The messages of push record `seq`: from the payload cache, else read from the log. */
  async messagesOf(log: LogBook, seq: number): Promise<readonly PushMessage[]> {
    const cached = this.payloads.get(`${this.payloadPrefix}${seq}`);
    if (cached !== undefined) return cached;
    const r = await log.readNext(this.shardTag, seq);
    this.stats.reads++;
    const rec = r !== null && r.seqnum === seq ? decodeRecord(r.data) : null;
    if (rec?.type !== "push") {
      throw new QueueError(
        "DATA_LOST",
        `push record ${seq} of the shard is gone from the log (trimmed or lost) while a message of it is unfinished`,
      );
    }
    this.payloads.put(`${this.payloadPrefix}${seq}`, rec.messages, r!.data.byteLength);
    return rec.messages;
  }
}
