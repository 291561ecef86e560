/**
 * The store over a LogBook: objects as replays of their records, checkpoints in aux data,
 * transactions decided by the log. The protocol decisions live in pure modules (ops.ts,
 * records.ts, decider.ts); this file only moves records between them and the log.
 */
import {
  InvalidArgumentError,
  TAG_ALL,
  type JsonValue,
  type LogBook,
  type LogRecord,
  type SeqNum,
  type Tag,
} from "../index.js";
import { StoreCache } from "./cache.js";
import { CommitDecider, toDeciderRecord, type Decision } from "./decider.js";
import {
  OpFailedError,
  ReadLimitError,
  ReadOnlyTransactionError,
  TransactionClosedError,
  TransactionConflictError,
  TransactionTooLargeError,
} from "./errors.js";
import type { FollowerState } from "./follower.js";
import {
  CHECKPOINT_BYTES_MAX,
  FOLLOW_READS_PER_SYNC_MAX,
  CHECKPOINT_WALK_MIN,
  DECISIONS_PENDING_MAX,
  OBJECT_NAME_CHARS_MAX,
  OBJECTS_READ_PER_TRANSACTION_MAX,
  OBJECTS_WRITTEN_PER_TRANSACTION_MAX,
  OPS_PER_RECORD_MAX,
  RECORDS_WALKED_MAX_DEFAULT,
  REPLAY_BYTES_MAX_DEFAULT,
  TRANSACTION_RETRIES_DEFAULT,
  TRANSACTION_RETRIES_MAX,
} from "./limits.js";
import {
  applyOps,
  cloneJson,
  getIn,
  parsePath,
  toJson,
  type Op,
  type OpResult,
  type PathLike,
} from "./ops.js";
import {
  BEGIN_RECORD,
  STREAM_TAG,
  TXN_TAG,
  decodeCheckpoint,
  decodeRecord,
  encodeCheckpoint,
  encodeCommit,
  encodeWrite,
  opsFor,
  type Checkpoint,
  type CommitInfo,
  type Isolation,
  type StoreRecord,
} from "./records.js";
import { backoffMs } from "./retry.js";

export interface StoreOptions {
  /**
   * Where views, decisions and tags are remembered. Default: a cache of this store alone.
   * Share one (e.g. a module-level `new StoreCache()`) among stores over the same log.
   */
  readonly cache?: StoreCache;
  /** Isolation of transactions that do not say (default "serializable"). */
  readonly isolation?: Isolation;
  /** Most records one read or commit decision may walk (default `RECORDS_WALKED_MAX_DEFAULT`). */
  readonly recordsWalkedMax?: number;
  /** Most record bytes one read may hold while walking back (default `REPLAY_BYTES_MAX_DEFAULT`). */
  readonly replayBytesMax?: number;
  /** Write checkpoints into aux data (default true; false only to measure what they save). */
  readonly checkpoints?: boolean;
  /**
   * Follow the store's records forward in the cache (default true), so that values the
   * cache holds are read without asking the log for each object, and commits are decided
   * without reading the log. false: every read walks the object's own sub-stream.
   */
  readonly follow?: boolean;
}

export interface TransactionOptions {
  /** "serializable" (default) or "snapshot". */
  readonly isolation?: Isolation;
  /** Reads at a snapshot and appends nothing. */
  readonly readOnly?: boolean;
  /**
   * Where a read-write transaction's snapshot comes from: "begin-record" (default) appends a
   * begin record and uses its seqnum; "tail" uses the store's newest record instead, as a
   * read-only transaction does, which saves one append (and its sync) per transaction. Both
   * give the same guarantees: the snapshot includes every write acknowledged before `begin`.
   */
  readonly snapshot?: "begin-record" | "tail";
}

export interface RunTransactionOptions extends TransactionOptions {
  /** Retries after a conflict (default `TRANSACTION_RETRIES_DEFAULT`, at most `TRANSACTION_RETRIES_MAX`). */
  readonly retries?: number;
  /** Randomness for the backoff's jitter (default Math.random). */
  readonly random?: () => number;
  /** How to wait between attempts (default a timer). */
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface PushOptions {
  /** Keep at most this many elements: the oldest are dropped. */
  readonly max?: number;
}

/** Counters of one store's work, for tests and profiles. */
export interface StoreStats {
  reads: number;
  recordsWalked: number;
  checkpointHits: number;
  checkpointsWritten: number;
  checkpointWriteFailures: number;
  decisions: number;
  appends: number;
  followReads: number;
}

/** The value of an object as of a record. */
interface View {
  /** The newest record of the object's sub-stream at or before the read point, or -1. */
  readonly seqnum: number;
  readonly value: JsonValue | undefined;
}

/** Several operations on one object, sent as one record: all apply, or none. */
export class Batch {
  /** @internal */
  readonly ops: Op[] = [];

