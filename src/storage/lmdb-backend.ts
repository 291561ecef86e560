/**
 * Storage on lmdb. Records are stored as the batches they arrived in (one lmdb value per
 * batch, keyed by (log, shard, first local id) in big-endian binary), so writing a batch
 * of records costs one put, and reading record i finds its batch with one reverse seek.
 * Without a WAL, lmdb-js batches every write issued in the same turn of the event loop into
 * one transaction: that is the group commit. With `overlappingSync` off, a write's promise
 * resolves only after the commit is on disk.
 *
 * With a write-ahead log (`wal: true`), records and metalog entries are durable once their
 * WAL frame is synced (one fdatasync of preallocated space, about half of an lmdb commit,
 * which syncs twice); they are then written to lmdb in the background, gathered into one
 * transaction every `CHECKPOINT_INTERVAL_MS`, and served from memory until that commit is
 * on disk. At open, frames left in the WAL are replayed.
 */
import { open, type Database, type RootDatabase } from "lmdb";
import { mkdirSync } from "node:fs";
import type { MetalogEntry } from "../log/metalog.js";
import type { StorageBackend } from "./backend.js";
import type { MetalogStore } from "../sequencer/metalog-store.js";
import { pack, unpack } from "msgpackr";
import { join } from "node:path";
import { Wal, WAL_SEGMENT_BYTES_DEFAULT } from "./wal.js";
import { invariant } from "../log/assert.js";
import { droppedPayloadOf } from "../log/record.js";

export interface LmdbOptions {
  /** When false, commits are not fsync'ed: faster, but a machine crash may lose acknowledged data. */
  readonly sync?: boolean;
  /** Upper bound of the memory map; the data file grows up to it. */
  readonly mapSizeBytes?: number;
  /** Make writes durable through a write-ahead log in `<dir>/wal` (see above). */
  readonly wal?: boolean;
  readonly walSegmentBytes?: number;
}

const FRAME_RECORDS = 1;
const FRAME_METALOG = 2;

function recordsFrame(
  log: number,
  shard: number,
  first: number,
  records: readonly Uint8Array[],
): Buffer {
  let bytes = 1 + 2 + 6 + 6 + 4;
  for (const r of records) bytes += 4 + r.length;
  const f = Buffer.allocUnsafe(bytes);
  f[0] = FRAME_RECORDS;
  f.writeUInt16BE(log, 1);
  f.writeUIntBE(shard, 3, 6);
  f.writeUIntBE(first, 9, 6);
  f.writeUInt32BE(records.length, 15);
  let off = 19;
  for (const r of records) {
    f.writeUInt32BE(r.length, off);
    f.set(r, off + 4);
    off += 4 + r.length;
  }
  return f;
}

interface RecordsFrame {
  readonly log: number;
  readonly shard: number;
  readonly first: number;
  readonly count: number;
}

function frameHead(f: Uint8Array): RecordsFrame {
  const b = Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  return {
    log: b.readUInt16BE(1),
    shard: b.readUIntBE(3, 6),
    first: b.readUIntBE(9, 6),
    count: b.readUInt32BE(15),
  };
}

/** The records of a frame, as views into it. */
function frameRecords(f: Uint8Array): Uint8Array[] {
  const b = Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  const n = b.readUInt32BE(15);
  const out: Uint8Array[] = new Array<Uint8Array>(n);
  let off = 19;
  for (let i = 0; i < n; i++) {
    const len = b.readUInt32BE(off);
    out[i] = b.subarray(off + 4, off + 4 + len);
    off += 4 + len;
  }
  return out;
}

function asBuffer(f: Uint8Array): Buffer {
  return Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

/** Where each record's length prefix sits in a frame. */
function frameOffsets(b: Buffer): Uint32Array {
  const n = b.readUInt32BE(15);
  const out = new Uint32Array(n);
  let off = 19;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    off += 4 + b.readUInt32BE(off);
  }
  return out;
}

function recordAt(b: Buffer, offsets: Uint32Array, index: number): Uint8Array {
  const off = offsets[index]!;
  return b.subarray(off + 4, off + 4 + b.readUInt32BE(off));
}

function metalogFrame(entries: readonly MetalogEntry[]): Buffer {
  const body = pack(entries);
  const f = Buffer.allocUnsafe(1 + body.length);
  f[0] = FRAME_METALOG;
  f.set(body, 1);
  return f;
}

