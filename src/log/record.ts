/**
 * Records as stored and replicated: a small binary header (what the index needs) followed
 * by the payload. The header alone travels as index data, so index replicas never pay for
 * payload bytes.
 *
 * Layout (big-endian):
 *   u8 kind | u32 book | u8 tagCount | tagCount × u64 tag
 *   kind COND: u64 condTag | f64 condPosition
 *   kind TRIM: u64 trimTag | f64 trimSeqnum
 *   payload bytes (to the end)
 */
import type { BookId, SeqNum, Tag } from "./types.js";
import { invariant } from "./assert.js";

export const RecordKind = { Data: 0, Cond: 1, Trim: 2 } as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

export type RecordMeta =
  | { kind: typeof RecordKind.Data; book: BookId; tags: readonly Tag[] }
  | {
      kind: typeof RecordKind.Cond;
      book: BookId;
      tags: readonly Tag[];
      condTag: Tag;
      condPosition: number;
    }
  | {
      kind: typeof RecordKind.Trim;
      book: BookId;
      tags: readonly Tag[];
      trimTag: Tag;
      trimSeqnum: SeqNum;
    };

/** A record as a reader sees it. */
export interface LogRecord {
  readonly seqnum: SeqNum;
  readonly book: BookId;
  /** The record's own tags (tag 0 is implicit and not listed). */
  readonly tags: readonly Tag[];
  readonly data: Uint8Array;
  /** Best-effort cached value attached with `setAuxData`, or null. */
  readonly auxData: Uint8Array | null;
}

export function headerBytes(meta: RecordMeta): number {
  let n = 1 + 4 + 1 + 8 * meta.tags.length;
  if (meta.kind !== RecordKind.Data) n += 16;
  return n;
}

export function encodeRecord(meta: RecordMeta, data: Uint8Array): Uint8Array {
  const h = headerBytes(meta);
  const buf = Buffer.allocUnsafe(h + data.length);
  buf[0] = meta.kind;
  buf.writeUInt32BE(meta.book, 1);
  buf[5] = meta.tags.length;
  let off = 6;
  for (const t of meta.tags) {
    buf.writeBigUInt64BE(t, off);
    off += 8;
  }
  if (meta.kind === RecordKind.Cond) {
    buf.writeBigUInt64BE(meta.condTag, off);
    buf.writeDoubleBE(meta.condPosition, off + 8);
    off += 16;
  } else if (meta.kind === RecordKind.Trim) {
    buf.writeBigUInt64BE(meta.trimTag, off);
    buf.writeDoubleBE(meta.trimSeqnum, off + 8);
    off += 16;
  }
  buf.set(data, off);
  return buf;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes the header of an encoded record (or of a header alone). */
export function decodeMeta(bytes: Uint8Array): RecordMeta {
  const buf = asBuffer(bytes);
  invariant(buf.length >= 6, "record shorter than its fixed header");
  const kind = buf[0]! & ~PAYLOAD_DROPPED;
  const book = buf.readUInt32BE(1) as BookId;
  const n = buf[5]!;
  invariant(buf.length >= 6 + 8 * n, "record shorter than its tags");
  const tags: Tag[] = new Array<Tag>(n);
  let off = 6;
  for (let i = 0; i < n; i++) {
    tags[i] = buf.readBigUInt64BE(off) as Tag;
    off += 8;
  }
  invariant(
    kind === RecordKind.Data || kind === RecordKind.Cond || kind === RecordKind.Trim,
    `unknown record kind ${kind}`,
  );
  invariant(
    kind === RecordKind.Data || buf.length >= off + 16,
    "record shorter than its condition",
  );
  switch (kind) {
    case RecordKind.Data:
      return { kind, book, tags };
    case RecordKind.Cond:
      return {
        kind,
        book,
        tags,
        condTag: buf.readBigUInt64BE(off) as Tag,
        condPosition: buf.readDoubleBE(off + 8),
      };
    case RecordKind.Trim:
      return {
        kind,
        book,
        tags,
        trimTag: buf.readBigUInt64BE(off) as Tag,
        trimSeqnum: buf.readDoubleBE(off + 8) as SeqNum,
      };
    default:
      invariant(false, `unknown record kind ${kind}`);
  }
}

/** The header of an encoded record, without its payload (a view, not a copy). */
export function headerOf(bytes: Uint8Array): Uint8Array {
  const n = bytes[5]!;
  let len = 6 + 8 * n;
  if ((bytes[0]! & ~PAYLOAD_DROPPED) !== RecordKind.Data) len += 16;
  return bytes.subarray(0, len);
}

/**
 * Set in the kind byte of a record whose payload storage has dropped (the record was
 * trimmed): only its header is left, so that an index can still be rebuilt, but it must
 * not be read as a record with empty data.
 */
export const PAYLOAD_DROPPED = 0x80;

/** A trimmed record as storage keeps it: a copy of its header, marked payload-dropped. */
export function droppedPayloadOf(bytes: Uint8Array): Uint8Array {
  const h = Buffer.from(headerOf(bytes));
  h[0] = h[0]! | PAYLOAD_DROPPED;
  return h;
}

/** Whether storage dropped this record's payload. */
export function isPayloadDropped(bytes: Uint8Array): boolean {
  return (bytes[0]! & PAYLOAD_DROPPED) !== 0;
}

/** The payload of an encoded record (a view, not a copy). */
export function payloadOf(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(headerOf(bytes).length);
}
