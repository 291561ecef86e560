/**
 * The faults a run injects while its fault phase lasts, each drawn from the run's random
 * source: node crashes with restarts, controller failover, partitions that heal, periods of
 * message loss, duplication, delay spikes and reordering, slow disks, and nodes cut off from
 * the coordination store. At most `maxDownPerRole` nodes of a role are down at a time (one
 * by default); every node comes back when the faults end, so the cluster can recover.
 */
import type { SimCluster, SimNode, SimRole } from "./cluster.js";
import { CALM_NETWORK, type NetworkFaults } from "./network.js";
import type { SimRandom } from "./random.js";
import type { Trace } from "./trace.js";

export interface FaultOptions {
  /** Mean time between two faults, ms. */
  readonly meanGapMs: number;
  readonly crashes: boolean;
  readonly partitions: boolean;
  readonly network: boolean;
  readonly slowDisks: boolean;
  /** Nodes cut off from the coordination store while they run on (zombies to fence). */
  readonly storeCuts: boolean;
  /** Disks that fail their writes for a while (their node must stop and be replaced). */
  readonly diskErrors: boolean;
  /** Most nodes of one role down at once. */
  readonly maxDownPerRole: number;
}

export const ALL_FAULTS: FaultOptions = {
  meanGapMs: 1_500,
  crashes: true,
  partitions: true,
  network: true,
  slowDisks: true,
  storeCuts: true,
  diskErrors: true,
  maxDownPerRole: 1,
};

export const NO_FAULTS: FaultOptions = {
  meanGapMs: 1_500,
  crashes: false,
  partitions: false,
  network: false,
  slowDisks: false,
  storeCuts: false,
  diskErrors: false,
  maxDownPerRole: 1,
};

/** A crashed node stays down for a time in this range, ms (below and above the 3 s lease). */
export const DOWNTIME_MS: readonly [number, number] = [300, 8_000];
export const PARTITION_MS: readonly [number, number] = [200, 5_000];
export const NETWORK_CHAOS_MS: readonly [number, number] = [500, 5_000];
export const SLOW_DISK_MS: readonly [number, number] = [500, 5_000];
/** A cut from the store lasts this long, ms (below and above the 3 s leases). */
export const STORE_CUT_MS: readonly [number, number] = [500, 8_000];
/** A disk fails its writes for this long, ms. */
export const DISK_ERROR_MS: readonly [number, number] = [200, 3_000];

