/**
 * Membership with leases and the controller, on the file-backed coordination store in a
 * temporary directory and a manual clock: lease expiry, failure detection, leader election
 * with takeover, the initial view, and publication gated by the sealer.
 */
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { SEAL_REQUEST_KEY, sealReplyKey } from "../src/cluster/view-follower.js";
import { storeSealer } from "../src/controller/sealer.js";
import type { ViewConfig } from "../src/log/view.js";
import { FileStore, valueText, type CoordStore } from "../src/coord/index.js";
import { parseClusterConfig, viewOf, type ClusterConfig } from "../src/cluster/config.js";
import {
  MembershipWatcher,
  NODE_LEASE_TTL_MS,
  memberKey,
  registerNode,
  type MemberRecord,
  type NodeRegistration,
} from "../src/controller/membership.js";
import {
  Controller,
  REQUESTS_PREFIX,
  SealingNotImplementedError,
  type ControllerEvent,
  type Sealer,
} from "../src/controller/controller.js";
import { VIEW_KEY, decodeViewRecord } from "../src/controller/view-record.js";
import { formatClusterStatus, readClusterStatus } from "../src/controller/status.js";
import { BOKI_BIN } from "./helpers/dev-process.js";
import { ManualClock } from "./helpers/manual-clock.js";
import { tempDir } from "./helpers/tmp.js";

async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** Moves the clock in steps, letting each step's store writes and watch events go out. */
async function elapse(clock: ManualClock, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 50) {
    clock.advance(Math.min(50, left));
    await turns(2);
  }
}

async function until(clock: ManualClock, what: () => boolean, msMax = 20_000): Promise<void> {
  for (let t = 0; t <= msMax; t += 50) {
    if (what()) return;
    await elapse(clock, 50);
  }
  throw new Error("condition not reached in time");
}

function clusterConfig(): ClusterConfig {
  const nodes = [
    ...[0, 1, 2].map((i) => ({ id: `sequencer-${i}`, role: "sequencer", port: 7100 + i })),
    ...[0, 1, 2].map((i) => ({ id: `storage-${i}`, role: "storage", port: 7110 + i })),
    ...[0, 1].map((i) => ({ id: `engine-${i}`, role: "engine", port: 7120 + i })),
  ];
  return parseClusterConfig({ replication: 2, nodes }, "test config", "/tmp");
}

function record(config: ClusterConfig, id: string): MemberRecord {
  const n = config.nodes.find((x) => x.id === id)!;
  return {
    id,
    role: n.role,
    host: n.host,
    port: n.port,
    pid: process.pid,
    startedAt: Date.now(),
    term: 1,
  };
}

