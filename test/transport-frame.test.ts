import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CLIENT_OPS, INDEX_QUERY_OPS, type Message } from "../src/protocol/messages.js";
import type { MetalogEntry } from "../src/log/metalog.js";
import type { LogId } from "../src/log/types.js";
import { MESSAGE_TYPES, parseMessage } from "../src/protocol/validate.js";
import {
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameEncoder,
  FrameError,
} from "../src/transport/frame.js";

const n = fc.maxSafeNat();
const bytes = fc.uint8Array({ maxLength: 48 });
const pairs = fc.array(fc.tuple(n, n), { maxLength: 4 });
const entry: fc.Arbitrary<MetalogEntry> = fc.record({
  log: n.map((x) => x as LogId),
  term: n,
  position: n,
  startSeqnum: n,
  cut: pairs,
});

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    t: fc.constant("replicate" as const),
    log: n,
    shard: n,
    first: n,
    records: fc.array(bytes, { maxLength: 5 }),
  }),
  fc.record({ t: fc.constant("progress" as const), log: n, term: n, held: pairs }),
  fc.record({
    t: fc.constant("metalog" as const),
    log: n,
    entries: fc.array(entry, { maxLength: 4 }),
    tail: n,
  }),
  fc.record({
    t: fc.constant("metalog" as const),
    log: n,
    entries: fc.array(entry, { maxLength: 4 }),
    tail: n,
    term: n,
  }),
  fc.record({
    t: fc.constant("metalog-replicate" as const),
    log: n,
    term: n,
    entries: fc.array(entry, { maxLength: 4 }),
  }),
  fc.record({ t: fc.constant("metalog-ack" as const), log: n, term: n, durable: n, boot: n }),
  fc.record({ t: fc.constant("metalog-fetch" as const), log: n, from: n }),
  fc.record({
    t: fc.constant("index-data" as const),
    log: n,
    shard: n,
    first: n,
    headers: fc.array(bytes, { maxLength: 5 }),
  }),
  fc.record({ t: fc.constant("index-fetch" as const), log: n, shard: n, from: n, to: n }),
  fc.record({ t: fc.constant("replica-fetch" as const), log: n, shard: n, from: n, to: n }),
  fc.record({ t: fc.constant("shard-end-query" as const), log: n, shard: n }),
  fc.record({ t: fc.constant("shard-end" as const), log: n, shard: n, end: n }),
  fc.record({ t: fc.constant("read" as const), id: n, log: n, seqnum: n }),
  fc.record({
    t: fc.constant("read-reply" as const),
    id: n,
    record: fc.option(bytes, { nil: null }),
    aux: fc.option(bytes, { nil: null }),
  }),
  fc.record({ t: fc.constant("set-aux" as const), log: n, seqnum: n, data: bytes }),
  fc.record({ t: fc.constant("delete" as const), log: n, seqnums: fc.array(n, { maxLength: 6 }) }),
  fc.record({
    t: fc.constant("client-request" as const),
    id: n,
    op: fc.constantFrom(...CLIENT_OPS),
    book: n,
    position: n,
    tags: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String), { maxLength: 3 }),
    data: bytes,
    tag: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String),
    seqnum: n,
    timeoutMs: n,
    condTag: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String),
    condPosition: n,
  }),
  fc.record({
    t: fc.constant("index-query" as const),
    id: n,
    log: n,
    op: fc.constantFrom(...INDEX_QUERY_OPS),
    book: n,
    tag: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String),
    seqnum: n,
    position: n,
    timeoutMs: n,
  }),
  fc.record({
    t: fc.constant("index-reply" as const),
    id: n,
    seqnum: fc.option(n, { nil: null }),
    position: n,
    failedAt: fc.option(n, { nil: null }),
    error: fc.option(
      fc.record({
        code: fc.constantFrom("TIMEOUT", "NOT_FOUND"),
        message: fc.string({ maxLength: 40 }),
      }),
      { nil: null },
    ),
  }),
  fc.record({
    t: fc.constant("invoke-request" as const),
    id: n,
    name: fc.string({ maxLength: 40 }),
    input: fc.json({ maxDepth: 2 }),
    book: n,
    position: n,
    invocationId: fc.string({ maxLength: 40 }),
    timeoutMs: n,
  }),
  fc.record({
    t: fc.constant("invoke-reply" as const),
    id: n,
    position: n,
    output: fc.option(fc.json({ maxDepth: 2 }), { nil: null }),
    error: fc.option(
      fc.record({
        code: fc.constantFrom("TIMEOUT", "FUNCTION_FAILED"),
        message: fc.string({ maxLength: 40 }),
      }),
      { nil: null },
    ),
  }),
  fc.record({
    t: fc.constant("client-reply" as const),
    id: n,
    position: n,
    seqnum: fc.option(n, { nil: null }),
    record: fc.option(
      fc.record({
        seqnum: n,
        book: n,
        tags: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String), { maxLength: 3 }),
        data: bytes,
        auxData: fc.option(bytes, { nil: null }),
      }),
      { nil: null },
    ),
    error: fc.option(
      fc.record({
        code: fc.constantFrom("TIMEOUT", "NOT_FOUND"),
        message: fc.string({ maxLength: 40 }),
      }),
      { nil: null },
    ),
  }),
);