  set(path: PathLike, value: unknown): this {
    this.ops.push({ t: "set", p: parsePath(path), v: toJson(value) });
    return this;
  }
  delete(path: PathLike): this {
    this.ops.push({ t: "delete", p: parsePath(path) });
    return this;
  }
  add(path: PathLike, delta: number): this {
    this.ops.push({ t: "add", p: parsePath(path), n: checkDelta(delta) });
    return this;
  }
  push(path: PathLike, value: unknown, options: PushOptions = {}): this {
    this.ops.push(pushOp(path, value, options));
    return this;
  }
  pop(path: PathLike): this {
    this.ops.push({ t: "pop", p: parsePath(path) });
    return this;
  }
}

function checkName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > OBJECT_NAME_CHARS_MAX) {
    throw new InvalidArgumentError(
      `an object name is a string of 1 to ${OBJECT_NAME_CHARS_MAX} characters`,
    );
  }
  return name;
}

function checkDelta(delta: unknown): number {
  if (typeof delta !== "number" || !Number.isFinite(delta)) {
    throw new InvalidArgumentError(`add needs a finite number, got ${String(delta)}`);
  }
  return delta;
}

function pushOp(path: PathLike, value: unknown, options: PushOptions): Op {
  const max = options.max;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 1)) {
    throw new InvalidArgumentError(`push: max must be a positive integer, got ${String(max)}`);
  }
  const op: Op =
    max === undefined
      ? { t: "push", p: parsePath(path), v: toJson(value) }
      : { t: "push", p: parsePath(path), v: toJson(value), max };
  return op;
}

function buildBatch(build: (b: Batch) => void): Op[] {
  const b = new Batch();
  build(b);
  if (b.ops.length === 0) throw new InvalidArgumentError("update needs at least one operation");
  if (b.ops.length > OPS_PER_RECORD_MAX) {
    throw new InvalidArgumentError(
      `update has ${b.ops.length} operations; the limit is ${OPS_PER_RECORD_MAX}`,
    );
  }
  return b.ops;
}

function jsonBytes(value: JsonValue | undefined): number {
  return value === undefined ? 8 : JSON.stringify(value).length;
}

/**
 * Whether a record's operations on an object replace it whatever it was: they start by
 * setting (or deleting) the whole object, so they apply the same way to every value, and
 * they succeed. (If they fail, they fail on every value, and the record changes nothing.)
 */
function selfContained(ops: readonly Op[]): boolean {
  const first = ops[0];
  if (first === undefined || first.p.length !== 0 || (first.t !== "set" && first.t !== "delete"))
    return false;
  return ops.length === 1 || applyOps(undefined, ops).ok;
}

const defaultSleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

export class Store {
  readonly cache: StoreCache;
  readonly isolation: Isolation;
  readonly stats: StoreStats = {
    reads: 0,
    recordsWalked: 0,
    checkpointHits: 0,
    checkpointsWritten: 0,
    checkpointWriteFailures: 0,
    decisions: 0,
    appends: 0,
    followReads: 0,
  };
  private readonly recordsWalkedMax: number;
  private readonly replayBytesMax: number;
  private readonly checkpoints: boolean;
  private readonly follow: boolean;
  private readonly pendingCheckpoints = new Set<Promise<void>>();
  private readonly book: number;

  constructor(
    readonly log: LogBook,
    options: StoreOptions = {},
  ) {
    this.cache = options.cache ?? new StoreCache();
    this.isolation = checkIsolation(options.isolation ?? "serializable");
    this.recordsWalkedMax = positive(
      options.recordsWalkedMax,
      RECORDS_WALKED_MAX_DEFAULT,
      "recordsWalkedMax",
    );
    this.replayBytesMax = positive(
      options.replayBytesMax,
      REPLAY_BYTES_MAX_DEFAULT,
      "replayBytesMax",
    );
    this.checkpoints = options.checkpoints ?? true;
    this.follow = options.follow ?? true;
    this.book = log.book;
  }

  /** A handle on one object. */
  object(name: string): StoreObject {
    return new StoreObject(this, checkName(name));
  }

  /** The value at `path` of object `name` as of the log's tail (undefined if none). */
  async get(name: string, path?: PathLike): Promise<JsonValue | undefined> {
    const p = parsePath(path);
    checkName(name);
    const view = this.follow
      ? await this.readAt(name, await this.syncTail())
      : await this.readObject(name, "tail");
    return cloneJson(getIn(view.value, p));
  }

