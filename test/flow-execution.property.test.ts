/**
 * Workflow executions under races, crashes and cancels, over an in-memory LogBook whose
 * operations fast-check interleaves. The property: whatever the interleaving, every
 * execution that reports an outcome reports the one a lone execution computes; after a
 * final resumption the instance has ended with it; the step stream holds each operation's
 * record once, in handler order, with exactly one end; and an ended instance replays
 * without running a single step again.
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { Execution, type ExecutionDefinition, type ExecutionEnv } from "../src/flow/execution.js";
import { TerminalError } from "../src/flow/errors.js";
import type { WorkflowContext } from "../src/flow/context.js";
import type { FlowOutcome } from "../src/flow/protocol.js";
import {
  decodeFlowRecord,
  encodeFlowRecord,
  stepsTag,
  tableTag,
  type FlowRecord,
} from "../src/flow/records.js";
import type { JsonValue } from "../src/index.js";
import { MemoryLog, type MemoryLogBook } from "./helpers/memory-logbook.js";

type Op = "step" | "now" | "write" | "read" | "par" | "flaky" | "terminal" | "sleep";
const OPS: readonly Op[] = ["step", "now", "write", "read", "par", "flaky", "terminal", "sleep"];

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** A handler doing `ops` in order; its output depends only on what `wf` returns. */
function definition(ops: readonly Op[], calls: Map<string, number>): ExecutionDefinition {
  const count = (key: string): void => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
  };
  return {
    name: "prop",
    timeoutMs: 60_000,
    retentionMs: 3_600_000,
    async handler(wf: WorkflowContext, input: JsonValue): Promise<JsonValue> {
      let acc = (input as { seed: number }).seed;
      for (const [i, op] of ops.entries()) {
        switch (op) {
          case "step":
            acc = await wf.step(`s${i}`, (s) => {
              count(s.key);
              return acc * 3 + i;
            });
            break;
          case "now":
            await wf.now();
            break;
          case "write":
            await wf.write("t", `k${i % 2}`, acc);
            break;
          case "read":
            acc += ((await wf.read<number>("t", "k0")) ?? 0) % 1000;
            break;
          case "par": {
            const [a, b] = await Promise.all([
              wf.step(`p${i}a`, (s) => {
                count(s.key);
                return i;
              }),
              wf.step(`p${i}b`, (s) => {
                count(s.key);
                return 2 * i;
              }),
            ]);
            acc += a + b;
            break;
          }
          case "flaky":
            acc += await wf.step(
              `f${i}`,
              (s) => {
                count(s.key);
                if (s.attempt < 2) throw new Error("transient");
                return 7;
              },
              { retry: { initialIntervalMs: 1, maxAttempts: 3 } },
            );
            break;
          case "terminal":
            try {
              await wf.step(`x${i}`, (s) => {
                count(s.key);
                throw new TerminalError("refused");
              });
            } catch (err) {
              acc += (err as { code?: string }).code === "STEP_FAILED" ? 1000 : -1;
            }
            break;
          case "sleep":
            await wf.sleep(50);
            break;
        }
        acc %= 1_000_003;
      }
      return acc;
    },
  };
}

function envFor(log: MemoryLogBook, clock: { t: number }): ExecutionEnv {
  return {
    log,
    book: 0,
    logger: silent,
    deadline: clock.t + 60_000,
    signal: new AbortController().signal,
    now: () => (clock.t += 1),
    sleep: async (ms) => {
      clock.t += ms;
      await Promise.resolve();
    },
    invoke: () => Promise.reject(new Error("no calls in this test")),
    invokeAsync: () => Promise.reject(new Error("no calls in this test")),
    isWorkflow: () => false,
  };
}

function stream(log: MemoryLog, id: string): FlowRecord[] {
  const tag = stepsTag(id);
  return log
    .visible(tag)
    .map((r) => decodeFlowRecord({ seqnum: r.seqnum, data: r.data } as never).rec);
}

