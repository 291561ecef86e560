/**
 * A LogBook in memory, for property tests of libraries over the LogBook API: one total
 * order, tags, conditional appends with the log's position rule (a record's position in a
 * sub-stream counts every record ever appended with the tag), trims, aux data. Every
 * operation first passes through `gate` (e.g. a fast-check scheduler), so a test decides
 * how concurrent operations interleave; each takes effect atomically once the gate opens.
 * `failAfter` makes an operation fail as a crash would: every one after the n-th throws.
 */
import type {
  LogBook,
  LogRecord,
  SeqNum,
  Tag,
  TagLike,
  DataLike,
  MetalogPosition,
  BookId,
} from "../../src/index.js";
import { parseTag } from "../../src/index.js";

interface Stored {
  readonly seqnum: number;
  readonly tags: readonly bigint[];
  readonly data: Uint8Array;
  aux: Uint8Array | null;
}

export class MemoryLog {
  readonly records: Stored[] = [];
  /** Records ever appended per tag (what conditional appends count). */
  private readonly appended = new Map<bigint, number>();
  private readonly trimmedBelow = new Map<bigint, number>();
  private next = 1;

  constructor(readonly gate: () => Promise<void> = () => Promise.resolve()) {}

  append(tags: readonly bigint[], data: Uint8Array): number {
    const seqnum = this.next++;
    this.records.push({ seqnum, tags, data, aux: null });
    for (const t of tags) this.appended.set(t, (this.appended.get(t) ?? 0) + 1);
    return seqnum;
  }

  countOf(tag: bigint): number {
    return this.appended.get(tag) ?? 0;
  }

  visible(tag: bigint): Stored[] {
    const below = this.trimmedBelow.get(tag) ?? 0;
    return this.records.filter((r) => r.seqnum >= below && (tag === 0n || r.tags.includes(tag)));
  }

  trim(tag: bigint, seqnum: number): void {
    this.trimmedBelow.set(tag, Math.max(this.trimmedBelow.get(tag) ?? 0, seqnum));
  }

  /**
   * A LogBook over this log; `failAfter` operations succeed, the rest throw LOG_CLOSED.
   * A blocking read that finds nothing returns at once and reports its timeout to `waited`
   * (a test's fake clock moves on by it).
   */
  book(options: { failAfter?: number; waited?: (ms: number) => void } = {}): MemoryLogBook {
    return new MemoryLogBook(this, options.failAfter ?? Number.POSITIVE_INFINITY, options.waited);
  }
}

function bytes(d: DataLike): Uint8Array {
  return typeof d === "string" ? new TextEncoder().encode(d) : d;
}

function toRecord(r: Stored): LogRecord {
  return {
    seqnum: r.seqnum as SeqNum,
    book: 0 as BookId,
    tags: r.tags as readonly Tag[],
    data: r.data,
    auxData: r.aux,
  };
}

export class MemoryLogBook implements LogBook {
  readonly book = 0 as BookId;
  readonly position = 0 as MetalogPosition;
  private ops = 0;

  constructor(
    private readonly log: MemoryLog,
    private readonly failAfter: number,
    private readonly waited: ((ms: number) => void) | undefined,
  ) {}

  private async enter(): Promise<void> {
    await this.log.gate();
    if (++this.ops > this.failAfter) {
      throw Object.assign(new Error("the log is closed (a crash)"), {
        code: "LOG_CLOSED",
        retryable: false,
      });
    }
  }

  async append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum> {
    await this.enter();
    return this.log.append(
      tags.map((t) => parseTag(t)),
      bytes(data),
    ) as SeqNum;
  }

  async condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum> {
    await this.enter();
    const actual = this.log.countOf(parseTag(condTag));
    if (actual !== condPosition) {
      throw Object.assign(new Error(`expected position ${condPosition}, found ${actual}`), {
        code: "COND_APPEND_FAILED",
        actualPosition: actual,
      });
    }
    return this.log.append(
      tags.map((t) => parseTag(t)),
      bytes(data),
    ) as SeqNum;
  }

  async readNext(tag: TagLike, minSeqnum: number | string): Promise<LogRecord | null> {
    await this.enter();
    const r = this.log.visible(parseTag(tag)).find((x) => x.seqnum >= Number(minSeqnum));
    return r === undefined ? null : toRecord(r);
  }

  /** Never waits: the caller's time moves on by the timeout (tests run on fake clocks). */
  async readNextBlocking(
    tag: TagLike,
    minSeqnum: number | string,
    timeoutMs: number,
  ): Promise<LogRecord | null> {
    const r = await this.readNext(tag, minSeqnum);
    if (r === null) this.waited?.(timeoutMs);
    return r;
  }

  async readPrev(tag: TagLike, maxSeqnum: number | string): Promise<LogRecord | null> {
    await this.enter();
    const all = this.log.visible(parseTag(tag)).filter((x) => x.seqnum <= Number(maxSeqnum));
    const r = all[all.length - 1];
    return r === undefined ? null : toRecord(r);
  }

  checkTail(tag: TagLike): Promise<LogRecord | null> {
    return this.readPrev(tag, Number.MAX_SAFE_INTEGER);
  }

  async setAuxData(seqnum: number | string, data: DataLike): Promise<void> {
    await this.enter();
    const r = this.log.records.find((x) => x.seqnum === Number(seqnum));
    if (r !== undefined) r.aux = bytes(data);
  }

  async trim(tag: TagLike, seqnum: number | string): Promise<void> {
    await this.enter();
    this.log.trim(parseTag(tag), Number(seqnum));
  }
}
