/**
 * A storage node on its own, over the in-process network with a simulated disk: what it
 * does with the copy of the metalog it keeps on disk when it starts.
 */
import { describe, expect, it } from "vitest";
import { InProcNetwork } from "../src/transport/inproc.js";
import { StorageNode } from "../src/storage/storage-node.js";
import { SimDisk } from "../src/sim/disk.js";
import type { MetalogEntry } from "../src/log/metalog.js";
import type { LogId } from "../src/log/types.js";
import type { Message } from "../src/protocol/messages.js";
import { silentLogger } from "../src/util/logger.js";
import { ManualClock } from "./helpers/manual-clock.js";
import { oneOfEachView } from "./helpers/views.js";

function entry(position: number): MetalogEntry {
  // One shard of term 1 (65536), one record per entry.
  return {
    log: 0 as LogId,
    term: 1,
    position,
    startSeqnum: position,
    cut: [[65536, position + 1]],
  };
}

describe("a storage node starting on its disk", () => {
  it("keeps the metalog copy up to a gap and fetches the rest from the sequencers, instead of failing to start", async () => {
    const clock = new ManualClock();
    const disk = new SimDisk({ clock, latencyMs: () => 0 });
    // A write of entries 3 and 4 failed; the ones after it did not.
    const written = disk.copyMetalog([0, 1, 2, 5, 6].map(entry));
    clock.advance(1);
    await written;
    const net = new InProcNetwork();
    const fetches: Message[] = [];
    net.connect("seq-0").onMessage((_from, m) => fetches.push(m));
    const view = oneOfEachView();
    const node = new StorageNode({
      transport: net.connect("sto-0"),
      clock,
      backend: disk,
      view,
      logger: silentLogger,
    });
    expect(() => node.start()).not.toThrow();
    await new Promise((r) => setImmediate(r));
    expect(fetches).toContainEqual({ t: "metalog-fetch", log: 0, from: 3 });
    await node.close();
  });
});
