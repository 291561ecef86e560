/**
 * A storage node: holds replicas of log shards on disk, reports how much of each shard it
 * holds to the primary sequencer, learns the metalog to map sequence numbers to records,
 * and serves record reads and index data to engines.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import type { DeleteMsg, Message, ReadMsg, ReplicateMsg } from "../protocol/messages.js";
import type { NodeId, Transport } from "../transport/transport.js";
import type { StorageBackend } from "./backend.js";
import type { Logger } from "../util/logger.js";
import { MetalogState, type MetalogEntry } from "../log/metalog.js";
import { termOfShard, type View } from "../log/view.js";
import { headerOf } from "../log/record.js";
import type { SeqNum, ShardId } from "../log/types.js";
import { INDEX_DATA_BATCH_RECORDS_MAX } from "../log/limits.js";

/** When an appended record counts as held: once in memory here, or once on disk here. */
export type Durability = "memory" | "disk";

/** Most out-of-order replicate batches a shard keeps while waiting for the gap before them. */
export const STASHED_BATCHES_MAX = 64;
/**
 * How often a storage node reports its progress even when nothing changed, so that a
 * sequencer that missed a report (or restarted) still learns what is held.
 */
export const PROGRESS_HEARTBEAT_MS = 100;
/** How long a storage node waits before asking a peer replica again for records it missed. */
export const GAP_REFETCH_MS = 100;
/** Most metalog entries kept waiting for an earlier, missing entry. */
export const STASHED_ENTRIES_MAX = 4096;
/**
 * Most reads and deletes per log kept waiting for metalog entries this node has not learned
 * yet (sequencers send storage nodes the metalog in batches); beyond it a read is answered
 * as not held here, and the engine asks another replica.
 */
export const WAITING_FOR_METALOG_MAX = 4096;
/** Longest a read or delete waits for the metalog entry that orders its record. */
export const METALOG_WAIT_MS = 2_000;

export interface StorageNodeOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  readonly backend: StorageBackend;
  readonly view: View;
  readonly logger: Logger;
  readonly durability?: Durability;
  /**
   * Whether to persist the metalog entries this node learns. Off when the node shares its
   * disk environment with the sequencer, which already persists them in the same place.
   */
  readonly persistMetalog?: boolean;
  /**
   * Called once when the node stops for good because writing records to its disk failed.
   * The node should then exit, so that its lease lapses and the controller replaces it.
   */
  readonly onFatal?: (err: unknown) => void;
}

interface ShardState {
  /** Records accepted, contiguous from 0. */
  received: number;
  /** Records durable (or, in memory durability, accepted) and reported. */
  held: number;
  /** Local id of `buffer[0]`: records not yet on disk, kept for reads. */
  bufferBase: number;
  buffer: Uint8Array[];
  stash: Map<number, Uint8Array[]>;
  /** When records missing before a stashed batch were last asked of another replica. */
  fetchedAt: number;
  /** Gap fetches so far: each asks the next peer replica in turn. */
  fetches: number;
}

interface LogState {
  readonly metalog: MetalogState;
  readonly shards: Map<number, ShardState>;
  readonly early: Map<number, MetalogEntry>;
  fetching: boolean;
  /** Reads and deletes of sequence numbers past the metalog this node knows, oldest first. */
  waiting: Array<{ from: NodeId; m: ReadMsg | DeleteMsg; deadline: number }>;
}

export class StorageNode {
  readonly id: NodeId;
  private readonly logs = new Map<number, LogState>();
  private readonly dirtyProgress = new Set<number>();
  private progressScheduled = false;
  private heartbeatTimer: TimerHandle | null = null;
  private closed = false;
  private readonly durability: Durability;
  /** Writes still in flight, so close() can wait for them. */
  private readonly writes = new Set<Promise<unknown>>();

  private view: View;

  constructor(private readonly o: StorageNodeOptions) {
    this.id = o.transport.self;
    this.view = o.view;
    this.durability = o.durability ?? "disk";
    o.transport.onMessage((from, m) => this.onMessage(from, m));
  }

  get term(): number {
    return this.view.term;
  }

  /** Moves to a later term: new shards to accept, progress to the new primaries. */
  setView(view: View): void {
    if (this.closed || view.term <= this.view.term) return;
    this.view = view;
    for (let log = 0; log < view.config.physicalLogs; log++) {
      const st = this.logState(log);
      st.fetching = false;
      this.fetchMetalog(log, st);
    }
    this.o.logger.info({ term: view.term }, "storage node moved to a new term");
  }

