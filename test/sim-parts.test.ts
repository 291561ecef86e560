/**
 * The simulator's building blocks on their own: the seeded random source (`SimRandom`,
 * `checkSeed`), simulated time (`SimScheduler`, `NodeClock`), the simulated network
 * (`SimNetwork`: delays, order, faults, partitions, incarnations, wire validation) and a
 * node's client of the simulated coordination store (`SimStoreClient`: what a crash does).
 */
import { describe, expect, it } from "vitest";
import { FileStore, valueText, type CoordStore } from "../src/coord/index.js";
import { InvalidArgumentError } from "../src/log/errors.js";
import type { Message, MetalogFetchMsg } from "../src/protocol/messages.js";
import { NodeClock, SimScheduler } from "../src/sim/clock.js";
import { CALM_NETWORK, SimNetwork, type NetworkFaults } from "../src/sim/network.js";
import { checkSeed, SEED_MAX, SimRandom } from "../src/sim/random.js";
import { SimStoreClient } from "../src/sim/store.js";
import type { NodeId } from "../src/transport/transport.js";

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs the scheduler until `p` settles and returns its outcome; throws if it is still
 * pending after `limitMs` of simulated time.
 */
async function drive<T>(scheduler: SimScheduler, p: Promise<T>, limitMs = 10_000): Promise<T> {
  let done = false;
  const settled = p.finally(() => {
    done = true;
  });
  // Kept until returned: a rejection is the caller's to see, not an unhandled one.
  settled.catch(() => undefined);
  const end = scheduler.now() + limitMs;
  await turn();
  if (!done) await scheduler.run(end, () => done);
  if (!done) throw new Error(`still pending after ${limitMs} simulated ms`);
  return settled;
}

/** Resolves `ms` of simulated time from now. */
const simSleep = (scheduler: SimScheduler, ms: number): Promise<void> =>
  new Promise((resolve) => scheduler.setTimer(ms, resolve));

/** Whether `p` settles within `ms` of simulated time (driving the scheduler meanwhile). */
async function settlesWithin(
  scheduler: SimScheduler,
  p: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  const outcome = await drive(
    scheduler,
    Promise.race([
      p.then(
        () => "settled",
        () => "settled",
      ),
      simSleep(scheduler, ms).then(() => "timeout"),
    ]),
    ms + 1,
  );
  return outcome === "settled";
}

// --- SimRandom ----------------------------------------------------------------------------

