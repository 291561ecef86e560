import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedLog, InvalidArgumentError, tagOf } from "../src/index.js";
import {
  OpFailedError,
  ReadLimitError,
  ReadOnlyTransactionError,
  StoreCache,
  TransactionClosedError,
  TransactionConflictError,
  TransactionTooLargeError,
  openStore,
  storeLimits,
} from "../src/store/index.js";
import { WrappedLogBook } from "./fixtures/store/logbooks.js";
import { tempDir } from "./helpers/tmp.js";

let t: ReturnType<typeof tempDir>;
let log: EmbeddedLog;
let nextBook = 100;
const freshBook = (): WrappedLogBook => new WrappedLogBook(log.book(nextBook++));

beforeAll(async () => {
  t = tempDir("boki-store-");
  log = await EmbeddedLog.open({ dir: t.dir });
});
afterAll(async () => {
  await log.close();
  t.remove();
});

describe("store objects", () => {
  it("set, get, delete, add, push and pop at paths, with their results", async () => {
    const s = openStore(freshBook());
    expect(await s.get("u")).toBeUndefined();
    expect(await s.set("u", "name", "Ada")).toBeUndefined();
    expect(await s.set("u", "name", "Grace")).toBe("Ada");
    expect(await s.set("u", "a.b.c", 1)).toBeUndefined();
    expect(await s.get("u")).toEqual({ name: "Grace", a: { b: { c: 1 } } });
    expect(await s.add("u", "visits", 5)).toBe(0);
    expect(await s.add("u", "visits", -2)).toBe(5);
    expect(await s.get("u", "visits")).toBe(3);
    expect(await s.push("u", "list", "x")).toBe(1);
    expect(await s.push("u", ["list"], "y")).toBe(2);
    expect(await s.get("u", "list.1")).toBe("y");
    expect(await s.pop("u", "list")).toBe("y");
    expect(await s.pop("u", "missing")).toBeUndefined();
    expect(await s.delete("u", "a.b")).toEqual({ c: 1 });
    expect(await s.delete("u", "nothing.here")).toBeUndefined();
    expect(await s.get("u")).toEqual({ name: "Grace", a: {}, visits: 3, list: ["x"] });
    expect(await s.delete("u")).toEqual({ name: "Grace", a: {}, visits: 3, list: ["x"] });
    expect(await s.get("u")).toBeUndefined();
  });

  it("push with a limit drops the oldest elements", async () => {
    const s = openStore(freshBook());
    for (let i = 0; i < 6; i++) await s.push("tl", "posts", i, { max: 3 });
    expect(await s.get("tl", "posts")).toEqual([3, 4, 5]);
  });

  it("applies several operations on one object as one record, all or none", async () => {
    const b = freshBook();
    const s = openStore(b);
    b.reset();
    const r = await s.update("acct", (u) =>
      u.set("owner", "ada").add("balance", 10).push("log", "open"),
    );
    expect(r).toEqual([undefined, 0, 1]);
    expect(b.counts.append).toBe(1);
    await expect(s.update("acct", (u) => u.add("balance", 5).add("owner", 1))).rejects.toSatisfy(
      (e) => e instanceof OpFailedError && e.reason === "TYPE_MISMATCH" && e.opIndex === 1,
    );
    // The failed record changed nothing, for this reader and a fresh one alike.
    expect(await s.get("acct", "balance")).toBe(10);
    expect(await openStore(b).get("acct", "balance")).toBe(10);
  });

  it("refuses values that are not JSON, bad names and bad paths with INVALID_ARGUMENT", async () => {
    const s = openStore(freshBook());
    await expect(s.set("x", "a", undefined)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(s.set("x", "a", NaN)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(s.set("x", "a", new Map())).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(s.set("", "a", 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(s.set("x", "a..b", 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(s.push("x", "a", 1, { max: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("returns copies: mutating a result does not change the stored object", async () => {
    const s = openStore(freshBook());
    await s.set("o", "list", [1, 2]);
    const v = (await s.get("o", "list")) as number[];
    v.push(3);
    expect(await s.get("o", "list")).toEqual([1, 2]);
  });

  it("a cold read after writes walks one record: the writer left a checkpoint", async () => {
    const b = freshBook();
    const writer = openStore(b);
    for (let i = 0; i < 20; i++) await writer.add("c", "n", 1);
    await writer.flush();
    const reader = openStore(b); // a cold cache: only the log's aux data helps
    b.reset();
    expect(await reader.get("c", "n")).toBe(20);
    expect(reader.stats.recordsWalked).toBe(1);
    expect(b.reads).toBe(2); // the store's tail, then the object's newest record
    // Without the follower, the object's tail alone.
    b.reset();
    expect(await openStore(b, { follow: false }).get("c", "n")).toBe(20);
    expect(b.reads).toBe(1);
  });

  it("lost checkpoints only cost time: reads walk back further and agree", async () => {
    const b = freshBook();
    const lossy = new WrappedLogBook(b, () => true);
    const writer = openStore(lossy);
    for (let i = 0; i < 30; i++) await writer.push("q", "items", i, { max: 10 });
    const reader = openStore(new WrappedLogBook(b, () => true));
    expect(await reader.get("q", "items")).toEqual([20, 21, 22, 23, 24, 25, 26, 27, 28, 29]);
    expect(reader.stats.recordsWalked).toBe(30);
    // Aux data hidden at random from reads: same value, whatever was seen.
    let k = 0;
    const flaky = new WrappedLogBook(
      b,
      () => false,
      () => k++ % 3 === 0,
    );
    expect(await openStore(flaky).get("q", "items")).toEqual([
      20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    ]);
  });

  it("a read that would walk past recordsWalkedMax fails with READ_LIMIT_EXCEEDED", async () => {
    const b = new WrappedLogBook(log.book(nextBook++), () => true);
    const s = openStore(b);
    for (let i = 0; i < 12; i++) await s.add("c", "n", 1);
    const limited = openStore(b, { recordsWalkedMax: 10 });
    const err = await limited.get("c").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadLimitError);
    expect((err as ReadLimitError).code).toBe("READ_LIMIT_EXCEEDED");
    expect((err as ReadLimitError).limit).toBe("recordsWalkedMax");
    const bytes = openStore(b, { replayBytesMax: 200 });
    expect(await bytes.get("c").catch((e: unknown) => (e as ReadLimitError).limit)).toBe(
      "replayBytesMax",
    );
  });

  it("a record that replaces the whole object ends a walk, though it carries no checkpoint", async () => {
    const b = new WrappedLogBook(log.book(nextBook++), () => true); // no checkpoints at all
    const s = openStore(b);
    for (let i = 0; i < 10; i++) await s.add("o", "n", 1);
    await s.set("o", "", { n: 100 });
    await s.add("o", "n", 1);
    const reader = openStore(b);
    expect(await reader.get("o")).toEqual({ n: 101 });
    expect(reader.stats.recordsWalked).toBe(2);
    // One that fails (on any value) changes nothing, so the walk goes on past it.
    await expect(s.update("o", (u) => u.set("", 1).push("x", 2))).rejects.toBeInstanceOf(
      OpFailedError,
    );
    const again = openStore(b);
    expect(await again.get("o")).toEqual({ n: 101 });
    expect(again.stats.recordsWalked).toBe(3);
  });

  it("a commit record's checkpoint holds its decision; readers elsewhere agree without deciding", async () => {
    const b = freshBook();
    const s = openStore(b);
    await s.transaction(async (tx) => {
      await tx.set("p", "", { body: "hello" });
      await tx.push("q", "list", 1);
    });
    await s.flush();
    const tail = await b.checkTail(tagOf("boki-store/object/p"));
    expect(JSON.parse(Buffer.from(tail!.auxData!).toString())).toEqual({ v: 1, d: "c" });
    const reader = openStore(b);
    expect(await reader.get("p", "body")).toBe("hello");
    expect(await reader.get("q", "list")).toEqual([1]);
    expect(reader.stats.decisions).toBe(0);
  });

  it("ignores foreign records in an object's sub-stream", async () => {
    const b = freshBook();
    const s = openStore(b);
    await s.set("o", "a", 1);
    await b.append([tagOf("boki-store/object/o")], "not a store record");
    await b.append(
      [tagOf("boki-store/object/o")],
      JSON.stringify({ v: 1, k: "w", o: "other", ops: [] }),
    );
    expect(await openStore(b).get("o")).toEqual({ a: 1 });
    expect(await s.add("o", "a", 1)).toBe(1);
  });
});

describe("store transactions", () => {
  it("buffers writes: visible to its own reads, to others only after commit", async () => {
    const b = freshBook();
    const s = openStore(b);
    await s.set("a", "v", 1);
    const tx = await s.begin();
    expect(await tx.add("a", "v", 10)).toBe(1);
    expect(await tx.get("a", "v")).toBe(11);
    await tx.set("b", "v", "new");
    expect(await s.get("a", "v")).toBe(1);
    expect(await s.get("b")).toBeUndefined();
    const { seqnum } = await tx.commit();
    expect(seqnum).toBeTypeOf("number");
    expect(await s.get("a", "v")).toBe(11);
    expect(await openStore(b).get("b", "v")).toBe("new");
    await expect(tx.get("a")).rejects.toBeInstanceOf(TransactionClosedError);
  });

  it("serializable: a read-write conflict aborts with a retryable TRANSACTION_CONFLICT", async () => {
    const s = openStore(freshBook());
    await s.set("x", "v", 1);
    const tx = await s.begin();
    expect(await tx.get("x", "v")).toBe(1);
    await tx.set("y", "v", 2); // writes y only; x was read
    await s.set("x", "v", 5); // a committed write to x after the snapshot
    const err = await tx.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransactionConflictError);
    expect((err as TransactionConflictError).retryable).toBe(true);
    expect((err as TransactionConflictError).object).toBe("x");
    expect(await s.get("y")).toBeUndefined();
    expect(tx.status).toBe("aborted");
  });

  it("snapshot isolation lets write skew through; serializable stops it", async () => {
    for (const isolation of ["snapshot", "serializable"] as const) {
      const s = openStore(freshBook());
      await s.set("x", "on", true);
      await s.set("y", "on", true);
      // Invariant: at least one stays on. Each turns one off after seeing both on.
      const t1 = await s.begin({ isolation });
      const t2 = await s.begin({ isolation });
      for (const tx of [t1, t2]) {
        expect(await tx.get("x", "on")).toBe(true);
        expect(await tx.get("y", "on")).toBe(true);
      }
      await t1.set("x", "on", false);
      await t2.set("y", "on", false);
      const results = await Promise.allSettled([t1.commit(), t2.commit()]);
      const committed = results.filter((r) => r.status === "fulfilled").length;
      if (isolation === "snapshot") {
        expect(committed).toBe(2);
        expect([await s.get("x", "on"), await s.get("y", "on")]).toEqual([false, false]);
      } else {
        expect(committed).toBe(1);
      }
    }
  });

  it("write-write conflicts abort under both levels (first committer wins)", async () => {
    for (const isolation of ["snapshot", "serializable"] as const) {
      const s = openStore(freshBook());
      const t1 = await s.begin({ isolation });
      const t2 = await s.begin({ isolation });
      await t1.add("c", "n", 1);
      await t2.add("c", "n", 1);
      await t1.commit();
      await expect(t2.commit()).rejects.toBeInstanceOf(TransactionConflictError);
      expect(await s.get("c", "n")).toBe(1);
    }
  });

  it("read-only transactions read one snapshot and append nothing", async () => {
    const b = freshBook();
    const s = openStore(b);
    await s.set("a", "v", 1);
    await s.set("b", "v", 1);
    b.reset();
    const ro = await s.begin({ readOnly: true });
    expect(await ro.get("a", "v")).toBe(1);
    await s.set("b", "v", 2); // after the snapshot: not seen
    expect(await ro.get("b", "v")).toBe(1);
    await expect(ro.set("a", "v", 3)).rejects.toBeInstanceOf(ReadOnlyTransactionError);
    expect(await ro.commit()).toEqual({ seqnum: undefined });
    expect(b.counts.append).toBe(1); // the write to b only
  });

  it("a decision is the same for every reader, with or without checkpoints", async () => {
    const b = freshBook();
    const s = openStore(b);
    const t1 = await s.begin();
    const t2 = await s.begin();
    await t1.add("c", "n", 1);
    await t2.add("c", "n", 100);
    await t1.commit();
    await expect(t2.commit()).rejects.toBeInstanceOf(TransactionConflictError);
    const noAux = new WrappedLogBook(
      b,
      () => true,
      () => true,
    );
    expect(await openStore(noAux).get("c", "n")).toBe(1);
    expect(await openStore(b).get("c", "n")).toBe(1);
  });

  it("store.transaction retries conflicts with a bound, then gives up with the attempt count", async () => {
    const s = openStore(freshBook());
    let runs = 0;
    const out = await s.transaction(
      async (tx) => {
        runs++;
        const n = (await tx.get("c", "n")) as number | undefined;
        if (runs === 1) await s.add("c", "n", 1); // a concurrent writer, first attempt only
        await tx.set("c", "n", (n ?? 0) + 10);
        return n;
      },
      { sleep: () => Promise.resolve() },
    );
    expect(runs).toBe(2);
    expect(out).toBe(1);
    expect(await s.get("c", "n")).toBe(11);

    let tries = 0;
    const err = await s
      .transaction(
        async (tx) => {
          tries++;
          await tx.get("c", "n");
          await s.add("c", "n", 1);
          await tx.set("c", "m", 1);
        },
        { retries: 2, sleep: () => Promise.resolve() },
      )
      .catch((e: unknown) => e);
    expect(tries).toBe(3);
    expect(err).toBeInstanceOf(TransactionConflictError);
    expect((err as TransactionConflictError).attempts).toBe(3);
  });

  it("refuses a transaction writing more objects than a commit record can tag", async () => {
    const s = openStore(freshBook());
    const tx = await s.begin();
    const max = storeLimits.OBJECTS_WRITTEN_PER_TRANSACTION_MAX;
    for (let i = 0; i < max; i++) await tx.set(`o${i}`, "v", i);
    await expect(tx.set("one-more", "v", 1)).rejects.toBeInstanceOf(TransactionTooLargeError);
    await tx.commit();
    expect(await s.get(`o${max - 1}`, "v")).toBe(max - 1);
  });

  it("a shared StoreCache serves several stores over one book", async () => {
    const b = freshBook();
    const cache = new StoreCache();
    await openStore(b, { cache }).set("k", "v", 1);
    b.reset();
    const other = openStore(b, { cache });
    expect(await other.get("k", "v")).toBe(1);
    expect(cache.stats.vouchedHits).toBeGreaterThan(0);
    expect(b.reads).toBe(1); // the store's tail only: the follower vouches for the cached value
  });

  it("with a warm cache, reads of unchanged objects cost one log read whatever their number", async () => {
    const b = freshBook();
    const cache = new StoreCache();
    const s = openStore(b, { cache });
    for (let i = 0; i < 8; i++) await s.set(`post:${i}`, "", { body: `p${i}` });
    await s.push("list", "ids", 7);
    b.reset();
    const reader = openStore(b, { cache });
    const got = await reader.transaction(
      async (tx) => Promise.all(Array.from({ length: 8 }, (_, i) => tx.get(`post:${i}`, "body"))),
      { readOnly: true },
    );
    expect(got).toEqual(Array.from({ length: 8 }, (_, i) => `p${i}`));
    expect(b.reads).toBe(1);
    // A write by another store (another cache) is seen: the follower reads it, once.
    await openStore(b).set("post:3", "body", "changed");
    b.reset();
    expect(await reader.get("post:3", "body")).toBe("changed");
    expect(await reader.get("post:4", "body")).toBe("p4");
    expect(b.counts.readNext).toBeLessThanOrEqual(2);
  });

  it("the follower decides a commit locally: no reads of the objects' sub-streams", async () => {
    const b = freshBook();
    const s = openStore(b);
    await s.set("x", "v", 1);
    const tx = await s.begin();
    await tx.add("x", "v", 1);
    b.reset();
    await tx.commit();
    expect(s.stats.decisions).toBe(0);
    expect(b.counts.readPrev).toBe(0);
    // Another store without a follower decides it from the log alone, the same way.
    const cold = openStore(b, { follow: false });
    expect(await cold.get("x", "v")).toBe(2);
  });
});