  /** Loads the persisted metalog of every physical log and asks the sequencers for what is newer. */
  start(): void {
    for (let log = 0; log < this.view.config.physicalLogs; log++) {
      const st = this.logState(log);
      // The copy on disk is best effort (a write of it may have failed): what follows a gap
      // is left out and fetched from the sequencers again.
      for (const e of this.o.backend.loadMetalog(log)) {
        const problem = st.metalog.check(e);
        if (problem !== null) {
          this.o.logger.warn(
            { log, position: st.metalog.position, problem },
            "the metalog copy on disk stops here; the rest comes from the sequencers",
          );
          break;
        }
        st.metalog.apply(e);
      }
      this.fetchMetalog(log, st);
    }
    this.heartbeat();
  }

  private heartbeat(): void {
    if (this.closed) return;
    for (const [log, st] of this.logs) {
      if (st.shards.size > 0) this.dirtyProgress.add(log);
      // A metalog fetch that got no answer (the sequencer was down) is asked again.
      if (st.fetching || st.early.size > 0 || st.waiting.length > 0) {
        st.fetching = false;
        this.fetchMetalog(log, st);
      }
      if (st.waiting.length > 0) this.retryWaiting(log, st);
      // A gap before stashed records is asked for again until a peer fills it.
      for (const [shard, sh] of st.shards) {
        if (sh.stash.size > 0) this.fetchGap(log, shard, sh, Math.min(...sh.stash.keys()));
      }
    }
    this.sendProgress();
    this.heartbeatTimer = this.o.clock.setTimer(PROGRESS_HEARTBEAT_MS, () => this.heartbeat());
  }

  private logState(log: number): LogState {
    let st = this.logs.get(log);
    if (st === undefined) {
      st = {
        metalog: new MetalogState(log),
        shards: new Map(),
        early: new Map(),
        fetching: false,
        waiting: [],
      };
      this.logs.set(log, st);
    }
    return st;
  }

  private shardState(log: number, st: LogState, shard: number): ShardState {
    let s = st.shards.get(shard);
    if (s === undefined) {
      // After a restart, what the disk holds of the shard is held already.
      const end = this.o.backend.shardEnd(log, shard);
      s = {
        received: end,
        held: end,
        bufferBase: end,
        buffer: [],
        stash: new Map(),
        fetchedAt: -Infinity,
        fetches: 0,
      };
      st.shards.set(shard, s);
    }
    return s;
  }

