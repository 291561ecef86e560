import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EmbeddedLog, tagOf } from "../src/index.js";
import { FunctionHost } from "../src/runtime/function-host.js";
import { FunctionLoadError, InvocationError } from "../src/runtime/errors.js";
import { newInvocationId } from "../src/runtime/ids.js";
import { schedBatchDefault } from "../src/runtime/sched.js";
import { INVOCATION_DEPTH_MAX, WORKER_PING_TIMEOUT_MS } from "../src/runtime/limits.js";
import { tempDir } from "./helpers/tmp.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/functions", import.meta.url));
const INDEX_TS = fileURLToPath(new URL("../src/index.ts", import.meta.url));

let tmp: { dir: string; remove: () => void };
let log: EmbeddedLog;
let host: FunctionHost;

beforeAll(async () => {
  tmp = tempDir();
  log = await EmbeddedLog.open({ dir: join(tmp.dir, "log") });
  host = await FunctionHost.start({ functions: FIXTURES, log, workers: 2, timeoutMs: 1500 });
}, 60_000);

afterAll(async () => {
  await host?.close();
  await log?.close();
  tmp?.remove();
});

function invoke(
  name: string,
  input: unknown,
  o: { book?: number; on?: FunctionHost; timeoutMs?: number } = {},
): Promise<{ output: unknown; position: number }> {
  return (o.on ?? host)
    .invoke({
      name,
      inputJson: JSON.stringify(input),
      book: o.book ?? 1,
      invocationId: newInvocationId(),
      deadline: Date.now() + (o.timeoutMs ?? 10_000),
    })
    .then((r) => ({ output: JSON.parse(r.outputJson) as unknown, position: r.position }));
}

async function failure(p: Promise<unknown>): Promise<InvocationError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof InvocationError) return err;
    throw err;
  }
  throw new Error("expected the invocation to fail");
}

