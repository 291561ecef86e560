/**
 * boki-ts/objects through the runtime: keyed objects, messages between them, transactions
 * and sagas, served by the dev server and called over HTTP.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "../src/testing/index.js";
import { eventually } from "./helpers/async.js";
import { http } from "./helpers/http.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/objects", import.meta.url));
let dev: TestServer;

beforeAll(async () => {
  dev = await startDevServer({ functions: FIXTURES, workers: 2 });
});
afterAll(async () => {
  await dev?.close();
});

function send(key: string, handler: string, input: unknown, headers: Record<string, string> = {}) {
  return http(dev.url, "POST", `/object/account/${key}/${handler}`, {
    body: JSON.stringify(input),
    headers,
  });
}
async function balance(key: string): Promise<number> {
  return (await send(key, "balance", null)).json as number;
}
async function stateOf(object: string, key: string) {
  return (await http(dev.url, "GET", `/object/${object}/${key}`)).json as {
    state: unknown;
    requestsApplied: number;
    lockedBy: string | null;
  };
}
function workflow(name: string, input: unknown, id: string) {
  return http(dev.url, "POST", `/workflow/${name}`, {
    body: JSON.stringify(input),
    headers: { "x-boki-workflow-id": id },
    timeoutMs: 60_000,
  });
}

describe("keyed objects", () => {
  test("handlers keep an instance's state; a shared handler reads it without a request of its own", async () => {
    expect((await send("alice", "open", { balance: 100 })).json).toBe(100);
    expect((await send("alice", "deposit", { amount: 5 })).json).toBe(105);
    expect(await balance("alice")).toBe(105);
    const s = await stateOf("account", "alice");
    expect(s).toMatchObject({ state: { balance: 105 }, requestsApplied: 2, lockedBy: null });
    expect(await balance("bob")).toBe(0);
  });

  test("concurrent exclusive requests on one instance apply one at a time: none is lost", async () => {
    await Promise.all(Array.from({ length: 40 }, () => send("hot", "deposit", { amount: 1 })));
    expect(await balance("hot")).toBe(40);
    expect((await stateOf("account", "hot")).requestsApplied).toBe(40);
  });

  test("a handler's typed error reaches the caller (422 with its code), and changes nothing", async () => {
    await send("carol", "open", { balance: 10 });
    const r = await send("carol", "withdraw", { amount: 50 });
    expect(r.status).toBe(422);
    expect(r.json).toMatchObject({ error: { code: "INSUFFICIENT_FUNDS" } });
    expect(await balance("carol")).toBe(10);
    expect((await send("carol", "nope", null)).json).toMatchObject({
      error: { code: "HANDLER_NOT_FOUND" },
    });
    expect((await http(dev.url, "POST", "/object/missing/k/h", { body: "null" })).status).toBe(404);
  });

  test("a request with an Idempotency-Key applies once however often it is sent", async () => {
    await send("dave", "open", { balance: 0 });
    const key = { "idempotency-key": "dep-1" };
    const outs = await Promise.all([
      send("dave", "deposit", { amount: 7 }, key),
      send("dave", "deposit", { amount: 7 }, key),
    ]);
    expect(outs.map((o) => o.json)).toEqual([7, 7]);
    expect((await send("dave", "deposit", { amount: 7 }, key)).json).toBe(7);
    expect(await balance("dave")).toBe(7);
  });

  test("a message is delivered exactly once after its request commits, a delayed one after its delay", async () => {
    expect((await send("erin", "depositAndRecord", { amount: 3 })).status).toBe(200);
    expect((await send("erin", "depositAndRecord", { amount: 4, delayMs: 800 })).status).toBe(200);
    const entries = async () =>
      (await http(dev.url, "POST", "/object/ledger/main/entries", { body: "null" })).json as Array<{
        amount: number;
      }>;
    await eventually("the first message", async () => (await entries()).length >= 1, 10_000);
    expect((await entries()).map((e) => e.amount)).toEqual([3]);
    await eventually("the delayed message", async () => (await entries()).length >= 2, 15_000);
    expect((await entries()).map((e) => e.amount)).toEqual([3, 4]);
  });

  test("a handler calls another instance and uses its answer", async () => {
    await send("fay", "open", { balance: 30 });
    await send("gus", "open", { balance: 12 });
    expect((await send("fay", "compare", { other: "gus" })).json).toBe(18);
  });
});

describe("transactions and sagas", () => {
  test("concurrent transfers as transactions keep the total, leave no lock, and each commits or aborts whole", async () => {
    const accounts = ["t0", "t1", "t2", "t3", "t4"];
    await Promise.all(accounts.map((a) => send(a, "open", { balance: 100 })));
    const transfers = Array.from({ length: 30 }, (_, i) => ({
      from: accounts[i % 5]!,
      to: accounts[(i * 3 + 1) % 5]!,
      amount: 1 + (i % 7) * 10,
    }));
    const outs = await Promise.all(transfers.map((t, i) => workflow("transfer", t, `tx-${i}`)));
    const results = outs.map(
      (o) => o.json as { status: string; attempts: number; error?: { code: string } },
    );
    expect(results.every((r) => r.status === "committed" || r.status === "aborted")).toBe(true);
    const balances = await Promise.all(accounts.map(balance));
    expect(balances.reduce((a, b) => a + b, 0)).toBe(500);
    for (const a of accounts) expect((await stateOf("account", a)).lockedBy).toBeNull();
    // Every abort is a handler's refusal (insufficient funds) or a wait-die death retried out.
    for (const r of results.filter((x) => x.status === "aborted")) {
      expect(["INSUFFICIENT_FUNDS", "TXN_DIED", "TIMEOUT"]).toContain(r.error?.code);
    }
    const committed = results.filter((r) => r.status === "committed").length;
    await eventually(
      "the ledger's record of each commit",
      async () => {
        const e = (
          await http(dev.url, "POST", "/object/ledger/transfers/entries", { body: "null" })
        ).json as unknown[];
        return e.length === committed;
      },
      10_000,
    );
  }, 120_000);

  test("a transfer that cannot be made aborts on both sides", async () => {
    await send("poor", "open", { balance: 5 });
    await send("rich", "open", { balance: 5 });
    const r = await workflow("transfer", { from: "poor", to: "rich", amount: 50 }, "tx-poor");
    expect(r.json).toMatchObject({
      status: "aborted",
      retryable: false,
      error: { code: "INSUFFICIENT_FUNDS" },
    });
    expect([await balance("poor"), await balance("rich")]).toEqual([5, 5]);
  });

  test("a saga whose second step fails compensates the first, once", async () => {
    await send("s-from", "open", { balance: 50 });
    await send("s-to", "open", { balance: 0 });
    await send("s-to", "freeze", null);
    const r = await workflow("transfer-saga", { from: "s-from", to: "s-to", amount: 20 }, "saga-1");
    expect(r.json).toMatchObject({
      status: "compensated",
      failedStep: 1,
      error: { code: "FROZEN" },
      compensated: [0],
      compensationsFailed: [],
    });
    expect(await balance("s-from")).toBe(50);
    const again = await workflow(
      "transfer-saga",
      { from: "s-from", to: "s-to", amount: 20 },
      "saga-1",
    );
    expect(again.json).toEqual(r.json);
    expect(await balance("s-from")).toBe(50);
    const ok = await workflow(
      "transfer-saga",
      { from: "s-from", to: "carol", amount: 20 },
      "saga-2",
    );
    expect(ok.json).toMatchObject({ status: "completed" });
    expect(await balance("s-from")).toBe(30);
  });
});
