import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "./helpers/tmp.js";
import { settledWithin, sleep } from "./helpers/async.js";
import {
  startInProcCluster,
  withInProcCluster,
  type InProcCluster,
} from "./helpers/inproc-cluster.js";
import type { EngineLogBook } from "../src/engine/logbook.js";
import { CUTS_IN_FLIGHT_MAX } from "../src/sequencer/sequencer.js";

async function readAll(b: EngineLogBook): Promise<string[]> {
  const out: string[] = [];
  for (let r = await b.readNext(0, 0); r !== null; r = await b.readNext(0, r.seqnum + 1)) {
    out.push(`${r.seqnum}:${Buffer.from(r.data).toString()}`);
  }
  return out;
}

describe("replicated metalog and storage (3 sequencers, 3 storage nodes, replication 3)", () => {
  let t: ReturnType<typeof tempDir>;
  let c: InProcCluster;
  beforeEach(async () => {
    t = tempDir();
    c = await startInProcCluster(t.dir, { engines: 2, storages: 3, sequencers: 3, replication: 3 });
  });
  afterEach(async () => {
    await c.close();
    t.remove();
  });

  it("appends through both engines are ordered once and read identically from both", async () => {
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const b = c.book(i % 2, 1);
        for (let k = 0; k < 25; k++) await b.append([], `${i}-${k}`);
      }),
    );
    const position = Math.max(
      c.engines[0]!.positionOf(1 as never),
      c.engines[1]!.positionOf(1 as never),
    );
    const a = await readAll(c.book(0, 1, position));
    const b = await readAll(c.book(1, 1, position));
    expect(a).toHaveLength(200);
    expect(b).toEqual(a);
  });

  it("commits with one backup sequencer down, and stops committing with both down until one returns", async () => {
    const b = c.book(0, 2);
    c.gate.down.add("sequencer-1");
    await b.append([], "with one backup");
    c.gate.down.add("sequencer-2");
    const stalled = b.append([], "no majority");
    expect(await settledWithin(stalled, 300)).toBe(false);
    c.gate.down.delete("sequencer-2");
    await stalled;
    c.gate.down.delete("sequencer-1");
    expect((await readAll(c.book(0, 2, b.position))).map((x) => x.split(":")[1])).toEqual([
      "with one backup",
      "no majority",
    ]);
  });

  it("while the primary's uncommitted cuts fill its pipeline, later appends wait and are then ordered together", async () => {
    const b = c.book(0, 3);
    await b.append([], "warm-up");
    const before = b.position;
    // Hold the backups' acknowledgements: the next cuts stay uncommitted.
    c.gate.dropIf = (_from, _to, m) => m.t === "metalog-ack";
    const first = b.append([], "first");
    await new Promise((r) => setTimeout(r, 30));
    // Spaced out and through both engines, so each would get an entry of its own if the
    // primary cut regardless of commits (5 entries in all); an engine itself sends at most
    // two unordered batches, so engine 0's second later append waits for "first".
    const rest: Array<Promise<number>> = [];
    for (let i = 0; i < 4; i++) {
      rest.push(c.book(i % 2 === 0 ? 1 : 0, 3).append([], `later-${i}`));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await settledWithin(Promise.all([first, ...rest]), 100)).toBe(false);
    c.gate.dropIf = null; // the primary resends the entry; the acks now arrive
    const seqnums = await Promise.all([first, ...rest]);
    expect(new Set(seqnums).size).toBe(5);
    // One entry per cut the pipeline takes before it is full (the first append's, then the
    // next append's), one for everything reported meanwhile, and one for what engine 0 held
    // back: 4 with CUTS_IN_FLIGHT_MAX = 2, against 5 if the primary cut regardless of commits.
    const after = Math.max(
      c.engines[0]!.positionOf(3 as never),
      c.engines[1]!.positionOf(3 as never),
      b.position,
    );
    expect(after - before).toBeLessThanOrEqual(CUTS_IN_FLIGHT_MAX + 2);
    expect(CUTS_IN_FLIGHT_MAX + 2).toBeLessThan(5);
  });

  it("an engine keeps at most two replicate batches unordered; later appends leave together", async () => {
    const b = c.book(0, 4);
    await b.append([], "warm-up");
    // Batches by their first local id (a resend repeats one; it is not a new batch).
    const batches = new Set<number>();
    const count = (from: string, to: string, m: { t: string; first?: number }): void => {
      if (from === "engine-0" && to === "storage-0" && m.t === "replicate") batches.add(m.first!);
    };
    c.gate.dropIf = (from, to, m) => {
      count(from, to, m);
      return m.t === "metalog-ack"; // nothing gets ordered meanwhile
    };
    const appends: Array<Promise<number>> = [];
    for (let i = 0; i < 6; i++) {
      appends.push(c.book(0, 4).append([], `a-${i}`));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(batches.size).toBe(2);
    c.gate.dropIf = (from, to, m) => {
      count(from, to, m);
      return false;
    };
    expect(new Set(await Promise.all(appends)).size).toBe(6);
    // The four held appends went out as one batch.
    expect(batches.size).toBe(3);
    c.gate.dropIf = null;
  });

  it("a storage read that gets ahead of the metalog the node has learned waits for it", async () => {
    // Storage nodes get committed entries in batches (every 20 ms); a read of a record
    // ordered just now reaches a storage node before they do.
    const fetches: string[] = [];
    c.gate.dropIf = (from, _to, m) => {
      if (from.startsWith("storage") && m.t === "metalog-fetch") fetches.push(from);
      return false;
    };
    const writer = c.book(0, 5);
    const seqnum = await writer.append([], "fresh");
    // Engine 1 indexes the record but has no copy of it: the read goes to storage.
    const record = await c.book(1, 5, writer.position).readNext(0, seqnum);
    c.gate.dropIf = null;
    expect(record?.seqnum).toBe(seqnum);
    expect(Buffer.from(record!.data).toString()).toBe("fresh");
    expect(fetches.length).toBeGreaterThan(0);
  });

  it("an append waits while a storage replica of its shard is down, and completes when it returns", async () => {
    const b = c.book(0, 3);
    await b.append([], "before");
    c.gate.down.add("storage-1");
    const stalled = b.append([], "needs all replicas");
    expect(await settledWithin(stalled, 300)).toBe(false);
    c.gate.down.delete("storage-1");
    // The replica missed the batch while it was cut off; it gets it again from the engine's resend.
    await stalled;
  });

  it("a primary sequencer restarted on an empty disk recovers the metalog from its backups and continues it", async () => {
    const b = c.book(0, 4);
    const before: number[] = [];
    for (let i = 0; i < 20; i++) before.push(await b.append([], `a${i}`));
    await c.restartSequencer(0, { wipe: true });
    const after = await b.append([], "after restart");
    expect(after).toBeGreaterThan(before[before.length - 1]!);
    const all = await readAll(c.book(1, 4, b.position));
    expect(all.map((x) => x.split(":")[1])).toEqual([
      ...before.map((_, i) => `a${i}`),
      "after restart",
    ]);
  });
});

