import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  RecordKind,
  decodeMeta,
  droppedPayloadOf,
  encodeRecord,
  headerBytes,
  headerOf,
  isPayloadDropped,
  payloadOf,
  type RecordMeta,
} from "../src/log/record.js";
import { RECORD_BYTES_MAX, TAGS_PER_RECORD_MAX } from "../src/log/limits.js";
import type { BookId, SeqNum, Tag } from "../src/log/types.js";

const U64_MAX = (1n << 64n) - 1n;

const bookArb = fc.oneof(
  fc.constantFrom(0, 1, 0xffff_ffff),
  fc.integer({ min: 0, max: 0xffff_ffff }),
) as fc.Arbitrary<BookId>;
const tagArb = fc.oneof(
  fc.constantFrom(1n, U64_MAX, U64_MAX - 1n, 1n << 63n),
  fc.bigInt({ min: 1n, max: U64_MAX }),
) as fc.Arbitrary<Tag>;
const tagsArb = fc.oneof(
  fc.uniqueArray(tagArb, { maxLength: TAGS_PER_RECORD_MAX }),
  fc.constant([] as Tag[]),
  fc.uniqueArray(tagArb, { minLength: TAGS_PER_RECORD_MAX, maxLength: TAGS_PER_RECORD_MAX }),
);
const positionArb = fc.oneof(
  fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);

const metaArb: fc.Arbitrary<RecordMeta> = fc.oneof(
  fc.record({ kind: fc.constant(RecordKind.Data), book: bookArb, tags: tagsArb }),
  fc.record({
    kind: fc.constant(RecordKind.Cond),
    book: bookArb,
    tags: tagsArb,
    condTag: fc.oneof(fc.constant(0n as Tag), tagArb),
    condPosition: positionArb,
  }),
  fc.record({
    kind: fc.constant(RecordKind.Trim),
    book: bookArb,
    tags: tagsArb,
    trimTag: fc.oneof(fc.constant(0n as Tag), tagArb),
    trimSeqnum: positionArb as fc.Arbitrary<SeqNum>,
  }),
);

const payloadArb = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 512 }),
  fc.uint8Array({ minLength: 1, maxLength: 8192 }),
);

/** A copy of `bytes` as a plain Uint8Array that starts `offset` bytes into a larger buffer. */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const backing = new Uint8Array(offset + bytes.length + 3).fill(0xaa);
  backing.set(bytes, offset);
  return backing.subarray(offset, offset + bytes.length);
}

function checkRoundTrip(meta: RecordMeta, data: Uint8Array): void {
  const encoded = encodeRecord(meta, data);
  const h = headerBytes(meta);
  expect(encoded.length).toBe(h + data.length);
  expect(decodeMeta(encoded)).toEqual(meta);

  const header = headerOf(encoded);
  expect(header.length).toBe(h);
  expect(Buffer.from(header).equals(Buffer.from(encodeRecord(meta, new Uint8Array(0))))).toBe(true);
  expect(decodeMeta(header)).toEqual(meta);
  expect(payloadOf(header).length).toBe(0);
  expect(Buffer.from(payloadOf(encoded)).equals(Buffer.from(data))).toBe(true);

  // Bytes received from elsewhere are often a view into a larger buffer, not a Buffer.
  const view = atOffset(encoded, 5);
  expect(decodeMeta(view)).toEqual(meta);
  expect(Buffer.from(payloadOf(view)).equals(Buffer.from(data))).toBe(true);
  expect(decodeMeta(headerOf(view))).toEqual(meta);
}

describe("record encoding", () => {
  it("a record whose payload was dropped keeps its header and meta, and is told apart from one with empty data", () => {
    fc.assert(
      fc.property(metaArb, payloadArb, (meta, payload) => {
        const full = encodeRecord(meta, payload);
        const dropped = droppedPayloadOf(full);
        expect(isPayloadDropped(dropped)).toBe(true);
        expect(isPayloadDropped(full)).toBe(false);
        expect(isPayloadDropped(encodeRecord(meta, new Uint8Array(0)))).toBe(false);
        expect(decodeMeta(dropped)).toEqual(decodeMeta(full));
        expect(headerOf(dropped).length).toBe(headerOf(full).length);
        expect(payloadOf(dropped).length).toBe(0);
        // The original is left as it was.
        expect(isPayloadDropped(full)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("round-trips the header and payload of every kind through encodeRecord, decodeMeta, headerOf and payloadOf", () => {
    fc.assert(fc.property(metaArb, payloadArb, checkRoundTrip), { numRuns: 500 });
  });

  it("round-trips 0 and 16 max-u64 tags with empty and largest payloads for each kind", () => {
    const book = 0xffff_ffff as BookId;
    const max = U64_MAX as Tag;
    const sixteen = Array.from({ length: 16 }, (_, i) => (U64_MAX - BigInt(i)) as Tag);
    const large = new Uint8Array(RECORD_BYTES_MAX);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff;
    for (const tags of [[], sixteen]) {
      const metas: RecordMeta[] = [
        { kind: RecordKind.Data, book, tags },
        {
          kind: RecordKind.Cond,
          book,
          tags,
          condTag: max,
          condPosition: Number.MAX_SAFE_INTEGER,
        },
        {
          kind: RecordKind.Trim,
          book,
          tags,
          trimTag: max,
          trimSeqnum: Number.MAX_SAFE_INTEGER as SeqNum,
        },
      ];
      for (const meta of metas) {
        checkRoundTrip(meta, new Uint8Array(0));
        checkRoundTrip(meta, large);
      }
    }
  });

  it("keeps the header small: 6 bytes, 8 per tag, and 16 more for cond and trim records", () => {
    const book = 1 as BookId;
    const tags = [1n, 2n] as Tag[];
    expect(headerBytes({ kind: RecordKind.Data, book, tags: [] })).toBe(6);
    expect(headerBytes({ kind: RecordKind.Data, book, tags })).toBe(22);
    expect(
      headerBytes({ kind: RecordKind.Cond, book, tags, condTag: 1n as Tag, condPosition: 0 }),
    ).toBe(38);
    expect(
      headerBytes({
        kind: RecordKind.Trim,
        book,
        tags: [],
        trimTag: 0n as Tag,
        trimSeqnum: 0 as SeqNum,
      }),
    ).toBe(22);
  });

  it("refuses to decode an unknown kind or a header cut short", () => {
    const meta: RecordMeta = {
      kind: RecordKind.Cond,
      book: 9 as BookId,
      tags: [7n, 8n] as Tag[],
      condTag: 7n as Tag,
      condPosition: 3,
    };
    const encoded = encodeRecord(meta, new Uint8Array(0));
    for (let n = 0; n < encoded.length; n++)
      expect(() => decodeMeta(encoded.subarray(0, n)), `${n} bytes`).toThrow();
    const unknown = Uint8Array.from(
      encodeRecord({ kind: RecordKind.Data, book: 1 as BookId, tags: [] }, new Uint8Array(0)),
    );
    unknown[0] = 3;
    expect(() => decodeMeta(unknown)).toThrow(/unknown record kind/);
  });
});
