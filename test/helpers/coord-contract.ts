/**
 * The behaviour every coordination-store backend must show, as one suite that each backend's
 * test file runs against its own harness.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { BokiError } from "../../src/log/errors.js";
import {
  KEY_BYTES_MAX,
  LEASE_TTL_MS_MIN,
  valueText,
  VALUE_BYTES_MAX,
  type CoordStore,
  type Leadership,
  type Revision,
  type WatchEvent,
} from "../../src/coord/index.js";

export interface CoordHarness {
  /** A new client of the store every test of the suite shares. */
  open(): Promise<CoordStore>;
  /** Lets `ms` of the store's time pass: a manual clock advances, a real one is waited for. */
  elapse(ms: number): Promise<void>;
  /** Longest real time for the effects of an expiry to show once its time has passed. */
  readonly settleMs: number;
}

/** Resolves with `p`'s value, or fails the test if it takes longer than `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns true; fails after `ms`. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether `p` is still pending after the macrotasks queued now have run. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, 30));
  return !settled;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as BokiError).code ?? String(e);
  }
  return "no error";
}

/** Collects a watch's events. */
function recorder(): { events: WatchEvent[]; listener: (e: WatchEvent) => void } {
  const events: WatchEvent[] = [];
  return { events, listener: (e) => void events.push(e) };
}

const TTL_MS = LEASE_TTL_MS_MIN;

