import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tagOf } from "../src/index.js";
import { tempDir } from "./helpers/tmp.js";
import { settledWithin } from "./helpers/async.js";
import {
  startInProcCluster,
  withInProcCluster,
  type InProcCluster,
} from "./helpers/inproc-cluster.js";

describe("read consistency across engines", () => {
  let t: ReturnType<typeof tempDir>;
  let c: InProcCluster;
  beforeEach(async () => {
    t = tempDir();
    c = await startInProcCluster(t.dir, { engines: 2 });
  });
  afterEach(async () => {
    await c.close();
    t.remove();
  });

  it("read-your-writes: a read at the writer's position waits for a lagging index, then sees the write", async () => {
    c.gate.closedFor.add("engine-1");
    const writer = c.book(0, 5);
    const seqnum = await writer.append([tagOf("k")], "mine");
    // A child of the writer runs on the lagging engine and inherits the writer's position.
    const child = c.book(1, 5, writer.position);
    const read = child.readNext(tagOf("k"), 0);
    expect(await settledWithin(read, 100)).toBe(false);
    c.gate.open("engine-1");
    const r = await read;
    expect(r?.seqnum).toBe(seqnum);
    expect(Buffer.from(r!.data).toString()).toBe("mine");
    expect(child.position).toBeGreaterThanOrEqual(writer.position);
  });

  it("monotonic reads: after seeing a record, a reader moved to a lagging engine still sees it", async () => {
    const writer = c.book(0, 6);
    await writer.append([], "old");
    // Let engine 1 catch up with "old", then hold it back.
    await c.book(1, 6, writer.position).checkTail(0);
    c.gate.closedFor.add("engine-1");
    const newest = await writer.append([], "new");
    const reader = c.book(0, 6);
    expect((await reader.checkTail(0))?.seqnum).toBe(newest);
    const moved = c.book(1, 6, reader.position);
    const tail = moved.checkTail(0);
    expect(await settledWithin(tail, 100)).toBe(false);
    c.gate.open("engine-1");
    expect((await tail)?.seqnum).toBe(newest);
  });

  it("a reader with position 0 on a lagging engine is served at once, without records it cannot know", async () => {
    c.gate.closedFor.add("engine-1");
    await c.book(0, 7).append([], "x");
    expect(await c.book(1, 7).readNext(0, 0)).toBeNull();
    c.gate.open("engine-1");
  });

  it("concurrent appends through both engines give one total order seen identically by both", async () => {
    const seen = new Set<number>();
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const b = c.book(i % 2, 1 + (i % 3));
        for (let k = 0; k < 30; k++) {
          const s = await b.append([tagOf(`w${i % 4}`)], `${i}-${k}`);
          expect(seen.has(s)).toBe(false);
          seen.add(s);
        }
      }),
    );
    const position = Math.max(
      c.book(0, 1).position,
      c.engines[0]!.positionOf(1 as never),
      c.engines[1]!.positionOf(1 as never),
    );
    for (const book of [1, 2, 3]) {
      const orders: string[][] = [];
      for (const e of [0, 1]) {
        const b = c.book(e, book, position);
        const out: string[] = [];
        for (let r = await b.readNext(0, 0); r !== null; r = await b.readNext(0, r.seqnum + 1)) {
          out.push(`${r.seqnum}:${Buffer.from(r.data).toString()}`);
        }
        orders.push(out);
      }
      expect(orders[0]!.length).toBeGreaterThan(0);
      expect(orders[1]).toEqual(orders[0]);
    }
  });
});

describe("index data from storage", () => {
  it("a stale batch arriving while the metalog is ahead of the index does not stall the index", async () => {
    await withInProcCluster({ engines: 2 }, async (c) => {
      const writer = c.book(0, 1);
      for (let i = 0; i < 50; i++) await writer.append([], `a${i}`);
      await c.book(1, 1, writer.position).checkTail(0);
      // engine-1 gets no index data for a while: its metalog runs ahead of its index.
      c.gate.dropIf = (_from, to, m) => to === "engine-1" && m.t === "index-data";
      for (let i = 0; i < 10; i++) await writer.append([], `b${i}`);
      // A late answer to an old fetch: records 20..29 of engine-0's shard, applied long ago.
      const shard = 65536;
      (
        c.engines[1] as unknown as {
          onIndexData(l: number, s: number, f: number, h: Uint8Array[]): void;
        }
      ).onIndexData(
        0,
        shard,
        20,
        Array.from({ length: 10 }, () => new Uint8Array(6)),
      );
      c.gate.dropIf = null;
      expect(Buffer.from((await c.book(1, 1, writer.position).checkTail(0))!.data).toString()).toBe(
        "b9",
      );
    });
  }, 30_000);
});
