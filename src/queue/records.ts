/**
 * The queue's records, as stored in the log (all tagged with their shard's tag). A small
 * binary layout, big-endian, so that the hot records (push, pop) cost no JSON work beyond
 * the messages themselves:
 *
 *   header      u8 magic 0xB7 | u8 version 1 | u8 type | f64 at (writer's clock, ms)
 *   push        u16 count | count × (u8 flags | u32 length | [u16 n | n bytes origin JSON] | bytes)
 *               flags: bit 0 JSON text (else bytes), bit 1 has origin (a dead letter's copy)
 *   pop         u16 max | u32 visibilityMs | u32 waitMs | u8 n | n bytes consumer | receipts
 *   ack         receipts
 *   nack        u32 delayMs | receipts
 *   extend      u32 visibilityMs | receipts
 *   cancel      f64 popSeq
 *   tick        (nothing)
 *   checkpoint  f64 asOf | f64 trimBelow | JSON text of the shard's state as of `asOf`
 *   dead-done   u16 count | count × (f64 seq | u16 idx)
 *   receipts    u16 count | count × (f64 seq | u16 idx | u32 delivery)
 *
 * Decoding never throws: a record that does not parse is `null`, and the state machine
 * counts it as malformed and otherwise ignores it (every reader does the same).
 */
import type { ElementRef, ReceiptRef } from "./ids.js";

export const RECORD_MAGIC = 0xb7;
export const RECORD_VERSION = 1;
const HEADER_BYTES = 11;

export const RecordType = {
  Push: 1,
  Pop: 2,
  Ack: 3,
  Nack: 4,
  Extend: 5,
  Cancel: 6,
  Tick: 7,
  Checkpoint: 8,
  DeadDone: 9,
} as const;

/** Where a dead letter came from (carried by its copy in the dead-letter queue). */
export interface DeadLetterOrigin {
  readonly queue: string;
  readonly shard: number;
  readonly seq: number;
  readonly idx: number;
  readonly deliveries: number;
  readonly pushedAt: number;
}

export interface PushMessage {
  readonly json: boolean;
  readonly data: Uint8Array;
  readonly origin?: DeadLetterOrigin;
}

export type QueueRecord =
  | { readonly type: "push"; readonly at: number; readonly messages: readonly PushMessage[] }
  | {
      readonly type: "pop";
      readonly at: number;
      readonly consumer: string;
      readonly max: number;
      readonly visibilityMs: number;
      readonly waitMs: number;
      readonly acks: readonly ReceiptRef[];
    }
  | { readonly type: "ack"; readonly at: number; readonly receipts: readonly ReceiptRef[] }
  | {
      readonly type: "nack";
      readonly at: number;
      readonly receipts: readonly ReceiptRef[];
      readonly delayMs: number;
    }
  | {
      readonly type: "extend";
      readonly at: number;
      readonly receipts: readonly ReceiptRef[];
      readonly visibilityMs: number;
    }
  | { readonly type: "cancel"; readonly at: number; readonly popSeq: number }
  | { readonly type: "tick"; readonly at: number }
  | {
      readonly type: "checkpoint";
      readonly at: number;
      readonly asOf: number;
      readonly trimBelow: number;
      /** The state's JSON text (parsed only by a reader that starts from it). */
      readonly stateJson: string;
    }
  | { readonly type: "dead-done"; readonly at: number; readonly elements: readonly ElementRef[] };

const TYPE_CODE: Record<QueueRecord["type"], number> = {
  push: RecordType.Push,
  pop: RecordType.Pop,
  ack: RecordType.Ack,
  nack: RecordType.Nack,
  extend: RecordType.Extend,
  cancel: RecordType.Cancel,
  tick: RecordType.Tick,
  checkpoint: RecordType.Checkpoint,
  "dead-done": RecordType.DeadDone,
};

const RECEIPT_BYTES = 14;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Bytes of a push record holding messages of these sizes (no origins). */
export function pushRecordBytes(sizes: readonly number[]): number {
  let n = HEADER_BYTES + 2;
  for (const s of sizes) n += 5 + s;
  return n;
}

