/**
 * An invocation's view of the log: a LogBook over a `LogProvider` that keeps one metalog
 * position for the whole invocation. Every operation starts at the position (so it sees
 * the invocation's and its caller's writes) and raises it; a nested invocation that returns
 * raises it to the child's position (so the caller sees the child's writes).
 */
import type { DataLike, LogBook, SeqNumLike, TagLike } from "../log/api.js";
import type { LogRecord } from "../log/record.js";
import type { BookId, MetalogPosition, SeqNum } from "../log/types.js";
import { InvalidArgumentError } from "../log/errors.js";
import { parseSeqNum } from "../log/types.js";
import type { LogProvider } from "./dispatcher.js";
import { READ_AHEAD_BYTES_MAX, READ_AHEAD_RECORDS_MAX } from "./read-ahead.js";
import type { LogOp } from "./worker-protocol.js";

/** Counts of log operations made by functions; read by the metrics. */
export interface LogOpCounts {
  appends: number;
  reads: number;
  other: number;
}

export class SessionLogBook implements LogBook {
  private pos: number;
  private handle: LogBook;

  constructor(
    private readonly provider: LogProvider,
    readonly book: BookId,
    position: number | undefined,
    private readonly counts?: LogOpCounts,
  ) {
    this.handle = position === undefined ? provider.book(book) : provider.book(book, { position });
    this.pos = this.handle.position;
  }

  get position(): MetalogPosition {
    return this.pos as MetalogPosition;
  }

  /** Raises the position to `position` (a nested invocation's, when it returns). */
  advanceTo(position: number): void {
    if (position > this.pos) this.pos = position;
  }

  /**
   * The handle to run the next operation on. LogBook handles only move forward on their own,
   * so a handle behind the session's position (after `advanceTo`) is replaced.
   */
  private current(): LogBook {
    if (this.handle.position < this.pos) {
      this.handle = this.provider.book(this.book, { position: this.pos });
    }
    return this.handle;
  }

  private async track<T>(h: LogBook, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } finally {
      if (h.position > this.pos) this.pos = h.position;
    }
  }

  append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum> {
    if (this.counts !== undefined) this.counts.appends++;
    const h = this.current();
    return this.track(h, h.append(tags, data));
  }
  condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum> {
    if (this.counts !== undefined) this.counts.appends++;
    const h = this.current();
    return this.track(h, h.condAppend(tags, data, condTag, condPosition));
  }
  readNext(tag: TagLike, minSeqnum: SeqNumLike): Promise<LogRecord | null> {
    if (this.counts !== undefined) this.counts.reads++;
    const h = this.current();
    return this.track(h, h.readNext(tag, minSeqnum));
  }
  readNextBlocking(
    tag: TagLike,
    minSeqnum: SeqNumLike,
    timeoutMs: number,
  ): Promise<LogRecord | null> {
    if (this.counts !== undefined) this.counts.reads++;
    const h = this.current();
    return this.track(h, h.readNextBlocking(tag, minSeqnum, timeoutMs));
  }
  readPrev(tag: TagLike, maxSeqnum: SeqNumLike): Promise<LogRecord | null> {
    if (this.counts !== undefined) this.counts.reads++;
    const h = this.current();
    return this.track(h, h.readPrev(tag, maxSeqnum));
  }
  checkTail(tag: TagLike): Promise<LogRecord | null> {
    if (this.counts !== undefined) this.counts.reads++;
    const h = this.current();
    return this.track(h, h.checkTail(tag));
  }
  setAuxData(seqnum: SeqNumLike, data: DataLike): Promise<void> {
    if (this.counts !== undefined) this.counts.other++;
    const h = this.current();
    return this.track(h, h.setAuxData(seqnum, data));
  }
  trim(tag: TagLike, seqnum: SeqNumLike): Promise<void> {
    if (this.counts !== undefined) this.counts.other++;
    const h = this.current();
    return this.track(h, h.trim(tag, seqnum));
  }

  /**
   * Up to `records` consecutive results of `readNext` (dir "next": from `seqnum` up) or
   * `readPrev` ("prev": from `seqnum` down), in that order; it stops early at the end of the
   * tag's records or once READ_AHEAD_BYTES_MAX bytes are gathered. A worker's read-ahead.
   */
  async readRange(
    dir: "next" | "prev",
    tag: TagLike,
    seqnum: SeqNumLike,
    records: unknown,
  ): Promise<LogRecord[]> {
    if (
      typeof records !== "number" ||
      !Number.isInteger(records) ||
      records < 1 ||
      records > READ_AHEAD_RECORDS_MAX
    ) {
      throw new InvalidArgumentError(
        `a read-ahead asks for 1 to ${READ_AHEAD_RECORDS_MAX} records (READ_AHEAD_RECORDS_MAX)`,
      );
    }
    const out: LogRecord[] = [];
    let s: number = parseSeqNum(seqnum);
    let bytes = 0;
    while (out.length < records && bytes < READ_AHEAD_BYTES_MAX) {
      const r = dir === "next" ? await this.readNext(tag, s) : await this.readPrev(tag, s);
      if (r === null) break;
      out.push(r);
      bytes += r.data.byteLength + (r.auxData?.byteLength ?? 0);
      s = dir === "next" ? r.seqnum + 1 : r.seqnum - 1;
      if (s < 0) break;
    }
    return out;
  }

  /** Runs one operation a worker asked for, with the arguments it sent. */
  perform(op: LogOp, args: readonly unknown[]): Promise<unknown> {
    const a = args as readonly never[];
    switch (op) {
      case "append":
        return this.append(a[0]!, a[1]!);
      case "condAppend":
        return this.condAppend(a[0]!, a[1]!, a[2]!, a[3]!);
      case "readNext":
        return this.readNext(a[0]!, a[1]!);
      case "readNextBlocking":
        return this.readNextBlocking(a[0]!, a[1]!, a[2]!);
      case "readPrev":
        return this.readPrev(a[0]!, a[1]!);
      case "checkTail":
        return this.checkTail(a[0]!);
      case "setAuxData":
        return this.setAuxData(a[0]!, a[1]!);
      case "trim":
        return this.trim(a[0]!, a[1]!);
      case "readNextRange":
        return this.readRange("next", a[0]!, a[1]!, a[2]);
      case "readPrevRange":
        return this.readRange("prev", a[0]!, a[1]!, a[2]);
      default:
        return Promise.reject(new InvalidArgumentError(`unknown log operation ${String(op)}`));
    }
  }
}
