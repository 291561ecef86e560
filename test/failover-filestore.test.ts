/**
 * The kill scenario of a cluster reconfiguring itself, in one process, with the embedded
 * file-backed coordination store instead of etcd: an in-process cluster (in-process
 * transport, real lmdb disks) whose every node follows the store as a node process does
 * (a `ViewFollower` attached to its role, a membership registration with a lease), and
 * real controllers with the store sealer. Views reach the roles only through the store.
 *
 * A node is "killed" by cutting it off the network, stopping its lease keep-alive without
 * deregistering (the lease then expires, as a dead process's does) and stopping its
 * follower (a dead process answers no seal request). The controller must notice, seal the
 * term, publish the next view without the node, and appends must go on through every engine;
 * at the end every acknowledged append is read exactly once, at its sequence number, in the
 * same order from every engine.
 *
 * The recovery times are printed (kill → first append issued after the kill acknowledged
 * through every live engine).
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startInProcCluster, type InProcCluster } from "./helpers/inproc-cluster.js";
import { tempDir } from "./helpers/tmp.js";
import { eventually, within } from "./helpers/async.js";
import { checkLog, startLoad, type Load } from "./helpers/inproc-load.js";
import { FileStore } from "../src/coord/index.js";
import { systemClock } from "../src/clock/clock.js";
import { Controller, type ControllerEvent } from "../src/controller/controller.js";
import { storeSealer } from "../src/controller/sealer.js";
import { registerNode, type NodeRegistration } from "../src/controller/membership.js";
import { encodeViewRecord, VIEW_KEY } from "../src/controller/view-record.js";
import {
  readPublishedView,
  ViewFollower,
  type FollowingRole,
} from "../src/cluster/view-follower.js";
import type { Role } from "../src/cluster/config.js";
import type { View } from "../src/log/view.js";
import type { Logger } from "../src/util/logger.js";

/** Bound on the time from a kill until every live engine serves appends again. */
const RECOVERY_BOUND_MS = 15_000;
/** Bound on a standby controller taking over from an abandoned leader. */
const TAKEOVER_BOUND_MS = 15_000;

/** When each controller event was emitted. */
const eventTimes = new WeakMap<ControllerEvent, number>();

/** Time from `from` to the controller event `pick` selects; throws when there is none. */
function eventDelay(
  events: readonly ControllerEvent[],
  pick: (e: ControllerEvent) => boolean,
  from: number,
): number {
  const e = events.find(pick);
  if (e === undefined) throw new Error("the expected controller event did not occur");
  return eventTimes.get(e)! - from;
}

/** A logger keeping its lines (warnings and errors of the controllers and followers) as evidence. */
function recordingLogger(lines: string[], bindings: Record<string, unknown> = {}): Logger {
  const put =
    (level: string) =>
    (obj: object, msg?: string): void => {
      const text = JSON.stringify({ ...bindings, ...obj }, (_k, v: unknown) =>
        v instanceof Error ? v.message : v,
      );
      lines.push(`${new Date().toISOString()} ${level} ${msg ?? ""} ${text}`);
      if (lines.length > 400) lines.splice(0, lines.length - 400);
    };
  return {
    debug: () => {},
    info: put("info"),
    warn: put("warn"),
    error: put("error"),
    child: (b) => recordingLogger(lines, { ...bindings, ...b }),
  };
}

interface NodeHandle {
  readonly id: string;
  readonly role: Role;
  readonly object: FollowingRole;
  readonly follower: ViewFollower;
  readonly registration: NodeRegistration;
}

interface Harness {
  readonly c: InProcCluster;
  readonly store: FileStore;
  readonly nodes: Map<string, NodeHandle>;
  readonly lines: string[];
  readonly logger: Logger;
  /** Starts a controller with the store sealer; its events go to `events`. */
  startController(id: string, events: ControllerEvent[]): Promise<Controller>;
  /** The view published in the store. */
  publishedView(): Promise<View>;
  /** Cuts `id` off the network, lets its lease expire and stops its follower, as a crash would. */
  kill(id: string): Promise<void>;
  /** Terms of the roles, the published view, the controllers and the latest log lines. */
  readonly context: () => Promise<string>;
}

