import { describe, expect, it } from "vitest";
import { InvocationError } from "../src/runtime/errors.js";
import { defineFunction, isBokiFunction } from "../src/runtime/function.js";
import {
  childId,
  newInvocationId,
  parseIdempotencyKey,
  parseInvocationId,
  parseUserBook,
  SYSTEM_BOOK,
} from "../src/runtime/ids.js";
import { normalizeJsonText, toJsonText } from "../src/runtime/json.js";
import { PAYLOAD_BYTES_MAX } from "../src/runtime/limits.js";
import { decodeRecord, encodeRequest, encodeResult } from "../src/gateway/records.js";
import { recordToWire } from "../src/runtime/worker-protocol.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("JSON outputs", () => {
  it("serialises JSON values, turns a top-level undefined into null and drops undefined properties like JSON", () => {
    expect(toJsonText({ a: [1, "x", null, true], d: new Date(0) }, "o", "INVALID_OUTPUT")).toBe(
      '{"a":[1,"x",null,true],"d":"1970-01-01T00:00:00.000Z"}',
    );
    expect(toJsonText(undefined, "o", "INVALID_OUTPUT")).toBe("null");
    expect(toJsonText({ a: undefined, b: 1 }, "o", "INVALID_OUTPUT")).toBe('{"b":1}');
  });

  it("refuses what JSON would silently lose or mangle, naming the key", () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ f: () => 1 }, /a function at "f"/],
      [{ n: NaN }, /NaN at "n"/],
      [[1, undefined], /undefined at "1"/],
      [{ m: new Map() }, /a Map at "m"/],
      [{ s: new Set() }, /a Set at "s"/],
      [{ b: new Uint8Array(2) }, /a Uint8Array at "b"/],
      [{ p: Promise.resolve(1) }, /a Promise/],
      [{ big: 1n }, /a bigint at "big"/],
      [Symbol("x"), /a symbol/],
    ];
    for (const [value, message] of bad) {
      let err: unknown;
      try {
        toJsonText(value, "output of f", "INVALID_OUTPUT");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvocationError);
      expect((err as InvocationError).code).toBe("INVALID_OUTPUT");
      expect((err as Error).message).toMatch(message);
    }
    const cycle: Record<string, unknown> = {};
    cycle["self"] = cycle;
    expect(codeOf(() => toJsonText(cycle, "o", "INVALID_OUTPUT"))).toBe("INVALID_OUTPUT");
  });

  it("fails with PAYLOAD_TOO_LARGE beyond PAYLOAD_BYTES_MAX, counting UTF-8 bytes", () => {
    expect(codeOf(() => toJsonText("x".repeat(PAYLOAD_BYTES_MAX), "o", "INVALID_OUTPUT"))).toBe(
      "PAYLOAD_TOO_LARGE",
    );
    // 3 bytes per character in UTF-8: fewer characters than the limit, too many bytes.
    const wide = "€".repeat(Math.ceil(PAYLOAD_BYTES_MAX / 3) + 1);
    expect(codeOf(() => toJsonText(wide, "o", "INVALID_OUTPUT"))).toBe("PAYLOAD_TOO_LARGE");
  });

  it("compacts request bodies and refuses invalid JSON with INVALID_ARGUMENT", () => {
    expect(normalizeJsonText(' { "a" : [ 1 ] } ', "body")).toBe('{"a":[1]}');
    expect(normalizeJsonText("", "body")).toBe("null");
    expect(codeOf(() => normalizeJsonText("{", "body"))).toBe("INVALID_ARGUMENT");
  });
});

describe("Ids", () => {
  it("makes distinct 22-character invocation ids and derives child ids that parse", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newInvocationId()));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(parseInvocationId(id)).toBe(id);
    const id = newInvocationId();
    expect(parseInvocationId(childId(childId(id, 3), 12))).toBe(`${id}.3.12`);
    for (const bad of ["", "a b", "x/y", "a..1", 7]) {
      expect(codeOf(() => parseInvocationId(bad))).toBe("INVALID_ARGUMENT");
    }
  });

  it("refuses the system book and malformed books and keys", () => {
    expect(parseUserBook("42")).toBe(42);
    expect(codeOf(() => parseUserBook(SYSTEM_BOOK))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => parseUserBook("-1"))).toBe("INVALID_ARGUMENT");
    expect(parseIdempotencyKey("order-17/retry")).toBe("order-17/retry");
    expect(codeOf(() => parseIdempotencyKey("has space"))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => parseIdempotencyKey("x".repeat(257)))).toBe("INVALID_ARGUMENT");
  });
});

describe("defineFunction", () => {
  it("brands what it returns and checks its options at once", () => {
    const f = defineFunction({ name: "ok.name-1", handler: () => 1, book: 3, timeoutMs: 10 });
    expect(isBokiFunction(f)).toBe(true);
    expect(isBokiFunction({ name: "x", handler: () => 1 })).toBe(false);
    expect(() => defineFunction({ name: "bad name", handler: () => 1 })).toThrow(/function name/);
    expect(() => defineFunction({ name: "f", handler: 1 as never })).toThrow(/handler must be/);
    expect(() => defineFunction({ name: "f", handler: () => 1, book: SYSTEM_BOOK })).toThrow(
      /reserved/,
    );
    expect(() => defineFunction({ name: "f", handler: () => 1, timeoutMs: 0 })).toThrow(
      /timeoutMs/,
    );
  });
});

describe("Invocation records", () => {
  it("round-trip requests and results with their JSON payloads spliced in", () => {
    const id = parseInvocationId("abc");
    const req = encodeRequest({ id, fn: "f", book: 2, mode: "async", at: 5 }, '{"x":[1]}');
    expect(decodeRecord(Buffer.from(req))).toEqual({
      v: 1,
      type: "request",
      id,
      fn: "f",
      book: 2,
      mode: "async",
      at: 5,
      input: { x: [1] },
    });
    const ok = encodeResult(id, 6, { ok: true, outputJson: '"out"' });
    expect(decodeRecord(Buffer.from(ok))).toMatchObject({
      type: "result",
      ok: true,
      output: "out",
    });
    const failed = encodeResult(id, 6, {
      ok: false,
      error: { code: "TIMEOUT", message: "late" },
    });
    expect(decodeRecord(Buffer.from(failed))).toMatchObject({
      ok: false,
      error: { code: "TIMEOUT", message: "late" },
    });
    expect(decodeRecord(Buffer.from("not json"))).toBeNull();
    expect(decodeRecord(Buffer.from('{"v":2,"type":"request","id":"a"}'))).toBeNull();
  });
});

describe("Records crossing to a worker", () => {
  it("get bytes of their own even when the log holds them as a view into a shared Buffer (which transferring would detach)", () => {
    const shared = Buffer.alloc(64, 7);
    const r = recordToWire({
      seqnum: 1 as never,
      book: 0 as never,
      tags: [],
      data: shared.subarray(8, 16),
      auxData: shared.subarray(20, 24),
    })!;
    expect(r.data.byteLength).toBe(8);
    expect(r.data.buffer.byteLength).toBe(8);
    expect(r.auxData!.buffer.byteLength).toBe(4);
    expect(r.data.buffer).not.toBe(shared.buffer);
    structuredClone(r, {
      transfer: [r.data.buffer as ArrayBuffer, r.auxData!.buffer as ArrayBuffer],
    });
    expect(shared[8]).toBe(7); // the log's buffer is still readable
  });
});
