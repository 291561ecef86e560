/**
 * A record cache bounded in bytes, evicting the least recently used record first.
 * A JavaScript Map keeps insertion order, so re-inserting on a hit makes it an LRU list.
 */
import type { SeqNum } from "./types.js";
import type { LogRecord } from "./record.js";

/** Fixed per-entry overhead counted against the budget besides the payload bytes. */
const ENTRY_OVERHEAD_BYTES = 96;

function sizeOf(r: LogRecord): number {
  return (
    ENTRY_OVERHEAD_BYTES + r.data.byteLength + (r.auxData?.byteLength ?? 0) + 8 * r.tags.length
  );
}

export class RecordCache {
  private readonly entries = new Map<number, LogRecord>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly capacityBytes: number) {}

  get sizeBytes(): number {
    return this.bytes;
  }
  get size(): number {
    return this.entries.size;
  }

  get(seqnum: SeqNum): LogRecord | undefined {
    const r = this.entries.get(seqnum);
    if (r === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(seqnum);
    this.entries.set(seqnum, r);
    return r;
  }

  /** Looks without counting a hit or refreshing recency. */
  peek(seqnum: SeqNum): LogRecord | undefined {
    return this.entries.get(seqnum);
  }

  put(record: LogRecord): void {
    const size = sizeOf(record);
    this.delete(record.seqnum);
    if (size > this.capacityBytes) return;
    this.entries.set(record.seqnum, record);
    this.bytes += size;
    while (this.bytes > this.capacityBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.delete(oldest.value as SeqNum);
    }
  }

  delete(seqnum: SeqNum): void {
    const r = this.entries.get(seqnum);
    if (r !== undefined) {
      this.entries.delete(seqnum);
      this.bytes -= sizeOf(r);
    }
  }
}