export function coordContract(harness: () => CoordHarness): void {
  let clients: CoordStore[] = [];
  let prefixCounter = 0;
  /** A key prefix of the test's own, so tests sharing one store never see each other. */
  let p = "";

  const open = async (): Promise<CoordStore> => {
    const c = await harness().open();
    clients.push(c);
    return c;
  };
  const fresh = () => {
    p = `/t${process.pid}-${++prefixCounter}-${Date.now()}`;
  };

  afterEach(async () => {
    const cs = clients;
    clients = [];
    await Promise.all(cs.map((c) => c.close()));
  });

  describe("keys", () => {
    it("get returns what put stored, with its revisions and version; a missing key is null", async () => {
      fresh();
      const s = await open();
      expect(await s.get(`${p}/missing`)).toBeNull();
      const r1 = await s.put(`${p}/a`, "one");
      const kv = await s.get(`${p}/a`);
      expect(kv).not.toBeNull();
      expect(valueText(kv!)).toBe("one");
      expect(kv!.revision).toBe(r1);
      expect(kv!.createRevision).toBe(r1);
      expect(kv!.version).toBe(1);
      expect(kv!.leaseId).toBeNull();
      const r2 = await s.put(`${p}/a`, "two");
      expect(r2).toBeGreaterThan(r1);
      const kv2 = await s.get(`${p}/a`);
      expect(valueText(kv2!)).toBe("two");
      expect(kv2!.revision).toBe(r2);
      expect(kv2!.createRevision).toBe(r1);
      expect(kv2!.version).toBe(2);
    });

    it("bytes round-trip unchanged, and strings are stored as UTF-8", async () => {
      fresh();
      const s = await open();
      const bytes = new Uint8Array([0, 255, 1, 254, 10, 13]);
      await s.put(`${p}/bin`, bytes);
      expect(Array.from((await s.get(`${p}/bin`))!.value)).toEqual(Array.from(bytes));
      await s.put(`${p}/text`, "grüße ✓");
      const kv = (await s.get(`${p}/text`))!;
      expect(Array.from(kv.value)).toEqual(Array.from(new TextEncoder().encode("grüße ✓")));
    });

    it("a write by one client is seen by another at once", async () => {
      fresh();
      const a = await open();
      const b = await open();
      await a.put(`${p}/k`, "v");
      expect(valueText((await b.get(`${p}/k`))!)).toBe("v");
      expect(await b.delete(`${p}/k`)).toBe(true);
      expect(await a.get(`${p}/k`)).toBeNull();
    });

    it("list returns exactly the keys under the prefix, in key order, at a revision no older than them", async () => {
      fresh();
      const s = await open();
      for (const k of ["b", "a/x", "c", "a", "é", "B"]) await s.put(`${p}/dir/${k}`, k);
      await s.put(`${p}/dir`, "not under dir/");
      await s.put(`${p}/dis`, "outside");
      const { entries, revision } = await s.list(`${p}/dir/`);
      expect(entries.map((e) => e.key.slice(`${p}/dir/`.length))).toEqual([
        "B",
        "a",
        "a/x",
        "b",
        "c",
        "é",
      ]);
      expect(entries.map((e) => valueText(e))).toEqual(["B", "a", "a/x", "b", "c", "é"]);
      for (const e of entries) expect(revision).toBeGreaterThanOrEqual(e.revision);
      expect((await s.list(`${p}/none/`)).entries).toEqual([]);
    });

    it("delete removes a key and tells whether it existed", async () => {
      fresh();
      const s = await open();
      await s.put(`${p}/k`, "v");
      expect(await s.delete(`${p}/k`)).toBe(true);
      expect(await s.get(`${p}/k`)).toBeNull();
      expect(await s.delete(`${p}/k`)).toBe(false);
      await s.put(`${p}/k`, "again");
      const kv = (await s.get(`${p}/k`))!;
      expect(kv.version).toBe(1);
      expect(kv.createRevision).toBe(kv.revision);
    });

    it("refuses bad keys, values, prefixes and TTLs with typed errors before sending anything", async () => {
      fresh();
      const s = await open();
      expect(await codeOf(s.put("", "v"))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.get(""))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.put("x".repeat(KEY_BYTES_MAX + 1), "v"))).toBe("RECORD_TOO_LARGE");
      expect(await codeOf(s.put(`${p}/k`, new Uint8Array(VALUE_BYTES_MAX + 1)))).toBe(
        "RECORD_TOO_LARGE",
      );
      expect(await codeOf(s.put(`${p}/k`, 42 as unknown as string))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.putIf(`${p}/k`, "v", 0 as Revision))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.grantLease(LEASE_TTL_MS_MIN - 1))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.campaign(`${p}/e/`, "x"))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(s.campaign(`${p}/e`, ""))).toBe("INVALID_ARGUMENT");
      // A value of exactly the limit is fine.
      await s.put(`${p}/big`, new Uint8Array(VALUE_BYTES_MAX));
      expect((await s.get(`${p}/big`))!.value.length).toBe(VALUE_BYTES_MAX);
    });
  });

  describe("compare-and-set", () => {
    it("putIf absent creates a key only if it does not exist", async () => {
      fresh();
      const s = await open();
      const r = await s.putIf(`${p}/k`, "first", "absent");
      expect(r).not.toBeNull();
      expect(await s.putIf(`${p}/k`, "second", "absent")).toBeNull();
      expect(valueText((await s.get(`${p}/k`))!)).toBe("first");
    });

    it("putIf on a revision succeeds only over that revision", async () => {
      fresh();
      const s = await open();
      const r1 = await s.put(`${p}/view`, "term 1");
      const r2 = await s.putIf(`${p}/view`, "term 2", r1);
      expect(r2).not.toBeNull();
      expect(await s.putIf(`${p}/view`, "term 2 again", r1)).toBeNull();
      expect(await s.putIf(`${p}/missing`, "x", r1)).toBeNull();
      expect(await s.get(`${p}/missing`)).toBeNull();
      const r3 = await s.putIf(`${p}/view`, "term 3", r2!);
      expect(valueText((await s.get(`${p}/view`))!)).toBe("term 3");
      expect((await s.get(`${p}/view`))!.revision).toBe(r3);
    });

    it("of two clients racing to create the same key, exactly one wins, every time", async () => {
      fresh();
      const a = await open();
      const b = await open();
      for (let i = 0; i < 10; i++) {
        const key = `${p}/race-${i}`;
        const [ra, rb] = await Promise.all([
          a.putIf(key, "a", "absent"),
          b.putIf(key, "b", "absent"),
        ]);
        expect([ra, rb].filter((r) => r !== null)).toHaveLength(1);
        expect(valueText((await a.get(key))!)).toBe(ra !== null ? "a" : "b");
      }
    });

    it("of two clients publishing the next term over the same revision, exactly one wins, every time", async () => {
      fresh();
      const a = await open();
      const b = await open();
      let rev = await a.put(`${p}/view`, "term 0");
      for (let term = 1; term <= 10; term++) {
        const [ra, rb] = await Promise.all([
          a.putIf(`${p}/view`, `term ${term} by a`, rev),
          b.putIf(`${p}/view`, `term ${term} by b`, rev),
        ]);
        const wins = [ra, rb].filter((r) => r !== null);
        expect(wins).toHaveLength(1);
        const kv = (await b.get(`${p}/view`))!;
        expect(valueText(kv)).toBe(`term ${term} by ${ra !== null ? "a" : "b"}`);
        expect(kv.revision).toBe(wins[0]);
        rev = kv.revision;
      }
    });
  });

  describe("watches", () => {
    it("deliver every put and delete under the prefix, in revision order, and nothing else", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const rec = recorder();
      const w = await b.watch(`${p}/w/`, rec.listener);
      const revs: number[] = [];
      await Promise.all([
        (async () => {
          for (let i = 0; i < 15; i++) revs.push(await a.put(`${p}/w/a${i}`, `${i}`));
        })(),
        (async () => {
          for (let i = 0; i < 15; i++) revs.push(await b.put(`${p}/w/b${i}`, `${i}`));
        })(),
        (async () => {
          for (let i = 0; i < 5; i++) await a.put(`${p}/other/${i}`, "x");
        })(),
      ]);
      revs.push(await a.put(`${p}/w/a0`, "changed"));
      await a.delete(`${p}/w/b0`);
      await eventually(() => rec.events.length === 32, 5_000, "32 events");
      const seen = rec.events.map((e) => e.revision);
      expect(seen).toEqual([...seen].sort((x, y) => x - y));
      expect(new Set(seen).size).toBe(32);
      expect(seen.slice(0, 31).sort((x, y) => x - y)).toEqual([...revs].sort((x, y) => x - y));
      expect(rec.events.every((e) => e.key.startsWith(`${p}/w/`))).toBe(true);
      const last = rec.events[31]!;
      expect(last).toMatchObject({ type: "delete", key: `${p}/w/b0` });
      const changed = rec.events[30]!;
      expect(changed.type).toBe("put");
      if (changed.type === "put") expect(valueText(changed.kv)).toBe("changed");
      w.cancel();
    });

    it("from a past revision replay the history since then, so list-then-watch misses nothing", async () => {
      fresh();
      const s = await open();
      const r1 = await s.put(`${p}/h/1`, "one");
      await s.put(`${p}/h/2`, "two");
      await s.delete(`${p}/h/1`);
      const rec = recorder();
      await s.watch(`${p}/h/`, rec.listener, { fromRevision: r1 });
      await eventually(() => rec.events.length === 3, 5_000, "3 replayed events");
      expect(rec.events.map((e) => `${e.type} ${e.key}`)).toEqual([
        `put ${p}/h/1`,
        `put ${p}/h/2`,
        `delete ${p}/h/1`,
      ]);

      const listed = await s.list(`${p}/h/`);
      await s.put(`${p}/h/3`, "written between list and watch");
      const rec2 = recorder();
      await s.watch(`${p}/h/`, rec2.listener, {
        fromRevision: (listed.revision + 1) as Revision,
      });
      await eventually(() => rec2.events.length === 1, 5_000, "the write after the list");
      expect(rec2.events[0]!.key).toBe(`${p}/h/3`);
    });

    it("cancel stops delivery and resolves done with cancelled", async () => {
      fresh();
      const s = await open();
      const rec = recorder();
      const w = await s.watch(`${p}/c/`, rec.listener);
      await s.put(`${p}/c/1`, "x");
      await eventually(() => rec.events.length === 1, 5_000, "first event");
      w.cancel();
      w.cancel();
      expect(await w.done).toEqual({ reason: "cancelled" });
      await s.put(`${p}/c/2`, "y");
      await new Promise((r) => setTimeout(r, 100));
      expect(rec.events).toHaveLength(1);
    });

    it("wait for an async listener: one event at a time, in order", async () => {
      fresh();
      const s = await open();
      let running = 0;
      let maxRunning = 0;
      const keys: string[] = [];
      await s.watch(`${p}/slow/`, async (e) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 5));
        keys.push(e.key);
        running--;
      });
      for (let i = 0; i < 10; i++) await s.put(`${p}/slow/${i}`, "x");
      await eventually(() => keys.length === 10, 5_000, "10 events");
      expect(maxRunning).toBe(1);
      expect(keys).toEqual(Array.from({ length: 10 }, (_, i) => `${p}/slow/${i}`));
    });

    it("end with listener-failed when the listener throws", async () => {
      fresh();
      const s = await open();
      const w = await s.watch(`${p}/f/`, () => {
        throw new Error("boom");
      });
      await s.put(`${p}/f/1`, "x");
      const end = await within(w.done, 5_000, "watch end");
      expect(end.reason).toBe("listener-failed");
    });
  });

  describe("leases", () => {
    it("revoke deletes the lease's keys at once, watchers see it, and lost does not fire", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const rec = recorder();
      await b.watch(`${p}/nodes/`, rec.listener);
      const lease = await a.grantLease(TTL_MS * 5);
      expect(lease.state).toBe("alive");
      await a.put(`${p}/nodes/n1`, "addr", { lease });
      await a.put(`${p}/nodes/n2`, "addr", { lease });
      await a.put(`${p}/nodes/n3`, "no lease");
      expect((await b.get(`${p}/nodes/n1`))!.leaseId).toBe(lease.id);
      await lease.revoke();
      await lease.revoke();
      expect(lease.state).toBe("revoked");
      expect(await b.get(`${p}/nodes/n1`)).toBeNull();
      expect(await b.get(`${p}/nodes/n2`)).toBeNull();
      expect(await b.get(`${p}/nodes/n3`)).not.toBeNull();
      await eventually(() => rec.events.length === 5, 5_000, "5 events");
      const deletes = rec.events.filter((e) => e.type === "delete");
      expect(deletes.map((e) => e.key).sort()).toEqual([`${p}/nodes/n1`, `${p}/nodes/n2`]);
      expect(deletes[0]!.revision).toBe(deletes[1]!.revision);
      expect(await pending(lease.lost)).toBe(true);
    });

    it("a put with a revoked lease fails with LEASE_LOST", async () => {
      fresh();
      const s = await open();
      const lease = await s.grantLease(TTL_MS);
      await lease.revoke();
      expect(await codeOf(s.put(`${p}/k`, "v", { lease }))).toBe("LEASE_LOST");
      expect(await codeOf(s.putIf(`${p}/k`, "v", "absent", { lease }))).toBe("LEASE_LOST");
      expect(await s.get(`${p}/k`)).toBeNull();
    });

    it("keep-alives hold a lease and its keys over many TTLs", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const lease = await a.grantLease(TTL_MS);
      await a.put(`${p}/nodes/n1`, "addr", { lease });
      await harness().elapse(TTL_MS * 3);
      expect(lease.state).toBe("alive");
      expect(await b.get(`${p}/nodes/n1`)).not.toBeNull();
      expect(await pending(lease.lost)).toBe(true);
    });

    it("when keep-alives stop, the lease expires: lost fires, its keys are deleted, watchers see it", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const rec = recorder();
      await b.watch(`${p}/nodes/`, rec.listener);
      const lease = await a.grantLease(TTL_MS);
      await a.put(`${p}/nodes/n1`, "addr", { lease });
      await a.put(`${p}/nodes/n2`, "addr", { lease });
      lease.stopKeepAlive();
      await harness().elapse(TTL_MS + 100);
      const err = await within(lease.lost, harness().settleMs, "lease lost");
      expect(err.code).toBe("LEASE_LOST");
      expect(lease.state).toBe("lost");
      await eventually(
        async () =>
          (await b.get(`${p}/nodes/n1`)) === null && (await b.get(`${p}/nodes/n2`)) === null,
        harness().settleMs,
        "keys of the expired lease deleted",
      );
      await eventually(() => rec.events.length === 4, 5_000, "2 puts and 2 deletes");
      expect(rec.events.slice(2).map((e) => e.type)).toEqual(["delete", "delete"]);
      expect(await codeOf(a.put(`${p}/nodes/n3`, "v", { lease }))).toBe("LEASE_LOST");
    });

    it("a key put again without its lease outlives the lease", async () => {
      fresh();
      const s = await open();
      const lease = await s.grantLease(TTL_MS);
      await s.put(`${p}/k`, "leased", { lease });
      await s.put(`${p}/k`, "unleased");
      expect((await s.get(`${p}/k`))!.leaseId).toBeNull();
      await lease.revoke();
      expect(valueText((await s.get(`${p}/k`))!)).toBe("unleased");
    });
  });

  describe("leader election", () => {
    it("the first candidate leads, the next waits; leader() names the leader", async () => {
      fresh();
      const a = await open();
      const b = await open();
      expect(await a.leader(`${p}/controller`)).toBeNull();
      const l1 = await a.campaign(`${p}/controller`, "controller-a", { ttlMs: TTL_MS });
      expect(l1.isLeader()).toBe(true);
      expect(l1.candidateId).toBe("controller-a");
      const second = b.campaign(`${p}/controller`, "controller-b", { ttlMs: TTL_MS });
      expect(await pending(second)).toBe(true);
      const info = await b.leader(`${p}/controller`);
      expect(info).toMatchObject({
        candidateId: "controller-a",
        key: l1.key,
        revision: l1.revision,
      });
      expect(info!.leaseId).toBe(l1.lease.id);
      await l1.resign();
      const l2 = await within(second, 5_000, "second candidate elected");
      await l2.resign();
    });

    it("after the leader resigns the standby leads, with a higher fencing revision", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS });
      const standby = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS });
      expect(await pending(standby)).toBe(true);
      await l1.resign();
      expect(l1.isLeader()).toBe(false);
      const l2 = await within(standby, 5_000, "standby elected");
      expect(l2.isLeader()).toBe(true);
      expect(l2.revision).toBeGreaterThan(l1.revision);
      expect((await a.leader(`${p}/controller`))!.candidateId).toBe("b");
      expect(await pending(l1.lost)).toBe(true);
    });

    it("when the leader's lease expires the standby takes over and the old leader learns it lost", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS });
      const standby = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS * 5, timeoutMs: 30_000 });
      expect(await pending(standby)).toBe(true);
      // The active controller's process dies: its keep-alives stop.
      l1.lease.stopKeepAlive();
      await harness().elapse(TTL_MS + 100);
      const lost = await within(l1.lost, harness().settleMs, "old leader lost");
      expect(lost.code).toBe("LEASE_LOST");
      expect(l1.isLeader()).toBe(false);
      const l2 = await within(standby, harness().settleMs, "standby elected");
      expect(l2.isLeader()).toBe(true);
      expect(l2.candidateId).toBe("b");
      expect(l2.revision).toBeGreaterThan(l1.revision);
    });

    it("of three candidates exactly one leads at any time, in campaign order", async () => {
      fresh();
      const stores = [await open(), await open(), await open()];
      const won: Leadership[] = [];
      const order: string[] = [];
      const campaigns = stores.map((s, i) =>
        s.campaign(`${p}/controller`, `c${i}`, { ttlMs: TTL_MS * 5 }).then((l) => {
          won.push(l);
          order.push(l.candidateId);
          return l;
        }),
      );
      for (let round = 0; round < 3; round++) {
        await eventually(() => won.length === round + 1, 5_000, `leader ${round + 1}`);
        await new Promise((r) => setTimeout(r, 50));
        expect(won).toHaveLength(round + 1);
        expect(won.filter((l) => l.isLeader())).toHaveLength(1);
        const current = won[round]!;
        expect((await stores[0]!.leader(`${p}/controller`))!.candidateId).toBe(current.candidateId);
        await current.resign();
      }
      await Promise.all(campaigns);
      expect(new Set(order).size).toBe(3);
      expect(won.map((l) => l.revision)).toEqual(
        [...won.map((l) => l.revision)].sort((x, y) => x - y),
      );
      expect(await stores[0]!.leader(`${p}/controller`)).toBeNull();
    });

    it("a campaign that waits too long fails with TIMEOUT and withdraws its candidacy", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      const late = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS * 5, timeoutMs: 300 });
      const outcome = codeOf(late);
      await new Promise((r) => setTimeout(r, 50));
      await harness().elapse(400);
      expect(await within(outcome, 5_000, "campaign timeout")).toBe("TIMEOUT");
      const { entries } = await a.list(`${p}/controller/`);
      expect(entries.map((e) => e.key)).toEqual([l1.key]);
      expect(l1.isLeader()).toBe(true);
    });

    it("an aborted campaign rejects with the abort reason and withdraws its candidacy", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      const ac = new AbortController();
      const late = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS * 5, signal: ac.signal });
      expect(await pending(late)).toBe(true);
      ac.abort(new Error("shutting down"));
      await expect(within(late, 5_000, "aborted campaign")).rejects.toThrow("shutting down");
      const { entries } = await a.list(`${p}/controller/`);
      expect(entries.map((e) => e.key)).toEqual([l1.key]);
    });

    it("a waiting candidate whose election key is deleted fails with LEASE_LOST", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      const waiting = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS * 5 });
      const outcome = codeOf(waiting);
      await eventually(
        async () => (await a.list(`${p}/controller/`)).entries.length === 2,
        5_000,
        "second candidacy",
      );
      const other = (await a.list(`${p}/controller/`)).entries.find((e) => e.key !== l1.key)!;
      await a.delete(other.key);
      expect(await within(outcome, 5_000, "campaign outcome")).toBe("LEASE_LOST");
      expect(l1.isLeader()).toBe(true);
    });

    it("a leader whose election key is deleted learns that it lost", async () => {
      fresh();
      const a = await open();
      const b = await open();
      const l1 = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      await b.delete(l1.key);
      const lost = await within(l1.lost, 5_000, "leadership lost");
      expect(lost.message).toContain("deleted");
      expect(l1.isLeader()).toBe(false);
    });
  });

  describe("close", () => {
    it("ends watches with closed, revokes the client's leases, and refuses further calls", async () => {
      fresh();
      const a = await harness().open();
      const b = await open();
      const w = await a.watch(`${p}/x/`, () => undefined);
      const lease = await a.grantLease(TTL_MS * 5);
      await a.put(`${p}/nodes/a`, "addr", { lease });
      const l = await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      await a.close();
      await a.close();
      expect(await w.done).toEqual({ reason: "closed" });
      expect(await b.get(`${p}/nodes/a`)).toBeNull();
      expect(await b.leader(`${p}/controller`)).toBeNull();
      expect(l.isLeader()).toBe(false);
      expect(await codeOf(a.get(`${p}/nodes/a`))).toBe("STORE_CLOSED");
      expect(await codeOf(a.put(`${p}/k`, "v"))).toBe("STORE_CLOSED");
      expect(await codeOf(a.grantLease(TTL_MS))).toBe("STORE_CLOSED");
    });

    it("fails a pending campaign with STORE_CLOSED", async () => {
      fresh();
      const a = await open();
      const b = await harness().open();
      await a.campaign(`${p}/controller`, "a", { ttlMs: TTL_MS * 5 });
      const waiting = b.campaign(`${p}/controller`, "b", { ttlMs: TTL_MS * 5 });
      const outcome = codeOf(waiting);
      await new Promise((r) => setTimeout(r, 50));
      await b.close();
      expect(await within(outcome, 5_000, "campaign outcome")).toBe("STORE_CLOSED");
      expect((await a.list(`${p}/controller/`)).entries).toHaveLength(1);
    });
  });
}
