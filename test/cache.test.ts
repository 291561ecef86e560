import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { RecordCache } from "../src/log/cache.js";
import type { LogRecord } from "../src/log/record.js";
import type { BookId, SeqNum, Tag } from "../src/log/types.js";

function record(seqnum: number, dataBytes: number, auxBytes = 0, tags = 0): LogRecord {
  return {
    seqnum: seqnum as SeqNum,
    book: 1 as BookId,
    tags: Array.from({ length: tags }, (_, i) => BigInt(i + 1) as Tag),
    data: new Uint8Array(dataBytes),
    auxData: auxBytes === 0 ? null : new Uint8Array(auxBytes),
  };
}

/** The fixed per-record overhead the cache charges, measured from an empty record. */
function overheadBytes(): number {
  const c = new RecordCache(1 << 20);
  c.put(record(0, 0));
  return c.sizeBytes;
}
const OVERHEAD = overheadBytes();

/** What a record costs: overhead, payload, aux data and 8 bytes per tag. */
function cost(r: LogRecord): number {
  return OVERHEAD + r.data.byteLength + (r.auxData?.byteLength ?? 0) + 8 * r.tags.length;
}

/** A cache that holds exactly `n` records of `dataBytes` each. */
function cacheFor(n: number, dataBytes: number): RecordCache {
  return new RecordCache(n * cost(record(0, dataBytes)));
}

const has = (c: RecordCache, seqnums: readonly number[]): boolean[] =>
  seqnums.map((s) => c.peek(s as SeqNum) !== undefined);

