/**
 * A sequencer node. For each physical log it serves, it is either the primary or a backup
 * of that log's metalog (the view lists the primary first).
 *
 * The primary turns storage progress reports into metalog cuts, persists each entry and
 * sends it to the backups; an entry is committed once a majority of the log's sequencers
 * hold it on disk, and committed entries are broadcast, in order, to engines and storage
 * nodes. Cuts are self-clocked: a primary cuts as soon as progress arrives, unless
 * `CUTS_IN_FLIGHT_MAX` entries are still uncommitted, in which case the next cut waits for a
 * commit, and never more often than every `cutIntervalMs`. One entry thus orders everything
 * that became durable meanwhile: entries stay few and grow with the load, and an idle log's
 * first append is cut at once.
 *
 * A backup stores the entries it is sent, in order, and acknowledges how far it holds them.
 * A primary that starts first fetches from its backups whatever they hold beyond its own
 * disk (entries it may have lost in a crash after they were committed), and cuts only once
 * a majority has answered.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import type { Message, MetalogMsg } from "../protocol/messages.js";
import type { NodeId, Transport } from "../transport/transport.js";
import type { Logger } from "../util/logger.js";
import type { MetalogStore } from "./metalog-store.js";
import { CutBuilder, MetalogState, type MetalogEntry } from "../log/metalog.js";
import type { View } from "../log/view.js";
import type { LogId, ShardId } from "../log/types.js";
import { CUT_INTERVAL_MS_DEFAULT } from "../log/limits.js";

/** Most entries sent in one metalog message (answering a fetch, or to a backup). */
export const METALOG_BATCH_ENTRIES_MAX = 1024;
/**
 * Most entries a primary has cut but not yet committed; further progress waits for a commit
 * and then goes into one entry. Two rather than one: progress that arrives while an entry is
 * on its way to the backups is cut at once instead of waiting a whole commit round trip,
 * which under load took about a tenth off the p99 of appends at 64 in flight (and added
 * throughput) on a 2-core machine, with entries still growing with the load.
 */
export const CUTS_IN_FLIGHT_MAX = 2;
/**
 * How long a primary gathers committed entries before it sends them to the storage nodes.
 * Engines get every commit at once (appends wait for it); storage nodes need the metalog
 * only to find records by sequence number, and fetch it themselves when a read gets ahead.
 */
export const METALOG_TO_STORAGE_INTERVAL_MS = 20;
/** Committed entries a primary that starts cutting sends engines and storage at once. */
export const RECOVERED_ENTRIES_SENT = 64;
/** How often a primary resends unacknowledged entries and re-asks backups while recovering. */
export const METALOG_RETRANSMIT_MS = 50;

export interface SequencerOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  readonly store: MetalogStore;
  readonly view: View;
  readonly logger: Logger;
  readonly cutIntervalMs?: number;
  /**
   * Identifies this run of the node: larger than any earlier run's (the start time in
   * milliseconds suits). Sent with a backup's acknowledgements, so that its primary notices
   * a restart and believes the new, possibly shorter, count of entries held. Default 0.
   */
  readonly boot?: number;
  /**
   * Called once when the sequencer stops for good because its disk failed. The node should
   * then exit, so that its lease lapses and the controller replaces it.
   */
  readonly onFatal?: (err: unknown) => void;
}

interface LogState {
  readonly log: number;
  /** Whether this node is one of the log's sequencers in the current term. */
  readonly member: boolean;
  readonly primary: boolean;
  /** The term is sealed here: no more cuts, no more entries accepted, until the next view. */
  sealed: boolean;
  /** Metalog position the primary must hold before it cuts: where the current term begins. */
  readonly target: number;
  readonly backups: readonly NodeId[];
  /** Entries durable on this node's disk, in order. */
  readonly entries: MetalogEntry[];
  /** Entries being written, in order; each counts as durable once it and all before it are. */
  readonly writing: Array<{ entry: MetalogEntry; durable: boolean }>;
  lastWrite: Promise<void>;
  readonly state: MetalogState;
  // Primary only:
  builder: CutBuilder | null;
  /** Durable length each backup reported. */
  readonly acked: Map<NodeId, number>;
  /** The run (`boot`) of each backup whose acknowledgement set `acked`. */
  readonly ackedBoot: Map<NodeId, number>;
  /** Backups that answered the recovery fetch with their tail. */
  readonly recoveredFrom: Set<NodeId>;
  committed: number;
  timer: TimerHandle | null;
  cutQueued: boolean;
  /** Progress arrived while the cut pipeline was full. */
  cutWanted: boolean;
  lastCutAt: number;
  /** Committed entries sent to the storage nodes so far. */
  sentToStorage: number;
  storageTimer: TimerHandle | null;
}