/**
 * An in-process cluster whose nodes follow the file store, as `startNode` sets a node up:
 * a follower started (reading the published view), the node registered with a lease, the
 * follower attached to the role.
 */
async function withFileStoreCluster(
  options: { engines: number; storages: number; sequencers: number; replication: number },
  fn: (h: Harness) => Promise<void>,
): Promise<void> {
  const t = tempDir("boki-failover-file-");
  const cleanups: Array<() => Promise<void> | void> = [() => t.remove()];
  const lines: string[] = [];
  const logger = recordingLogger(lines);
  try {
    const c = await startInProcCluster(join(t.dir, "data"), options);
    cleanups.push(async () => {
      c.gate.down.clear();
      c.gate.dropIf = null;
      await c.close();
    });
    // One store for the whole process: nodes, controllers and the test share it.
    const store = await FileStore.open({ dir: join(t.dir, "coord"), clock: systemClock });
    cleanups.push(() => store.close());
    // Term 1 exactly as the in-process cluster runs it.
    await store.put(
      VIEW_KEY,
      encodeViewRecord({
        view: c.view.config,
        history: [],
        cause: "initial view of the in-process cluster",
        publishedAtMs: Date.now(),
      }),
    );
    const controllers: Array<{ controller: Controller; events: ControllerEvent[] }> = [];
    const nodes = new Map<string, NodeHandle>();
    const roles: Array<[Role, FollowingRole & { readonly id: string }]> = [
      ...c.sequencers.map((s) => ["sequencer", s] as [Role, typeof s]),
      ...c.storageNodes.map((s) => ["storage", s] as [Role, typeof s]),
      ...c.engines.map((e) => ["engine", e] as [Role, typeof e]),
    ];
    for (const [role, object] of roles) {
      const id = object.id;
      const log = logger.child({ node: id, role });
      const follower = await ViewFollower.start({ store, node: id, logger: log });
      cleanups.push(() => follower.close());
      expect(follower.view?.term, `${id} reads term 1 from the store`).toBe(1);
      const registration = await registerNode(
        store,
        {
          id,
          role,
          host: "inproc",
          port: 0,
          pid: process.pid,
          startedAt: Date.now(),
          term: follower.view!.term,
        },
        { logger: log },
      );
      cleanups.push(() => registration.close());
      follower.attach(object);
      nodes.set(id, { id, role, object, follower, registration });
    }
    // Controllers close first (registrations closing must not look like failures to them).
    cleanups.push(async () => {
      for (const { controller } of controllers) await controller.close();
    });
    const publishedView = async (): Promise<View> => (await readPublishedView(store))!.view;
    const h: Harness = {
      c,
      store,
      nodes,
      lines,
      logger,
      startController: async (id, events) => {
        const controller = new Controller({
          store,
          id,
          sealer: storeSealer(store, { logger: logger.child({ sealer: id }) }),
          clock: systemClock,
          logger,
          onEvent: (e) => {
            eventTimes.set(e, Date.now());
            events.push(e);
          },
        });
        controllers.push({ controller, events });
        await controller.start();
        return controller;
      },
      publishedView,
      kill: async (id) => {
        const n = nodes.get(id)!;
        c.gate.down.add(id);
        n.registration.abandon();
        await within(`stopping ${id}'s follower`, n.follower.close(), 5_000);
      },
      context: async () => {
        const v = await publishedView().catch((e: unknown) => (e as Error).message);
        return [
          `published view: ${typeof v === "string" ? v : JSON.stringify(v.config)}`,
          `role terms: ${[...nodes.values()].map((n) => `${n.id}=${n.object.term}`).join(" ")}`,
          ...controllers.map(
            ({ controller, events }) =>
              `controller ${JSON.stringify(controller.status())} events ${JSON.stringify(
                events.map((e) => ({ ...e, ...("view" in e ? { view: e.view.term } : {}) })),
              )}`,
          ),
          "log:",
          ...lines.slice(-60),
        ].join("\n");
      },
    };
    await fn(h);
  } finally {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await within("cleaning up", Promise.resolve(cleanup()), 10_000);
      } catch (err) {
        console.error(`cleanup failed: ${(err as Error).message}`);
      }
    }
  }
}

/**
 * Kills `victim` under load and waits until the store holds term 2 and every engine
 * acknowledged an append issued after the kill; returns, from the kill, when the controller
 * saw the node fail, when it published term 2, and the recovery time.
 */
