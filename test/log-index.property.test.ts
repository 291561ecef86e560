/**
 * The index against a naive model. The model keeps every accepted record and every trim in
 * plain arrays and answers each query by filtering and sorting, straight from the documented
 * semantics: a record is in the (book, tag) sub-stream when it carries the tag (tag 0: every
 * record of the book); a conditional append is accepted iff the condTag sub-stream has had
 * exactly condPosition records accepted so far (trimmed ones included); a trim of (tag, s)
 * recorded at seqnum t hides the sub-stream's records below min(s, t), and a trim of tag 0
 * hides them from every sub-stream of the book.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { LogIndex, type ApplyOutcome } from "../src/log/log-index.js";
import { RecordKind, type RecordMeta } from "../src/log/record.js";
import { SEQNUM_MAX, type BookId, type SeqNum, type Tag } from "../src/log/types.js";
import { InvariantViolation } from "../src/log/assert.js";

const BOOKS: readonly number[] = [0, 1, 7, 0xffff_ffff];
const TAG_POOL: readonly bigint[] = [1n, 2n, 3n, (1n << 64n) - 1n];
/** Tags a query may select: tag 0, the pool, and a tag no record ever carries. */
const QUERY_TAGS: readonly bigint[] = [0n, ...TAG_POOL, 99n];

// ---------------------------------------------------------------------------------------
// The naive model.

interface ModelRecord {
  readonly seqnum: number;
  readonly book: number;
  readonly tags: readonly bigint[];
}

interface ModelTrim {
  readonly seqnum: number;
  readonly book: number;
  readonly tag: bigint;
  readonly upTo: number;
}

class NaiveLog {
  readonly records: ModelRecord[] = [];
  readonly trims: ModelTrim[] = [];
  /** Sequence numbers a tag-0 trim has already reported as deleted. */
  private readonly deleted = new Set<number>();
  lastSeqnum = -1;

  private static carries(r: ModelRecord, book: number, tag: bigint): boolean {
    return r.book === book && (tag === 0n || r.tags.includes(tag));
  }

  /** Records ever accepted into the sub-stream, trimmed or not. */
  count(book: number, tag: bigint): number {
    return this.records.filter((r) => NaiveLog.carries(r, book, tag)).length;
  }

  private hidden(r: ModelRecord, tag: bigint): boolean {
    return this.trims.some(
      (t) =>
        t.book === r.book &&
        (t.tag === tag || t.tag === 0n) &&
        r.seqnum < Math.min(t.upTo, t.seqnum),
    );
  }

  /** Visible sequence numbers of the sub-stream, ascending. */
  visible(book: number, tag: bigint): number[] {
    return this.records
      .filter((r) => NaiveLog.carries(r, book, tag) && !this.hidden(r, tag))
      .map((r) => r.seqnum)
      .sort((a, b) => a - b);
  }

  data(seqnum: number, book: number, tags: readonly bigint[]): ApplyOutcome {
    this.records.push({ seqnum, book, tags });
    return { kind: "indexed" };
  }

  cond(
    seqnum: number,
    book: number,
    tags: readonly bigint[],
    condTag: bigint,
    condPosition: number,
  ): ApplyOutcome {
    const actual = this.count(book, condTag);
    if (actual !== condPosition) return { kind: "cond-failed", actualPosition: actual };
    this.records.push({ seqnum, book, tags });
    return { kind: "indexed" };
  }

  trim(seqnum: number, book: number, tag: bigint, upTo: number): ApplyOutcome {
    this.trims.push({ seqnum, book, tag, upTo });
    const deleted: number[] = [];
    if (tag === 0n) {
      const point = Math.min(upTo, seqnum);
      for (const r of this.records) {
        if (r.book === book && r.seqnum < point && !this.deleted.has(r.seqnum)) {
          this.deleted.add(r.seqnum);
          deleted.push(r.seqnum);
        }
      }
      deleted.sort((a, b) => a - b);
    }
    return { kind: "trim", deleted: deleted as SeqNum[] };
  }
}

