/**
 * A small cluster in one process over the in-process transport, with real lmdb disks:
 * one sequencer, one or more storage nodes, several engines. Messages from the sequencer
 * to chosen engines can be held back, to make an engine's index lag.
 */
import { join } from "node:path";
import { systemClock } from "../../src/clock/clock.js";
import { InProcNetwork } from "../../src/transport/inproc.js";
import type { NodeId, Transport } from "../../src/transport/transport.js";
import type { Message } from "../../src/protocol/messages.js";
import { LmdbBackend } from "../../src/storage/lmdb-backend.js";
import { StorageNode } from "../../src/storage/storage-node.js";
import { Sequencer } from "../../src/sequencer/sequencer.js";
import { Engine } from "../../src/engine/engine.js";
import { EngineLogBook } from "../../src/engine/logbook.js";
import { View } from "../../src/log/view.js";
import { parseBookId, type MetalogPosition } from "../../src/log/types.js";
import { silentLogger } from "../../src/util/logger.js";

export class Gate {
  private held: Array<() => void> = [];
  closedFor = new Set<NodeId>();
  hold(to: NodeId, send: () => void): boolean {
    if (!this.closedFor.has(to)) return false;
    this.held.push(send);
    return true;
  }
  open(to: NodeId): void {
    this.closedFor.delete(to);
    const held = this.held;
    this.held = [];
    for (const s of held) s();
  }
}

function gated(t: Transport, gate: Gate): Transport {
  return {
    self: t.self,
    send: (to: NodeId, m: Message) => {
      if (!gate.hold(to, () => t.send(to, m))) t.send(to, m);
    },
    onMessage: (h) => t.onMessage(h),
    close: () => t.close(),
  };
}

export interface InProcCluster {
  engines: Engine[];
  gate: Gate;
  book(engine: number, book: number, position?: number): EngineLogBook;
  close(): Promise<void>;
}

export async function startInProcCluster(
  dir: string,
  engineCount: number,
  storageCount = 1,
): Promise<InProcCluster> {
  const storages = Array.from({ length: storageCount }, (_, i) => `storage-${i}`);
  const engineIds = Array.from({ length: engineCount }, (_, i) => `engine-${i}`);
  const view = new View({
    term: 1,
    physicalLogs: 1,
    sequencers: [["sequencer-0"]],
    storages,
    engines: engineIds,
    replication: storageCount,
  });
  const net = new InProcNetwork();
  const gate = new Gate();
  const backends: LmdbBackend[] = [];
  const seqStore = new LmdbBackend(join(dir, "sequencer"));
  backends.push(seqStore);
  const sequencer = new Sequencer({
    transport: gated(net.connect("sequencer-0"), gate),
    clock: systemClock,
    store: seqStore,
    view,
    logger: silentLogger,
    cutIntervalMs: 1,
  });
  const storageNodes = storages.map((id) => {
    const b = new LmdbBackend(join(dir, id));
    backends.push(b);
    return new StorageNode({
      transport: net.connect(id),
      clock: systemClock,
      backend: b,
      view,
      logger: silentLogger,
      durability: "disk",
    });
  });
  const engines = engineIds.map(
    (id) =>
      new Engine({ transport: net.connect(id), clock: systemClock, view, logger: silentLogger }),
  );
  sequencer.start();
  for (const s of storageNodes) s.start();
  await Promise.all(engines.map((e) => e.start()));
  return {
    engines,
    gate,
    book: (engine, book, position = 0) =>
      new EngineLogBook(engines[engine]!, parseBookId(book), position as MetalogPosition),
    close: async () => {
      for (const e of engines) e.close();
      await sequencer.close();
      for (const s of storageNodes) await s.close();
      for (const b of backends) await b.close();
    },
  };
}
