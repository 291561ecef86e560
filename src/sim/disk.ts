/**
 * A simulated disk for deterministic tests: storage's backend and a sequencer's metalog
 * store, in memory, on a `Clock`.
 *
 * A write is applied at once to what reads see, as lmdb reads see writes not yet on disk,
 * and becomes durable later: after `latencyMs()` (called once per write, in issue order,
 * so a seeded source gives the same run every time), but never before the writes issued
 * earlier, so one disk's writes complete in issue order. A write's promise resolves when
 * it is durable. A slow disk is just a large latency.
 *
 * Without `sync` (lmdb without fsync, as storage and sequencers run with "memory"
 * durability) a write's promise resolves at once, while the write becomes durable only
 * `UNSYNCED_FLUSH_MS` after its latency, when the operating system would have written it.
 *
 * While `failing` is set, the disk is broken: every write fails with an I/O error after its
 * latency and changes nothing.
 *
 * `crash()` is a power loss: writes not yet durable are lost, reads see only what was
 * durable, and the lost writes' promises never settle. Until `reopen()`, writes are
 * refused (their promises never settle and they change nothing); reads still work and see
 * the durable state. `close()` is a clean shutdown: everything written becomes durable,
 * and the disk can be used again by the next instance.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import type { MetalogEntry } from "../log/metalog.js";
import { droppedPayloadOf } from "../log/record.js";
import type { MetalogStore } from "../sequencer/metalog-store.js";
import type { StorageBackend } from "../storage/backend.js";

export interface SimDiskOptions {
  readonly clock: Clock;
  /** How long the next write takes, in milliseconds; called once per accepted write. */
  readonly latencyMs: () => number;
  readonly name?: string;
  /** Whether a write resolves only once durable (default true). */
  readonly sync?: boolean;
}

/** How long an unsynced write stays in memory only, after its latency. */
export const UNSYNCED_FLUSH_MS = 500;

export interface SimDiskStats {
  /** Writes accepted (not refused). */
  readonly issued: number;
  /** Writes that became durable. */
  readonly completed: number;
  /** Writes lost in crashes before they were durable. */
  readonly lost: number;
  /** Writes refused because the disk was crashed. */
  readonly refused: number;
}

/** One shard's records by local id, and how many are contiguous from local id 0. */
interface ShardRecords {
  readonly records: Array<Uint8Array | undefined>;
  end: number;
}

/** Everything a disk holds. Stored values are replaced, never changed in place. */
class DiskState {
  readonly records = new Map<string, ShardRecords>();
  readonly aux = new Map<number, Map<number, Uint8Array>>();
  readonly metalog = new Map<number, Map<number, MetalogEntry>>();
  readonly meta = new Map<string, unknown>();

  clone(): DiskState {
    const c = new DiskState();
    for (const [k, s] of this.records) c.records.set(k, { records: s.records.slice(), end: s.end });
    for (const [log, m] of this.aux) c.aux.set(log, new Map(m));
    for (const [log, m] of this.metalog) c.metalog.set(log, new Map(m));
    for (const [k, v] of this.meta) c.meta.set(k, v);
    return c;
  }

  record(log: number, shard: number, localId: number): Uint8Array | undefined {
    return this.records.get(`${log}/${shard}`)?.records[localId];
  }

  shardEnd(log: number, shard: number): number {
    return this.records.get(`${log}/${shard}`)?.end ?? 0;
  }

  setRecords(log: number, shard: number, first: number, records: readonly Uint8Array[]): void {
    const key = `${log}/${shard}`;
    let s = this.records.get(key);
    if (s === undefined) {
      s = { records: [], end: 0 };
      this.records.set(key, s);
    }
    for (let i = 0; i < records.length; i++) s.records[first + i] = records[i];
    while (s.records[s.end] !== undefined) s.end++;
  }

  putMetalog(entries: readonly MetalogEntry[]): void {
    for (const e of entries) {
      let m = this.metalog.get(e.log);
      if (m === undefined) {
        m = new Map();
        this.metalog.set(e.log, m);
      }
      m.set(e.position, e);
    }
  }
}

interface PendingWrite {
  readonly at: number;
  readonly apply: (s: DiskState) => void;
  readonly resolve: () => void;
}

const NEVER: Promise<void> = new Promise<void>(() => undefined);

export class SimDisk implements StorageBackend, MetalogStore {
  readonly name: string;
  private readonly clock: Clock;
  private readonly latencyMs: () => number;
  private readonly sync: boolean;
  /** What reads see: the durable state with every pending write applied, in issue order. */
  private visible = new DiskState();
  private readonly durable = new DiskState();
  /** Writes not yet durable, in issue order (and so in completion-time order), from `head`. */
  private queue: PendingWrite[] = [];
  private head = 0;
  /** Armed for the first pending write. */
  private timer: TimerHandle | null = null;
  private isCrashed = false;
  /** Writes fail (a broken disk) while set. */
  failing = false;
  private issued = 0;
  private completed = 0;
  private lost = 0;
  private refused = 0;

  constructor(options: SimDiskOptions) {
    this.clock = options.clock;
    this.latencyMs = options.latencyMs;
    this.name = options.name ?? "disk";
    this.sync = options.sync ?? true;
  }

  get crashed(): boolean {
    return this.isCrashed;
  }

  get pendingWrites(): number {
    return this.queue.length - this.head;
  }

  get stats(): SimDiskStats {
    return {
      issued: this.issued,
      completed: this.completed,
      lost: this.lost,
      refused: this.refused,
    };
  }

