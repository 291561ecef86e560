/**
 * A transaction coordinator's two ways of making its calls, over an in-memory log: applying
 * the requests itself when the objects are defined in its thread (two workflow steps, no
 * invocation), and invoking the objects' functions when they are not (each outcome logged as
 * a call on the coordinator's stream). The outcome is the same either way.
 */
import { describe, expect, test } from "vitest";
import { Execution, type ExecutionEnv } from "../src/flow/execution.js";
import { decodeFlowRecord, stepsTag, type FlowRecord } from "../src/flow/records.js";
import type { FlowOutcome } from "../src/flow/protocol.js";
import { runTransaction, type TransactionPlan } from "../src/objects/coordinator.js";
import { latestResult } from "../src/objects/executor.js";
import { defineObject } from "../src/objects/object.js";
import type { JsonValue } from "../src/index.js";
import { MemoryLog, type MemoryLogBook } from "./helpers/memory-logbook.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

defineObject<{ balance: number }>({
  name: "paths-account",
  handlers: {
    add: (ctx, input: { by: number }) => {
      const s = ctx.state.get() ?? { balance: 0 };
      s.balance += input.by;
      ctx.state.set(s);
      return s.balance;
    },
  },
});

function envFor(
  log: MemoryLogBook,
  invoked: Array<{ name: string; input: JsonValue }>,
): ExecutionEnv {
  let t = 1_000;
  return {
    log,
    book: 0,
    logger: silent,
    deadline: Number.MAX_SAFE_INTEGER,
    signal: new AbortController().signal,
    now: () => (t += 1),
    sleep: async (ms) => {
      t += ms;
      await Promise.resolve();
    },
    // An object defined elsewhere: its function answers every request yes.
    invoke: (name, input) => {
      invoked.push({ name, input });
      return Promise.resolve({ ok: true, value: "done" } as unknown as JsonValue);
    },
    invokeAsync: () => Promise.resolve("async"),
    isWorkflow: () => false,
  };
}

function stream(log: MemoryLog, id: string): FlowRecord[] {
  return log
    .visible(stepsTag(id))
    .map((r) => decodeFlowRecord({ seqnum: r.seqnum, data: r.data } as never).rec);
}

async function run(
  log: MemoryLog,
  id: string,
  plan: TransactionPlan,
  invoked: Array<{ name: string; input: JsonValue }>,
): Promise<FlowOutcome> {
  const exec = new Execution(
    {
      name: "paths-transfer",
      timeoutMs: 60_000,
      retentionMs: 3_600_000,
      handler: (wf) => runTransaction(wf, plan),
    },
    id,
    envFor(log.book(), invoked),
  );
  return exec.run({ $flow: "start", id, input: null });
}

describe("a transaction coordinator's calls", () => {
  test("objects defined in its thread: it applies the requests itself, in a prepare step and a commit step, with no invocation", async () => {
    const log = new MemoryLog();
    const invoked: Array<{ name: string; input: JsonValue }> = [];
    const out = await run(
      log,
      "here-1",
      {
        calls: [
          { object: "paths-account", key: "a", handler: "add", input: { by: -5 } },
          { object: "paths-account", key: "b", handler: "add", input: { by: 5 } },
        ],
      },
      invoked,
    );
    expect(out.status).toBe("succeeded");
    expect((out as unknown as { output: { status: string } }).output.status).toBe("committed");
    expect(invoked).toEqual([]);
    expect(stream(log, "here-1").map((r) => (r.k === "step" ? r.name : r.k))).toEqual([
      "start",
      "prepare 1",
      "commit 1",
      "end",
    ]);
    const book = log.book();
    expect((await latestResult(book, "paths-account", "a"))?.state).toEqual({ balance: -5 });
    expect((await latestResult(book, "paths-account", "b"))?.state).toEqual({ balance: 5 });
  });

  test("an object not defined in its thread: every call goes through the object's function, its outcome logged", async () => {
    const log = new MemoryLog();
    const invoked: Array<{ name: string; input: JsonValue }> = [];
    const out = await run(
      log,
      "there-1",
      {
        calls: [
          { object: "paths-account", key: "c", handler: "add", input: { by: 1 } },
          { object: "paths-elsewhere", key: "d", handler: "add", input: { by: 1 } },
        ],
      },
      invoked,
    );
    expect(out.status).toBe("succeeded");
    expect((out as unknown as { output: { status: string } }).output.status).toBe("committed");
    expect(invoked.map((i) => `${i.name}:${(i.input as { handler: string }).handler}`)).toEqual([
      "paths-account:add",
      "paths-elsewhere:add",
      "paths-account:$commit",
      "paths-elsewhere:$commit",
    ]);
    expect(stream(log, "there-1").map((r) => r.k)).toEqual([
      "start",
      "now",
      "call",
      "call",
      "call",
      "call",
      "end",
    ]);
  });
});