/** What the operations left in the stream, without times (they differ between runs). */
function opRecords(recs: readonly FlowRecord[]): unknown[] {
  return recs
    .filter((r) => r.k !== "start" && r.k !== "end" && r.k !== "cancel")
    .map((r) => {
      const { at: _at, ...rest } = r as FlowRecord & { until?: number };
      if (rest.k === "sleep") return { k: "sleep" };
      return rest;
    });
}

const ID = "wf-1";

describe("workflow executions", () => {
  test("racing, crashing and cancelled executions agree on one outcome, and the stream holds each operation once", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.constantFrom(...OPS), { minLength: 1, maxLength: 7 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.array(fc.option(fc.integer({ min: 0, max: 25 }), { nil: undefined }), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
        async (s, ops, seed, failAfters, cancelAfter) => {
          const input = { seed };
          // A lone execution: what every other one must agree with.
          const refCalls = new Map<string, number>();
          const refLog = new MemoryLog();
          const ref = await new Execution(
            definition(ops, refCalls),
            ID,
            envFor(refLog.book(), { t: 1000 }),
          ).run({
            $flow: "start",
            id: ID,
            input,
          });
          expect(ref.status).toBe("succeeded");
          const refOps = opRecords(stream(refLog, ID));

          const calls = new Map<string, number>();
          const log = new MemoryLog(() => s.schedule(Promise.resolve()));
          const clock = { t: 1000 };
          const runs = failAfters.map((failAfter) =>
            new Execution(
              definition(ops, calls),
              ID,
              envFor(log.book(failAfter === undefined ? {} : { failAfter }), clock),
            )
              .run({ $flow: "start", id: ID, input })
              .catch((err: unknown) => ({ crashed: err })),
          );
          const canceller =
            cancelAfter === undefined
              ? Promise.resolve()
              : (async () => {
                  // As boki-flow.cancel does: only an instance that has started is cancelled.
                  let i = 0;
                  for (
                    ;
                    i < cancelAfter || (log.visible(stepsTag(ID)).length === 0 && i < 500);
                    i++
                  ) {
                    await s.schedule(Promise.resolve());
                  }
                  if (log.visible(stepsTag(ID)).length === 0) return;
                  log.append(
                    [stepsTag(ID)],
                    new TextEncoder().encode(
                      encodeFlowRecord({ v: 1, k: "cancel", at: clock.t, reason: "test" }),
                    ),
                  );
                })();
          const outcomes = (
            await s.waitFor(Promise.all([...runs, canceller.then(() => null)]))
          ).filter((o): o is FlowOutcome => o !== null && !("crashed" in o));

          // Run it again until it has ended, as a retrying caller (or, once it has started,
          // the recovery task) does; one that finds it running elsewhere waits it out.
          let final: FlowOutcome = { status: "running" };
          for (
            let i = 0;
            i < 3 && (final.status === "running" || final.status === "sleeping");
            i++
          ) {
            final = await s.waitFor(
              new Execution(definition(ops, calls), ID, envFor(log.book(), clock)).run({
                $flow: "start",
                id: ID,
                input,
              }),
            );
          }
          const recs = stream(log, ID);
          const ends = recs.filter((r) => r.k === "end");
          expect(ends).toHaveLength(1);
          expect(recs[0]!.k).toBe("start");
          const cancelPos = recs.findIndex((r) => r.k === "cancel");
          const endPos = recs.findIndex((r) => r.k === "end");
          if (cancelPos >= 0 && cancelPos < endPos) {
            expect(final.status).toBe("cancelled");
            // Before the cancel, the operations are the lone execution's, in its order.
            expect(opRecords(recs.slice(0, cancelPos))).toEqual(
              refOps.slice(0, opRecords(recs.slice(0, cancelPos)).length),
            );
          } else {
            expect(final).toEqual(ref);
            expect(opRecords(recs)).toEqual(refOps);
          }
          // Each write of the handler made one version of its key, once.
          for (const key of ["k0", "k1"]) {
            const versions = log.visible(tableTag("t", key)).length;
            const refVersions = refLog.visible(tableTag("t", key)).length;
            if (final.status === "cancelled") expect(versions).toBeLessThanOrEqual(refVersions);
            else expect(versions).toBe(refVersions);
          }
          for (const o of outcomes) {
            if (o.status === "succeeded" || o.status === "failed" || o.status === "cancelled")
              expect(o).toEqual(final);
          }
          // Every logged step ran (at least once; a crash between running and logging repeats it).
          for (const r of recs)
            if (r.k === "step")
              expect(calls.get(`${ID}:${recs.indexOf(r)}`) ?? 0).toBeGreaterThan(0);

          // An ended instance replays without running anything.
          const before = [...calls.values()].reduce((a, b) => a + b, 0);
          const again = await s.waitFor(
            new Execution(definition(ops, calls), ID, envFor(log.book(), clock)).run({
              $flow: "start",
              id: ID,
              input,
            }),
          );
          expect(again).toEqual(final);
          expect([...calls.values()].reduce((a, b) => a + b, 0)).toBe(before);
        },
      ),
      { numRuns: Number(process.env["FLOW_PROPERTY_RUNS"] ?? 150) },
    );
  });

  test("instances incrementing one table key with condWrite, racing and crashing, each increment it exactly once", async () => {
    const increment: ExecutionDefinition = {
      name: "inc",
      timeoutMs: 60_000,
      retentionMs: 3_600_000,
      async handler(wf) {
        for (let i = 0; i < 50; i++) {
          const e = await wf.readEntry<number>("c", "n");
          if (await wf.condWrite("c", "n", (e.value ?? 0) + 1, e.version)) return e.value ?? 0;
        }
        throw new Error("no progress");
      },
    };
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(
          fc.array(fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }), {
            minLength: 1,
            maxLength: 2,
          }),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        async (s, instances) => {
          const log = new MemoryLog(() => s.schedule(Promise.resolve()));
          const clock = { t: 1000 };
          const runs = instances.flatMap((executions, i) =>
            executions.map((failAfter) =>
              new Execution(
                increment,
                `i${i}`,
                envFor(log.book(failAfter === undefined ? {} : { failAfter }), clock),
              )
                .run({ $flow: "start", id: `i${i}`, input: null })
                .catch(() => null),
            ),
          );
          await s.waitFor(Promise.all(runs));
          const seen: number[] = [];
          for (const i of instances.keys()) {
            const o = await s.waitFor(
              new Execution(increment, `i${i}`, envFor(log.book(), clock)).run({
                $flow: "start",
                id: `i${i}`,
                input: null,
              }),
            );
            expect(o.status).toBe("succeeded");
            seen.push((o as { output: number }).output);
          }
          // Versions are dense and each instance saw a distinct value before its increment.
          const versions = log.visible(tableTag("c", "n")).map(
            (r) =>
              (
                decodeFlowRecord({ seqnum: r.seqnum, data: r.data } as never).rec as {
                  ver: number;
                }
              ).ver,
          );
          expect(versions).toEqual(instances.map((_, i) => i));
          expect([...seen].sort((a, b) => a - b)).toEqual(instances.map((_, i) => i));
        },
      ),
      { numRuns: Number(process.env["FLOW_PROPERTY_RUNS"] ?? 100) },
    );
  });

  test("a fresh execution appends only its own records: the start, one per operation (a table write's version is its record), the end", async () => {
    const calls = new Map<string, number>();
    const log = new MemoryLog();
    const ops: Op[] = ["step", "par", "write", "now", "step"];
    const out = await new Execution(definition(ops, calls), ID, envFor(log.book(), { t: 0 })).run({
      $flow: "start",
      id: ID,
      input: { seed: 1 },
    });
    expect(out.status).toBe("succeeded");
    expect(stream(log, ID).map((r) => r.k)).toEqual([
      "start",
      "step",
      "step",
      "step",
      "tver",
      "now",
      "step",
      "end",
    ]);
    // Every record of the book is one of the step stream's (the table's version among them).
    expect(log.visible(0n).length).toBe(8);
    expect(log.visible(tableTag("t", "k0")).map((r) => r.seqnum)).toEqual([
      log.visible(stepsTag(ID))[4]!.seqnum,
    ]);
    expect([...calls.values()]).toEqual([1, 1, 1, 1]);
  });

  test("a resumption of an instance that never started is refused with NOT_FOUND", async () => {
    const log = new MemoryLog();
    await expect(
      new Execution(definition(["step"], new Map()), ID, envFor(log.book(), { t: 0 })).run({
        $flow: "resume",
        id: ID,
      }),
    ).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  test("an id of another workflow's instance is refused with ID_CONFLICT", async () => {
    const log = new MemoryLog();
    await new Execution(definition(["step"], new Map()), ID, envFor(log.book(), { t: 0 })).run({
      $flow: "start",
      id: ID,
      input: { seed: 0 },
    });
    const other = { ...definition(["step"], new Map()), name: "other" };
    await expect(
      new Execution(other, ID, envFor(log.book(), { t: 0 })).run({
        $flow: "start",
        id: ID,
        input: { seed: 0 },
      }),
    ).rejects.toMatchObject({
      code: "ID_CONFLICT",
    });
  });

  test("a handler that asks for other operations than the log holds stops with NON_DETERMINISTIC and leaves the instance unended", async () => {
    const log = new MemoryLog();
    await new Execution(
      definition(["step", "sleep"], new Map()),
      ID,
      envFor(log.book({ failAfter: 3 }), { t: 0 }),
    )
      .run({ $flow: "start", id: ID, input: { seed: 0 } })
      .catch(() => undefined);
    const changed = definition(["now", "step"], new Map());
    await expect(
      new Execution(changed, ID, envFor(log.book(), { t: 0 })).run({ $flow: "resume", id: ID }),
    ).rejects.toMatchObject({
      code: "NON_DETERMINISTIC",
    });
    expect(stream(log, ID).some((r) => r.k === "end")).toBe(false);
  });

  test("steps started together have their appends in flight at once, and log each result at its own position", async () => {
    // Every log operation waits at the gate until the test lets the ones waiting through.
    let held: Array<() => void> = [];
    const log = new MemoryLog(() => new Promise<void>((resolve) => held.push(resolve)));
    const parallel: ExecutionDefinition = {
      name: "par4",
      timeoutMs: 60_000,
      retentionMs: 3_600_000,
      async handler(wf: WorkflowContext): Promise<JsonValue> {
        const parts = await Promise.all(
          [0, 1, 2, 3].map((i) => wf.step(`part-${i}`, () => i * 10)),
        );
        return parts.reduce((a, b) => a + b, 0);
      },
    };
    const run = new Execution(parallel, ID, envFor(log.book(), { t: 0 })).run({
      $flow: "start",
      id: ID,
      input: null,
    });
    const inFlight: number[] = [];
    for (let turn = 0; turn < 50; turn++) {
      await new Promise((r) => setTimeout(r, 0));
      if (held.length === 0) break;
      inFlight.push(held.length);
      const release = held;
      held = [];
      for (const r of release) r();
    }
    expect(await run).toEqual({ status: "succeeded", output: 60 });
    // The start, then the four step records together, then the end.
    expect(inFlight).toEqual([1, 4, 1]);
    const recs = stream(log, ID);
    expect(recs.map((r) => r.k)).toEqual(["start", "step", "step", "step", "step", "end"]);
    expect(recs.slice(1, 5).map((r) => (r as { name: string }).name)).toEqual([
      "part-0",
      "part-1",
      "part-2",
      "part-3",
    ]);
  });
});
