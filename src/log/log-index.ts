/**
 * The index of one physical log: for every (book, tag) sub-stream, the ascending list of
 * its records' sequence numbers. Records are applied in log order, so every list only
 * grows at its end and reads are binary searches. Trims and conditional appends are
 * records too, so every replica that applies the same log reaches the same state.
 */
import type { BookId, MetalogPosition, SeqNum, Tag } from "./types.js";
import { RecordKind, type RecordMeta } from "./record.js";
import { invariant } from "./assert.js";

interface Stream {
  /** Ascending sequence numbers; entries before `head` are trimmed. */
  seqnums: number[];
  head: number;
  /** Records ever accepted into the stream; the position a conditional append tests. */
  total: number;
  /** Records below this sequence number are trimmed from the stream. */
  trimPoint: number;
}

/** What applying one record did. */
export type ApplyOutcome =
  | { readonly kind: "indexed" }
  | { readonly kind: "cond-failed"; readonly actualPosition: number }
  | { readonly kind: "trim"; readonly deleted: readonly SeqNum[] };

const INDEXED: ApplyOutcome = { kind: "indexed" };

export class LogIndex {
  /** Per book: its tag-0 stream and its tagged streams by tag (bigint keys, no strings built). */
  private readonly books = new Map<
    number,
    { all: Stream | undefined; tags: Map<bigint, Stream> }
  >();
  private streams = 0;
  private appliedPosition = 0;
  private lastSeqnum = -1;

  /** Metalog entries fully applied. */
  get position(): MetalogPosition {
    return this.appliedPosition as MetalogPosition;
  }

  /** Number of (book, tag) sub-streams the index holds, tag-0 streams included. */
  get streamCount(): number {
    return this.streams;
  }

  /** Marks every record of metalog entries below `position` as applied. */
  advance(position: MetalogPosition): void {
    invariant(position >= this.appliedPosition, "index position moved backwards");
    this.appliedPosition = position;
  }

  private find(book: BookId, tag: Tag | bigint): Stream | undefined {
    const b = this.books.get(book);
    if (b === undefined) return undefined;
    return tag === 0n ? b.all : b.tags.get(tag);
  }

  private streamOf(book: BookId, tag: Tag | bigint): Stream {
    let s = this.find(book, tag);
    if (s === undefined) {
      s = { seqnums: [], head: 0, total: 0, trimPoint: 0 };
      let b = this.books.get(book);
      if (b === undefined) {
        b = { all: undefined, tags: new Map() };
        this.books.set(book, b);
      }
      if (tag === 0n) b.all = s;
      else b.tags.set(tag, s);
      this.streams++;
    }
    return s;
  }

  /** Applies one ordered record. Sequence numbers must arrive strictly ascending. */
  apply(seqnum: SeqNum, meta: RecordMeta): ApplyOutcome {
    if (seqnum <= this.lastSeqnum)
      invariant(false, `index got seqnum ${seqnum} after ${this.lastSeqnum}`);
    this.lastSeqnum = seqnum;
    switch (meta.kind) {
      case RecordKind.Data:
        this.add(seqnum, meta.book, meta.tags);
        return INDEXED;
      case RecordKind.Cond: {
        const total = this.find(meta.book, meta.condTag)?.total ?? 0;
        if (total !== meta.condPosition) return { kind: "cond-failed", actualPosition: total };
        this.add(seqnum, meta.book, meta.tags);
        return INDEXED;
      }
      case RecordKind.Trim:
        return {
          kind: "trim",
          deleted: this.trim(seqnum, meta.book, meta.trimTag, meta.trimSeqnum),
        };
    }
  }

  private add(seqnum: number, book: BookId, tags: readonly Tag[]): void {
    const all = this.streamOf(book, 0n);
    all.seqnums.push(seqnum);
    all.total++;
    for (const t of tags) {
      const s = this.streamOf(book, t);
      s.seqnums.push(seqnum);
      s.total++;
    }
  }

  /**
   * Trims a sub-stream below `upTo` (never past the trim record itself, so a trim cannot
   * hide records appended after it). Trimming tag 0 trims the whole book; the sequence
   * numbers it removes are returned so that their data can be deleted.
   */
  private trim(at: number, book: BookId, tag: Tag, upTo: number): SeqNum[] {
    const point = Math.min(upTo, at);
    const s = this.find(book, tag);
    if (s === undefined || point <= s.trimPoint) return [];
    s.trimPoint = point;
    const newHead = lowerBound(s.seqnums, point, s.head);
    const deleted = tag === 0n ? (s.seqnums.slice(s.head, newHead) as SeqNum[]) : [];
    s.head = newHead;
    if (s.head > 1024 && s.head * 2 > s.seqnums.length) {
      s.seqnums = s.seqnums.slice(s.head);
      s.head = 0;
    }
    return deleted;
  }

  private effectiveStart(book: BookId, tag: Tag, s: Stream): number {
    if (tag === 0n) return s.trimPoint;
    const all = this.find(book, 0n);
    return Math.max(s.trimPoint, all?.trimPoint ?? 0);
  }

  /** First sequence number ≥ `min` in the sub-stream, or null. */
  readNext(book: BookId, tag: Tag, min: SeqNum): SeqNum | null {
    const s = this.find(book, tag);
    if (s === undefined) return null;
    const from = Math.max(min, this.effectiveStart(book, tag, s));
    const i = lowerBound(s.seqnums, from, s.head);
    return i < s.seqnums.length ? (s.seqnums[i] as SeqNum) : null;
  }

  /** Last sequence number ≤ `max` in the sub-stream, or null. */
  readPrev(book: BookId, tag: Tag, max: SeqNum): SeqNum | null {
    const s = this.find(book, tag);
    if (s === undefined) return null;
    const i = lowerBound(s.seqnums, max + 1, s.head) - 1;
    if (i < s.head) return null;
    const seqnum = s.seqnums[i]!;
    return seqnum >= this.effectiveStart(book, tag, s) ? (seqnum as SeqNum) : null;
  }

  /** Records ever accepted into the sub-stream (trimmed ones included). */
  streamLength(book: BookId, tag: Tag): number {
    return this.find(book, tag)?.total ?? 0;
  }

  /** True when the book has at least one record that is not trimmed. */
  hasLiveRecords(book: BookId): boolean {
    return this.readPrev(book, 0n as Tag, Number.MAX_SAFE_INTEGER as SeqNum) !== null;
  }
}

/** Index of the first element ≥ `value` in the ascending `arr[from..]`. */
function lowerBound(arr: readonly number[], value: number, from: number): number {
  let lo = from;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
