/**
 * The LogBook engine of a function node. It appends to its own shard of every physical log
 * (records get local ids and go to the shard's storage replicas), applies committed
 * metalog entries to its log index, caches records, and serves reads under the rule that
 * a read is answered only by an index that has applied the reader's metalog position.
 *
 * The engine trusts its arguments: the LogBook layer above validates them.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import type {
  ClientReplyMsg,
  ClientRequestMsg,
  InvokeReplyMsg,
  InvokeRequestMsg,
  IndexQueryMsg,
  IndexQueryOp,
  Message,
} from "../protocol/messages.js";
import type { NodeId, Transport } from "../transport/transport.js";
import type { Logger } from "../util/logger.js";
import { parseBookId, parseTag, SEQNUM_MAX } from "../log/types.js";
import type { BookId, MetalogPosition, SeqNum, ShardId, Tag } from "../log/types.js";
import { MetalogState, type AppliedEntry, type MetalogEntry, type Span } from "../log/metalog.js";
import { LogIndex } from "../log/log-index.js";
import { RecordCache } from "../log/cache.js";
import {
  decodeMeta,
  encodeRecord,
  isPayloadDropped,
  payloadOf,
  RecordKind,
  type LogRecord,
  type RecordMeta,
} from "../log/record.js";
import { logOfBook } from "../log/mapping.js";
import type { View } from "../log/view.js";
import {
  APPEND_TIMEOUT_MS,
  APPENDS_IN_FLIGHT_MAX,
  BLOCKING_READ_TIMEOUT_MS_MAX,
  CACHE_BYTES_DEFAULT,
  READ_CATCH_UP_TIMEOUT_MS,
  READS_WAITING_MAX,
  REPLICATE_BATCH_BYTES_MAX,
  REPLICATE_BATCH_RECORDS_MAX,
  REPLICATE_BATCHES_IN_FLIGHT_MAX,
  STORAGE_READ_TIMEOUT_MS,
} from "../log/limits.js";
import {
  AppendDiscardedError,
  BokiError,
  errorFromWire,
  InvalidArgumentError,
  CondAppendFailedError,
  DataLostError,
  LogClosedError,
  NotFoundError,
  OverloadedError,
  TimeoutError,
} from "../log/errors.js";
import { invariant } from "../log/assert.js";

/** Most index headers of other engines' shards buffered ahead of the metalog, per log. */
export const FOREIGN_HEADERS_MAX = 1_000_000;
/** Most metalog entries kept waiting for an earlier, missing one. */
export const EARLY_ENTRIES_MAX = 4096;
/** Reconfigurations in a row an append is carried over before it fails with APPEND_DISCARDED. */
export const DISCARDED_RETRIES_MAX = 3;
/** How long a storage read waits for one replica before asking the next. */
export const STORAGE_READ_TRY_MS = 500;
/**
 * How long an index query waits for an answer (beyond a blocking read's own wait) before it
 * is sent to the next engine that may index the log.
 */
export const INDEX_QUERY_TRY_MS = 1_000;
/** Reads of one record that storage finds trimmed before the reader's index has seen the trim. */
export const TRIMMED_READ_ATTEMPTS_MAX = 5;

/** Storage dropped the record's payload (it was trimmed); `answeredAt` is the read's position. */
class PayloadDroppedError extends Error {
  constructor(
    readonly seqnum: number,
    readonly answeredAt: number,
  ) {
    super(`the payload of the record with seqnum ${seqnum} was dropped by a trim`);
  }
}

/** The shard of an engine the view gives no place: no record is in it. */
const NO_SHARD = -1 as ShardId;
/** Most failed conditional appends an index remembers for remote `cond` queries. */
export const COND_FAILURES_REMEMBERED_MAX = 65_536;
/** How often the engine checks deadlines and retries missing index data. */
export const SWEEP_INTERVAL_MS = 20;
/** How long missing index data or metalog entries are waited for before asking again. */
export const REFETCH_AFTER_MS = 200;
/**
 * How long an append may stay unordered before its records are sent to the shard's
 * replicas again (a replica may have missed them: delivery is best effort).
 */
export const RESEND_AFTER_MS = 200;

export interface EngineOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  readonly view: View;
  readonly logger: Logger;
  readonly cacheBytes?: number;
  readonly appendTimeoutMs?: number;
  /**
   * Called for every append this engine saw ordered, with where its time went (clock
   * milliseconds): `heldMs` from the call until its batch left for the storage nodes,
   * `orderingMs` from then until the metalog ordered it. For metrics; costs two clock
   * readings per append, and none when absent.
   */
  readonly onAppendStages?: (heldMs: number, orderingMs: number) => void;
}

export interface AppendResult {
  readonly seqnum: SeqNum;
  readonly position: MetalogPosition;
}

export interface ReadResult {
  readonly record: LogRecord | null;
  readonly position: MetalogPosition;
}

interface PendingAppend {
  readonly meta: RecordMeta;
  /** The encoded record, kept until it is ordered so that it can be sent again. */
  readonly encoded: Uint8Array;
  deadline: number;
  /** Times a reconfiguration discarded it and it was appended again. */
  discarded: number;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
  settled: boolean;
  /** With `onAppendStages`: when the append was called, and when its record was first sent (-1: not yet). */
  acceptedAt: number;
  sentAt: number;
}

interface WaitingRead {
  readonly position: number;
  readonly deadline: number;
  readonly resume: () => void;
  readonly reject: (e: Error) => void;
}

interface BlockingRead {
  readonly book: BookId;
  readonly tag: Tag;
  readonly min: SeqNum;
  readonly timer: TimerHandle;
  readonly done: (seqnum: SeqNum | null) => void;
  readonly fail: (e: Error) => void;
}

/** A query sent to an index replica of a log this engine does not index. */
interface RemoteQuery {
  readonly deadline: number;
  readonly resolve: (a: QueryAnswer) => void;
  readonly reject: (e: Error) => void;
  readonly st: LogState;
  readonly msg: IndexQueryMsg;
  /** When the current engine was asked, and how many asks so far. */
  askedAt: number;
  asks: number;
  /** How long an ask may go unanswered before the next engine is asked. */
  readonly tryMs: number;
}

/** What an index answers: a sequence number (or none), its position, and for `cond` the failure. */
interface QueryAnswer {
  readonly seqnum: SeqNum | null;
  readonly position: number;
  readonly failedAt: number | null;
}

interface IndexQuery {
  readonly op: IndexQueryOp;
  readonly book: BookId;
  readonly tag: Tag;
  readonly seqnum: SeqNum;
  readonly timeoutMs: number;
}

interface StorageRead {
  readonly seqnum: SeqNum;
  readonly replicas: NodeId[];
  /** Index in `replicas` of the replica asked last. */
  asked: number;
  /** Replicas that answered they do not have the record. */
  readonly missing: Set<NodeId>;
  deadline: number;
  /** When the current replica was asked; after STORAGE_READ_TRY_MS the next one is. */
  askedAt: number;
  readonly resolve: (r: LogRecord) => void;
  readonly reject: (e: Error) => void;
  readonly st: LogState;
}

interface ForeignShard {
  base: number;
  head: number;
  headers: Uint8Array[];
  requestedAt: number;
  /** Fetches sent for this shard, to rotate over its replicas. */
  asks: number;
}

