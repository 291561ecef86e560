/**
 * A transaction's requests applied directly (without the inbox) on an idle instance: one
 * append each, and, racing copies of the same request that went through the inbox, each
 * request applied once (fast-check's scheduler interleaves every log operation).
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { defineObject } from "../src/objects/object.js";
import { drain, latestResult, request, type ObjectEnv } from "../src/objects/executor.js";
import {
  decodeRecord,
  resultsTag,
  type ResultRecord,
  type TxnPart,
} from "../src/objects/records.js";
import { MemoryLog } from "./helpers/memory-logbook.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

defineObject<{ n: number }>({
  name: "direct-counter",
  handlers: {
    add: (ctx, input: { by: number }) => {
      const s = ctx.state.get() ?? { n: 0 };
      s.n += input.by;
      ctx.state.set(s);
      return s.n;
    },
    /** Adds, and tells another instance (a message). */
    addAndTell: (ctx, input: { by: number; to: string }) => {
      const s = ctx.state.get() ?? { n: 0 };
      s.n += input.by;
      ctx.state.set(s);
      ctx.send("direct-counter", input.to, "add", { by: input.by });
      return s.n;
    },
    /** Adds what another instance answers to a call. */
    addFromCall: async (ctx, input: { from: string }) => {
      const got = await ctx.call<number>("direct-counter", input.from, "add", { by: 1 });
      const s = ctx.state.get() ?? { n: 0 };
      s.n += got;
      ctx.state.set(s);
      return s.n;
    },
  },
});

function envOf(log: MemoryLog, clock: { t: number }): ObjectEnv {
  return {
    log: log.book({ waited: (ms) => (clock.t += ms) }),
    logger: silent,
    deadline: Number.MAX_SAFE_INTEGER,
    now: () => clock.t,
    invokeAsync: () => Promise.resolve("drain"),
    drainFunction: "boki-objects.drain",
    deliverWorkflow: "boki-objects.deliver",
  };
}

const OBJ = "direct-counter";
/**
 * Every test and run works on a key of its own: the executor's cache of inbox requests is
 * per thread and keyed by book and tag, as one process has one log, and each run here has a
 * fresh log.
 */
let runs = 0;
const freshKey = (): string => `k${runs++}`;

function txn(id: string, op: TxnPart["op"], ts = 1): TxnPart {
  return op === "prepare" ? { id, ts, op, deadline: 1_000_000 } : { id, ts, op };
}

function results(log: MemoryLog, key: string): ResultRecord[] {
  return log
    .visible(resultsTag(OBJ, key))
    .map((r) => decodeRecord<ResultRecord>({ seqnum: r.seqnum, data: r.data } as never, "res"));
}

describe("transactions' requests applied directly", () => {
  test("on an idle instance a prepare and its commit are one append each, and the commit applies the prepared state", async () => {
    const log = new MemoryLog();
    const clock = { t: 1 };
    const env = envOf(log, clock);
    const k = freshKey();
    const vote = await request(env, OBJ, k, {
      id: "t#1:p0",
      handler: "add",
      input: { by: 5 },
      txn: txn("t#1", "prepare"),
    });
    expect(vote).toEqual({ ok: true, value: 5 });
    expect(log.records).toHaveLength(1);
    const done = await request(env, OBJ, k, {
      id: "t#1:commit0",
      handler: "$commit",
      input: null,
      txn: txn("t#1", "commit"),
    });
    expect(done).toEqual({ ok: true, value: "committed" });
    expect(log.records).toHaveLength(2);
    const last = await latestResult(env.log, OBJ, k);
    expect(last?.state).toEqual({ n: 5 });
    expect(last?.lock).toBeNull();
    // Asked again by its id, a request answers its first outcome and appends nothing.
    expect(
      await request(env, OBJ, k, {
        id: "t#1:p0",
        handler: "add",
        input: { by: 5 },
        txn: txn("t#1", "prepare"),
      }),
    ).toEqual({ ok: true, value: 5 });
    expect(log.records).toHaveLength(2);
  });

  test("a plain request on an idle instance is one append; one that sends or calls goes through the inbox, its message and its call made once", async () => {
    const log = new MemoryLog();
    const clock = { t: 1 };
    const env = envOf(log, clock);
    const [a, b, c] = [freshKey(), freshKey(), freshKey()];
    expect(await request(env, OBJ, a, { id: "r1", handler: "add", input: { by: 2 } })).toEqual({
      ok: true,
      value: 2,
    });
    expect(log.records).toHaveLength(1);
    // A message: the request's inbox record, the message in b's inbox, the result.
    const told = await request(env, OBJ, a, {
      id: "r2",
      handler: "addAndTell",
      input: { by: 3, to: b },
    });
    expect(told).toEqual({ ok: true, value: 5 });
    expect(log.records).toHaveLength(4);
    await drain(env, OBJ, b, undefined);
    expect((await latestResult(env.log, OBJ, b))?.state).toEqual({ n: 3 });
    // A call: c's request goes through the inbox, the call (directly on idle b) is made once.
    const called = await request(env, OBJ, c, {
      id: "r3",
      handler: "addFromCall",
      input: { from: b },
    });
    expect(called).toEqual({ ok: true, value: 4 });
    expect((await latestResult(env.log, OBJ, b))?.state).toEqual({ n: 4 });
    expect(results(log, b).map((r) => r.id)).toEqual(["r2/m0", "r3/c1"]);
  });

  test("racing copies of each request (direct and through the inbox) apply it once, whatever the interleaving", async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.integer({ min: 1, max: 3 }), async (s, copies) => {
        const log = new MemoryLog(() => s.schedule(Promise.resolve()));
        const clock = { t: 1 };
        const env = envOf(log, clock);
        const k = freshKey();
        // A transaction adding 3, each of its requests sent `copies` times at once (racing
        // executions of one coordinator), beside a plain request adding 10 twice.
        const prepare = {
          id: "t#1:p0",
          handler: "add",
          input: { by: 3 },
          txn: txn("t#1", "prepare"),
        };
        const commit = {
          id: "t#1:commit0",
          handler: "$commit",
          input: null,
          txn: txn("t#1", "commit"),
        };
        const plain = { id: "plain", handler: "add", input: { by: 10 } };
        const run = (async () => {
          const votes = await Promise.all(
            Array.from({ length: copies }, () => request(env, OBJ, k, prepare)),
          );
          for (const v of votes) expect(v.ok).toBe(true);
          await Promise.all(Array.from({ length: copies }, () => request(env, OBJ, k, commit)));
        })();
        const other = Promise.all([request(env, OBJ, k, plain), request(env, OBJ, k, plain)]);
        await s.waitFor(Promise.all([run, other]));
        // Whatever is left in the inbox applies (or is passed over) too.
        await s.waitFor(drain(env, OBJ, k, undefined));
        const rs = results(log, k);
        const ids = rs.map((r) => r.id);
        expect(ids.filter((i) => i === prepare.id)).toHaveLength(1);
        expect(ids.filter((i) => i === commit.id)).toHaveLength(1);
        expect(ids.filter((i) => i === plain.id)).toHaveLength(1);
        const last = rs.at(-1)!;
        expect(last.state).toEqual({ n: 13 });
        expect(last.lock).toBeNull();
        expect(last.deferred).toEqual([]);
      }),
      { numRuns: Number(process.env["OBJECTS_PROPERTY_RUNS"] ?? 200) },
    );
  });
});