  private onMessage(from: NodeId, m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case "replicate":
        return this.onReplicate(m);
      case "metalog":
        return this.onMetalog(m.log, m.entries);
      case "shard-end-query": {
        const st = this.logState(m.log);
        const end = this.shardState(m.log, st, m.shard).received;
        this.o.transport.send(from, { t: "shard-end", log: m.log, shard: m.shard, end });
        return;
      }
      case "replica-fetch": {
        // A peer replica missed records of a shard: send what this node holds of them.
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        const to = Math.min(m.to, m.from + INDEX_DATA_BATCH_RECORDS_MAX);
        const records: Uint8Array[] = [];
        for (let id = m.from; id < to; id++) {
          const r = this.record(m.log, st, m.shard, id);
          if (r === undefined) break;
          records.push(r);
        }
        if (records.length > 0)
          this.o.transport.send(from, {
            t: "replicate",
            log: m.log,
            shard: m.shard,
            first: m.from,
            records,
          });
        return;
      }
      case "index-fetch": {
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        const to = Math.min(m.to, m.from + INDEX_DATA_BATCH_RECORDS_MAX);
        const headers: Uint8Array[] = [];
        for (let id = m.from; id < to; id++) {
          const r = this.record(m.log, st, m.shard, id);
          if (r === undefined) break;
          headers.push(headerOf(r));
        }
        this.o.transport.send(from, {
          t: "index-data",
          log: m.log,
          shard: m.shard,
          first: m.from,
          headers,
        });
        return;
      }
      case "read": {
        const st = this.logs.get(m.log);
        if (st !== undefined && m.seqnum >= st.metalog.nextSeqnum && this.wait(m.log, st, from, m))
          return;
        const loc = st?.metalog.locate(m.seqnum as SeqNum) ?? null;
        const record =
          st !== undefined && loc !== null
            ? (this.record(m.log, st, loc.shard, loc.localId) ?? null)
            : null;
        const aux = record !== null ? (this.o.backend.readAux(m.log, m.seqnum) ?? null) : null;
        this.o.transport.send(from, { t: "read-reply", id: m.id, record, aux });
        return;
      }
      case "set-aux":
        this.track(this.o.backend.writeAux(m.log, m.seqnum, m.data));
        return;
      case "delete": {
        // A trimmed record keeps its header, so that an index rebuilt from storage can still
        // replay the log (the trim itself depends on it); only the payload is dropped.
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        const past = m.seqnums.some((x) => x >= st.metalog.nextSeqnum);
        if (past && this.wait(m.log, st, from, m)) return;
        const keys: Array<[number, number]> = [];
        for (const s of m.seqnums) {
          const loc = st.metalog.locate(s as SeqNum);
          if (loc !== null) keys.push([loc.shard, loc.localId]);
        }
        this.track(this.o.backend.truncatePayloads(m.log, keys));
        this.track(this.o.backend.deleteAux(m.log, m.seqnums));
        return;
      }
      default:
        this.o.logger.warn({ from, type: m.t }, "storage node ignored an unexpected message");
    }
  }

  private record(
    log: number,
    st: LogState,
    shard: number,
    localId: number,
  ): Uint8Array | undefined {
    const s = st.shards.get(shard);
    if (s !== undefined && localId >= s.bufferBase && localId < s.received)
      return s.buffer[localId - s.bufferBase];
    return this.o.backend.readRecord(log, shard, localId);
  }

  private onReplicate(m: ReplicateMsg): void {
    const st = this.logState(m.log);
    const s = this.shardState(m.log, st, m.shard);
    if (m.first > s.received) {
      if (s.stash.size < STASHED_BATCHES_MAX) s.stash.set(m.first, m.records);
      else
        this.o.logger.warn(
          { log: m.log, shard: m.shard },
          "replicate stash full; dropping a batch until the gap fills",
        );
      this.fetchGap(m.log, m.shard, s, m.first);
      return;
    }
    this.accept(m.log, st, m.shard, s, m.first, m.records);
    for (let next = s.stash.get(s.received); next !== undefined; next = s.stash.get(s.received)) {
      const first = s.received;
      s.stash.delete(first);
      this.accept(m.log, st, m.shard, s, first, next);
    }
  }

  /**
   * Asks another replica of the shard for records this node missed (it was down, or lost
   * records held only in memory). The engine resends only what is not yet ordered, so
   * ordered records can come only from a peer.
   */
  private fetchGap(log: number, shard: number, s: ShardState, upTo: number): void {
    const now = this.o.clock.now();
    if (now - s.fetchedAt < GAP_REFETCH_MS) return;
    s.fetchedAt = now;
    const peers = this.view.replicasOf(shard as ShardId).filter((r) => r !== this.id);
    if (peers.length === 0) return;
    const peer = peers[s.fetches++ % peers.length]!;
    this.o.transport.send(peer, { t: "replica-fetch", log, shard, from: s.received, to: upTo });
  }

  private accept(
    log: number,
    st: LogState,
    shard: number,
    s: ShardState,
    first: number,
    records: Uint8Array[],
  ): void {
    const skip = s.received - first;
    if (skip >= records.length) return;
    const fresh = skip > 0 ? records.slice(skip) : records;
    const start = s.received;
    for (const r of fresh) s.buffer.push(r);
    s.received += fresh.length;
    const end = s.received;
    this.pushIndexData(log, shard, start, fresh);
    if (this.durability === "memory") this.markHeld(log, s, end);
    const w = this.o.backend.writeRecords(log, shard, start, fresh).then(
      () => {
        // lmdb commits transactions in order, so every earlier write of this shard is durable too.
        const drop = end - s.bufferBase;
        if (drop > 0) {
          s.buffer.splice(0, drop);
          s.bufferBase = end;
        }
        if (this.durability === "disk") this.markHeld(log, s, end);
      },
      (err: unknown) => {
        // A node that cannot hold what it receives must not look alive: it stops.
        this.o.logger.error({ err, log, shard }, "storage write failed; the node stops");
        if (this.closed) return;
        this.closed = true;
        if (this.heartbeatTimer !== null) this.o.clock.clearTimer(this.heartbeatTimer);
        this.o.onFatal?.(err);
      },
    );
    this.track(w);
    void st;
  }

  /** The first replica of a shard tells the log's index replicas (but the shard's owner) about its records. */
  private pushIndexData(log: number, shard: number, first: number, records: Uint8Array[]): void {
    const replicas = this.view.replicasOf(shard as ShardId);
    if (replicas[0] !== this.id) return;
    const owner = this.view.ownerOf(shard as ShardId);
    let headers: Uint8Array[] | null = null;
    for (const engine of this.view.indexEnginesOf(log)) {
      if (engine === owner) continue;
      headers ??= records.map(headerOf);
      this.o.transport.send(engine, { t: "index-data", log, shard, first, headers });
    }
  }

  private markHeld(log: number, s: ShardState, end: number): void {
    if (end <= s.held) return;
    s.held = end;
    this.dirtyProgress.add(log);
    if (!this.progressScheduled) {
      this.progressScheduled = true;
      this.o.clock.afterTurn(() => this.sendProgress());
    }
  }

  private sendProgress(): void {
    this.progressScheduled = false;
    if (this.closed) return;
    for (const log of this.dirtyProgress) {
      const st = this.logs.get(log)!;
      // Only the current term's shards are cut; earlier terms' shards are sealed.
      const held: Array<[number, number]> = [];
      for (const [shard, s] of st.shards) {
        if (termOfShard(shard as ShardId) === this.view.term) held.push([shard, s.held]);
      }
      if (held.length === 0) continue;
      this.o.transport.send(this.view.primarySequencer(log), {
        t: "progress",
        log,
        term: this.view.term,
        held,
      });
    }
    this.dirtyProgress.clear();
  }

  private onMetalog(log: number, entries: MetalogEntry[]): void {
    const st = this.logState(log);
    const applied: MetalogEntry[] = [];
    for (const e of entries) {
      if (e.position < st.metalog.position) continue;
      if (e.position > st.metalog.position) {
        if (st.early.size < STASHED_ENTRIES_MAX) st.early.set(e.position, e);
        continue;
      }
      st.metalog.apply(e);
      applied.push(e);
      for (
        let n = st.early.get(st.metalog.position);
        n !== undefined;
        n = st.early.get(st.metalog.position)
      ) {
        st.early.delete(n.position);
        st.metalog.apply(n);
        applied.push(n);
      }
    }
    st.fetching = false;
    // Entries past a gap: ask for the gap at once while answers bring entries, else on the
    // next heartbeat (asking in a loop would flood the sequencer).
    if (st.early.size > 0 && applied.length > 0) this.fetchMetalog(log, st);
    if (applied.length > 0 && st.waiting.length > 0) this.retryWaiting(log, st);
    if (applied.length > 0 && this.o.persistMetalog !== false) {
      this.track(
        this.o.backend
          .copyMetalog(applied)
          .catch((err: unknown) => this.o.logger.error({ err, log }, "metalog persist failed")),
      );
    }
  }

  /**
   * Keeps a read or delete of a sequence number this node's metalog has not reached yet
   * until the metalog gets there, and asks the primary sequencer for it. False when the
   * queue is full (the caller then answers as before).
   */
  private wait(log: number, st: LogState, from: NodeId, m: ReadMsg | DeleteMsg): boolean {
    if (st.waiting.length >= WAITING_FOR_METALOG_MAX) return false;
    st.waiting.push({ from, m, deadline: this.o.clock.now() + METALOG_WAIT_MS });
    this.fetchMetalog(log, st);
    return true;
  }

  /** Serves what waited for the metalog and is now covered; expired reads get "not here". */
  private retryWaiting(log: number, st: LogState): void {
    const now = this.o.clock.now();
    const waiting = st.waiting;
    st.waiting = [];
    const next = st.metalog.nextSeqnum;
    for (const w of waiting) {
      const covered = w.m.t === "read" ? w.m.seqnum < next : w.m.seqnums.every((x) => x < next);
      if (covered || w.deadline <= now) {
        if (w.m.t === "read" && !covered) {
          this.o.transport.send(w.from, { t: "read-reply", id: w.m.id, record: null, aux: null });
        } else {
          // Served as if it arrived now (a delete past the tail trims what is known).
          this.serveLater(w.from, w.m);
        }
      } else st.waiting.push(w);
    }
    if (st.waiting.length > 0) this.fetchMetalog(log, st);
  }

  private serveLater(from: NodeId, m: ReadMsg | DeleteMsg): void {
    const st = this.logs.get(m.log);
    if (st === undefined) return;
    if (m.t === "delete" && m.seqnums.some((x) => x >= st.metalog.nextSeqnum)) {
      this.o.logger.warn(
        { log: m.log, tail: st.metalog.nextSeqnum },
        "delete of records past this node's metalog after waiting; their payloads stay",
      );
    }
    this.onMessage(
      from,
      m.t === "read" ? m : { ...m, seqnums: m.seqnums.filter((x) => x < st.metalog.nextSeqnum) },
    );
  }

  private fetchMetalog(log: number, st: LogState): void {
    if (st.fetching) return;
    st.fetching = true;
    this.o.transport.send(this.view.primarySequencer(log), {
      t: "metalog-fetch",
      log,
      from: st.metalog.position,
    });
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((err: unknown) => this.o.logger.error({ err }, "storage operation failed"));
    this.writes.add(q);
    void q.finally(() => this.writes.delete(q));
  }

  /** Stops serving and waits for writes in flight. The backend is closed by its owner. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeatTimer !== null) this.o.clock.clearTimer(this.heartbeatTimer);
    await Promise.all([...this.writes]);
    this.o.transport.close();
  }
}
