// The queue library over a real embedded log (lmdb on a temp dir): push, pop, blocking pop,
// acks, visibility timeouts decided by log time, dead letters, shards, checkpoints and trims.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedLog, type LogBook } from "../src/index.js";
import {
  openQueue,
  QueueCache,
  QueueError,
  queueShardTag,
  type Queue,
} from "../src/queue/index.js";
import { tempDir } from "./helpers/tmp.js";

let log: EmbeddedLog;
let tmp: ReturnType<typeof tempDir>;
let book = 100;

beforeAll(async () => {
  tmp = tempDir("boki-queue-");
  log = await EmbeddedLog.open({ dir: tmp.dir });
});
afterAll(async () => {
  await log.close();
  tmp.remove();
});

/** A fresh book per test, so tests do not see each other's queues. */
function freshBook(): LogBook {
  return log.book(++book);
}

/** A clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000): {
  now: () => number;
  advance: (ms: number) => void;
} {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Counts the log operations made through a LogBook. */
function counting(b: LogBook): { book: LogBook; counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  const book = new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return async (...args: unknown[]) => {
        counts[String(prop)] = (counts[String(prop)] ?? 0) + 1;
        const r = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (r !== null && typeof r === "object" && "seqnum" in r)
          counts["records"] = (counts["records"] ?? 0) + 1;
        return r;
      };
    },
  });
  return { book, counts };
}

