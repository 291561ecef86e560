/**
 * Transactions and sagas across kill -9: `boki dev` is killed at random points while
 * transfers between accounts run (as transactions and as sagas, started asynchronously),
 * then restarted on the same data, several times. Afterwards every coordinator has finished
 * its protocol (recovered from its log), no account is left locked, the total balance is
 * what it was, and every saga either completed or compensated every step that succeeded.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { eventually, sleep } from "./helpers/async.js";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/objects", import.meta.url));
const ACCOUNTS = Array.from({ length: 8 }, (_, i) => `acct-${i}`);
const START_BALANCE = 100;
const ROUNDS = 4;
const PER_ROUND = 12;

describe("transactions and sagas across kill -9 of boki dev", () => {
  const tmp = tempDir("boki-objects-crash-");
  let dev: DevProcess | undefined;
  const data = join(tmp.dir, "data");
  const start = () => startDevProcess(["--functions", FIXTURES, "--data", data, "--workers", "2"]);
  afterAll(async () => {
    await dev?.stop("SIGKILL");
    tmp.remove();
  });

  test("the total is kept, no lock is left, every coordinator finishes and no saga step is left without its compensation", async () => {
    const seed = Number(process.env["OBJECTS_CRASH_SEED"] ?? Date.now() % 100_000);
    console.log(`objects crash test: seed ${seed}`);
    let x = seed || 1;
    const random = () => (x = (x * 48271) % 2147483647) / 2147483647;
    dev = await start();
    for (const a of ACCOUNTS) {
      const r = await http(dev.url, "POST", `/object/account/${a}/open`, {
        body: JSON.stringify({ balance: START_BALANCE }),
        headers: { "idempotency-key": `open-${a}` },
      });
      expect(r.status).toBe(200);
    }
    const started: Array<{ id: string; kind: "transfer" | "transfer-saga"; input: unknown }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      if (dev === undefined) dev = await start();
      for (let i = 0; i < PER_ROUND; i++) {
        const from = ACCOUNTS[Math.floor(random() * ACCOUNTS.length)]!;
        const to =
          ACCOUNTS[
            (ACCOUNTS.indexOf(from) + 1 + Math.floor(random() * (ACCOUNTS.length - 1))) %
              ACCOUNTS.length
          ]!;
        const kind = i % 2 === 0 ? ("transfer" as const) : ("transfer-saga" as const);
        const input = { from, to, amount: 10 + Math.floor(random() * 60) };
        const id = `${kind}-${round}-${i}`;
        started.push({ id, kind, input });
        const r = await http(dev.url, "POST", `/async/workflow/${kind}`, {
          body: JSON.stringify(input),
          headers: { "x-boki-workflow-id": id },
        });
        expect(r.status).toBe(202);
      }
      await sleep(50 + Math.floor(random() * 600));
      await dev.stop("SIGKILL");
      dev = undefined;
    }
    dev = await start();
    const url = dev.url;
    const status = async (id: string) =>
      (await http(url, "GET", `/workflows/${id}`)).json as {
        status?: string;
        output?: { status: string; compensationsFailed?: number[] };
      };
    await eventually(
      "every coordinator's end",
      async () => {
        for (const s of started) if ((await status(s.id)).status !== "succeeded") return false;
        return true;
      },
      120_000,
      async () =>
        (
          await Promise.all(
            started.map(async (s) => `${s.id}: ${JSON.stringify(await status(s.id))}`),
          )
        ).join("\n"),
    );
    const outcomes: Record<string, number> = {};
    for (const s of started) {
      const o = (await status(s.id)).output!;
      outcomes[`${s.kind}:${o.status}`] = (outcomes[`${s.kind}:${o.status}`] ?? 0) + 1;
      if (s.kind === "transfer") expect(["committed", "aborted"]).toContain(o.status);
      else {
        expect(["completed", "compensated"]).toContain(o.status);
        expect(o.compensationsFailed ?? []).toEqual([]);
      }
    }
    let total = 0;
    for (const a of ACCOUNTS) {
      const s = (await http(url, "GET", `/object/account/${a}`)).json as {
        state: { balance: number };
        lockedBy: string | null;
      };
      expect(s.lockedBy, `${a} is still locked`).toBeNull();
      total += s.state.balance;
    }
    expect(total).toBe(ACCOUNTS.length * START_BALANCE);
    console.log(
      `objects crash test: ${started.length} coordinators through ${ROUNDS} kills: ${JSON.stringify(outcomes)}`,
    );
  }, 300_000);
});
