import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  parseBookId,
  parseMetalogPosition,
  parseSeqNum,
  parseTag,
  seqnumToJSON,
  tagOf,
  type BookId,
} from "../src/log/types.js";
import { BokiError, InvalidArgumentError, TimeoutError } from "../src/log/errors.js";
import { logOfBook } from "../src/log/mapping.js";
import { InvariantViolation } from "../src/log/assert.js";

const U64_MAX = (1n << 64n) - 1n;

/** Asserts that `fn` fails with a non-retryable InvalidArgumentError. */
function expectInvalid(fn: () => unknown, what: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `${what} should be rejected`).toBeInstanceOf(InvalidArgumentError);
  const err = caught as InvalidArgumentError;
  expect(err.code).toBe("INVALID_ARGUMENT");
  expect(err.retryable).toBe(false);
  expect(err.message.length).toBeGreaterThan(0);
}

/** Values no parser accepts: wrong types and malformed or non-canonical strings. */
const NEVER_VALID: ReadonlyArray<[string, unknown]> = [
  ["undefined", undefined],
  ["null", null],
  ["true", true],
  ["an object", {}],
  ["an array", [1]],
  ["a function", () => 1],
  ["a symbol", Symbol("x")],
  ["a Uint8Array", new Uint8Array(1)],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
  ["-1", -1],
  ["0.5", 0.5],
  ["1.5", 1.5],
  ["an empty string", ""],
  ['"-1"', "-1"],
  ['"1.5"', "1.5"],
  ['"1e3"', "1e3"],
  ['"0x10"', "0x10"],
  ['"+1"', "+1"],
  ['" 1"', " 1"],
  ['"1 "', "1 "],
  ['"01"', "01"],
  ['"abc"', "abc"],
  ['"١"', "١"],
];

describe("parseSeqNum", () => {
  it("accepts non-negative safe integers as numbers, bigints and canonical decimal strings", () => {
    expect(parseSeqNum(0)).toBe(0);
    expect(parseSeqNum(42)).toBe(42);
    expect(parseSeqNum(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseSeqNum(7n)).toBe(7);
    expect(parseSeqNum(BigInt(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseSeqNum("0")).toBe(0);
    expect(parseSeqNum("9007199254740991")).toBe(Number.MAX_SAFE_INTEGER);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(parseSeqNum(n)).toBe(n);
        expect(parseSeqNum(seqnumToJSON(parseSeqNum(n)))).toBe(n);
        expect(parseSeqNum(BigInt(n))).toBe(n);
      }),
    );
  });

  it("rejects every bad form with INVALID_ARGUMENT", () => {
    for (const [what, v] of NEVER_VALID) expectInvalid(() => parseSeqNum(v), what);
    expectInvalid(() => parseSeqNum(2 ** 53), "2^53");
    expectInvalid(() => parseSeqNum(1e21), "1e21");
    expectInvalid(() => parseSeqNum(-1n), "-1n");
    expectInvalid(() => parseSeqNum(1n << 53n), "2^53 as a bigint");
    expectInvalid(() => parseSeqNum("9007199254740992"), '"2^53"');
    expectInvalid(() => parseSeqNum("99999999999999999"), "a 17-digit string");
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (d) => {
        fc.pre(!(Number.isSafeInteger(d) && d >= 0));
        expectInvalid(() => parseSeqNum(d), String(d));
      }),
    );
  });
});

describe("parseTag", () => {
  it("accepts every 64-bit unsigned value as a bigint or canonical decimal string, and safe integers", () => {
    expect(parseTag(0n)).toBe(0n);
    expect(parseTag(U64_MAX)).toBe(U64_MAX);
    expect(parseTag("18446744073709551615")).toBe(U64_MAX);
    expect(parseTag("0")).toBe(0n);
    expect(parseTag(5)).toBe(5n);
    expect(parseTag(Number.MAX_SAFE_INTEGER)).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: U64_MAX }), (t) => {
        expect(parseTag(t)).toBe(t);
        expect(parseTag(t.toString())).toBe(t);
      }),
    );
  });

  it("rejects every bad form with INVALID_ARGUMENT", () => {
    for (const [what, v] of NEVER_VALID) expectInvalid(() => parseTag(v), what);
    expectInvalid(() => parseTag(-1n), "-1n");
    expectInvalid(() => parseTag(1n << 64n), "2^64");
    expectInvalid(() => parseTag("18446744073709551616"), '"2^64"');
    expectInvalid(() => parseTag("99999999999999999999"), "a 20-digit string above 2^64");
    expectInvalid(() => parseTag("100000000000000000000"), "a 21-digit string");
    expectInvalid(() => parseTag(2 ** 53), "2^53 as an unsafe number");
    fc.assert(
      fc.property(fc.bigInt({ min: 1n << 64n, max: 1n << 80n }), (t) => {
        expectInvalid(() => parseTag(t), `${t}n`);
        expectInvalid(() => parseTag(-t), `-${t}n`);
        expectInvalid(() => parseTag(t.toString()), `"${t}"`);
      }),
    );
  });
});

