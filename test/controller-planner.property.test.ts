/**
 * The reconfiguration planner on random clusters and random failure and drain sets: a plan
 * never uses a failed or drained node, keeps `replication` distinct replicas per shard, the
 * physical-log count and the book mapping, raises the term by one, is deterministic, and
 * moves as little as possible. When too few nodes remain it refuses with a typed error.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { View, type ViewConfig } from "../src/log/view.js";
import {
  PlanRefusedError,
  nodesOfView,
  planNextView,
  roleInView,
  type LiveNode,
  type PlanInput,
} from "../src/controller/planner.js";
import { decodeViewRecord, encodeViewRecord } from "../src/controller/view-record.js";

interface Cluster {
  readonly view: ViewConfig;
  readonly all: readonly LiveNode[];
}

/** A consistent cluster as `viewOf` builds it, plus some spare nodes not in the view. */
const clusterArb: fc.Arbitrary<Cluster> = fc
  .record({
    seqs: fc.integer({ min: 1, max: 7 }),
    stos: fc.integer({ min: 1, max: 7 }),
    engs: fc.integer({ min: 1, max: 6 }),
    spare: fc.record({
      seq: fc.integer({ min: 0, max: 2 }),
      sto: fc.integer({ min: 0, max: 2 }),
      eng: fc.integer({ min: 0, max: 2 }),
    }),
    term: fc.integer({ min: 1, max: 1000 }),
    logs: fc.integer({ min: 1, max: 4 }),
    perLogRaw: fc.integer({ min: 1, max: 5 }),
    replRaw: fc.integer({ min: 1, max: 5 }),
    indexRaw: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
  })
  .map((c) => {
    const ids = (p: string, n: number, from = 0) =>
      Array.from({ length: n }, (_, i) => `${p}-${i + from}`);
    const seqs = ids("sequencer", c.seqs);
    const perLog = Math.min(c.perLogRaw, c.seqs);
    const view: ViewConfig = {
      term: c.term,
      physicalLogs: c.logs,
      sequencers: Array.from({ length: c.logs }, (_, log) =>
        Array.from({ length: perLog }, (_, k) => seqs[(log + k) % seqs.length]!),
      ),
      storages: ids("storage", c.stos),
      engines: ids("engine", c.engs),
      replication: Math.min(c.replRaw, c.stos),
      ...(c.indexRaw === undefined ? {} : { indexReplicas: Math.min(c.indexRaw, c.engs) }),
    };
    const all: LiveNode[] = [
      ...seqs.map((id) => ({ id, role: "sequencer" as const })),
      ...ids("sequencer", c.spare.seq, c.seqs).map((id) => ({ id, role: "sequencer" as const })),
      ...view.storages.map((id) => ({ id, role: "storage" as const })),
      ...ids("storage", c.spare.sto, c.stos).map((id) => ({ id, role: "storage" as const })),
      ...view.engines.map((id) => ({ id, role: "engine" as const })),
      ...ids("engine", c.spare.eng, c.engs).map((id) => ({ id, role: "engine" as const })),
    ];
    return { view, all };
  });

/** A cluster, the nodes that failed, and the nodes to drain (disjoint). */
const scenarioArb = clusterArb.chain((cluster) =>
  fc
    .tuple(
      fc.array(fc.constantFrom(...cluster.all.map((n) => n.id)), { maxLength: 6 }),
      fc.array(fc.constantFrom(...cluster.all.map((n) => n.id)), { maxLength: 2 }),
      fc.boolean(),
    )
    .map(([failed, drain, withTails]) => {
      const failedSet = new Set(failed);
      const input: PlanInput = {
        current: cluster.view,
        live: cluster.all.filter((n) => !failedSet.has(n.id)),
        drain: drain.filter((id) => !failedSet.has(id)),
        ...(withTails
          ? {
              metalogTails: cluster.view.sequencers.map(
                (s) => new Map(s.map((id, i) => [id, (i * 7 + id.length) % 5])),
              ),
            }
          : {}),
      };
      return { cluster, failed: failedSet, input };
    }),
);

