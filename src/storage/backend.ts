/**
 * What a storage node needs from its disk. The lmdb implementation is the real one; a
 * simulated disk implements the same interface for deterministic tests.
 */
import type { MetalogEntry } from "../log/metalog.js";

export interface StorageBackend {
  /** Writes records of a shard from local id `first`; resolves once they are durable. */
  writeRecords(
    log: number,
    shard: number,
    first: number,
    records: readonly Uint8Array[],
  ): Promise<void>;
  readRecord(log: number, shard: number, localId: number): Uint8Array | undefined;
  /** How many records of the shard are stored, counting from local id 0 (they are contiguous). */
  shardEnd(log: number, shard: number): number;
  /**
   * Replaces records by their headers, dropping payloads (records trimmed from their book).
   * The header stays so that an index can still be rebuilt from storage. Best effort.
   */
  truncatePayloads(
    log: number,
    records: ReadonlyArray<readonly [shard: number, localId: number]>,
  ): Promise<void>;
  writeAux(log: number, seqnum: number, data: Uint8Array): Promise<void>;
  readAux(log: number, seqnum: number): Uint8Array | undefined;
  deleteAux(log: number, seqnums: readonly number[]): Promise<void>;
  /**
   * Keeps a copy of committed metalog entries (ascending per log), to map sequence numbers
   * to records after a restart. Not synced: the sequencers hold the metalog durably, and a
   * copy lost in a crash is fetched from them again.
   */
  copyMetalog(entries: readonly MetalogEntry[]): Promise<void>;
  /** Every persisted metalog entry of a log, ascending. */
  loadMetalog(log: number): MetalogEntry[];
  close(): Promise<void>;
}