async function killAndRecover(
  h: Harness,
  l: Load,
  victim: string,
  events: ControllerEvent[],
): Promise<{ recoveryMs: number; failedMs: number; publishedMs: number }> {
  const engines = h.c.engines.map((e) => e.id);
  const killedAt = Date.now();
  await h.kill(victim);
  const recoveryMs = await eventually(
    `term 2 published and appends through every engine after killing ${victim}`,
    async () => ((await h.publishedView()).term === 2 ? l.recovered(killedAt, engines) : null),
    RECOVERY_BOUND_MS,
    h.context,
  );
  expect(events).toContainEqual({ type: "node-failed", id: victim });
  const failedMs = eventDelay(events, (e) => e.type === "node-failed" && e.id === victim, killedAt);
  const publishedMs = eventDelay(
    events,
    (e) => e.type === "view-published" && e.view.term === 2,
    killedAt,
  );
  return { recoveryMs, failedMs, publishedMs };
}

/** The sequencers that answered the seal of `term` for log 0, by id. */
async function sealAnswers(h: Harness, term: number): Promise<string[]> {
  const { entries } = await h.store.list(`/boki/seal/${term}/0/`);
  return entries.map((kv) => kv.key.slice(`/boki/seal/${term}/0/`.length)).sort();
}

/** Checks that every live role moved to `term` through its follower, and the victim did not. */
async function expectRolesAt(h: Harness, term: number, victim: string): Promise<void> {
  await eventually(
    `every live role at term ${term}`,
    () =>
      [...h.nodes.values()].every((n) => n.id === victim || n.object.term === term) &&
      [...h.nodes.values()].every((n) => n.id === victim || n.follower.view?.term === term),
    5_000,
    h.context,
  );
  expect(h.nodes.get(victim)!.object.term, `${victim} was cut off and stays in term 1`).toBe(1);
}

/** Starts controller `id` and waits until it leads. */
async function leadingController(
  h: Harness,
  id: string,
  events: ControllerEvent[],
): Promise<Controller> {
  const controller = await h.startController(id, events);
  await eventually(`${id} leads`, () => controller.isLeading(), 10_000, h.context);
  return controller;
}

/**
 * Runs `fn` under load through every engine (after the first 50 appends); then checks that
 * no append failed and that the log holds every acknowledged one.
 */
async function underLoad(h: Harness, fn: (l: Load) => Promise<void>): Promise<void> {
  const l = startLoad(h.c, { appenders: 2 });
  try {
    await eventually("appends before the kill", () => l.acked.length >= 50, 10_000);
    await fn(l);
  } finally {
    await l.stop();
  }
  expect(l.errors).toEqual([]);
  await checkLog(h.c, l.acked);
}

/** Appends keep being acknowledged through every engine from now on. */
async function expectAppendsGoOn(h: Harness, l: Load): Promise<void> {
  const after = Date.now();
  await eventually(
    "more appends through every engine in term 2",
    () =>
      l.recovered(
        after,
        h.c.engines.map((e) => e.id),
      ),
    RECOVERY_BOUND_MS,
    h.context,
  );
}