export function encodeRecord(r: QueueRecord): Uint8Array {
  // Sizes first, so the buffer is allocated once.
  let n = HEADER_BYTES;
  let consumer: Uint8Array | undefined;
  let origins: (Uint8Array | undefined)[] | undefined;
  let stateBytes: Uint8Array | undefined;
  switch (r.type) {
    case "push":
      n += 2;
      origins = r.messages.map((m) =>
        m.origin === undefined ? undefined : utf8.encode(JSON.stringify(m.origin)),
      );
      r.messages.forEach((m, i) => {
        const o = origins![i];
        n += 5 + m.data.byteLength + (o === undefined ? 0 : 2 + o.byteLength);
      });
      break;
    case "pop":
      consumer = utf8.encode(r.consumer);
      n += 2 + 4 + 4 + 1 + consumer.byteLength + 2 + RECEIPT_BYTES * r.acks.length;
      break;
    case "ack":
      n += 2 + RECEIPT_BYTES * r.receipts.length;
      break;
    case "nack":
    case "extend":
      n += 4 + 2 + RECEIPT_BYTES * r.receipts.length;
      break;
    case "cancel":
      n += 8;
      break;
    case "tick":
      break;
    case "checkpoint":
      stateBytes = utf8.encode(r.stateJson);
      n += 16 + stateBytes.byteLength;
      break;
    case "dead-done":
      n += 2 + 10 * r.elements.length;
      break;
  }
  const buf = Buffer.allocUnsafe(n);
  buf[0] = RECORD_MAGIC;
  buf[1] = RECORD_VERSION;
  buf[2] = TYPE_CODE[r.type];
  buf.writeDoubleBE(r.at, 3);
  let off = HEADER_BYTES;
  const receipts = (list: readonly ReceiptRef[]): void => {
    buf.writeUInt16BE(list.length, off);
    off += 2;
    for (const x of list) {
      buf.writeDoubleBE(x.seq, off);
      buf.writeUInt16BE(x.idx, off + 8);
      buf.writeUInt32BE(x.delivery, off + 10);
      off += RECEIPT_BYTES;
    }
  };
  switch (r.type) {
    case "push":
      buf.writeUInt16BE(r.messages.length, off);
      off += 2;
      r.messages.forEach((m, i) => {
        const o = origins![i];
        buf[off] = (m.json ? 1 : 0) | (o === undefined ? 0 : 2);
        buf.writeUInt32BE(m.data.byteLength, off + 1);
        off += 5;
        if (o !== undefined) {
          buf.writeUInt16BE(o.byteLength, off);
          buf.set(o, off + 2);
          off += 2 + o.byteLength;
        }
        buf.set(m.data, off);
        off += m.data.byteLength;
      });
      break;
    case "pop":
      buf.writeUInt16BE(r.max, off);
      buf.writeUInt32BE(r.visibilityMs, off + 2);
      buf.writeUInt32BE(r.waitMs, off + 6);
      buf[off + 10] = consumer!.byteLength;
      buf.set(consumer!, off + 11);
      off += 11 + consumer!.byteLength;
      receipts(r.acks);
      break;
    case "ack":
      receipts(r.receipts);
      break;
    case "nack":
      buf.writeUInt32BE(r.delayMs, off);
      off += 4;
      receipts(r.receipts);
      break;
    case "extend":
      buf.writeUInt32BE(r.visibilityMs, off);
      off += 4;
      receipts(r.receipts);
      break;
    case "cancel":
      buf.writeDoubleBE(r.popSeq, off);
      off += 8;
      break;
    case "tick":
      break;
    case "checkpoint":
      buf.writeDoubleBE(r.asOf, off);
      buf.writeDoubleBE(r.trimBelow, off + 8);
      buf.set(stateBytes!, off + 16);
      off += 16 + stateBytes!.byteLength;
      break;
    case "dead-done":
      buf.writeUInt16BE(r.elements.length, off);
      off += 2;
      for (const e of r.elements) {
        buf.writeDoubleBE(e.seq, off);
        buf.writeUInt16BE(e.idx, off + 8);
        off += 10;
      }
      break;
  }
  if (off !== n) throw new Error(`queue record encoding: wrote ${off} bytes of ${n}`);
  return buf;
}