  /** Sets the value at `path` (creating missing objects on the way); returns the old value. */
  async set(name: string, path: PathLike, value: unknown): Promise<JsonValue | undefined> {
    return (
      await this.write(checkName(name), [{ t: "set", p: parsePath(path), v: toJson(value) }])
    )[0];
  }

  /** Deletes the value at `path` (nothing if it is not there); returns the deleted value. */
  async delete(name: string, path?: PathLike): Promise<JsonValue | undefined> {
    return (await this.write(checkName(name), [{ t: "delete", p: parsePath(path) }]))[0];
  }

  /** Adds `delta` to the number at `path` (missing counts as 0); returns the old number. */
  async add(name: string, path: PathLike, delta: number): Promise<number> {
    const r = await this.write(checkName(name), [
      { t: "add", p: parsePath(path), n: checkDelta(delta) },
    ]);
    return r[0] as number;
  }

  /** Appends to the array at `path` (created if missing), keeping at most `max`; returns the new length. */
  async push(
    name: string,
    path: PathLike,
    value: unknown,
    options: PushOptions = {},
  ): Promise<number> {
    return (await this.write(checkName(name), [pushOp(path, value, options)]))[0] as number;
  }

  /** Removes and returns the last element of the array at `path` (undefined if empty or missing). */
  async pop(name: string, path: PathLike): Promise<JsonValue | undefined> {
    return (await this.write(checkName(name), [{ t: "pop", p: parsePath(path) }]))[0];
  }

  /** Several operations on one object as one record; returns each one's result. */
  async update(name: string, build: (b: Batch) => void): Promise<OpResult[]> {
    return this.write(checkName(name), buildBatch(build));
  }

  /**
   * Starts a transaction. A read-write one appends a begin record, whose seqnum is its
   * snapshot; a read-only one reads at the log's tail and appends nothing.
   */
  async begin(options: TransactionOptions = {}): Promise<Transaction> {
    const isolation = checkIsolation(options.isolation ?? this.isolation);
    const readOnly = options.readOnly ?? false;
    let snapshot: number;
    if (readOnly) {
      if (this.follow) snapshot = await this.syncTail();
      else {
        const tail = await this.log.checkTail(TAG_ALL);
        snapshot = tail === null ? -1 : tail.seqnum;
      }
    } else if (options.snapshot === "tail" && this.follow) {
      snapshot = await this.syncTail();
    } else if (options.snapshot === "tail") {
      const tail = await this.log.checkTail(TAG_ALL);
      snapshot = tail === null ? -1 : tail.seqnum;
    } else {
      if (options.snapshot !== undefined && options.snapshot !== "begin-record") {
        throw new InvalidArgumentError(
          `snapshot is "begin-record" or "tail", got ${String(options.snapshot)}`,
        );
      }
      this.stats.appends++;
      snapshot = await this.log.append([TXN_TAG], BEGIN_RECORD);
      if (this.follow) await this.syncTo(snapshot);
    }
    return new Transaction(this, snapshot, isolation, readOnly);
  }

  /**
   * Runs `fn` in a transaction and commits it; after a conflict, runs it again (with
   * backoff) up to `retries` times, then throws the last `TransactionConflictError`. Any
   * other error from `fn` aborts the transaction and is thrown at once.
   */
  async transaction<T>(
    fn: (tx: Transaction) => Promise<T> | T,
    options: RunTransactionOptions = {},
  ): Promise<T> {
    const retries = options.retries ?? TRANSACTION_RETRIES_DEFAULT;
    if (!Number.isSafeInteger(retries) || retries < 0 || retries > TRANSACTION_RETRIES_MAX) {
      throw new InvalidArgumentError(
        `retries must be an integer in [0, ${TRANSACTION_RETRIES_MAX}], got ${String(retries)}`,
      );
    }
    const random = options.random ?? Math.random;
    const sleep = options.sleep ?? defaultSleep;
    for (let attempt = 1; ; attempt++) {
      const tx = await this.begin(options);
      try {
        const out = await fn(tx);
        await tx.commit();
        return out;
      } catch (err) {
        tx.abort();
        if (!(err instanceof TransactionConflictError)) throw err;
        if (attempt > retries) throw err.withAttempts(attempt);
        await sleep(backoffMs(attempt, random));
      }
    }
  }

  /** Waits for the checkpoints this store is still writing (they are best effort anyway). */
  async flush(): Promise<void> {
    while (this.pendingCheckpoints.size > 0) await Promise.all([...this.pendingCheckpoints]);
  }

  // ---- internals: one object's replay ---------------------------------------------------