/** What a sequencer reports when it seals one of its logs. */
export interface SealReport {
  readonly log: number;
  readonly term: number;
  /** Entries it holds durably: the sealed term's entries can end no earlier than this. */
  readonly length: number;
}

export class Sequencer {
  readonly id: NodeId;
  private logs = new Map<number, LogState>();
  private readonly cutIntervalMs: number;
  private view: View;
  private engines: readonly NodeId[];
  private storages: readonly NodeId[];
  private closed = false;
  private readonly writes = new Set<Promise<void>>();
  private retransmitTimer: TimerHandle | null = null;

  constructor(private readonly o: SequencerOptions) {
    this.id = o.transport.self;
    this.cutIntervalMs = o.cutIntervalMs ?? CUT_INTERVAL_MS_DEFAULT;
    this.view = o.view;
    this.engines = o.view.config.engines;
    this.storages = o.view.allStorages();
    o.transport.onMessage((from, m) => this.onMessage(from, m));
  }

  get term(): number {
    return this.view.term;
  }

  /** Loads the persisted metalog of every log this node sequences and starts serving them. */
  start(): void {
    this.openLogs();
    this.armRetransmit();
  }

  /**
   * Opens every log this node holds entries of or sequences in the current view. Entries a
   * sealed term cut but never committed (at or past where a later term began) are dropped;
   * later entries overwrite them on disk.
   */
  private openLogs(): void {
    const c = this.view.config;
    const previous = this.logs;
    this.logs = new Map();
    for (let log = 0; log < c.physicalLogs; log++) {
      const group = c.sequencers[log]!;
      const member = group.includes(this.id);
      // A running node takes the entries it holds in memory (the store may not have
      // checkpointed the latest yet); a starting one reads its disk.
      const stored = previous.get(log)?.entries ?? this.o.store.loadMetalog(log);
      const entries: MetalogEntry[] = [];
      for (const e of stored) {
        if (e.position !== entries.length || !this.view.isFinalEntry(log, e)) break;
        entries.push(e);
      }
      if (entries.length < stored.length) {
        this.o.logger.info(
          { log, kept: entries.length, dropped: stored.length - entries.length },
          "sequencer dropped metalog entries a sealed term never committed",
        );
      }
      if (!member && entries.length === 0) continue;
      const state = new MetalogState(log);
      for (const e of entries) state.apply(e);
      const st: LogState = {
        log,
        member,
        primary: member && group[0] === this.id,
        sealed: false,
        target: this.view.startOf(log),
        backups: member ? group.slice(1) : [],
        entries,
        writing: [],
        lastWrite: Promise.resolve(),
        state,
        builder: null,
        acked: new Map(),
        ackedBoot: new Map(),
        recoveredFrom: new Set(),
        committed: 0,
        timer: null,
        cutQueued: false,
        cutWanted: false,
        lastCutAt: -Infinity,
        sentToStorage: entries.length,
        storageTimer: null,
      };
      this.logs.set(log, st);
      if (st.primary) this.recover(st);
    }
  }

  /**
   * Seals this node's logs in `term`: the primary cuts no more, backups accept no more
   * entries of the term. Resolves, once every write issued is durable, with how many
   * entries each log holds. A node already past `term` has nothing to report for it.
   */
  async seal(term: number): Promise<SealReport[]> {
    if (this.closed || term !== this.view.term) return [];
    const out: SealReport[] = [];
    for (const st of this.logs.values()) if (st.member) this.sealLog(st);
    for (const st of this.logs.values()) {
      if (!st.member) continue;
      await this.whenWritten(st);
      out.push({ log: st.log, term, length: st.entries.length });
    }
    this.o.logger.info({ term, logs: out }, "sequencer sealed its logs");
    return out;
  }

  /** No more cuts of `st`, and no more entries accepted for it. */
  private sealLog(st: LogState): void {
    st.sealed = true;
    if (st.timer !== null) this.o.clock.clearTimer(st.timer);
    st.timer = null;
  }

  /**
   * Moves to a later term: waits for the writes in flight, then reopens every log under the
   * new view (a new primary first fetches the sealed term's final entries it lacks from the
   * sequencers that hold them, then cuts the new term's shards).
   */
  async setView(view: View): Promise<void> {
    if (this.closed || view.term <= this.view.term) return;
    for (const st of this.logs.values()) {
      this.sealLog(st);
      if (st.storageTimer !== null) this.o.clock.clearTimer(st.storageTimer);
      st.storageTimer = null;
    }
    await Promise.all([...this.writes]);
    if (this.closed || view.term <= this.view.term) return;
    this.view = view;
    this.engines = view.config.engines;
    this.storages = view.allStorages();
    this.openLogs();
    this.armRetransmit();
    this.o.logger.info({ term: view.term }, "sequencer moved to a new term");
  }

