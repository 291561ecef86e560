/**
 * boki-ts/queue in the runtime: the gateway's push/pop routes, functions bound as consumers
 * (concurrency, rate limit, retries, dead letters) and exactly-once consumption in a workflow.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "../src/testing/index.js";
import { eventually } from "./helpers/async.js";
import { call, http } from "./helpers/http.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/queue-runtime", import.meta.url));
let dev: TestServer;

beforeAll(async () => {
  dev = await startDevServer({ functions: FIXTURES, workers: 2 });
});
afterAll(async () => {
  await dev?.close();
});

const push = (queue: string, value: unknown) =>
  http(dev.url, "POST", `/queue/${queue}/push`, { body: JSON.stringify(value) });
const stats = async (prefix: string) =>
  (await call(dev.url, "stats", { prefix })).json as { seen: number; done: string[] };

describe("queues in the runtime", () => {
  test("push and pop over HTTP: a popped message is not popped again until it comes back, and an ack ends it", async () => {
    const p = await push("http-q", { hello: 1 });
    expect(p.status).toBe(200);
    expect(p.json).toMatchObject({ shard: 0 });
    const popped = await http(dev.url, "POST", "/queue/http-q/pop", {
      body: JSON.stringify({ consumer: "c1", visibilityMs: 60_000 }),
    });
    const messages = (popped.json as { messages: Array<{ receipt: string; value: unknown }> })
      .messages;
    expect(messages.map((m) => m.value)).toEqual([{ hello: 1 }]);
    const none = await http(dev.url, "POST", "/queue/http-q/pop", {
      body: JSON.stringify({ consumer: "c2" }),
    });
    expect((none.json as { messages: unknown[] }).messages).toEqual([]);
    const acked = await http(dev.url, "POST", "/queue/http-q/ack", {
      body: JSON.stringify({ receipts: [messages[0]!.receipt] }),
    });
    expect(acked.json).toEqual({ accepted: 1, rejected: [] });
    expect((await http(dev.url, "GET", "/queue/http-q")).json).toMatchObject({
      available: 0,
      inFlight: 0,
    });
    const bad = await http(dev.url, "POST", "/queue/http-q/pop", {
      body: JSON.stringify({ consumer: "c1", waitMs: 10 ** 9 }),
    });
    expect([bad.status, (bad.json as { error: { code: string } }).error.code]).toEqual([
      400,
      "INVALID_ARGUMENT",
    ]);
  });

  test("a consumer function handles every message pushed to its queue, and a message that keeps failing goes to the dead-letter queue", async () => {
    for (let n = 0; n < 30; n++) expect((await push("jobs", { n })).status).toBe(200);
    expect((await push("jobs", { n: 999, fail: true })).status).toBe(200);
    await eventually(
      "every job handled",
      async () => (await stats("job-")).done.length === 30,
      30_000,
    );
    const s = await stats("job-");
    expect(new Set(s.done).size).toBe(30);
    await eventually(
      "the failing job dead-lettered",
      async () =>
        ((await http(dev.url, "GET", "/queue/jobs.dead")).json as { total: number }).total === 1,
      30_000,
    );
  }, 60_000);

  test("a consumer's rate limit holds: 60 messages at 20 a second take more than 1.5 s from the first push", async () => {
    // A burst of 20 (the bucket's size), then 20 a second: at least 2 s from the first push.
    const t0 = Date.now();
    for (let n = 0; n < 60; n++) await push("slow", { n });
    await eventually(
      "every slow job handled",
      async () => (await stats("slow-")).done.length === 60,
      30_000,
    );
    expect(Date.now() - t0).toBeGreaterThan(1_500);
  }, 60_000);

  test("a workflow pops, processes and acks exactly once: a repeat returns the logged messages without popping again", async () => {
    for (let n = 0; n < 3; n++) await push("inbox", { n });
    const first = await http(dev.url, "POST", "/workflow/batch", {
      body: "null",
      headers: { "x-boki-workflow-id": "b-1" },
    });
    expect(first.json).toEqual([0, 1, 2]);
    const again = await http(dev.url, "POST", "/workflow/batch", {
      body: "null",
      headers: { "x-boki-workflow-id": "b-1" },
    });
    expect(again.json).toEqual([0, 1, 2]);
    expect((await http(dev.url, "GET", "/queue/inbox")).json).toMatchObject({
      available: 0,
      inFlight: 0,
    });
  });
});
