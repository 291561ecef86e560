import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tagOf, type BokiError } from "../src/index.js";
import { tempDir } from "./helpers/tmp.js";
import { startInProcCluster, type InProcCluster } from "./helpers/inproc-cluster.js";

// One physical log indexed by engine-0 only: engine-1 sends every query to engine-0.
describe("an engine without a local index", () => {
  let t: ReturnType<typeof tempDir>;
  let c: InProcCluster;
  beforeEach(async () => {
    t = tempDir();
    c = await startInProcCluster(t.dir, {
      engines: 2,
      storages: 3,
      sequencers: 3,
      replication: 3,
      indexReplicas: 1,
    });
  });
  afterEach(async () => {
    await c.close();
    t.remove();
  });

  it("reads its own writes and another engine's through the remote index", async () => {
    const remote = c.book(1, 3);
    const s1 = await remote.append([tagOf("k")], "from engine-1");
    expect((await remote.checkTail(tagOf("k")))?.seqnum).toBe(s1);
    const local = c.book(0, 3, remote.position);
    const s0 = await local.append([tagOf("k")], "from engine-0");
    const moved = c.book(1, 3, local.position);
    const r = await moved.readPrev(tagOf("k"), s0);
    expect(r?.seqnum).toBe(s0);
    expect(Buffer.from(r!.data).toString()).toBe("from engine-0");
    expect((await moved.readNext(tagOf("k"), 0))?.seqnum).toBe(s1);
  });

  it("a read at a position the index has not reached waits for it", async () => {
    c.gate.closedFor.add("engine-0");
    const writer = c.book(1, 4);
    const s = await writer.append([], "x");
    const read = c.book(1, 4, writer.position).checkTail(0);
    let answered = false;
    void read.then(() => (answered = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(answered).toBe(false);
    c.gate.open("engine-0");
    expect((await read)?.seqnum).toBe(s);
  });

  it("conditional appends succeed and fail exactly as on an indexing engine", async () => {
    const b = c.book(1, 5);
    const tag = tagOf("cond");
    await b.condAppend([tag], "first", tag, 0);
    await expect(b.condAppend([tag], "stale", tag, 0)).rejects.toMatchObject({
      code: "COND_APPEND_FAILED",
      actualPosition: 1,
    });
    const results = await Promise.allSettled([
      c.book(1, 5).condAppend([tag], "a", tag, 1),
      c.book(0, 5).condAppend([tag], "b", tag, 1),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(
      results.filter(
        (r) => r.status === "rejected" && (r.reason as BokiError).code === "COND_APPEND_FAILED",
      ),
    ).toHaveLength(1);
  });

  it("blocking reads, aux data and trims work through the remote index", async () => {
    const b = c.book(1, 6);
    const tag = tagOf("b");
    const waiting = c.book(1, 6).readNextBlocking(tag, 0, 5000);
    const s = await c.book(0, 6).append([tag], "arrives");
    expect((await waiting)?.seqnum).toBe(s);
    await b.setAuxData(s, "aux");
    expect(
      Buffer.from((await c.book(1, 6, b.position).readNext(tag, s))!.auxData!).toString(),
    ).toBe("aux");
    // The indexing engine's cached copy got the aux data too.
    expect(
      Buffer.from((await c.book(0, 6, b.position).readNext(tag, s))!.auxData!).toString(),
    ).toBe("aux");
    await expect(b.setAuxData(s + 1000, "x")).rejects.toMatchObject({ code: "NOT_FOUND" });
    const s2 = await b.append([tag], "kept");
    await b.trim(tag, s2);
    expect((await b.readNext(tag, 0))?.seqnum).toBe(s2);
    await expect(c.book(1, 77).trim(0, 1)).rejects.toMatchObject({ code: "BOOK_EMPTY" });
  });
});