// ---------------------------------------------------------------------------------------
// Operations.

type CondPosition =
  | { readonly mode: "exact" }
  | { readonly mode: "offset"; readonly delta: number }
  | { readonly mode: "absolute"; readonly value: number };

type TrimPoint =
  | { readonly mode: "back"; readonly by: number }
  | { readonly mode: "ahead"; readonly by: number }
  | { readonly mode: "max" };

type Op =
  | {
      readonly kind: "data";
      readonly gap: number;
      readonly bookIx: number;
      readonly tags: readonly bigint[];
      readonly count: number;
    }
  | {
      readonly kind: "cond";
      readonly gap: number;
      readonly bookIx: number;
      readonly tags: readonly bigint[];
      readonly condTag: bigint;
      readonly position: CondPosition;
    }
  | {
      readonly kind: "trim";
      readonly gap: number;
      readonly bookIx: number;
      readonly tag: bigint;
      readonly point: TrimPoint;
    }
  | { readonly kind: "check" };

const gapArb = fc.integer({ min: 0, max: 2 });
const bookIxArb = fc.nat(3);
const tagsArb = fc.subarray([...TAG_POOL]);
const condPositionArb: fc.Arbitrary<CondPosition> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ mode: "exact" as const }) },
  {
    weight: 2,
    arbitrary: fc
      .integer({ min: -2, max: 3 })
      .filter((d) => d !== 0)
      .map((delta) => ({ mode: "offset" as const, delta })),
  },
  { weight: 1, arbitrary: fc.nat(12).map((value) => ({ mode: "absolute" as const, value })) },
);
const trimPointArb: fc.Arbitrary<TrimPoint> = fc.oneof(
  { weight: 4, arbitrary: fc.nat(40).map((by) => ({ mode: "back" as const, by })) },
  { weight: 1, arbitrary: fc.nat(10).map((by) => ({ mode: "ahead" as const, by })) },
  { weight: 1, arbitrary: fc.constant({ mode: "max" as const }) },
);

/** Tag 0 is as likely as the rest together: whole-book trims interact with every sub-stream. */
const trimTagArb = fc.oneof(fc.constant(0n), fc.constantFrom(...TAG_POOL));

function opArb(maxBatch: number): fc.Arbitrary<Op> {
  return fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("data" as const),
        gap: gapArb,
        bookIx: bookIxArb,
        tags: tagsArb,
        count: fc.integer({ min: 1, max: maxBatch }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("cond" as const),
        gap: gapArb,
        bookIx: bookIxArb,
        tags: tagsArb,
        condTag: fc.constantFrom(0n, ...TAG_POOL),
        position: condPositionArb,
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("trim" as const),
        gap: gapArb,
        bookIx: bookIxArb,
        tag: trimTagArb,
        point: trimPointArb,
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "check" as const }) },
  );
}

// ---------------------------------------------------------------------------------------
// Driving both and comparing.

function fail(message: string): never {
  throw new Error(message);
}