  /** Appends one object's operations as one record and returns their results. */
  private async write(name: string, ops: Op[]): Promise<OpResult[]> {
    const tag = this.cache.tag(name);
    this.stats.appends++;
    const data = encodeWrite(name, ops);
    const seqnum = (await this.log.append([tag, STREAM_TAG], data)) as number;
    if (this.follow) await this.syncTo(seqnum - 1);
    const before = await this.readAt(name, seqnum - 1);
    const r = applyOps(before.value, ops);
    const value = r.ok ? r.doc : before.value;
    this.cache.putView(this.book, name, seqnum, value, jsonBytes(value));
    if (!selfContained(ops)) this.checkpoint(seqnum, undefined, undefined, [[name, value]]);
    if (this.follow) await this.feedOwn(seqnum, [tag, STREAM_TAG], data);
    if (!r.ok) throw new OpFailedError(r.reason, name, r.index, r.detail);
    return r.results.map((x) => cloneJson(x));
  }

  // ---- internals: the follower ---------------------------------------------------------

  /** The store's newest record, with the follower caught up to it; -1 for none. */
  private async syncTail(): Promise<number> {
    this.cache.stats.logReads.tail++;
    const tail = await this.log.checkTail(STREAM_TAG);
    const t = tail === null ? -1 : (tail.seqnum as number);
    await this.syncTo(t);
    return t;
  }

  /**
   * Brings the book's follower up to `target` (a seqnum this store has seen, so every record
   * up to it is readable). Catch-ups run one at a time per book, each with its own store's
   * log; one that is already far enough returns at once.
   */
  /** @internal */
  syncTo(target: number): Promise<void> {
    const f = this.cache.follower(this.book, target);
    if (f.state.position >= target) return Promise.resolve();
    const run = f.queue.then(() => this.catchUp(f.state, target));
    f.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Feeds this store's own record to the follower when it is the next one (the follower is
   * right before it), saving the log read a catch-up would make for it.
   */
  private feedOwn(seqnum: number, tags: readonly Tag[], data: string): Promise<void> {
    const f = this.cache.follower(this.book, seqnum - 1);
    const run = f.queue.then(async () => {
      await this.catchUp(f.state, seqnum - 1);
      if (f.state.position !== seqnum - 1) return;
      const r: LogRecord = {
        seqnum: seqnum as SeqNum,
        book: this.log.book,
        tags,
        data: Buffer.from(data, "utf8"),
        auxData: null,
      };
      await this.feed(f.state, r);
    });
    f.queue = run.catch(() => undefined);
    return run;
  }

  private async catchUp(st: FollowerState, target: number): Promise<void> {
    for (let reads = 0; st.position < target; reads++) {
      if (reads >= FOLLOW_READS_PER_SYNC_MAX) {
        // Too far behind: start afresh at the target rather than read everything up to it.
        st.reset(target);
        this.cache.stats.followerResets++;
        return;
      }
      this.stats.followReads++;
      this.cache.stats.logReads.follow++;
      const r = await this.log.readNext(STREAM_TAG, st.position + 1);
      if (r === null || (r.seqnum as number) > target) {
        // Nothing more up to the target (the record after it is left for a later catch-up).
        st.advanceTo(target);
        return;
      }
      await this.feed(st, r);
    }
  }

  /** Feeds one record to the follower, and keeps the values it changes current in the cache. */
  private async feed(st: FollowerState, r: LogRecord): Promise<void> {
    const rec = decodeRecord(r);
    const seqnum = r.seqnum as number;
    // Values vouched for just before the record, to carry forward through it.
    const before = new Map<string, JsonValue | undefined>();
    const written =
      rec.kind === "write" ? [rec.object] : rec.kind === "commit" ? rec.info.writes : [];
    for (const o of written) {
      const v = this.cache.vouchedView(this.book, o, st.position);
      if (v !== undefined) before.set(o, v.value);
    }
    let known: boolean | undefined;
    if (rec.kind === "commit") {
      known = decodeCheckpoint(r.auxData).decision ?? this.cache.decision(this.book, seqnum);
    }
    let step = st.apply(rec, known);
    if (step.kind === "needs-decision") {
      const d = await this.decide(step.info);
      step = st.apply(rec, d.committed);
    }
    if (step.kind !== "applied") return;
    if (step.decision !== undefined && known === undefined) {
      this.cache.putDecision(
        this.book,
        seqnum,
        step.conflict === undefined
          ? { committed: step.decision }
          : { committed: step.decision, conflict: step.conflict },
      );
    }
    for (const o of step.objects) {
      if (!before.has(o)) continue;
      const ops = opsFor(rec, o);
      if (ops === undefined) continue;
      const applied = applyOps(before.get(o), ops);
      const value = applied.ok ? applied.doc : before.get(o);
      this.cache.putView(this.book, o, seqnum, value, jsonBytes(value), seqnum);
    }
  }