export class FaultInjector {
  private active = false;
  private readonly pendingRestarts = new Set<SimNode>();
  counts = { crashes: 0, partitions: 0, network: 0, slowDisks: 0, storeCuts: 0, diskErrors: 0 };

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SimRandom,
    private readonly trace: Trace,
    private readonly o: FaultOptions,
  ) {}

  private get kinds(): Array<() => void> {
    const k: Array<() => void> = [];
    if (this.o.crashes)
      k.push(
        () => this.crash(),
        () => this.crash(),
      );
    if (this.o.partitions) k.push(() => this.partition());
    if (this.o.network) k.push(() => this.chaos());
    if (this.o.slowDisks) k.push(() => this.slowDisk());
    if (this.o.storeCuts) k.push(() => this.storeCut());
    if (this.o.diskErrors) k.push(() => this.diskError());
    return k;
  }

  start(): void {
    if (this.kinds.length === 0) return;
    this.active = true;
    this.next();
  }

  private next(): void {
    this.cluster.scheduler.setTimer(this.random.exponential(this.o.meanGapMs), () => {
      if (!this.active) return;
      this.random.pick(this.kinds)();
      this.next();
    });
  }

  private later(ms: number, fn: () => void): void {
    this.cluster.scheduler.setTimer(ms, () => {
      if (this.active) fn();
    });
  }

  private crash(): void {
    const c = this.cluster;
    const all = [...c.nodes.values()];
    const down = new Map<SimRole, number>();
    for (const n of all) if (!n.up) down.set(n.kind, (down.get(n.kind) ?? 0) + 1);
    const full = (kind: SimRole): boolean =>
      (down.get(kind) ?? 0) >= (kind === "controller" ? 1 : this.o.maxDownPerRole);
    const candidates = all.filter((n) => n.up && !full(n.kind));
    if (candidates.length === 0) return;
    // Now and then, the controller that leads (a failover).
    const leader = c.leader();
    const node =
      leader !== null && !full("controller") && this.random.chance(0.2)
        ? leader
        : this.random.pick(candidates);
    this.counts.crashes++;
    // With "memory" durability, a node holds acknowledged data in memory only: losing power
    // on more nodes at once than the replication tolerates loses it by design. Power fails
    // then only on a storage node while every other node is up; otherwise the process is
    // killed (the operating system keeps what it wrote). Sequencers are not cut from power
    // in this mode: a sequencer restarted after a power loss may count itself toward a
    // majority it no longer belongs to (docs/simulation.md, limits). With "disk"
    // durability, power may fail anywhere.
    const powerLoss =
      c.config.durability === "disk" ||
      (node.kind === "storage" && down.size === 0 && this.random.chance(0.5));
    c.crash(node, powerLoss ? "power loss" : "killed");
    this.pendingRestarts.add(node);
    this.later(this.random.between(...DOWNTIME_MS), () => {
      this.pendingRestarts.delete(node);
      this.trace.add("faults", `restart ${node.id}`);
      c.startNode(node);
    });
  }

  private partition(): void {
    const ids = [...this.cluster.nodes.values()]
      .filter((n) => n.kind !== "controller")
      .map((n) => n.id);
    let side: string[];
    if (this.random.chance(0.5)) {
      side = [this.random.pick(ids)];
    } else {
      side = ids.filter(() => this.random.chance(0.5));
      if (side.length === 0 || side.length === ids.length) return;
    }
    const rest = ids.filter((id) => !side.includes(id));
    this.counts.partitions++;
    this.trace.add("faults", "partition", { side });
    this.cluster.network.partition(side, rest);
    this.later(this.random.between(...PARTITION_MS), () => {
      this.trace.add("faults", "partition healed");
      this.cluster.network.heal();
    });
  }

  private chaos(): void {
    const f: NetworkFaults = {
      ...CALM_NETWORK,
      lossRate: this.random.between(0, 0.05),
      duplicateRate: this.random.between(0, 0.03),
      spikeRate: this.random.between(0, 0.05),
      reorder: this.random.chance(0.5),
    };
    this.counts.network++;
    this.trace.add("faults", "network chaos", f);
    this.cluster.network.faults = f;
    this.later(this.random.between(...NETWORK_CHAOS_MS), () => {
      this.trace.add("faults", "network calm");
      this.cluster.network.faults = CALM_NETWORK;
    });
  }

  private slowDisk(): void {
    const withDisks = [...this.cluster.nodes.values()].filter(
      (n) => n.disk !== null && !n.slowDisk,
    );
    if (withDisks.length === 0) return;
    const node = this.random.pick(withDisks);
    this.counts.slowDisks++;
    this.trace.add("faults", `slow disk on ${node.id}`);
    node.slowDisk = true;
    this.later(this.random.between(...SLOW_DISK_MS), () => {
      node.slowDisk = false;
      this.trace.add("faults", `disk of ${node.id} normal again`);
    });
  }

  private diskError(): void {
    // One failing disk at a time: its node stops, and the others must carry on.
    const all = [...this.cluster.nodes.values()];
    if (all.some((n) => n.disk?.failing === true)) return;
    const withDisks = all.filter((n) => n.disk !== null && n.up);
    if (withDisks.length === 0) return;
    const node = this.random.pick(withDisks);
    const disk = node.disk!;
    this.counts.diskErrors++;
    this.trace.add("faults", `disk of ${node.id} fails its writes`);
    disk.failing = true;
    this.later(this.random.between(...DISK_ERROR_MS), () => {
      disk.failing = false;
      this.trace.add("faults", `disk of ${node.id} works again`);
    });
  }

  private storeCut(): void {
    const up = [...this.cluster.nodes.values()].filter(
      (n) => n.up && n.store !== null && !n.store.isCutOff,
    );
    if (up.length === 0) return;
    const node = this.random.pick(up);
    const store = node.store!;
    this.counts.storeCuts++;
    this.trace.add("faults", `${node.id} cut off from the store`);
    store.cutOff();
    this.later(this.random.between(...STORE_CUT_MS), () => {
      this.trace.add("faults", `${node.id} reaches the store again`);
      store.reconnect();
    });
  }

  /** Ends the fault phase: heals the network, restores disks, restarts every crashed node. */
  stop(): void {
    this.active = false;
    const c = this.cluster;
    c.network.heal();
    c.network.faults = CALM_NETWORK;
    for (const n of c.nodes.values()) {
      n.slowDisk = false;
      if (n.disk !== null) n.disk.failing = false;
      n.store?.reconnect();
      if (!n.up) c.startNode(n);
    }
    this.pendingRestarts.clear();
    this.trace.add("faults", "faults end: network healed, disks normal, every node up");
  }
}