/** Compares every read the index can answer at `points` with the model's answer. */
function compare(index: LogIndex, model: NaiveLog, points: readonly number[]): void {
  for (const book of BOOKS) {
    const b = book as BookId;
    const live = model.visible(book, 0n).length > 0;
    if (index.hasLiveRecords(b) !== live)
      fail(`hasLiveRecords(${book}) = ${index.hasLiveRecords(b)}, model says ${live}`);
    for (const tag of QUERY_TAGS) {
      const t = tag as Tag;
      const length = index.streamLength(b, t);
      const expectedLength = model.count(book, tag);
      if (length !== expectedLength)
        fail(`streamLength(${book}, ${tag}) = ${length}, model says ${expectedLength}`);
      const visible = model.visible(book, tag);
      for (const p of points) {
        const next = index.readNext(b, t, p as SeqNum);
        const expectedNext = visible.find((s) => s >= p) ?? null;
        if (next !== expectedNext)
          fail(`readNext(${book}, ${tag}, ${p}) = ${next}, model says ${expectedNext}`);
        const prev = index.readPrev(b, t, p as SeqNum);
        const expectedPrev = visible.filter((s) => s <= p).at(-1) ?? null;
        if (prev !== expectedPrev)
          fail(`readPrev(${book}, ${tag}, ${p}) = ${prev}, model says ${expectedPrev}`);
      }
      const tail = index.readPrev(b, t, SEQNUM_MAX);
      const expectedTail = visible.at(-1) ?? null;
      if (tail !== expectedTail)
        fail(`readPrev(${book}, ${tag}, SEQNUM_MAX) = ${tail}, model says ${expectedTail}`);
      const past = index.readNext(b, t, SEQNUM_MAX);
      if (past !== null) fail(`readNext(${book}, ${tag}, SEQNUM_MAX) = ${past}, expected null`);
    }
  }
}

/** Every sequence number from 0 to just past the last one. */
function allPoints(model: NaiveLog): number[] {
  return Array.from({ length: model.lastSeqnum + 3 }, (_, i) => i);
}

/** A sample for long logs: a stride, both ends, and every trim boundary with its neighbours. */
function samplePoints(model: NaiveLog): number[] {
  const points = new Set<number>([0, model.lastSeqnum, model.lastSeqnum + 1]);
  for (let p = 0; p <= model.lastSeqnum + 1; p += 13) points.add(p);
  for (const t of model.trims) {
    const point = Math.min(t.upTo, t.seqnum);
    for (const p of [point - 1, point, point + 1]) if (p >= 0) points.add(p);
  }
  return [...points];
}

function run(
  numBooks: number,
  firstSeqnum: number,
  ops: readonly Op[],
  points: (model: NaiveLog) => number[],
): void {
  const index = new LogIndex();
  const model = new NaiveLog();
  let next = firstSeqnum;
  const take = (gap: number): number => {
    const s = next + gap;
    next = s + 1;
    model.lastSeqnum = s;
    return s;
  };
  const bookOf = (ix: number): number => BOOKS[ix % numBooks]!;

  for (const op of ops) {
    switch (op.kind) {
      case "data": {
        const book = bookOf(op.bookIx);
        for (let i = 0; i < op.count; i++) {
          const s = take(i === 0 ? op.gap : 0);
          const meta: RecordMeta = {
            kind: RecordKind.Data,
            book: book as BookId,
            tags: op.tags as Tag[],
          };
          const got = index.apply(s as SeqNum, meta);
          const expected = model.data(s, book, op.tags);
          if (got.kind !== expected.kind) expect(got).toEqual(expected);
        }
        break;
      }
      case "cond": {
        const book = bookOf(op.bookIx);
        const s = take(op.gap);
        const actual = model.count(book, op.condTag);
        const condPosition =
          op.position.mode === "exact"
            ? actual
            : op.position.mode === "offset"
              ? actual + op.position.delta
              : op.position.value;
        const got = index.apply(s as SeqNum, {
          kind: RecordKind.Cond,
          book: book as BookId,
          tags: op.tags as Tag[],
          condTag: op.condTag as Tag,
          condPosition,
        });
        expect(got).toEqual(model.cond(s, book, op.tags, op.condTag, condPosition));
        break;
      }
      case "trim": {
        const book = bookOf(op.bookIx);
        const s = take(op.gap);
        const upTo =
          op.point.mode === "back"
            ? Math.max(0, s - op.point.by)
            : op.point.mode === "ahead"
              ? s + op.point.by
              : SEQNUM_MAX;
        const got = index.apply(s as SeqNum, {
          kind: RecordKind.Trim,
          book: book as BookId,
          tags: [],
          trimTag: op.tag as Tag,
          trimSeqnum: upTo as SeqNum,
        });
        expect(got).toEqual(model.trim(s, book, op.tag, upTo));
        break;
      }
      case "check":
        compare(index, model, points(model));
        break;
    }
  }
  compare(index, model, points(model));
}