describe("FunctionHost", () => {
  it("runs a function in a worker and returns its JSON output", async () => {
    expect((await invoke("echo", { a: [1, "two", null] })).output).toEqual({ a: [1, "two", null] });
    expect((await invoke("nothing", null)).output).toBeNull();
    expect((await invoke("plain-js", 5)).output).toEqual({ from: "mjs", input: 5 });
  });

  it("lists the loaded functions with their configured book and time limit", () => {
    const byName = new Map(host.functions().map((f) => [f.name, f]));
    expect(byName.get("in-book-7")).toEqual({ name: "in-book-7", book: 7, timeoutMs: 1500 });
    expect(byName.get("quick-timeout")?.timeoutMs).toBe(200);
    expect(byName.get("echo")?.book).toBeUndefined();
  });

  it("fails an unknown function with FUNCTION_NOT_FOUND", async () => {
    expect((await failure(invoke("no-such-function", null))).code).toBe("FUNCTION_NOT_FOUND");
  });

  it("gives a throwing function's caller FUNCTION_ERROR while a concurrent invocation succeeds", async () => {
    const [failed, slow] = await Promise.allSettled([
      invoke("fail", null),
      invoke("sleep", { ms: 200 }),
    ]);
    expect(failed.status).toBe("rejected");
    const err = (failed as PromiseRejectedResult).reason as InvocationError;
    expect(err.code).toBe("FUNCTION_ERROR");
    expect(err.message).toContain("boom");
    expect(slow.status === "fulfilled" ? slow.value.output : slow.reason).toBe(200);
  });

  it("fails an output that is not JSON with INVALID_OUTPUT naming what is wrong", async () => {
    const err = await failure(invoke("not-json", null));
    expect(err.code).toBe("INVALID_OUTPUT");
    expect(err.message).toMatch(/a function at "callback"/);
  });

  it("fails an output over the payload limit with PAYLOAD_TOO_LARGE", async () => {
    expect((await failure(invoke("big", { bytes: 2_000_000 }))).code).toBe("PAYLOAD_TOO_LARGE");
  });

  it("fails a function past its own timeoutMs with TIMEOUT", async () => {
    const started = Date.now();
    expect((await failure(invoke("quick-timeout", null))).code).toBe("TIMEOUT");
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("aborts ctx.signal at the timeout and fails the abandoned handler's later log operations", async () => {
    const file = join(tmp.dir, "aborted.txt");
    expect((await failure(invoke("write-after-timeout", { tag: "late", file }))).code).toBe(
      "TIMEOUT",
    );
    const until = Date.now() + 5000;
    while (!existsSync(file) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(file, "utf8")).toMatch(/TIMEOUT|timed out/);
    await new Promise((r) => setTimeout(r, 200));
    expect((await invoke("read", { tag: "late" })).output).toEqual([]);
  });

  it("fails an abandoned handler's later reads with TIMEOUT even where its read-ahead holds the record", async () => {
    const book = log.book(1);
    for (let i = 0; i < 40; i++) await book.append([tagOf("late-reads")], String(i));
    const file = join(tmp.dir, "late-read.txt");
    expect((await failure(invoke("read-after-timeout", { tag: "late-reads", file }))).code).toBe(
      "TIMEOUT",
    );
    const until = Date.now() + 5000;
    while (!existsSync(file) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(file, "utf8")).toMatch(/TIMEOUT|timed out/);
  });

  it("times out a function stuck in CPU, replaces its worker, and keeps serving", async () => {
    // Let earlier timeouts' pings settle, so both workers are known to be alive.
    await new Promise((r) => setTimeout(r, 200));
    const before = host.stats().workerRestarts;
    const started = Date.now();
    const [stuck, other] = await Promise.allSettled([
      invoke("spin", null),
      invoke("sleep", { ms: 300 }),
    ]);
    expect(((stuck as PromiseRejectedResult).reason as InvocationError).code).toBe("TIMEOUT");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(other.status).toBe("fulfilled");
    // The stuck worker does not answer its ping and is replaced.
    const until = Date.now() + WORKER_PING_TIMEOUT_MS + 10_000;
    while (host.stats().workerRestarts === before && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(host.stats().workerRestarts).toBe(before + 1);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => invoke("echo", i)));
    expect(results.map((r) => r.output)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    while (host.stats().workers < 2 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(host.stats().workers).toBe(2);
  });

  it("lets a nested invocation read its caller's writes and the caller read the child's", async () => {
    expect(
      (await invoke("write-then-child-reads", { tag: "n1", value: "from-parent" })).output,
    ).toEqual(["from-parent"]);
    expect(
      (await invoke("child-writes-then-read", { tag: "n2", value: "from-child" })).output,
    ).toEqual(["from-child"]);
  });

  it("returns a position at or after the invocation's writes, and a later session started there reads them", async () => {
    const r = await invoke("append", { tag: "pos", value: "v" }, { book: 3 });
    const book = log.book(3, { position: r.position });
    const tail = await book.checkTail(tagOf("pos"));
    expect(tail?.seqnum).toBe(Number(r.output));
  });

  it("passes a failing child's error code to its caller", async () => {
    expect((await invoke("catch-child", null)).output).toEqual({
      code: "FUNCTION_ERROR",
      message: "function fail threw Error: boom",
    });
  });

  it("fails invocations nested deeper than INVOCATION_DEPTH_MAX", async () => {
    expect((await invoke("recurse", { depth: 3 })).output).toBe(3);
    const err = await failure(invoke("recurse", { depth: INVOCATION_DEPTH_MAX + 2 }));
    expect(err.code).toBe("FUNCTION_ERROR");
    expect(err.message).toContain("INVOCATION_DEPTH_MAX");
  });

  it("gives a function the log's typed errors, e.g. COND_APPEND_FAILED with its actual position", async () => {
    expect((await invoke("cond-fail", { tag: "cond" })).output).toEqual({
      isCondAppendFailed: true,
      code: "COND_APPEND_FAILED",
      actualPosition: 1,
    });
  });

  it("derives ctx.newId() ids deterministically from the invocation id", async () => {
    const { output } = await invoke("ids", null);
    const o = output as { invocationId: string; ids: string[] };
    expect(o.ids).toEqual([`${o.invocationId}.1`, `${o.invocationId}.2`]);
  });

  it("runs its worker threads under SCHED_BATCH on Linux, and under the default policy with schedBatch false", async () => {
    if (process.platform !== "linux") return;
    /** Threads of this process by scheduling policy (field 41 of /proc/<pid>/task/<tid>/stat). */
    const batchThreads = (): number =>
      readdirSync("/proc/self/task").filter((tid) => {
        try {
          const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
          return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[38] === "3";
        } catch {
          return false; // the thread ended
        }
      }).length;
    const before = batchThreads();
    const normal = await FunctionHost.start({
      functions: FIXTURES,
      log,
      workers: 2,
      schedBatch: false,
    });
    try {
      expect(batchThreads()).toBe(before);
      const batch = await FunctionHost.start({
        functions: FIXTURES,
        log,
        workers: 2,
        schedBatch: true,
      });
      try {
        expect(batchThreads()).toBe(before + 2);
      } finally {
        await batch.close();
      }
    } finally {
      await normal.close();
    }
    expect(() => schedBatchDefault({ BOKI_WORKER_SCHED: "fifo" })).toThrow(/BOKI_WORKER_SCHED/);
    expect(schedBatchDefault({ BOKI_WORKER_SCHED: "normal" })).toBe(false);
    expect(schedBatchDefault({})).toBe(true);
  });

  it("reads a tag record after record through read-ahead batches exactly as the log holds it, and not past its own trim", async () => {
    // 1,200 records of the tag (more than the largest batch) among records of another tag,
    // some with data large enough that a batch ends at its byte limit.
    const book = log.book(1);
    const big = "x".repeat(200 * 1024);
    const expected: number[] = [];
    for (let i = 0; i < 1200; i++) {
      await book.append([tagOf("ra:other")], i % 7 === 0 ? big : "noise");
      await book.append(
        [tagOf("ra:walk")],
        i % 97 === 0 ? `${i}${" ".repeat(150 * 1024)}` : String(i),
      );
      expected.push(i);
    }
    const r = (
      await invoke("read-ahead-walk", { tag: "ra:walk", trimBelow: 700 }, { timeoutMs: 60_000 })
    ).output as { forward: number[]; backward: number[]; afterTrim: number[] };
    expect(r.forward).toEqual(expected);
    expect(r.backward).toEqual([...expected].reverse());
    expect(r.afterTrim).toEqual(expected.slice(700));
  }, 60_000);

  it("binds ctx.log to the invocation's book: a read in book 1 never returns a book-2 record", async () => {
    await invoke("append", { tag: "iso", value: "in-book-2" }, { book: 2 });
    await invoke("append", { tag: "iso", value: "in-book-1" }, { book: 1 });
    expect((await invoke("read", { tag: "iso" }, { book: 1 })).output).toEqual(["in-book-1"]);
    expect((await invoke("read", { tag: "iso" }, { book: 2 })).output).toEqual(["in-book-2"]);
    expect((await invoke("where-am-i", null, { book: 9 })).output).toEqual({
      book: 9,
      function: "where-am-i",
    });
  });
});

describe("FunctionHost limits", () => {
  it("fails invocations beyond the queue limit with OVERLOADED", async () => {
    const small = await FunctionHost.start({
      functions: join(FIXTURES, "basic.ts"),
      log,
      workers: 1,
      invocationsPerWorker: 1,
      queueMax: 1,
    });
    try {
      const results = await Promise.allSettled([
        invoke("sleep", { ms: 300 }, { on: small }),
        invoke("sleep", { ms: 1 }, { on: small }),
        invoke("sleep", { ms: 1 }, { on: small }),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
      expect(((results[2] as PromiseRejectedResult).reason as InvocationError).code).toBe(
        "OVERLOADED",
      );
    } finally {
      await small.close();
    }
  });
});

describe("Loading function modules", () => {
  it("loads .ts, .js and .mjs modules from a directory outside the project, skipping helpers, tests and subdirectories", async () => {
    const t = tempDir("boki-user-functions-");
    try {
      const index = JSON.stringify(INDEX_TS);
      writeFileSync(
        join(t.dir, "typed.ts"),
        `import { defineFunction } from ${index};
         interface In { n: number }
         export const double = defineFunction({ name: "double", handler: (_ctx, i: In): number => i.n * 2 });
         export default defineFunction({ name: "typed-default", handler: () => "default export" });`,
      );
      writeFileSync(
        join(t.dir, "plain.mjs"),
        `import { defineFunction } from ${index};
         export default defineFunction({ name: "from-mjs", handler: () => "mjs" });`,
      );
      writeFileSync(
        join(t.dir, "common.js"),
        `const { defineFunction } = require(${index});
         module.exports = defineFunction({ name: "from-cjs", handler: () => "cjs" });`,
      );
      writeFileSync(join(t.dir, "_helper.ts"), `throw new Error("helpers are not loaded");`);
      writeFileSync(join(t.dir, "typed.test.ts"), `throw new Error("tests are not loaded");`);
      writeFileSync(join(t.dir, "types.d.ts"), `export type X = number;`);
      mkdirSync(join(t.dir, "nested"));
      writeFileSync(join(t.dir, "nested", "deep.ts"), `throw new Error("not recursive");`);
      const h = await FunctionHost.start({ functions: t.dir, log, workers: 1 });
      try {
        expect(
          h
            .functions()
            .map((f) => f.name)
            .sort(),
        ).toEqual(["double", "from-cjs", "from-mjs", "typed-default"]);
        expect((await invoke("double", { n: 21 }, { on: h })).output).toBe(42);
        expect((await invoke("typed-default", null, { on: h })).output).toBe("default export");
        expect((await invoke("from-mjs", null, { on: h })).output).toBe("mjs");
        expect((await invoke("from-cjs", null, { on: h })).output).toBe("cjs");
      } finally {
        await h.close();
      }
    } finally {
      t.remove();
    }
  });

  async function loadError(
    files: Record<string, string>,
    path?: string,
  ): Promise<FunctionLoadError> {
    const t = tempDir("boki-bad-functions-");
    try {
      for (const [name, text] of Object.entries(files)) writeFileSync(join(t.dir, name), text);
      try {
        const h = await FunctionHost.start({ functions: join(t.dir, path ?? ""), log, workers: 1 });
        await h.close();
      } catch (err) {
        if (err instanceof FunctionLoadError) return err;
        throw err;
      }
      throw new Error("expected loading to fail");
    } finally {
      t.remove();
    }
  }

  const define = `import { defineFunction } from ${JSON.stringify(INDEX_TS)};`;

  it("names the file and the cause when a module fails to load", async () => {
    const err = await loadError({
      "ok.ts": `${define} export default defineFunction({ name: "ok", handler: () => 1 });`,
      "broken.ts": `${define} throw new Error("cannot start: no config");`,
    });
    expect(err.message).toMatch(/could not load .*broken\.ts: Error: cannot start: no config/);
    expect(err.file).toMatch(/broken\.ts$/);
  });

  it("names the file when a module has a syntax error", async () => {
    const err = await loadError({ "syntax.ts": `export const x = {;` });
    expect(err.message).toMatch(/could not load .*syntax\.ts/);
  });

  it("names the module that exports no function", async () => {
    const err = await loadError({ "empty.ts": `export const notAFunction = 42;` });
    expect(err.message).toMatch(/empty\.ts exports no function/);
  });

  it("refuses two functions with one name, naming both modules", async () => {
    const fn = `${define} export default defineFunction({ name: "same", handler: () => 1 });`;
    const err = await loadError({ "a.ts": fn, "b.ts": fn });
    expect(err.message).toMatch(
      /function "same" is defined twice: by export default of .*a\.ts and by export default of .*b\.ts/,
    );
  });

  it("reports a defineFunction mistake as a load error of that module", async () => {
    const err = await loadError({
      "bad-name.ts": `${define} export default defineFunction({ name: "has space", handler: () => 1 });`,
    });
    expect(err.message).toMatch(/bad-name\.ts.*a function name is/);
  });

  it("reports a missing path and an empty directory", async () => {
    expect((await loadError({}, "missing")).message).toMatch(
      /no function module or directory at .*missing/,
    );
    expect((await loadError({ "notes.txt": "hello" })).message).toMatch(/no function modules in/);
  });
});
