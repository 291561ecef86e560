import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DevServer } from "../src/embedded/dev-server.js";
import { HTTP_BODY_BYTES_MAX } from "../src/gateway/server.js";
import { tempDir } from "./helpers/tmp.js";
import { awaitInvocation, call, errorCode, http } from "./helpers/http.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/functions", import.meta.url));

let tmp: { dir: string; remove: () => void };
let server: DevServer;
let url: string;

beforeAll(async () => {
  tmp = tempDir();
  server = await DevServer.start({
    functions: FIXTURES,
    dataDir: join(tmp.dir, "data"),
    timeoutMs: 1500,
  });
  url = server.url;
}, 60_000);

afterAll(async () => {
  await server?.close();
  tmp?.remove();
});

describe("Gateway: invocations", () => {
  it("runs a function synchronously: 200 with the output as the body and the invocation id in a header", async () => {
    const r = await call(url, "echo", { hello: ["world", 1] });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.json).toEqual({ hello: ["world", 1] });
    expect(r.headers.get("x-boki-invocation-id")).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it("takes an empty body as null and any Content-Type as JSON", async () => {
    expect((await http(url, "POST", "/function/echo")).json).toBeNull();
    const form = await http(url, "POST", "/function/echo", {
      body: '{"a":1}',
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(form.json).toEqual({ a: 1 });
  });

  it("runs a function asynchronously: 202 with an id, then GET /invocations/<id> gives the output", async () => {
    const r = await http(url, "POST", "/async/function/append", {
      body: JSON.stringify({ tag: "async-1", value: "v" }),
    });
    expect(r.status).toBe(202);
    const { invocationId } = r.json as { invocationId: string };
    expect(r.headers.get("x-boki-invocation-id")).toBe(invocationId);
    const s = await awaitInvocation(url, invocationId);
    expect(s).toMatchObject({ status: "succeeded", function: "append", book: 0, mode: "async" });
    expect(typeof s.output).toBe("string");
    expect((await call(url, "read", { tag: "async-1" })).json).toEqual(["v"]);
  });

  it("records an async invocation's failure with its code", async () => {
    const r = await http(url, "POST", "/async/function/fail", { body: "null" });
    const s = await awaitInvocation(url, (r.json as { invocationId: string }).invocationId);
    expect(s).toMatchObject({ status: "failed", error: { code: "FUNCTION_ERROR" } });
  });

  it("runs a nested invocation that reads its caller's writes", async () => {
    const r = await call(url, "write-then-child-reads", {
      tag: "nested-http",
      value: "parent wrote",
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual(["parent wrote"]);
  });

  it("records ctx.invokeAsync children and runs them", async () => {
    const r = await call(url, "start-append", { tag: "child-async", value: "from child" });
    const childId = r.json as string;
    expect(childId).toBe(`${r.headers.get("x-boki-invocation-id")}.1`);
    expect(await awaitInvocation(url, childId)).toMatchObject({ status: "succeeded" });
    expect((await call(url, "read", { tag: "child-async" })).json).toEqual(["from child"]);
  });

  it("uses X-Boki-Book, else the function's book, else book 0", async () => {
    expect((await call(url, "where-am-i", null, { "x-boki-book": "12" })).json).toEqual({
      book: 12,
      function: "where-am-i",
    });
    expect((await call(url, "where-am-i", null)).json).toMatchObject({ book: 0 });
    expect((await call(url, "in-book-7", null)).json).toBe(7);
    expect((await call(url, "in-book-7", null, { "x-boki-book": "8" })).json).toBe(8);
  });

  it("keeps books apart: a read in book 1 never returns a book-2 record", async () => {
    await call(url, "append", { tag: "shared-name", value: "two" }, { "x-boki-book": "2" });
    await call(url, "append", { tag: "shared-name", value: "one" }, { "x-boki-book": "1" });
    expect((await call(url, "read", { tag: "shared-name" }, { "x-boki-book": "1" })).json).toEqual([
      "one",
    ]);
    expect((await call(url, "read", { tag: "shared-name" }, { "x-boki-book": "2" })).json).toEqual([
      "two",
    ]);
    expect((await call(url, "read", { tag: "shared-name" }, { "x-boki-book": "3" })).json).toEqual(
      [],
    );
  });

  it("does not disturb a concurrent invocation when one throws", async () => {
    const [bad, good] = await Promise.all([
      call(url, "fail", null),
      call(url, "sleep", { ms: 300 }),
    ]);
    expect(bad.status).toBe(500);
    expect(good.status).toBe(200);
    expect(good.json).toBe(300);
  });
});

describe("Gateway: idempotency keys", () => {
  it("runs a request once for concurrent requests with one key, and they all get its result", async () => {
    const key = `k-concurrent-${Date.now()}`;
    const input = { key, sleepMs: 200 };
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => call(url, "count-runs", input, { "idempotency-key": key })),
    );
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(replies.map((r) => r.json)).toEqual([1, 1, 1, 1, 1, 1]);
    const ids = new Set(replies.map((r) => r.headers.get("x-boki-invocation-id")));
    expect(ids.size).toBe(1);
    expect(replies.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(5);
    expect((await call(url, "read", { tag: `runs:${key}` })).json).toHaveLength(1);
    // A later repeat replays too, and the invocation is recorded.
    const again = await call(url, "count-runs", input, { "idempotency-key": key });
    expect(again.json).toBe(1);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const s = await awaitInvocation(url, again.headers.get("x-boki-invocation-id")!);
    expect(s).toMatchObject({ status: "succeeded", output: 1, mode: "sync" });
  });

  it("replays a recorded failure with its status", async () => {
    const first = await call(url, "fail", null, { "idempotency-key": "k-fail" });
    const second = await call(url, "fail", null, { "idempotency-key": "k-fail" });
    expect([first.status, second.status]).toEqual([500, 500]);
    expect(second.json).toEqual(first.json);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
  });

  it("returns the first async invocation's id for a repeated key and runs nothing again", async () => {
    const key = `k-async-${Date.now()}`;
    const body = JSON.stringify({ key });
    const headers = { "idempotency-key": key };
    const a = await http(url, "POST", "/async/function/count-runs", { body, headers });
    const b = await http(url, "POST", "/async/function/count-runs", { body, headers });
    const id = (a.json as { invocationId: string }).invocationId;
    expect((b.json as { invocationId: string }).invocationId).toBe(id);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect(await awaitInvocation(url, id)).toMatchObject({ status: "succeeded", output: 1 });
    // A synchronous request with the same key returns the async invocation's result.
    const c = await call(url, "count-runs", { key }, headers);
    expect(c.json).toBe(1);
    expect((await call(url, "read", { tag: `runs:${key}` })).json).toHaveLength(1);
  });

  it("keeps keys per book", async () => {
    const key = `k-books-${Date.now()}`;
    const one = await call(
      url,
      "count-runs",
      { key },
      { "idempotency-key": key, "x-boki-book": "1" },
    );
    const two = await call(
      url,
      "count-runs",
      { key },
      { "idempotency-key": key, "x-boki-book": "2" },
    );
    expect([one.json, two.json]).toEqual([1, 1]);
    expect(two.headers.get("idempotent-replayed")).toBeNull();
  });
});

describe("Gateway: errors", () => {
  it("400 INVALID_ARGUMENT for a body that is not JSON", async () => {
    const r = await http(url, "POST", "/function/echo", { body: '{"a":' });
    expect([r.status, errorCode(r)]).toEqual([400, "INVALID_ARGUMENT"]);
    expect((r.json as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
  });

  it("400 INVALID_ARGUMENT for a bad X-Boki-Book (not a number, too large, or the system book)", async () => {
    for (const book of ["abc", "-1", "4294967296", "1.5", "4294967295"]) {
      const r = await call(url, "echo", 1, { "x-boki-book": book });
      expect([book, r.status, errorCode(r)]).toEqual([book, 400, "INVALID_ARGUMENT"]);
    }
  });

  it("400 INVALID_ARGUMENT for a bad Idempotency-Key and a bad invocation id", async () => {
    const r = await call(url, "echo", 1, { "idempotency-key": "x".repeat(300) });
    expect([r.status, errorCode(r)]).toEqual([400, "INVALID_ARGUMENT"]);
    const g = await http(url, "GET", "/invocations/not%20an%20id");
    expect([g.status, errorCode(g)]).toEqual([400, "INVALID_ARGUMENT"]);
  });

  it("404 FUNCTION_NOT_FOUND for an unknown function, sync and async", async () => {
    const r = await call(url, "no-such-function", null);
    expect([r.status, errorCode(r)]).toEqual([404, "FUNCTION_NOT_FOUND"]);
    const a = await http(url, "POST", "/async/function/no-such-function", { body: "1" });
    expect([a.status, errorCode(a)]).toEqual([404, "FUNCTION_NOT_FOUND"]);
  });

  it("404 NOT_FOUND for an unknown invocation and an unknown route", async () => {
    const r = await http(url, "GET", "/invocations/AAAAAAAAAAAAAAAAAAAAAA");
    expect([r.status, errorCode(r)]).toEqual([404, "NOT_FOUND"]);
    const sync = await call(url, "echo", 1);
    const unrecorded = await http(
      url,
      "GET",
      `/invocations/${sync.headers.get("x-boki-invocation-id")}`,
    );
    expect(unrecorded.status).toBe(404);
    const route = await http(url, "GET", "/nowhere");
    expect([route.status, errorCode(route)]).toEqual([404, "NOT_FOUND"]);
  });

  it("409 IDEMPOTENCY_CONFLICT when a key is reused for another input", async () => {
    await call(url, "echo", 1, { "idempotency-key": "k-conflict" });
    const r = await call(url, "echo", 2, { "idempotency-key": "k-conflict" });
    expect([r.status, errorCode(r)]).toEqual([409, "IDEMPOTENCY_CONFLICT"]);
  });

  it("413 PAYLOAD_TOO_LARGE for a body over HTTP_BODY_BYTES_MAX", async () => {
    const r = await call(url, "echo", "x".repeat(HTTP_BODY_BYTES_MAX));
    expect([r.status, errorCode(r)]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
  });

  it("500 FUNCTION_ERROR when the function throws, with what it threw", async () => {
    const r = await call(url, "fail", null);
    expect([r.status, errorCode(r)]).toEqual([500, "FUNCTION_ERROR"]);
    expect((r.json as { error: { message: string } }).error.message).toContain("Error: boom");
  });

  it("500 INVALID_OUTPUT when the output is not JSON", async () => {
    const r = await call(url, "not-json", null);
    expect([r.status, errorCode(r)]).toEqual([500, "INVALID_OUTPUT"]);
  });

  it("504 TIMEOUT when the function runs past its time limit, and the pool recovers from a CPU-stuck one", async () => {
    const slow = await call(url, "quick-timeout", null);
    expect([slow.status, errorCode(slow)]).toEqual([504, "TIMEOUT"]);
    const stuck = await call(url, "spin", null);
    expect([stuck.status, errorCode(stuck)]).toEqual([504, "TIMEOUT"]);
    const after = await Promise.all([1, 2, 3, 4].map((i) => call(url, "echo", i)));
    expect(after.map((r) => r.json)).toEqual([1, 2, 3, 4]);
  });

  it("Error bodies are { error: { code, message } }", async () => {
    const r = await call(url, "no-such-function", null);
    expect(Object.keys(r.json as object)).toEqual(["error"]);
    expect(Object.keys((r.json as { error: object }).error).sort()).toEqual(["code", "message"]);
  });
});

describe("Gateway: overload", () => {
  it("503 OVERLOADED with Retry-After when every worker is busy and the queue is full", async () => {
    const t = tempDir();
    const small = await DevServer.start({
      functions: join(FIXTURES, "basic.ts"),
      dataDir: t.dir,
      workers: 1,
      invocationsPerWorker: 1,
      queueMax: 1,
    });
    try {
      const replies = await Promise.all([
        call(small.url, "sleep", { ms: 400 }),
        call(small.url, "sleep", { ms: 1 }),
        call(small.url, "sleep", { ms: 1 }),
      ]);
      expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 503]);
      const over = replies.find((r) => r.status === 503)!;
      expect(errorCode(over)).toBe("OVERLOADED");
      expect(over.headers.get("retry-after")).toBe("1");
    } finally {
      await small.close();
      t.remove();
    }
  });
});

describe("Gateway: health and metrics", () => {
  it("GET /healthz answers 200 with the number of functions", async () => {
    const r = await http(url, "GET", "/healthz");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: "ok", functions: server.functions().length });
  });

  it("GET /functions lists the functions", async () => {
    const r = await http(url, "GET", "/functions");
    const names = (r.json as { functions: Array<{ name: string }> }).functions.map((f) => f.name);
    expect(names).toContain("echo");
  });

  it("GET /metrics counts invocations by function and outcome, latencies, log operations and cache hits", async () => {
    await call(url, "echo", 1);
    await call(url, "fail", null);
    await call(url, "append", { tag: "metrics", value: "m" });
    await call(url, "read", { tag: "metrics" });
    const r = await http(url, "GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
    const value = (line: string): number => {
      const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, "m").exec(r.text);
      return m === null ? NaN : Number(m[1]);
    };
    expect(value('boki_invocations_total{function="echo",outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(
      value('boki_invocations_total{function="fail",outcome="function_error"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value('boki_invocation_duration_seconds_count{function="echo",outcome="ok"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(value("boki_log_appends_total")).toBeGreaterThanOrEqual(1);
    expect(value("boki_log_reads_total")).toBeGreaterThanOrEqual(1);
    expect(value("boki_log_cache_hits_total")).toBeGreaterThanOrEqual(1);
    expect(value("boki_pool_workers")).toBeGreaterThanOrEqual(1);
    expect(r.text).toMatch(
      /^boki_http_request_duration_seconds_count\{route="\/function\/:name",status="200"\} \d+/m,
    );
  });
});

describe("Gateway: restart", () => {
  it("re-runs an async invocation recorded before a restart and honours its idempotency key after it", async () => {
    const t = tempDir();
    const dataDir = join(t.dir, "data");
    let s = await DevServer.start({ functions: FIXTURES, dataDir });
    try {
      const key = "restart-key";
      const first = await call(s.url, "count-runs", { key }, { "idempotency-key": key });
      expect(first.json).toBe(1);
      // An async invocation that waits (blocked on a read) until after the restart.
      const a = await http(s.url, "POST", "/async/function/wait-for-go", {
        body: JSON.stringify({ key: "r1" }),
      });
      expect(a.status).toBe(202);
      const id = (a.json as { invocationId: string }).invocationId;
      expect((await http(s.url, "GET", `/invocations/${id}`)).json).toMatchObject({
        status: "running",
      });
      await s.close(0);
      s = await DevServer.start({ functions: FIXTURES, dataDir });
      expect(s.recovered).toBe(1);
      const again = await call(s.url, "count-runs", { key }, { "idempotency-key": key });
      expect(again.json).toBe(1);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.headers.get("x-boki-invocation-id")).toBe(
        first.headers.get("x-boki-invocation-id"),
      );
      await call(s.url, "append", { tag: "go:r1", value: "go" });
      expect(await awaitInvocation(s.url, id)).toMatchObject({
        status: "succeeded",
        output: "went",
      });
    } finally {
      await s.close();
      t.remove();
    }
  });
});
