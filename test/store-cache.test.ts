/** The store's view cache: its byte budget, and which views it drops first. */
import { describe, expect, it } from "vitest";
import { StoreCache } from "../src/store/cache.js";

describe("store view cache", () => {
  it("drops the least recently used object's views first: a read keeps an object", () => {
    // Budget for four views of 100 bytes (one view may take a quarter of it).
    const c = new StoreCache({ viewBytesMax: 400 });
    c.putView(0, "a", 1, "A", 100);
    c.putView(0, "b", 2, "B", 100);
    c.putView(0, "c", 3, "C", 100);
    c.putView(0, "d", 4, "D", 100);
    expect(c.view(0, "a", 1)).toEqual({ value: "A" });
    c.putView(0, "e", 5, "E", 100);
    expect(c.view(0, "b", 2)).toBeUndefined();
    expect(c.view(0, "a", 1)).toEqual({ value: "A" });
    expect(c.view(0, "c", 3)).toEqual({ value: "C" });
    expect(c.view(0, "e", 5)).toEqual({ value: "E" });
    c.putView(0, "f", 6, "F", 100);
    // a and c were read since; d was not.
    expect(c.view(0, "d", 4)).toBeUndefined();
    expect(c.view(0, "a", 1)).toEqual({ value: "A" });
  });

  it("a new version of an object counts as a use of it", () => {
    const c = new StoreCache({ viewBytesMax: 400 });
    c.putView(0, "a", 1, "A1", 50);
    c.putView(0, "b", 2, "B", 100);
    c.putView(0, "a", 5, "A5", 50);
    c.putView(0, "c", 6, "C", 100);
    c.putView(0, "d", 7, "D", 100);
    c.putView(0, "e", 8, "E", 100);
    expect(c.view(0, "b", 2)).toBeUndefined();
    expect(c.view(0, "a", 5)).toEqual({ value: "A5" });
    expect(c.view(0, "a", 1)).toEqual({ value: "A1" });
  });

  it("stays within its byte budget however objects are read and written", () => {
    const c = new StoreCache({ viewBytesMax: 1000 });
    let kept = 0;
    for (let i = 0; i < 500; i++) {
      c.putView(0, `o${i % 37}`, i, i, 10 + (i % 240));
      if (c.view(0, `o${(i * 7) % 37}`, i - 3) !== undefined) kept++;
      const held = Array.from({ length: 500 }, (_, s) => s).reduce(
        (sum, s) => sum + (c.view(0, `o${s % 37}`, s) === undefined ? 0 : 10 + (s % 240)),
        0,
      );
      expect(held).toBeLessThanOrEqual(1000);
    }
    expect(kept).toBeGreaterThan(0);
  });

  it("keeps books apart", () => {
    const c = new StoreCache();
    c.putView(1, "x", 3, "one", 10);
    c.putView(2, "x", 3, "two", 10);
    expect(c.view(1, "x", 3)).toEqual({ value: "one" });
    expect(c.view(2, "x", 3)).toEqual({ value: "two" });
    expect(c.view(3, "x", 3)).toBeUndefined();
  });
});

describe("store decision cache", () => {
  it("keeps at most its bound of decisions, dropping the least recently used first", () => {
    const c = new StoreCache({ decisionsMax: 3 });
    c.putDecision(0, 1, { committed: true });
    c.putDecision(0, 2, { committed: false });
    c.putDecision(0, 3, { committed: true });
    expect(c.decision(0, 1)).toBe(true);
    c.putDecision(0, 4, { committed: true });
    expect(c.decision(0, 2)).toBeUndefined();
    expect(c.decision(0, 1)).toBe(true);
    expect(c.decision(0, 3)).toBe(true);
    expect(c.decision(0, 4)).toBe(true);
    for (let s = 10; s < 100; s++) c.putDecision(0, s, { committed: s % 2 === 0 });
    const held = Array.from({ length: 100 }, (_, s) => c.decision(0, s)).filter(
      (d) => d !== undefined,
    );
    expect(held.length).toBe(3);
  });
});