describe("queue over an embedded log", () => {
  it("pops pushed JSON and bytes in push order, each once, and acks them", async () => {
    const q = await openQueue(freshBook(), "jobs");
    await q.push({ n: 1 });
    await q.pushBytes(new Uint8Array([1, 2, 3]));
    await q.pushMany(["a", "b"]);
    expect(await q.length()).toMatchObject({ available: 4, inFlight: 0, total: 4 });
    const peeked = await q.peek();
    expect(peeked).toMatchObject({ encoding: "json", value: { n: 1 }, deliveries: 0 });

    const first = await q.pop({ consumer: "c1", max: 2 });
    expect(first.messages.map((m) => m.value)).toEqual([{ n: 1 }, new Uint8Array([1, 2, 3])]);
    expect(first.messages.map((m) => m.encoding)).toEqual(["json", "bytes"]);
    expect(first.messages[0]!.delivery).toBe(1);
    const second = await q.pop({
      consumer: "c2",
      max: 5,
      ack: first.messages.map((m) => m.receipt),
    });
    expect(second.messages.map((m) => m.value)).toEqual(["a", "b"]);
    expect(second.acks).toEqual({ accepted: 2, rejected: [] });
    expect(await q.length()).toMatchObject({ available: 0, inFlight: 2, total: 2 });

    const acked = await q.ack(second.messages.map((m) => m.receipt));
    expect(acked).toEqual({ accepted: 2, rejected: [] });
    // Acking again is rejected: the message is done.
    expect((await q.ack([second.messages[0]!.receipt])).rejected).toEqual([
      second.messages[0]!.receipt,
    ]);
    expect(await q.length()).toMatchObject({ total: 0 });
    expect((await q.pop({ consumer: "c1" })).messages).toEqual([]);
    expect(await q.peek()).toBe(null);
  });

  it("validates arguments and sizes with typed errors", async () => {
    const q = await openQueue(freshBook(), "limits");
    await expect(q.pushBytes(new Uint8Array(512 * 1024 + 1))).rejects.toMatchObject({
      code: "MESSAGE_TOO_LARGE",
      retryable: false,
    });
    await expect(q.push({ f: () => 1 } as never)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(q.push(Number.NaN)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(q.pop({ consumer: "" })).rejects.toBeInstanceOf(QueueError);
    await expect(q.pop({ consumer: "c", max: 0 })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(q.ack(["not-a-receipt"])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(openQueue(freshBook(), "bad/name")).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("fixes a queue's settings at creation: a later open with others fails", async () => {
    const b = freshBook();
    await openQueue(b, "settled", { shards: 3, maxDeliveries: 2 });
    const again = await openQueue(b, "settled");
    expect(again.shards).toBe(3);
    expect(again.maxDeliveries).toBe(2);
    await expect(openQueue(b, "settled", { shards: 4 })).rejects.toMatchObject({
      code: "QUEUE_CONFIG_MISMATCH",
    });
  });

  it("a blocking pop waits for a push and returns it; with nothing pushed it returns empty after its wait", async () => {
    const b = freshBook();
    const cache = new QueueCache();
    const consumer = await openQueue(b, "wait", { cache });
    const producer = await openQueue(log.book(b.book), "wait");
    const t0 = Date.now();
    const popping = consumer.pop({ consumer: "c", waitMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    await producer.push("late");
    const got = await popping;
    expect(got.messages.map((m) => m.value)).toEqual(["late"]);
    expect(Date.now() - t0).toBeLessThan(4000);
    const t1 = Date.now();
    const none = await consumer.pop({ consumer: "c", waitMs: 300 });
    expect(none.messages).toEqual([]);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t1).toBeLessThan(3000);
    // The cancelled wait does not swallow a later push.
    await producer.push("after");
    expect((await consumer.pop({ consumer: "c" })).messages.map((m) => m.value)).toEqual(["after"]);
  });

  it("several blocked pops of one process are served one message each, first come first served", async () => {
    const b = freshBook();
    const cache = new QueueCache();
    const qs = await Promise.all([0, 1, 2].map(() => openQueue(b, "many-waiters", { cache })));
    const pops = qs.map((q, i) => q.pop({ consumer: `c${i}`, waitMs: 5000 }));
    await new Promise((r) => setTimeout(r, 100));
    const producer = await openQueue(log.book(b.book), "many-waiters");
    await producer.pushMany(["x", "y", "z"]);
    const got = await Promise.all(pops);
    expect(got.map((r) => r.messages.length)).toEqual([1, 1, 1]);
    expect(got.flatMap((r) => r.messages.map((m) => m.value)).sort()).toEqual(["x", "y", "z"]);
  });

  it("redelivers a message whose visibility timeout passed in log time; the stale receipt is rejected", async () => {
    const clock = manualClock();
    const b = freshBook();
    const q = await openQueue(b, "vis", { clock: clock.now });
    await q.push("job");
    const a = await q.pop({ consumer: "a", visibilityMs: 1000 });
    expect(a.messages).toHaveLength(1);
    clock.advance(999);
    expect((await q.pop({ consumer: "b" })).messages).toEqual([]);
    clock.advance(1);
    const again = await q.pop({ consumer: "b", visibilityMs: 1000 });
    expect(again.messages.map((m) => [m.value, m.delivery, m.id])).toEqual([
      ["job", 2, a.messages[0]!.id],
    ]);
    expect((await q.ack([a.messages[0]!.receipt])).accepted).toBe(0);
    expect((await q.ack([again.messages[0]!.receipt])).accepted).toBe(1);
  });

  it("an expired delivery can still be acked until another pop claims the message", async () => {
    const clock = manualClock();
    const q = await openQueue(freshBook(), "late-ack", { clock: clock.now });
    await q.push(1);
    const a = await q.pop({ consumer: "a", visibilityMs: 10 });
    clock.advance(50);
    expect(await q.length()).toMatchObject({ available: 1, inFlight: 0 });
    expect((await q.ack([a.messages[0]!.receipt])).accepted).toBe(1);
    expect((await q.pop({ consumer: "b" })).messages).toEqual([]);
  });

  it("nack makes a message visible again (after its delay); extend keeps it", async () => {
    const clock = manualClock();
    const q = await openQueue(freshBook(), "nack", { clock: clock.now });
    await q.pushMany(["n", "e"]);
    const got = await q.pop({ consumer: "a", max: 2, visibilityMs: 100 });
    const [n, e] = got.messages;
    expect((await q.nack([n!.receipt], { delayMs: 500 })).accepted).toBe(1);
    expect((await q.extend([e!.receipt], 10_000)).accepted).toBe(1);
    clock.advance(200);
    expect((await q.pop({ consumer: "b" })).messages).toEqual([]); // n delayed, e extended
    clock.advance(300);
    const back = await q.pop({ consumer: "b", max: 2 });
    expect(back.messages.map((m) => [m.value, m.delivery])).toEqual([["n", 2]]);
    expect((await q.ack([n!.receipt])).accepted).toBe(0); // the nacked delivery is over
    expect((await q.ack([e!.receipt])).accepted).toBe(1);
  });

  it("dead-letters a message after maxDeliveries deliveries into the dead-letter queue, once", async () => {
    const clock = manualClock();
    const b = freshBook();
    const q = await openQueue(b, "fragile", { clock: clock.now, maxDeliveries: 2 });
    expect(q.deadLetterQueue).toBe("fragile.dead");
    const pushed = await q.push({ poison: true });
    for (let i = 0; i < 2; i++) {
      const r = await q.pop({ consumer: `c${i}`, visibilityMs: 10 });
      expect(r.messages.map((m) => m.delivery)).toEqual([i + 1]);
      clock.advance(20);
    }
    // The third pop finds it past its last delivery: it goes to the dead-letter queue.
    expect((await q.pop({ consumer: "c2" })).messages).toEqual([]);
    expect(await q.length()).toMatchObject({ total: 0 });
    const dlq = await openQueue(b, "fragile.dead", { clock: clock.now });
    const dead = await dlq.pop({ consumer: "ops" });
    expect(dead.messages).toHaveLength(1);
    expect(dead.messages[0]).toMatchObject({
      value: { poison: true },
      origin: { queue: "fragile", shard: 0, seq: pushed.seqnum, idx: 0, deliveries: 2 },
    });
    // A second reader of the original queue (another process) does not copy it again.
    const other = await openQueue(log.book(b.book), "fragile", { clock: clock.now });
    clock.advance(60_000);
    await other.pop({ consumer: "c3" });
    expect(await dlq.length()).toMatchObject({ total: 1 });
  });

  it("spreads a sharded queue: keys pick shards, pinned consumers see only theirs, unpinned pops find any", async () => {
    const b = freshBook();
    const q = await openQueue(b, "sharded", { shards: 4 });
    for (let i = 0; i < 40; i++) await q.push({ i }, { key: `k${i % 8}` });
    const perShard = await Promise.all([0, 1, 2, 3].map((s) => q.length({ shard: s })));
    expect(perShard.reduce((n, l) => n + l.total, 0)).toBe(40);
    expect(perShard.filter((l) => l.total > 0).length).toBeGreaterThan(1);
    const pinned = await q.pop({ consumer: "p", shard: 2, max: 100 });
    expect(pinned.messages.every((m) => m.shard === 2)).toBe(true);
    expect(pinned.messages.length).toBe(perShard[2]!.total);
    // One key keeps its order within its shard.
    const byKey = new Map<number, number[]>();
    for (const m of pinned.messages) {
      const i = (m.value as { i: number }).i;
      byKey.set(i % 8, [...(byKey.get(i % 8) ?? []), i]);
    }
    for (const list of byKey.values()) expect(list).toEqual([...list].sort((x, y) => x - y));
    let rest = 0;
    const fresh = await openQueue(log.book(b.book), "sharded");
    for (let k = 0; k < 20; k++)
      rest += (await fresh.pop({ consumer: "u", max: 100 })).messages.length;
    expect(rest).toBe(40 - pinned.messages.length);
  });

  it("checkpoints and trims consumed prefixes, so a new reader replays a bounded number of records", async () => {
    const b = freshBook();
    const opts = { checkpointIntervalRecords: 64, auxCheckpointIntervalRecords: 16 };
    const cache = new QueueCache();
    const q = await openQueue(b, "long", { ...opts, cache });
    let acked = 0;
    let pending: string[] = [];
    for (let i = 0; i < 300; i++) {
      await q.push(i);
      const r = await q.pop({ consumer: "c", ack: pending });
      acked += r.acks?.accepted ?? 0;
      pending = r.messages.map((m) => m.receipt);
    }
    acked += (await q.ack(pending)).accepted;
    expect(acked).toBe(300);
    // Everything below the last checkpoint's low water is trimmed from the shard's tag.
    const first = await b.readNext(queueShardTag("long", 0), 0);
    expect(first!.seqnum).toBeGreaterThan(400);
    // A reader with no state (a new process) starts from a checkpoint, not from the start.
    const { book: counted, counts } = counting(log.book(b.book));
    const fresh = await openQueue(counted, "long", opts);
    await q.push("tail");
    const got = await fresh.pop({ consumer: "new" });
    expect(got.messages.map((m) => m.value)).toEqual(["tail"]);
    const reads =
      (counts["readNext"] ?? 0) + (counts["readPrev"] ?? 0) + (counts["checkTail"] ?? 0);
    expect(reads).toBeLessThan(80);
    expect(await fresh.length()).toEqual(await q.length());
  });

  it("a cached reader whose records were trimmed under it starts over from the checkpoint", async () => {
    const clock = manualClock();
    const b = freshBook();
    const opts = {
      checkpointIntervalRecords: 16,
      auxCheckpointIntervalRecords: 8,
      clock: clock.now,
    };
    const slow = await openQueue(b, "trimmed", opts);
    await slow.push("old");
    const held = await slow.pop({ consumer: "slow", visibilityMs: 10 });
    expect(held.messages).toHaveLength(1);
    clock.advance(100);
    // Another process takes over the expired message and consumes a lot, checkpointing and
    // trimming past where the slow reader's state stands.
    const busy = await openQueue(log.book(b.book), "trimmed", opts);
    for (let i = 0; i < 100; i++) {
      await busy.push(i);
      const r = await busy.pop({ consumer: "busy" });
      await busy.ack(r.messages.map((m) => m.receipt));
    }
    expect((await b.readNext(queueShardTag("trimmed", 0), 0))!.seqnum).toBeGreaterThan(
      held.popSeq!,
    );
    expect((await slow.ack(held.messages.map((m) => m.receipt))).accepted).toBe(0);
    expect(await slow.length()).toEqual(await busy.length());
    const last = await slow.pop({ consumer: "slow" });
    expect(last.messages.map((m) => m.value)).toEqual([99]);
  });
});

describe("queue handles", () => {
  it("coalesce concurrent pushes of a process into fewer records, each push keeping its own id, all popped in order", async () => {
    const b = freshBook();
    const cache = new QueueCache();
    const { book: counted, counts } = counting(b);
    const handles = await Promise.all(
      Array.from({ length: 20 }, () => openQueue(counted, "coalesced", { cache })),
    );
    const appendsBefore = counts["append"] ?? 0;
    const pushed = await Promise.all(handles.map((q, i) => q.push(i)));
    const appends = (counts["append"] ?? 0) - appendsBefore;
    expect(appends).toBeLessThan(20);
    expect(appends).toBeGreaterThanOrEqual(1);
    expect(new Set(pushed.map((r) => r.id)).size).toBe(20);
    const q = handles[0]!;
    const got = await q.pop({ consumer: "c", max: 100 });
    expect(got.messages.map((m) => m.id)).toEqual(
      [...pushed].sort((x, y) => x.seqnum - y.seqnum || x.index - y.index).map((r) => r.id),
    );
    expect(new Set(got.messages.map((m) => m.value))).toEqual(new Set(pushed.map((_, i) => i)));
    // Without coalescing, every push is its own record.
    const plain = await openQueue(counted, "plain", { coalescePushes: false });
    const before = counts["append"] ?? 0;
    await Promise.all([1, 2, 3, 4, 5].map((v) => plain.push(v)));
    expect((counts["append"] ?? 0) - before).toBe(5);
  });

  it("share state through a QueueCache: a second pop reads only the new records", async () => {
    const b = freshBook();
    const cache = new QueueCache();
    const setup = await openQueue(b, "cached", { cache });
    for (let i = 0; i < 50; i++) await setup.push(i);
    await setup.pop({ consumer: "warm" });
    const { book: counted, counts } = counting(log.book(b.book));
    const q: Queue = await openQueue(counted, "cached", { cache });
    await q.pop({ consumer: "c" });
    // Records read: the pop's own and the one its state stood at (the check for trims),
    // nothing of the 50 pushes.
    expect(counts["records"] ?? 0).toBeLessThanOrEqual(3);
    expect(counts["append"]).toBe(1);
  });
});
