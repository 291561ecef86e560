/**
 * A whole cluster in one process, on simulated time, network and disks: sequencers, storage
 * nodes and engines as in `cluster/node.ts` (each following the view through the
 * coordination store and registered in it with a lease), plus controllers that elect a
 * leader, seal terms and publish views. Nodes crash (losing what their disks had not made
 * durable) and restart on the same disk.
 */
import { parseClusterConfig, viewOf, type ClusterConfig, type Role } from "../cluster/config.js";
import { ViewFollower, type FollowingRole } from "../cluster/view-follower.js";
import { FileStore } from "../coord/file-store.js";
import { valueText } from "../coord/store.js";
import { Controller } from "../controller/controller.js";
import { registerNode } from "../controller/membership.js";
import { storeSealer } from "../controller/sealer.js";
import { decodeViewRecord, viewOfRecord, VIEW_KEY } from "../controller/view-record.js";
import { Engine } from "../engine/engine.js";
import type { View } from "../log/view.js";
import { Sequencer } from "../sequencer/sequencer.js";
import { StorageNode, type Durability } from "../storage/storage-node.js";
import type { NodeId } from "../transport/transport.js";
import { NodeClock, type SimScheduler } from "./clock.js";
import { SimDisk } from "./disk.js";
import type { SimNetwork } from "./network.js";
import type { SimRandom } from "./random.js";
import { SimStoreClient } from "./store.js";
import type { Trace } from "./trace.js";

export interface SimTopology {
  readonly sequencers: number;
  readonly sequencersPerLog: number;
  readonly physicalLogs: number;
  readonly storages: number;
  readonly replication: number;
  readonly engines: number;
  readonly indexReplicas: number;
  readonly controllers: number;
  readonly durability: Durability;
}

/** Four sequencers for two logs of three, five storage nodes for three replicas, three engines. */
export const SIM_TOPOLOGY: SimTopology = {
  sequencers: 4,
  sequencersPerLog: 3,
  physicalLogs: 2,
  storages: 5,
  replication: 3,
  engines: 3,
  indexReplicas: 2,
  controllers: 2,
  durability: "disk",
};

/** Longest an engine without a place in the view waits for one before it gives up. */
export const SIM_PLACEMENT_WAIT_MS = 120_000;
/** A node that exited because its disk failed is started again after this, ms. */
export const FAIL_STOP_RESTART_MS = 1_000;
/** How often a waiting engine looks for its place. */
const PLACEMENT_POLL_MS = 100;

export type SimRole = Role | "controller";

/** Disk latency of a node: usual, or slow (a failing disk). */
export interface DiskLatency {
  readonly normalMs: readonly [number, number];
  readonly slowMs: readonly [number, number];
}

export const DISK_LATENCY: DiskLatency = { normalMs: [0.05, 1], slowMs: [20, 200] };

export class SimNode {
  up = false;
  /** Starts so far (1 after the first). */
  incarnation = 0;
  slowDisk = false;
  clock: NodeClock | null = null;
  store: SimStoreClient | null = null;
  role: FollowingRole | null = null;
  engine: Engine | null = null;
  controller: Controller | null = null;
  /** The role is running (start finished); an engine may still be catching up. */
  ready = false;

  constructor(
    readonly id: NodeId,
    readonly kind: SimRole,
    readonly disk: SimDisk | null,
  ) {}
}

export class SimCluster {
  readonly config: ClusterConfig;
  readonly nodes = new Map<NodeId, SimNode>();
  /** Views published so far, by term (from the store). */
  readonly views = new Map<number, View>();
  private readonly storeName: string;
  private sharedStore: FileStore | null = null;
  /** Every store client opened, to close at the end. */
  private readonly innerStores: FileStore[] = [];
  private static runs = 0;

