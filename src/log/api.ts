/**
 * The LogBook API: what a function sees of the shared log, bound to one book. Every
 * operation validates its arguments and fails with a typed `BokiError`.
 */
import type { BookId, MetalogPosition, SeqNum, Tag } from "./types.js";
import type { LogRecord } from "./record.js";

/** A tag as callers may write it: a `Tag`, a bigint, a safe integer, or a decimal string. */
export type TagLike = Tag | bigint | number | string;
/** A sequence number as callers may write it: a number or a decimal string. */
export type SeqNumLike = SeqNum | number | string;
/** Record payload: bytes, or a string stored as UTF-8. */
export type DataLike = Uint8Array | string;

export interface LogBook {
  readonly book: BookId;
  /**
   * The metalog position this handle has seen. Reads through the handle are served only by
   * an index at or past it (read-your-writes, monotonic reads); every operation raises it.
   */
  readonly position: MetalogPosition;

  /** Appends a record; durable and ordered once the promise resolves. */
  append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum>;
  /** First record with `tag` and seqnum ≥ `minSeqnum`, or null. Tag 0 reads every record of the book. */
  readNext(tag: TagLike, minSeqnum: SeqNumLike): Promise<LogRecord | null>;
  /** Like `readNext`, but waits up to `timeoutMs` for such a record; null if none came. */
  readNextBlocking(
    tag: TagLike,
    minSeqnum: SeqNumLike,
    timeoutMs: number,
  ): Promise<LogRecord | null>;
  /** Last record with `tag` and seqnum ≤ `maxSeqnum`, or null. */
  readPrev(tag: TagLike, maxSeqnum: SeqNumLike): Promise<LogRecord | null>;
  /** The last record with `tag`, or null: `readPrev(tag, SEQNUM_MAX)`. */
  checkTail(tag: TagLike): Promise<LogRecord | null>;
  /** Attaches a cached value to a record of this book. Best effort: it may be lost. */
  setAuxData(seqnum: SeqNumLike, data: DataLike): Promise<void>;
  /**
   * Trims the `tag` sub-stream below `seqnum`: those records are never returned by reads of
   * `tag` again. Trimming tag 0 trims the whole book, and the records' bytes are deleted.
   * Fails with BOOK_EMPTY when the book has no record to trim.
   */
  trim(tag: TagLike, seqnum: SeqNumLike): Promise<void>;
  /**
   * Appends only if the record lands at `condPosition` in the `condTag` sub-stream, i.e.
   * exactly `condPosition` records were ever appended with `condTag` before it. Otherwise
   * fails with COND_APPEND_FAILED and the record is never visible.
   */
  condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum>;
}
