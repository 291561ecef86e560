/**
 * The file-backed coordination store: the shared contract on a manual clock, then what only
 * this backend does (persistence, the lock, history bounds, exact expiry on its clock).
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  FILE_HISTORY_EVENTS_MAX,
  FILE_LOCK_NAME,
  FILE_STATE_NAME,
  FileStore,
  valueText,
  type CoordStore,
  type Revision,
  type WatchEvent,
} from "../src/coord/index.js";
import { coordContract, eventually, within } from "./helpers/coord-contract.js";
import { ManualClock } from "./helpers/manual-clock.js";
import { tempDir } from "./helpers/tmp.js";

/** Lets queued writes (one batch per event-loop turn) and their watch events go out. */
async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe("file store: the coordination store contract", () => {
  let dir: { dir: string; remove: () => void };
  let clock: ManualClock;
  beforeAll(() => {
    dir = tempDir("boki-coord-");
    clock = new ManualClock();
  });
  afterAll(() => dir.remove());
  coordContract(() => ({
    open: () => FileStore.open({ dir: dir.dir, clock }),
    elapse: async (ms) => {
      // In steps, so that the writes each step's timers queue are written between them.
      for (let left = ms; left > 0; left -= 50) {
        clock.advance(Math.min(50, left));
        await turns(2);
      }
    },
    settleMs: 2_000,
  }));
});

describe("in-memory store: the coordination store contract", () => {
  let clock: ManualClock;
  beforeAll(() => {
    clock = new ManualClock();
  });
  coordContract(() => ({
    open: () => FileStore.openInMemory({ name: "contract", clock }),
    elapse: async (ms) => {
      for (let left = ms; left > 0; left -= 50) {
        clock.advance(Math.min(50, left));
        await turns(2);
      }
    },
    settleMs: 2_000,
  }));
});