describe("membership and the controller", () => {
  let cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups = [];
  });

  function setup() {
    const dir = tempDir("boki-controller-");
    const clock = new ManualClock();
    const stores: CoordStore[] = [];
    const open = async () => {
      const s = await FileStore.open({ dir: dir.dir, clock });
      stores.push(s);
      return s;
    };
    cleanups.push(async () => {
      for (const s of stores) await s.close();
      dir.remove();
    });
    return { clock, open, dir: dir.dir };
  }

  async function registerAll(store: CoordStore, config: ClusterConfig, clock: ManualClock) {
    const regs = new Map<string, NodeRegistration>();
    for (const n of config.nodes)
      regs.set(n.id, await registerNode(store, record(config, n.id), { clock }));
    return regs;
  }

  function startController(
    store: CoordStore,
    id: string,
    config: ClusterConfig,
    clock: ManualClock,
    sealer?: Sealer,
  ) {
    const events: ControllerEvent[] = [];
    const c = new Controller({
      store,
      id,
      config,
      clock,
      ...(sealer === undefined ? {} : { sealer }),
      onEvent: (e) => events.push(e),
    });
    cleanups.push(() => c.close());
    return { c, events, started: c.start() };
  }

  it("a node's key disappears when its lease expires, and the watcher reports the failure", async () => {
    const { clock, open } = setup();
    const nodes = await open();
    const watcherStore = await open();
    const failures: string[] = [];
    const watcher = await MembershipWatcher.start(watcherStore, {
      clock,
      onFailure: (m) => failures.push(m.id),
    });
    cleanups.push(() => watcher.close());
    const config = clusterConfig();
    const a = await registerNode(nodes, record(config, "storage-0"), { clock });
    const b = await registerNode(nodes, record(config, "engine-0"), { clock });
    await turns();
    expect([...watcher.members().keys()].sort()).toEqual(["engine-0", "storage-0"]);
    // Kept alive, the keys stay for many TTLs.
    await elapse(clock, 3 * NODE_LEASE_TTL_MS);
    expect(await nodes.get(memberKey("storage-0"))).not.toBeNull();
    a.abandon();
    await elapse(clock, NODE_LEASE_TTL_MS + 500);
    expect(await nodes.get(memberKey("storage-0"))).toBeNull();
    expect(failures).toEqual(["storage-0"]);
    expect([...watcher.members().keys()]).toEqual(["engine-0"]);
    await b.close();
    await turns();
    expect(failures).toEqual(["storage-0", "engine-0"]);
  });

  it("the controller publishes term 1 from the config once; a later leader keeps it", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    const s1 = await open();
    const first = startController(s1, "controller-a", config, clock);
    await first.started;
    await until(clock, () => first.c.isLeading() && first.c.currentView !== null);
    const kv = (await s1.get(VIEW_KEY))!;
    const rec = decodeViewRecord(valueText(kv));
    expect(rec.view.term).toBe(1);
    expect(rec.view.engines).toEqual(["engine-0", "engine-1"]);
    await first.c.close();
    const second = startController(await open(), "controller-b", config, clock);
    await second.started;
    await until(clock, () => second.c.isLeading());
    expect((await s1.get(VIEW_KEY))!.revision).toBe(kv.revision);
    expect(second.c.currentView?.term).toBe(1);
    expect(second.events.filter((e) => e.type === "view-published")).toEqual([]);
  });

  it("a failed node leads to a planned view that is not published while sealing is not built", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    const regs = await registerAll(await open(), config, clock);
    const ctl = startController(await open(), "controller-a", config, clock);
    await ctl.started;
    await until(clock, () => ctl.c.isLeading() && ctl.c.currentView !== null);
    regs.get("storage-1")!.abandon();
    await until(clock, () => ctl.events.some((e) => e.type === "sealing-failed"));
    expect(ctl.events).toContainEqual({ type: "node-failed", id: "storage-1" });
    const failed = ctl.events.find((e) => e.type === "sealing-failed");
    expect(failed?.type === "sealing-failed" && failed.error).toBeInstanceOf(
      SealingNotImplementedError,
    );
    const st = ctl.c.status();
    expect(st.failed).toEqual(["storage-1"]);
    expect(st.pendingPlan?.term).toBe(2);
    expect(st.pendingPlan?.storages).toEqual(["storage-0", "storage-2"]);
    expect(st.lastError).toMatch(/sealing is not implemented yet/);
    const store = await open();
    expect(decodeViewRecord(valueText((await store.get(VIEW_KEY))!)).view.term).toBe(1);
  });

  it("with a sealer that succeeds, a failed node's view is published as term 2 without it", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    const regs = await registerAll(await open(), config, clock);
    const sealed: Array<[number, number]> = [];
    const ctl = startController(await open(), "controller-a", config, clock, (o, n) => {
      sealed.push([o.term, n.term]);
      return Promise.resolve();
    });
    await ctl.started;
    await until(clock, () => ctl.c.isLeading() && ctl.c.currentView !== null);
    regs.get("sequencer-0")!.abandon();
    await until(clock, () => ctl.c.currentView?.term === 2);
    expect(sealed).toEqual([[1, 2]]);
    const view = decodeViewRecord(valueText((await (await open()).get(VIEW_KEY))!)).view;
    expect(view.term).toBe(2);
    expect(view.sequencers[0]).toEqual(["sequencer-1", "sequencer-2"]);
    expect(ctl.c.status().failed).toEqual([]);
    // A second failure: term 3.
    regs.get("engine-1")!.abandon();
    await until(clock, () => ctl.c.currentView?.term === 3);
    expect(ctl.c.currentView?.engines).toEqual(["engine-0"]);
  });

  it("operators' requests in the store (boki reconfigure, boki drain) give a new term, and are consumed", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    await registerAll(await open(), config, clock);
    const ctl = startController(await open(), "controller-a", config, clock, () =>
      Promise.resolve(),
    );
    await ctl.started;
    await until(clock, () => ctl.c.isLeading() && ctl.c.currentView !== null);
    const store = await open();
    await store.put(`${REQUESTS_PREFIX}1`, JSON.stringify({ kind: "reconfigure" }));
    await until(clock, () => ctl.c.currentView?.term === 2);
    expect(ctl.c.currentView?.engines).toEqual(["engine-0", "engine-1"]);
    await store.put(`${REQUESTS_PREFIX}2`, JSON.stringify({ kind: "drain", node: "engine-1" }));
    await until(clock, () => ctl.c.currentView?.term === 3);
    expect(ctl.c.currentView?.engines).toEqual(["engine-0"]);
    // The drained engine still runs, but a later term does not take it back.
    await store.put(`${REQUESTS_PREFIX}3`, JSON.stringify({ kind: "reconfigure" }));
    await until(clock, () => ctl.c.currentView?.term === 4);
    expect(ctl.c.currentView?.engines).toEqual(["engine-0"]);
    expect((await store.list(REQUESTS_PREFIX)).entries).toEqual([]);
  });

  it("a new leader publishes the next view when its predecessor died between sealing the term and publishing", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    await registerAll(await open(), config, clock);
    const a = startController(await open(), "controller-a", config, clock, () => Promise.resolve());
    await a.started;
    await until(clock, () => a.c.isLeading() && a.c.currentView?.term === 1);
    // The leader asked the sequencers to seal term 1, then died before publishing term 2:
    // the sequencers stay sealed, and nothing failed that would call for a new term.
    const store = await open();
    await store.put(SEAL_REQUEST_KEY, JSON.stringify({ term: 1 }));
    a.c.abandon();
    const sealed: number[] = [];
    const b = startController(await open(), "controller-b", config, clock, (o) => {
      sealed.push(o.term);
      return Promise.resolve();
    });
    await b.started;
    await until(clock, () => b.c.isLeading() && b.c.currentView?.term === 2);
    expect(sealed).toEqual([1]);
    expect(b.c.currentView?.engines).toEqual(["engine-0", "engine-1"]);
    expect(decodeViewRecord(valueText((await store.get(VIEW_KEY))!)).view.term).toBe(2);
  });

  it("two controllers: one leads, the standby takes over when the leader's lease is lost, and no conflicting view is published", async () => {
    const { clock, open } = setup();
    const config = clusterConfig();
    const regs = await registerAll(await open(), config, clock);
    let releaseA!: () => void;
    const aSealing = new Promise<void>((r) => (releaseA = r));
    let aCalled = false;
    const a = startController(await open(), "controller-a", config, clock, async () => {
      aCalled = true;
      await aSealing;
    });
    await a.started;
    await until(clock, () => a.c.isLeading() && a.c.currentView !== null);
    const b = startController(await open(), "controller-b", config, clock, () => Promise.resolve());
    await b.started;
    await elapse(clock, 1_000);
    expect(b.c.isLeading()).toBe(false);
    // A node fails; the leader's sealing hangs, then the leader dies.
    regs.get("engine-0")!.abandon();
    await until(clock, () => aCalled);
    a.c.abandon();
    await until(clock, () => b.c.isLeading() && b.c.currentView?.term === 2);
    const store = await open();
    const published = (await store.get(VIEW_KEY))!;
    expect(decodeViewRecord(valueText(published)).view.engines).toEqual(["engine-1"]);
    // The deposed leader's sealing completes late: it publishes nothing.
    releaseA();
    await elapse(clock, 2_000);
    expect((await store.get(VIEW_KEY))!.revision).toBe(published.revision);
    expect(a.events.filter((e) => e.type === "view-published" && e.view.term === 2)).toEqual([]);
  });
});