describe("LogIndex against a naive model", () => {
  it("answers readNext, readPrev, streamLength and hasLiveRecords like the model, with the model's cond-append and trim outcomes, over random data, cond and trim records on several books", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.nat(3),
        fc.array(opArb(1), { maxLength: 60, size: "max" }),
        (numBooks, firstSeqnum, ops) => run(numBooks, firstSeqnum, ops, allPoints),
      ),
      { numRuns: 300 },
    );
  });

  it("still answers like the model after long trimmed sub-streams are compacted", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.array(opArb(400), { minLength: 10, maxLength: 30, size: "max" }),
        (numBooks, ops) => run(numBooks, 0, ops, samplePoints),
      ),
      { numRuns: 12 },
    );
  });

  it("accepts a conditional append exactly at the sub-stream's count, trims included, and reports the actual position when it fails", () => {
    const index = new LogIndex();
    const book = 3 as BookId;
    const a = 5n as Tag;
    const data = (s: number): ApplyOutcome =>
      index.apply(s as SeqNum, { kind: RecordKind.Data, book, tags: [a] });
    const cond = (s: number, condPosition: number): ApplyOutcome =>
      index.apply(s as SeqNum, {
        kind: RecordKind.Cond,
        book,
        tags: [a],
        condTag: a,
        condPosition,
      });
    data(0);
    data(1);
    expect(cond(2, 1)).toEqual({ kind: "cond-failed", actualPosition: 2 });
    expect(cond(3, 2)).toEqual({ kind: "indexed" });
    // Trimming hides records but does not change the count a conditional append tests.
    expect(
      index.apply(4 as SeqNum, {
        kind: RecordKind.Trim,
        book,
        tags: [],
        trimTag: 0n as Tag,
        trimSeqnum: 4 as SeqNum,
      }),
    ).toEqual({ kind: "trim", deleted: [0, 1, 3] });
    expect(index.readNext(book, a, 0 as SeqNum)).toBeNull();
    expect(cond(5, 0)).toEqual({ kind: "cond-failed", actualPosition: 3 });
    expect(cond(6, 3)).toEqual({ kind: "indexed" });
    expect(index.readNext(book, a, 0 as SeqNum)).toBe(6);
    expect(index.streamLength(book, a)).toBe(4);
  });

  it("never lets a trim hide records appended after the trim record", () => {
    const index = new LogIndex();
    const book = 1 as BookId;
    index.apply(10 as SeqNum, { kind: RecordKind.Data, book, tags: [] });
    index.apply(11 as SeqNum, {
      kind: RecordKind.Trim,
      book,
      tags: [],
      trimTag: 0n as Tag,
      trimSeqnum: SEQNUM_MAX,
    });
    index.apply(12 as SeqNum, { kind: RecordKind.Data, book, tags: [] });
    expect(index.readNext(book, 0n as Tag, 0 as SeqNum)).toBe(12);
    expect(index.readPrev(book, 0n as Tag, 11 as SeqNum)).toBeNull();
    expect(index.hasLiveRecords(book)).toBe(true);
  });

  it("crashes on a sequence number that does not increase", () => {
    const index = new LogIndex();
    const book = 1 as BookId;
    index.apply(5 as SeqNum, { kind: RecordKind.Data, book, tags: [] });
    expect(() => index.apply(5 as SeqNum, { kind: RecordKind.Data, book, tags: [] })).toThrow(
      InvariantViolation,
    );
    expect(() => index.apply(4 as SeqNum, { kind: RecordKind.Data, book, tags: [] })).toThrow(
      InvariantViolation,
    );
    expect(index.readNext(book, 0n as Tag, 0 as SeqNum)).toBe(5);
    expect(index.readNext(book, 0n as Tag, 6 as SeqNum)).toBeNull();
  });
});
