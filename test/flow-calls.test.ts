/**
 * How a child workflow's end reaches its parent (`wf.invoke` of a workflow). The parent's
 * execution that called the child gets the child's outcome as its answer, so a child that
 * ends within that call resumes nothing: every instance of a tree of calls runs in one
 * execution. A child that ends after its parent stopped waiting (it slept past its time
 * limit, and the recovery task resumed it) writes its result into the parent's stream and
 * resumes the parent at once, long before the parent's own time limit would have it resumed.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "../src/testing/index.js";
import { eventually } from "./helpers/async.js";
import { http } from "./helpers/http.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/flow-calls", import.meta.url));

let dev: TestServer;
beforeAll(async () => {
  dev = await startDevServer({ functions: FIXTURES, workers: 2 });
});
afterAll(async () => {
  await dev?.close();
});

/** Invocations of each workflow's function so far (executions, resumptions included). */
async function executions(): Promise<Record<string, number>> {
  const text = (await http(dev.url, "GET", "/metrics")).text;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(
    /^boki_invocations_total\{function="(calls-[a-z]+)",[^}]*\} (\d+)$/gm,
  ))
    out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

describe("a child workflow's end and its parent", () => {
  test("children that end while their parent's execution waits resume nothing: one execution per instance", async () => {
    const r = await http(dev.url, "POST", "/workflow/calls-root", {
      body: JSON.stringify({ n: 1 }),
      headers: { "x-boki-workflow-id": "tree-1" },
    });
    expect(r.status, r.text).toBe(200);
    expect(r.json).toBe(3 + 5);
    // Give a stray resumption time to show up before counting.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await executions()).toEqual({ "calls-root": 1, "calls-middle": 2, "calls-leaf": 2 });
  });

  test("a child that ends after its parent stopped waiting resumes the parent at once", async () => {
    const started = Date.now();
    const r = await http(dev.url, "POST", "/workflow/calls-waiter", {
      body: JSON.stringify(3000),
      headers: { "x-boki-workflow-id": "waiter-1" },
    });
    // The child's sleep does not fit in its execution, so the parent stops waiting.
    expect(r.status, r.text).toBe(202);
    const status = await eventually(
      "the parent's end",
      async () => {
        const s = (await http(dev.url, "GET", "/workflows/waiter-1")).json as {
          status: string;
          output?: unknown;
        };
        return s.status === "succeeded" ? s : undefined;
      },
      15_000,
    );
    expect(status.output).toEqual({ child: "awake" });
    // Far sooner than the parent's own time limit (60 s) would have it resumed.
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