const MAP_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024 * 1024;
/**
 * How long checkpoint writes (batches and metalog entries already durable in the WAL, and
 * storage's copy of the metalog) gather before they go to lmdb in one transaction: one
 * commit, and one promise, per interval instead of one per write.
 */
export const CHECKPOINT_INTERVAL_MS = 50;
/** Most writes gathered for one checkpoint transaction; one more starts it at once. */
export const CHECKPOINT_WRITES_MAX = 4096;
/** Most aux data bytes gathered for one checkpoint transaction; more starts it at once. */
export const AUX_GATHERED_BYTES_MAX = 16 * 1024 * 1024;

function recordKey(log: number, shard: number, localId: number): Buffer {
  const k = Buffer.allocUnsafe(14);
  k.writeUInt16BE(log, 0);
  k.writeUIntBE(shard, 2, 6);
  k.writeUIntBE(localId, 8, 6);
  return k;
}

function seqKey(log: number, n: number): Buffer {
  const k = Buffer.allocUnsafe(8);
  k.writeUInt16BE(log, 0);
  k.writeUIntBE(n, 2, 6);
  return k;
}

export class LmdbBackend implements StorageBackend, MetalogStore {
  private readonly root: RootDatabase;
  private readonly records: Database<Uint8Array, Buffer>;
  private readonly aux: Database<Uint8Array, Buffer>;
  private readonly metalog: Database<MetalogEntry, Buffer>;
  private readonly meta: Database<unknown, string>;

  private wal: Wal | null = null;
  /** Batches durable in the WAL but not yet in an lmdb commit on disk, per `${log}/${shard}`. */
  private readonly memtable = new Map<
    string,
    Array<{ first: number; records: readonly Uint8Array[] }>
  >();
  private readonly checkpoints = new Set<Promise<unknown>>();
  /** Writes waiting for the next checkpoint transaction. */
  private gathered: Array<{
    write: () => void;
    resolve: () => void;
    reject: (err: unknown) => void;
  }> = [];
  private gatherTimer: NodeJS.Timeout | null = null;
  /** Aux data gathered for the next checkpoint transaction (with a WAL), by `${log}:${seqnum}`. */
  private readonly auxGathered = new Map<string, Uint8Array>();
  private auxGatheredBytes = 0;
  /** The batch read last, parsed. */
  private lastFrame: { head: RecordsFrame; frame: Buffer; offsets: Uint32Array } | null = null;

  /** Opens a backend; with a WAL, first replays what the WAL holds into lmdb. */
  static async open(dir: string, options: LmdbOptions = {}): Promise<LmdbBackend> {
    const b = new LmdbBackend(dir, options);
    if (options.wal === true) {
      const { wal, frames, recovered } = Wal.open({
        dir: join(dir, "wal"),
        sync: options.sync ?? true,
        segmentBytes: options.walSegmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT,
      });
      let last: Promise<unknown> | undefined;
      for (const f of frames) last = b.applyFrame(f);
      if (last !== undefined) await last;
      await b.root.flushed;
      recovered();
      b.wal = wal;
    }
    return b;
  }

  constructor(dir: string, options: LmdbOptions = {}) {
    mkdirSync(dir, { recursive: true });
    this.root = open({
      path: dir,
      noSync: options.sync === false,
      overlappingSync: false,
      mapSize: options.mapSizeBytes ?? MAP_SIZE_BYTES_DEFAULT,
      maxDbs: 8,
    });
    this.records = this.root.openDB({ name: "records", encoding: "binary", keyEncoding: "binary" });
    this.aux = this.root.openDB({ name: "aux", encoding: "binary", keyEncoding: "binary" });
    this.metalog = this.root.openDB({
      name: "metalog",
      encoding: "msgpack",
      keyEncoding: "binary",
    });
    this.meta = this.root.openDB({ name: "meta", encoding: "msgpack" });
  }

  /** Writes one WAL frame's contents to lmdb; resolves when that commit is on disk. */
  private applyFrame(f: Buffer): Promise<unknown> {
    if (f[0] === FRAME_METALOG) return this.putMetalog(unpack(f.subarray(1)) as MetalogEntry[]);
    invariant(f[0] === FRAME_RECORDS, `unknown WAL frame type ${f[0]}`);
    const h = frameHead(f);
    return this.records.put(recordKey(h.log, h.shard, h.first), f);
  }

  private putMetalog(entries: readonly MetalogEntry[]): Promise<unknown> {
    let last: Promise<unknown> = Promise.resolve();
    for (const e of entries) last = this.metalog.put(seqKey(e.log, e.position), e);
    return last;
  }

