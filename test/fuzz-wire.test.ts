/**
 * Every wire message under random and mutated input (fast-check):
 * - `parseMessage` takes any decoded value and either returns a message with exactly the
 *   declared fields or throws `InvalidArgumentError`; valid messages of every type survive a
 *   msgpack round trip unchanged; a valid message with one field made wrong is refused;
 * - the frame decoder takes any bytes, split anywhere, and yields frames or one
 *   `FrameError`, never another error, holding at most one frame's bytes;
 * - real nodes over TCP (a sequencer, a storage node and an engine in this process, lmdb on
 *   disk) under a barrage of bad connections: random bytes, forged hellos, malformed and (on
 *   an authenticated cluster) well-formed but unauthenticated frames such as deletes and
 *   appends. The log's records are unchanged afterwards, and the nodes go on serving.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { connect } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError, tagOf } from "../src/index.js";
import type { Message } from "../src/protocol/messages.js";
import { MESSAGE_TYPES, parseMessage } from "../src/protocol/validate.js";
import { FrameDecoder, FrameEncoder, FrameError } from "../src/transport/frame.js";
import { WIRE_VERSION } from "../src/transport/tcp.js";
import { ClusterClient } from "../src/cluster/client.js";
import { clusterSecretOf, type ClusterConfig } from "../src/cluster/config.js";
import { startNode, type RunningNode } from "../src/cluster/node.js";
import { silentLogger } from "../src/util/logger.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { tempDir } from "./helpers/tmp.js";

const RUNS = Number(process.env["FUZZ_RUNS"] ?? 300);

// ---- a valid value of every field kind, and a value no parser of that kind accepts ----

type Kind =
  | "count"
  | "bytes"
  | "bytesNull"
  | "bytesArr"
  | "countArr"
  | "pairs"
  | "entries"
  | "str"
  | "strArr"
  | "countNull"
  | "clientOp"
  | "indexOp"
  | "record"
  | "error"
  | "text"
  | "textNull"
  | "trace";

const count = fc.oneof(fc.nat(), fc.constant(0), fc.constant(2 ** 40));
const bytes = fc.uint8Array({ maxLength: 64 });
const short = fc.string({ maxLength: 24 });
const VALID: Record<Kind, fc.Arbitrary<unknown>> = {
  count,
  bytes,
  bytesNull: fc.option(bytes, { nil: null }),
  bytesArr: fc.array(bytes, { maxLength: 4 }),
  countArr: fc.array(count, { maxLength: 4 }),
  pairs: fc.array(fc.tuple(count, count), { maxLength: 4 }),
  entries: fc.array(
    fc.record({
      log: count,
      term: count,
      position: count,
      startSeqnum: count,
      cut: fc.array(fc.tuple(count, count), { maxLength: 3 }),
    }),
    { maxLength: 3 },
  ),
  str: short,
  strArr: fc.array(short, { maxLength: 4 }),
  countNull: fc.option(count, { nil: null }),
  clientOp: fc.constantFrom(
    "append",
    "condAppend",
    "readNext",
    "readPrev",
    "readNextBlocking",
    "setAuxData",
    "trim",
  ),
  indexOp: fc.constantFrom("next", "prev", "blocking", "cond"),
  record: fc.option(
    fc.record({
      seqnum: count,
      book: count,
      tags: fc.array(short, { maxLength: 3 }),
      data: bytes,
      auxData: fc.option(bytes, { nil: null }),
    }),
    { nil: null },
  ),
  error: fc.option(fc.record({ code: short, message: fc.string({ maxLength: 100 }) }), {
    nil: null,
  }),
  text: fc.string({ maxLength: 200 }),
  textNull: fc.option(fc.string({ maxLength: 200 }), { nil: null }),
  trace: fc
    .tuple(fc.stringMatching(/^[0-9a-f]{32}$/), fc.stringMatching(/^[0-9a-f]{16}$/))
    .map(([a, b]) => `00-${a}-${b}-01`),
};
/** Values the parser of each kind must refuse. */
const WRONG: Record<Kind, readonly unknown[]> = {
  count: [-1, 1.5, "1", null, 2 ** 60, [], true],
  bytes: [5, "bytes", null, [1, 2]],
  bytesNull: [5, "bytes", [1]],
  bytesArr: ["x", {}, [5], [null]],
  countArr: ["x", {}, [-1], ["1"]],
  pairs: ["x", [[1]], [[1, -2]], [[1, 2, 3]]],
  entries: ["x", [5], [{ log: -1, term: 0, position: 0, startSeqnum: 0, cut: [] }]],
  str: [5, null, {}, "x".repeat(100_000)],
  strArr: [5, [5], ["x".repeat(100)]],
  countNull: ["x", -1, 1.5],
  clientOp: ["nope", 5, null],
  indexOp: ["nope", 5, null],
  record: ["x", 5, { seqnum: -1 }],
  error: ["x", 5, { code: 5, message: "m" }],
  text: [5, null, {}],
  textNull: [5, {}],
  trace: ["00-zz", 5, "00-" + "A".repeat(32) + "-" + "b".repeat(16) + "-01"],
};