  constructor(
    readonly scheduler: SimScheduler,
    readonly random: SimRandom,
    readonly network: SimNetwork,
    readonly trace: Trace,
    readonly topology: SimTopology = SIM_TOPOLOGY,
    private readonly diskLatency: DiskLatency = DISK_LATENCY,
  ) {
    const t = topology;
    const nodes: Array<{ id: string; role: Role; host: string; port: number }> = [];
    let port = 1;
    const add = (role: Role, prefix: string, n: number): void => {
      for (let i = 0; i < n; i++)
        nodes.push({ id: `${prefix}-${i}`, role, host: "sim", port: port++ });
    };
    add("sequencer", "seq", t.sequencers);
    add("storage", "sto", t.storages);
    add("engine", "eng", t.engines);
    this.config = parseClusterConfig({
      physicalLogs: t.physicalLogs,
      sequencersPerLog: t.sequencersPerLog,
      replication: t.replication,
      indexReplicas: t.indexReplicas,
      durability: t.durability,
      cutIntervalMs: 0,
      nodes,
    });
    for (const n of nodes) {
      const disk =
        n.role === "engine"
          ? null
          : new SimDisk({
              clock: scheduler,
              latencyMs: () => this.latency(n.id),
              name: n.id,
              // As on lmdb: synced only with "disk" durability.
              sync: t.durability === "disk",
            });
      this.nodes.set(n.id, new SimNode(n.id, n.role, disk));
    }
    for (let i = 0; i < t.controllers; i++) {
      const id = `ctl-${i}`;
      this.nodes.set(id, new SimNode(id, "controller", null));
    }
    this.storeName = `sim-${++SimCluster.runs}`;
  }

  private latency(id: NodeId): number {
    const node = this.nodes.get(id)!;
    const [lo, hi] = node.slowDisk ? this.diskLatency.slowMs : this.diskLatency.normalMs;
    return this.random.between(lo, hi);
  }

  /** Opens the store and starts every node; the first view comes from the config. */
  async start(): Promise<void> {
    this.sharedStore = await FileStore.openInMemory({
      name: this.storeName,
      clock: this.scheduler,
    });
    await this.sharedStore.watch(VIEW_KEY, (e) => {
      if (e.type !== "put") return;
      const view = viewOfRecord(decodeViewRecord(valueText(e.kv)));
      this.views.set(view.term, view);
      this.trace.add("store", `view of term ${view.term} published`, {
        sequencers: view.config.sequencers,
        storages: view.config.storages,
        engines: view.config.engines,
        starts: view.config.starts,
      });
    });
    this.views.set(1, viewOf(this.config, 1));
    for (const node of this.nodes.values()) this.startNode(node);
  }

  /** The latest view published. */
  get view(): View {
    return this.views.get(Math.max(...this.views.keys()))!;
  }

  engineNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.kind === "engine");
  }

  /** Starts (or restarts) a node; its start finishes in simulated time. */
  startNode(node: SimNode): void {
    if (node.up) return;
    node.up = true;
    node.ready = false;
    node.incarnation++;
    const incarnation = node.incarnation;
    const clock = new NodeClock(this.scheduler);
    node.clock = clock;
    node.disk?.reopen();
    const logger = this.trace.logger(node.id, {}, () => !clock.isDead);
    void (async () => {
      const inner = await FileStore.openInMemory({ name: this.storeName, clock: this.scheduler });
      this.innerStores.push(inner);
      const store = new SimStoreClient(inner, clock);
      node.store = store;
      if (node.kind === "controller") {
        const c = new Controller({
          store,
          id: node.id,
          config: this.config,
          sealer: storeSealer(store, { clock, logger }),
          clock,
          logger,
        });
        node.controller = c;
        await c.start();
        node.ready = true;
        return;
      }
      const follower = await ViewFollower.start({ store, node: node.id, logger, clock });
      let view = follower.view ?? viewOf(this.config, 1);
      await registerNode(
        store,
        {
          id: node.id,
          role: node.kind,
          host: "sim",
          port: 0,
          pid: node.incarnation,
          startedAt: Math.round(this.scheduler.now()),
          term: view.term,
        },
        { clock, logger },
      );
      if (node.kind === "engine" && !view.config.engines.includes(node.id)) {
        logger.warn({ term: view.term }, "engine has no place in the view yet; waiting for one");
        view = await this.waitForPlacement(follower, node.id, clock);
      }
      if (clock.isDead) return;
      const transport = this.network.connect(node.id);
      let role: FollowingRole;
      switch (node.kind) {
        case "sequencer": {
          const s = new Sequencer({
            transport,
            clock,
            store: node.disk!,
            view,
            logger,
            cutIntervalMs: this.config.cutIntervalMs,
            boot: incarnation,
            onFatal: () => this.failStop(node, incarnation),
          });
          s.start();
          role = s;
          break;
        }
        case "storage": {
          const s = new StorageNode({
            transport,
            clock,
            backend: node.disk!,
            view,
            logger,
            durability: this.config.durability,
            onFatal: () => this.failStop(node, incarnation),
          });
          s.start();
          role = s;
          break;
        }
        case "engine": {
          const e = new Engine({ transport, clock, view, logger });
          node.engine = e;
          role = e;
          e.start().catch((err: unknown) => logger.warn({ err }, "engine is still catching up"));
          break;
        }
        case "gateway":
          throw new Error("the simulator runs no gateways");
      }
      node.role = role;
      follower.attach(role);
      node.ready = true;
      this.trace.add(node.id, `started (incarnation ${node.incarnation}) in term ${view.term}`);
    })().catch((err: unknown) => {
      // As the node runner does: a node that cannot start exits (and is started again).
      if (clock.isDead) return;
      this.trace.add(node.id, "start failed", { err });
      this.failStop(node, incarnation, "it could not start");
    });
  }

  private waitForPlacement(follower: ViewFollower, id: NodeId, clock: NodeClock): Promise<View> {
    const started = clock.now();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const v = follower.view;
        if (v !== null && v.config.engines.includes(id)) resolve(v);
        else if (clock.now() - started >= SIM_PLACEMENT_WAIT_MS)
          reject(new Error(`no place in a view within ${SIM_PLACEMENT_WAIT_MS} ms`));
        else clock.setTimer(PLACEMENT_POLL_MS, check);
      };
      check();
    });
  }

  /**
   * A role stopped because its disk failed, or the node could not start: it exits (as
   * `cluster/node.ts` does) and a supervisor starts it again `FAIL_STOP_RESTART_MS` later.
   */
  private failStop(node: SimNode, incarnation: number, why = "its disk failed"): void {
    if (!node.up || node.incarnation !== incarnation) return;
    this.trace.add(node.id, `exits: ${why}`);
    this.crash(node, "killed");
    this.scheduler.setTimer(FAIL_STOP_RESTART_MS, () => {
      if (node.incarnation !== incarnation || node.up) return;
      this.trace.add(node.id, "restarted by its supervisor");
      this.startNode(node);
    });
  }

  /** The node loses power: timers, connections, leases and undurable writes are gone. */
  crash(node: SimNode, how: "power loss" | "killed" = "power loss"): void {
    if (!node.up) return;
    node.up = false;
    node.ready = false;
    node.clock?.crash();
    node.store?.crash();
    this.network.disconnect(node.id);
    if (how === "killed") node.disk?.kill();
    else node.disk?.crash();
    node.role = null;
    node.engine = null;
    node.controller = null;
    this.trace.add(node.id, how === "killed" ? "killed" : "crashed (power loss)");
  }

  /**
   * Stops every node and closes every store client, so that the shared in-memory store is
   * released. Needs the scheduler to run while it is pending (see run.ts).
   */
  async dispose(): Promise<void> {
    const inner = [...this.innerStores];
    this.innerStores.length = 0;
    for (const n of this.nodes.values()) {
      if (n.up) {
        n.up = false;
        n.clock?.crash();
        n.store?.crash();
        this.network.disconnect(n.id);
      }
    }
    await Promise.allSettled(inner.map((s) => s.close()));
    await this.sharedStore?.close();
    this.sharedStore = null;
  }

  /** The controller that leads now, if any. */
  leader(): SimNode | null {
    for (const n of this.nodes.values()) if (n.controller?.isLeading() === true) return n;
    return null;
  }
}
