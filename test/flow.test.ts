/**
 * boki-ts/flow through the runtime: workflows served by the dev server (worker threads, the
 * embedded log on disk, the HTTP gateway), called over HTTP as users do.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fileURLToPath } from "node:url";
import { startDevServer, type TestServer } from "../src/testing/index.js";
import { startEffectCounter, type EffectCounter } from "./helpers/effect-counter.js";
import { http } from "./helpers/http.js";
import { eventually } from "./helpers/async.js";
import { runBoki } from "./helpers/dev-process.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/flow", import.meta.url));

let dev: TestServer;
let counter: EffectCounter;

beforeAll(async () => {
  counter = await startEffectCounter();
  dev = await startDevServer({ functions: FIXTURES, workers: 2 });
});
afterAll(async () => {
  await dev?.close();
  await counter?.close();
});

function start(name: string, input: unknown, id?: string, headers: Record<string, string> = {}) {
  return http(dev.url, "POST", `/workflow/${name}`, {
    body: JSON.stringify(input),
    headers: id === undefined ? headers : { "x-boki-workflow-id": id, ...headers },
  });
}

async function statusOf(id: string, book?: number) {
  return http(
    dev.url,
    "GET",
    `/workflows/${encodeURIComponent(id)}`,
    book === undefined ? {} : { headers: { "x-boki-book": String(book) } },
  );
}

describe("workflows over HTTP", () => {
  test("a workflow runs each step once, and a repeat with the same id returns the outcome without running anything", async () => {
    const r = await start("chain", { steps: 3, counter: counter.url }, "c-1");
    expect(r.status).toBe(200);
    expect(r.headers.get("x-boki-workflow-id")).toBe("c-1");
    expect(r.headers.get("x-boki-workflow-status")).toBe("succeeded");
    expect(r.json).toEqual({ keys: ["c-1:1", "c-1:2", "c-1:3"] });
    const again = await start("chain", { steps: 3, counter: counter.url }, "c-1");
    expect(again.json).toEqual(r.json);
    expect(["c-1:1", "c-1:2", "c-1:3"].map((k) => counter.counts.get(k))).toEqual([1, 1, 1]);

    const s = await statusOf("c-1");
    expect(s.status).toBe(200);
    expect(s.json).toMatchObject({
      workflowId: "c-1",
      workflow: "chain",
      status: "succeeded",
      input: { steps: 3 },
      output: { keys: ["c-1:1", "c-1:2", "c-1:3"] },
    });
    expect(
      (s.json as { steps: Array<{ name: string; ok: boolean }> }).steps.map((x) => [x.name, x.ok]),
    ).toEqual([
      ["step-0", true],
      ["step-1", true],
      ["step-2", true],
    ]);
  });

  test("the id comes from X-Boki-Workflow-Id, else the Idempotency-Key, else a new one", async () => {
    const byKey = await start("chain", { steps: 1 }, undefined, { "idempotency-key": "key-7" });
    expect(byKey.headers.get("x-boki-workflow-id")).toBe("key-7");
    const fresh1 = await start("chain", { steps: 1 });
    const fresh2 = await start("chain", { steps: 1 });
    expect(fresh1.headers.get("x-boki-workflow-id")).not.toBe(
      fresh2.headers.get("x-boki-workflow-id"),
    );
  });

  test("a child workflow called with invoke runs once and its result is logged on the parent's stream", async () => {
    const r = await start("parent", { n: 21 }, "p-1");
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ a: 42, b: 43, spawned: "p-1/3" });
    const child = await statusOf("p-1/1");
    expect(child.json).toMatchObject({ workflow: "child", status: "succeeded", output: 42 });
    await eventually(
      "the spawned child's end",
      async () => ((await statusOf("p-1/3")).json as { status?: string }).status === "succeeded",
      10_000,
    );
    const steps = ((await statusOf("p-1")).json as { steps: Array<{ kind: string; name: string }> })
      .steps;
    expect(steps.map((x) => `${x.kind}:${x.name}`)).toEqual([
      "call:child",
      "call:plain-add",
      "spawn:child",
    ]);
  });

  test("a failed workflow answers 500 WORKFLOW_FAILED with the handler's error; terminal steps are not retried, others are", async () => {
    const r = await start("failing", null, "f-1");
    expect(r.status).toBe(500);
    expect(r.json).toMatchObject({
      error: {
        code: "WORKFLOW_FAILED",
        message: "Error: gave up after 1 terminal and 3 flaky attempts",
      },
    });
    const s = (await statusOf("f-1")).json as {
      status: string;
      steps: Array<{ name: string; ok: boolean }>;
    };
    expect(s.status).toBe("failed");
    expect(s.steps.map((x) => [x.name, x.ok])).toEqual([
      ["refuse", false],
      ["flaky", true],
    ]);
  });

  test("a short sleep is waited out in the execution; a long one ends it and the recovery task resumes it after the sleep", async () => {
    const short = await start("napper", { ms: 200 }, "n-short");
    expect([short.status, short.json]).toEqual([200, { slept: true }]);
    const long = await start("napper", { ms: 3000 }, "n-long");
    expect(long.status).toBe(202);
    expect(long.json).toMatchObject({ workflowId: "n-long", status: "sleeping" });
    expect(((await statusOf("n-long")).json as { status: string }).status).toBe("sleeping");
    await eventually(
      "the long sleeper's end",
      async () => ((await statusOf("n-long")).json as { status: string }).status === "succeeded",
      15_000,
    );
    expect(((await statusOf("n-long")).json as { output: unknown }).output).toEqual({
      slept: true,
    });
  });

  test("cancelling a sleeping instance ends it as cancelled at once; cancelling an ended one changes nothing", async () => {
    expect((await start("napper", { ms: 60_000 }, "n-cancel")).status).toBe(202);
    const c = await http(dev.url, "POST", "/workflows/n-cancel/cancel", {
      body: JSON.stringify({ reason: "not needed" }),
    });
    expect([c.status, c.json]).toEqual([
      200,
      { workflowId: "n-cancel", cancelled: true, status: "running" },
    ]);
    await eventually(
      "the cancelled end",
      async () => ((await statusOf("n-cancel")).json as { status: string }).status === "cancelled",
      10_000,
    );
    const again = await start("napper", { ms: 60_000 }, "n-cancel");
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ error: { code: "CANCELLED" } });
    const late = await http(dev.url, "POST", "/workflows/c-1/cancel", { body: "" });
    expect(late.json).toEqual({ workflowId: "c-1", cancelled: false, status: "succeeded" });
  });

  test("an asynchronous start answers 202 at once and the instance runs", async () => {
    const r = await http(dev.url, "POST", "/async/workflow/chain", {
      body: JSON.stringify({ steps: 2 }),
      headers: { "x-boki-workflow-id": "a-1" },
    });
    expect(r.status).toBe(202);
    expect(r.json).toEqual({ workflowId: "a-1", status: "pending", statusUrl: "/workflows/a-1" });
    await eventually(
      "the async instance's end",
      async () => ((await statusOf("a-1")).json as { status?: string }).status === "succeeded",
      10_000,
    );
  });

  test("racing conditional table writes of many instances keep a count right", async () => {
    const takes = await Promise.all(
      Array.from({ length: 12 }, (_, i) => start("stock", { item: "pen", take: 1 }, `s-${i}`)),
    );
    const ok = takes.filter((t) => (t.json as { ok: boolean }).ok);
    expect(ok).toHaveLength(10);
    expect(new Set(ok.map((t) => (t.json as { left: number }).left))).toEqual(
      new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    );
  });

  test("instances live in the request's book, and list shows them newest first with filters", async () => {
    expect((await start("chain", { steps: 1 }, "b-1", { "x-boki-book": "7" })).status).toBe(200);
    expect((await statusOf("b-1")).status).toBe(404);
    expect(((await statusOf("b-1", 7)).json as { book: number }).book).toBe(7);
    const list = await http(dev.url, "GET", "/workflows?workflow=chain&status=succeeded&limit=3");
    const ids = (
      list.json as { workflows: Array<{ workflowId: string; workflow: string; status: string }> }
    ).workflows;
    expect(ids.length).toBe(3);
    expect(ids.every((w) => w.workflow === "chain" && w.status === "succeeded")).toBe(true);
  });

  test("a finished instance stays listed through its retention, after the recovery scans trim the intents below its end", async () => {
    expect((await start("chain", { steps: 1 }, "kept-1")).status).toBe(200);
    // The recovery task scans about once a second; two scans have passed after 2.5 s.
    await new Promise((r) => setTimeout(r, 2500));
    const list = await http(dev.url, "GET", "/workflows?workflow=chain&limit=100");
    const ids = (list.json as { workflows: Array<{ workflowId: string; status: string }> })
      .workflows;
    expect(ids.find((w) => w.workflowId === "kept-1")?.status).toBe("succeeded");
  });

  test("an ended instance is trimmed once its retention has passed", async () => {
    expect((await start("short-lived", null, "gc-1")).status).toBe(200);
    await eventually(
      "the trim of an ended instance",
      async () => (await statusOf("gc-1")).status === 404,
      15_000,
    );
  });

  test("bad requests get clear errors: an unknown workflow, a plain function, a bad id, an id of another workflow", async () => {
    expect((await start("nope", null)).json).toMatchObject({
      error: { code: "FUNCTION_NOT_FOUND" },
    });
    expect((await start("plain-add", null)).status).toBe(404);
    const bad = await start("chain", { steps: 1 }, "has space");
    expect([bad.status, (bad.json as { error: { code: string } }).error.code]).toEqual([
      400,
      "INVALID_ARGUMENT",
    ]);
    const conflict = await start("napper", { ms: 1 }, "c-1");
    expect([conflict.status, (conflict.json as { error: { code: string } }).error.code]).toEqual([
      409,
      "ID_CONFLICT",
    ]);
    expect((await statusOf("never")).status).toBe(404);
    expect((await http(dev.url, "GET", "/workflows?status=weird")).status).toBe(400);
  });

  test("boki workflow start, status, list and cancel print JSON; a failed workflow exits with 1", async () => {
    const url = ["--url", dev.url];
    const started = await runBoki([
      "workflow",
      "start",
      "chain",
      '{"steps":2}',
      "--id",
      "cli-1",
      ...url,
    ]);
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toEqual({
      workflowId: "cli-1",
      status: "succeeded",
      output: { keys: ["cli-1:1", "cli-1:2"] },
    });
    const status = await runBoki(["workflow", "status", "cli-1", ...url]);
    expect(JSON.parse(status.stdout)).toMatchObject({ workflowId: "cli-1", status: "succeeded" });
    const list = await runBoki(["workflow", "list", "--workflow", "chain", "--limit", "1", ...url]);
    expect((JSON.parse(list.stdout) as { workflows: unknown[] }).workflows).toHaveLength(1);
    const cancel = await runBoki(["workflow", "cancel", "cli-1", "--reason", "late", ...url]);
    expect(JSON.parse(cancel.stdout)).toEqual({
      workflowId: "cli-1",
      cancelled: false,
      status: "succeeded",
    });
    const failed = await runBoki(["workflow", "start", "failing", "--id", "cli-2", ...url]);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({
      workflowId: "cli-2",
      status: "failed",
      error: { code: "WORKFLOW_FAILED" },
    });
    const missing = await runBoki(["workflow", "status", "nope", ...url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^boki: error NOT_FOUND: no workflow instance nope/);
  }, 60_000);
});