describe("a storage node that restarts", () => {
  it("catches up what it missed from its peer replicas, and serves every record alone afterwards", async () => {
    await withInProcCluster(
      {
        engines: 2,
        storages: 3,
        sequencers: 1,
        replication: 3,
      },
      async (c) => {
        const b = c.book(0, 9);
        const before: number[] = [];
        for (let i = 0; i < 30; i++) before.push(await b.append([], `old-${i}`));
        // Its disk is lost: it comes back empty and must fetch the shard's records from peers.
        await c.restartStorage(1, { wipe: true });
        const after = await b.append([], "new");
        expect(after).toBeGreaterThan(before[before.length - 1]!);
        // Only the restarted node is reachable; engine-1 has none of these records in its cache.
        c.gate.down.add("storage-0");
        c.gate.down.add("storage-2");
        const r = await c.book(1, 9, b.position).readNext(0, before[3]!);
        expect(Buffer.from(r!.data).toString()).toBe("old-3");
        expect(Buffer.from((await c.book(1, 9, b.position).checkTail(0))!.data).toString()).toBe(
          "new",
        );
      },
    );
  }, 30_000);
});

describe("an engine that restarts in the same term", () => {
  it("continues its shard after the records of its earlier run, so no local id is reused", async () => {
    await withInProcCluster(
      {
        engines: 2,
        storages: 3,
        sequencers: 3,
        replication: 3,
      },
      async (c) => {
        const before: number[] = [];
        for (let i = 0; i < 20; i++) before.push(await c.book(0, 11).append([], `first-run-${i}`));
        await c.restartEngine(0);
        const b = c.book(0, 11);
        const after: number[] = [];
        for (let i = 0; i < 5; i++) after.push(await b.append([], `second-run-${i}`));
        expect(after[0]).toBeGreaterThan(before[before.length - 1]!);
        const expected = [
          ...before.map((s, i) => `${s}:first-run-${i}`),
          ...after.map((s, i) => `${s}:second-run-${i}`),
        ];
        for (const e of [0, 1]) {
          const got: string[] = [];
          const r0 = c.book(e, 11, b.position);
          for (
            let r = await r0.readNext(0, 0);
            r !== null;
            r = await r0.readNext(0, r.seqnum + 1)
          ) {
            got.push(`${r.seqnum}:${Buffer.from(r.data).toString()}`);
          }
          expect(got).toEqual(expected);
        }
      },
    );
  }, 30_000);

  it("appends made before its replicas tell it where its shard ends are sent once, and appear once", async () => {
    await withInProcCluster(
      { engines: 2, storages: 3, sequencers: 3, replication: 3 },
      async (c) => {
        await c.book(0, 12).append([], "first-run");
        // The replicas' answers about the shard's end are lost for a while: the engine must
        // hold its appends (not resend them at guessed local ids) until it knows.
        c.gate.dropIf = (_from, to, m) => to === "engine-0" && m.t === "shard-end";
        await c.restartEngine(0);
        const b = c.book(0, 12);
        const pending = [0, 1, 2].map((i) => b.append([], `second-run-${i}`));
        await sleep(700);
        c.gate.dropIf = null;
        const seqnums = await Promise.all(pending);
        const all = await readAll(c.book(1, 12, b.position));
        expect(all.map((x) => x.split(":")[1])).toEqual([
          "first-run",
          "second-run-0",
          "second-run-1",
          "second-run-2",
        ]);
        expect(all.slice(1).map((x) => Number(x.split(":")[0]))).toEqual(seqnums);
      },
    );
  }, 30_000);
});

