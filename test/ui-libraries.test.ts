/**
 * The dashboard's Objects and Queues sections as the overview JSON has them, on a real
 * gateway over an embedded log with functions described by a dispatcher of the test's own
 * (the sections read function infos, the log and the queues, not the functions' code): the
 * object types with their handlers, the instances and queues the routes reached (at most
 * RECENT_OBJECTS_MAX / RECENT_QUEUES_MAX, the oldest leaving first) with the figures read from
 * the log, the queues with a consumer bound, dead letters, and a read that does not answer in
 * time; and on two cluster gateways in this process, each listing what it reached over the
 * cluster's log and saying where the consumers run. Also: GET /object/<name>/<key> reads the
 * instance in the object's book.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startNode, type RunningNode } from "../src/cluster/node.js";
import type { LogBook } from "../src/log/api.js";
import { EmbeddedLog } from "../src/embedded/embedded-log.js";
import { InvocationService } from "../src/gateway/invocations.js";
import { Gateway } from "../src/gateway/server.js";
import { GatewayQueues } from "../src/gateway/queues.js";
import {
  LIBRARY_READS_IN_FLIGHT_MAX,
  objectsLibrary,
  RECENT_OBJECTS_MAX,
  RECENT_QUEUES_MAX,
  RecentlySeen,
  RecentSet,
} from "../src/gateway/ui/libraries.js";
import { LIBRARY_ROWS_MAX, OVERVIEW_CACHE_MS } from "../src/gateway/ui/routes.js";
import { encodeRecord, resultsTag, type ResultRecord } from "../src/objects/records.js";
import { OBJECT_FUNCTIONS } from "../src/objects/object.js";
import type {
  Dispatcher,
  FunctionInfo,
  InvokeRequest,
  InvokeResult,
} from "../src/runtime/dispatcher.js";
import { sleep } from "./helpers/async.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";
import { silentLogger } from "../src/util/logger.js";

const FUNCTIONS: readonly FunctionInfo[] = [
  {
    name: "counter",
    book: undefined,
    timeoutMs: 30_000,
    kind: "object",
    meta: { handlers: { add: "exclusive", reset: "exclusive", get: "shared" } },
  },
  { name: "booked", book: 7, timeoutMs: 5_000, kind: "object" },
  {
    name: "worker",
    book: undefined,
    timeoutMs: 30_000,
    kind: "queue-consumer",
    meta: { queue: "work", concurrency: 3, ratePerSec: 5, visibilityMs: 1_000, book: 0 },
  },
  {
    name: "pay",
    book: undefined,
    timeoutMs: 20_000,
    kind: "workflow",
    meta: { coordinator: "saga" },
  },
  { name: OBJECT_FUNCTIONS.state, book: undefined, timeoutMs: 30_000 },
];

/** Answers object requests with a fixed outcome and records the book of each state read. */
class DescribedFunctions implements Dispatcher {
  readonly stateBooks: number[] = [];
  functions(): readonly FunctionInfo[] {
    return FUNCTIONS;
  }
  invoke(r: InvokeRequest): Promise<InvokeResult> {
    if (r.name === OBJECT_FUNCTIONS.state) {
      this.stateBooks.push(r.book);
      return Promise.resolve({ outputJson: '{"state":null}', position: 0 });
    }
    return Promise.resolve({ outputJson: '{"ok":true,"value":null}', position: 0 });
  }
}

type Table = {
  title: string;
  columns: string[];
  rows: Array<Array<string | number | null>>;
  rowKeys: string[];
  omitted?: number;
};
type Section = { name: string; tables: Table[]; notes: string[]; error?: string };