interface LogState {
  readonly log: number;
  readonly metalog: MetalogState;
  index: LogIndex;
  readonly cache: RecordCache;
  shard: ShardId;
  replicas: NodeId[];
  nextLocal: number;
  /**
   * A later term is in force and this engine's shard of the sealed term is closed: the
   * metalog position where the sealed term ends, and the shard the engine appends to next
   * (null when the engine has no place in the new term). Records still unordered once the
   * index reaches `end` were discarded and are appended again in the new shard.
   */
  switching: { readonly end: number; readonly next: ShardId | null } | null;
  /** Own appends not yet applied; `pending[pendingHead]` has local id `pendingBase`. */
  pending: PendingAppend[];
  pendingHead: number;
  pendingBase: number;
  outgoing: Uint8Array[];
  outgoingBytes: number;
  outgoingFirst: number;
  batchDeadline: number;
  lastResendAt: number;
  flushScheduled: boolean;
  /** End (exclusive local id) of each replicate batch sent whose records are not all ordered. */
  inFlightEnds: number[];
  /** A flush found `REPLICATE_BATCHES_IN_FLIGHT_MAX` batches unordered and left records waiting. */
  flushHeld: boolean;
  /** Entries applied to the metalog but not yet to the index (waiting for index data). */
  queue: AppliedEntry[];
  queueHead: number;
  early: Map<number, MetalogEntry>;
  foreign: Map<number, ForeignShard>;
  /** Committed metalog length the sequencer last told of; reads wait for at least the startup tail. */
  knownTail: number;
  startupTail: number;
  synced: boolean;
  fetchingMetalogAt: number;
  /**
   * Shard ends reported by the shard's storage replicas at start. Until every replica has
   * answered, appends are queued but not sent: a restarted engine continues its shard after
   * the last record any replica holds, so no local id is given to two records.
   */
  shardEnds: Map<NodeId, number> | null;
  shardEndAskedAt: number;
  /** Local id of this run's first record in its shard; records below it are an earlier run's. */
  runBase: number;
  waiting: WaitingRead[];
  blocking: Set<BlockingRead>;
  /**
   * Whether this engine keeps an index of the log; if not, it asks `indexEngines`. An engine
   * keeps indexing a log once it has begun (a later view may name other engines).
   */
  indexed: boolean;
  indexEngines: readonly NodeId[];
  /** Recent failed conditional appends (seqnum → sub-stream position found), for remote `cond` queries. */
  readonly condFailures: Map<number, number>;
}

export class Engine {
  readonly id: NodeId;
  private readonly logs: LogState[] = [];
  private readonly storageReads = new Map<number, StorageRead>();
  private readonly remoteQueries = new Map<number, RemoteQuery>();
  private nextReadId = 1;
  private sweepTimer: TimerHandle | null = null;
  private closed = false;
  private readonly appendTimeoutMs: number;
  private readonly syncWaiters: Array<() => void> = [];
  private clientHandler: ((m: ClientRequestMsg) => Promise<ClientReplyMsg>) | null = null;

  /** Serves LogBook operations sent by clients over the transport (see `client-service.ts`). */
  setClientHandler(handler: (m: ClientRequestMsg) => Promise<ClientReplyMsg>): void {
    this.clientHandler = handler;
  }

  private invokeHandler: ((m: InvokeRequestMsg) => Promise<InvokeReplyMsg>) | null = null;

  /** Whether functions are being loaded (invocations meanwhile are refused as UNAVAILABLE). */
  private functionsLoading = false;

  /** Runs functions for gateways and clients (see `src/runtime/engine-service.ts`). */
  setInvokeHandler(handler: (m: InvokeRequestMsg) => Promise<InvokeReplyMsg>): void {
    this.invokeHandler = handler;
    this.functionsLoading = false;
  }

  /**
   * Says that this engine is loading its functions: until `setInvokeHandler` (or
   * `functionsLoaded(false)`), invocations get UNAVAILABLE, which callers retry, rather than
   * NOT_FOUND, which says the engine runs none.
   */
  functionsLoaded(loaded: boolean): void {
    this.functionsLoading = !loaded && this.invokeHandler === null;
  }

  private view: View;
  /** Whether the view in force gives this engine a shard to append to. */
  private placed = true;
  /** Storage nodes of the view in force; replicas outside it are asked last. */
  private liveStorages: ReadonlySet<NodeId>;

  constructor(private readonly o: EngineOptions) {
    this.id = o.transport.self;
    this.view = o.view;
    this.liveStorages = new Set(o.view.config.storages);
    this.appendTimeoutMs = o.appendTimeoutMs ?? APPEND_TIMEOUT_MS;
    const n = o.view.config.physicalLogs;
    const cacheBytes = Math.floor((o.cacheBytes ?? CACHE_BYTES_DEFAULT) / n);
    if (!o.view.config.engines.includes(this.id))
      throw new InvalidArgumentError(`engine ${this.id} has no place in term ${o.view.term}`);
    const shard = o.view.shardOf(this.id);
    for (let log = 0; log < n; log++) {
      this.logs.push({
        log,
        metalog: new MetalogState(log),
        index: new LogIndex(),
        cache: new RecordCache(cacheBytes),
        shard,
        replicas: o.view.replicasOf(shard),
        nextLocal: 0,
        pending: [],
        inFlightEnds: [],
        flushHeld: false,
        pendingHead: 0,
        pendingBase: 0,
        outgoing: [],
        outgoingBytes: 0,
        outgoingFirst: 0,
        batchDeadline: 0,
        lastResendAt: -Infinity,
        flushScheduled: false,
        queue: [],
        queueHead: 0,
        early: new Map(),
        foreign: new Map(),
        knownTail: 0,
        startupTail: -1,
        synced: false,
        fetchingMetalogAt: -Infinity,
        shardEnds: new Map(),
        shardEndAskedAt: -Infinity,
        runBase: Infinity,
        switching: null,
        waiting: [],
        blocking: new Set(),
        indexed: o.view.indexEnginesOf(log).includes(this.id),
        indexEngines: o.view.indexEnginesOf(log),
        condFailures: new Map(),
      });
    }
    o.transport.onMessage((from, m) => this.onMessage(from, m));
  }

  /** Asks every sequencer for the committed metalog; resolves once the index has caught up with it. */
  start(stallTimeoutMs = READ_CATCH_UP_TIMEOUT_MS): Promise<void> {
    for (const st of this.logs) {
      this.fetchMetalog(st);
      this.askShardEnds(st);
    }
    this.ensureSweep();
    // Catching up a long log takes as long as it takes; it fails only when it stops moving.
    const progress = (): number =>
      this.logs.reduce((n, st) => n + st.index.position + st.metalog.position, 0);
    return new Promise((resolve, reject) => {
      let seen = progress();
      let timer: TimerHandle;
      const watch = (): void => {
        const now = progress();
        if (now === seen) {
          reject(
            new TimeoutError(
              `engine ${this.id} made no progress catching up with the metalog for ${stallTimeoutMs} ms`,
            ),
          );
          return;
        }
        seen = now;
        timer = this.o.clock.setTimer(stallTimeoutMs, watch);
      };
      timer = this.o.clock.setTimer(stallTimeoutMs, watch);
      const check = (): void => {
        if (this.logs.every((s) => s.synced)) {
          this.o.clock.clearTimer(timer);
          resolve();
        } else this.syncWaiters.push(check);
      };
      check();
    });
  }

  /** Counters for metrics: appends accepted, and the record caches' hits and misses. */
  stats(): { appends: number; cacheHits: number; cacheMisses: number } {
    let cacheHits = 0;
    let cacheMisses = 0;
    for (const st of this.logs) {
      cacheHits += st.cache.hits;
      cacheMisses += st.cache.misses;
    }
    return { appends: this.appendsAccepted, cacheHits, cacheMisses };
  }

