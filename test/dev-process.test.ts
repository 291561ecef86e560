import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/tmp.js";
import { awaitInvocation, call, http } from "./helpers/http.js";
import { gatewayScenarios } from "./helpers/gateway-scenarios.js";
import { runBoki, startDevProcess, type DevProcess } from "./helpers/dev-process.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/functions", import.meta.url));

describe("boki dev as a process", () => {
  let tmp: { dir: string; remove: () => void };
  let dev: DevProcess | undefined;
  let url = "";

  beforeAll(async () => {
    tmp = tempDir();
    dev = await startDevProcess([
      "--functions",
      FIXTURES,
      "--data",
      join(tmp.dir, "data"),
      "--timeout",
      "1500",
    ]);
    url = dev.url;
  }, 90_000);

  afterAll(async () => {
    await dev?.stop();
    tmp?.remove();
  }, 30_000);

  it("prints its URL and the functions it loaded", () => {
    expect(dev!.output()).toMatch(/functions from .*fixtures\/functions:/);
    expect(dev!.output()).toMatch(/^\s+echo\s+book 0, timeout 1500 ms$/m);
    expect(dev!.output()).toMatch(/^\s+in-book-7\s+book 7/m);
  });

  gatewayScenarios(() => url);

  it("boki invoke prints a function's output, and exits 1 with the error code for a failure", async () => {
    const ok = await runBoki(["invoke", "--url", url, "echo", '{"a":[1,2]}']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ a: [1, 2] });
    const bad = await runBoki(["invoke", "--url", url, "fail"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /error FUNCTION_ERROR \(HTTP 500\): function fail threw Error: boom/,
    );
    const waited = await runBoki([
      "invoke",
      "--url",
      url,
      "--async",
      "--wait",
      "--book",
      "4",
      "where-am-i",
    ]);
    expect(waited.code).toBe(0);
    expect(JSON.parse(waited.stdout)).toEqual({ book: 4, function: "where-am-i" });
  }, 60_000);
});

describe("boki dev restarts", () => {
  it("honours an idempotency key across a restart and re-runs an async invocation recorded before a SIGKILL", async () => {
    const tmp = tempDir();
    const args = ["--functions", FIXTURES, "--data", join(tmp.dir, "data")];
    let dev = await startDevProcess(args);
    try {
      const key = "process-restart";
      const first = await call(dev.url, "count-runs", { key }, { "idempotency-key": key });
      expect(first.status).toBe(200);
      expect(first.json).toBe(1);

      // Clean restart (SIGTERM): the key still returns the first result, and nothing runs again.
      expect((await dev.stop("SIGTERM")).code).toBe(0);
      dev = await startDevProcess(args);
      const again = await call(dev.url, "count-runs", { key }, { "idempotency-key": key });
      expect(again.json).toBe(1);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.headers.get("x-boki-invocation-id")).toBe(
        first.headers.get("x-boki-invocation-id"),
      );
      expect((await call(dev.url, "read", { tag: `runs:${key}` })).json).toHaveLength(1);

      // An async invocation is acknowledged only once recorded: it survives a SIGKILL.
      const accepted = await http(dev.url, "POST", "/async/function/wait-for-go", {
        body: JSON.stringify({ key: "killed" }),
      });
      expect(accepted.status).toBe(202);
      const id = (accepted.json as { invocationId: string }).invocationId;
      await dev.stop("SIGKILL");
      dev = await startDevProcess(args);
      expect(dev.output()).toMatch(/re-running 1 recorded invocation/);
      await call(dev.url, "append", { tag: "go:killed", value: "go" });
      expect(await awaitInvocation(dev.url, id)).toMatchObject({
        status: "succeeded",
        output: "went",
      });
      // The key is still honoured after the crash too.
      expect((await call(dev.url, "count-runs", { key }, { "idempotency-key": key })).json).toBe(1);
    } finally {
      await dev.stop();
      tmp.remove();
    }
  }, 180_000);

  it("stops cleanly on SIGINT (Ctrl-C)", async () => {
    const tmp = tempDir();
    const dev = await startDevProcess(["--functions", FIXTURES, "--data", join(tmp.dir, "data")]);
    try {
      expect((await call(dev.url, "echo", 1)).json).toBe(1);
      expect(await dev.stop("SIGINT")).toEqual({ code: 0, signal: null });
    } finally {
      await dev.stop("SIGKILL");
      tmp.remove();
    }
  }, 90_000);

  it("exits with an error naming the module that fails to load", async () => {
    const tmp = tempDir();
    try {
      writeFileSync(join(tmp.dir, "broken.ts"), `throw new Error("this module is broken");`);
      const r = await runBoki([
        "dev",
        "--functions",
        tmp.dir,
        "--data",
        join(tmp.dir, "data"),
        "--port",
        "0",
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/could not load .*broken\.ts: Error: this module is broken/);
    } finally {
      tmp.remove();
    }
  }, 60_000);
});
