import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LogRecord } from "../src/log/record.js";
import type { BookId, SeqNum, Tag } from "../src/log/types.js";
import {
  READ_AHEAD_AFTER_READS,
  READ_AHEAD_RECORDS_FIRST,
  READ_AHEAD_RECORDS_MAX,
  ReadAhead,
  type Direction,
} from "../src/runtime/read-ahead.js";

/** A tag's records as the log holds them: ascending seqnums, some hidden by trims. */
class Model {
  trimPoint = 0;
  constructor(readonly seqnums: number[]) {}
  private rec(s: number): LogRecord {
    return {
      seqnum: s as SeqNum,
      book: 1 as BookId,
      tags: [7n as Tag],
      data: new Uint8Array([s & 0xff]),
      auxData: null,
    };
  }
  next(s: number): LogRecord | null {
    const x = this.seqnums.find((q) => q >= s && q >= this.trimPoint);
    return x === undefined ? null : this.rec(x);
  }
  prev(s: number): LogRecord | null {
    const xs = this.seqnums.filter((q) => q <= s && q >= this.trimPoint);
    return xs.length === 0 ? null : this.rec(xs.at(-1)!);
  }
  append(): void {
    this.seqnums.push((this.seqnums.at(-1) ?? -1) + 1 + (this.seqnums.length % 3));
  }
}

type Step =
  | { readonly t: "read"; readonly dir: Direction; readonly at: "continue" | number }
  | { readonly t: "append" }
  | { readonly t: "trim"; readonly at: number };

/** What a worker's LogBook does for one read: the cache, else the host (the model). */
function read(
  ra: ReadAhead,
  m: Model,
  dir: Direction,
  s: number,
  asks: { batches: number; records: number },
): LogRecord | null {
  const known = ra.lookup("7", dir, s);
  if (known !== undefined) return known;
  const n = ra.batchFor("7", dir, s);
  expect(n).toBeGreaterThanOrEqual(1);
  expect(n).toBeLessThanOrEqual(READ_AHEAD_RECORDS_MAX);
  const got: LogRecord[] = [];
  let q = s;
  while (got.length < n && q >= 0) {
    const r = dir === "next" ? m.next(q) : m.prev(q);
    if (r === null) break;
    got.push(r);
    q = dir === "next" ? r.seqnum + 1 : r.seqnum - 1;
  }
  asks.batches++;
  asks.records += got.length;
  ra.learn("7", dir, s, n, got);
  return got[0] ?? null;
}

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant("read" as const),
      dir: fc.constantFrom<Direction>("next", "prev"),
      at: fc.oneof(fc.constant("continue" as const), fc.integer({ min: 0, max: 400 })),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ t: "append" as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("trim" as const), at: fc.nat(400) }) },
);

describe("worker read-ahead", () => {
  it("answers every readNext and readPrev as the log would, through appends and its own trims", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 120 }),
        fc.array(stepArb, { maxLength: 80 }),
        (seqnums, steps) => {
          const m = new Model([...seqnums].sort((a, b) => a - b));
          const ra = new ReadAhead();
          const asks = { batches: 0, records: 0 };
          let last: { dir: Direction; r: LogRecord } | undefined;
          for (const st of steps) {
            if (st.t === "append") m.append();
            else if (st.t === "trim") {
              m.trimPoint = Math.max(m.trimPoint, st.at);
              ra.clear(); // the worker's LogBook does this on its own trim
            } else {
              let s: number;
              if (st.at === "continue") {
                if (last === undefined) continue;
                s = last.dir === "next" ? last.r.seqnum + 1 : last.r.seqnum - 1;
                if (s < 0) continue;
              } else s = st.at;
              const dir = st.at === "continue" ? last!.dir : st.dir;
              const got = read(ra, m, dir, s, asks);
              const want = dir === "next" ? m.next(s) : m.prev(s);
              expect(got?.seqnum ?? null).toBe(want?.seqnum ?? null);
              last = got === null ? undefined : { dir, r: got };
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("reads a long sub-stream in a few growing batches instead of one request per record", () => {
    const m = new Model(Array.from({ length: 5000 }, (_, i) => i * 2));
    for (const dir of ["next", "prev"] as const) {
      const ra = new ReadAhead();
      const asks = { batches: 0, records: 0 };
      let r = read(ra, m, dir, dir === "next" ? 0 : 10_000, asks);
      let n = 1;
      for (let guard = 0; r !== null && guard < 20_000; guard++) {
        const s = dir === "next" ? r.seqnum + 1 : r.seqnum - 1;
        if (s < 0) break;
        r = read(ra, m, dir, s, asks);
        if (r !== null) n++;
      }
      expect(n).toBe(5000);
      // 3 plain reads, then 8, 16, ..., 256, 256, ...: about 5000 / 256 + 9 batches.
      expect(asks.batches).toBeLessThan(30);
      expect(asks.records).toBeLessThan(5000 + READ_AHEAD_RECORDS_MAX + READ_AHEAD_RECORDS_FIRST);
    }
  });

  it("asks for one record for reads that do not continue the previous one, and for short walks", () => {
    const m = new Model(Array.from({ length: 100 }, (_, i) => i * 3));
    const ra = new ReadAhead();
    const asks = { batches: 0, records: 0 };
    for (const s of [50, 10, 200, 0, 123]) read(ra, m, "next", s, asks);
    expect(asks).toEqual({ batches: 5, records: 5 });
    // A walk back of READ_AHEAD_AFTER_READS + 1 records reads exactly those.
    let r = read(ra, m, "prev", 150, asks);
    for (let i = 0; i < READ_AHEAD_AFTER_READS; i++) r = read(ra, m, "prev", r!.seqnum - 1, asks);
    expect(asks).toEqual({ batches: 8, records: 8 });
    // The next one continuing the walk asks for a batch.
    read(ra, m, "prev", r!.seqnum - 1, asks);
    expect(asks).toEqual({ batches: 9, records: 8 + READ_AHEAD_RECORDS_FIRST });
  });
});