  private appendsAccepted = 0;

  logOf(book: BookId): number {
    return logOfBook(book, this.logs.length);
  }

  /** The engine's metalog position for a book's physical log: a position every later read can be served at. */
  positionOf(book: BookId): MetalogPosition {
    return this.logs[this.logOf(book)]!.index.position;
  }

  get term(): number {
    return this.view.term;
  }

  /**
   * Moves to a later term. The engine's shard of the sealed term takes no more records;
   * once the index has applied the sealed term's final metalog entry, appends it did not
   * order are appended again in the engine's new shard (at most `DISCARDED_RETRIES_MAX`
   * times each, then they fail with APPEND_DISCARDED), so a caller sees a delay, not an error.
   */
  setView(view: View): void {
    if (this.closed || view.term <= this.view.term) return;
    this.view = view;
    this.placed = view.config.engines.includes(this.id);
    this.liveStorages = new Set(view.config.storages);
    const next = this.placed ? view.shardOf(this.id) : null;
    for (const st of this.logs) {
      st.indexEngines = view.indexEnginesOf(st.log);
      if (!st.indexed && st.indexEngines.includes(this.id)) this.startIndexing(st);
      st.switching = { end: view.startOf(st.log), next };
      if (st.metalog.position < st.switching.end) this.fetchMetalog(st);
      this.maybeSwitchShard(st);
    }
    this.ensureSweep();
    this.o.logger.info({ term: view.term }, "engine moved to a new term");
  }

  /**
   * Begins indexing a log this engine has so far left to others (a new view names it as one
   * of the log's index replicas): the index is built again from the metalog's start with
   * record headers fetched from storage, as at an engine's start. Reads of the log on this
   * engine wait until it has caught up; appends in flight are settled by the new index.
   */
  private startIndexing(st: LogState): void {
    this.o.logger.info(
      { log: st.log, position: st.index.position },
      "engine builds an index of the log from storage",
    );
    const applied = st.index.position;
    st.indexed = true;
    st.index = new LogIndex();
    st.foreign.clear();
    // This run's records already ordered are read from storage like any other shard's.
    st.runBase = Math.max(st.runBase, st.pendingBase);
    st.queue = [...st.metalog.appliedBelow(applied), ...st.queue.slice(st.queueHead)];
    st.queueHead = 0;
    this.drain(st);
  }

  /** Switches to the new term's shard once the sealed term's entries are all applied. */
  private maybeSwitchShard(st: LogState): void {
    const sw = st.switching;
    if (sw === null || st.index.position < sw.end) return;
    const leftovers: PendingAppend[] = [];
    for (let i = st.pendingHead; i < st.pending.length; i++) {
      const p = st.pending[i]!;
      if (!p.settled) leftovers.push(p);
    }
    st.switching = null;
    st.pending = [];
    st.pendingHead = 0;
    st.pendingBase = 0;
    st.nextLocal = 0;
    st.outgoing = [];
    st.outgoingBytes = 0;
    st.outgoingFirst = 0;
    st.inFlightEnds = [];
    st.flushHeld = false;
    st.shardEnds = null;
    st.runBase = 0;
    if (sw.next === null) {
      // No shard of its own: every record of the log is another engine's now, including
      // those of the shard it had (an index built later reads them from storage).
      st.shard = NO_SHARD;
      st.replicas = [];
      for (const p of leftovers) {
        p.settled = true;
        p.reject(
          new AppendDiscardedError(
            `engine ${this.id} has no place in term ${this.view.term}; the append was discarded`,
          ),
        );
      }
      return;
    }
    st.shard = sw.next;
    st.replicas = this.view.replicasOf(sw.next);
    if (leftovers.length > 0) {
      this.o.logger.info(
        { log: st.log, count: leftovers.length, term: this.view.term },
        "appends the sealed term did not order go to the new shard",
      );
    }
    const deadline = this.o.clock.now() + this.appendTimeoutMs;
    for (const p of leftovers) {
      p.discarded++;
      if (p.discarded > DISCARDED_RETRIES_MAX) {
        p.settled = true;
        p.reject(
          new AppendDiscardedError(
            `the append was discarded by ${p.discarded} reconfigurations in a row`,
          ),
        );
        continue;
      }
      p.deadline = Math.max(p.deadline, deadline);
      this.enqueue(st, p);
    }
    this.flush(st);
  }

  /** Gives `p` the shard's next local id and queues its record for the next flush. */
  private enqueue(st: LogState, p: PendingAppend): void {
    st.pending.push(p);
    if (st.outgoing.length === 0) st.outgoingFirst = st.nextLocal;
    st.nextLocal++;
    st.outgoing.push(p.encoded);
    st.outgoingBytes += p.encoded.length;
  }

  // ---- appends ------------------------------------------------------------------------