describe("failover with the file coordination store (in-process cluster, real disks)", () => {
  const shape = { engines: 2, storages: 4, sequencers: 3, replication: 3 };

  it("with the file coordination store, a storage node cut off and its lease lost: the controller seals term 1 and publishes term 2 without it; appends go on through every engine and nothing acknowledged is lost", async () => {
    await withFileStoreCluster(shape, async (h) => {
      const events: ControllerEvent[] = [];
      await leadingController(h, "controller-a", events);
      await underLoad(h, async (l) => {
        const t = await killAndRecover(h, l, "storage-0", events);
        console.log(
          `file store, storage-0 killed: failure noticed after ${t.failedMs} ms, term 2 published after ${t.publishedMs} ms, recovery (kill → appends through every engine) ${t.recoveryMs} ms`,
        );
        const v = (await h.publishedView()).config;
        expect(v.term).toBe(2);
        expect(v.storages).toEqual(["storage-1", "storage-2", "storage-3"]);
        expect(v.sequencers).toEqual([["sequencer-0", "sequencer-1", "sequencer-2"]]);
        // All three sequencers answered the seal of term 1.
        expect(await sealAnswers(h, 1)).toEqual(["sequencer-0", "sequencer-1", "sequencer-2"]);
        expect(v.engines).toEqual(["engine-0", "engine-1"]);
        expect(v.replication).toBe(3);
        expect(v.starts).toHaveLength(1);
        await expectRolesAt(h, 2, "storage-0");
        // Appends keep going in term 2 through both engines.
        await expectAppendsGoOn(h, l);
        expect(t.recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
      });
    });
  }, 40_000);

  it("with the file coordination store, the primary sequencer cut off and its lease lost: the two backups seal term 1 and term 2's sequencer group is the two of them, led by sequencer-1; appends go on through every engine and nothing acknowledged is lost", async () => {
    await withFileStoreCluster(shape, async (h) => {
      const events: ControllerEvent[] = [];
      await leadingController(h, "controller-a", events);
      await underLoad(h, async (l) => {
        const t = await killAndRecover(h, l, "sequencer-0", events);
        console.log(
          `file store, sequencer-0 (primary) killed: failure noticed after ${t.failedMs} ms, term 2 published after ${t.publishedMs} ms, recovery (kill → appends through every engine) ${t.recoveryMs} ms`,
        );
        const v = (await h.publishedView()).config;
        expect(v.term).toBe(2);
        expect(v.sequencers).toEqual([["sequencer-1", "sequencer-2"]]);
        expect(v.storages).toEqual(["storage-0", "storage-1", "storage-2", "storage-3"]);
        expect(v.engines).toEqual(["engine-0", "engine-1"]);
        expect(v.starts).toHaveLength(1);
        // Only the two live sequencers answered the seal of term 1.
        expect(await sealAnswers(h, 1)).toEqual(["sequencer-1", "sequencer-2"]);
        await expectRolesAt(h, 2, "sequencer-0");
        await expectAppendsGoOn(h, l);
        expect(t.recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
      });
    });
  }, 40_000);

  it("with the file coordination store, the leading controller abandoned (as if it died): the standby on the same store takes over and alone handles a storage node lost afterwards; appends go on and nothing acknowledged is lost", async () => {
    await withFileStoreCluster(shape, async (h) => {
      const eventsA: ControllerEvent[] = [];
      const eventsB: ControllerEvent[] = [];
      const a = await leadingController(h, "controller-a", eventsA);
      const b = await h.startController("controller-b", eventsB);
      // B stands by while A leads.
      await eventually("controller-b stands by", () => eventsB.length > 0, 5_000, h.context);
      expect(b.isLeading()).toBe(false);
      await underLoad(h, async (l) => {
        const abandonedAt = Date.now();
        a.abandon();
        expect(a.isLeading()).toBe(false);
        await eventually("controller-b leads", () => b.isLeading(), TAKEOVER_BOUND_MS, h.context);
        const takeoverMs = Date.now() - abandonedAt;
        expect(eventsB).toContainEqual({ type: "leading", term: 1 });
        expect((await h.publishedView()).term).toBe(1);

        const t = await killAndRecover(h, l, "storage-0", eventsB);
        console.log(
          `file store, controller failover: controller-b leads ${takeoverMs} ms after controller-a was abandoned; then storage-0 killed: failure noticed after ${t.failedMs} ms, term 2 published by controller-b after ${t.publishedMs} ms, recovery (kill → appends through every engine) ${t.recoveryMs} ms`,
        );
        // The abandoned controller did nothing after it was abandoned.
        expect(
          eventsA.filter((e) => e.type === "view-published" || e.type === "node-failed"),
        ).toEqual([]);
        const v = (await h.publishedView()).config;
        expect(v.term).toBe(2);
        expect(v.storages).toEqual(["storage-1", "storage-2", "storage-3"]);
        expect(v.sequencers).toEqual([["sequencer-0", "sequencer-1", "sequencer-2"]]);
        // All three sequencers answered the seal of term 1.
        expect(await sealAnswers(h, 1)).toEqual(["sequencer-0", "sequencer-1", "sequencer-2"]);
        await expectRolesAt(h, 2, "storage-0");
        expect(t.recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
      });
    });
  }, 50_000);
});