  /** How many records of the shard are durable, contiguously from local id 0. */
  durableShardEnd(log: number, shard: number): number {
    return this.durable.shardEnd(log, shard);
  }

  /** Power loss: writes not yet durable are lost and their promises never settle. */
  crash(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    this.lost += this.pendingWrites;
    this.queue = [];
    this.head = 0;
    this.visible = this.durable.clone();
    this.isCrashed = true;
  }

  /**
   * The process was killed but the machine stayed up: what was written reaches the disk
   * (the operating system still holds it), though nobody hears back. Writes are refused
   * until `reopen()`.
   */
  kill(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    while (this.pendingWrites > 0) {
      const w = this.queue[this.head++]!;
      w.apply(this.durable);
      this.completed++;
    }
    this.queue = [];
    this.head = 0;
    this.isCrashed = true;
  }

  /** Power is back: the disk accepts writes again, holding what was durable. */
  reopen(): void {
    this.isCrashed = false;
  }

  /** A clean shutdown: every pending write becomes durable now. The state stays. */
  close(): Promise<void> {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    while (this.pendingWrites > 0) this.complete();
    return Promise.resolve();
  }

  private issue(apply: (s: DiskState) => void): Promise<void> {
    if (this.isCrashed) {
      this.refused++;
      return NEVER;
    }
    const latency = this.latencyMs();
    if (this.failing) {
      return new Promise<void>((_, reject) => {
        this.clock.setTimer(Math.max(0, latency), () =>
          reject(new Error(`${this.name}: write failed: I/O error`)),
        );
      });
    }
    let at = this.clock.now() + Math.max(0, latency) + (this.sync ? 0 : UNSYNCED_FLUSH_MS);
    if (this.pendingWrites > 0) at = Math.max(at, this.queue[this.queue.length - 1]!.at);
    apply(this.visible);
    this.issued++;
    return new Promise<void>((resolve) => {
      if (!this.sync) this.clock.afterTurn(resolve);
      this.queue.push({ at, apply, resolve: this.sync ? resolve : () => undefined });
      if (this.timer === null) this.arm();
    });
  }

  private arm(): void {
    const first = this.queue[this.head]!;
    this.timer = this.clock.setTimer(Math.max(0, first.at - this.clock.now()), () => this.due());
  }

  /** The first pending write's time has come: it, and any due with it, become durable. */
  private due(): void {
    this.timer = null;
    const now = this.clock.now();
    do this.complete();
    while (this.pendingWrites > 0 && this.queue[this.head]!.at <= now);
    if (this.pendingWrites > 0) this.arm();
  }

  private complete(): void {
    const w = this.queue[this.head]!;
    this.head++;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    w.apply(this.durable);
    this.completed++;
    w.resolve();
  }

  writeRecords(
    log: number,
    shard: number,
    first: number,
    records: readonly Uint8Array[],
  ): Promise<void> {
    const rs = records.slice();
    return this.issue((s) => s.setRecords(log, shard, first, rs));
  }

  readRecord(log: number, shard: number, localId: number): Uint8Array | undefined {
    return this.visible.record(log, shard, localId);
  }

  shardEnd(log: number, shard: number): number {
    return this.visible.shardEnd(log, shard);
  }

  truncatePayloads(
    log: number,
    records: ReadonlyArray<readonly [shard: number, localId: number]>,
  ): Promise<void> {
    const headers: Array<readonly [shard: number, localId: number, header: Uint8Array]> = [];
    for (const [shard, localId] of records) {
      const r = this.visible.record(log, shard, localId);
      // A copy, so that the payload's memory is not kept.
      if (r !== undefined) headers.push([shard, localId, droppedPayloadOf(r)]);
    }
    return this.issue((s) => {
      for (const [shard, localId, header] of headers) {
        if (s.record(log, shard, localId) !== undefined)
          s.setRecords(log, shard, localId, [header]);
      }
    });
  }

  writeAux(log: number, seqnum: number, data: Uint8Array): Promise<void> {
    return this.issue((s) => {
      let m = s.aux.get(log);
      if (m === undefined) {
        m = new Map();
        s.aux.set(log, m);
      }
      m.set(seqnum, data);
    });
  }

  readAux(log: number, seqnum: number): Uint8Array | undefined {
    return this.visible.aux.get(log)?.get(seqnum);
  }

  deleteAux(log: number, seqnums: readonly number[]): Promise<void> {
    const ss = seqnums.slice();
    return this.issue((s) => {
      const m = s.aux.get(log);
      if (m !== undefined) for (const n of ss) m.delete(n);
    });
  }

  copyMetalog(entries: readonly MetalogEntry[]): Promise<void> {
    const es = entries.slice();
    return this.issue((s) => s.putMetalog(es));
  }

  writeMetalog(entries: readonly MetalogEntry[]): Promise<void> {
    const es = entries.slice();
    return this.issue((s) => s.putMetalog(es));
  }

  /** The log's entries, ascending by position; an entry written again replaces the first. */
  loadMetalog(log: number): MetalogEntry[] {
    const m = this.visible.metalog.get(log);
    if (m === undefined) return [];
    return [...m.keys()].sort((a, b) => a - b).map((p) => m.get(p)!);
  }

  /** A copy of the stored value, as a serializing store would return. */
  readMeta(key: string): unknown {
    return structuredClone(this.visible.meta.get(key));
  }

  writeMeta(key: string, value: unknown): Promise<void> {
    const v = structuredClone(value);
    return this.issue((s) => s.meta.set(key, v));
  }
}