  /** The committed metalog length of every log this node is the cutting primary of. */
  committedPositions(): Array<{ log: number; position: number }> {
    const out: Array<{ log: number; position: number }> = [];
    for (const st of this.logs.values()) {
      if (st.builder !== null && !st.sealed) out.push({ log: st.log, position: st.committed });
    }
    return out;
  }

  /** True when this node is the primary of `log` and may cut. */
  isCutting(log: number): boolean {
    return this.logs.get(log)?.builder != null;
  }

  private majority(st: LogState): number {
    return Math.floor((st.backups.length + 1) / 2) + 1;
  }

  /**
   * A primary first learns what its backups hold beyond its own disk, and fetches the
   * entries below where its term begins from every sequencer that held the log.
   */
  private recover(st: LogState): void {
    if (st.state.position < st.target) {
      for (const n of this.view.sequencersEver(st.log)) {
        if (n !== this.id)
          this.o.transport.send(n, { t: "metalog-fetch", log: st.log, from: st.state.position });
      }
    }
    if (this.majority(st) <= 1) {
      this.maybeStartCutting(st);
      return;
    }
    for (const b of st.backups) {
      if (!st.recoveredFrom.has(b)) {
        this.o.transport.send(b, { t: "metalog-fetch", log: st.log, from: st.entries.length });
      }
    }
  }

  private maybeStartCutting(st: LogState): void {
    if (st.state.position < st.target) return;
    if (st.recoveredFrom.size + 1 < this.majority(st)) return;
    if (st.writing.length === 0) {
      this.startCutting(st);
      return;
    }
    void this.whenWritten(st).then(() => {
      if (!this.closed && st.builder === null && this.logs.get(st.log) === st)
        this.startCutting(st);
    });
  }

  private startCutting(st: LogState): void {
    // What a majority holds is committed: this node's entries and the tails the backups
    // reported. Entries past that (a sealed term's tail only the old primary had, or this
    // node's own unreplicated ones) are committed once the backups acknowledge them, so a
    // following seal finds them on a majority.
    const copies = [st.entries.length, ...st.backups.map((b) => st.acked.get(b) ?? 0)].sort(
      (a, b) => b - a,
    );
    st.committed = Math.min(st.entries.length, copies[this.majority(st) - 1]!);
    st.builder = new CutBuilder(
      st.log as LogId,
      this.view.term,
      this.view.shards(),
      st.state.position,
      st.state.nextSeqnum,
      // A primary restarted within the term resumes from what its metalog ordered already.
      (shard) => st.state.shardEnd(shard as ShardId),
    );
    this.o.logger.debug({ log: st.log, position: st.committed }, "sequencer primary is cutting");
    // Engines and storage nodes may lack the entries that ended the sealed term: send the
    // last few (they ask for anything older they miss) and the committed tail.
    const from = Math.max(0, st.committed - RECOVERED_ENTRIES_SENT);
    this.broadcast(st, from, st.committed, this.engines);
    st.sentToStorage = from;
    if (st.committed > from) this.scheduleStorageSend(st);
  }

