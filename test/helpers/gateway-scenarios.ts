/**
 * End-to-end scenarios over HTTP that run the same way against any gateway: the in-process
 * dev server (gateway.test.ts) and a `boki dev` child process (dev-process.test.ts). The
 * gateway must serve test/fixtures/functions with a default time limit of 1500 ms.
 */
import { describe, expect, it } from "vitest";
import { HTTP_BODY_BYTES_MAX } from "../../src/gateway/server.js";
import { awaitInvocation, call, errorCode, http } from "./http.js";

export function gatewayScenarios(base: () => string): void {
  describe("Gateway: invocations", () => {
    it("runs a function synchronously: 200 with the output as the body and the invocation id in a header", async () => {
      const r = await call(base(), "echo", { hello: ["world", 1] });
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/^application\/json/);
      expect(r.json).toEqual({ hello: ["world", 1] });
      expect(r.headers.get("x-boki-invocation-id")).toMatch(/^[A-Za-z0-9_-]{22}$/);
    });

    it("takes an empty body as null and any Content-Type as JSON", async () => {
      expect((await http(base(), "POST", "/function/echo")).json).toBeNull();
      const form = await http(base(), "POST", "/function/echo", {
        body: '{"a":1}',
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      expect(form.json).toEqual({ a: 1 });
    });

    it("runs a function asynchronously: 202 with an id, then GET /invocations/<id> gives the output", async () => {
      const r = await http(base(), "POST", "/async/function/append", {
        body: JSON.stringify({ tag: "async-1", value: "v" }),
      });
      expect(r.status).toBe(202);
      const { invocationId } = r.json as { invocationId: string };
      expect(r.headers.get("x-boki-invocation-id")).toBe(invocationId);
      const s = await awaitInvocation(base(), invocationId);
      expect(s).toMatchObject({ status: "succeeded", function: "append", book: 0, mode: "async" });
      expect(typeof s.output).toBe("string");
      expect((await call(base(), "read", { tag: "async-1" })).json).toEqual(["v"]);
    });

    it("records an async invocation's failure with its code", async () => {
      const r = await http(base(), "POST", "/async/function/fail", { body: "null" });
      const s = await awaitInvocation(base(), (r.json as { invocationId: string }).invocationId);
      expect(s).toMatchObject({ status: "failed", error: { code: "FUNCTION_ERROR" } });
    });

    it("runs a nested invocation that reads its caller's writes", async () => {
      const r = await call(base(), "write-then-child-reads", {
        tag: "nested-http",
        value: "parent wrote",
      });
      expect(r.status).toBe(200);
      expect(r.json).toEqual(["parent wrote"]);
    });

    it("records ctx.invokeAsync children and runs them", async () => {
      const r = await call(base(), "start-append", { tag: "child-async", value: "from child" });
      const childId = r.json as string;
      expect(childId).toBe(`${r.headers.get("x-boki-invocation-id")}.1`);
      expect(await awaitInvocation(base(), childId)).toMatchObject({ status: "succeeded" });
      expect((await call(base(), "read", { tag: "child-async" })).json).toEqual(["from child"]);
    });

    it("uses X-Boki-Book, else the function's book, else book 0", async () => {
      expect((await call(base(), "where-am-i", null, { "x-boki-book": "12" })).json).toEqual({
        book: 12,
        function: "where-am-i",
      });
      expect((await call(base(), "where-am-i", null)).json).toMatchObject({ book: 0 });
      expect((await call(base(), "in-book-7", null)).json).toBe(7);
      expect((await call(base(), "in-book-7", null, { "x-boki-book": "8" })).json).toBe(8);
    });

    it("keeps books apart: a read in book 1 never returns a book-2 record", async () => {
      await call(base(), "append", { tag: "shared-name", value: "two" }, { "x-boki-book": "2" });
      await call(base(), "append", { tag: "shared-name", value: "one" }, { "x-boki-book": "1" });
      expect(
        (await call(base(), "read", { tag: "shared-name" }, { "x-boki-book": "1" })).json,
      ).toEqual(["one"]);
      expect(
        (await call(base(), "read", { tag: "shared-name" }, { "x-boki-book": "2" })).json,
      ).toEqual(["two"]);
      expect(
        (await call(base(), "read", { tag: "shared-name" }, { "x-boki-book": "3" })).json,
      ).toEqual([]);
    });

    it("does not disturb a concurrent invocation when one throws", async () => {
      const [bad, good] = await Promise.all([
        call(base(), "fail", null),
        call(base(), "sleep", { ms: 300 }),
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
        Array.from({ length: 6 }, () =>
          call(base(), "count-runs", input, { "idempotency-key": key }),
        ),
      );
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(replies.map((r) => r.json)).toEqual([1, 1, 1, 1, 1, 1]);
      const ids = new Set(replies.map((r) => r.headers.get("x-boki-invocation-id")));
      expect(ids.size).toBe(1);
      expect(replies.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(
        5,
      );
      // Through a cluster's gateway the read may land on an engine whose index has not yet
      // applied the run's record (an HTTP caller gets no metalog position to read at), so
      // it is read until the record shows; a second run would show as a second record.
      let runs: unknown[] = [];
      for (let i = 0; i < 250 && runs.length === 0; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 20));
        runs = (await call(base(), "read", { tag: `runs:${key}` })).json as unknown[];
      }
      expect(runs).toHaveLength(1);
      // A later repeat replays too, and the invocation is recorded.
      const again = await call(base(), "count-runs", input, { "idempotency-key": key });
      expect(again.json).toBe(1);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      const s = await awaitInvocation(base(), again.headers.get("x-boki-invocation-id")!);
      expect(s).toMatchObject({ status: "succeeded", output: 1, mode: "sync" });
    });

    it("replays a recorded failure with its status", async () => {
      const first = await call(base(), "fail", null, { "idempotency-key": "k-fail" });
      const second = await call(base(), "fail", null, { "idempotency-key": "k-fail" });
      expect([first.status, second.status]).toEqual([500, 500]);
      expect(second.json).toEqual(first.json);
      expect(second.headers.get("idempotent-replayed")).toBe("true");
    });

    it("returns the first async invocation's id for a repeated key and runs nothing again", async () => {
      const key = `k-async-${Date.now()}`;
      const body = JSON.stringify({ key });
      const headers = { "idempotency-key": key };
      const a = await http(base(), "POST", "/async/function/count-runs", { body, headers });
      const b = await http(base(), "POST", "/async/function/count-runs", { body, headers });
      const id = (a.json as { invocationId: string }).invocationId;
      expect((b.json as { invocationId: string }).invocationId).toBe(id);
      expect(b.headers.get("idempotent-replayed")).toBe("true");
      expect(await awaitInvocation(base(), id)).toMatchObject({ status: "succeeded", output: 1 });
      // A synchronous request with the same key returns the async invocation's result.
      const c = await call(base(), "count-runs", { key }, headers);
      expect(c.json).toBe(1);
      expect((await call(base(), "read", { tag: `runs:${key}` })).json).toHaveLength(1);
    });

    it("keeps keys per book", async () => {
      const key = `k-books-${Date.now()}`;
      const one = await call(
        base(),
        "count-runs",
        { key },
        { "idempotency-key": key, "x-boki-book": "1" },
      );
      const two = await call(
        base(),
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
      const r = await http(base(), "POST", "/function/echo", { body: '{"a":' });
      expect([r.status, errorCode(r)]).toEqual([400, "INVALID_ARGUMENT"]);
      expect((r.json as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
    });

    it("400 INVALID_ARGUMENT for a bad X-Boki-Book (not a number, too large, or the system book)", async () => {
      for (const book of ["abc", "-1", "4294967296", "1.5", "4294967295"]) {
        const r = await call(base(), "echo", 1, { "x-boki-book": book });
        expect([book, r.status, errorCode(r)]).toEqual([book, 400, "INVALID_ARGUMENT"]);
      }
    });

    it("400 INVALID_ARGUMENT for a bad Idempotency-Key and a bad invocation id", async () => {
      const r = await call(base(), "echo", 1, { "idempotency-key": "x".repeat(300) });
      expect([r.status, errorCode(r)]).toEqual([400, "INVALID_ARGUMENT"]);
      const g = await http(base(), "GET", "/invocations/not%20an%20id");
      expect([g.status, errorCode(g)]).toEqual([400, "INVALID_ARGUMENT"]);
    });

    it("404 FUNCTION_NOT_FOUND for an unknown function, sync and async", async () => {
      const r = await call(base(), "no-such-function", null);
      expect([r.status, errorCode(r)]).toEqual([404, "FUNCTION_NOT_FOUND"]);
      const a = await http(base(), "POST", "/async/function/no-such-function", { body: "1" });
      expect([a.status, errorCode(a)]).toEqual([404, "FUNCTION_NOT_FOUND"]);
    });

    it("404 NOT_FOUND for an unknown invocation and an unknown route", async () => {
      const r = await http(base(), "GET", "/invocations/AAAAAAAAAAAAAAAAAAAAAA");
      expect([r.status, errorCode(r)]).toEqual([404, "NOT_FOUND"]);
      const sync = await call(base(), "echo", 1);
      const unrecorded = await http(
        base(),
        "GET",
        `/invocations/${sync.headers.get("x-boki-invocation-id")}`,
      );
      expect(unrecorded.status).toBe(404);
      const route = await http(base(), "GET", "/nowhere");
      expect([route.status, errorCode(route)]).toEqual([404, "NOT_FOUND"]);
    });

    it("409 IDEMPOTENCY_CONFLICT when a key is reused for another input", async () => {
      await call(base(), "echo", 1, { "idempotency-key": "k-conflict" });
      const r = await call(base(), "echo", 2, { "idempotency-key": "k-conflict" });
      expect([r.status, errorCode(r)]).toEqual([409, "IDEMPOTENCY_CONFLICT"]);
    });

    it("413 PAYLOAD_TOO_LARGE for a body over HTTP_BODY_BYTES_MAX", async () => {
      const r = await call(base(), "echo", "x".repeat(HTTP_BODY_BYTES_MAX));
      expect([r.status, errorCode(r)]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    });

    it("500 FUNCTION_ERROR when the function throws, with what it threw", async () => {
      const r = await call(base(), "fail", null);
      expect([r.status, errorCode(r)]).toEqual([500, "FUNCTION_ERROR"]);
      expect((r.json as { error: { message: string } }).error.message).toContain("Error: boom");
    });

    it("500 INVALID_OUTPUT when the output is not JSON", async () => {
      const r = await call(base(), "not-json", null);
      expect([r.status, errorCode(r)]).toEqual([500, "INVALID_OUTPUT"]);
    });

    it("504 TIMEOUT when the function runs past its time limit, and the pool recovers from a CPU-stuck one", async () => {
      const slow = await call(base(), "quick-timeout", null);
      expect([slow.status, errorCode(slow)]).toEqual([504, "TIMEOUT"]);
      const stuck = await call(base(), "spin", null);
      expect([stuck.status, errorCode(stuck)]).toEqual([504, "TIMEOUT"]);
      const after = await Promise.all([1, 2, 3, 4].map((i) => call(base(), "echo", i)));
      expect(after.map((r) => r.json)).toEqual([1, 2, 3, 4]);
    });

    it("Error bodies are { error: { code, message } }", async () => {
      const r = await call(base(), "no-such-function", null);
      expect(Object.keys(r.json as object)).toEqual(["error"]);
      expect(Object.keys((r.json as { error: object }).error).sort()).toEqual(["code", "message"]);
    });
  });
}
