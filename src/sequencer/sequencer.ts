/**
 * A sequencer: for each physical log it is primary of, it turns storage progress reports
 * into metalog cuts, persists each entry before anyone hears of it, and broadcasts
 * committed entries to engines and storage nodes. Entries are cut at most once per
 * `cutIntervalMs`, so one entry orders everything that became durable meanwhile.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import type { Message } from "../protocol/messages.js";
import type { NodeId, Transport } from "../transport/transport.js";
import type { Logger } from "../util/logger.js";
import type { MetalogStore } from "./metalog-store.js";
import { CutBuilder, MetalogState, type MetalogEntry } from "../log/metalog.js";
import type { View } from "../log/view.js";
import type { LogId } from "../log/types.js";
import { CUT_INTERVAL_MS_DEFAULT } from "../log/limits.js";

/** Most entries sent in one metalog message answering a fetch. */
export const METALOG_FETCH_BATCH_ENTRIES_MAX = 1024;

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
  readonly builder: CutBuilder;
  /** Every committed entry, for fetches. */
  readonly entries: MetalogEntry[];
  /** Writes of cut entries, oldest first; each is broadcast once it and all before it are durable. */
  readonly persisting: Array<{ entry: MetalogEntry; durable: boolean }>;
  timer: TimerHandle | null;
  cutQueued: boolean;
}

export class Sequencer {
  readonly id: NodeId;
  private readonly logs = new Map<number, LogState>();
  private readonly cutIntervalMs: number;
  private readonly subscribers: NodeId[];
  private closed = false;
  private persistsInFlight = new Set<Promise<void>>();

  constructor(private readonly o: SequencerOptions) {
    this.id = o.transport.self;
    this.cutIntervalMs = o.cutIntervalMs ?? CUT_INTERVAL_MS_DEFAULT;
    const c = o.view.config;
    this.subscribers = [...c.engines, ...c.storages];
    o.transport.onMessage((from, m) => this.onMessage(from, m));
  }

  /** Loads the persisted metalogs of the logs this node is primary of and starts cutting in the view's term. */
  start(): void {
    const c = this.o.view.config;
    for (let log = 0; log < c.physicalLogs; log++) {
      if (this.o.view.primarySequencer(log) !== this.id) continue;
      const entries = this.o.store.loadMetalog(log);
      const state = new MetalogState(log);
      for (const e of entries) state.apply(e);
      const builder = new CutBuilder(
        log as LogId,
        this.o.view.term,
        this.o.view.shards(),
        state.position,
        state.nextSeqnum,
      );
      this.logs.set(log, {
        log,
        builder,
        entries,
        persisting: [],
        timer: null,
        cutQueued: false,
      });
    }
  }

  private onMessage(from: NodeId, m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case "progress": {
        const st = this.logs.get(m.log);
        if (st === undefined || m.term !== this.o.view.term) return;
        for (const [shard, held] of m.held) st.builder.report(from, shard, held);
        if (this.cutIntervalMs === 0) {
          // Cut once everything delivered in this turn has been reported.
          if (!st.cutQueued) {
            st.cutQueued = true;
            queueMicrotask(() => this.cut(st));
          }
        } else if (st.timer === null) {
          st.timer = this.o.clock.setTimer(this.cutIntervalMs, () => this.cut(st));
        }
        return;
      }
      case "metalog-fetch": {
        const st = this.logs.get(m.log);
        if (st === undefined) return;
        const entries = st.entries.slice(m.from, m.from + METALOG_FETCH_BATCH_ENTRIES_MAX);
        this.o.transport.send(from, { t: "metalog", log: m.log, entries, tail: st.entries.length });
        return;
      }
      default:
        this.o.logger.warn({ from, type: m.t }, "sequencer ignored an unexpected message");
    }
  }

  private cut(st: LogState): void {
    st.timer = null;
    st.cutQueued = false;
    if (this.closed) return;
    const entry = st.builder.cut();
    if (entry === null) return;
    this.persist(st, entry);
  }

  /**
   * Writes an entry at once, without waiting for earlier writes: the store commits writes
   * in the order they were issued, so writes overlap and batch. Entries are broadcast
   * strictly in order, each once it and every earlier one are durable.
   */
  private persist(st: LogState, entry: MetalogEntry): void {
    const item = { entry, durable: false };
    st.persisting.push(item);
    const p = this.o.store.writeMetalog([entry]).then(
      () => {
        item.durable = true;
        const batch: MetalogEntry[] = [];
        while (st.persisting.length > 0 && st.persisting[0]!.durable) {
          const e = st.persisting.shift()!.entry;
          st.entries.push(e);
          batch.push(e);
        }
        if (batch.length === 0 || this.closed) return;
        const msg: Message = { t: "metalog", log: st.log, entries: batch, tail: st.entries.length };
        for (const n of this.subscribers) this.o.transport.send(n, msg);
      },
      (err: unknown) => {
        // A sequencer that cannot persist its metalog must not order anything more.
        this.o.logger.error(
          { err, log: st.log },
          "metalog persist failed; sequencer stops cutting",
        );
        this.closed = true;
      },
    );
    this.persistsInFlight.add(p);
    void p.finally(() => this.persistsInFlight.delete(p));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const st of this.logs.values()) if (st.timer !== null) this.o.clock.clearTimer(st.timer);
    await Promise.all([...this.persistsInFlight]);
    this.o.transport.close();
  }
}