describe("SimRandom", () => {
  const draw = (seed: number, n: number): number[] => {
    const r = new SimRandom(seed);
    return Array.from({ length: n }, () => r.u32());
  };

  it("gives the same sequence for the same seed", () => {
    expect(draw(7, 1000)).toEqual(draw(7, 1000));
    expect(draw(SEED_MAX, 1000)).toEqual(draw(SEED_MAX, 1000));
  });

  it("gives different sequences for different seeds, even neighbouring ones", () => {
    const a = draw(0, 1000);
    const b = draw(1, 1000);
    const c = draw(2, 1000);
    expect(a).not.toEqual(b);
    expect(b).not.toEqual(c);
    // Not merely shifted copies of each other: almost no value is shared.
    const common = a.filter((v) => new Set(b).has(v));
    expect(common.length).toBeLessThan(5);
  });

  it("keeps the sequence of a seed across versions (a printed seed replays its run)", () => {
    expect(draw(0, 3)).toEqual([4205396811, 3543653536, 1222415357]);
    expect(draw(42, 3)).toEqual([1028872839, 2516511472, 400437680]);
  });

  it("draws unsigned 32-bit integers and counts its draws", () => {
    const r = new SimRandom(3);
    expect(r.draws).toBe(0);
    const values = Array.from({ length: 1000 }, () => r.u32());
    expect(values.filter((v) => !Number.isInteger(v) || v < 0 || v > 0xffff_ffff)).toEqual([]);
    expect(r.draws).toBe(1000);
    const max = Math.max(...values);
    // The top bit is used.
    expect(max).toBeGreaterThan(0x8000_0000);
  });

  it("float is in [0, 1) and spreads over it", () => {
    const r = new SimRandom(11);
    const n = 10_000;
    const values = Array.from({ length: n }, () => r.float());
    expect(values.filter((f) => !(f >= 0 && f < 1))).toEqual([]);
    const sum = values.reduce((x, y) => x + y, 0);
    const below = values.filter((f) => f < 0.1).length;
    expect(sum / n).toBeGreaterThan(0.48);
    expect(sum / n).toBeLessThan(0.52);
    expect(below / n).toBeGreaterThan(0.09);
    expect(below / n).toBeLessThan(0.11);
  });

  it("int(n) is an integer in [0, n) and roughly uniform", () => {
    const r = new SimRandom(5);
    const n = 10;
    const draws = 50_000;
    const values = Array.from({ length: draws }, () => r.int(n));
    expect(values.filter((v) => !Number.isInteger(v) || v < 0 || v >= n)).toEqual([]);
    const counts = new Array<number>(n).fill(0);
    for (const v of values) counts[v]!++;
    // Expected 5000 each with a standard deviation of about 67: 10% is over 7 of them.
    for (const c of counts) {
      expect(c).toBeGreaterThan(4500);
      expect(c).toBeLessThan(5500);
    }
    expect(new SimRandom(5).int(1)).toBe(0);
  });

  it("between stays in [lo, hi); chance(0) never holds and draws nothing; chance(1) always holds", () => {
    const r = new SimRandom(9);
    const values = Array.from({ length: 1000 }, () => r.between(5, 7));
    expect(values.filter((v) => !(v >= 5 && v < 7))).toEqual([]);
    const before = r.draws;
    expect(Array.from({ length: 100 }, () => r.chance(0)).some(Boolean)).toBe(false);
    expect(r.draws).toBe(before);
    expect(Array.from({ length: 100 }, () => r.chance(1)).every(Boolean)).toBe(true);
  });

  it("float stays below 1 and int(n) below n even for the largest u32", () => {
    class Top extends SimRandom {
      override u32(): number {
        return 0xffff_ffff;
      }
    }
    const r = new Top(1);
    expect(r.float()).toBeLessThan(1);
    expect(r.int(10)).toBe(9);
    expect(r.between(2, 3)).toBeLessThan(3);
  });

  it("pick takes every item of a list and refuses an empty one", () => {
    const r = new SimRandom(13);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(r.pick(["a", "b", "c"]));
    expect([...seen].sort()).toEqual(["a", "b", "c"]);
    expect(() => r.pick([])).toThrow(InvalidArgumentError);
  });

  it("exponential is positive with about the mean asked for", () => {
    const r = new SimRandom(17);
    const n = 20_000;
    const values = Array.from({ length: n }, () => r.exponential(100));
    expect(values.filter((v) => !(v >= 0 && Number.isFinite(v)))).toEqual([]);
    const sum = values.reduce((x, y) => x + y, 0);
    expect(sum / n).toBeGreaterThan(95);
    expect(sum / n).toBeLessThan(105);
  });

  it("checkSeed accepts unsigned 32-bit integers and rejects everything else", () => {
    expect(checkSeed(0)).toBe(0);
    expect(checkSeed(SEED_MAX)).toBe(2 ** 32 - 1);
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN, Infinity, "1", null, undefined]) {
      expect(() => checkSeed(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => new SimRandom(-1)).toThrow(InvalidArgumentError);
    expect(() => new SimRandom(2 ** 32)).toThrow(InvalidArgumentError);
  });
});

// --- SimScheduler ---------------------------------------------------------------------------

