/**
 * Read-ahead for a worker's LogBook: an invocation reading a sub-stream record after record
 * (`readNext(tag, r.seqnum + 1)` after `readNext` returned `r`, or `readPrev(tag, r.seqnum - 1)`
 * going back) gets the next records of the tag in one request to the host instead of one
 * request each.
 *
 * What a batch of reads teaches is an interval of seqnums `[lo, hi]` of one tag and every
 * record of the tag inside it. That knowledge does not go stale: records get seqnums above
 * everything an index had applied when the batch was read, so no record ever appears between
 * two known ones (a trim may hide some later: the invocation's own trims and aux data writes
 * drop what is known; another invocation's trim is as if these reads ran just before it, as a
 * read served by an index at an earlier metalog position would be). A read answered from
 * the interval needs no request and does not move the invocation's position.
 *
 * Sequential reading is recognised per tag: a read and the READ_AHEAD_AFTER_READS reads
 * after it that each continue right after the record the previous one returned ask for one
 * record each (a short walk, e.g. back to a nearby checkpoint, reads nothing it does not
 * need); the next continuing read asks for READ_AHEAD_RECORDS_FIRST, and each further batch
 * for twice as many, up to READ_AHEAD_RECORDS_MAX. I/O-free; the worker's LogBook drives it.
 */
import type { LogRecord } from "../log/record.js";

/** Plain reads continuing a first one before the next continuing read asks for a batch. */
export const READ_AHEAD_AFTER_READS = 2;
/** Records the first read-ahead batch of a tag asks for. */
export const READ_AHEAD_RECORDS_FIRST = 8;
/** Most records one read-ahead batch returns. */
export const READ_AHEAD_RECORDS_MAX = 256;
/** Bytes of data and aux data a read-ahead batch stops after (it holds at least one record). */
export const READ_AHEAD_BYTES_MAX = 512 * 1024;
/** Tags one invocation keeps read-ahead state for (the oldest is dropped). */
export const READ_AHEAD_TAGS_MAX = 16;

export type Direction = "next" | "prev";

/** Every record of one tag with seqnum in [lo, hi], ascending. */
interface Span {
  readonly lo: number;
  readonly hi: number;
  readonly records: readonly LogRecord[];
  /** The size of the next batch asked for in this span's direction. */
  readonly nextBatch: number;
}

/** Where the last plain read of a tag ended, to recognise the read that continues it. */
interface Last {
  readonly dir: Direction;
  readonly seqnum: number;
  /** Reads in a row before this one that it and each of them continued. */
  readonly run: number;
}

/** Index of the first record with seqnum ≥ s (records.length if none). */
function firstAtOrAbove(records: readonly LogRecord[], s: number): number {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (records[mid]!.seqnum < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class ReadAhead {
  private readonly spans = new Map<string, Span>();
  private readonly last = new Map<string, Last>();

  /**
   * The answer to `readNext(tag, s)` (dir "next") or `readPrev(tag, s)` ("prev") if what is
   * known decides it, else undefined (ask the host).
   */
  lookup(key: string, dir: Direction, s: number): LogRecord | undefined {
    const span = this.spans.get(key);
    if (span === undefined || s < span.lo || s > span.hi) return undefined;
    const i = firstAtOrAbove(span.records, s);
    if (dir === "next") return span.records[i];
    const r = span.records[i];
    if (r !== undefined && r.seqnum === s) return r;
    return i === 0 ? undefined : span.records[i - 1];
  }

  /**
   * How many records to ask the host for to answer a read missing `lookup`: 1 (a plain read)
   * unless the read continues the tag's previous one in the same direction.
   */
  batchFor(key: string, dir: Direction, s: number): number {
    const span = this.spans.get(key);
    if (span !== undefined) {
      if (s === (dir === "next" ? span.hi + 1 : span.lo - 1)) return span.nextBatch;
    }
    const l = this.last.get(key);
    const continues = l !== undefined && this.continues(l, dir, s);
    return continues && l.run >= READ_AHEAD_AFTER_READS ? READ_AHEAD_RECORDS_FIRST : 1;
  }

  /**
   * Records what a read of `asked` records from `s` returned: `records` in the read's order
   * (ascending for "next", descending for "prev"). A batch shorter than asked (the bytes
   * limit) still tells the interval up to its last record; an empty one tells nothing to keep.
   */
  learn(
    key: string,
    dir: Direction,
    s: number,
    asked: number,
    records: readonly LogRecord[],
  ): void {
    const end = records.at(-1);
    if (asked <= 1 || end === undefined) {
      const l = this.last.get(key);
      const run = l !== undefined && this.continues(l, dir, s) ? l.run + 1 : 0;
      this.spans.delete(key);
      this.remember(
        this.last,
        key,
        end === undefined ? undefined : { dir, seqnum: end.seqnum, run },
      );
      return;
    }
    const nextBatch = Math.min(READ_AHEAD_RECORDS_MAX, asked * 2);
    const span: Span =
      dir === "next"
        ? { lo: s, hi: end.seqnum, records, nextBatch }
        : { lo: end.seqnum, hi: s, records: [...records].reverse(), nextBatch };
    this.last.delete(key);
    this.remember(this.spans, key, span);
  }

  private continues(l: Last, dir: Direction, s: number): boolean {
    return l.dir === dir && s === (dir === "next" ? l.seqnum + 1 : l.seqnum - 1);
  }

  /** Forgets everything (the invocation trimmed or wrote aux data). */
  clear(): void {
    this.spans.clear();
    this.last.clear();
  }

  private remember<V>(m: Map<string, V>, key: string, v: V | undefined): void {
    m.delete(key);
    if (v === undefined) return;
    if (m.size >= READ_AHEAD_TAGS_MAX) m.delete(m.keys().next().value!);
    m.set(key, v);
  }
}