describe("sealing through the store", () => {
  it("a term never ends before it began, even when its sequencers lack entries earlier terms committed", async () => {
    const clock = new ManualClock();
    const store = await FileStore.openInMemory({ name: "sealer-start", clock });
    try {
      // Term 2 began at 2958 (term 1's final length). Its primary died before copying
      // entries 2956 and 2957 to its two new backups, which answer 2956 and 0.
      const old: ViewConfig = {
        term: 2,
        physicalLogs: 1,
        sequencers: [["seq-0", "seq-2", "seq-3"]],
        storages: ["sto-0"],
        engines: ["eng-0"],
        replication: 1,
        starts: [2958],
      };
      await store.put(sealReplyKey(2, 0, "seq-2"), JSON.stringify({ length: 2956 }));
      await store.put(sealReplyKey(2, 0, "seq-3"), JSON.stringify({ length: 0 }));
      const sealed = await storeSealer(store, { clock })(old, { ...old, term: 3 });
      expect(sealed).toEqual({ starts: [2958] });
      // A longer answer from a majority still wins.
      await store.put(sealReplyKey(2, 0, "seq-2"), JSON.stringify({ length: 2970 }));
      expect(await storeSealer(store, { clock })(old, { ...old, term: 3 })).toEqual({
        starts: [2970],
      });
    } finally {
      await store.close();
    }
  });
});

