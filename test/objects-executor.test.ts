/**
 * The object executor (objects/executor.ts) over an in-memory LogBook: what a transaction's
 * prepare does once its deadline has passed, and how often an instance's requests are read
 * from the log when it is looked at again and again.
 */
import { describe, expect, test } from "vitest";
import type { LogBook, LogRecord, TagLike } from "../src/index.js";
import { definitions, drain, request, type ObjectEnv } from "../src/objects/executor.js";
import { latestResult } from "../src/objects/executor.js";
import { MemoryLog } from "./helpers/memory-logbook.js";

function envOver(log: LogBook, now: () => number): ObjectEnv {
  return {
    log,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    deadline: Number.POSITIVE_INFINITY,
    now,
    invokeAsync: () => Promise.resolve(null),
    drainFunction: "drain",
    deliverWorkflow: "deliver",
  };
}

function defineCounter(name: string): void {
  definitions().set(name, {
    name,
    handlers: new Map([
      [
        "add",
        {
          shared: false,
          fn: (ctx, input) => {
            const n = (ctx.state.get() as number | undefined) ?? 0;
            ctx.state.set(n + (input as number));
            return n + (input as number);
          },
        },
      ],
    ]),
  });
}

describe("the object executor", () => {
  test("a prepare applied after its deadline refuses with TIMEOUT and locks nothing; the instance goes on", async () => {
    defineCounter("exec-deadline");
    let clock = 1_000_000;
    const env = envOver(new MemoryLog().book(), () => clock);
    const late = await request(env, "exec-deadline", "a", {
      id: "p-late",
      handler: "add",
      input: 5,
      txn: { id: "t-late", ts: 1, op: "prepare", deadline: clock - 1 },
    });
    expect(late.ok).toBe(false);
    expect(late.ok ? null : late.error.code).toBe("TIMEOUT");
    expect((await latestResult(env.log, "exec-deadline", "a"))?.lock).toBeNull();
    // An on-time prepare locks; a plain request waits for its commit, then applies after it.
    clock += 10;
    const onTime = await request(env, "exec-deadline", "a", {
      id: "p-ok",
      handler: "add",
      input: 2,
      txn: { id: "t-ok", ts: 2, op: "prepare", deadline: clock + 1000 },
    });
    expect(onTime).toEqual({ ok: true, value: 2 });
    expect((await latestResult(env.log, "exec-deadline", "a"))?.lock?.txn).toBe("t-ok");
    await request(env, "exec-deadline", "a", {
      id: "c-ok",
      handler: "$commit",
      input: null,
      txn: { id: "t-ok", ts: 2, op: "commit" },
    });
    expect(
      await request(env, "exec-deadline", "a", { id: "plain", handler: "add", input: 1 }),
    ).toEqual({ ok: true, value: 3 });
  });

  test("requests deferred behind a lock are read from the log once, however often the instance is looked at", async () => {
    defineCounter("exec-reads");
    const clock = 2_000_000;
    const inner = new MemoryLog().book();
    let recordsRead = 0;
    const counting: LogBook = Object.assign(Object.create(inner) as LogBook, {
      readNext: async (tag: TagLike, min: number | string): Promise<LogRecord | null> => {
        const r = await inner.readNext(tag, min);
        if (r !== null) recordsRead++;
        return r;
      },
    });
    const env = envOver(counting, () => clock);
    await request(env, "exec-reads", "k", {
      id: "p",
      handler: "add",
      input: 1,
      txn: { id: "t", ts: 1, op: "prepare", deadline: clock + 60_000 },
    });
    // Five plain requests behind the lock: submitted, then each looked at by a drain.
    const { submit } = await import("../src/objects/executor.js");
    for (let i = 0; i < 5; i++)
      await submit(env, "exec-reads", "k", { id: `r${i}`, handler: "add", input: 1 });
    recordsRead = 0;
    for (let i = 0; i < 20; i++) await drain(env, "exec-reads", "k", undefined);
    // Each drain reads the newest result (checkTail, not counted) and finds every request
    // waiting: the five inbox records are read at most once each (not 5 per drain).
    expect(recordsRead).toBeLessThanOrEqual(5);
    const last = await latestResult(env.log, "exec-reads", "k");
    expect(last?.id).toBe("p");
    expect(last?.lock?.txn).toBe("t");
  });
});

describe("object functions' info", () => {
  test("an object lists its handlers as exclusive or shared, and coordinators say what they are (for the dashboard)", async () => {
    const { defineObject, defineTransaction, defineSaga } = await import("../src/objects/index.js");
    const account = defineObject({
      name: "info-account",
      handlers: { deposit: () => null, balance: { shared: true, handler: () => 0 } },
    });
    expect(account.meta).toEqual({ handlers: { deposit: "exclusive", balance: "shared" } });
    const txn = defineTransaction({ name: "info-txn", plan: () => ({ calls: [] }) });
    expect(txn.meta).toEqual({ coordinator: "transaction" });
    const saga = defineSaga({ name: "info-saga", steps: () => [] });
    expect(saga.meta).toEqual({ coordinator: "saga" });
  });
});
