/**
 * A small cluster in one process over the in-process transport, with real lmdb disks:
 * one sequencer, one or more storage nodes, several engines. Messages from the sequencer
 * to chosen engines can be held back, to make an engine's index lag.
 */
import { join } from "node:path";
import { tempDir } from "./tmp.js";
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
  /** Nodes whose incoming messages from sequencers are held back until `open`. */
  closedFor = new Set<NodeId>();
  /** Nodes cut off: every message to or from them is dropped. */
  down = new Set<NodeId>();
  /** Drops the messages it returns true for. */
  dropIf: ((from: NodeId, to: NodeId, m: Message) => boolean) | null = null;
  hold(from: NodeId, to: NodeId, send: () => void, m?: Message): boolean {
    if (this.down.has(from) || this.down.has(to)) return true;
    if (m !== undefined && this.dropIf?.(from, to, m) === true) return true;
    if (!from.startsWith("sequencer") || !this.closedFor.has(to)) return false;
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
      if (!gate.hold(t.self, to, () => t.send(to, m), m)) t.send(to, m);
    },
    onMessage: (h) => t.onMessage(h),
    close: () => t.close(),
  };
}

export interface InProcCluster {
  engines: Engine[];
  sequencers: Sequencer[];
  storageNodes: StorageNode[];
  gate: Gate;
  book(engine: number, book: number, position?: number): EngineLogBook;
  /** The view in force. */
  readonly view: View;
  /** Hands `next` to every role (as nodes following the coordination store would). */
  adoptView(next: View): Promise<void>;
  /** Stops engine i and starts a new one with the same id, in the same term. */
  restartEngine(i: number): Promise<void>;
  /** Stops storage node i and starts it again, on its disk or (wipe) on an empty one. */
  restartStorage(i: number, options?: { wipe?: boolean }): Promise<void>;
  /** Stops sequencer i and starts it again, on its disk or (wipe) on an empty one. */
  restartSequencer(i: number, options?: { wipe?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export interface InProcClusterOptions {
  engines: number;
  storages?: number;
  sequencers?: number;
  replication?: number;
  indexReplicas?: number;
  /** Each engine's `onAppendStages`, with the engine's number. */
  onAppendStages?: (engine: number, heldMs: number, orderingMs: number) => void;
}

export async function startInProcCluster(
  dir: string,
  options: InProcClusterOptions,
): Promise<InProcCluster> {
  const storages = Array.from({ length: options.storages ?? 1 }, (_, i) => `storage-${i}`);
  const sequencerIds = Array.from({ length: options.sequencers ?? 1 }, (_, i) => `sequencer-${i}`);
  const engineIds = Array.from({ length: options.engines }, (_, i) => `engine-${i}`);
  let view = new View({
    term: 1,
    physicalLogs: 1,
    sequencers: [sequencerIds],
    storages,
    engines: engineIds,
    replication: options.replication ?? storages.length,
    ...(options.indexReplicas === undefined ? {} : { indexReplicas: options.indexReplicas }),
  });
  const net = new InProcNetwork();
  const gate = new Gate();
  const backends: LmdbBackend[] = [];
  let wipes = 0;
  /** A node's disk: its own directory, or (wipe) a fresh empty one. */
  const openDisk = async (id: string, wipe: boolean): Promise<LmdbBackend> => {
    const disk = await LmdbBackend.open(join(dir, wipe ? `${id}-wiped-${++wipes}` : id), {
      wal: true,
    });
    backends.push(disk);
    return disk;
  };
  let boots = 0;
  const startSequencer = async (id: string, wipe: boolean): Promise<Sequencer> => {
    const store = await openDisk(id, wipe);
    const s = new Sequencer({
      transport: gated(net.connect(id), gate),
      clock: systemClock,
      store,
      view,
      logger: silentLogger,
      cutIntervalMs: 1,
      boot: ++boots,
    });
    s.start();
    return s;
  };
  const sequencers: Sequencer[] = [];
  for (const id of sequencerIds) sequencers.push(await startSequencer(id, false));
  const startStorage = async (
    id: string,
    wipe: boolean,
  ): Promise<{ node: StorageNode; backend: LmdbBackend }> => {
    const backend = await openDisk(id, wipe);
    const node = new StorageNode({
      transport: gated(net.connect(id), gate),
      clock: systemClock,
      backend,
      view,
      logger: silentLogger,
      durability: "disk",
    });
    return { node, backend };
  };
  const storageNodes: StorageNode[] = [];
  const storageBackends: LmdbBackend[] = [];
  for (const id of storages) {
    const { node, backend } = await startStorage(id, false);
    storageNodes.push(node);
    storageBackends.push(backend);
  }
  const stages = (i: number): { onAppendStages?: (h: number, o: number) => void } => {
    const report = options.onAppendStages;
    return report === undefined ? {} : { onAppendStages: (h, o) => report(i, h, o) };
  };
  const engines = engineIds.map(
    (id, i) =>
      new Engine({
        transport: gated(net.connect(id), gate),
        clock: systemClock,
        view,
        logger: silentLogger,
        ...stages(i),
      }),
  );
  for (const s of storageNodes) s.start();
  await Promise.all(engines.map((e) => e.start()));
  return {
    engines,
    sequencers,
    storageNodes,
    gate,
    get view() {
      return view;
    },
    adoptView: async (next) => {
      view = next;
      await Promise.all(sequencers.map((s) => s.setView(next)));
      for (const s of storageNodes) s.setView(next);
      for (const e of engines) e.setView(next);
    },
    book: (engine, book, position = 0) =>
      new EngineLogBook(engines[engine]!, parseBookId(book), position as MetalogPosition),
    restartEngine: async (i) => {
      engines[i]!.close();
      const e = new Engine({
        transport: gated(net.connect(engineIds[i]!), gate),
        clock: systemClock,
        view,
        logger: silentLogger,
        ...stages(i),
      });
      engines[i] = e;
      await e.start();
    },
    restartStorage: async (i, o = {}) => {
      await storageNodes[i]!.close();
      await storageBackends[i]!.close();
      backends.splice(backends.indexOf(storageBackends[i]!), 1);
      const { node, backend } = await startStorage(storages[i]!, o.wipe === true);
      storageNodes[i] = node;
      storageBackends[i] = backend;
      node.start();
    },
    restartSequencer: async (i, o = {}) => {
      await sequencers[i]!.close();
      sequencers[i] = await startSequencer(sequencerIds[i]!, o.wipe === true);
    },
    close: async () => {
      for (const e of engines) e.close();
      for (const s of sequencers) await s.close();
      for (const s of storageNodes) await s.close();
      for (const b of backends) await b.close();
    },
  };
}

/** Runs `fn` against a fresh in-process cluster in a temporary directory, then removes both. */
export async function withInProcCluster(
  options: InProcClusterOptions,
  fn: (c: InProcCluster) => Promise<void>,
): Promise<void> {
  const t = tempDir();
  const c = await startInProcCluster(t.dir, options);
  try {
    await fn(c);
  } finally {
    c.gate.down.clear();
    c.gate.dropIf = null;
    await c.close();
    t.remove();
  }
}
