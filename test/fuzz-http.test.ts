/**
 * Every HTTP route of the gateway under random and mutated requests (fast-check), against a
 * real DevServer with workflows and objects loaded:
 * - random requests (any route, method, path, headers, body) never crash or hang the
 *   gateway and are always answered, failures as a typed error (`{ error: { code,
 *   message } }` with a known code, never INTERNAL);
 * - valid requests with at least one mutation that makes them invalid are refused with a
 *   4xx and change nothing: the records of the books they aim at and of the system book,
 *   the workflow instance and the object they name stay as they were;
 * - malformed HTTP on a raw socket is answered 400 or closed, and the gateway goes on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { connect } from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DevServer } from "../src/embedded/dev-server.js";
import { SYSTEM_BOOK } from "../src/runtime/ids.js";
import { tempDir } from "./helpers/tmp.js";
import { http, type HttpReply } from "./helpers/http.js";

const FLOWS = fileURLToPath(new URL("./fixtures/flow/workflows.ts", import.meta.url));
const OBJECTS = fileURLToPath(new URL("./fixtures/objects/bank.ts", import.meta.url));
/** Every request must be answered within this. */
const ANSWER_MS = 10_000;
const BOOK = 7;
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 120);

/** Codes a gateway answers with (the runtime's, flow's refusals, objects', authentication). */
const KNOWN_CODES = new Set([
  "INVALID_ARGUMENT",
  "FUNCTION_NOT_FOUND",
  "NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "FUNCTION_ERROR",
  "INVALID_OUTPUT",
  "WORKER_LOST",
  "OVERLOADED",
  "UNAVAILABLE",
  "TIMEOUT",
  "WORKFLOW_FAILED",
  "CANCELLED",
  "ID_CONFLICT",
  "HANDLER_ERROR",
  "UNAUTHENTICATED",
  "FORBIDDEN",
]);

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

const ROUTES: ReadonlyArray<{ method: string; path: (s: string) => string; body: boolean }> = [
  { method: "POST", path: (s) => `/function/${s}`, body: true },
  { method: "POST", path: (s) => `/async/function/${s}`, body: true },
  { method: "GET", path: (s) => `/invocations/${s}`, body: false },
  { method: "GET", path: () => "/functions", body: false },
  { method: "GET", path: () => "/healthz", body: false },
  { method: "GET", path: () => "/metrics", body: false },
  { method: "POST", path: (s) => `/workflow/${s}`, body: true },
  { method: "POST", path: (s) => `/async/workflow/${s}`, body: true },
  { method: "GET", path: (s) => `/workflows/${s}`, body: false },
  { method: "GET", path: (s) => `/workflows?${s}`, body: false },
  { method: "POST", path: (s) => `/workflows/${s}/cancel`, body: true },
  { method: "POST", path: (s) => `/object/account/${s}/deposit`, body: true },
  { method: "POST", path: (s) => `/object/${s}/k/balance`, body: true },
  { method: "GET", path: (s) => `/object/account/${s}`, body: false },
  { method: "GET", path: () => "/ui", body: false },
  { method: "GET", path: (s) => `/ui/assets/${s}`, body: false },
  { method: "GET", path: () => "/ui/api/overview", body: false },
];

const segment = fc.oneof(
  fc.constantFrom("plain-add", "chain", "napper", "account", "wf-fuzz-1", "missing", "app.mjs"),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.string({ unit: "binary", maxLength: 20 }).map(encodeURIComponent),
  fc.constantFrom("%00", "%ff", "..%2F..", "a".repeat(600), "status=failed&limit=2", "limit=x"),
);
const headerValue = fc.oneof(
  fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
  fc.constantFrom("7", "-1", "4294967295", "4294967296", "1e3", " 7 ", ""),
);
const body = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 200 }),
  fc.constantFrom("{", "[1,", '{"a":', "null", "", '"\\u0000"', "1".repeat(400)),
);

async function send(base: string, r: Req): Promise<HttpReply> {
  return http(base, r.method, r.path, {
    headers: r.headers,
    ...(r.body === undefined || r.method === "GET" || r.method === "HEAD" ? {} : { body: r.body }),
    timeoutMs: ANSWER_MS,
  });
}