/** Every message type with its fields; a field ending in "?" is optional. */
const SCHEMA: Record<Message["t"], Record<string, Kind>> = {
  replicate: { log: "count", shard: "count", first: "count", records: "bytesArr" },
  progress: { log: "count", term: "count", held: "pairs" },
  "metalog-replicate": { log: "count", term: "count", entries: "entries" },
  "metalog-ack": { log: "count", term: "count", durable: "count", boot: "count" },
  metalog: { log: "count", entries: "entries", tail: "count", "term?": "count" },
  "metalog-fetch": { log: "count", from: "count" },
  "index-data": { log: "count", shard: "count", first: "count", headers: "bytesArr" },
  "index-fetch": { log: "count", shard: "count", from: "count", to: "count" },
  "replica-fetch": { log: "count", shard: "count", from: "count", to: "count" },
  "shard-end-query": { log: "count", shard: "count" },
  "shard-end": { log: "count", shard: "count", end: "count" },
  read: { id: "count", log: "count", seqnum: "count" },
  "read-reply": { id: "count", record: "bytesNull", aux: "bytesNull" },
  "set-aux": { log: "count", seqnum: "count", data: "bytes" },
  delete: { log: "count", seqnums: "countArr" },
  "client-request": {
    id: "count",
    op: "clientOp",
    book: "count",
    position: "count",
    tags: "strArr",
    data: "bytes",
    tag: "str",
    seqnum: "count",
    timeoutMs: "count",
    condTag: "str",
    condPosition: "count",
  },
  "client-reply": {
    id: "count",
    position: "count",
    seqnum: "countNull",
    record: "record",
    error: "error",
  },
  "invoke-request": {
    id: "count",
    name: "str",
    input: "text",
    book: "count",
    position: "count",
    invocationId: "str",
    timeoutMs: "count",
    "trace?": "trace",
  },
  "invoke-reply": { id: "count", position: "count", output: "textNull", error: "error" },
  "index-query": {
    id: "count",
    log: "count",
    op: "indexOp",
    book: "count",
    tag: "str",
    seqnum: "count",
    position: "count",
    timeoutMs: "count",
  },
  "index-reply": {
    id: "count",
    seqnum: "countNull",
    position: "count",
    failedAt: "countNull",
    error: "error",
  },
};

function messageOf(t: Message["t"]): fc.Arbitrary<Record<string, unknown>> {
  const fields = Object.entries(SCHEMA[t]);
  return fc
    .tuple(
      ...fields.map(([name, kind]) =>
        name.endsWith("?") ? fc.option(VALID[kind], { nil: undefined }) : VALID[kind],
      ),
    )
    .map((values) => {
      const m: Record<string, unknown> = { t };
      fields.forEach(([name], i) => {
        if (values[i] !== undefined) m[name.replace("?", "")] = values[i];
      });
      return m;
    });
}
const anyValid = fc.constantFrom(...MESSAGE_TYPES).chain(messageOf);

/** A valid message with one field made wrong (or dropped, or its type unknown). */
const invalid = fc
  .tuple(fc.constantFrom(...MESSAGE_TYPES), fc.nat(), fc.nat(), fc.nat(3))
  .chain(([t, fi, wi, how]) =>
    messageOf(t).map((m) => {
      const fields = Object.entries(SCHEMA[t]);
      const [name, kind] = fields[fi % fields.length]!;
      const key = name.replace("?", "");
      const out: Record<string, unknown> = { ...m };
      if (how === 0 && !name.endsWith("?")) delete out[key];
      else if (how === 1) out["t"] = `${t}-unknown`;
      else out[key] = WRONG[kind][wi % WRONG[kind].length];
      return out;
    }),
  );

