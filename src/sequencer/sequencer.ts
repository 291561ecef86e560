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
import type { LogId } from "../log/types.js";
import { CUT_INTERVAL_MS_DEFAULT } from "../log/limits.js";

/** Most entries sent in one metalog message (answering a fetch, or to a backup). */
export const METALOG_BATCH_ENTRIES_MAX = 1024;
/**
 * Most entries a primary has cut but not yet committed; further progress waits for a commit
 * and then goes into one entry.
 */
export const CUTS_IN_FLIGHT_MAX = 1;
/**
 * How long a primary gathers committed entries before it sends them to the storage nodes.
 * Engines get every commit at once (appends wait for it); storage nodes need the metalog
 * only to find records by sequence number, and fetch it themselves when a read gets ahead.
 */
export const METALOG_TO_STORAGE_INTERVAL_MS = 20;
/** How often a primary resends unacknowledged entries and re-asks backups while recovering. */
export const METALOG_RETRANSMIT_MS = 50;

export interface SequencerOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  readonly store: MetalogStore;
  readonly view: View;
  readonly logger: Logger;
  readonly cutIntervalMs?: number;
}

interface LogState {
  readonly log: number;
  readonly primary: boolean;
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

export class Sequencer {
  readonly id: NodeId;
  private readonly logs = new Map<number, LogState>();
  private readonly cutIntervalMs: number;
  private readonly engines: readonly NodeId[];
  private readonly storages: readonly NodeId[];
  private closed = false;
  private readonly writes = new Set<Promise<void>>();
  private retransmitTimer: TimerHandle | null = null;

  constructor(private readonly o: SequencerOptions) {
    this.id = o.transport.self;
    this.cutIntervalMs = o.cutIntervalMs ?? CUT_INTERVAL_MS_DEFAULT;
    const c = o.view.config;
    this.engines = c.engines;
    this.storages = c.storages;
    o.transport.onMessage((from, m) => this.onMessage(from, m));
  }

  /** Loads the persisted metalog of every log this node sequences and starts serving them. */
  start(): void {
    const c = this.o.view.config;
    for (let log = 0; log < c.physicalLogs; log++) {
      const group = c.sequencers[log]!;
      if (!group.includes(this.id)) continue;
      const entries = this.o.store.loadMetalog(log);
      const state = new MetalogState(log);
      for (const e of entries) state.apply(e);
      const st: LogState = {
        log,
        primary: group[0] === this.id,
        backups: group.slice(1),
        entries,
        writing: [],
        lastWrite: Promise.resolve(),
        state,
        builder: null,
        acked: new Map(),
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
    this.armRetransmit();
  }

  /** True when this node is the primary of `log` and may cut. */
  isCutting(log: number): boolean {
    return this.logs.get(log)?.builder != null;
  }

  private majority(st: LogState): number {
    return Math.floor((st.backups.length + 1) / 2) + 1;
  }

  /** A primary first learns what its backups hold beyond its own disk. */
  private recover(st: LogState): void {
    if (this.majority(st) <= 1) {
      this.startCutting(st);
      return;
    }
    for (const b of st.backups) {
      if (!st.recoveredFrom.has(b)) {
        this.o.transport.send(b, { t: "metalog-fetch", log: st.log, from: st.entries.length });
      }
    }
  }

  private startCutting(st: LogState): void {
    // Everything this primary holds was cut by a primary of this or an earlier term and is
    // now on a majority (it is here, and recovery took the longest tail): committed.
    st.committed = st.entries.length;
    st.builder = new CutBuilder(
      st.log as LogId,
      this.o.view.term,
      this.o.view.shards(),
      st.state.position,
      st.state.nextSeqnum,
    );
    this.o.logger.debug({ log: st.log, position: st.committed }, "sequencer primary is cutting");
  }

  private onMessage(from: NodeId, m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case "progress": {
        const st = this.logs.get(m.log);
        if (st?.builder == null || m.term !== this.o.view.term) return;
        for (const [shard, held] of m.held) st.builder.report(from, shard, held);
        this.scheduleCut(st);
        return;
      }
      case "metalog-fetch": {
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        // A primary serves committed entries only; a backup serves what it holds.
        const limit = st.primary ? st.committed : st.entries.length;
        const entries = st.entries.slice(
          m.from,
          Math.min(limit, m.from + METALOG_BATCH_ENTRIES_MAX),
        );
        this.o.transport.send(from, { t: "metalog", log: m.log, entries, tail: limit });
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
        if (st === undefined || st.primary || m.term !== this.o.view.term) return;
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
        if (st?.builder == null || m.term !== this.o.view.term || !st.backups.includes(from))
          return;
        if (m.durable > (st.acked.get(from) ?? 0)) {
          st.acked.set(from, Math.min(m.durable, st.entries.length + st.writing.length));
          this.advanceCommit(st);
        }
        return;
      }
      default:
        this.o.logger.warn({ from, type: m.t }, "sequencer ignored an unexpected message");
    }
  }

  private onRecoveryEntries(st: LogState, from: NodeId, m: MetalogMsg): void {
    for (const e of m.entries) {
      if (e.position !== st.state.position) continue;
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
    if (m.tail > st.state.position) {
      // More to fetch from this backup.
      this.o.transport.send(from, { t: "metalog-fetch", log: st.log, from: st.state.position });
      return;
    }
    st.recoveredFrom.add(from);
    if (st.recoveredFrom.size + 1 >= this.majority(st)) {
      void this.whenWritten(st).then(() => {
        if (!this.closed && st.builder === null) this.startCutting(st);
      });
    }
  }

  /** Resolves once every write issued so far for the log is durable. */
  private whenWritten(st: LogState): Promise<void> {
    return st.lastWrite.then(() => undefined);
  }

  private ackPrimary(st: LogState): void {
    const primary = this.o.view.config.sequencers[st.log]![0]!;
    this.o.transport.send(primary, {
      t: "metalog-ack",
      log: st.log,
      term: this.o.view.term,
      durable: st.entries.length,
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
    if (st.cutQueued || st.timer !== null) return;
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
    if (this.closed || st.builder === null) return;
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
        term: this.o.view.term,
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
        this.closed = true;
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
    st.storageTimer ??= this.o.clock.setTimer(METALOG_TO_STORAGE_INTERVAL_MS, () => {
      st.storageTimer = null;
      if (this.closed) return;
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
    const needed = [...this.logs.values()].some((st) => st.primary && st.backups.length > 0);
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
            term: this.o.view.term,
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
