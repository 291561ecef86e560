/**
 * The store end to end: a function module using it, served by `boki dev` as a real process
 * (functions in worker threads, log and gateway in the main thread, fsync per append),
 * called over HTTP with concurrent transfers. The total never changes, in any snapshot.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/tmp.js";
import { call } from "./helpers/http.js";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";

const FUNCTIONS = fileURLToPath(new URL("./fixtures/store/functions", import.meta.url));
const ACCOUNTS = Array.from({ length: 6 }, (_, i) => `acct:${i}`);
const CLIENTS = 8;
const TRANSFERS_PER_CLIENT = 12;

describe("store through boki dev", () => {
  let tmp: { dir: string; remove: () => void };
  let dev: DevProcess | undefined;

  beforeAll(async () => {
    tmp = tempDir("boki-store-dev-");
    dev = await startDevProcess(["--functions", FUNCTIONS, "--data", join(tmp.dir, "data")]);
  }, 90_000);

  afterAll(async () => {
    await dev?.stop();
    tmp?.remove();
  }, 30_000);

  it("concurrent transfers over HTTP keep the total, in every read-only snapshot and at the end", async () => {
    const url = dev!.url;
    const opened = await call(url, "store-bank-open", { accounts: ACCOUNTS, balance: 100 });
    expect(opened.status).toBe(200);
    const expected = new Map(ACCOUNTS.map((a) => [a, 100]));
    let done = false;
    let snapshots = 0;
    const auditor = (async () => {
      while (!done) {
        const r = await call(url, "store-bank-total", { accounts: ACCOUNTS });
        expect(r.status).toBe(200);
        expect((r.json as { total: number }).total).toBe(ACCOUNTS.length * 100);
        snapshots++;
      }
    })();
    let ok = 0;
    let conflicts = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; i < TRANSFERS_PER_CLIENT; i++) {
        const from = ACCOUNTS[(c + i) % ACCOUNTS.length]!;
        const to = ACCOUNTS[(c * 7 + i * 3 + 1) % ACCOUNTS.length]!;
        if (from === to) continue;
        const amount = 1 + ((c + i) % 9);
        const r = await call(url, "store-bank-transfer", { from, to, amount });
        expect(r.status, r.text).toBe(200);
        const out = r.json as { ok: boolean; reason?: string };
        if (out.ok) {
          ok++;
          expected.set(from, expected.get(from)! - amount);
          expected.set(to, expected.get(to)! + amount);
        } else if (out.reason === "conflict") conflicts++;
      }
    });
    try {
      await Promise.all(clients);
    } finally {
      done = true;
      await auditor;
    }
    expect(ok).toBeGreaterThan(CLIENTS * TRANSFERS_PER_CLIENT * 0.5);
    expect(snapshots).toBeGreaterThan(0);
    const final = await call(url, "store-bank-total", { accounts: ACCOUNTS });
    expect((final.json as { total: number; balances: number[] }).balances).toEqual(
      ACCOUNTS.map((a) => expected.get(a)),
    );
    // A plain (non-transactional) read of one account agrees with the transactions.
    const one = await call(url, "store-bank-balance", { account: ACCOUNTS[0] });
    expect(one.json).toBe(expected.get(ACCOUNTS[0]!));
    expect(conflicts).toBeLessThan(CLIENTS * TRANSFERS_PER_CLIENT);
  }, 60_000);
});