  /** The decision of this store's own commit record: from the follower, else the log. */
  /** @internal */
  async decideOwn(info: CommitInfo, tags: readonly Tag[], data: string): Promise<Decision> {
    if (this.follow) {
      await this.feedOwn(info.seqnum, tags, data);
      const d = this.cache.decisionInfo(this.book, info.seqnum);
      if (d !== undefined) return { seqnum: info.seqnum, ...d };
    }
    const d = await this.decide(info);
    this.cache.putDecision(
      this.book,
      info.seqnum,
      d.conflict === undefined
        ? { committed: d.committed }
        : { committed: d.committed, conflict: d.conflict },
    );
    return d;
  }

  /** The value of `name` at seqnum `at`: from the cache if the follower vouches for it, else the log. */
  /** @internal */
  async readAt(name: string, at: number): Promise<View> {
    if (at < 0) return { seqnum: -1, value: undefined };
    if (this.follow) {
      const v = this.cache.vouchedView(this.book, name, at);
      if (v !== undefined) return v;
    }
    return this.readObject(name, at);
  }

  /**
   * The value of `name` as of `at` (a seqnum, or the tail): walks back the object's
   * sub-stream to the nearest view (cached, or a checkpoint in aux data), then replays
   * the records after it, deciding commit records on the way.
   */
  /** @internal */
  async readObject(name: string, at: number | "tail"): Promise<View> {
    this.stats.reads++;
    if (at !== "tail" && at < 0) return { seqnum: -1, value: undefined };
    const tag = this.cache.tag(name);
    let r: LogRecord | null =
      at === "tail" ? await this.log.checkTail(tag) : await this.log.readPrev(tag, at);
    this.cache.stats.logReads.walk++;
    if (r === null) return { seqnum: -1, value: undefined };
    const top = r.seqnum as number;
    /** Where the value read is known current: the read's point (for the tail, its record). */
    const confirmed = at === "tail" ? top : at;
    let topRecord: StoreRecord | undefined;
    /** The top record's checkpoint, when it was decoded (not a cache hit). */
    let topCheckpoint: Checkpoint | undefined;
    /** The top record's decision, when this read had to work it out. */
    let topDecision: boolean | undefined;
    /** Records to replay, newest first: their operations on the object, if they apply. */
    const stack: (readonly Op[])[] = [];
    let base: JsonValue | undefined;
    let baseAtTop = false;
    let walked = 0;
    let bytes = 0;
    const what = (): string => `reading object ${JSON.stringify(name)}`;
    while (r !== null) {
      walked++;
      this.stats.recordsWalked++;
      bytes += r.data.byteLength + (r.auxData?.byteLength ?? 0);
      if (walked > this.recordsWalkedMax) {
        throw new ReadLimitError("recordsWalkedMax", this.recordsWalkedMax, what());
      }
      if (bytes > this.replayBytesMax) {
        throw new ReadLimitError("replayBytesMax", this.replayBytesMax, what());
      }
      const seq = r.seqnum as number;
      const hit = this.cache.view(this.book, name, seq);
      if (hit !== undefined) {
        base = hit.value;
        baseAtTop = seq === top;
        // Now known current at the read's point too: the follower can vouch for it from here on.
        if (baseAtTop) this.cache.putView(this.book, name, top, base, 0, confirmed);
        break;
      }
      const cp = decodeCheckpoint(r.auxData);
      const rec = decodeRecord(r);
      if (seq === top) {
        topCheckpoint = cp;
        topRecord = rec;
      }
      if (cp.views.has(name)) {
        this.stats.checkpointHits++;
        base = cp.views.get(name);
        baseAtTop = seq === top;
        if (baseAtTop) this.cache.putView(this.book, name, top, base, jsonBytes(base), confirmed);
        break;
      }
      const ops = opsFor(rec, name);
      if (ops !== undefined) {
        let applies = true;
        if (rec.kind === "commit") {
          applies = await this.decisionOf(rec.info, cp, seq !== top);
          if (seq === top && cp.decision === undefined) topDecision = applies;
        }
        if (applies) {
          stack.push(ops);
          // A record that starts by replacing the whole object does not depend on what came before.
          if (selfContained(ops)) break;
        }
      }
      if (seq === 0) break;
      this.cache.stats.logReads.walk++;
      r = await this.log.readPrev(tag, seq - 1);
    }
    if (baseAtTop) return { seqnum: top, value: base };
    let value = base;
    for (let i = stack.length - 1; i >= 0; i--) {
      const applied = applyOps(value, stack[i]!);
      if (applied.ok) value = applied.doc;
    }
    this.cache.putView(this.book, name, top, value, jsonBytes(value), confirmed);
    if (topCheckpoint !== undefined && topRecord !== undefined) {
      // A view in a record's aux data travels with every read of the record, for every object
      // it writes: so only one-object write records carry one always; a record of several
      // objects gets one only when it saves a long walk. A self-contained record needs none.
      const own = opsFor(topRecord, name);
      const wantView =
        !(own !== undefined && selfContained(own)) &&
        (topRecord.kind === "write" || walked >= CHECKPOINT_WALK_MIN);
      if (wantView || topDecision !== undefined) {
        this.checkpoint(top, topCheckpoint, topDecision, wantView ? [[name, value]] : []);
      }
    }
    return { seqnum: top, value };
  }