describe("parseBookId", () => {
  it("accepts 32-bit unsigned integers as numbers and canonical decimal strings", () => {
    expect(parseBookId(0)).toBe(0);
    expect(parseBookId(0xffff_ffff)).toBe(0xffff_ffff);
    expect(parseBookId("4294967295")).toBe(0xffff_ffff);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (n) => {
        expect(parseBookId(n)).toBe(n);
        expect(parseBookId(String(n))).toBe(n);
      }),
    );
  });

  it("rejects every bad form with INVALID_ARGUMENT", () => {
    for (const [what, v] of NEVER_VALID) expectInvalid(() => parseBookId(v), what);
    expectInvalid(() => parseBookId(2 ** 32), "2^32");
    expectInvalid(() => parseBookId("4294967296"), '"2^32"');
    expectInvalid(() => parseBookId("12345678901"), "an 11-digit string");
    expectInvalid(() => parseBookId(1n), "a bigint");
    expectInvalid(() => parseBookId(Number.MAX_SAFE_INTEGER), "2^53-1");
  });
});

describe("parseMetalogPosition", () => {
  it("accepts non-negative safe integers", () => {
    expect(parseMetalogPosition(0)).toBe(0);
    expect(parseMetalogPosition(12)).toBe(12);
    expect(parseMetalogPosition(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("rejects every bad form with INVALID_ARGUMENT, strings and bigints included", () => {
    for (const [what, v] of NEVER_VALID) expectInvalid(() => parseMetalogPosition(v), what);
    expectInvalid(() => parseMetalogPosition(2 ** 53), "2^53");
    expectInvalid(() => parseMetalogPosition("3"), '"3"');
    expectInvalid(() => parseMetalogPosition(3n), "3n");
  });
});

describe("tagOf", () => {
  it("is stable: the first 8 bytes of the name's SHA-256, pinned for known names", () => {
    // sha256("user:42") = ea3fd43be1e57d62…, sha256("a") = ca978112ca1bbdca…
    expect(tagOf("user:42")).toBe(0xea3fd43be1e57d62n);
    expect(tagOf("a")).toBe(0xca978112ca1bbdcan);
    expect(tagOf("orders")).toBe(0x1c168adb00d208e4n);
  });

  it("is a non-zero 64-bit value, the same on every call, and distinct for distinct names in a sample", () => {
    const names = new Set<string>();
    for (let i = 0; i < 2000; i++) names.add(`user:${i}`);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 30, unit: "grapheme" }), (name) => {
        const t = tagOf(name);
        expect(t).not.toBe(0n);
        expect(t).toBeLessThanOrEqual(U64_MAX);
        expect(tagOf(name)).toBe(t);
        names.add(name);
      }),
    );
    const tags = new Set([...names].map(tagOf));
    expect(tags.size).toBe(names.size);
  });

  it("rejects an empty or non-string name with INVALID_ARGUMENT", () => {
    expectInvalid(() => tagOf(""), "an empty name");
    expectInvalid(() => tagOf(42 as unknown as string), "a number");
    expectInvalid(() => tagOf(undefined as unknown as string), "undefined");
  });
});

describe("logOfBook", () => {
  it("puts every book on a physical log in range, and always the same one", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 1, max: 1024 }),
        (book, logs) => {
          const log = logOfBook(book as BookId, logs);
          expect(Number.isInteger(log)).toBe(true);
          expect(log).toBeGreaterThanOrEqual(0);
          expect(log).toBeLessThan(logs);
          expect(logOfBook(book as BookId, logs)).toBe(log);
        },
      ),
    );
    expect(logOfBook(0xffff_ffff as BookId, 1)).toBe(0);
  });

  it("spreads consecutive and strided book ids evenly over the physical logs, within 20% of the mean", () => {
    for (const logs of [2, 3, 5, 7, 10, 16, 1024]) {
      // Strides that share factors with the count of logs (even ids, multiples of 16 or of
      // the count itself) must spread too, not only consecutive ids.
      for (const [first, stride] of [
        [0, 1],
        [1_000_000, 1],
        [123_456_789, 7919],
        [0, 2],
        [0, 16],
        [0, logs],
        [5, 4096],
      ] as const) {
        const counts = new Array<number>(logs).fill(0);
        for (let i = 0; i < logs * 100; i++) {
          const book = (first + i * stride) >>> 0;
          counts[logOfBook(book as BookId, logs)]! += 1;
        }
        // 100 books per log on average; allow ±20%.
        expect(Math.min(...counts), `${logs} logs from ${first} by ${stride}`).toBeGreaterThan(80);
        expect(Math.max(...counts), `${logs} logs from ${first} by ${stride}`).toBeLessThan(120);
      }
    }
  });

  it("crashes on a count of physical logs that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, NaN]) {
      expect(() => logOfBook(1 as BookId, bad), String(bad)).toThrow(InvariantViolation);
    }
  });
});

describe("BokiError instanceof", () => {
  it("holds for the class and its bases, and for errors of another copy of the library by class name", () => {
    const e = new InvalidArgumentError("x");
    expect(e instanceof BokiError).toBe(true);
    expect(e instanceof InvalidArgumentError).toBe(true);
    expect(e instanceof TimeoutError).toBe(false);
    // What an error thrown by another copy of the library looks like: the same global brand.
    const foreign = new Error("from another copy");
    Object.defineProperty(foreign, Symbol.for("boki-ts.BokiError.classes"), {
      value: ["InvalidArgumentError", "BokiError"],
    });
    expect(foreign instanceof InvalidArgumentError).toBe(true);
    expect(foreign instanceof BokiError).toBe(true);
    expect(foreign instanceof TimeoutError).toBe(false);
    expect(new Error("plain") instanceof BokiError).toBe(false);
    expect({} instanceof BokiError).toBe(false);
  });
});