describe("SimScheduler", () => {
  it("runs events in time order, each with now() at its time", async () => {
    const s = new SimScheduler();
    const log: string[] = [];
    for (const at of [30, 10, 20, 0, 25]) s.setTimer(at, () => log.push(`${at}@${s.now()}`));
    await s.run(100);
    expect(log).toEqual(["0@0", "10@10", "20@20", "25@25", "30@30"]);
    expect(s.executed).toBe(5);
  });

  it("runs events due at the same time in insertion order", async () => {
    const s = new SimScheduler();
    const log: number[] = [];
    // Interleaved with other times, so the heap has to break ties by insertion.
    for (let i = 0; i < 100; i++) {
      s.setTimer(5, () => log.push(i));
      s.setTimer(i % 2 === 0 ? 3 : 7, () => undefined);
    }
    await s.run(10);
    expect(log).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("orders many random timers by (time, insertion)", async () => {
    const s = new SimScheduler();
    const r = new SimRandom(21);
    const fired: Array<[number, number]> = [];
    for (let i = 0; i < 2000; i++) {
      const at = r.int(50);
      s.setTimer(at, () => fired.push([s.now(), i]));
    }
    await s.run(100);
    expect(fired).toHaveLength(2000);
    const sorted = [...fired].sort(([t0, i0], [t1, i1]) => t0 - t1 || i0 - i1);
    expect(fired).toEqual(sorted);
  });

  it("a negative delay runs at now; a non-finite delay is refused", async () => {
    const s = new SimScheduler();
    await s.run(10);
    s.setTimer(-5, () => undefined);
    expect(() => s.setTimer(Number.NaN, () => undefined)).toThrow(InvalidArgumentError);
    expect(() => s.setTimer(Infinity, () => undefined)).toThrow(InvalidArgumentError);
    const times: number[] = [];
    s.setTimer(-1, () => times.push(s.now()));
    await s.run(10);
    expect(times).toEqual([10]);
  });

  it("afterTurn runs after the events already due at the same time", async () => {
    const s = new SimScheduler();
    const log: string[] = [];
    s.setTimer(5, () => {
      log.push("first");
      s.afterTurn(() => log.push(`after@${s.now()}`));
    });
    s.setTimer(5, () => log.push("second"));
    s.setTimer(6, () => log.push("later"));
    await s.run(10);
    expect(log).toEqual(["first", "second", "after@5", "later"]);
  });

  it("clearTimer cancels a pending event", async () => {
    const s = new SimScheduler();
    const log: string[] = [];
    const h = s.setTimer(5, () => log.push("cancelled"));
    s.setTimer(6, () => log.push("kept"));
    s.clearTimer(h);
    await s.run(10);
    expect(log).toEqual(["kept"]);
    expect(s.executed).toBe(1);
  });

  it("run(until) stops at until, leaves later events pending and sets now() to until", async () => {
    const s = new SimScheduler();
    const log: number[] = [];
    for (const at of [10, 20, 30]) s.setTimer(at, () => log.push(at));
    await s.run(25);
    expect(log).toEqual([10, 20]);
    expect(s.now()).toBe(25);
    expect(s.pending).toBe(1);
    // An event exactly at `until` runs.
    await s.run(30);
    expect(log).toEqual([10, 20, 30]);
    expect(s.pending).toBe(0);
    // With nothing pending, time still moves to until, and never backwards.
    await s.run(50);
    expect(s.now()).toBe(50);
    await s.run(40);
    expect(s.now()).toBe(50);
  });

  it("the stop callback ends a run early, at the time of the event after which it held", async () => {
    const s = new SimScheduler();
    const log: number[] = [];
    for (const at of [1, 2, 3, 4]) s.setTimer(at, () => log.push(at));
    await s.run(100, () => log.length === 2);
    expect(log).toEqual([1, 2]);
    expect(s.now()).toBe(2);
    expect(s.pending).toBe(2);
  });

  it("promise continuations an event causes run before the next event", async () => {
    const s = new SimScheduler();
    const log: string[] = [];
    let resolveA!: () => void;
    const a = new Promise<void>((resolve) => (resolveA = resolve));
    void a.then(async () => {
      log.push("A-cont");
      // A few microtask hops deeper still finishes before B.
      await Promise.resolve();
      await Promise.resolve();
      log.push("A-cont-2");
    });
    s.setTimer(1, () => {
      log.push("A");
      resolveA();
    });
    s.setTimer(1, () => log.push("B"));
    await s.run(10);
    expect(log).toEqual(["A", "A-cont", "A-cont-2", "B"]);
  });

  it("an event that throws rejects the run", async () => {
    const s = new SimScheduler();
    s.setTimer(1, () => {
      throw new Error("boom");
    });
    await expect(s.run(10)).rejects.toThrow("boom");
  });
});

// --- NodeClock ---------------------------------------------------------------------------------

describe("NodeClock", () => {
  it("runs a node's timers on the shared scheduler and can cancel them", async () => {
    const s = new SimScheduler();
    const c = new NodeClock(s);
    const log: string[] = [];
    c.setTimer(5, () => log.push(`t@${c.now()}`));
    const h = c.setTimer(6, () => log.push("cancelled"));
    c.afterTurn(() => log.push(`turn@${c.now()}`));
    c.clearTimer(h);
    await s.run(10);
    expect(log).toEqual(["turn@0", "t@5"]);
    expect(c.now()).toBe(10);
  });

  it("crash cancels every timer the node set; other nodes' timers still run", async () => {
    const s = new SimScheduler();
    const a = new NodeClock(s);
    const b = new NodeClock(s);
    const log: string[] = [];
    a.setTimer(5, () => log.push("a5"));
    a.setTimer(15, () => log.push("a15"));
    a.setTimer(20, () => log.push("a20"));
    b.setTimer(15, () => log.push("b15"));
    b.setTimer(20, () => log.push("b20"));
    s.setTimer(10, () => {
      // A turn-end callback queued just before the crash does not run either.
      a.afterTurn(() => log.push("a-turn"));
      a.crash();
    });
    await s.run(30);
    expect(log).toEqual(["a5", "b15", "b20"]);
    expect(a.isDead).toBe(true);
    expect(b.isDead).toBe(false);
    // Cancelled, not merely ignored when due: only a5, the crash, the (silenced) turn-end
    // callback, b15 and b20 ran.
    expect(s.executed).toBe(5);
    expect(s.pending).toBe(0);
  });

  it("after a crash, setTimer and afterTurn never fire", async () => {
    const s = new SimScheduler();
    const a = new NodeClock(s);
    const log: string[] = [];
    a.crash();
    a.setTimer(1, () => log.push("timer"));
    a.afterTurn(() => log.push("turn"));
    await s.run(100);
    expect(log).toEqual([]);
    expect(s.executed).toBe(0);
  });
});

// --- SimNetwork --------------------------------------------------------------------------------

function net(
  seed: number,
  faults: Partial<NetworkFaults> = {},
): { s: SimScheduler; network: SimNetwork; sent: Array<[NodeId, NodeId, Message]> } {
  const s = new SimScheduler();
  const sent: Array<[NodeId, NodeId, Message]> = [];
  const network = new SimNetwork(s, new SimRandom(seed), {
    sent: (from, to, m) => sent.push([from, to, m]),
  });
  network.faults = { ...CALM_NETWORK, ...faults };
  return { s, network, sent };
}

const fetchMsg = (from: number): MetalogFetchMsg => ({ t: "metalog-fetch", log: 0, from });

/** Connects `id` and records what it receives (sender, message, arrival time). */
function listen(
  network: SimNetwork,
  s: SimScheduler,
  id: NodeId,
): { got: Array<{ from: NodeId; m: Message; at: number }>; nums: () => number[] } {
  const got: Array<{ from: NodeId; m: Message; at: number }> = [];
  network.connect(id).onMessage((from, m) => got.push({ from, m, at: s.now() }));
  return { got, nums: () => got.map((g) => (g.m as MetalogFetchMsg).from) };
}

describe("SimNetwork", () => {
  it("delivers a fresh decoded copy of a message after a delay within the calm range", async () => {
    const { s, network, sent } = net(1);
    const a = network.connect("a");
    const b = listen(network, s, "b");
    await s.run(10);
    const m = fetchMsg(3);
    a.send("b", m);
    // The sender changing its object later does not show: it was encoded when sent.
    m.from = 99;
    await s.run(20);
    expect(b.got).toHaveLength(1);
    const got = b.got[0]!;
    expect(got.from).toBe("a");
    expect(got.m).toEqual({ t: "metalog-fetch", log: 0, from: 3 });
    expect(got.m).not.toBe(m);
    const delay = got.at - 10;
    expect(delay).toBeGreaterThanOrEqual(CALM_NETWORK.delayMs[0]);
    expect(delay).toBeLessThanOrEqual(CALM_NETWORK.delayMs[1]);
    expect(sent.map(([f, t]) => `${f}>${t}`)).toEqual(["a>b"]);
    expect(network.stats).toMatchObject({ sent: 1, delivered: 1, lost: 0, duplicated: 0 });
  });

  it("decodes as the wire does: bytes come back as plain Uint8Array, unknown fields are dropped", async () => {
    const { s, network } = net(2);
    const a = network.connect("a");
    const b = listen(network, s, "b");
    a.send("b", { t: "replicate", log: 1, shard: 2, first: 0, records: [Buffer.from([1, 2, 3])] });
    a.send("b", { ...fetchMsg(4), extra: "smuggled" } as Message);
    await s.run(10);
    const rep = b.got[0]!.m;
    expect(rep.t).toBe("replicate");
    if (rep.t !== "replicate") return;
    expect(rep.records[0]!.constructor).toBe(Uint8Array);
    expect([...rep.records[0]!]).toEqual([1, 2, 3]);
    expect(b.got[1]!.m).toEqual(fetchMsg(4));
    expect(Object.keys(b.got[1]!.m)).not.toContain("extra");
  });

  it("keeps a pair's messages in send order with default faults, despite random delays", async () => {
    const { s, network } = net(3);
    const a = network.connect("a");
    const b = listen(network, s, "b");
    for (let i = 0; i < 200; i++) a.send("b", fetchMsg(i));
    await s.run(1_000);
    expect(b.nums()).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it("with reorder on and wide delays, a pair's messages overtake each other", async () => {
    const { s, network } = net(4, { reorder: true, delayMs: [0, 50] });
    const a = network.connect("a");
    const b = listen(network, s, "b");
    for (let i = 0; i < 200; i++) a.send("b", fetchMsg(i));
    await s.run(1_000);
    const nums = b.nums();
    // All arrive, some out of order.
    expect([...nums].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(nums).not.toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it("delays a message by a spike when the spike rate says so", async () => {
    const { s, network } = net(5, { spikeRate: 1, spikeMs: [100, 200] });
    const a = network.connect("a");
    const b = listen(network, s, "b");
    for (let i = 0; i < 20; i++) a.send("b", fetchMsg(i));
    await s.run(99);
    expect(b.got).toHaveLength(0);
    await s.run(200);
    expect(b.got).toHaveLength(20);
    for (const g of b.got) expect(g.at).toBeGreaterThanOrEqual(100);
  });

  it("lossRate 1 drops every message and counts it lost", async () => {
    const { s, network } = net(6, { lossRate: 1 });
    const a = network.connect("a");
    const b = listen(network, s, "b");
    for (let i = 0; i < 50; i++) a.send("b", fetchMsg(i));
    await s.run(1_000);
    expect(b.got).toHaveLength(0);
    expect(network.stats).toMatchObject({ sent: 50, delivered: 0, lost: 50 });
  });

  it("duplicateRate 1 delivers every message twice, still in order", async () => {
    const { s, network } = net(7, { duplicateRate: 1 });
    const a = network.connect("a");
    const b = listen(network, s, "b");
    for (let i = 0; i < 50; i++) a.send("b", fetchMsg(i));
    await s.run(1_000);
    expect(b.nums()).toEqual(Array.from({ length: 50 }, (_, i) => [i, i]).flat());
    expect(network.stats).toMatchObject({ sent: 50, delivered: 100, duplicated: 50 });
  });

  it("a partition drops messages both ways, not to others, and heal restores delivery", async () => {
    const { s, network } = net(8);
    const a = listen(network, s, "a");
    const b = listen(network, s, "b");
    const c = listen(network, s, "c");
    const ta = network.connect("a2");
    const tb = network.connect("b2");
    network.partition(["a", "a2"], ["b", "b2"]);
    expect(network.partitioned).toBe(true);
    ta.send("b", fetchMsg(1));
    tb.send("a", fetchMsg(2));
    ta.send("c", fetchMsg(3));
    await s.run(10);
    expect(a.got).toHaveLength(0);
    expect(b.got).toHaveLength(0);
    expect(c.nums()).toEqual([3]);
    expect(network.stats.partitioned).toBe(2);

    network.heal();
    expect(network.partitioned).toBe(false);
    ta.send("b", fetchMsg(4));
    tb.send("a", fetchMsg(5));
    await s.run(20);
    expect(b.nums()).toEqual([4]);
    expect(a.nums()).toEqual([5]);
  });

  it("drops a message in flight when a partition starts before it arrives", async () => {
    const { s, network } = net(9, { delayMs: [5, 5] });
    const a = network.connect("a");
    const b = listen(network, s, "b");
    a.send("b", fetchMsg(1));
    await s.run(2);
    network.partition(["a"], ["b"]);
    await s.run(10);
    expect(b.got).toHaveLength(0);
    expect(network.stats.partitioned).toBe(1);
  });

  it("drops a message to a node that reconnected (a new incarnation) before it arrived", async () => {
    const { s, network } = net(10, { delayMs: [5, 5] });
    const a = network.connect("a");
    const old = listen(network, s, "b");
    a.send("b", fetchMsg(1));
    await s.run(2);
    network.disconnect("b");
    const fresh = listen(network, s, "b");
    await s.run(20);
    expect(old.got).toHaveLength(0);
    expect(fresh.got).toHaveLength(0);
    expect(network.stats.delivered).toBe(0);
    // What is sent to the new incarnation arrives.
    a.send("b", fetchMsg(2));
    await s.run(30);
    expect(fresh.nums()).toEqual([2]);
    expect(old.got).toHaveLength(0);
  });

  it("a disconnected node's old transport neither sends nor detaches its new incarnation", async () => {
    const { s, network } = net(11);
    const b = listen(network, s, "b");
    const old = network.connect("a");
    network.disconnect("a");
    old.send("b", fetchMsg(1));
    const a = listen(network, s, "a");
    old.close();
    network.connect("b2").send("a", fetchMsg(2));
    await s.run(10);
    expect(b.got).toHaveLength(0);
    expect(a.nums()).toEqual([2]);
    expect(network.stats.sent).toBe(1);
    // A node that is connected cannot connect twice.
    expect(() => network.connect("a")).toThrow(InvalidArgumentError);
  });

  it("a message that fails wire validation makes its delivery throw, rejecting the run", async () => {
    const { s, network } = net(12);
    const a = network.connect("a");
    const b = listen(network, s, "b");
    // Sending does not check; the receiving side's decode does.
    expect(() => a.send("b", { t: "nope" } as unknown as Message)).not.toThrow();
    await expect(s.run(10)).rejects.toThrow(/unknown message type "nope"/);
    a.send("b", { t: "metalog-fetch", log: 0, from: -1 });
    await expect(s.run(20)).rejects.toThrow(InvalidArgumentError);
    expect(b.got).toHaveLength(0);
    expect(network.stats.delivered).toBe(0);
  });

  it("the same seed gives the same arrival times; another seed different ones", async () => {
    const arrivals = async (seed: number): Promise<number[]> => {
      const { s, network } = net(seed, { reorder: true, spikeRate: 0.1 });
      const a = network.connect("a");
      const b = listen(network, s, "b");
      for (let i = 0; i < 100; i++) a.send("b", fetchMsg(i));
      await s.run(1_000);
      return b.got.map((g) => g.at);
    };
    expect(await arrivals(100)).toEqual(await arrivals(100));
    expect(await arrivals(100)).not.toEqual(await arrivals(101));
  });
});

// --- SimStoreClient ----------------------------------------------------------------------------

let storeNames = 0;

/** Two node clients (each on its own NodeClock) of one fresh in-memory store. */
async function twoClients(): Promise<{
  s: SimScheduler;
  inner: CoordStore[];
  a: SimStoreClient;
  b: SimStoreClient;
  close: () => Promise<void>;
}> {
  const s = new SimScheduler();
  const name = `sim-parts-${++storeNames}`;
  const innerA = await FileStore.openInMemory({ name, clock: s });
  const innerB = await FileStore.openInMemory({ name, clock: s });
  const a = new SimStoreClient(innerA, new NodeClock(s));
  const b = new SimStoreClient(innerB, new NodeClock(s));
  return {
    s,
    inner: [innerA, innerB],
    a,
    b,
    close: async () => {
      await drive(s, Promise.all([innerA.close(), innerB.close()]));
    },
  };
}

describe("SimStoreClient", () => {
  it("passes calls through to the shared store while the node lives", async () => {
    const { s, a, b, close } = await twoClients();
    await drive(s, a.put("k", "v1"));
    const kv = await drive(s, b.get("k"));
    expect(kv === null ? null : valueText(kv)).toBe("v1");
    expect((await drive(s, b.list(""))).entries.map((e) => e.key)).toEqual(["k"]);
    expect(await drive(s, b.delete("k"))).toBe(true);
    expect(await drive(s, a.get("k"))).toBeNull();
    await close();
  });

  it("after a crash its calls never settle, while another client of the store keeps working", async () => {
    const { s, a, b, close } = await twoClients();
    await drive(s, a.put("k", "before"));
    a.crash();
    expect(await settlesWithin(s, a.get("k"), 5_000)).toBe(false);
    expect(await settlesWithin(s, a.put("k", "after"), 5_000)).toBe(false);
    expect(await settlesWithin(s, a.grantLease(1_000), 5_000)).toBe(false);
    await drive(s, b.put("k2", "alive"));
    const kv = await drive(s, b.get("k"));
    expect(kv === null ? null : valueText(kv)).toBe("before");
    expect((await drive(s, b.list(""))).entries.map((e) => e.key)).toEqual(["k", "k2"]);
    await close();
  });

  it("a write in flight at the crash is applied, but its answer never reaches the dead node", async () => {
    const { s, a, b, close } = await twoClients();
    const put = a.put("k", "in-flight");
    a.crash();
    expect(await settlesWithin(s, put, 5_000)).toBe(false);
    const kv = await drive(s, b.get("k"));
    expect(kv === null ? null : valueText(kv)).toBe("in-flight");
    await close();
  });

  it("a live client keeps its lease past the TTL", async () => {
    const { s, a, b, close } = await twoClients();
    const lease = await drive(s, a.grantLease(1_000));
    await drive(s, a.put("owned", "x", { lease }));
    await s.run(s.now() + 5_000);
    expect(await drive(s, b.get("owned"))).not.toBeNull();
    expect(lease.state).toBe("alive");
    await close();
  });

  it("a lease granted through it expires after its TTL once the client crashed", async () => {
    const { s, a, b, close } = await twoClients();
    const lease = await drive(s, a.grantLease(1_000));
    await drive(s, a.put("owned", "x", { lease }));
    a.crash();
    const crashedAt = s.now();
    // Not at the crash: the last keep-alive holds for a TTL (keep-alives come every TTL/3).
    await s.run(crashedAt + 600);
    expect(await drive(s, b.get("owned"))).not.toBeNull();
    await s.run(crashedAt + 2_000);
    expect(await drive(s, b.get("owned"))).toBeNull();
    expect(lease.state).toBe("lost");
    await close();
  });

  it("a lease whose grant is in flight at the crash is not kept alive either", async () => {
    const { s, a, close } = await twoClients();
    const grant = a.grantLease(1_000);
    a.crash();
    expect(await settlesWithin(s, grant, 5_000)).toBe(false);
    // The store granted it, but the dead node never heard: like every other lease of the
    // node, it must lapse after its TTL. Kept alive, its keep-alive timers would still be
    // firing now.
    const executed = s.executed;
    await s.run(s.now() + 5_000);
    expect(s.executed - executed).toBe(0);
    expect(s.pending).toBe(0);
    await close();
  });

  it("a watch set up in flight at the crash never delivers to the dead node", async () => {
    const { s, a, b, close } = await twoClients();
    const heard: string[] = [];
    const watch = a.watch("w/", (e) => {
      heard.push(e.key);
    });
    a.crash();
    await drive(s, b.put("w/1", "x"));
    await s.run(s.now() + 10);
    expect(await settlesWithin(s, watch, 1_000)).toBe(false);
    expect(heard).toEqual([]);
    await close();
  });

  it("a crash ends its watches: the listener hears nothing more", async () => {
    const { s, a, b, close } = await twoClients();
    const heard: string[] = [];
    const w = await drive(
      s,
      a.watch("w/", (e) => {
        heard.push(e.key);
      }),
    );
    await drive(s, b.put("w/1", "x"));
    await s.run(s.now() + 10);
    expect(heard).toEqual(["w/1"]);
    a.crash();
    await drive(s, b.put("w/2", "x"));
    await s.run(s.now() + 10);
    expect(heard).toEqual(["w/1"]);
    expect((await drive(s, w.done)).reason).toBe("cancelled");
    await close();
  });
});
