/**
 * Sealing and moving to a new term, role by role, on the in-process transport with real
 * lmdb disks: the sequencers seal term N and report their metalog lengths, the next term
 * begins at the longest length a majority reported, and every role is handed the new view
 * while appends keep coming. Nodes are "killed" by cutting them off the network.
 */
import { describe, expect, it } from "vitest";
import { withInProcCluster, type InProcCluster } from "./helpers/inproc-cluster.js";
import type { ViewConfig } from "../src/log/view.js";
import { eventually, sleep } from "./helpers/async.js";
import { checkLog, startLoad, type Load } from "./helpers/inproc-load.js";

/** Cuts a node off the network for good. */
function kill(c: InProcCluster, dead: Set<string>, id: string): void {
  c.gate.down.add(id);
  dead.add(id);
}

/** Seals the current term on the sequencers that answer and returns the next view's starts. */
async function seal(c: InProcCluster, dead: ReadonlySet<string>): Promise<number[]> {
  const term = c.view.term;
  const reports = await Promise.all(
    c.sequencers.filter((s) => !dead.has(s.id)).map((s) => s.seal(term)),
  );
  const group = c.view.config.sequencers[0]!;
  const lengths = reports
    .flat()
    .filter((r) => r.log === 0)
    .map((r) => r.length);
  expect(lengths.length).toBeGreaterThanOrEqual(Math.floor(group.length / 2) + 1);
  return [Math.max(...lengths)];
}

/** Moves the cluster to the next term without `dead`. */
async function reconfigure(c: InProcCluster, dead: ReadonlySet<string>): Promise<void> {
  const starts = await seal(c, dead);
  const cur = c.view.config;
  const next: ViewConfig = {
    ...cur,
    term: cur.term + 1,
    sequencers: cur.sequencers.map((g) => g.filter((id) => !dead.has(id))),
    storages: cur.storages.filter((id) => !dead.has(id)),
    engines: cur.engines.filter((id) => !dead.has(id)),
    replication: Math.min(cur.replication, cur.storages.filter((id) => !dead.has(id)).length),
    starts,
  };
  await c.adoptView(c.view.successor(next));
}

/**
 * After a reconfiguration: more appends are acknowledged, none failed, and the log holds
 * every acknowledged one (then the load is stopped).
 */
async function appendsGoOnAndNothingIsLost(
  c: InProcCluster,
  l: Load,
  dead: ReadonlySet<string>,
): Promise<void> {
  const before = l.acked.length;
  await sleep(300);
  await l.stop();
  expect(l.acked.length).toBeGreaterThan(before);
  expect(l.errors).toEqual([]);
  await checkLog(c, l.acked, dead);
}

describe("sealing and new terms (in-process cluster, real disks)", () => {
  it("a storage node cut off: the term is sealed, term 2 goes on without it, and nothing acknowledged is lost", async () => {
    await withInProcCluster(
      { engines: 2, storages: 4, sequencers: 3, replication: 3 },
      async (c) => {
        const dead = new Set<string>();
        const l = startLoad(c, { dead });
        await sleep(200);
        kill(c, dead, "storage-0");
        await sleep(100);
        await reconfigure(c, dead);
        await appendsGoOnAndNothingIsLost(c, l, dead);
      },
    );
  });

  it("three reconfigurations in a row (a storage node, the primary sequencer, an engine) under load", async () => {
    await withInProcCluster(
      { engines: 3, storages: 4, sequencers: 3, replication: 3 },
      async (c) => {
        const dead = new Set<string>();
        const l = startLoad(c, { dead });
        for (const victim of ["storage-1", "sequencer-0", "engine-2"]) {
          await sleep(150);
          kill(c, dead, victim);
          await reconfigure(c, dead);
          const before = l.acked.length;
          await eventually(
            `appends go on after ${victim} is gone`,
            () => l.acked.length > before,
            5000,
          );
        }
        expect(c.view.term).toBe(4);
        await l.stop();
        await checkLog(c, l.acked, dead);
      },
    );
  });

  it("entries only the old primary held when the term was sealed are dropped, and their appends go to the new term", async () => {
    await withInProcCluster(
      { engines: 2, storages: 3, sequencers: 3, replication: 3 },
      async (c) => {
        const dead = new Set<string>();
        const l = startLoad(c, { dead });
        await sleep(150);
        // The backups stop hearing from the primary: what it cuts now is never committed.
        c.gate.dropIf = (from, to) => from === "sequencer-0" && to.startsWith("sequencer");
        await sleep(100);
        kill(c, dead, "sequencer-0");
        await reconfigure(c, dead);
        c.gate.dropIf = null;
        await appendsGoOnAndNothingIsLost(c, l, dead);
      },
    );
  });
});