describe("an engine's append stage times", () => {
  it("are reported once per ordered append, on indexing and non-indexing engines, with the metalog's delay in the ordering stage", async () => {
    const reports: Array<{ engine: number; held: number; ordering: number }> = [];
    await withInProcCluster(
      {
        engines: 2,
        storages: 3,
        sequencers: 1,
        replication: 3,
        indexReplicas: 1,
        onAppendStages: (engine, held, ordering) => reports.push({ engine, held, ordering }),
      },
      async (c) => {
        // engine-0 indexes the one physical log; engine-1 settles its appends from the metalog alone.
        for (let i = 0; i < 5; i++) {
          await c.book(0, 3).append([], `zero-${i}`);
          await c.book(1, 3).append([], `one-${i}`);
        }
        expect(reports.filter((r) => r.engine === 0)).toHaveLength(5);
        expect(reports.filter((r) => r.engine === 1)).toHaveLength(5);
        for (const r of reports) {
          expect(r.held).toBeGreaterThanOrEqual(0);
          expect(r.ordering).toBeGreaterThanOrEqual(0);
        }
        // Metalog entries held back from engine-0 for 200 ms: its append waits in "ordering".
        reports.length = 0;
        c.gate.closedFor.add("engine-0");
        const pending = c.book(0, 3).append([], "late");
        await sleep(200);
        expect(reports).toHaveLength(0);
        c.gate.open("engine-0");
        await pending;
        expect(reports).toHaveLength(1);
        expect(reports[0]!.ordering).toBeGreaterThanOrEqual(190);
        expect(reports[0]!.held).toBeLessThan(100);
      },
    );
  }, 30_000);
});

describe("a backup sequencer that restarts having lost entries it acknowledged", () => {
  it("is sent what it lacks by its primary, so the log goes on when the other backup is down", async () => {
    await withInProcCluster(
      { engines: 1, storages: 3, sequencers: 3, replication: 3 },
      async (c) => {
        const b = c.book(0, 5);
        for (let i = 0; i < 20; i++) await b.append([], `before-${i}`);
        // Its disk comes back empty, as unsynced writes ("memory" durability) would be lost
        // with the machine; it had acknowledged every entry so far.
        await c.restartSequencer(1, { wipe: true });
        // With sequencer-2 down, every commit needs sequencer-1: it must first be sent the
        // entries it lost, since it stores entries only in order.
        c.gate.down.add("sequencer-2");
        const after = b.append([], "after");
        expect(await settledWithin(after, 3000)).toBe(true);
        const seqnum = await after;
        expect(Buffer.from((await b.checkTail(0))!.data).toString()).toBe("after");
        expect(seqnum).toBeGreaterThan(0);
        const reports = await Promise.all(c.sequencers.slice(0, 2).map((s) => s.seal(c.view.term)));
        expect(reports[1]![0]!.length).toBe(reports[0]![0]!.length);
      },
    );
  }, 30_000);
});