/**
 * fast-check builds records without Object.prototype; a structured clone gives the plain
 * objects a decoder produces, so `toStrictEqual` can also compare types (Uint8Array, not Buffer).
 */
function plain(messages: Message[]): Message[] {
  return structuredClone(messages);
}

/** Feeds `pieces` to a fresh message decoder and returns what it decoded. */
function decodeAll(pieces: Uint8Array[], frameBytesMax = FRAME_BYTES_MAX): Message[] {
  const d = new FrameDecoder(parseMessage, frameBytesMax);
  const out: Message[] = [];
  for (const p of pieces) d.push(p, (m) => out.push(m));
  return out;
}

function frameOf(payload: Uint8Array): Buffer {
  const f = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
  f.writeUInt32BE(payload.length, 0);
  f.set(payload, FRAME_HEADER_BYTES);
  return f;
}

function decodeError(pieces: Uint8Array[], frameBytesMax = FRAME_BYTES_MAX): FrameError {
  try {
    decodeAll(pieces, frameBytesMax);
  } catch (e) {
    if (e instanceof FrameError) return e;
    throw e;
  }
  throw new Error("expected a FrameError");
}

describe("frame codec", () => {
  it("the arbitrary covers every message type", () => {
    const seen = new Set(fc.sample(message, 500).map((m) => m.t));
    expect([...seen].sort()).toEqual([...MESSAGE_TYPES].sort());
  });

  it("random message sequences, concatenated and split at random points, decode to the same messages in order", () => {
    const encoder = new FrameEncoder();
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (messages, cutSeeds) => {
          const stream = Buffer.concat(messages.map((m) => encoder.encode(m)));
          const cuts = [
            ...new Set(cutSeeds.map((c) => (stream.length === 0 ? 0 : c % stream.length))),
          ];
          cuts.sort((a, b) => a - b);
          const pieces: Uint8Array[] = [];
          let at = 0;
          for (const c of [...cuts, stream.length]) {
            pieces.push(stream.subarray(at, c)); // may be empty: the decoder must cope
            at = c;
          }
          const decoded = decodeAll(pieces);
          expect(decoded).toStrictEqual(plain(messages));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a stream fed one byte at a time decodes the same as fed whole", () => {
    const encoder = new FrameEncoder();
    const messages = fc.sample(message, { numRuns: 50, seed: 7 });
    const stream = Buffer.concat(messages.map((m) => encoder.encode(m)));
    const oneByOne = [...stream].map((b) => Uint8Array.of(b));
    expect(decodeAll(oneByOne)).toStrictEqual(plain(messages));
    expect(decodeAll([stream])).toStrictEqual(plain(messages));
  });

  it("decoded byte fields are plain Uint8Arrays that do not share memory with other frames", () => {
    const encoder = new FrameEncoder();
    const a: Message = { t: "set-aux", log: 1, seqnum: 2, data: Uint8Array.of(1, 2, 3) };
    const b: Message = { t: "set-aux", log: 1, seqnum: 3, data: Uint8Array.of(4, 5, 6) };
    const [da, db] = decodeAll([Buffer.concat([encoder.encode(a), encoder.encode(b)])]);
    if (da?.t !== "set-aux" || db?.t !== "set-aux") throw new Error("unexpected decode");
    expect(da.data.constructor).toBe(Uint8Array);
    expect(da.data.buffer).not.toBe(db.data.buffer);
  });

  it("rejects a length prefix above the limit as soon as the prefix arrives, with a typed error", () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUInt32BE(FRAME_BYTES_MAX + 1, 0);
    const e = decodeError([header]); // no payload sent at all
    expect(e.kind).toBe("too-large");
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.retryable).toBe(false);
  });

  it("accepts a frame of exactly the limit and rejects one byte more", () => {
    const encoder = new FrameEncoder();
    const m: Message = { t: "set-aux", log: 0, seqnum: 0, data: new Uint8Array(100) };
    const f = encoder.encode(m);
    const payloadBytes = f.length - FRAME_HEADER_BYTES;
    expect(decodeAll([f], payloadBytes)).toStrictEqual([m]);
    expect(decodeError([f], payloadBytes - 1).kind).toBe("too-large");
  });

  it("rejects a garbage payload with a typed error, after delivering the frames before it", () => {
    const encoder = new FrameEncoder();
    const good: Message = { t: "metalog-fetch", log: 1, from: 2 };
    const d = new FrameDecoder(parseMessage);
    const out: Message[] = [];
    const garbage = frameOf(Uint8Array.of(0xc1, 0xff, 0x00)); // 0xc1 is never used in msgpack
    expect(() =>
      d.push(Buffer.concat([encoder.encode(good), garbage]), (m) => out.push(m)),
    ).toThrow(FrameError);
    expect(out).toStrictEqual([good]);
    expect(d.failure?.kind).toBe("undecodable");
    // The stream stays failed: later bytes are refused, not decoded.
    expect(() => d.push(encoder.encode(good), (m) => out.push(m))).toThrow(FrameError);
    expect(out).toHaveLength(1);
  });

  it("rejects a truncated msgpack value, trailing bytes, and an empty frame as undecodable or empty", () => {
    const encoder = new FrameEncoder();
    const payload = encoder
      .encode({ t: "read", id: 1, log: 2, seqnum: 3 })
      .subarray(FRAME_HEADER_BYTES);
    expect(decodeError([frameOf(payload.subarray(0, payload.length - 1))]).kind).toBe(
      "undecodable",
    );
    expect(decodeError([frameOf(Buffer.concat([payload, Uint8Array.of(0)]))]).kind).toBe(
      "undecodable",
    );
    expect(decodeError([frameOf(new Uint8Array(0))]).kind).toBe("empty");
  });

  it("rejects well-formed msgpack that is not a valid message as invalid", () => {
    const encoder = new FrameEncoder();
    const cases: unknown[] = [
      42,
      "replicate",
      [1, 2],
      { t: "no-such-type", log: 1 },
      { t: "read", id: 1, log: 2 }, // missing seqnum
      { t: "read", id: -1, log: 2, seqnum: 3 },
      { t: "read", id: 1.5, log: 2, seqnum: 3 },
      { t: "read", id: "1", log: 2, seqnum: 3 },
      { t: "set-aux", log: 1, seqnum: 2, data: "not bytes" },
      { t: "replicate", log: 1, shard: 0, first: 0, records: [Uint8Array.of(1), 7] },
      { t: "progress", log: 0, term: 0, held: [[1, 2, 3]] },
      {
        t: "metalog",
        log: 0,
        tail: 1,
        entries: [{ log: 0, term: 0, position: 0, startSeqnum: 0 }],
      },
      { t: "read-reply", id: 1, record: null },
    ];
    for (const value of cases) {
      const e = decodeError([encoder.encode(value)]);
      expect(e.kind, JSON.stringify(value)).toBe("invalid");
    }
  });

  it("parsed messages carry only the declared fields", () => {
    const encoder = new FrameEncoder();
    const [m] = decodeAll([encoder.encode({ t: "metalog-fetch", log: 1, from: 2, extra: "x" })]);
    expect(m).toStrictEqual({ t: "metalog-fetch", log: 1, from: 2 });
  });
});
