import type { MetalogEntry } from "../log/metalog.js";

/** A sequencer's durable copy of its metalog, plus small named values such as the term. */
export interface MetalogStore {
  /** Persists entries; resolves once they are durable. */
  writeMetalog(entries: readonly MetalogEntry[]): Promise<void>;
  loadMetalog(log: number): MetalogEntry[];
  readMeta(key: string): unknown;
  writeMeta(key: string, value: unknown): Promise<void>;
  close(): Promise<void>;
}
