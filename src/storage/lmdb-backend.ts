/**
 * Storage on lmdb. Records are keyed by (log, shard, local id) in big-endian binary so a
 * shard's records are contiguous on disk. lmdb-js batches every write issued in the same
 * turn of the event loop into one transaction: that is the group commit. With
 * `overlappingSync` off, a write's promise resolves only after the commit is on disk.
 */
import { open, type Database, type RootDatabase } from "lmdb";
import { mkdirSync } from "node:fs";
import type { MetalogEntry } from "../log/metalog.js";
import type { StorageBackend } from "./backend.js";
import type { MetalogStore } from "../sequencer/metalog-store.js";

export interface LmdbOptions {
  /** When false, commits are not fsync'ed: faster, but a machine crash may lose acknowledged data. */
  readonly sync?: boolean;
  /** Upper bound of the memory map; the data file grows up to it. */
  readonly mapSizeBytes?: number;
}

const MAP_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024 * 1024;

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

  async writeRecords(
    log: number,
    shard: number,
    first: number,
    records: readonly Uint8Array[],
  ): Promise<void> {
    let last: Promise<boolean> | undefined;
    for (let i = 0; i < records.length; i++)
      last = this.records.put(recordKey(log, shard, first + i), records[i]!);
    if (last !== undefined) await last;
  }

  readRecord(log: number, shard: number, localId: number): Uint8Array | undefined {
    return this.records.get(recordKey(log, shard, localId));
  }

  async writeAux(log: number, seqnum: number, data: Uint8Array): Promise<void> {
    await this.aux.put(seqKey(log, seqnum), data);
  }

  readAux(log: number, seqnum: number): Uint8Array | undefined {
    return this.aux.get(seqKey(log, seqnum));
  }

  async deleteAux(log: number, seqnums: readonly number[]): Promise<void> {
    let last: Promise<boolean> | undefined;
    for (const s of seqnums) last = this.aux.remove(seqKey(log, s));
    if (last !== undefined) await last;
  }

  async writeMetalog(entries: readonly MetalogEntry[]): Promise<void> {
    let last: Promise<boolean> | undefined;
    for (const e of entries) last = this.metalog.put(seqKey(e.log, e.position), e);
    if (last !== undefined) await last;
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
    await this.root.close();
  }
}