describe("parseMessage under random and mutated values", () => {
  it("the fuzzer knows every message type there is", () => {
    expect(Object.keys(SCHEMA).sort()).toEqual([...MESSAGE_TYPES].sort());
  });

  it("any value is a message with exactly its declared fields, or an InvalidArgumentError", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          anyValid,
          invalid,
          fc.record({ t: fc.constantFrom(...MESSAGE_TYPES) }),
        ),
        (v) => {
          let m: Message;
          try {
            m = parseMessage(v);
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidArgumentError);
            return;
          }
          const allowed = new Set([
            "t",
            ...Object.keys(SCHEMA[m.t]).map((k) => k.replace("?", "")),
          ]);
          for (const k of Object.keys(m)) expect(allowed.has(k), k).toBe(true);
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it("valid messages of every type survive a msgpack round trip unchanged", () => {
    const enc = new FrameEncoder();
    fc.assert(
      fc.property(anyValid, (m) => {
        const got: Message[] = [];
        new FrameDecoder(parseMessage).push(enc.encode(m), (x) => got.push(x));
        expect(got).toEqual([m]);
      }),
      { numRuns: RUNS },
    );
  });

  it("a valid message with one field made wrong, dropped or an unknown type is refused", () => {
    fc.assert(
      fc.property(invalid, (v) => {
        // Dropping an optional field leaves a valid message; every other mutation is refused.
        const t = v["t"] as Message["t"];
        const complete =
          Object.hasOwn(SCHEMA, t) &&
          Object.keys(SCHEMA[t]).every((k) => k.endsWith("?") || k in v);
        const wrongValue = Object.entries(SCHEMA[t] ?? {}).some(([k, kind]) => {
          const x = v[k.replace("?", "")];
          return x !== undefined && WRONG[kind].includes(x);
        });
        if (complete && !wrongValue) return;
        expect(() => parseMessage(v)).toThrow(InvalidArgumentError);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("the frame decoder under random bytes", () => {
  it("yields frames or one FrameError, never another error, however the bytes are split", () => {
    const enc = new FrameEncoder();
    const stream = fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        anyValid.map((m) => new Uint8Array(enc.encode(m))),
        invalid.map((m) => new Uint8Array(enc.encode(m))),
      ),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(stream, fc.array(fc.nat(300), { maxLength: 8 }), (parts, cuts) => {
        const all = Buffer.concat(parts);
        const dec = new FrameDecoder(parseMessage, 4096);
        let at = 0;
        let failed = false;
        for (const c of [...cuts, all.length]) {
          const end = Math.min(all.length, at + c);
          try {
            dec.push(all.subarray(at, end), () => {});
          } catch (err) {
            expect(err).toBeInstanceOf(FrameError);
            failed = true;
            break;
          }
          expect(dec.bufferedBytes).toBeLessThanOrEqual(4096 + 4 + (end - at));
          at = end;
        }
        if (failed) expect(() => dec.push(new Uint8Array([0]), () => {})).toThrow(FrameError);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- real nodes under a barrage -------------------------------------------------------

interface Cluster {
  readonly config: ClusterConfig;
  readonly client: ClusterClient;
  close(): Promise<void>;
}

async function startCluster(dir: string, withSecret: boolean): Promise<Cluster> {
  if (withSecret) writeFileSync(join(dir, "cluster.secret"), "fuzz-".repeat(10));
  const config = await writeClusterConfig(
    join(dir, "cluster.json"),
    ["sequencer", "storage", "engine"],
    {
      replication: 1,
      sequencersPerLog: 1,
      durability: "disk",
      dataDir: "data",
      ...(withSecret ? { clusterSecretFile: "cluster.secret" } : {}),
    },
  );
  const running: RunningNode[] = [];
  for (const id of ["sequencer-0", "storage-0", "engine-0"])
    running.push(await startNode(config, id, 1, silentLogger));
  const engine = config.nodes.find((n) => n.id === "engine-0")!;
  const secret = clusterSecretOf(config, {});
  const client = await ClusterClient.connect({
    engines: [{ id: engine.id, host: engine.host, port: engine.port }],
    requestTimeoutMs: 10_000,
    ...(secret === null ? {} : { secret }),
  });
  return {
    config,
    client,
    close: async () => {
      await client.close();
      for (const r of running.reverse()) await r.close();
    },
  };
}

const BOOK = 1;
const TAGS = [tagOf("fuzz/a"), tagOf("fuzz/b")];

/** Every record of the book, as comparable text. */
async function records(c: Cluster): Promise<string[]> {
  const b = c.client.book(BOOK);
  const out: string[] = [];
  for (let r = await b.readNext(0, 0); r !== null; r = await b.readNext(0, r.seqnum + 1))
    out.push(`${r.seqnum}|${r.tags.join(",")}|${Buffer.from(r.data).toString("hex")}`);
  return out;
}

async function appendSome(c: Cluster, n: number, from: number): Promise<void> {
  const b = c.client.book(BOOK);
  for (let i = 0; i < n; i++) {
    for (let attempt = 0; ; attempt++) {
      try {
        await b.append([TAGS[i % 2]!], `record ${from + i}`);
        break;
      } catch (err) {
        // The engine may still be catching up with the metalog right after its start.
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** Opens a connection to `port`, writes `bytes`, and resolves once closed (or after `ms`). */
function barrage(port: number, bytes: Uint8Array, ms: number): Promise<"closed" | "open"> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => {});
    s.on("data", () => {}); // a challenge, when the node has a secret
    const timer = setTimeout(() => {
      s.destroy();
      resolve("open");
    }, ms);
    s.on("close", () => {
      clearTimeout(timer);
      resolve("closed");
    });
    s.on("connect", () => s.write(bytes));
  });
}

const enc = new FrameEncoder();
const frame = (v: unknown): Uint8Array => new Uint8Array(enc.encode(v));
const cat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const hello = (from: string): Uint8Array => frame({ t: "hello", v: WIRE_VERSION, from });

/** Whether any complete frame in `bytes` is a valid message (not a hello). */
function holdsValidMessage(bytes: Uint8Array): boolean {
  const dec = new FrameDecoder<unknown>((v) => v);
  let found = false;
  try {
    dec.push(bytes, (v) => {
      try {
        parseMessage(v);
        found = true;
      } catch {
        // not a message
      }
    });
  } catch {
    // the rest is not frames
  }
  return found;
}

describe.each([
  {
    withSecret: true,
    what: "an authenticated cluster: nothing an unauthenticated peer sends is believed",
  },
  { withSecret: false, what: "a cluster without a secret: malformed frames are refused" },
])("$what", ({ withSecret }) => {
  const t = tempDir();
  let c: Cluster;

  beforeAll(async () => {
    c = await startCluster(t.dir, withSecret);
    await appendSome(c, 20, 0);
  }, 60_000);

  afterAll(async () => {
    await c?.close();
    t.remove();
  }, 30_000);

  it("after a barrage of bad connections to the storage node and the engine the records are unchanged and appends go on", async () => {
    const before = await records(c);
    expect(before.length).toBe(20);
    const ports = ["storage-0", "engine-0"].map(
      (id) => c.config.nodes.find((n) => n.id === id)!.port,
    );
    const peer = fc.constantFrom("engine-0", "storage-0", "sequencer-0", "client@127.0.0.1:1");
    const destructive: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
      fc.record({
        t: fc.constant("delete"),
        log: fc.constant(0),
        seqnums: fc.array(fc.nat(2 ** 40), { maxLength: 8 }),
      }),
      messageOf("replicate").map((m) => ({ ...m, log: 0 })),
      messageOf("client-request").map((m) => ({
        ...m,
        op: "append",
        book: BOOK,
        tags: [],
        data: new Uint8Array([1]),
      })),
      messageOf("client-request").map((m) => ({
        ...m,
        op: "trim",
        book: BOOK,
        tag: "0",
        seqnum: 2 ** 40,
      })),
      anyValid,
    );
    // Without a secret a well-formed message is a peer's word; only malformed ones are sent.
    const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 600 }),
      fc
        .tuple(peer, fc.array(invalid, { minLength: 1, maxLength: 4 }))
        .map(([p, ms]) => cat([hello(p), ...ms.map(frame)])),
      fc
        .tuple(peer, fc.uint8Array({ minLength: 1, maxLength: 200 }))
        .map(([p, b]) => cat([hello(p), b])),
      fc.constant(cat([hello("engine-0"), new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3])])),
      fc.constant(cat([hello("engine-0"), hello("engine-0")])),
      ...(withSecret
        ? [
            fc
              .tuple(peer, fc.array(destructive, { minLength: 1, maxLength: 4 }))
              .map(([p, ms]) => cat([hello(p), ...ms.map(frame)])),
            fc
              .tuple(
                peer,
                fc.uint8Array({ minLength: 32, maxLength: 32 }),
                fc.array(destructive, { maxLength: 3 }),
              )
              .map(([p, proof, ms]) =>
                cat([
                  frame({ t: "hello", v: WIRE_VERSION, from: p, nonce: proof, proof }),
                  ...ms.map(frame),
                ]),
              ),
          ]
        : []),
    );
    const samples = fc.sample(fc.tuple(fc.constantFrom(...ports), payload), Math.ceil(RUNS / 3));
    const kept = samples.filter(([, b]) => withSecret || !holdsValidMessage(b));
    const outcomes = await Promise.all(kept.map(([port, b]) => barrage(port, b, 2_000)));
    // A connection whose bytes end mid-frame waits for the rest (then the hello timeout);
    // most are closed at once.
    expect(outcomes.filter((o) => o === "closed").length).toBeGreaterThan(kept.length / 2);
    expect(await records(c)).toEqual(before);
    await appendSome(c, 5, 100);
    const after = await records(c);
    expect(after.slice(0, 20)).toEqual(before);
    expect(after.length).toBe(25);
  }, 60_000);
});