describe("RecentSet: what the routes saw lately, bounded", () => {
  it("keeps the newest entries: past the limit the one seen longest ago leaves, and seeing one again makes it the newest", () => {
    const s = new RecentSet<string>(3);
    for (const k of ["a", "b", "c"]) s.see(k, k.toUpperCase(), 1);
    s.see("a", "A", 2); // a is the newest now; b the oldest
    s.see("d", "D", 3);
    expect(s.size).toBe(3);
    expect(s.newest(10).map((e) => e.key)).toEqual(["d", "a", "c"]);
    expect(s.newest(2).map((e) => [e.value, e.seenAtMs])).toEqual([
      ["D", 3],
      ["A", 2],
    ]);
    expect(() => new RecentSet(0)).toThrow(RangeError);
  });

  it(`remembers at most ${RECENT_OBJECTS_MAX} instances and ${RECENT_QUEUES_MAX} queues, the same instance in two books twice`, () => {
    const seen = new RecentlySeen();
    for (let i = 0; i <= RECENT_OBJECTS_MAX; i++) seen.object("o", `k${i}`, 0);
    seen.object("o", "k1", 9);
    expect(seen.objects.size).toBe(RECENT_OBJECTS_MAX);
    const keys = seen.objects.newest(RECENT_OBJECTS_MAX).map((e) => e.value);
    // k0 left when k100 came, and k1 of book 0 (the oldest then) when k1 of book 9 came.
    expect(keys[0]).toEqual({ object: "o", key: "k1", book: 9 });
    expect(keys).not.toContainEqual({ object: "o", key: "k0", book: 0 });
    expect(keys).not.toContainEqual({ object: "o", key: "k1", book: 0 });
    expect(keys[keys.length - 1]).toEqual({ object: "o", key: "k2", book: 0 });
    for (let i = 0; i <= RECENT_QUEUES_MAX; i++) seen.queue(`q${i}`, 0);
    expect(seen.queues.size).toBe(RECENT_QUEUES_MAX);
    expect(seen.queues.newest(1)[0]!.value).toEqual({ queue: `q${RECENT_QUEUES_MAX}`, book: 0 });
  });
});