  append(meta: RecordMeta, data: Uint8Array): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new LogClosedError());
    const st = this.logs[this.logOf(meta.book)]!;
    if (!this.placed) {
      return Promise.reject(
        new AppendDiscardedError(`engine ${this.id} has no place in term ${this.view.term}`),
      );
    }
    if (st.pending.length - st.pendingHead >= APPENDS_IN_FLIGHT_MAX) {
      return Promise.reject(
        new OverloadedError(
          `more than ${APPENDS_IN_FLIGHT_MAX} appends in flight on engine ${this.id}`,
        ),
      );
    }
    const encoded = encodeRecord(meta, data);
    this.appendsAccepted++;
    return new Promise<AppendResult>((resolve, reject) => {
      // Appends batched together share one reading of the clock.
      if (st.outgoing.length === 0) st.batchDeadline = this.o.clock.now() + this.appendTimeoutMs;
      this.enqueue(st, {
        meta,
        encoded,
        deadline: st.batchDeadline,
        discarded: 0,
        resolve,
        reject,
        settled: false,
        acceptedAt: this.o.onAppendStages === undefined ? 0 : this.o.clock.now(),
        sentAt: -1,
      });
      if (
        st.outgoing.length >= REPLICATE_BATCH_RECORDS_MAX ||
        st.outgoingBytes >= REPLICATE_BATCH_BYTES_MAX
      ) {
        this.flush(st);
      } else if (!st.flushScheduled) {
        st.flushScheduled = true;
        this.o.clock.afterTurn(() => this.flush(st));
      }
      this.ensureSweep();
    });
  }

  /**
   * Sends the records gathered since the last flush to the shard's replicas, unless
   * `REPLICATE_BATCHES_IN_FLIGHT_MAX` batches sent earlier are still unordered: then the
   * records wait, and go out together once the oldest batch is ordered. Like the
   * sequencer's cuts, batches so grow with the load instead of multiplying.
   */
  private flush(st: LogState): void {
    st.flushScheduled = false;
    if (st.outgoing.length === 0 || st.shardEnds !== null || st.switching !== null) return;
    const ends = st.inFlightEnds;
    while (ends.length > 0 && ends[0]! <= st.pendingBase) ends.shift();
    if (ends.length >= REPLICATE_BATCHES_IN_FLIGHT_MAX) {
      st.flushHeld = true;
      return;
    }
    st.flushHeld = false;
    const records = st.outgoing;
    let first = st.outgoingFirst;
    st.outgoing = [];
    st.outgoingBytes = 0;
    ends.push(first + records.length);
    if (this.o.onAppendStages !== undefined) {
      const now = this.o.clock.now();
      for (let local = first; local < first + records.length; local++) {
        const p = st.pending[st.pendingHead + (local - st.pendingBase)];
        if (p !== undefined && p.sentAt < 0) p.sentAt = now;
      }
    }
    let start = 0;
    while (start < records.length) {
      let end = start;
      let bytes = 0;
      while (
        end < records.length &&
        end - start < REPLICATE_BATCH_RECORDS_MAX &&
        (end === start || bytes + records[end]!.length <= REPLICATE_BATCH_BYTES_MAX)
      )
        bytes += records[end++]!.length;
      const batch = start === 0 && end === records.length ? records : records.slice(start, end);
      const msg: Message = { t: "replicate", log: st.log, shard: st.shard, first, records: batch };
      for (const r of st.replicas) this.o.transport.send(r, msg);
      first += batch.length;
      start = end;
    }
  }

  // ---- reads --------------------------------------------------------------------------

  /**
   * Runs `fn` once the index of the book's log has applied `position` (and the engine has
   * caught up with the metalog as of its start). Returns `fn`'s value directly when no wait
   * is needed, so cache hits stay synchronous.
   */
  private atPosition<T>(st: LogState, position: number, fn: () => T | Promise<T>): T | Promise<T> {
    if (this.closed) return Promise.reject(new LogClosedError());
    if (st.synced && st.index.position >= position) return fn();
    if (st.waiting.length >= READS_WAITING_MAX) {
      return Promise.reject(
        new OverloadedError(`more than ${READS_WAITING_MAX} reads waiting on engine ${this.id}`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      st.waiting.push({
        position,
        deadline: this.o.clock.now() + READ_CATCH_UP_TIMEOUT_MS,
        resume: () => {
          try {
            resolve(fn());
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
        reject,
      });
      this.ensureSweep();
    });
  }

  private withRecord(
    st: LogState,
    seqnum: SeqNum | null,
    position: number = st.index.position,
  ): ReadResult | Promise<ReadResult> {
    const at = position as MetalogPosition;
    if (seqnum === null) return { record: null, position: at };
    const hit = st.cache.get(seqnum);
    if (hit !== undefined) return { record: hit, position: at };
    return this.readFromStorage(st, seqnum).then(
      (record) => ({ record, position: at }),
      (err: unknown) => {
        throw err instanceof PayloadDroppedError ? new PayloadDroppedError(seqnum, at) : err;
      },
    );
  }

  /**
   * Runs a read at `position`, and again at a later position when the record it found turns
   * out to have been trimmed meanwhile: storage had dropped its payload for a trim this
   * read's index had not applied yet. The read at the later position sees the trim.
   */
  private readAgainIfTrimmed(
    st: LogState,
    position: number,
    read: (position: number) => ReadResult | Promise<ReadResult>,
    attempt = 1,
  ): ReadResult | Promise<ReadResult> {
    const r = read(position);
    if (!(r instanceof Promise)) return r;
    return r.catch((err: unknown) => {
      if (!(err instanceof PayloadDroppedError)) throw err;
      if (attempt >= TRIMMED_READ_ATTEMPTS_MAX) {
        throw new DataLostError(
          `the payload of the record with seqnum ${err.seqnum} was dropped, but no trim hides it`,
        );
      }
      const later = Math.max(err.answeredAt + 1, st.knownTail);
      this.o.logger.debug(
        { seqnum: err.seqnum, position: later },
        "a read found a trimmed record; reading again at a later position",
      );
      return this.readAgainIfTrimmed(st, later, read, attempt + 1);
    });
  }

  readNext(
    book: BookId,
    tag: Tag,
    min: SeqNum,
    position: number,
  ): ReadResult | Promise<ReadResult> {
    const st = this.logs[this.logOf(book)]!;
    return this.readAgainIfTrimmed(st, position, (at) =>
      !st.indexed
        ? this.remoteRead(st, { op: "next", book, tag, seqnum: min, timeoutMs: 0 }, at)
        : this.atPosition(st, at, () => this.withRecord(st, st.index.readNext(book, tag, min))),
    );
  }

  readPrev(
    book: BookId,
    tag: Tag,
    max: SeqNum,
    position: number,
  ): ReadResult | Promise<ReadResult> {
    const st = this.logs[this.logOf(book)]!;
    return this.readAgainIfTrimmed(st, position, (at) =>
      !st.indexed
        ? this.remoteRead(st, { op: "prev", book, tag, seqnum: max, timeoutMs: 0 }, at)
        : this.atPosition(st, at, () => this.withRecord(st, st.index.readPrev(book, tag, max))),
    );
  }

  readNextBlocking(
    book: BookId,
    tag: Tag,
    min: SeqNum,
    position: number,
    timeoutMs: number,
  ): Promise<ReadResult> {
    const st = this.logs[this.logOf(book)]!;
    return Promise.resolve(
      this.readAgainIfTrimmed(st, position, (at) =>
        !st.indexed
          ? this.remoteRead(st, { op: "blocking", book, tag, seqnum: min, timeoutMs }, at)
          : this.atPosition(st, at, () =>
              Promise.resolve(this.waitForNext(st, book, tag, min, timeoutMs)).then((seqnum) =>
                this.withRecord(st, seqnum),
              ),
            ),
      ),
    );
  }

  /** The first seqnum ≥ `min` in the sub-stream, waiting up to `timeoutMs` for one to be applied. */
  private waitForNext(
    st: LogState,
    book: BookId,
    tag: Tag,
    min: SeqNum,
    timeoutMs: number,
  ): SeqNum | null | Promise<SeqNum | null> {
    const found = st.index.readNext(book, tag, min);
    if (found !== null || timeoutMs <= 0) return found;
    if (st.blocking.size >= READS_WAITING_MAX) {
      throw new OverloadedError(
        `more than ${READS_WAITING_MAX} blocking reads on engine ${this.id}`,
      );
    }
    return new Promise<SeqNum | null>((resolve, reject) => {
      const b: BlockingRead = {
        book,
        tag,
        min,
        timer: this.o.clock.setTimer(timeoutMs, () => {
          st.blocking.delete(b);
          resolve(null);
        }),
        done: (seqnum) => {
          st.blocking.delete(b);
          this.o.clock.clearTimer(b.timer);
          resolve(seqnum);
        },
        fail: reject,
      };
      st.blocking.add(b);
    });
  }

  /** Answers an index query from this engine's own index (which has applied the query's position). */
  private localQuery(st: LogState, q: IndexQuery): QueryAnswer | Promise<QueryAnswer> {
    const answer = (seqnum: SeqNum | null, failedAt: number | null = null): QueryAnswer => ({
      seqnum,
      position: st.index.position,
      failedAt,
    });
    switch (q.op) {
      case "next":
        return answer(st.index.readNext(q.book, q.tag, q.seqnum));
      case "prev":
        return answer(st.index.readPrev(q.book, q.tag, q.seqnum));
      case "blocking":
        return Promise.resolve(this.waitForNext(st, q.book, q.tag, q.seqnum, q.timeoutMs)).then(
          (s) => answer(s),
        );
      case "cond": {
        const failedAt = st.condFailures.get(q.seqnum);
        return failedAt === undefined ? answer(q.seqnum) : answer(null, failedAt);
      }
    }
  }

  /** Sends a query to an index replica of the log; the answer comes back as an `index-reply`. */
  private remoteQuery(st: LogState, q: IndexQuery, position: number): Promise<QueryAnswer> {
    if (this.closed) return Promise.reject(new LogClosedError());
    if (this.remoteQueries.size >= READS_WAITING_MAX) {
      return Promise.reject(
        new OverloadedError(
          `more than ${READS_WAITING_MAX} remote index queries on engine ${this.id}`,
        ),
      );
    }
    const id = this.nextReadId++;
    return new Promise((resolve, reject) => {
      const msg: IndexQueryMsg = {
        t: "index-query",
        id,
        log: st.log,
        op: q.op,
        book: q.book,
        tag: String(q.tag),
        seqnum: q.seqnum,
        position,
        timeoutMs: q.timeoutMs,
      };
      const r: RemoteQuery = {
        deadline:
          this.o.clock.now() + STORAGE_READ_TIMEOUT_MS + READ_CATCH_UP_TIMEOUT_MS + q.timeoutMs,
        resolve,
        reject,
        st,
        msg,
        askedAt: 0,
        asks: id,
        tryMs: INDEX_QUERY_TRY_MS + q.timeoutMs,
      };
      this.remoteQueries.set(id, r);
      this.askIndex(r);
      this.ensureSweep();
    });
  }

  /**
   * Sends a query to the next engine that may index its log: the view's index replicas in
   * turn, then the view's other engines (an engine keeps an index it once built).
   */
  private askIndex(r: RemoteQuery): void {
    const named = r.st.indexEngines;
    const others = this.view.config.engines.filter((e) => e !== this.id && !named.includes(e));
    const candidates = [...named.filter((e) => e !== this.id), ...others];
    if (candidates.length === 0) return;
    r.askedAt = this.o.clock.now();
    this.o.transport.send(candidates[r.asks++ % candidates.length]!, r.msg);
  }

  /** A read through a remote index; the record comes from this engine's cache or storage. */
  private remoteRead(st: LogState, q: IndexQuery, position: number): Promise<ReadResult> {
    // The record's location needs this engine's metalog at the index's position.
    return this.remoteQuery(st, q, position).then((a) =>
      this.atPosition(st, a.position, () =>
        this.withRecord(st, a.seqnum, Math.max(a.position, position)),
      ),
    );
  }

  private serveIndexQuery(from: NodeId, m: IndexQueryMsg): void {
    const st = this.logs[m.log];
    const reply = (a: QueryAnswer | null, error: { code: string; message: string } | null): void =>
      this.o.transport.send(from, {
        t: "index-reply",
        id: m.id,
        seqnum: a?.seqnum ?? null,
        position: a?.position ?? 0,
        failedAt: a?.failedAt ?? null,
        error,
      });
    if (st === undefined || !st.indexed) {
      reply(null, {
        code: "UNAVAILABLE",
        message: `engine ${this.id} does not index log ${m.log}`,
      });
      return;
    }
    let q: IndexQuery;
    try {
      q = {
        op: m.op,
        book: parseBookId(m.book),
        tag: parseTag(m.tag),
        seqnum: m.seqnum as SeqNum,
        timeoutMs: Math.min(m.timeoutMs, BLOCKING_READ_TIMEOUT_MS_MAX),
      };
    } catch (err) {
      reply(null, {
        code: "INVALID_ARGUMENT",
        message: err instanceof Error ? err.message : String(err),
      });
      return;
    }
    Promise.resolve(this.atPosition(st, m.position, () => this.localQuery(st, q))).then(
      (a) => reply(a, null),
      (err: unknown) =>
        reply(
          null,
          err instanceof BokiError
            ? { code: err.code, message: err.message }
            : { code: "INTERNAL", message: String(err) },
        ),
    );
  }

  /** Attaches aux data to a record of the book. Best effort: it may be lost, and is then recomputed by its users. */
  setAuxData(
    book: BookId,
    seqnum: SeqNum,
    data: Uint8Array,
    position: number,
  ): Promise<MetalogPosition> {
    const st = this.logs[this.logOf(book)]!;
    if (!st.indexed) {
      return this.remoteQuery(
        st,
        { op: "next", book, tag: 0n as Tag, seqnum, timeoutMs: 0 },
        position,
      ).then((a) =>
        this.atPosition(st, a.position, () => {
          if (a.seqnum !== seqnum)
            throw new NotFoundError(`book ${book} has no record with seqnum ${seqnum}`);
          this.attachAux(st, seqnum, data);
          return Math.max(a.position, position) as MetalogPosition;
        }),
      );
    }
    return Promise.resolve(
      this.atPosition(st, position, () => {
        if (st.index.readNext(book, 0n as Tag, seqnum) !== seqnum) {
          throw new NotFoundError(`book ${book} has no record with seqnum ${seqnum}`);
        }
        this.attachAux(st, seqnum, data);
        return st.index.position;
      }),
    );
  }

  /** Puts aux data in this engine's cache, the other engines' caches and the record's storage replicas. */
  private attachAux(st: LogState, seqnum: SeqNum, data: Uint8Array): void {
    const cached = st.cache.peek(seqnum);
    if (cached !== undefined) st.cache.put({ ...cached, auxData: data });
    const loc = st.metalog.locate(seqnum);
    invariant(loc !== null, "an indexed record has a location");
    const msg: Message = { t: "set-aux", log: st.log, seqnum, data };
    for (const r of this.view.replicasOf(loc.shard)) this.o.transport.send(r, msg);
    for (const e of this.view.config.engines) if (e !== this.id) this.o.transport.send(e, msg);
  }

  /** True when the book has a record that is not trimmed, as of `position`. */
  hasLiveRecords(book: BookId, position: number): Promise<boolean> {
    const st = this.logs[this.logOf(book)]!;
    if (!st.indexed) {
      return this.remoteQuery(
        st,
        { op: "prev", book, tag: 0n as Tag, seqnum: SEQNUM_MAX, timeoutMs: 0 },
        position,
      ).then((a) => a.seqnum !== null);
    }
    return Promise.resolve(this.atPosition(st, position, () => st.index.hasLiveRecords(book)));
  }

  private readFromStorage(st: LogState, seqnum: SeqNum): Promise<LogRecord> {
    const loc = st.metalog.locate(seqnum);
    invariant(loc !== null, `indexed seqnum ${seqnum} has no location`);
    return new Promise((resolve, reject) => {
      const id = this.nextReadId++;
      const r: StorageRead = {
        seqnum,
        replicas: this.replicasToAsk(loc.shard),
        asked: 0,
        missing: new Set(),
        deadline: this.o.clock.now() + STORAGE_READ_TIMEOUT_MS,
        askedAt: this.o.clock.now(),
        resolve,
        reject,
        st,
      };
      this.storageReads.set(id, r);
      this.o.transport.send(r.replicas[0]!, { t: "read", id, log: st.log, seqnum });
      this.ensureSweep();
    });
  }

  /**
   * A shard's replicas, those still in the current term first: a replica a reconfiguration
   * left out has likely failed, and asking it first would cost a retry interval per read.
   */
  private replicasToAsk(shard: ShardId): NodeId[] {
    const all = this.view.replicasOf(shard);
    const live = this.liveStorages;
    return [...all.filter((r) => live.has(r)), ...all.filter((r) => !live.has(r))];
  }

  /** Asks the next replica that has not said it lacks the record, under a fresh request id. */
  private askNextReplica(r: StorageRead): void {
    for (let k = 1; k <= r.replicas.length; k++) {
      const i = (r.asked + k) % r.replicas.length;
      if (r.missing.has(r.replicas[i]!)) continue;
      r.asked = i;
      r.askedAt = this.o.clock.now();
      const id = this.nextReadId++;
      this.storageReads.set(id, r);
      this.o.transport.send(r.replicas[i]!, { t: "read", id, log: r.st.log, seqnum: r.seqnum });
      return;
    }
  }

  private askShardEnds(st: LogState): void {
    if (st.shardEnds === null) return;
    st.shardEndAskedAt = this.o.clock.now();
    for (const r of st.replicas) {
      if (!st.shardEnds.has(r))
        this.o.transport.send(r, { t: "shard-end-query", log: st.log, shard: st.shard });
    }
  }

  /** A replica told how much of this engine's shard it holds; once all have, appends flow. */
  private onShardEnd(from: NodeId, log: number, shard: number, end: number): void {
    const st = this.logs[log];
    if (
      st === undefined ||
      st.shardEnds === null ||
      shard !== st.shard ||
      !st.replicas.includes(from)
    )
      return;
    st.shardEnds.set(from, end);
    if (st.shardEnds.size < st.replicas.length) return;
    const base = Math.max(...st.shardEnds.values());
    st.shardEnds = null;
    st.runBase = base;
    if (base > 0) {
      // Records of an earlier run of this engine are there: continue after them. Those no
      // replica acknowledged yet reach every replica through peer fetches and may be ordered.
      this.o.logger.info(
        { log, shard, base },
        "engine continues its shard after records of an earlier run",
      );
      const queued = st.nextLocal - st.pendingBase;
      st.pendingBase = base;
      st.nextLocal = base + queued;
      st.outgoingFirst = st.nextLocal - st.outgoing.length;
    }
    this.flush(st);
  }

  // ---- messages -----------------------------------------------------------------------

  private onMessage(from: NodeId, m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case "metalog":
        return this.onMetalog(m.log, m.entries, m.tail);
      case "index-data":
        return this.onIndexData(m.log, m.shard, m.first, m.headers);
      case "read-reply": {
        const r = this.storageReads.get(m.id);
        if (r === undefined) return;
        this.storageReads.delete(m.id);
        if (m.record === null) {
          r.missing.add(from);
          if (r.missing.size >= r.replicas.length) {
            r.reject(
              new DataLostError(`no storage replica has the record with seqnum ${r.seqnum}`),
            );
            return;
          }
          this.askNextReplica(r);
          return;
        }
        if (isPayloadDropped(m.record)) {
          r.reject(new PayloadDroppedError(r.seqnum, 0));
          return;
        }
        const meta = decodeMeta(m.record);
        const record: LogRecord = {
          seqnum: r.seqnum,
          book: meta.book,
          tags: meta.tags,
          data: payloadOf(m.record),
          auxData: m.aux,
        };
        r.st.cache.put(record);
        r.resolve(record);
        return;
      }
      case "index-query":
        return this.serveIndexQuery(from, m);
      case "shard-end":
        return this.onShardEnd(from, m.log, m.shard, m.end);
      case "index-reply": {
        const q = this.remoteQueries.get(m.id);
        if (q === undefined) return;
        if (m.error?.code === "UNAVAILABLE") {
          // That engine does not index the log: the next sweep asks another.
          q.askedAt = -Infinity;
          return;
        }
        this.remoteQueries.delete(m.id);
        if (m.error !== null) q.reject(errorFromWire(m.error));
        else
          q.resolve({
            seqnum: m.seqnum as SeqNum | null,
            position: m.position,
            failedAt: m.failedAt,
          });
        return;
      }
      case "set-aux": {
        // Another engine attached aux data: keep a cached copy of the record current.
        const st = this.logs[m.log];
        const cached = st?.cache.peek(m.seqnum as SeqNum);
        if (st !== undefined && cached !== undefined) st.cache.put({ ...cached, auxData: m.data });
        return;
      }
      case "client-request": {
        if (this.clientHandler === null) return;
        this.clientHandler(m).then(
          (reply) => this.o.transport.send(from, reply),
          (err: unknown) =>
            this.o.logger.error({ err, from }, "client request failed unexpectedly"),
        );
        return;
      }
      case "invoke-request": {
        if (this.invokeHandler === null) {
          this.o.transport.send(from, {
            t: "invoke-reply",
            id: m.id,
            position: m.position,
            output: null,
            error: this.functionsLoading
              ? { code: "UNAVAILABLE", message: `engine ${this.id} is still loading its functions` }
              : { code: "NOT_FOUND", message: `engine ${this.id} runs no functions` },
          });
          return;
        }
        this.invokeHandler(m).then(
          (reply) => this.o.transport.send(from, reply),
          (err: unknown) => this.o.logger.error({ err, from }, "invocation failed unexpectedly"),
        );
        return;
      }
      default:
        this.o.logger.warn({ from, type: m.t }, "engine ignored an unexpected message");
    }
  }

  private fetchMetalog(st: LogState): void {
    st.fetchingMetalogAt = this.o.clock.now();
    this.o.transport.send(this.view.primarySequencer(st.log), {
      t: "metalog-fetch",
      log: st.log,
      from: st.metalog.position,
    });
  }

  private onMetalog(log: number, entries: readonly MetalogEntry[], tail: number): void {
    const st = this.logs[log];
    if (st === undefined) return;
    if (st.startupTail < 0) st.startupTail = tail;
    st.knownTail = Math.max(st.knownTail, tail);
    const before = st.metalog.position;
    const take = (e: MetalogEntry): boolean => {
      const problem = st.metalog.check(e);
      if (problem !== null) {
        this.o.logger.error({ log, problem }, "engine rejected a metalog entry");
        return false;
      }
      st.queue.push(st.metalog.apply(e));
      return true;
    };
    for (const e of entries) {
      if (e.position < st.metalog.position) continue;
      if (e.position > st.metalog.position) {
        if (st.early.size < EARLY_ENTRIES_MAX) st.early.set(e.position, e);
        continue;
      }
      if (!take(e)) break;
      for (
        let n = st.early.get(st.metalog.position);
        n !== undefined;
        n = st.early.get(st.metalog.position)
      ) {
        st.early.delete(n.position);
        if (!take(n)) break;
      }
    }
    // Keep fetching while the sequencer has more than we do (catch-up after a start), at
    // once while answers bring entries; otherwise the sweep asks again after a pause (a new
    // primary may not have committed that far yet, and asking in a loop would flood it).
    if (st.metalog.position >= st.knownTail) st.fetchingMetalogAt = -Infinity;
    else if (st.metalog.position > before) this.fetchMetalog(st);
    this.drain(st);
  }

  /**
   * The index-data buffer of another shard. Its `base` is always the shard's next local id
   * the index needs: every engine replays the metalog from its start, so that is 0 when the
   * shard is first seen, and it moves only as records are applied.
   */
  private foreignOf(st: LogState, shard: number): ForeignShard {
    let f = st.foreign.get(shard);
    if (f === undefined) {
      f = { base: 0, head: 0, headers: [], requestedAt: -Infinity, asks: 0 };
      st.foreign.set(shard, f);
    }
    return f;
  }

  /**
   * Index data of another shard, pushed by storage or answering a fetch. Only the part that
   * extends the buffer contiguously is kept; batches with a gap before them are dropped (a
   * fetch fills the gap), and late or repeated ones change nothing.
   */
  private onIndexData(log: number, shard: number, first: number, headers: Uint8Array[]): void {
    const st = this.logs[log];
    if (st === undefined || headers.length === 0) return;
    const f = this.foreignOf(st, shard);
    const buffered = f.headers.length - f.head;
    const end = f.base + buffered;
    if (first > end || first + headers.length <= end) return;
    const room = FOREIGN_HEADERS_MAX - buffered;
    if (room <= 0) return;
    const upTo = Math.min(headers.length, end - first + room);
    for (let i = end - first; i < upTo; i++) f.headers.push(headers[i]!);
    f.requestedAt = -Infinity;
    this.drain(st);
  }

  /** Applies queued metalog entries to the index, in order, as far as index data allows. */
  private drain(st: LogState): void {
    let advanced = false;
    while (st.queueHead < st.queue.length) {
      const a = st.queue[st.queueHead]!;
      if (!this.haveIndexData(st, a)) break;
      st.queueHead++;
      this.applyToIndex(st, a);
      advanced = true;
    }
    if (st.queueHead > 1024 && st.queueHead * 2 > st.queue.length) {
      st.queue = st.queue.slice(st.queueHead);
      st.queueHead = 0;
    }
    if (!st.synced && st.startupTail >= 0 && st.index.position >= st.startupTail) {
      st.synced = true;
      const waiters = this.syncWaiters.splice(0);
      for (const w of waiters) w();
      advanced = true;
    }
    if (advanced) this.wakeReaders(st);
    if (st.switching !== null) this.maybeSwitchShard(st);
  }

  /**
   * The entry's spans, each marked `own` when it holds this run's appends. A span of this
   * engine's shard is split at the run's first local id: records before it were appended by
   * an earlier run of the engine and are indexed like any other engine's.
   */
  private spansOf(st: LogState, a: AppliedEntry): Array<Span & { own: boolean }> {
    const out: Array<Span & { own: boolean }> = [];
    for (const s of a.spans) {
      if (s.shard !== st.shard || s.fromLocal >= st.runBase) {
        out.push({ ...s, own: s.shard === st.shard });
        continue;
      }
      const cut = Math.min(s.toLocal, st.runBase);
      out.push({ ...s, toLocal: cut, own: false });
      if (cut < s.toLocal) {
        out.push({
          shard: s.shard,
          fromLocal: cut,
          toLocal: s.toLocal,
          startSeqnum: (s.startSeqnum + (cut - s.fromLocal)) as SeqNum,
          own: true,
        });
      }
    }
    return out;
  }

  private haveIndexData(st: LogState, a: AppliedEntry): boolean {
    let ok = true;
    for (const s of this.spansOf(st, a)) {
      if (s.own) {
        invariant(
          s.fromLocal >= st.pendingBase &&
            s.toLocal <= st.pendingBase + (st.pending.length - st.pendingHead),
          () => `own shard ${s.shard} span [${s.fromLocal}, ${s.toLocal}) not pending`,
        );
        continue;
      }
      // An engine that does not index the log needs only its own records' sequence numbers.
      if (!st.indexed) continue;
      const f = this.foreignOf(st, s.shard);
      invariant(
        f.base === s.fromLocal,
        () => `shard ${s.shard} index data at ${f.base}, span starts at ${s.fromLocal}`,
      );
      const end = f.base + (f.headers.length - f.head);
      if (end >= s.toLocal) continue;
      ok = false;
      const now = this.o.clock.now();
      if (now - f.requestedAt >= REFETCH_AFTER_MS) {
        f.requestedAt = now;
        // The live replicas first, then the others in turn; and everything of the shard the
        // metalog has ordered so far, not just this span, so catching up takes few fetches.
        const replicas = this.replicasToAsk(s.shard);
        const target = replicas[f.asks++ % replicas.length]!;
        this.o.transport.send(target, {
          t: "index-fetch",
          log: st.log,
          shard: s.shard,
          from: end,
          to: Math.max(
            s.toLocal,
            Math.min(st.metalog.shardEnd(s.shard), end + FOREIGN_HEADERS_MAX),
          ),
        });
        this.ensureSweep();
      }
    }
    return ok;
  }

  private applyToIndex(st: LogState, a: AppliedEntry): void {
    const position = (a.entry.position + 1) as MetalogPosition;
    // Settling a promise only queues its continuations, which run after this method has
    // advanced the index; so appends are settled as their records are applied.
    const sendsDeletes = st.indexEngines[0] === this.id;
    for (const s of this.spansOf(st, a)) {
      const own = s.own;
      if (!st.indexed) {
        if (own) this.settleUnindexed(st, s.fromLocal, s.toLocal, s.startSeqnum, position);
        continue;
      }
      const f = own ? undefined : st.foreign.get(s.shard)!;
      for (let local = s.fromLocal; local < s.toLocal; local++) {
        const seqnum = (s.startSeqnum + (local - s.fromLocal)) as SeqNum;
        let meta: RecordMeta;
        let p: PendingAppend | undefined;
        if (own) {
          p = st.pending[st.pendingHead + (local - st.pendingBase)]!;
          meta = p.meta;
        } else {
          meta = decodeMeta(f!.headers[f!.head + (local - f!.base)]!);
        }
        const outcome = st.index.apply(seqnum, meta);
        if (outcome.kind === "cond-failed") {
          st.condFailures.set(seqnum, outcome.actualPosition);
          if (st.condFailures.size > COND_FAILURES_REMEMBERED_MAX) {
            st.condFailures.delete(st.condFailures.keys().next().value!);
          }
          if (p !== undefined && !p.settled) {
            p.settled = true;
            const expected = p.meta.kind === RecordKind.Cond ? p.meta.condPosition : -1;
            p.reject(new CondAppendFailedError(expected, outcome.actualPosition, position));
          }
          continue;
        }
        if (outcome.kind === "trim") {
          for (const d of outcome.deleted) st.cache.delete(d);
          // One engine (the log's first index replica) tells storage to drop the payloads.
          if (sendsDeletes && outcome.deleted.length > 0) {
            const msg: Message = { t: "delete", log: st.log, seqnums: outcome.deleted.slice() };
            for (const n of this.view.allStorages()) this.o.transport.send(n, msg);
          }
        } else if (p !== undefined) {
          this.cacheOwn(st, seqnum, p);
        }
        if (p !== undefined && !p.settled) {
          p.settled = true;
          this.reportStages(p);
          p.resolve({ seqnum, position });
        }
      }
      if (own) {
        this.dropPending(st, s.toLocal - s.fromLocal);
      } else {
        const n = s.toLocal - s.fromLocal;
        f!.head += n;
        f!.base += n;
        if (f!.head > 4096 && f!.head * 2 > f!.headers.length) {
          f!.headers = f!.headers.slice(f!.head);
          f!.head = 0;
        }
      }
    }
    st.index.advance(position);
  }

  /** Tells `onAppendStages` where an append's time went, once it is ordered. */
  private reportStages(p: PendingAppend): void {
    const report = this.o.onAppendStages;
    if (report === undefined || p.sentAt < 0) return;
    report(p.sentAt - p.acceptedAt, this.o.clock.now() - p.sentAt);
  }

  /**
   * Settles own appends of a log this engine does not index. A conditional append's outcome
   * is known only to an index, so it is asked for.
   */
  private settleUnindexed(
    st: LogState,
    from: number,
    to: number,
    startSeqnum: number,
    position: MetalogPosition,
  ): void {
    for (let local = from; local < to; local++) {
      const p = st.pending[st.pendingHead + (local - st.pendingBase)]!;
      const seqnum = (startSeqnum + (local - from)) as SeqNum;
      if (p.meta.kind === RecordKind.Data) {
        this.cacheOwn(st, seqnum, p);
      }
      if (p.settled) continue;
      p.settled = true;
      if (p.meta.kind !== RecordKind.Cond) {
        this.reportStages(p);
        p.resolve({ seqnum, position });
        continue;
      }
      const meta = p.meta;
      this.remoteQuery(
        st,
        { op: "cond", book: meta.book, tag: 0n as Tag, seqnum, timeoutMs: 0 },
        position,
      ).then(
        (a) => {
          if (a.failedAt === null) {
            this.cacheOwn(st, seqnum, p);
            p.resolve({ seqnum, position: Math.max(a.position, position) as MetalogPosition });
          } else {
            const decidedAt = Math.max(a.position, position);
            p.reject(new CondAppendFailedError(meta.condPosition, a.failedAt, decidedAt));
          }
        },
        (err: unknown) => p.reject(err instanceof Error ? err : new Error(String(err))),
      );
    }
    this.dropPending(st, to - from);
  }

  /** Caches a record this engine appended, once it has its sequence number. */
  private cacheOwn(st: LogState, seqnum: SeqNum, p: PendingAppend): void {
    const { book, tags } = p.meta;
    st.cache.put({ seqnum, book, tags, data: payloadOf(p.encoded), auxData: null });
  }

  /** Forgets the oldest `n` own appends (now ordered), compacting the queue now and then. */
  private dropPending(st: LogState, n: number): void {
    for (let i = 0; i < n; i++)
      (st.pending as Array<PendingAppend | undefined>)[st.pendingHead + i] = undefined;
    st.pendingHead += n;
    st.pendingBase += n;
    if (st.pendingHead > 4096 && st.pendingHead * 2 > st.pending.length) {
      st.pending = st.pending.slice(st.pendingHead);
      st.pendingHead = 0;
    }
    if (st.flushHeld && !st.flushScheduled) {
      st.flushScheduled = true;
      this.o.clock.afterTurn(() => this.flush(st));
    }
  }

  private wakeReaders(st: LogState): void {
    if (st.waiting.length > 0 && st.synced) {
      const ready: WaitingRead[] = [];
      const still: WaitingRead[] = [];
      for (const w of st.waiting) (w.position <= st.index.position ? ready : still).push(w);
      st.waiting = still;
      for (const w of ready) w.resume();
    }
    if (st.blocking.size > 0) {
      for (const b of [...st.blocking]) {
        const found = st.index.readNext(b.book, b.tag, b.min);
        if (found !== null) b.done(found);
      }
    }
  }

  // ---- deadlines and retries -------------------------------------------------------------

  private ensureSweep(): void {
    if (this.sweepTimer !== null || this.closed) return;
    this.sweepTimer = this.o.clock.setTimer(SWEEP_INTERVAL_MS, () => this.sweep());
  }

  private sweep(): void {
    this.sweepTimer = null;
    if (this.closed) return;
    const now = this.o.clock.now();
    let busy = this.storageReads.size > 0;
    for (const st of this.logs) {
      for (let i = st.pendingHead; i < st.pending.length; i++) {
        const p = st.pending[i]!;
        if (p.deadline > now) break;
        if (!p.settled) {
          p.settled = true;
          p.reject(
            new TimeoutError(
              `append was not ordered within ${this.appendTimeoutMs} ms; it may still appear in the log`,
            ),
          );
        }
      }
      if (st.shardEnds !== null) {
        busy = true;
        if (now - st.shardEndAskedAt >= REFETCH_AFTER_MS) this.askShardEnds(st);
      }
      if (st.pending.length > st.pendingHead) {
        busy = true;
        const oldest = st.pending[st.pendingHead]!;
        const sentAt = oldest.deadline - this.appendTimeoutMs;
        if (now - sentAt >= RESEND_AFTER_MS && now - st.lastResendAt >= RESEND_AFTER_MS) {
          st.lastResendAt = now;
          this.resend(st);
          // The entry ordering them may have been cut but its broadcast lost: ask for it.
          if (now - st.fetchingMetalogAt >= REFETCH_AFTER_MS) this.fetchMetalog(st);
        }
      }
      if (st.waiting.length > 0) {
        busy = true;
        const still: WaitingRead[] = [];
        for (const w of st.waiting) {
          if (w.deadline <= now) {
            w.reject(
              new TimeoutError(
                `the index did not reach metalog position ${w.position} within ${READ_CATCH_UP_TIMEOUT_MS} ms`,
              ),
            );
          } else still.push(w);
        }
        st.waiting = still;
      }
      if (st.queueHead < st.queue.length) {
        busy = true;
        this.drain(st);
      }
      if (st.switching !== null) {
        busy = true;
        if (
          st.metalog.position < st.switching.end &&
          now - st.fetchingMetalogAt >= REFETCH_AFTER_MS
        )
          this.fetchMetalog(st);
        this.maybeSwitchShard(st);
      }
      if (!st.synced || st.metalog.position < st.knownTail || st.early.size > 0) {
        busy = true;
        if (now - st.fetchingMetalogAt >= REFETCH_AFTER_MS) this.fetchMetalog(st);
      }
    }
    for (const [id, q] of this.remoteQueries) {
      busy = true;
      if (q.deadline <= now) {
        this.remoteQueries.delete(id);
        q.reject(new TimeoutError("no index replica answered a query in time"));
      } else if (now - q.askedAt >= q.tryMs) this.askIndex(q);
    }
    for (const [id, r] of this.storageReads) {
      if (r.deadline > now && now - r.askedAt >= STORAGE_READ_TRY_MS) {
        // No answer (the replica may be down): ask the next one, round and round until the deadline.
        this.storageReads.delete(id);
        this.askNextReplica(r);
        continue;
      }
      if (r.deadline <= now) {
        this.storageReads.delete(id);
        r.reject(
          new TimeoutError(
            `storage did not answer a read of seqnum ${r.seqnum} within ${STORAGE_READ_TIMEOUT_MS} ms`,
          ),
        );
      }
    }
    if (busy) this.ensureSweep();
  }

  /** Sends every unordered record of the engine's shard to its replicas again; they drop duplicates. */
  private resend(st: LogState): void {
    // Not while the shard's end is unknown: records sent now would take local ids the
    // replicas' answers then count as an earlier run's, and the records would be appended
    // twice. Nor while switching shards: the old shard orders nothing more.
    if (st.shardEnds !== null || st.switching !== null) return;
    let batch: Uint8Array[] = [];
    let bytes = 0;
    let first = st.pendingBase;
    const send = (): void => {
      if (batch.length === 0) return;
      const msg: Message = { t: "replicate", log: st.log, shard: st.shard, first, records: batch };
      for (const r of st.replicas) this.o.transport.send(r, msg);
      first += batch.length;
      batch = [];
      bytes = 0;
    };
    for (let i = st.pendingHead; i < st.pending.length; i++) {
      const e = st.pending[i]!.encoded;
      if (
        batch.length >= REPLICATE_BATCH_RECORDS_MAX ||
        bytes + e.length > REPLICATE_BATCH_BYTES_MAX
      )
        send();
      batch.push(e);
      bytes += e.length;
    }
    send();
  }

  /** Fails everything in flight with LOG_CLOSED and stops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer !== null) this.o.clock.clearTimer(this.sweepTimer);
    const err = new LogClosedError();
    for (const st of this.logs) {
      for (let i = st.pendingHead; i < st.pending.length; i++) {
        const p = st.pending[i]!;
        if (!p.settled) {
          p.settled = true;
          p.reject(err);
        }
      }
      for (const w of st.waiting) w.reject(err);
      st.waiting = [];
      for (const b of st.blocking) {
        this.o.clock.clearTimer(b.timer);
        b.fail(err);
      }
      st.blocking.clear();
    }
    for (const r of this.storageReads.values()) r.reject(err);
    for (const q of this.remoteQueries.values()) q.reject(err);
    this.remoteQueries.clear();
    this.storageReads.clear();
    this.o.transport.close();
  }
}