class Truncated extends Error {}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isSeq(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

/** Decodes a queue record, or returns null if the bytes are not one. */
export function decodeRecord(bytes: Uint8Array): QueueRecord | null {
  const buf = asBuffer(bytes);
  if (buf.length < HEADER_BYTES || buf[0] !== RECORD_MAGIC || buf[1] !== RECORD_VERSION) {
    return null;
  }
  const type = buf[2]!;
  const at = buf.readDoubleBE(3);
  if (!Number.isFinite(at) || at < 0) return null;
  let off = HEADER_BYTES;
  const need = (k: number): void => {
    if (off + k > buf.length) throw new Truncated();
  };
  const receipts = (): ReceiptRef[] => {
    need(2);
    const count = buf.readUInt16BE(off);
    off += 2;
    need(count * RECEIPT_BYTES);
    const out: ReceiptRef[] = new Array<ReceiptRef>(count);
    for (let i = 0; i < count; i++) {
      const seq = buf.readDoubleBE(off);
      if (!isSeq(seq)) throw new Truncated();
      out[i] = { seq, idx: buf.readUInt16BE(off + 8), delivery: buf.readUInt32BE(off + 10) };
      off += RECEIPT_BYTES;
    }
    return out;
  };
  try {
    let r: QueueRecord;
    switch (type) {
      case RecordType.Push: {
        need(2);
        const count = buf.readUInt16BE(off);
        off += 2;
        const messages: PushMessage[] = new Array<PushMessage>(count);
        for (let i = 0; i < count; i++) {
          need(5);
          const flags = buf[off]!;
          const len = buf.readUInt32BE(off + 1);
          off += 5;
          let origin: DeadLetterOrigin | undefined;
          if ((flags & 2) !== 0) {
            need(2);
            const olen = buf.readUInt16BE(off);
            need(2 + olen);
            origin = JSON.parse(
              utf8Decoder.decode(buf.subarray(off + 2, off + 2 + olen)),
            ) as DeadLetterOrigin;
            off += 2 + olen;
          }
          need(len);
          const data = buf.subarray(off, off + len);
          off += len;
          messages[i] =
            origin === undefined
              ? { json: (flags & 1) !== 0, data }
              : { json: (flags & 1) !== 0, data, origin };
        }
        if (count === 0) return null;
        r = { type: "push", at, messages };
        break;
      }
      case RecordType.Pop: {
        need(11);
        const max = buf.readUInt16BE(off);
        const visibilityMs = buf.readUInt32BE(off + 2);
        const waitMs = buf.readUInt32BE(off + 6);
        const clen = buf[off + 10]!;
        off += 11;
        need(clen);
        const consumer = utf8Decoder.decode(buf.subarray(off, off + clen));
        off += clen;
        if (max === 0) return null;
        r = { type: "pop", at, consumer, max, visibilityMs, waitMs, acks: receipts() };
        break;
      }
      case RecordType.Ack:
        r = { type: "ack", at, receipts: receipts() };
        break;
      case RecordType.Nack: {
        need(4);
        const delayMs = buf.readUInt32BE(off);
        off += 4;
        r = { type: "nack", at, delayMs, receipts: receipts() };
        break;
      }
      case RecordType.Extend: {
        need(4);
        const visibilityMs = buf.readUInt32BE(off);
        off += 4;
        r = { type: "extend", at, visibilityMs, receipts: receipts() };
        break;
      }
      case RecordType.Cancel: {
        need(8);
        const popSeq = buf.readDoubleBE(off);
        off += 8;
        if (!isSeq(popSeq)) return null;
        r = { type: "cancel", at, popSeq };
        break;
      }
      case RecordType.Tick:
        r = { type: "tick", at };
        break;
      case RecordType.Checkpoint: {
        need(16);
        const asOf = buf.readDoubleBE(off);
        const trimBelow = buf.readDoubleBE(off + 8);
        if (!isSeq(asOf) || !isSeq(trimBelow)) return null;
        const stateJson = utf8Decoder.decode(buf.subarray(off + 16));
        off = buf.length;
        r = { type: "checkpoint", at, asOf, trimBelow, stateJson };
        break;
      }
      case RecordType.DeadDone: {
        need(2);
        const count = buf.readUInt16BE(off);
        off += 2;
        need(10 * count);
        const elements: ElementRef[] = new Array<ElementRef>(count);
        for (let i = 0; i < count; i++) {
          const seq = buf.readDoubleBE(off);
          if (!isSeq(seq)) return null;
          elements[i] = { seq, idx: buf.readUInt16BE(off + 8) };
          off += 10;
        }
        r = { type: "dead-done", at, elements };
        break;
      }
      default:
        return null;
    }
    return off === buf.length ? r : null;
  } catch {
    // Truncated, bad UTF-8 or bad origin JSON: not a record of ours.
    return null;
  }
}