describe("the overview's Objects and Queues sections on a gateway over an embedded log", () => {
  const t = tempDir();
  let log: EmbeddedLog;
  let invocations: InvocationService;
  let gateway: Gateway;
  const dispatcher = new DescribedFunctions();

  beforeAll(async () => {
    log = await EmbeddedLog.open({ dir: join(t.dir, "log"), sync: false });
    invocations = new InvocationService({ log, dispatcher });
    gateway = await Gateway.start({ invocations, dispatcher });
  }, 30_000);

  afterAll(async () => {
    await gateway?.close();
    await invocations?.close();
    await log?.close();
    t.remove();
  }, 30_000);

  /** The overview's sections, fresh (past the overview's cache). */
  async function sections(): Promise<{ objects: Section; queues: Section }> {
    await sleep(OVERVIEW_CACHE_MS + 10);
    const r = await http(gateway.url, "GET", "/ui/api/overview");
    expect(r.status).toBe(200);
    const libs = (r.json as { libraries: Section[] }).libraries;
    return {
      objects: libs.find((l) => l.name === "Objects")!,
      queues: libs.find((l) => l.name === "Queues")!,
    };
  }
  const table = (s: Section, title: string): Table => s.tables.find((x) => x.title === title)!;
  const rowOf = (tb: Table, key: string): Record<string, string | number | null> | undefined => {
    const i = tb.rowKeys.indexOf(key);
    if (i < 0) return undefined;
    return Object.fromEntries(tb.columns.map((c, j) => [c, tb.rows[i]![j]!]));
  };

  it("lists the object types with their handlers and the coordinators, and the last instances the routes reached with the figures of their newest result", async () => {
    for (let i = 0; i <= RECENT_OBJECTS_MAX; i++) {
      const r = await http(gateway.url, "POST", `/object/counter/k${i}/add`, { body: "1" });
      expect(r.status).toBe(200);
    }
    // The newest result of k100: its fourth, with a transaction's lock and two requests deferred.
    const state = { n: 41, tags: ["x"] };
    const result: ResultRecord = {
      v: 1,
      k: "res",
      j: 3,
      id: "r-3",
      req: 12,
      at: Date.now(),
      outcome: { ok: true, value: 41 },
      state,
      lock: { txn: "txn-1", ts: 1, messages: [] },
      cursor: 20,
      deferred: [13, 14],
    };
    await log.book(0).append([resultsTag("counter", "k100")], encodeRecord(result));

    const { objects } = await sections();
    expect(objects.error).toBeUndefined();
    const types = table(objects, "Object types");
    expect(rowOf(types, "counter")).toEqual({
      object: "counter",
      book: 0,
      handlers: "add, reset (exclusive); get (shared)",
      "time limit ms": 30_000,
      "instances seen": RECENT_OBJECTS_MAX,
    });
    expect(rowOf(types, "booked")).toMatchObject({ book: 7, handlers: null, "instances seen": 0 });
    expect(rowOf(types, "worker")).toBeUndefined();
    expect(rowOf(table(objects, "Transactions and sagas"), "pay")).toEqual({
      function: "pay",
      kind: "saga",
      book: 0,
      "time limit ms": 20_000,
    });

    const instances = table(objects, "Instances seen lately");
    expect(instances.rows).toHaveLength(RECENT_OBJECTS_MAX);
    expect(instances.rowKeys[0]).toBe(`counter/k${RECENT_OBJECTS_MAX}@0`);
    // The first instance reached left when the 101st came.
    expect(rowOf(instances, "counter/k0@0")).toBeUndefined();
    expect(rowOf(instances, `counter/k${RECENT_OBJECTS_MAX}@0`)).toMatchObject({
      "requests applied": 4,
      "state bytes": Buffer.byteLength(JSON.stringify(state)),
      "locked by": "txn-1",
      waiting: 2,
      read: "ok",
    });
    // An instance with no result yet.
    expect(rowOf(instances, "counter/k1@0")).toMatchObject({
      "requests applied": 0,
      "state bytes": null,
      "locked by": null,
      waiting: 0,
      read: "ok",
    });
    expect(objects.notes.join(" ")).toMatch(/last 100 this gateway's \/object routes reached/);
  });

  it("GET /object/<name>/<key> reads the instance in the object's book unless the request names one", async () => {
    dispatcher.stateBooks.length = 0;
    expect((await http(gateway.url, "GET", "/object/booked/b1")).status).toBe(200);
    const named = await http(gateway.url, "GET", "/object/booked/b1", {
      headers: { "x-boki-book": "3" },
    });
    expect(named.status).toBe(200);
    expect(dispatcher.stateBooks).toEqual([7, 3]);
    const { objects } = await sections();
    const instances = table(objects, "Instances seen lately");
    expect(instances.rowKeys.slice(0, 2)).toEqual(["booked/b1@3", "booked/b1@7"]);
    // An unknown object is refused and not remembered.
    expect((await http(gateway.url, "GET", "/object/nope/b1")).status).toBe(404);
    expect(table((await sections()).objects, "Instances seen lately").rowKeys).not.toContain(
      "nope/b1@0",
    );
  });

  it("lists the queues with a consumer bound and those the routes used, with their lengths and dead letters", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await http(gateway.url, "POST", "/queue/orders/push", { body: `{"n":${i}}` });
      expect(r.status).toBe(200);
    }
    const pop = await http(gateway.url, "POST", "/queue/orders/pop", {
      body: '{"consumer":"t","visibilityMs":600000}',
    });
    expect((pop.json as { messages: unknown[] }).messages).toHaveLength(1);
    // A message given back after each of its five deliveries (the default maxDeliveries).
    expect((await http(gateway.url, "POST", "/queue/flaky/push", { body: "1" })).status).toBe(200);
    for (let d = 0; d < 5; d++) {
      const p = await http(gateway.url, "POST", "/queue/flaky/pop", {
        body: '{"consumer":"t","waitMs":2000}',
      });
      const receipts = (p.json as { messages: Array<{ receipt: string }> }).messages.map(
        (m) => m.receipt,
      );
      expect(receipts).toHaveLength(1);
      const n = await http(gateway.url, "POST", "/queue/flaky/nack", {
        body: JSON.stringify({ receipts }),
      });
      expect(n.status).toBe(200);
    }
    // The next pop finds it past its last delivery and copies it to flaky.dead.
    const last = await http(gateway.url, "POST", "/queue/flaky/pop", { body: '{"consumer":"t"}' });
    expect((last.json as { messages: unknown[] }).messages).toHaveLength(0);

    const { queues } = await sections();
    expect(queues.error).toBeUndefined();
    const tb = table(queues, "Queues");
    // The consumer-bound queue comes first; nothing consumes it here, so it does not exist yet.
    expect(tb.rowKeys[0]).toBe("work@0");
    expect(rowOf(tb, "work@0")).toMatchObject({
      consumers: "worker",
      concurrency: 3,
      "rate /s": 5,
      total: 0,
      "seen s ago": null,
      read: "not created yet",
    });
    expect(rowOf(tb, "orders@0")).toMatchObject({
      consumers: null,
      available: 2,
      "in flight": 1,
      delayed: 0,
      "dead pending": 0,
      "dead letters": 0,
      total: 3,
      read: "ok",
    });
    expect(rowOf(tb, "orders@0")!["seen s ago"]).toBeTypeOf("number");
    expect(rowOf(tb, "flaky@0")).toMatchObject({
      available: 0,
      "dead pending": 0,
      "dead letters": 1,
      total: 0,
      read: "ok",
    });
    // The dead-letter queue itself was not used through the routes: it is not listed.
    expect(rowOf(tb, "flaky.dead@0")).toBeUndefined();
  });

  it(`keeps the last ${RECENT_QUEUES_MAX} queues the routes used, the oldest leaving first, within ${LIBRARY_ROWS_MAX} rows`, async () => {
    for (let i = 0; i <= RECENT_QUEUES_MAX; i++) {
      const r = await http(gateway.url, "GET", `/queue/many-${i}`);
      expect(r.status).toBe(200);
    }
    const tb = table((await sections()).queues, "Queues");
    expect(tb.rows).toHaveLength(LIBRARY_ROWS_MAX);
    // The consumer-bound queue, then the newest first; orders and flaky were pushed out, and
    // of the 101 many-* queues the first left the set and the second did not fit the rows.
    expect(tb.rowKeys[0]).toBe("work@0");
    expect(tb.rowKeys[1]).toBe(`many-${RECENT_QUEUES_MAX}@0`);
    expect(tb.rowKeys).not.toContain("many-0@0");
    expect(tb.rowKeys).not.toContain("many-1@0");
    expect(tb.rowKeys).not.toContain("orders@0");
    expect(tb.omitted).toBe(1);
    expect(
      tb.rows.every((r) => r[r.length - 1] === "ok" || r[r.length - 1] === "not created yet"),
    ).toBe(true);
  });
});