  private putMetalogSync(entries: readonly MetalogEntry[]): void {
    for (const e of entries) this.metalog.putSync(seqKey(e.log, e.position), e);
  }

  /**
   * Queues `write` (synchronous lmdb writes) for the next checkpoint transaction, which
   * starts `CHECKPOINT_INTERVAL_MS` after the first queued write (or at once when
   * `CHECKPOINT_WRITES_MAX` are queued); resolves once that transaction is committed.
   */
  private gather(write: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.gathered.push({ write, resolve, reject });
      if (this.gathered.length >= CHECKPOINT_WRITES_MAX) this.commitGathered();
      else this.gatherTimer ??= setTimeout(() => this.commitGathered(), CHECKPOINT_INTERVAL_MS);
    });
  }

  private commitGathered(): void {
    if (this.gatherTimer !== null) clearTimeout(this.gatherTimer);
    this.gatherTimer = null;
    const items = this.gathered;
    if (items.length === 0) return;
    this.gathered = [];
    this.root
      .transaction(() => {
        for (const it of items) it.write();
      })
      .then(
        () => {
          for (const it of items) it.resolve();
        },
        (err: unknown) => {
          for (const it of items) it.reject(err);
        },
      );
  }

  /** After a WAL frame is durable: write it to lmdb, and release it once lmdb has it on disk. */
  private checkpoint(segment: number, write: () => void, release: () => void): void {
    const p = this.gather(write).then(
      () => {
        release();
        this.wal?.checkpointed(segment);
      },
      // The WAL keeps the frame, so the next open replays it.
      () => undefined,
    );
    this.checkpoints.add(p);
    void p.finally(() => this.checkpoints.delete(p));
  }

  async writeRecords(
    log: number,
    shard: number,
    first: number,
    records: readonly Uint8Array[],
  ): Promise<void> {
    const f = recordsFrame(log, shard, first, records);
    if (this.wal === null) {
      await this.records.put(recordKey(log, shard, first), f);
      return;
    }
    const shardKey = `${log}/${shard}`;
    let pending = this.memtable.get(shardKey);
    if (pending === undefined) {
      pending = [];
      this.memtable.set(shardKey, pending);
    }
    const item = { first, records };
    pending.push(item);
    const { segment, durable } = this.wal.append(f);
    await durable;
    this.checkpoint(
      segment,
      () => this.records.putSync(recordKey(log, shard, first), f),
      () => {
        const i = pending.indexOf(item);
        if (i >= 0) pending.splice(i, 1);
      },
    );
  }

  readRecord(log: number, shard: number, localId: number): Uint8Array | undefined {
    const pending = this.memtable.get(`${log}/${shard}`);
    if (pending !== undefined) {
      for (const p of pending) {
        if (localId >= p.first && localId < p.first + p.records.length)
          return p.records[localId - p.first];
      }
    }
    const last = this.lastFrame;
    if (
      last !== null &&
      last.head.log === log &&
      last.head.shard === shard &&
      localId >= last.head.first &&
      localId < last.head.first + last.head.count
    ) {
      return recordAt(last.frame, last.offsets, localId - last.head.first);
    }
    const found = this.findFrame(log, shard, localId);
    if (found === undefined) return undefined;
    // Keep the batch's record offsets: reads of a shard's records (index rebuilds) are sequential.
    const frame = asBuffer(found.frame);
    const offsets = frameOffsets(frame);
    this.lastFrame = { head: found.head, frame, offsets };
    return recordAt(frame, offsets, localId - found.head.first);
  }

  shardEnd(log: number, shard: number): number {
    let end = 0;
    const pending = this.memtable.get(`${log}/${shard}`);
    for (const p of pending ?? []) end = Math.max(end, p.first + p.records.length);
    for (const { value } of this.records.getRange({
      start: recordKey(log, shard, 2 ** 48 - 1),
      reverse: true,
      limit: 1,
    })) {
      const head = frameHead(value);
      if (head.log === log && head.shard === shard) end = Math.max(end, head.first + head.count);
    }
    return end;
  }

  /** The stored batch holding a record: the last batch of the shard starting at or before it. */
  private findFrame(
    log: number,
    shard: number,
    localId: number,
  ): { key: Buffer; frame: Uint8Array; head: RecordsFrame } | undefined {
    for (const { key, value } of this.records.getRange({
      start: recordKey(log, shard, localId),
      reverse: true,
      limit: 1,
    })) {
      const head = frameHead(value);
      if (head.log !== log || head.shard !== shard || localId >= head.first + head.count)
        return undefined;
      return { key, frame: value, head };
    }
    return undefined;
  }

  async truncatePayloads(
    log: number,
    records: ReadonlyArray<readonly [shard: number, localId: number]>,
  ): Promise<void> {
    // Rewrite batches only once they are in lmdb, so a checkpoint cannot overwrite the rewrite.
    this.commitGathered();
    await Promise.all([...this.checkpoints]);
    this.lastFrame = null;
    const batches = new Map<string, { head: RecordsFrame; records: Uint8Array[] }>();
    for (const [shard, localId] of records) {
      const found = this.findFrame(log, shard, localId);
      if (found === undefined) continue;
      const id = found.key.toString("hex");
      let b = batches.get(id);
      if (b === undefined) {
        b = { head: found.head, records: frameRecords(found.frame).map((r) => r.slice()) };
        batches.set(id, b);
      }
      b.records[localId - found.head.first] = droppedPayloadOf(
        b.records[localId - found.head.first]!,
      );
    }
    let last: Promise<unknown> = Promise.resolve();
    for (const { head, records: rs } of batches.values()) {
      last = this.records.put(
        recordKey(log, head.shard, head.first),
        recordsFrame(log, head.shard, head.first, rs),
      );
    }
    await last;
  }

  /**
   * With a WAL, aux data (best effort by design) joins the next checkpoint transaction
   * instead of making an lmdb commit of its own (each a disk sync, beside the WAL's), and
   * is read from memory until then.
   */
  async writeAux(log: number, seqnum: number, data: Uint8Array): Promise<void> {
    if (this.wal === null) {
      await this.aux.put(seqKey(log, seqnum), data);
      return;
    }
    const k = `${log}:${seqnum}`;
    const had = this.auxGathered.get(k);
    this.auxGathered.set(k, data);
    this.auxGatheredBytes += data.byteLength - (had?.byteLength ?? 0);
    const done = this.gather(() => this.aux.putSync(seqKey(log, seqnum), data));
    if (this.auxGatheredBytes > AUX_GATHERED_BYTES_MAX) this.commitGathered();
    await done;
    if (this.auxGathered.get(k) === data) {
      this.auxGathered.delete(k);
      this.auxGatheredBytes -= data.byteLength;
    }
  }

  readAux(log: number, seqnum: number): Uint8Array | undefined {
    return this.auxGathered.get(`${log}:${seqnum}`) ?? this.aux.get(seqKey(log, seqnum));
  }

  async deleteAux(log: number, seqnums: readonly number[]): Promise<void> {
    if (this.wal !== null) {
      // In order with the gathered writes, so that none of them puts a deleted one back.
      for (const s of seqnums) {
        const k = `${log}:${s}`;
        const had = this.auxGathered.get(k);
        if (had === undefined) continue;
        this.auxGathered.delete(k);
        this.auxGatheredBytes -= had.byteLength;
      }
      await this.gather(() => {
        for (const s of seqnums) this.aux.removeSync(seqKey(log, s));
      });
      return;
    }
    let last: Promise<boolean> | undefined;
    for (const s of seqnums) last = this.aux.remove(seqKey(log, s));
    if (last !== undefined) await last;
  }

  async copyMetalog(entries: readonly MetalogEntry[]): Promise<void> {
    await this.gather(() => this.putMetalogSync(entries));
  }

  async writeMetalog(entries: readonly MetalogEntry[]): Promise<void> {
    if (this.wal !== null) {
      const { segment, durable } = this.wal.append(metalogFrame(entries));
      await durable;
      // Entries are read back only at open, after the WAL has been replayed.
      this.checkpoint(
        segment,
        () => this.putMetalogSync(entries),
        () => undefined,
      );
      return;
    }
    await this.putMetalog(entries);
  }

  loadMetalog(log: number): MetalogEntry[] {
    const out: MetalogEntry[] = [];
    for (const { value } of this.metalog.getRange({
      start: seqKey(log, 0),
      end: seqKey(log + 1, 0),
    })) {
      out.push(value);
    }
    return out;
  }

  readMeta(key: string): unknown {
    return this.meta.get(key);
  }

  async writeMeta(key: string, value: unknown): Promise<void> {
    await this.meta.put(key, value);
  }

  async close(): Promise<void> {
    await this.wal?.close();
    this.commitGathered();
    await Promise.all([...this.checkpoints]);
    await this.root.close();
  }
}
