/**
 * The dashboard in a real headless Chromium (Debian's package, driven by playwright-core):
 * the page loads without a console error or a failed request, shows the node, the log, a
 * function the test invoked (and its count going up as the test invokes it again), a
 * workflow instance and its steps, an object instance the test reached through the gateway
 * and a queue it pushed to (with their figures), and the queues with a consumer bound;
 * without a token it asks for one. Also: the build copies the page's files into dist/, which
 * the package ships.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { DevServer } from "../src/embedded/dev-server.js";
import { tempDir } from "./helpers/tmp.js";
import { http } from "./helpers/http.js";
import { FunctionStats, RateWindow, STATS_WINDOW_SLOTS } from "../src/gateway/ui/stats.js";

/** The function modules the dashboard is shown over: workflows, objects, queue consumers. */
const FIXTURES = [
  "./fixtures/flow/workflows.ts",
  "./fixtures/objects/bank.ts",
  "./fixtures/queue-runtime/consumers.ts",
].map((f) => new URL(f, import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env["CHROMIUM_BIN"] ?? "/usr/bin/chromium";
const TOKEN = "dashboard-test-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };
/** Longest the page may take to show what the test waits for (it polls every 2 s). */
const SHOW_MS = 15_000;

describe("the dashboard in headless Chromium", () => {
  const t = tempDir();
  let server: DevServer;
  let browser: Browser;

  beforeAll(async () => {
    // One directory of modules re-exporting the fixtures (a directory is what boki dev loads).
    const functions = join(t.dir, "functions");
    mkdirSync(functions);
    FIXTURES.forEach((f, i) =>
      writeFileSync(join(functions, `m${i}.mjs`), `export * from ${JSON.stringify(f.href)};\n`),
    );
    server = await DevServer.start({
      functions,
      dataDir: join(t.dir, "data"),
      workers: 1,
      auth: { tokens: [TOKEN] },
    });
    // An object instance reached through the gateway: two requests, then its state read.
    for (const [handler, input] of [
      ["open", { balance: 100 }],
      ["deposit", { amount: 5 }],
    ] as const) {
      const r = await http(server.url, "POST", `/object/account/ui-alice/${handler}`, {
        body: JSON.stringify(input),
        headers: auth,
      });
      expect(r.status, r.text).toBe(200);
    }
    expect(
      (await http(server.url, "GET", "/object/account/ui-alice", { headers: auth })).json,
    ).toMatchObject({
      state: { balance: 105 },
      requestsApplied: 2,
    });
    // A queue with no consumer: three messages pushed, one of them popped and not acked.
    for (let i = 0; i < 3; i++) {
      const r = await http(server.url, "POST", "/queue/ui-orders/push", {
        body: JSON.stringify({ order: i }),
        headers: auth,
      });
      expect(r.status, r.text).toBe(200);
    }
    const popped = await http(server.url, "POST", "/queue/ui-orders/pop", {
      body: '{"consumer":"ui-test","visibilityMs":600000}',
      headers: auth,
    });
    expect((popped.json as { messages: unknown[] }).messages).toHaveLength(1);
    // The workflow last, just before the browser starts.
    for (let i = 0; i < 2; i++) {
      const r = await http(server.url, "POST", "/function/plain-add", {
        body: JSON.stringify({ a: i, b: 1 }),
        headers: auth,
      });
      expect(r.status).toBe(200);
    }
    const wf = await http(server.url, "POST", "/workflow/chain", {
      body: '{"steps":2}',
      headers: { ...auth, "x-boki-workflow-id": "wf-ui-1" },
    });
    expect(wf.status).toBe(200);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root in a container has no user namespace for Chromium's sandbox.
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
      timeout: 30_000,
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    t.remove();
  }, 30_000);

  /** A page that records every console error, page error and failed or refused request. */
  async function open(path: string): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning")
        problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) =>
      problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`),
    );
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    await page.goto(server.url + path, { waitUntil: "load", timeout: 20_000 });
    return { page, problems };
  }

  const cell = (page: Page, row: string, column: number): Promise<string> =>
    page.locator(`${row} td`).nth(column).innerText({ timeout: SHOW_MS });

  it("loads, shows the node, its log, the invoked function and the workflow with its steps, and no console error", async () => {
    const { page, problems } = await open(`/ui#token=${TOKEN}`);
    try {
      // The token is taken from the fragment and removed from the address bar.
      await expect.poll(() => page.url(), { timeout: SHOW_MS }).not.toContain(TOKEN);
      const fn = 'tr[data-function="plain-add"]';
      await page.locator(fn).waitFor({ timeout: SHOW_MS });
      await expect.poll(() => cell(page, fn, 3), { timeout: SHOW_MS }).toBe("2");
      expect(await page.locator("#nodes").innerText()).toMatch(
        /dev\s+sequencer\+storage\+engine\+gateway/,
      );
      expect(await page.locator("#nodes").innerText()).toContain("ok");
      expect(await page.locator("#term").innerText()).toBe(`term ${server.log.term}`);
      expect(Number((await cell(page, "#logs tr", 2)).replace(/,/g, ""))).toBeGreaterThan(0);

      // Live: another invocation shows up without reloading.
      await http(server.url, "POST", "/function/plain-add", {
        body: '{"a":5,"b":5}',
        headers: auth,
      });
      await expect.poll(() => cell(page, fn, 3), { timeout: SHOW_MS }).toBe("3");

      const wf = 'tr[data-workflow="wf-ui-1"]';
      await page.locator(wf).waitFor({ timeout: SHOW_MS });
      expect(await cell(page, wf, 1)).toBe("chain");
      expect(await cell(page, wf, 2)).toBe("succeeded");
      await page.locator(wf).click();
      await page.locator("#wf-detail").waitFor({ state: "visible", timeout: SHOW_MS });
      await expect
        .poll(() => page.locator("#wf-steps").innerText(), { timeout: SHOW_MS })
        .toMatch(/step-0[\s\S]*step-1/);
      expect(await page.locator("#wf-detail-status").innerText()).toBe("succeeded");

      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it("shows the object instance and the queue the test reached through the gateway with their figures, and the queues with a consumer bound", async () => {
    const { page, problems } = await open(`/ui#token=${TOKEN}`);
    try {
      // The object type and the instance the test reached, with its figures.
      const objects = page.locator('section[data-library="Objects"]');
      const type = 'div[data-table="Object types"] tr[data-key="account"]';
      await objects.locator(type).waitFor({ timeout: SHOW_MS });
      const objectCell = (r: string, c: number) => objects.locator(`${r} td`).nth(c).innerText();
      expect(await objectCell(type, 1)).toBe("0");
      expect(await objectCell(type, 3)).toBe("30,000");
      expect(await objectCell(type, 4)).toBe("1");
      const inst = 'div[data-table="Instances seen lately"] tr[data-key="account/ui-alice@0"]';
      await objects.locator(inst).waitFor({ timeout: SHOW_MS });
      // object, key, book, requests applied, state bytes ({"balance":105}), locked by, waiting
      expect(await Promise.all([0, 1, 2, 3, 4, 5, 6, 8].map((c) => objectCell(inst, c)))).toEqual([
        "account",
        "ui-alice",
        "0",
        "2",
        String('{"balance":105}'.length),
        "–",
        "0",
        "ok",
      ]);

      // The queue the test pushed to, and the ones with a consumer bound.
      const queues = page.locator('section[data-library="Queues"]');
      const queueCells = async (key: string): Promise<string[]> => {
        const r = queues.locator(`tr[data-key="${key}"]`);
        await r.waitFor({ timeout: SHOW_MS });
        return r.locator("td").allInnerTexts();
      };
      // queue, book, consumers, concurrency, rate, available, in flight, delayed, dead pending,
      // dead letters, total, seen, read
      const orders = await queueCells("ui-orders@0");
      expect([...orders.slice(0, 11), orders[12]]).toEqual([
        "ui-orders",
        "0",
        "–",
        "–",
        "–",
        "2",
        "1",
        "0",
        "0",
        "0",
        "3",
        "ok",
      ]);
      expect((await queueCells("jobs@0")).slice(0, 5)).toEqual([
        "jobs",
        "0",
        "jobs-worker",
        "4",
        "no limit",
      ]);
      expect((await queueCells("slow@0")).slice(0, 5)).toEqual([
        "slow",
        "0",
        "slow-worker",
        "4",
        "20",
      ]);
      // The sections are real now: no placeholder is left.
      expect(await page.locator("#libraries .placeholder").count()).toBe(0);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it("asks for a token when it has none, and shows the data once given one", async () => {
    const { page } = await open("/ui");
    try {
      await page.locator("#token-form").waitFor({ state: "visible", timeout: SHOW_MS });
      expect(await page.locator("#function-rows").innerText()).not.toContain("plain-add");
      await page.locator("#token-input").fill(TOKEN);
      await page.locator("#token-form button").click();
      await page.locator('tr[data-function="plain-add"]').waitFor({ timeout: SHOW_MS });
      expect(await page.locator("#token-form").isHidden()).toBe(true);
    } finally {
      await page.close();
    }
  }, 60_000);

  it("sends its page with a content security policy that allows its own script only", async () => {
    const r = await http(server.url, "GET", "/ui");
    expect(r.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect((await http(server.url, "GET", "/ui/assets/..%2Fstats.ts")).status).toBe(404);
  });
});

describe("the dashboard's figures and files", () => {
  it("counts invocations, failures, rates and latency quantiles over a sliding minute", () => {
    const s = new FunctionStats();
    const t0 = 1_000_000;
    for (let i = 0; i < 100; i++)
      s.record("f", i % 10 === 0 ? "TIMEOUT" : null, i < 98 ? 3 : 900, t0 + i * 50);
    const f = s.figures("f", t0 + 5_000);
    expect(f.total).toBe(100);
    expect(f.errors).toBe(10);
    expect(f.lastError).toBe("TIMEOUT");
    expect(f.lastMinute).toBe(100);
    expect(f.ratePerSec).toBe(10);
    expect(f.p50Ms).toBe(5);
    expect(f.p99Ms).toBe(1_000);
    // A minute later the window is empty but the totals stay.
    const later = s.figures("f", t0 + (STATS_WINDOW_SLOTS + 6) * 1000);
    expect(later).toMatchObject({ total: 100, lastMinute: 0, ratePerSec: 0, p50Ms: null });
    expect(s.figures("never", t0).total).toBe(0);
  });

  it("turns samples of a counter into a rate, and starts again when it goes down", () => {
    const r = new RateWindow();
    expect(r.sample("k", 0, 0)).toBeNull();
    expect(r.sample("k", 100, 1000)).toBe(100);
    expect(r.sample("k", 300, 2000)).toBe(150);
    expect(r.sample("k", 5, 3000)).toBeNull();
    expect(r.sample("k", 25, 4000)).toBe(20);
    expect(r.sample("k", null, 5000)).toBeNull();
  });

  it("the build copies the page's files into dist/, and the package ships dist/", () => {
    const out = tempDir();
    try {
      execFileSync(process.execPath, [join(ROOT, "scripts/finish-build.mjs"), out.dir], {
        timeout: 30_000,
      });
      for (const f of ["index.html", "app.mjs", "style.css"]) {
        const built = join(out.dir, "gateway/ui/static", f);
        expect(existsSync(built), built).toBe(true);
        expect(readFileSync(built)).toEqual(readFileSync(join(ROOT, "src/gateway/ui/static", f)));
      }
      const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
        files: string[];
      };
      expect(pkg.files).toContain("dist/");
    } finally {
      out.remove();
    }
  });
});