describe("a section's reads are bounded in time and in number", () => {
  it("answers by its deadline with the rows it could not read marked, and starts no more reads while earlier ones still run", async () => {
    const hanging = {
      book: 0,
      checkTail: () => new Promise<never>(() => undefined),
    } as unknown as LogBook;
    const seen = new RecentlySeen();
    for (let i = 0; i < 20; i++) seen.object("counter", `k${i}`, 0);
    const lib = objectsLibrary({
      dispatcher: new DescribedFunctions(),
      seen,
      log: () => hanging,
      queues: new GatewayQueues(() => hanging),
    });
    const rowsRead = async (): Promise<string[]> => {
      const startedAt = Date.now();
      const l = await lib.list!(100, Date.now() + 150);
      expect(Date.now() - startedAt).toBeLessThan(1_000);
      const tb = l.tables.find((x) => x.title === "Instances seen lately")!;
      expect(tb.rows).toHaveLength(20);
      return tb.rows.map((r) => String(r[r.length - 1]));
    };
    // Eight reads at once: all time out, and the others are not started.
    expect(new Set(await rowsRead())).toEqual(new Set(["not read in time (the section's limit)"]));
    expect(new Set(await rowsRead())).toEqual(new Set(["not read in time (the section's limit)"]));
    // Sixteen reads hang now (LIBRARY_READS_IN_FLIGHT_MAX): the next listing starts none.
    expect(LIBRARY_READS_IN_FLIGHT_MAX).toBe(16);
    expect(new Set(await rowsRead())).toEqual(
      new Set(["not read: earlier reads are still running"]),
    );
  });
});