describe("RecordCache", () => {
  it("charges a positive fixed overhead plus payload, aux data and tag bytes per record", () => {
    expect(OVERHEAD).toBeGreaterThan(0);
    const c = new RecordCache(1 << 20);
    c.put(record(1, 100, 20, 3));
    expect(c.sizeBytes).toBe(OVERHEAD + 100 + 20 + 24);
  });

  it("evicts the least recently used record, where a get refreshes recency", () => {
    const c = cacheFor(3, 10);
    c.put(record(1, 10));
    c.put(record(2, 10));
    c.put(record(3, 10));
    expect(c.get(1 as SeqNum)?.seqnum).toBe(1);
    c.put(record(4, 10));
    expect(has(c, [1, 2, 3, 4])).toEqual([true, false, true, true]);
    c.put(record(5, 10));
    expect(has(c, [1, 3, 4, 5])).toEqual([true, false, true, true]);
  });

  it("peek neither refreshes recency nor counts a hit or a miss", () => {
    const c = cacheFor(2, 10);
    c.put(record(1, 10));
    c.put(record(2, 10));
    expect(c.peek(1 as SeqNum)?.seqnum).toBe(1);
    expect(c.peek(9 as SeqNum)).toBeUndefined();
    c.put(record(3, 10));
    expect(has(c, [1, 2, 3])).toEqual([false, true, true]);
    expect([c.hits, c.misses]).toEqual([0, 0]);
  });

  it("counts hits and misses", () => {
    const c = cacheFor(2, 10);
    c.put(record(1, 10));
    c.get(1 as SeqNum);
    c.get(1 as SeqNum);
    c.get(2 as SeqNum);
    expect([c.hits, c.misses]).toEqual([2, 1]);
  });

  it("drops a cached record when its new version is too large to cache, so no stale version is served", () => {
    const c = cacheFor(2, 10);
    c.put(record(1, 10));
    c.put(record(1, c.capacityBytes));
    expect(c.peek(1 as SeqNum)).toBeUndefined();
    expect(c.sizeBytes).toBe(0);
  });

  it("does not cache a record larger than the whole budget, and evicts nothing for it", () => {
    const c = cacheFor(2, 10);
    c.put(record(1, 10));
    c.put(record(2, 10));
    const before = c.sizeBytes;
    c.put(record(3, c.capacityBytes));
    expect(c.peek(3 as SeqNum)).toBeUndefined();
    expect(has(c, [1, 2])).toEqual([true, true]);
    expect(c.sizeBytes).toBe(before);
  });

  it("caches a record exactly the size of the budget by evicting everything else", () => {
    const c = cacheFor(2, 10);
    c.put(record(1, 10));
    c.put(record(2, 10));
    c.put(record(3, c.capacityBytes - OVERHEAD));
    expect(has(c, [1, 2, 3])).toEqual([false, false, true]);
    expect(c.sizeBytes).toBe(c.capacityBytes);
    expect(c.size).toBe(1);
  });

  it("gives back a deleted record's bytes, ignores deleting an absent one, and counts a replaced record once", () => {
    const c = new RecordCache(1 << 20);
    c.put(record(1, 10));
    c.put(record(2, 30, 5, 2));
    c.delete(2 as SeqNum);
    expect(c.sizeBytes).toBe(OVERHEAD + 10);
    c.delete(2 as SeqNum);
    c.delete(77 as SeqNum);
    expect(c.sizeBytes).toBe(OVERHEAD + 10);
    c.put(record(1, 50, 7));
    expect(c.sizeBytes).toBe(OVERHEAD + 57);
    expect(c.size).toBe(1);
    c.delete(1 as SeqNum);
    expect([c.sizeBytes, c.size]).toEqual([0, 0]);
  });

  type Op =
    | { kind: "put"; seqnum: number; dataBytes: number; auxBytes: number; tags: number }
    | { kind: "get" | "peek" | "delete"; seqnum: number };

  const seqnumArb = fc.nat(15);
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("put" as const),
        seqnum: seqnumArb,
        dataBytes: fc.oneof(fc.nat(300), fc.integer({ min: 300, max: 1200 })),
        auxBytes: fc.oneof(fc.constant(0), fc.nat(100)),
        tags: fc.nat(4),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constantFrom("get" as const, "peek" as const),
        seqnum: seqnumArb,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("delete" as const), seqnum: seqnumArb }),
    },
  );

  it("behaves like a model LRU list: never above its byte budget, same contents, same byte count, same hit and miss counts", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.array(opArb, { maxLength: 120, size: "max" }),
        (capacity, ops) => {
          const cache = new RecordCache(capacity);
          // Oldest first.
          const lru: LogRecord[] = [];
          let hits = 0;
          let misses = 0;
          const remove = (s: number): void => {
            const i = lru.findIndex((r) => r.seqnum === s);
            if (i >= 0) lru.splice(i, 1);
          };
          for (const op of ops) {
            switch (op.kind) {
              case "put": {
                const r = record(op.seqnum, op.dataBytes, op.auxBytes, op.tags);
                cache.put(r);
                // A new version always replaces the old one; one too large to cache drops it.
                remove(op.seqnum);
                if (cost(r) <= capacity) {
                  lru.push(r);
                  while (lru.reduce((n, x) => n + cost(x), 0) > capacity) lru.shift();
                }
                break;
              }
              case "get": {
                const got = cache.get(op.seqnum as SeqNum);
                const i = lru.findIndex((r) => r.seqnum === op.seqnum);
                if (i < 0) {
                  misses++;
                  expect(got).toBeUndefined();
                } else {
                  hits++;
                  const [r] = lru.splice(i, 1);
                  lru.push(r!);
                  expect(got).toBe(r);
                }
                break;
              }
              case "peek":
                expect(cache.peek(op.seqnum as SeqNum)).toBe(
                  lru.find((r) => r.seqnum === op.seqnum),
                );
                break;
              case "delete":
                cache.delete(op.seqnum as SeqNum);
                remove(op.seqnum);
                break;
            }
            const bytes = lru.reduce((n, x) => n + cost(x), 0);
            expect(cache.sizeBytes).toBeLessThanOrEqual(capacity);
            expect(cache.sizeBytes).toBe(bytes);
            expect(cache.size).toBe(lru.length);
            for (const r of lru) expect(cache.peek(r.seqnum)).toBe(r);
            expect([cache.hits, cache.misses]).toEqual([hits, misses]);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