describe("file store", () => {
  let dirs: Array<{ dir: string; remove: () => void }> = [];
  let stores: CoordStore[] = [];
  const newDir = () => {
    const d = tempDir("boki-coord-");
    dirs.push(d);
    return d.dir;
  };
  const open = async (dir: string, clock?: ManualClock) => {
    const s = await FileStore.open(clock === undefined ? { dir } : { dir, clock });
    stores.push(s);
    return s;
  };
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
    for (const d of dirs) d.remove();
    dirs = [];
  });

  it("keeps keys, revisions and values across a reopen, and revisions continue", async () => {
    const dir = newDir();
    const a = await open(dir);
    await a.put("/boki/view", JSON.stringify({ term: 3 }));
    const r = await a.put("/boki/other", new Uint8Array([1, 2, 3]));
    await a.delete("/boki/other");
    await a.close();
    expect(existsSync(join(dir, FILE_LOCK_NAME))).toBe(false);
    const b = await open(dir);
    const kv = (await b.get("/boki/view"))!;
    expect(JSON.parse(valueText(kv))).toEqual({ term: 3 });
    expect(await b.get("/boki/other")).toBeNull();
    const r2 = await b.put("/boki/next", "x");
    expect(r2).toBe(r + 2);
  });

  it("writes its state by replacing the file whole: no temporary file is left behind", async () => {
    const dir = newDir();
    const a = await open(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => a.put(`/k/${i}`, `${i}`)));
    expect(readdirSync(dir).sort()).toEqual([FILE_LOCK_NAME, FILE_STATE_NAME].sort());
    const state = JSON.parse(readFileSync(join(dir, FILE_STATE_NAME), "utf8")) as {
      revision: number;
      keys: unknown[];
    };
    expect(state.revision).toBe(20);
    expect(state.keys).toHaveLength(20);
  });

  it("applies the writes of one turn in call order, as one batch", async () => {
    const dir = newDir();
    const a = await open(dir);
    const [r1, r2, r3] = await Promise.all([
      a.put("/k", "1"),
      a.putIf("/k", "2", 1 as Revision),
      a.putIf("/k", "3", 1 as Revision),
    ]);
    expect([r1, r2, r3]).toEqual([1, 2, null]);
    expect(valueText((await a.get("/k"))!)).toBe("2");
  });

  it("expires a lease exactly at its TTL on the injected clock, not a millisecond before", async () => {
    const dir = newDir();
    const clock = new ManualClock();
    const a = await open(dir, clock);
    const lease = await a.grantLease(1_000);
    await a.put("/nodes/n1", "addr", { lease });
    lease.stopKeepAlive();
    clock.advance(999);
    await turns();
    expect(lease.state).toBe("alive");
    expect(await a.get("/nodes/n1")).not.toBeNull();
    clock.advance(1);
    expect(lease.state).toBe("lost");
    await within(lease.lost, 1_000, "lost");
    await turns();
    expect(await a.get("/nodes/n1")).toBeNull();
  });

  it("gives stored leases a full TTL after a reopen, then expires them, as no one keeps them alive", async () => {
    const dir = newDir();
    const clock = new ManualClock();
    const a = await open(dir, clock);
    const lease = await a.grantLease(2_000);
    await a.put("/nodes/n1", "addr", { lease });
    // The process dies: no revoke, no close; the lock is left behind with a dead pid.
    lease.stopKeepAlive();
    stores = [];
    const copy = tempDir("boki-coord-copy-");
    dirs.push(copy);
    writeFileSync(join(copy.dir, FILE_STATE_NAME), readFileSync(join(dir, FILE_STATE_NAME)));
    const clock2 = new ManualClock();
    const b = await open(copy.dir, clock2);
    expect((await b.get("/nodes/n1"))!.leaseId).toBe(lease.id);
    const rec: WatchEvent[] = [];
    await b.watch("/nodes/", (e) => void rec.push(e));
    clock2.advance(1_999);
    await turns();
    expect(await b.get("/nodes/n1")).not.toBeNull();
    clock2.advance(1);
    await turns();
    expect(await b.get("/nodes/n1")).toBeNull();
    await eventually(() => rec.length === 1, 1_000, "delete event");
    expect(rec[0]).toMatchObject({ type: "delete", key: "/nodes/n1" });
    await a.close();
  });

  it("shares one state among the clients of a directory in a process, each with its own leases", async () => {
    const dir = newDir();
    const clock = new ManualClock();
    const a = await open(dir, clock);
    const b = await open(dir);
    const lease = await a.grantLease(1_000);
    await a.put("/nodes/a", "x", { lease });
    expect((await b.get("/nodes/a"))!.leaseId).toBe(lease.id);
    await expect(FileStore.open({ dir, clock: new ManualClock() })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await a.close();
    expect(await b.get("/nodes/a")).toBeNull();
    expect(existsSync(join(dir, FILE_LOCK_NAME))).toBe(true);
  });

  it("refuses a second process with STORE_LOCKED, and takes over the lock of a dead one", async () => {
    const dir = newDir();
    const a = await open(dir);
    await a.put("/k", "v");
    const script = `
      import { FileStore } from ${JSON.stringify(new URL("../src/coord/file-store.ts", import.meta.url).pathname)};
      try { await FileStore.open({ dir: ${JSON.stringify(dir)} }); console.log("opened"); }
      catch (e) { console.log(e.code); }
    `;
    const out = await new Promise<string>((resolve) => {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let text = "";
      child.stdout.on("data", (c: Buffer) => (text += c.toString()));
      child.stderr.on("data", (c: Buffer) => (text += c.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("exit", () => {
        clearTimeout(timer);
        resolve(text.trim());
      });
    });
    expect(out).toBe("STORE_LOCKED");
    await a.close();
    stores = [];

    // A lock whose owner is gone does not block.
    const dead = spawn(process.execPath, ["-e", ""]);
    await new Promise((r) => dead.on("exit", r));
    writeFileSync(join(dir, FILE_LOCK_NAME), String(dead.pid));
    const b = await open(dir);
    expect(valueText((await b.get("/k"))!)).toBe("v");
  }, 40_000);

  it("fails to open a corrupt state file with DATA_LOST, and leaves no lock behind", async () => {
    const dir = newDir();
    writeFileSync(join(dir, FILE_STATE_NAME), '{"format":1,"revision":');
    await expect(FileStore.open({ dir })).rejects.toMatchObject({ code: "DATA_LOST" });
    expect(existsSync(join(dir, FILE_LOCK_NAME))).toBe(false);
  });

  it("ends a watch from a revision older than its history with compacted", async () => {
    const dir = newDir();
    const a = await open(dir);
    const first = await a.put("/k", "0");
    for (let i = 0; i < FILE_HISTORY_EVENTS_MAX; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => a.put(`/k/${i + j}`, "x")));
    }
    const w = await a.watch("/k", () => undefined, { fromRevision: first });
    const end = await within(w.done, 1_000, "watch end");
    expect(end.reason).toBe("compacted");
    // A revision still in the history replays.
    const seen: number[] = [];
    const recent = (first + 1_000) as Revision;
    await a.watch("/k", (e) => void seen.push(e.revision), { fromRevision: recent });
    await eventually(() => seen.length === FILE_HISTORY_EVENTS_MAX - 999, 5_000, "replay");
    expect(seen[0]).toBe(recent);
  });

  it("ends a watch whose listener falls too far behind with overflow", async () => {
    const dir = newDir();
    const a = await open(dir);
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    const w = await a.watch("/k/", () => blocked);
    for (let i = 0; i < 11; i++) {
      await Promise.all(Array.from({ length: 1_000 }, (_, j) => a.put(`/k/${i}-${j}`, "x")));
    }
    expect(await within(w.done, 1_000, "watch end")).toEqual({ reason: "overflow" });
    release();
  });
});