  /** A commit record's decision, from its checkpoint `cp` or the log; `writeBack` records it there. */
  private async decisionOf(info: CommitInfo, cp: Checkpoint, writeBack: boolean): Promise<boolean> {
    if (cp.decision !== undefined) return cp.decision;
    const d = await this.decide(info);
    if (writeBack) this.checkpoint(info.seqnum, cp, d.committed, []);
    return d.committed;
  }

  /** Drives a `CommitDecider` over the log: its reads run in parallel. */
  /** @internal */
  decide(info: CommitInfo): Promise<Decision> {
    this.stats.decisions++;
    return new Promise<Decision>((resolve, reject) => {
      const m = new CommitDecider(info, {
        recordsWalkedMax: this.recordsWalkedMax,
        decisionsPendingMax: DECISIONS_PENDING_MAX,
        known: (s) => this.cache.decision(this.book, s),
      });
      const seen = new Map<number, Checkpoint>();
      let over = false;
      const handle = (out: ReturnType<CommitDecider["start"]>): void => {
        if (over) return;
        for (const d of out.decided) {
          this.cache.putDecision(
            this.book,
            d.seqnum,
            d.conflict === undefined
              ? { committed: d.committed }
              : { committed: d.committed, conflict: d.conflict },
          );
          const cp = seen.get(d.seqnum);
          if (cp !== undefined && d.seqnum !== info.seqnum)
            this.checkpoint(d.seqnum, cp, d.committed, []);
        }
        if (out.failed !== undefined) {
          over = true;
          reject(
            new ReadLimitError(
              out.failed.limit,
              out.failed.value,
              `deciding commit record ${info.seqnum}`,
            ),
          );
          return;
        }
        if (out.done !== undefined) {
          over = true;
          resolve(out.done);
          return;
        }
        for (const q of out.reads) {
          this.stats.recordsWalked++;
          this.cache.stats.logReads.decide++;
          this.log.readNext(this.cache.tag(q.object), q.fromSeqnum).then(
            (rec) => {
              if (over) return;
              let dr = null;
              if (rec !== null) {
                const cp = decodeCheckpoint(rec.auxData);
                const sr = decodeRecord(rec);
                if (sr.kind === "commit") seen.set(sr.seqnum, cp);
                dr = toDeciderRecord(sr, cp);
              }
              handle(m.onRead(q.id, dr));
            },
            (err: unknown) => {
              if (over) return;
              over = true;
              reject(err instanceof Error ? err : new Error(String(err)));
            },
          );
        }
      };
      handle(m.start());
    });
  }

  /** Writes a checkpoint into a record's aux data, merged with what it had; best effort. */
  /** @internal */
  checkpoint(
    seqnum: number,
    had: Checkpoint | undefined,
    decision: boolean | undefined,
    views: ReadonlyArray<readonly [string, JsonValue | undefined]>,
  ): void {
    if (!this.checkpoints) return;
    const merged = new Map<string, JsonValue | undefined>(views);
    if (had !== undefined) for (const [k, v] of had.views) if (!merged.has(k)) merged.set(k, v);
    const text = encodeCheckpoint(
      { decision: decision ?? had?.decision, views: merged },
      CHECKPOINT_BYTES_MAX,
    );
    if (text === undefined) return;
    this.stats.checkpointsWritten++;
    const p: Promise<void> = this.log.setAuxData(seqnum, text).then(
      () => {
        this.pendingCheckpoints.delete(p);
      },
      () => {
        // A checkpoint is a cache: losing it costs a longer walk later, never a wrong read.
        this.stats.checkpointWriteFailures++;
        this.pendingCheckpoints.delete(p);
      },
    );
    this.pendingCheckpoints.add(p);
  }
}