function checkTyped(r: HttpReply, req: Req): void {
  const what = `${req.method} ${req.path} → ${r.status} ${r.text.slice(0, 200)}`;
  expect(r.status, what).toBeGreaterThanOrEqual(200);
  expect(r.status, what).toBeLessThan(600);
  if (r.status < 400 || req.method === "HEAD") return;
  const e = (r.json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  expect(typeof e?.code, what).toBe("string");
  expect(typeof e?.message, what).toBe("string");
  // An object handler's refusal (422) carries the handler's own code.
  if (r.status !== 422) expect(KNOWN_CODES.has(e!.code as string), what).toBe(true);
}

describe("the gateway under fuzzed requests", () => {
  const t = tempDir();
  let server: DevServer;
  let base = "";

  /** What the fuzzed requests must not change: tails of the books and the named state. */
  const snapshot = async (): Promise<unknown> => {
    const tails = [];
    for (const b of [0, BOOK, SYSTEM_BOOK])
      tails.push((await server.log.book(b).checkTail(0))?.seqnum ?? null);
    const wf = await http(base, "GET", "/workflows/wf-fuzz-1", {
      headers: { "x-boki-book": String(BOOK) },
    });
    const obj = await http(base, "GET", "/object/account/fuzz", {
      headers: { "x-boki-book": String(BOOK) },
    });
    return { tails, wf: wf.json, obj: obj.json };
  };
  /**
   * A snapshot once the system is at rest: the same over more than a recovery interval (the
   * workflow library's scan writes only when something changed; invocations of earlier
   * tests must have ended).
   */
  const atRest = async (): Promise<unknown> => {
    for (let i = 0; i < 20; i++) {
      const a = await snapshot();
      await new Promise((r) => setTimeout(r, 1_200));
      const b = await snapshot();
      if (JSON.stringify(a) === JSON.stringify(b)) return b;
    }
    throw new Error("the system never came to rest");
  };

  beforeAll(async () => {
    const fns = join(t.dir, "functions");
    mkdirSync(fns);
    writeFileSync(join(fns, "flows.mts"), `export * from ${JSON.stringify(FLOWS)};\n`);
    writeFileSync(join(fns, "objects.mts"), `export * from ${JSON.stringify(OBJECTS)};\n`);
    server = await DevServer.start({ functions: fns, dataDir: join(t.dir, "data"), workers: 2 });
    base = server.url;
    const h = { "x-boki-book": String(BOOK) };
    expect(
      (
        await http(base, "POST", "/workflow/chain", {
          body: '{"steps":2}',
          headers: { ...h, "x-boki-workflow-id": "wf-fuzz-1" },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await http(base, "POST", "/object/account/fuzz/deposit", {
          body: '{"amount":10}',
          headers: h,
        })
      ).status,
    ).toBeLessThan(300);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    t.remove();
  });

  it("random requests to every route are answered, failures as typed errors, never INTERNAL", async () => {
    const req: fc.Arbitrary<Req> = fc
      .record({
        route: fc.constantFrom(...ROUTES),
        method: fc.option(
          fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
          {
            nil: undefined,
          },
        ),
        seg: segment,
        book: fc.option(headerValue, { nil: undefined }),
        key: fc.option(headerValue, { nil: undefined }),
        wfId: fc.option(headerValue, { nil: undefined }),
        contentType: fc.constantFrom(
          "application/json",
          "text/plain",
          "application/x-www-form-urlencoded",
          "nonsense",
        ),
        body: fc.option(body, { nil: undefined }),
      })
      .map((x) => ({
        method: x.method ?? x.route.method,
        path: x.route.path(x.seg),
        headers: {
          "content-type": x.contentType,
          ...(x.book === undefined ? {} : { "x-boki-book": x.book }),
          ...(x.key === undefined ? {} : { "idempotency-key": x.key }),
          ...(x.wfId === undefined ? {} : { "x-boki-workflow-id": x.wfId }),
        },
        ...(x.body === undefined ? {} : { body: x.body }),
      }));
    await fc.assert(
      fc.asyncProperty(req, async (r) => {
        checkTyped(await send(base, r), r);
      }),
      { numRuns: RUNS },
    );
    expect((await http(base, "GET", "/healthz")).status).toBe(200);
    expect((await http(base, "POST", "/function/plain-add", { body: '{"a":1,"b":1}' })).json).toBe(
      2,
    );
  }, 120_000);

  it("valid requests made invalid by a mutation are refused with a 4xx and change nothing", async () => {
    const before = await atRest();
    type Kind = "body" | "book" | "key" | "name" | "method" | "big";
    const ALL: readonly Kind[] = ["body", "book", "key", "name", "method", "big"];
    // Each request, with the mutations that must make it invalid (a cancel reads no key).
    const valid = fc.constantFrom<{ req: Req; kinds: readonly Kind[] }>(
      {
        req: { method: "POST", path: "/function/plain-add", headers: {}, body: '{"a":1,"b":2}' },
        kinds: ALL,
      },
      {
        req: {
          method: "POST",
          path: "/async/function/plain-add",
          headers: {},
          body: '{"a":1,"b":2}',
        },
        kinds: ALL,
      },
      {
        req: { method: "POST", path: "/workflow/chain", headers: {}, body: '{"steps":1}' },
        kinds: ALL,
      },
      {
        req: { method: "POST", path: "/async/workflow/chain", headers: {}, body: '{"steps":1}' },
        kinds: ALL,
      },
      {
        req: {
          method: "POST",
          path: "/workflows/wf-fuzz-1/cancel",
          headers: {},
          body: '{"reason":"x"}',
        },
        kinds: ["body", "book", "name", "method", "big"],
      },
      {
        req: {
          method: "POST",
          path: "/object/account/fuzz/deposit",
          headers: {},
          body: '{"amount":5}',
        },
        kinds: ALL,
      },
    );
    const notJson = fc
      .oneof(
        fc.string({ minLength: 1, maxLength: 100 }),
        fc.constantFrom("{", "[1,", "{'a':1}", "NaN", "undefined"),
      )
      .filter((x) => {
        try {
          JSON.parse(x);
          return false;
        } catch {
          return x.trim() !== "";
        }
      });
    type Mutation = (r: Req) => Req;
    const mutations: Record<Kind, fc.Arbitrary<Mutation>> = {
      body: notJson.map((b): Mutation => (r) => ({ ...r, body: b })),
      book: fc
        .constantFrom("x", "-1", "4294967295", "4294967296", "1.5", "0x10", "7 7")
        .map((v): Mutation => (r) => ({ ...r, headers: { ...r.headers, "x-boki-book": v } })),
      key: fc
        .constantFrom("", "a".repeat(600), "tab\there", "é")
        .map((v): Mutation => (r) => ({ ...r, headers: { ...r.headers, "idempotency-key": v } })),
      name: fc.string({ minLength: 1, maxLength: 8 }).map((x): Mutation => (r) => ({
        ...r,
        path: r.path
          .replace(/(plain-add|chain|account)/, `$1-no-such-${encodeURIComponent(x)}`)
          .replace("wf-fuzz-1", "w".repeat(600)),
      })),
      method: fc
        .constantFrom("PUT", "DELETE", "PATCH")
        .map((m): Mutation => (r) => ({ ...r, method: m })),
      big: fc.constant<Mutation>((r) => ({ ...r, body: `"${"x".repeat(1024 * 1024)}"` })),
    };
    const mutated = valid.chain(({ req, kinds }) =>
      fc
        .array(fc.oneof(...kinds.map((k) => mutations[k])), { minLength: 1, maxLength: 3 })
        .map((ms) => {
          let r: Req = { ...req, headers: { ...req.headers, "x-boki-book": String(BOOK) } };
          for (const m of ms) r = m(r);
          return r;
        }),
    );
    const refusedWithoutChange = fc.asyncProperty(mutated, async (r) => {
      const reply = await send(base, r);
      checkTyped(reply, r);
      const what = `${r.method} ${r.path.slice(0, 80)} ${JSON.stringify(r.headers).slice(0, 200)} → ${reply.text.slice(0, 200)}`;
      expect(reply.status, what).toBeGreaterThanOrEqual(400);
      expect(reply.status, what).toBeLessThan(500);
    });
    await fc.assert(refusedWithoutChange, { numRuns: RUNS });
    expect(await snapshot()).toEqual(before);
  }, 120_000);

  it("malformed HTTP on a raw socket is answered 400 or closed, and the gateway goes on serving", async () => {
    const { port } = new URL(base);
    const raw = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 512 }),
      fc.string({ maxLength: 300 }).map((s) => new TextEncoder().encode(`${s}\r\n\r\n`)),
      fc
        .constantFrom(
          "GET / HTTP/9.9\r\n\r\n",
          "POST /function/plain-add HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
          "POST /function/plain-add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
          `GET /${"a".repeat(20000)} HTTP/1.1\r\n\r\n`,
          `GET / HTTP/1.1\r\nX: ${"b".repeat(20000)}\r\n\r\n`,
          "\x00\x01\x02\r\n\r\n",
        )
        .map((s) => new TextEncoder().encode(s)),
    );
    await fc.assert(
      fc.asyncProperty(raw, async (bytes) => {
        const answer = await new Promise<string>((resolve, reject) => {
          const s = connect(Number(port), "127.0.0.1");
          let got = "";
          const timer = setTimeout(() => {
            s.destroy();
            reject(new Error(`no answer and no close within ${ANSWER_MS} ms`));
          }, ANSWER_MS);
          s.on("data", (c: Buffer) => {
            got += c.toString("latin1");
            // One answer is enough; a kept-alive connection is ended by us.
            if (/\r\n\r\n/.test(got)) s.end();
          });
          s.on("error", () => {});
          s.on("close", () => {
            clearTimeout(timer);
            resolve(got);
          });
          s.end(bytes);
        });
        if (answer !== "") expect(answer).toMatch(/^HTTP\/1\.[01] \d{3}/);
        if (answer.startsWith("HTTP/1.1 5"))
          throw new Error(`a 5xx for malformed HTTP: ${answer.slice(0, 200)}`);
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
    expect((await http(base, "GET", "/healthz")).status).toBe(200);
  }, 120_000);
});