describe("the sections on cluster gateways (a sequencer, a storage node, an engine, two gateways, in this process)", () => {
  const t = tempDir();
  const running: RunningNode[] = [];
  let urls: string[] = [];

  beforeAll(async () => {
    const functions = join(t.dir, "functions");
    mkdirSync(functions);
    ["./fixtures/objects/bank.ts", "./fixtures/queue-runtime/consumers.ts"].forEach((f, i) =>
      writeFileSync(
        join(functions, `m${i}.mjs`),
        `export * from ${JSON.stringify(new URL(f, import.meta.url).href)};\n`,
      ),
    );
    const config = await writeClusterConfig(
      join(t.dir, "cluster.json"),
      ["sequencer", "storage", "engine", "gateway", "gateway"],
      { replication: 1 },
    );
    for (const id of ["sequencer-0", "storage-0", "engine-0", "gateway-0", "gateway-1"])
      running.push(await startNode(config, id, 1, silentLogger, { functions, workers: 1 }));
    urls = ["gateway-0", "gateway-1"].map((id) => {
      const n = config.nodes.find((x) => x.id === id)!;
      return `http://${n.host}:${n.port}`;
    });
  }, 60_000);

  afterAll(async () => {
    for (const r of running.reverse()) await r.close();
    t.remove();
  }, 30_000);

  async function sectionsOf(url: string): Promise<Section[]> {
    await sleep(OVERVIEW_CACHE_MS + 10);
    const r = await http(url, "GET", "/ui/api/overview");
    expect(r.status).toBe(200);
    return (r.json as { libraries: Section[] }).libraries;
  }

  it("shows on each gateway the instances and queues it reached, read over the cluster's log, and says where the consumers run", async () => {
    const [first, second] = urls as [string, string];
    const open = await http(second, "POST", "/object/account/c-1/open", {
      body: '{"balance":7}',
      timeoutMs: 30_000,
    });
    expect(open.status, open.text).toBe(200);
    for (let i = 0; i < 2; i++)
      expect((await http(second, "POST", "/queue/cq/push", { body: `${i}` })).status).toBe(200);

    const [objects, queues] = await sectionsOf(second);
    const instances = objects!.tables.find((x) => x.title === "Instances seen lately")!;
    expect(instances.rowKeys).toEqual(["account/c-1@0"]);
    // requests applied, state bytes ({"balance":7}), locked by, waiting, ..., read
    const row = instances.rows[0]!;
    expect([row[3], row[4], row[5], row[6], row[8]]).toEqual([1, 13, null, 0, "ok"]);
    const q = queues!.tables[0]!;
    const cq = q.rows[q.rowKeys.indexOf("cq@0")]!;
    expect([cq[5], cq[6], cq[10], cq[12]]).toEqual([2, 0, 2, "ok"]);
    expect(q.rows[q.rowKeys.indexOf("jobs@0")]!.slice(2, 5)).toEqual([
      "jobs-worker",
      4,
      "no limit",
    ]);
    expect(queues!.notes.join(" ")).toMatch(
      /Consumers run on gateway-0, the configuration's first gateway/,
    );

    // The first gateway did not reach them: it lists neither, and runs the consumers itself.
    const [objects0, queues0] = await sectionsOf(first);
    expect(objects0!.tables.find((x) => x.title === "Instances seen lately")!.rows).toEqual([]);
    expect(queues0!.tables[0]!.rowKeys).not.toContain("cq@0");
    expect(queues0!.notes.join(" ")).toMatch(/Consumers run on this gateway/);
  }, 60_000);
});