function positive(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new InvalidArgumentError(`${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

function checkIsolation(i: unknown): Isolation {
  if (i !== "serializable" && i !== "snapshot") {
    throw new InvalidArgumentError(`isolation is "serializable" or "snapshot", got ${String(i)}`);
  }
  return i;
}

/** A handle on one object of a store: the store's operations with the name bound. */
export class StoreObject {
  constructor(
    private readonly store: Store,
    readonly name: string,
  ) {}
  get(path?: PathLike): Promise<JsonValue | undefined> {
    return this.store.get(this.name, path);
  }
  set(path: PathLike, value: unknown): Promise<JsonValue | undefined> {
    return this.store.set(this.name, path, value);
  }
  delete(path?: PathLike): Promise<JsonValue | undefined> {
    return this.store.delete(this.name, path);
  }
  add(path: PathLike, delta: number): Promise<number> {
    return this.store.add(this.name, path, delta);
  }
  push(path: PathLike, value: unknown, options?: PushOptions): Promise<number> {
    return this.store.push(this.name, path, value, options);
  }
  pop(path: PathLike): Promise<JsonValue | undefined> {
    return this.store.pop(this.name, path);
  }
  update(build: (b: Batch) => void): Promise<OpResult[]> {
    return this.store.update(this.name, build);
  }
}

interface TxObject {
  readonly loaded: Promise<void>;
  base: JsonValue | undefined;
  view: JsonValue | undefined;
  ops: Op[];
}

export interface CommitResult {
  /** The commit record, or undefined when nothing was written (nothing was appended). */
  readonly seqnum: number | undefined;
}

/**
 * A transaction: reads at its snapshot, writes buffered (and visible to its own reads)
 * until `commit` appends them as one commit record, which every reader then decides the
 * same way. See docs/store.md for what each isolation level guarantees.
 */
export class Transaction {
  private state: "open" | "committing" | "committed" | "aborted" = "open";
  private readonly objects = new Map<string, TxObject>();
  private readonly written: string[] = [];

  /** @internal */
  constructor(
    private readonly store: Store,
    /** The snapshot: reads see the log up to this seqnum (-1: an empty book). */
    readonly snapshot: number,
    readonly isolation: Isolation,
    readonly readOnly: boolean,
  ) {}

  get status(): "open" | "committing" | "committed" | "aborted" {
    return this.state;
  }

  private checkOpen(): void {
    if (this.state !== "open") throw new TransactionClosedError(this.state);
  }

  private load(name: string): TxObject {
    let o = this.objects.get(name);
    if (o === undefined) {
      if (this.objects.size >= OBJECTS_READ_PER_TRANSACTION_MAX) {
        throw new TransactionTooLargeError("read", OBJECTS_READ_PER_TRANSACTION_MAX);
      }
      const entry: TxObject = {
        loaded: this.store.readAt(name, this.snapshot).then((v) => {
          entry.base = v.value;
          entry.view = v.value;
        }),
        base: undefined,
        view: undefined,
        ops: [],
      };
      o = entry;
      this.objects.set(name, o);
    }
    return o;
  }

  /** The value at `path` of object `name` as this transaction sees it. */
  async get(name: string, path?: PathLike): Promise<JsonValue | undefined> {
    this.checkOpen();
    const p = parsePath(path);
    const o = this.load(checkName(name));
    await o.loaded;
    return cloneJson(getIn(o.view, p));
  }

  async set(name: string, path: PathLike, value: unknown): Promise<JsonValue | undefined> {
    return (await this.write(name, [{ t: "set", p: parsePath(path), v: toJson(value) }]))[0];
  }
  async delete(name: string, path?: PathLike): Promise<JsonValue | undefined> {
    return (await this.write(name, [{ t: "delete", p: parsePath(path) }]))[0];
  }
  async add(name: string, path: PathLike, delta: number): Promise<number> {
    return (
      await this.write(name, [{ t: "add", p: parsePath(path), n: checkDelta(delta) }])
    )[0] as number;
  }
  async push(
    name: string,
    path: PathLike,
    value: unknown,
    options: PushOptions = {},
  ): Promise<number> {
    return (await this.write(name, [pushOp(path, value, options)]))[0] as number;
  }
  async pop(name: string, path: PathLike): Promise<JsonValue | undefined> {
    return (await this.write(name, [{ t: "pop", p: parsePath(path) }]))[0];
  }
  async update(name: string, build: (b: Batch) => void): Promise<OpResult[]> {
    return this.write(name, buildBatch(build));
  }

  /** A handle on one object within this transaction. */
  object(name: string): TransactionObject {
    return new TransactionObject(this, checkName(name));
  }

  private async write(name: string, ops: Op[]): Promise<OpResult[]> {
    this.checkOpen();
    if (this.readOnly) throw new ReadOnlyTransactionError();
    checkName(name);
    const o = this.load(name);
    await o.loaded;
    this.checkOpen();
    if (o.ops.length === 0 && !this.written.includes(name)) {
      if (this.written.length >= OBJECTS_WRITTEN_PER_TRANSACTION_MAX) {
        throw new TransactionTooLargeError("write", OBJECTS_WRITTEN_PER_TRANSACTION_MAX);
      }
    }
    if (o.ops.length + ops.length > OPS_PER_RECORD_MAX) {
      throw new InvalidArgumentError(
        `a transaction may apply at most ${OPS_PER_RECORD_MAX} operations to one object`,
      );
    }
    const r = applyOps(o.view, ops);
    if (!r.ok) throw new OpFailedError(r.reason, name, r.index, r.detail);
    o.view = r.doc;
    o.ops.push(...ops);
    if (!this.written.includes(name)) this.written.push(name);
    return r.results.map((x) => cloneJson(x));
  }

  /**
   * Commits: appends the commit record and decides it from the log. Resolves once it
   * committed; throws `TransactionConflictError` (retryable) when it aborted.
   */
  async commit(): Promise<CommitResult> {
    this.checkOpen();
    this.state = "committing";
    try {
      await Promise.all([...this.objects.values()].map((o) => o.loaded));
    } catch (err) {
      this.state = "aborted";
      throw err;
    }
    if (this.readOnly || this.written.length === 0) {
      this.state = "committed";
      return { seqnum: undefined };
    }
    const writes = new Map<string, readonly Op[]>();
    for (const name of this.written) writes.set(name, this.objects.get(name)!.ops);
    const reads =
      this.isolation === "serializable"
        ? [...this.objects.keys()].filter((n) => !writes.has(n))
        : [];
    const store = this.store;
    const tags = [...this.written.map((n) => store.cache.tag(n)), STREAM_TAG];
    const record = encodeCommit(this.snapshot, this.isolation, writes, reads);
    let seqnum: number;
    try {
      store.stats.appends++;
      seqnum = await store.log.append(tags, record.data);
    } catch (err) {
      this.state = "aborted";
      throw err;
    }
    const info: CommitInfo = {
      seqnum,
      snapshot: this.snapshot,
      writes: this.written,
      checks: record.checks,
    };
    const d = await store.decideOwn(info, tags, record.data);
    const book = store.log.book as number;
    if (!d.committed) {
      this.state = "aborted";
      store.checkpoint(seqnum, undefined, false, []);
      throw new TransactionConflictError({
        object: d.conflict?.object,
        conflictSeqnum: d.conflict?.seqnum,
        commitSeqnum: seqnum,
      });
    }
    // Committed: no write to these objects came between the snapshot and the commit, so
    // their values at the commit record are this transaction's own views. They go to the
    // cache only: in the record's aux data they would travel with every read of each of
    // them (see readObject); the decision is enough there.
    for (const name of this.written) {
      const v = this.objects.get(name)!.view;
      store.cache.putView(book, name, seqnum, v, jsonBytes(v), seqnum);
    }
    store.checkpoint(seqnum, undefined, true, []);
    this.state = "committed";
    return { seqnum };
  }

  /** Drops the buffered writes; nothing is appended. Harmless after commit or abort. */
  abort(): void {
    if (this.state === "open") this.state = "aborted";
  }
}

/** A handle on one object within a transaction. */
export class TransactionObject {
  constructor(
    private readonly tx: Transaction,
    readonly name: string,
  ) {}
  get(path?: PathLike): Promise<JsonValue | undefined> {
    return this.tx.get(this.name, path);
  }
  set(path: PathLike, value: unknown): Promise<JsonValue | undefined> {
    return this.tx.set(this.name, path, value);
  }
  delete(path?: PathLike): Promise<JsonValue | undefined> {
    return this.tx.delete(this.name, path);
  }
  add(path: PathLike, delta: number): Promise<number> {
    return this.tx.add(this.name, path, delta);
  }
  push(path: PathLike, value: unknown, options?: PushOptions): Promise<number> {
    return this.tx.push(this.name, path, value, options);
  }
  pop(path: PathLike): Promise<JsonValue | undefined> {
    return this.tx.pop(this.name, path);
  }
  update(build: (b: Batch) => void): Promise<OpResult[]> {
    return this.tx.update(this.name, build);
  }
}

/** Opens a store over a LogBook (e.g. `ctx.log` in a function). Cheap: no I/O. */
export function openStore(log: LogBook, options: StoreOptions = {}): Store {
  return new Store(log, options);
}
