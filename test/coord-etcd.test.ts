/**
 * The etcd-backed coordination store against a real etcd server that the tests start on
 * loopback ports (and stop): the shared contract, then etcd's own cases, including etcd
 * killed with SIGKILL and restarted on its data directory.
 *
 * The etcd binary must be installed (`.ci/run` does it; or `apt-get install etcd-server`);
 * without it these tests fail and say so.
 */
import { Etcd3 } from "etcd3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  EtcdStore,
  valueText,
  type CoordStore,
  type Revision,
  type WatchEvent,
} from "../src/coord/index.js";
import { coordContract, eventually, within } from "./helpers/coord-contract.js";
import { freePort, requireEtcd, startEtcd, type EtcdProcess } from "./helpers/etcd-process.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("etcd store: the coordination store contract", () => {
  let etcd: EtcdProcess | null = null;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });
  coordContract(() => ({
    open: () => EtcdStore.open({ endpoints: etcd!.endpoint }),
    elapse: sleep,
    // etcd looks for expired leases every 500 ms, then deletes their keys through raft.
    settleMs: 4_000,
  }));
});

describe("etcd store", () => {
  let etcd: EtcdProcess | null = null;
  let stores: CoordStore[] = [];
  const open = async (opTimeoutMs?: number) => {
    const s = await EtcdStore.open({
      endpoints: etcd!.endpoint,
      ...(opTimeoutMs === undefined ? {} : { opTimeoutMs }),
    });
    stores.push(s);
    return s;
  };
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it("explains how to install etcd when its binary is missing", () => {
    expect(() => requireEtcd("/nonexistent/etcd")).toThrow(
      /\.ci\/run.*apt-get install etcd-server/s,
    );
  });

  it("fails to open with UNAVAILABLE within its timeout when no etcd answers", async () => {
    const port = await freePort();
    const t0 = Date.now();
    await expect(
      EtcdStore.open({ endpoints: `http://127.0.0.1:${port}`, opTimeoutMs: 500 }),
    ).rejects.toMatchObject({ code: "UNAVAILABLE", retryable: true });
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it("refuses endpoints that are not URLs", async () => {
    await expect(EtcdStore.open({ endpoints: "127.0.0.1:2379" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(EtcdStore.open({ endpoints: [] })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("rounds lease TTLs up to whole seconds, as etcd counts them", async () => {
    const s = await open();
    const lease = await s.grantLease(1_500);
    expect(lease.ttlMs).toBe(2_000);
    await lease.revoke();
  });

  it("ends a watch from a compacted revision with compacted", async () => {
    const s = await open();
    const first = await s.put("/compact/k", "1");
    const last = await s.put("/compact/k", "2");
    const raw = new Etcd3({ hosts: etcd!.endpoint });
    try {
      await raw.kv.compact({ revision: last, physical: true });
    } finally {
      raw.close();
    }
    const w = await s.watch("/compact/", () => undefined, { fromRevision: first });
    const end = await within(w.done, 5_000, "watch end");
    expect(end).toEqual({ reason: "compacted", compactRevision: last });
    const events: WatchEvent[] = [];
    await s.watch("/compact/", (e) => void events.push(e), { fromRevision: last });
    await eventually(() => events.length === 1, 5_000, "the revision still held");
    expect(events[0]!.revision).toBe(last);
  });

  describe("when etcd is killed (SIGKILL) and restarted on its data directory", () => {
    it("calls fail with UNAVAILABLE within their timeout while it is down, and work again after", async () => {
      const s = await open(1_000);
      await s.put("/down/k", "before");
      await etcd!.stop("SIGKILL");
      try {
        const t0 = Date.now();
        await expect(s.get("/down/k")).rejects.toMatchObject({
          code: "UNAVAILABLE",
          retryable: true,
        });
        await expect(s.put("/down/k", "during")).rejects.toMatchObject({ code: "UNAVAILABLE" });
        const cas = await s.putIf("/down/k", "during", "absent").catch((e: unknown) => e);
        expect(cas).toMatchObject({ code: "UNAVAILABLE" });
        expect(Date.now() - t0).toBeLessThan(6_000);
      } finally {
        await etcd!.restart();
      }
      await eventually(
        async () => (await s.get("/down/k").catch(() => null)) !== null,
        10_000,
        "reads after the restart",
      );
      expect(valueText((await s.get("/down/k"))!)).toBe("before");
      expect(await s.putIf("/down/k", "after", "absent")).toBeNull();
    });

    it("a watch resumes where it stopped: every change is delivered once, in order", async () => {
      const watcher = await open();
      const writer = await open();
      const events: WatchEvent[] = [];
      const w = await watcher.watch("/resume/", (e) => void events.push(e));
      const revs: Revision[] = [];
      for (let i = 0; i < 5; i++) revs.push(await writer.put(`/resume/${i}`, `${i}`));
      await eventually(() => events.length === 5, 5_000, "events before the kill");
      await etcd!.stop("SIGKILL");
      await etcd!.restart();
      // Written as soon as etcd answers: likely before the watch has reconnected.
      for (let i = 5; i < 10; i++) {
        let rev: Revision | null = null;
        const deadline = Date.now() + 10_000;
        while (rev === null) {
          try {
            rev = await writer.put(`/resume/${i}`, `${i}`);
          } catch (e) {
            if (Date.now() > deadline) throw e;
          }
        }
        revs.push(rev);
      }
      await writer.delete("/resume/0");
      await eventually(() => events.length === 11, 15_000, "events after the restart");
      await sleep(200);
      expect(events).toHaveLength(11);
      expect(events.slice(0, 10).map((e) => e.revision)).toEqual(revs);
      expect(events.slice(0, 10).map((e) => e.key)).toEqual(
        Array.from({ length: 10 }, (_, i) => `/resume/${i}`),
      );
      expect(events[10]).toMatchObject({ type: "delete", key: "/resume/0" });
      expect(await Promise.race([w.done, sleep(10).then(() => "running")])).toBe("running");
    });

    it("a lease survives a short outage: keep-alives resume, its keys and its leadership stay", async () => {
      const a = await open();
      const b = await open();
      const lease = await a.grantLease(5_000);
      await a.put("/outage/nodes/n1", "addr", { lease });
      const leader = await a.campaign("/outage/controller", "a", { ttlMs: 5_000 });
      await etcd!.stop("SIGKILL");
      await sleep(500);
      await etcd!.restart();
      // Longer than the TTL, so only keep-alives after the restart can have held the lease.
      await sleep(6_000);
      expect(lease.state).toBe("alive");
      expect(leader.isLeader()).toBe(true);
      expect((await b.get("/outage/nodes/n1"))!.leaseId).toBe(lease.id);
      expect((await b.leader("/outage/controller"))!.candidateId).toBe("a");
    }, 30_000);

    it("a lease whose keep-alives fail for its TTL is reported lost, and its keys go once etcd is back", async () => {
      const a = await open();
      const lease = await a.grantLease(2_000);
      await a.put("/long/nodes/n1", "addr", { lease });
      const leader = await a.campaign("/long/controller", "a", { ttlMs: 2_000 });
      await etcd!.stop("SIGKILL");
      const t0 = Date.now();
      try {
        const err = await within(lease.lost, 4_000, "lease lost during the outage");
        expect(err.code).toBe("LEASE_LOST");
        // Declared within the TTL of the last keep-alive sent before the kill (with a margin
        // for timers on a loaded machine), so no later than etcd could have expired it.
        expect(Date.now() - t0).toBeLessThanOrEqual(2_400);
        await within(leader.lost, 1_000, "leadership lost during the outage");
        expect(leader.isLeader()).toBe(false);
      } finally {
        await etcd!.restart();
      }
      const b = await open();
      await eventually(
        async () => (await b.get("/long/nodes/n1").catch(() => "error")) === null,
        10_000,
        "keys of the lost lease removed",
      );
      await eventually(
        async () => (await b.leader("/long/controller").catch(() => "error")) === null,
        10_000,
        "no leader left",
      );
      // A new campaign works at once.
      const again = await b.campaign("/long/controller", "b", { ttlMs: 2_000, timeoutMs: 5_000 });
      expect(again.isLeader()).toBe(true);
    }, 40_000);
  });
});
