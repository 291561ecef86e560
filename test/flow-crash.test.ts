/**
 * Workflows across kill -9: `boki dev` as a real process is killed at random points while
 * 5-step workflows run (started synchronously and asynchronously), then restarted on the
 * same data directory, several times. Afterwards every instance completes; every step's
 * effect, asked of a service outside the system with the step's key, was applied for
 * exactly that key and no other, so a service that honours idempotency keys applied each
 * effect exactly once.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { eventually, sleep } from "./helpers/async.js";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { startEffectCounter, type EffectCounter } from "./helpers/effect-counter.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/flow", import.meta.url));
const ROUNDS = 6;
const PER_ROUND = 8;
const STEPS = 5;

/** A deterministic source for the kill times, so a failure can be replayed. */
function kills(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

describe("workflows across kill -9 of boki dev", () => {
  const tmp = tempDir("boki-flow-crash-");
  let counter: EffectCounter;
  let dev: DevProcess | undefined;
  const data = join(tmp.dir, "data");
  const start = () => startDevProcess(["--functions", FIXTURES, "--data", data, "--workers", "2"]);

  beforeAll(async () => {
    counter = await startEffectCounter();
  });
  afterAll(async () => {
    await dev?.stop("SIGKILL");
    await counter?.close();
    tmp.remove();
  });

  test("every instance completes after restarts, and each step's effect was asked for under its own key only", async () => {
    const seed = Number(process.env["FLOW_CRASH_SEED"] ?? Date.now() % 100_000);
    console.log(`flow crash test: seed ${seed} (FLOW_CRASH_SEED=${seed} replays the kill times)`);
    const random = kills(seed);
    const ids: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      dev = await start();
      const url = dev.url;
      for (let i = 0; i < PER_ROUND; i++) {
        const id = `r${round}-${i}`;
        ids.push(id);
        const input = JSON.stringify({ steps: STEPS, counter: counter.url, pauseMs: 15 });
        const headers = { "x-boki-workflow-id": id };
        // Half asynchronous (recorded, re-run by the runtime at restart), half synchronous
        // (resumed by the recovery task once its execution is surely gone).
        if (i % 2 === 0) {
          const r = await http(url, "POST", "/async/workflow/chain", {
            body: input,
            headers,
          }).catch((err: unknown) => {
            throw new Error(`round ${round} ${url}: ${String(err)}\n${dev?.output()}`);
          });
          expect(r.status).toBe(202);
        } else {
          void http(url, "POST", "/workflow/chain", { body: input, headers }).catch(
            () => undefined,
          );
        }
      }
      await sleep(30 + Math.floor(random() * 400));
      await dev.stop("SIGKILL");
      dev = undefined;
    }
    dev = await start();
    const url = dev.url;
    const outcome = async (id: string) =>
      (await http(url, "GET", `/workflows/${id}`)).json as {
        status?: string;
        output?: { keys: string[] };
      };
    // A synchronous start killed before its start record never began; its caller would
    // send it again, as this does (joining the instance when it did begin).
    for (const id of ids) {
      if ((await http(url, "GET", `/workflows/${id}`)).status === 404) {
        void http(url, "POST", "/workflow/chain", {
          body: JSON.stringify({ steps: STEPS, counter: counter.url, pauseMs: 15 }),
          headers: { "x-boki-workflow-id": id },
        }).catch(() => undefined);
      }
    }
    await eventually(
      "every instance's end",
      async () => {
        for (const id of ids) if ((await outcome(id)).status !== "succeeded") return false;
        return true;
      },
      60_000,
      async () => {
        const open = [];
        for (const id of ids) {
          const o = await outcome(id);
          if (o.status !== "succeeded") open.push(`${id}: ${o.status ?? "not found"}`);
        }
        return open.join("\n");
      },
    );
    let repeated = 0;
    for (const id of ids) {
      const expected = Array.from({ length: STEPS }, (_, k) => `${id}:${k + 1}`);
      expect((await outcome(id)).output).toEqual({ keys: expected });
      const asked = [...counter.counts.keys()].filter((k) => k.startsWith(`${id}:`)).sort();
      expect(asked).toEqual([...expected].sort());
      for (const k of expected) repeated += (counter.counts.get(k) ?? 0) - 1;
    }
    console.log(
      `flow crash test: ${ids.length} instances of ${STEPS} steps through ${ROUNDS} kills; ${repeated} effects asked for again after a kill (same key)`,
    );
  }, 240_000);
});