describe("boki status", () => {
  it("prints the term, each node with its role and health, the controller leader and each log's primary", async () => {
    const dir = tempDir("boki-status-");
    try {
      const clock = new ManualClock();
      const store = await FileStore.open({ dir: dir.dir, clock });
      const config = clusterConfig();
      const ctl = new Controller({ store, id: "controller-a", config, clock });
      await ctl.start();
      for (let i = 0; i < 20 && ctl.currentView === null; i++) await turns();
      for (const n of config.nodes.filter((x) => x.id !== "storage-2"))
        await registerNode(store, record(config, n.id), { clock });
      // A node that is registered but not in the view.
      await registerNode(store, { ...record(config, "engine-0"), id: "engine-9" }, { clock });
      const text = formatClusterStatus(await readClusterStatus(store));
      expect(text).toMatch(/^term: 1 /);
      expect(text).toContain("controller leader: controller-a");
      expect(text).toMatch(/storage-2\s+storage\s+missing/);
      expect(text).toMatch(/sequencer-0\s+sequencer\s+live 127\.0\.0\.1:7100/);
      expect(text).toMatch(/engine-9\s+engine\s+live .*\(not in the view\)/);
      expect(text).toContain(
        "log 0: primary sequencer-0 (live), term 1 began at metalog position 0, no position reported yet",
      );
      await ctl.close();
      await store.close();

      // The command itself, as a separate process, on the same directory.
      const out = await runBoki(["status", "--store", `file:${dir.dir}`]);
      expect(out.code).toBe(0);
      expect(out.stdout).toMatch(/^term: 1 /);
      // The process that registered them closed, so every node of the view is missing now.
      expect(out.stdout).toMatch(/engine-0\s+engine\s+missing/);
      expect(out.stdout).toContain("controller leader: none");
      expect(out.stdout).toContain("log 0: primary sequencer-0 (missing)");
    } finally {
      dir.remove();
    }
  });
});

function runBoki(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BOKI_BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("spare nodes in the cluster config", () => {
  const nodes = [
    { id: "sequencer-0", role: "sequencer", port: 7100 },
    { id: "storage-0", role: "storage", port: 7110 },
    { id: "storage-1", role: "storage", port: 7111, spare: true },
    { id: "engine-0", role: "engine", port: 7120 },
    { id: "engine-1", role: "engine", port: 7121, spare: true },
  ];

  it("spares have no place in the first view, and defaults count only the others", () => {
    const config = parseClusterConfig({ nodes }, "test config", "/tmp");
    const view = viewOf(config, 1).config;
    expect(view.storages).toEqual(["storage-0"]);
    expect(view.engines).toEqual(["engine-0"]);
    expect(config.replication).toBe(1);
    expect(config.indexReplicas).toBe(1);
    expect(config.nodes.find((n) => n.id === "engine-1")?.spare).toBe(true);
  });

  it("refuses a spare gateway, a spare flag that is not a boolean, and a config whose only engine is a spare", () => {
    const parse = (ns: unknown[]) => () => parseClusterConfig({ nodes: ns }, "test config", "/tmp");
    expect(parse([...nodes, { id: "g", role: "gateway", port: 8090, spare: true }])).toThrow(
      /a gateway cannot be a spare/,
    );
    expect(parse([...nodes.slice(0, 4), { ...nodes[4], spare: "yes" }])).toThrow(
      /spare must be true or false/,
    );
    expect(parse(nodes.filter((n) => n.id !== "engine-0"))).toThrow(/at least one engine/);
  });
});
