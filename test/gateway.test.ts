import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DevServer } from "../src/embedded/dev-server.js";
import { tempDir } from "./helpers/tmp.js";
import { awaitInvocation, call, errorCode, http } from "./helpers/http.js";
import { gatewayScenarios } from "./helpers/gateway-scenarios.js";

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

describe("Gateway in-process", () => {
  gatewayScenarios(() => url);
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