  private onMessage(from: NodeId, m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case "progress": {
        const st = this.logs.get(m.log);
        if (st?.builder == null || st.sealed || m.term !== this.view.term) return;
        for (const [shard, held] of m.held) st.builder.report(from, shard, held);
        this.scheduleCut(st);
        return;
      }
      case "metalog-fetch": {
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        // A primary serves committed entries only; a backup (or a sequencer of an earlier
        // term) serves what it holds, which a new primary needs when the old one is gone.
        const limit = st.primary ? st.committed : st.entries.length;
        const entries = st.entries.slice(
          m.from,
          Math.min(limit, m.from + METALOG_BATCH_ENTRIES_MAX),
        );
        this.o.transport.send(from, {
          t: "metalog",
          log: m.log,
          entries,
          tail: limit,
          term: this.view.term,
        });
        return;
      }
      case "metalog": {
        // Answers to a recovering primary's fetches.
        const st = this.logs.get(m.log);
        if (st === undefined || !st.primary || st.builder !== null) return;
        this.onRecoveryEntries(st, from, m);
        return;
      }
      case "metalog-replicate": {
        const st = this.logs.get(m.log);
        if (st === undefined || !st.member || st.primary || st.sealed || m.term !== this.view.term)
          return;
        let accepted = false;
        for (const e of m.entries) {
          if (e.position !== st.state.position) continue;
          const problem = st.state.check(e);
          if (problem !== null) {
            this.o.logger.error({ log: st.log, problem }, "backup rejected a metalog entry");
            break;
          }
          st.state.apply(e);
          this.write(st, e, () => this.ackPrimary(st));
          accepted = true;
        }
        // A duplicate or out-of-order batch: tell the primary where this backup is.
        if (!accepted) this.ackPrimary(st);
        return;
      }
      case "metalog-ack": {
        const st = this.logs.get(m.log);
        if (st?.builder == null || m.term !== this.view.term || !st.backups.includes(from)) return;
        // (a sealed primary still counts acknowledgements: what a majority holds is committed)
        const boot = st.ackedBoot.get(from) ?? -1;
        if (m.boot < boot) return; // from an earlier run, delivered late
        const held = Math.min(m.durable, st.entries.length + st.writing.length);
        if (m.boot > boot) {
          // A restarted backup holds what it says now, which may be less than its earlier
          // run acknowledged ("memory" durability loses unsynced writes with the machine):
          // the retransmit timer then sends it what it lacks.
          st.ackedBoot.set(from, m.boot);
          st.acked.set(from, held);
          this.advanceCommit(st);
        } else if (m.durable > (st.acked.get(from) ?? 0)) {
          st.acked.set(from, held);
          this.advanceCommit(st);
        }
        return;
      }
      default:
        this.o.logger.warn({ from, type: m.t }, "sequencer ignored an unexpected message");
    }
  }

  private onRecoveryEntries(st: LogState, from: NodeId, m: MetalogMsg): void {
    const backup = st.backups.includes(from);
    const before = st.state.position;
    for (const e of m.entries) {
      if (e.position !== st.state.position) continue;
      // Below where this term begins, entries come from anyone who held the log; past it,
      // only from this term's backups. Entries a sealed term never committed are void.
      if ((!backup && e.position >= st.target) || !this.view.isFinalEntry(st.log, e)) break;
      const problem = st.state.check(e);
      if (problem !== null) {
        this.o.logger.error(
          { log: st.log, problem },
          "recovering primary rejected a backup's entry",
        );
        return;
      }
      st.state.apply(e);
      this.write(st, e, () => undefined);
    }
    const wanted = backup ? m.tail : Math.min(m.tail, st.target);
    if (wanted > st.state.position && st.state.position > before) {
      // More to fetch from this node (the retransmit timer asks again if this batch gave nothing).
      this.o.transport.send(from, { t: "metalog-fetch", log: st.log, from: st.state.position });
      return;
    }
    // A backup's tail counts once it answers in this term: before it has moved here, its
    // tail may include entries a sealed term never committed.
    if (backup && m.term === this.view.term) {
      st.recoveredFrom.add(from);
      st.acked.set(from, Math.max(st.acked.get(from) ?? 0, Math.min(m.tail, st.state.position)));
    }
    this.maybeStartCutting(st);
  }

  /** Resolves once every write issued so far for the log is durable. */
  private whenWritten(st: LogState): Promise<void> {
    return st.lastWrite.then(() => undefined);
  }

  private ackPrimary(st: LogState): void {
    const primary = this.view.config.sequencers[st.log]![0]!;
    this.o.transport.send(primary, {
      t: "metalog-ack",
      log: st.log,
      term: this.view.term,
      durable: st.entries.length,
      boot: this.o.boot ?? 0,
    });
  }

  /** Entries this primary has cut (or recovered) but not yet seen committed. */
  private inFlight(st: LogState): number {
    return st.entries.length + st.writing.length - st.committed;
  }

  /**
   * Cuts after this turn's reports have all arrived, unless the pipeline is full (the cut
   * then follows the next commit) or the last cut was under `cutIntervalMs` ago.
   */
  private scheduleCut(st: LogState): void {
    if (st.cutQueued || st.timer !== null || st.sealed) return;
    if (this.inFlight(st) >= CUTS_IN_FLIGHT_MAX) {
      st.cutWanted = true;
      return;
    }
    st.cutWanted = false;
    const wait = st.lastCutAt + this.cutIntervalMs - this.o.clock.now();
    if (wait > 0) {
      st.timer = this.o.clock.setTimer(wait, () => {
        st.timer = null;
        this.cut(st);
      });
      return;
    }
    st.cutQueued = true;
    this.o.clock.afterTurn(() => {
      st.cutQueued = false;
      this.cut(st);
    });
  }

  private cut(st: LogState): void {
    if (this.closed || st.builder === null || st.sealed) return;
    if (this.inFlight(st) >= CUTS_IN_FLIGHT_MAX) {
      st.cutWanted = true;
      return;
    }
    const entry = st.builder.cut();
    if (entry === null) return;
    st.lastCutAt = this.o.clock.now();
    st.state.apply(entry);
    this.write(st, entry, () => this.advanceCommit(st));
    if (st.backups.length > 0) {
      const msg: Message = {
        t: "metalog-replicate",
        log: st.log,
        term: this.view.term,
        entries: [entry],
      };
      for (const b of st.backups) this.o.transport.send(b, msg);
    }
  }

  /**
   * Writes an entry at once, without waiting for earlier writes: the store commits writes
   * in the order they were issued, so writes overlap and batch. `onDurable` runs once the
   * entry and every earlier one are durable.
   */
  private write(st: LogState, entry: MetalogEntry, onDurable: () => void): void {
    const item = { entry, durable: false };
    st.writing.push(item);
    const p = this.o.store.writeMetalog([entry]).then(
      () => {
        item.durable = true;
        let moved = false;
        while (st.writing.length > 0 && st.writing[0]!.durable) {
          st.entries.push(st.writing.shift()!.entry);
          moved = true;
        }
        if (moved && !this.closed) onDurable();
      },
      (err: unknown) => {
        // A sequencer that cannot persist its metalog must not order or acknowledge anything more.
        this.o.logger.error({ err, log: st.log }, "metalog persist failed; sequencer stops");
        if (!this.closed) {
          this.closed = true;
          this.o.onFatal?.(err);
        }
      },
    );
    st.lastWrite = p;
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
  }

  /** Commits what a majority holds and broadcasts newly committed entries in order. */
  private advanceCommit(st: LogState): void {
    const copies = [st.entries.length, ...st.backups.map((b) => st.acked.get(b) ?? 0)].sort(
      (a, b) => b - a,
    );
    const committed = copies[this.majority(st) - 1]!;
    if (committed <= st.committed) return;
    const from = st.committed;
    st.committed = committed;
    if (st.cutWanted) this.scheduleCut(st);
    this.broadcast(st, from, committed, this.engines);
    this.scheduleStorageSend(st);
  }

  /** Sends storage nodes the committed entries they were not sent, after a short gathering. */
  private scheduleStorageSend(st: LogState): void {
    st.storageTimer ??= this.o.clock.setTimer(METALOG_TO_STORAGE_INTERVAL_MS, () => {
      st.storageTimer = null;
      if (this.closed || this.logs.get(st.log) !== st) return;
      const sent = st.sentToStorage;
      st.sentToStorage = st.committed;
      this.broadcast(st, sent, st.committed, this.storages);
    });
  }

  /** Sends committed entries [from, to) to `nodes`, in batches. */
  private broadcast(st: LogState, from: number, to: number, nodes: readonly NodeId[]): void {
    for (let i = from; i < to; i += METALOG_BATCH_ENTRIES_MAX) {
      const batch = st.entries.slice(i, Math.min(to, i + METALOG_BATCH_ENTRIES_MAX));
      const msg: Message = { t: "metalog", log: st.log, entries: batch, tail: st.committed };
      for (const n of nodes) this.o.transport.send(n, msg);
    }
  }

  /** Resends entries backups have not acknowledged, and re-asks backups while recovering. */
  private armRetransmit(): void {
    if (this.closed || this.retransmitTimer !== null) return;
    const needed = [...this.logs.values()].some(
      (st) => st.primary && (st.backups.length > 0 || st.builder === null),
    );
    if (!needed) return;
    this.retransmitTimer = this.o.clock.setTimer(METALOG_RETRANSMIT_MS, () => {
      this.retransmitTimer = null;
      for (const st of this.logs.values()) {
        if (!st.primary) continue;
        if (st.builder === null) {
          this.recover(st);
          continue;
        }
        for (const b of st.backups) {
          const at = st.acked.get(b) ?? 0;
          if (at >= st.entries.length) continue;
          const entries = st.entries.slice(at, at + METALOG_BATCH_ENTRIES_MAX);
          this.o.transport.send(b, {
            t: "metalog-replicate",
            log: st.log,
            term: this.view.term,
            entries,
          });
        }
      }
      this.armRetransmit();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const st of this.logs.values()) {
      if (st.timer !== null) this.o.clock.clearTimer(st.timer);
      if (st.storageTimer !== null) this.o.clock.clearTimer(st.storageTimer);
    }
    if (this.retransmitTimer !== null) this.o.clock.clearTimer(this.retransmitTimer);
    await Promise.all([...this.writes]);
    this.o.transport.close();
  }
}
