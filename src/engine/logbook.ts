/**
 * The LogBook bound to one book and one reader session, over an engine. It validates every
 * argument, and carries the session's metalog position from each operation to the next.
 */
import type { DataLike, LogBook, SeqNumLike, TagLike } from "../log/api.js";
import type { LogRecord } from "../log/record.js";
import { RecordKind } from "../log/record.js";
import {
  parseMetalogPosition,
  parseSeqNum,
  parseTag,
  SEQNUM_MAX,
  describe,
  type BookId,
  type MetalogPosition,
  type SeqNum,
  type Tag,
} from "../log/types.js";
import {
  AUX_DATA_BYTES_MAX,
  BLOCKING_READ_TIMEOUT_MS_MAX,
  RECORD_BYTES_MAX,
  TAGS_PER_RECORD_MAX,
} from "../log/limits.js";
import {
  BookEmptyError,
  CondAppendFailedError,
  InvalidArgumentError,
  RecordTooLargeError,
} from "../log/errors.js";
import type { AppendResult, Engine, ReadResult } from "./engine.js";

const utf8 = new TextEncoder();

export function toBytes(data: DataLike, what: string, limitBytes: number): Uint8Array {
  let bytes: Uint8Array;
  if (typeof data === "string") bytes = utf8.encode(data);
  else if (data instanceof Uint8Array) bytes = data;
  else
    throw new InvalidArgumentError(
      `${what} must be a Uint8Array or a string, got ${describe(data)}`,
    );
  if (bytes.byteLength > limitBytes)
    throw new RecordTooLargeError(what, bytes.byteLength, limitBytes);
  return bytes;
}

export function toTags(tags: readonly TagLike[]): Tag[] {
  if (!Array.isArray(tags))
    throw new InvalidArgumentError(`tags must be an array, got ${describe(tags)}`);
  if (tags.length > TAGS_PER_RECORD_MAX) {
    throw new InvalidArgumentError(
      `a record may carry at most ${TAGS_PER_RECORD_MAX} tags, got ${tags.length}`,
    );
  }
  const out: Tag[] = [];
  for (const t of tags) {
    const tag = parseTag(t);
    // Tag 0 is implicit on every record; listing it changes nothing.
    if (tag !== 0n && !out.includes(tag)) out.push(tag);
  }
  return out;
}

function timeoutArg(timeoutMs: unknown): number {
  if (
    typeof timeoutMs !== "number" ||
    !Number.isFinite(timeoutMs) ||
    timeoutMs < 0 ||
    timeoutMs > BLOCKING_READ_TIMEOUT_MS_MAX
  ) {
    throw new InvalidArgumentError(
      `timeoutMs must be a number in [0, ${BLOCKING_READ_TIMEOUT_MS_MAX}], got ${describe(timeoutMs)}`,
    );
  }
  return timeoutMs;
}

/** Runs `fn`, turning a synchronous throw into a rejected promise so callers see one failure path. */
async function guard<T>(fn: () => T | Promise<T>): Promise<T> {
  return fn();
}

export class EngineLogBook implements LogBook {
  private pos: number;

  constructor(
    private readonly engine: Engine,
    readonly book: BookId,
    position: MetalogPosition = 0 as MetalogPosition,
  ) {
    this.pos = parseMetalogPosition(position);
  }

  get position(): MetalogPosition {
    return this.pos as MetalogPosition;
  }

  private raise(position: number): void {
    if (position > this.pos) this.pos = position;
  }

  private record(r: ReadResult): LogRecord | null {
    this.raise(r.position);
    return r.record;
  }

  append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum> {
    // The hot path: validate synchronously, then one promise from the engine.
    let pending: Promise<AppendResult>;
    try {
      const meta = { kind: RecordKind.Data, book: this.book, tags: toTags(tags) } as const;
      pending = this.engine.append(meta, toBytes(data, "record data", RECORD_BYTES_MAX));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return pending.then(this.acked);
  }

  private readonly acked = (r: AppendResult): SeqNum => {
    this.raise(r.position);
    return r.seqnum;
  };

  condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum> {
    return guard(async () => {
      if (
        typeof condPosition !== "number" ||
        !Number.isSafeInteger(condPosition) ||
        condPosition < 0
      ) {
        throw new InvalidArgumentError(
          `condPosition must be a non-negative safe integer, got ${describe(condPosition)}`,
        );
      }
      const meta = {
        kind: RecordKind.Cond,
        book: this.book,
        tags: toTags(tags),
        condTag: parseTag(condTag, "condTag"),
        condPosition,
      } as const;
      let r: AppendResult;
      try {
        r = await this.engine.append(meta, toBytes(data, "record data", RECORD_BYTES_MAX));
      } catch (err) {
        // A failure reveals that another record took the position: later reads see it.
        if (err instanceof CondAppendFailedError && err.decidedAt !== undefined) {
          this.raise(err.decidedAt);
        }
        throw err;
      }
      this.raise(r.position);
      return r.seqnum;
    });
  }

  readNext(tag: TagLike, minSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return guard(() => {
      const r = this.engine.readNext(
        this.book,
        parseTag(tag),
        parseSeqNum(minSeqnum, "minSeqnum"),
        this.pos,
      );
      return r instanceof Promise ? r.then((x) => this.record(x)) : this.record(r);
    });
  }

  readNextBlocking(
    tag: TagLike,
    minSeqnum: SeqNumLike,
    timeoutMs: number,
  ): Promise<LogRecord | null> {
    return guard(async () => {
      const r = await this.engine.readNextBlocking(
        this.book,
        parseTag(tag),
        parseSeqNum(minSeqnum, "minSeqnum"),
        this.pos,
        timeoutArg(timeoutMs),
      );
      return this.record(r);
    });
  }

  readPrev(tag: TagLike, maxSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return guard(() => {
      const r = this.engine.readPrev(
        this.book,
        parseTag(tag),
        parseSeqNum(maxSeqnum, "maxSeqnum"),
        this.pos,
      );
      return r instanceof Promise ? r.then((x) => this.record(x)) : this.record(r);
    });
  }

  checkTail(tag: TagLike): Promise<LogRecord | null> {
    return this.readPrev(tag, SEQNUM_MAX);
  }

  setAuxData(seqnum: SeqNumLike, data: DataLike): Promise<void> {
    return guard(async () => {
      const position = await this.engine.setAuxData(
        this.book,
        parseSeqNum(seqnum),
        toBytes(data, "aux data", AUX_DATA_BYTES_MAX),
        this.pos,
      );
      this.raise(position);
    });
  }

  trim(tag: TagLike, seqnum: SeqNumLike): Promise<void> {
    return guard(async () => {
      const trimTag = parseTag(tag);
      const trimSeqnum = parseSeqNum(seqnum);
      if (!(await this.engine.hasLiveRecords(this.book, this.pos))) {
        throw new BookEmptyError(`book ${this.book} has no records to trim`);
      }
      const meta = {
        kind: RecordKind.Trim,
        book: this.book,
        tags: [],
        trimTag,
        trimSeqnum,
      } as const;
      const r = await this.engine.append(meta, new Uint8Array(0));
      this.raise(r.position);
    });
  }
}