/** Plans, or returns the refusal; anything else thrown fails the property. */
function tryPlan(input: PlanInput) {
  try {
    return planNextView(input);
  } catch (e) {
    if (e instanceof PlanRefusedError) return e;
    throw e;
  }
}

describe("reconfiguration planner", () => {
  it("a plan never uses a failed or drained node, and every node keeps its role", () => {
    fc.assert(
      fc.property(scenarioArb, ({ cluster, failed, input }) => {
        const plan = tryPlan(input);
        if (plan instanceof PlanRefusedError) return;
        const drained = new Set(input.drain);
        const role = new Map(cluster.all.map((n) => [n.id, n.role]));
        for (const id of nodesOfView(plan.view)) {
          expect(failed.has(id)).toBe(false);
          expect(drained.has(id)).toBe(false);
          expect(roleInView(plan.view, id)).toBe(role.get(id));
        }
      }),
      { numRuns: 500 },
    );
  });

  it("raises the term by exactly one, keeps the physical logs and replication, and is a valid view", () => {
    fc.assert(
      fc.property(scenarioArb, ({ cluster, input }) => {
        const plan = tryPlan(input);
        if (plan instanceof PlanRefusedError) return;
        expect(plan.view.term).toBe(cluster.view.term + 1);
        expect(plan.view.physicalLogs).toBe(cluster.view.physicalLogs);
        expect(plan.view.sequencers).toHaveLength(cluster.view.physicalLogs);
        expect(plan.view.replication).toBe(cluster.view.replication);
        const v = new View(plan.view);
        for (const [, replicas] of v.shards()) {
          expect(replicas).toHaveLength(cluster.view.replication);
          expect(new Set(replicas).size).toBe(cluster.view.replication);
        }
        for (const s of plan.view.sequencers) expect(new Set(s).size).toBe(s.length);
      }),
      { numRuns: 500 },
    );
  });

  it("is deterministic: the same inputs, in any order, give the same plan", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer(), ({ input }, seed) => {
        const shuffled = [...input.live].sort(
          (a, b) =>
            ((a.id.length * seed) % 7) - ((b.id.length * seed) % 7) || (a.id < b.id ? 1 : -1),
        );
        const a = tryPlan(input);
        const b = tryPlan({ ...input, live: shuffled });
        if (a instanceof PlanRefusedError) {
          expect(b).toBeInstanceOf(PlanRefusedError);
          expect((b as PlanRefusedError).reason).toBe(a.reason);
        } else {
          expect(b).toEqual(a);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("moves as little as possible: a live primary stays, live members stay in order, live nodes keep their order", () => {
    fc.assert(
      fc.property(scenarioArb, ({ cluster, input }) => {
        const plan = tryPlan(input);
        if (plan instanceof PlanRefusedError) return;
        const usable = new Set(
          input.live.map((n) => n.id).filter((id) => !new Set(input.drain).has(id)),
        );
        const perLogMax = Math.max(...cluster.view.sequencers.map((s) => s.length));
        cluster.view.sequencers.forEach((old, log) => {
          const now = plan.view.sequencers[log]!;
          const kept = old.filter((id) => usable.has(id));
          if (usable.has(old[0]!)) expect(now[0]).toBe(old[0]);
          // Every live member stays (none is dropped while the log has room for it).
          if (kept.length <= perLogMax) {
            expect(now.filter((id) => kept.includes(id)).sort()).toEqual([...kept].sort());
          }
          // Backups keep their relative order.
          const keptBackups = kept.filter((id) => id !== now[0]);
          expect(now.filter((id) => keptBackups.includes(id))).toEqual(keptBackups);
        });
        const keptOrder = (old: readonly string[], now: readonly string[]) =>
          expect(now.filter((id) => old.includes(id))).toEqual(old.filter((id) => usable.has(id)));
        keptOrder(cluster.view.storages, plan.view.storages);
        keptOrder(cluster.view.engines, plan.view.engines);
      }),
      { numRuns: 500 },
    );
  });

  it("a new primary is the live member with the longest reported metalog tail, else the first live backup", () => {
    const current: ViewConfig = {
      term: 4,
      physicalLogs: 1,
      sequencers: [["a", "b", "c"]],
      storages: ["s"],
      engines: ["e"],
      replication: 1,
    };
    const live: LiveNode[] = [
      { id: "b", role: "sequencer" },
      { id: "c", role: "sequencer" },
      { id: "s", role: "storage" },
      { id: "e", role: "engine" },
    ];
    expect(planNextView({ current, live }).view.sequencers).toEqual([["b", "c"]]);
    const tails = [
      new Map([
        ["b", 10],
        ["c", 12],
      ]),
    ];
    expect(planNextView({ current, live, metalogTails: tails }).view.sequencers).toEqual([
      ["c", "b"],
    ]);
    // A spare sequencer fills the empty place.
    expect(
      planNextView({ current, live: [...live, { id: "d", role: "sequencer" }] }).view.sequencers,
    ).toEqual([["b", "c", "d"]]);
  });

  it("refuses with a typed error when too few nodes remain, and plans whenever enough do", () => {
    fc.assert(
      fc.property(scenarioArb, ({ cluster, input }) => {
        const drained = new Set(input.drain);
        const usable = input.live.filter((n) => !drained.has(n.id));
        const count = (r: string) => usable.filter((n) => n.role === r).length;
        const usableIds = new Set(usable.map((n) => n.id));
        const majorityLost = cluster.view.sequencers.some(
          (s) => s.filter((id) => usableIds.has(id)).length < Math.floor(s.length / 2) + 1,
        );
        const shouldRefuse =
          count("storage") < cluster.view.replication ||
          count("engine") === 0 ||
          count("sequencer") === 0 ||
          majorityLost;
        const plan = tryPlan(input);
        expect(plan instanceof PlanRefusedError).toBe(shouldRefuse);
        if (plan instanceof PlanRefusedError) {
          expect(plan.code).toBe("UNAVAILABLE");
          expect(plan.message).toMatch(/^cannot plan the next view: /);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("spreads the new term's shards evenly over the storage nodes that remain", () => {
    fc.assert(
      fc.property(scenarioArb, ({ input }) => {
        const plan = tryPlan(input);
        if (plan instanceof PlanRefusedError) return;
        const v = new View(plan.view);
        const load = new Map(plan.view.storages.map((id) => [id, 0]));
        for (const [, replicas] of v.shards())
          for (const id of replicas) load.set(id, load.get(id)! + 1);
        const engines = plan.view.engines.length;
        const perNodeMax = Math.ceil(engines / plan.view.storages.length) * plan.view.replication;
        for (const n of load.values()) expect(n).toBeLessThanOrEqual(perNodeMax);
      }),
      { numRuns: 300 },
    );
  });

  it("a view survives the store's JSON form unchanged, and a foreign version is refused", () => {
    fc.assert(
      fc.property(clusterArb, ({ view }) => {
        const history =
          view.term > 1
            ? [
                {
                  term: view.term - 1,
                  storages: view.storages,
                  engines: view.engines,
                  replication: view.replication,
                  sequencers: view.sequencers,
                  starts: Array.from({ length: view.physicalLogs }, () => 0),
                },
              ]
            : [];
        const starts = Array.from({ length: view.physicalLogs }, (_, i) => i * 7);
        const v = { ...view, starts };
        const text = encodeViewRecord({ view: v, history, cause: "test", publishedAtMs: 5 });
        expect(JSON.parse(text)).toMatchObject({ version: 1 });
        expect(decodeViewRecord(text)).toEqual({
          view: v,
          history,
          cause: "test",
          publishedAtMs: 5,
        });
      }),
      { numRuns: 100 },
    );
    expect(() => decodeViewRecord(JSON.stringify({ version: 2 }))).toThrow(/version 2/);
  });
});
