import { describe, expect, it } from "vitest";
import { SimDisk } from "../src/sim/disk.js";
import { ManualClock } from "./helpers/manual-clock.js";
import type { MetalogEntry } from "../src/log/metalog.js";
import {
  payloadOf,
  decodeMeta,
  droppedPayloadOf,
  headerOf,
  isPayloadDropped,
  encodeRecord,
  RecordKind,
} from "../src/log/record.js";
import type { BookId, Tag } from "../src/log/types.js";

/** Latencies handed out in order; the test fails if the disk asks for more. */
function latencies(...values: number[]): { next: () => number; calls: () => number } {
  let i = 0;
  return {
    next: () => {
      const v = values[i++];
      if (v === undefined) throw new Error(`latencyMs called ${i} times, ${values.length} given`);
      return v;
    },
    calls: () => i,
  };
}

function diskWith(...values: number[]): {
  clock: ManualClock;
  disk: SimDisk;
  calls: () => number;
} {
  const clock = new ManualClock();
  const l = latencies(...values);
  return { clock, disk: new SimDisk({ clock, latencyMs: l.next, name: "d" }), calls: l.calls };
}

/** Whether a promise has settled, checked after the microtasks of a turn have run. */
function track(p: Promise<void>): { settled: boolean } {
  const t = { settled: false };
  void p.then(() => {
    t.settled = true;
  });
  return t;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const rec = (i: number): Uint8Array => Buffer.from([i, i + 1, i + 2]);

const entry = (log: number, position: number, term = 1): MetalogEntry => ({
  log: log as MetalogEntry["log"],
  term,
  position,
  startSeqnum: position * 10,
  cut: [[0, position + 1]],
});

describe("simulated disk", () => {
  it("a write is visible at once and durable only at its completion time", async () => {
    const { clock, disk } = diskWith(10);
    const w = track(disk.writeRecords(1, 0, 0, [rec(0), rec(1)]));
    expect(disk.readRecord(1, 0, 1)).toEqual(rec(1));
    expect(disk.shardEnd(1, 0)).toBe(2);
    expect(disk.durableShardEnd(1, 0)).toBe(0);
    expect(disk.pendingWrites).toBe(1);

    clock.advance(9);
    await turn();
    expect(w.settled).toBe(false);
    expect(disk.durableShardEnd(1, 0)).toBe(0);

    clock.advance(1);
    await turn();
    expect(w.settled).toBe(true);
    expect(disk.durableShardEnd(1, 0)).toBe(2);
    expect(disk.pendingWrites).toBe(0);
    expect(disk.stats).toEqual({ issued: 1, completed: 1, lost: 0, refused: 0 });
  });

  it("writes complete in issue order even when a later one is faster", async () => {
    const { clock, disk } = diskWith(10, 2);
    const order: string[] = [];
    const a = disk.writeRecords(0, 0, 0, [rec(0)]).then(() => order.push(`a@${clock.now()}`));
    const b = disk.writeAux(0, 5, rec(5)).then(() => order.push(`b@${clock.now()}`));

    clock.advance(2);
    await turn();
    expect(order).toEqual([]);
    expect(disk.pendingWrites).toBe(2);

    clock.advance(8);
    await Promise.all([a, b]);
    expect(order).toEqual(["a@10", "b@10"]);
    expect(disk.pendingWrites).toBe(0);
  });

  it("calls latencyMs once per write, in issue order, and never for a refused write", () => {
    const { disk, calls } = diskWith(1, 2, 3, 4, 5, 6, 7);
    void disk.writeRecords(0, 0, 0, [rec(0)]);
    void disk.truncatePayloads(0, [[0, 0]]);
    void disk.writeAux(0, 1, rec(1));
    void disk.deleteAux(0, [1]);
    void disk.copyMetalog([entry(0, 0)]);
    void disk.writeMetalog([entry(0, 1)]);
    void disk.writeMeta("term", 3);
    expect(calls()).toBe(7);
    expect(disk.readRecord(0, 0, 0)).toBeDefined();
    expect(disk.readMeta("term")).toBe(3);

    disk.crash();
    void disk.writeMeta("term", 4);
    expect(calls()).toBe(7);
    expect(disk.stats).toEqual({ issued: 7, completed: 0, lost: 7, refused: 1 });
  });

  it("a crash loses exactly the writes not yet durable and their promises never settle", async () => {
    const { clock, disk } = diskWith(1, 5, 5, 5);
    const a = track(disk.writeRecords(2, 3, 0, [rec(0)]));
    const b = track(disk.writeRecords(2, 3, 1, [rec(1)]));
    const c = track(disk.writeMeta("term", 7));
    const d = track(disk.writeMetalog([entry(2, 0)]));
    clock.advance(1);
    await turn();
    expect(a.settled).toBe(true);
    expect(disk.shardEnd(2, 3)).toBe(2);

    disk.crash();
    expect(disk.crashed).toBe(true);
    expect(disk.shardEnd(2, 3)).toBe(1);
    expect(disk.readRecord(2, 3, 0)).toEqual(rec(0));
    expect(disk.readRecord(2, 3, 1)).toBeUndefined();
    expect(disk.readMeta("term")).toBeUndefined();
    expect(disk.loadMetalog(2)).toEqual([]);
    expect(disk.pendingWrites).toBe(0);
    expect(disk.stats).toEqual({ issued: 4, completed: 1, lost: 3, refused: 0 });
    expect(clock.pending).toBe(0);

    clock.advance(100);
    await turn();
    expect([b.settled, c.settled, d.settled]).toEqual([false, false, false]);
    expect(disk.durableShardEnd(2, 3)).toBe(1);
  });

  it("while crashed, writes change nothing and never settle; reads see the durable state", async () => {
    const { clock, disk } = diskWith(1);
    const done = disk.writeAux(0, 1, rec(1));
    clock.advance(1);
    await done;
    disk.crash();
    const w = track(disk.deleteAux(0, [1]));
    const x = track(disk.writeRecords(0, 0, 0, [rec(0)]));
    expect(disk.readAux(0, 1)).toEqual(rec(1));
    expect(disk.shardEnd(0, 0)).toBe(0);
    expect(clock.pending).toBe(0);
    clock.advance(100);
    await turn();
    expect([w.settled, x.settled]).toEqual([false, false]);
    expect(disk.stats.refused).toBe(2);
  });

  it("after reopen the durable records are read back and new writes work", async () => {
    const { clock, disk } = diskWith(1, 1, 1, 1, 50, 2);
    void disk.writeRecords(0, 1, 0, [rec(0), rec(1)]);
    void disk.writeAux(0, 4, rec(4));
    void disk.writeMetalog([entry(0, 0), entry(0, 1)]);
    void disk.writeMeta("term", { n: 2 });
    void disk.writeRecords(0, 1, 2, [rec(2)]); // still pending at the crash
    clock.advance(1);
    await turn();
    disk.crash();
    disk.reopen();
    expect(disk.crashed).toBe(false);

    expect(disk.shardEnd(0, 1)).toBe(2);
    expect(disk.readRecord(0, 1, 1)).toEqual(rec(1));
    expect(disk.readAux(0, 4)).toEqual(rec(4));
    expect(disk.loadMetalog(0)).toEqual([entry(0, 0), entry(0, 1)]);
    expect(disk.readMeta("term")).toEqual({ n: 2 });

    const w = track(disk.writeRecords(0, 1, 2, [rec(9)]));
    expect(disk.readRecord(0, 1, 2)).toEqual(rec(9));
    clock.advance(2);
    await turn();
    expect(w.settled).toBe(true);
    expect(disk.durableShardEnd(0, 1)).toBe(3);
  });

  it("metalog entries written at the same position are overwritten; loadMetalog is ascending", async () => {
    const { clock, disk } = diskWith(1, 1, 1, 1);
    void disk.writeMetalog([entry(5, 2), entry(5, 0)]);
    void disk.copyMetalog([entry(5, 1), entry(6, 0)]);
    void disk.writeMetalog([entry(5, 1, 4)]);
    expect(disk.loadMetalog(5)).toEqual([entry(5, 0), entry(5, 1, 4), entry(5, 2)]);
    expect(disk.loadMetalog(6)).toEqual([entry(6, 0)]);
    expect(disk.loadMetalog(7)).toEqual([]);

    // The durable copy went through the same writes in the same order.
    clock.advance(1);
    await turn();
    disk.crash();
    expect(disk.loadMetalog(5)).toEqual([entry(5, 0), entry(5, 1, 4), entry(5, 2)]);
  });

  it("truncatePayloads keeps the header, durably once it completes", async () => {
    const { clock, disk } = diskWith(1, 5, 1);
    const meta = {
      kind: RecordKind.Data,
      book: 3 as BookId,
      tags: [7n as Tag, 9n as Tag],
    } as const;
    const full = encodeRecord(meta, Buffer.from("a payload that goes away"));
    const other = encodeRecord(meta, Buffer.from("kept"));
    const written = disk.writeRecords(1, 0, 0, [full, other]);
    clock.advance(1);
    await written;

    const t = track(
      disk.truncatePayloads(1, [
        [0, 0],
        [0, 5],
        [4, 0],
      ]),
    );
    const cut = disk.readRecord(1, 0, 0)!;
    // The header stays, marked as having lost its payload (a trimmed record).
    expect(Buffer.from(cut).equals(Buffer.from(droppedPayloadOf(full)))).toBe(true);
    expect(cut.length).toBe(headerOf(full).length);
    expect(isPayloadDropped(cut)).toBe(true);
    expect(isPayloadDropped(disk.readRecord(1, 0, 1)!)).toBe(false);
    expect(payloadOf(cut).length).toBe(0);
    expect(decodeMeta(cut)).toEqual(meta);
    expect(disk.readRecord(1, 0, 1)).toBe(other);
    expect(disk.shardEnd(1, 0)).toBe(2);

    clock.advance(5);
    await turn();
    expect(t.settled).toBe(true);
    disk.crash();
    expect(payloadOf(disk.readRecord(1, 0, 0)!).length).toBe(0);
    expect(disk.readRecord(1, 0, 1)).toBe(other);
  });

  it("a truncation lost in a crash leaves the full record", async () => {
    const { clock, disk } = diskWith(1, 5);
    const full = encodeRecord(
      { kind: RecordKind.Data, book: 1 as BookId, tags: [] },
      Buffer.from("payload"),
    );
    const written = disk.writeRecords(0, 0, 0, [full]);
    clock.advance(1);
    await written;
    void disk.truncatePayloads(0, [[0, 0]]);
    expect(payloadOf(disk.readRecord(0, 0, 0)!).length).toBe(0);
    disk.crash();
    expect(disk.readRecord(0, 0, 0)).toBe(full);
  });

  it("close makes pending writes durable and keeps the state for the next user", async () => {
    const { clock, disk } = diskWith(100, 100, 100);
    const w = track(disk.writeRecords(0, 0, 0, [rec(0)]));
    const m = track(disk.writeMeta("k", "v"));
    await disk.close();
    await turn();
    expect([w.settled, m.settled]).toEqual([true, true]);
    expect(disk.pendingWrites).toBe(0);
    expect(disk.durableShardEnd(0, 0)).toBe(1);
    expect(clock.pending).toBe(0);

    // A write after the close works, and a crash keeps what the close made durable.
    void disk.writeRecords(0, 0, 1, [rec(1)]);
    disk.crash();
    expect(disk.shardEnd(0, 0)).toBe(1);
    expect(disk.readMeta("k")).toBe("v");
    expect(disk.stats).toEqual({ issued: 3, completed: 2, lost: 1, refused: 0 });
  });

  it("shardEnd and durableShardEnd count only the contiguous prefix", async () => {
    const { clock, disk } = diskWith(1, 1);
    void disk.writeRecords(0, 0, 2, [rec(2), rec(3)]);
    expect(disk.shardEnd(0, 0)).toBe(0);
    expect(disk.readRecord(0, 0, 3)).toEqual(rec(3));
    void disk.writeRecords(0, 0, 0, [rec(0), rec(1)]);
    expect(disk.shardEnd(0, 0)).toBe(4);
    expect(disk.shardEnd(0, 1)).toBe(0);
    clock.advance(1);
    await turn();
    expect(disk.durableShardEnd(0, 0)).toBe(4);
  });

  it("deleteAux removes entries, and readMeta returns a copy of what was written", () => {
    const { disk } = diskWith(1, 1, 1, 1);
    void disk.writeAux(0, 1, rec(1));
    void disk.writeAux(0, 2, rec(2));
    void disk.deleteAux(0, [1, 3]);
    expect(disk.readAux(0, 1)).toBeUndefined();
    expect(disk.readAux(0, 2)).toEqual(rec(2));

    const value = { list: [1, 2] };
    void disk.writeMeta("v", value);
    value.list.push(3);
    const read = disk.readMeta("v") as { list: number[] };
    expect(read).toEqual({ list: [1, 2] });
    read.list.push(4);
    expect(disk.readMeta("v")).toEqual({ list: [1, 2] });
  });
});
