/**
 * Suite "store": Retwis (Boki's evaluation workload) on boki-ts/store through `boki dev`,
 * beside the same application on PostgreSQL 15, in the same run.
 *
 * Dataset: 10,000 users, each following 8 others; 5,000 posts spread over followers' lists
 * (at most 24 each) and the global timeline (96). Mix per request, as in Boki's paper:
 * login 15 % (read-only transaction), profile 30 % (plain read), timeline 50 % (read-only
 * transaction: a user's list, or the global one for a quarter of them, then up to 8 posts),
 * post 5 % (serializable read-write transaction, then a push onto the global timeline),
 * 64-byte bodies, C = 64 and 128 closed-loop clients.
 *
 * Both systems are HTTP servers in their own process on 127.0.0.1, driven by the same load
 * generator (this process, undici Pool of C keep-alive connections) with the same requests:
 *  - boki: `boki dev` (2 worker threads, embedded log, fsync per append) on bench/functions/store.
 *  - postgres: a Node process (fastify, as Boki's gateway) with a pg Pool in front of a
 *    PostgreSQL 15 server (fsync and synchronous_commit on; every transaction SERIALIZABLE).
 * Each run measures both at one concurrency in turns; the median run is reported.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { Pool } from "undici";
import { LatencyHistogram, type LatencySummary } from "../lib/histogram.js";
import { round } from "../lib/measure.js";
import {
  startPostgres,
  startPostgresHttpPeer,
  type PostgresServer,
} from "../lib/peers/postgres.js";
import { RETWIS_SCHEMA } from "../lib/peers/postgres-retwis-server.js";
import type { ManagedProcess } from "../lib/peers/proc.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { medianIndex } from "../lib/runner.js";
import type { Skipped, Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";
import type { RetwisPost, RetwisUser } from "../functions/store/retwis.js";

const USERS = 10_000;
const FOLLOWEES_PER_USER = 8;
const PRELOADED_POSTS = 5_000;
const BODY_BYTES = 64;
const CONCURRENCY = [64, 128] as const;
const WORKERS = 2;
/** PostgreSQL connections in the peer's pool: enough to keep 2 cores busy, no more. */
const PG_POOL = 32;
const MIX = { login: 15, profile: 30, timeline: 50, post: 5 } as const;
type Kind = keyof typeof MIX;
const KINDS = Object.keys(MIX) as Kind[];
/** The transactional requests (read-only or read-write transactions on both sides). */
const TRANSACTIONAL: readonly Kind[] = ["login", "timeline", "post"];

/**
 * Runs alternate between the systems (boki, postgres, boki, ...) at each concurrency, so that
 * both see the same drifts of a shared machine; the per-run ratios are reported too.
 */
const FULL = { warmupMs: 2000, measureMs: 6000, runs: 5, firstWarmupMs: 20_000 };
const QUICK = { warmupMs: 500, measureMs: 1500, runs: 3, firstWarmupMs: 8000 };
const REQUEST_TIMEOUT_MS = 30_000;
const LOAD_BATCH_USERS = 250;
const LOAD_IN_FLIGHT = 4;

const FUNCTIONS = fileURLToPath(new URL("../functions/store", import.meta.url));
const PG_SERVER = fileURLToPath(new URL("../lib/peers/postgres-retwis-server.ts", import.meta.url));

/** A seeded generator: both systems get the same dataset and the same request sequence. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

const userId = (i: number): string => i.toString(16).padStart(8, "0");
const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
function body(random: () => number): string {
  let s = "";
  for (let i = 0; i < BODY_BYTES; i++) s += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return s;
}

export interface Dataset {
  readonly users: RetwisUser[];
  readonly posts: RetwisPost[];
  readonly timeline: string[];
}

export function makeDataset(): Dataset {
  const random = rng(23333);
  const followees: Set<number>[] = [];
  const followers: number[][] = Array.from({ length: USERS }, () => []);
  for (let i = 0; i < USERS; i++) {
    const f = new Set<number>();
    while (f.size < FOLLOWEES_PER_USER) {
      const j = Math.floor(random() * USERS);
      if (j !== i) f.add(j);
    }
    followees.push(f);
    for (const j of f) followers[j]!.push(i);
  }
  const lists: string[][] = Array.from({ length: USERS }, () => []);
  const posts: RetwisPost[] = [];
  const timeline: string[] = [];
  for (let k = 0; k < PRELOADED_POSTS; k++) {
    const author = Math.floor(random() * USERS);
    const id = `seed-${k}`;
    posts.push({ id, userId: userId(author), userName: `testuser_${author}`, body: body(random) });
    const fs = [...followers[author]!];
    for (let n = 0; n < 4 && fs.length > 0; n++) {
      const f = fs.splice(Math.floor(random() * fs.length), 1)[0]!;
      const l = lists[f]!;
      l.push(id);
      if (l.length > 24) l.shift();
    }
    timeline.push(id);
    if (timeline.length > 96) timeline.shift();
  }
  const users = Array.from({ length: USERS }, (_, i) => ({
    id: userId(i),
    username: `testuser_${i}`,
    password: `password_${i}`,
    auth: (i * 2654435761).toString(16),
    followers: followers[i]!.map(userId),
    followees: [...followees[i]!].map(userId),
    posts: lists[i]!,
  }));
  return { users, posts, timeline };
}

function request(kind: Kind, random: () => number): unknown {
  const i = Math.floor(random() * USERS);
  switch (kind) {
    case "login":
      return { username: `testuser_${i}`, password: `password_${i}` };
    case "profile":
      return { userId: userId(i) };
    case "timeline":
      return random() < 0.25 ? {} : { userId: userId(i) };
    case "post":
      return { userId: userId(i), body: body(random) };
  }
}

function pickKind(random: () => number): Kind {
  let x = random() * 100;
  for (const k of KINDS) {
    x -= MIX[k];
    if (x < 0) return k;
  }
  return "timeline";
}

async function call(pool: Pool, fn: string, input: unknown): Promise<Record<string, unknown>> {
  const r = await pool.request({
    path: `/function/${fn}`,
    method: "POST",
    body: JSON.stringify(input),
    headers: { "content-type": "application/json" },
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const text = await r.body.text();
  if (r.statusCode !== 200)
    throw new Error(`HTTP ${r.statusCode} from ${fn}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

// ---- the systems ------------------------------------------------------------------------

export interface Target {
  readonly system: "boki" | "postgres";
  readonly mode: string;
  readonly url: string;
  readonly proc: ManagedProcess;
  readonly extras: Record<string, unknown>;
}

/** Starts `boki dev` on bench/functions/store (`nodeArgs` go before the script, e.g. --cpu-prof). */
export async function startBoki(
  dataDir: string,
  o: { nodeArgs?: readonly string[] } = {},
): Promise<Target> {
  const { url, proc } = await startBokiDev({
    functions: FUNCTIONS,
    dataDir,
    workers: WORKERS,
    ...(o.nodeArgs === undefined ? {} : { nodeArgs: o.nodeArgs }),
  });
  return {
    system: "boki",
    mode: "embedded",
    url,
    proc,
    extras: {
      via: "boki dev process (gateway + log in the main thread, functions in 2 worker threads), HTTP",
      durability: "disk (fsync per append batch)",
      isolation: "serializable (read-only transactions at a snapshot)",
    },
  };
}

export async function loadBoki(t: Target, d: Dataset): Promise<void> {
  const pool = new Pool(t.url, { connections: LOAD_IN_FLIGHT });
  try {
    const jobs: Array<() => Promise<unknown>> = [];
    for (let i = 0; i < d.users.length; i += LOAD_BATCH_USERS) {
      const users = d.users.slice(i, i + LOAD_BATCH_USERS);
      const k = i / LOAD_BATCH_USERS;
      const per = Math.ceil(d.posts.length / Math.ceil(d.users.length / LOAD_BATCH_USERS));
      const posts = d.posts.slice(k * per, (k + 1) * per);
      jobs.push(() => call(pool, "retwis-load", { users, posts }));
    }
    jobs.push(() => call(pool, "retwis-load", { timeline: d.timeline }));
    let next = 0;
    await Promise.all(
      Array.from({ length: LOAD_IN_FLIGHT }, async () => {
        while (next < jobs.length) await jobs[next++]!();
      }),
    );
  } finally {
    await pool.close();
  }
}

async function startPostgresPeer(
  d: Dataset,
): Promise<{ target: Target; server: PostgresServer } | { skipped: string }> {
  const server = await startPostgres({ progress });
  if ("skipped" in server) return server;
  try {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      await client.query(RETWIS_SCHEMA);
      for (let i = 0; i < d.users.length; i += 2000) {
        await client.query(
          `INSERT INTO users
           SELECT x->>'id', x->>'username', x->>'password', x->>'auth',
                  ARRAY(SELECT jsonb_array_elements_text(x->'followers')),
                  ARRAY(SELECT jsonb_array_elements_text(x->'followees')),
                  ARRAY(SELECT jsonb_array_elements_text(x->'posts'))
           FROM jsonb_array_elements($1::jsonb) AS x`,
          [JSON.stringify(d.users.slice(i, i + 2000))],
        );
      }
      await client.query(
        `INSERT INTO posts SELECT x->>'id', x->>'userId', x->>'userName', x->>'body'
         FROM jsonb_array_elements($1::jsonb) AS x`,
        [JSON.stringify(d.posts)],
      );
      await client.query("INSERT INTO timeline VALUES (1, $1)", [d.timeline]);
      await client.query("VACUUM ANALYZE");
      await client.query("CHECKPOINT");
    } finally {
      await client.end();
    }
    const { url, proc } = await startPostgresHttpPeer(
      "retwis-postgres",
      PG_SERVER,
      server,
      PG_POOL,
    );
    return {
      server,
      target: {
        system: "postgres",
        mode: `${server.version} serializable`,
        url,
        proc,
        extras: {
          via: `Node HTTP server process (fastify) with a pg Pool of ${PG_POOL} connections, HTTP`,
          durability: server.durability,
          isolation: "serializable (every transaction; read-only requests are single statements)",
          postgresVersion: server.version,
        },
      },
    };
  } catch (err) {
    await server.stop();
    return {
      skipped: `PostgreSQL Retwis peer: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

// ---- the measurement ----------------------------------------------------------------------

interface MixWindow {
  readonly windowMs: number;
  readonly counts: Record<Kind, number>;
  readonly all: LatencySummary;
  readonly transactional: LatencySummary;
  readonly byKind: Record<Kind, LatencySummary>;
  readonly postAttempts: number;
  readonly postsGivenUp: number;
}

export async function runMix(
  t: Target,
  concurrency: number,
  phases: { warmupMs: number; measureMs: number },
  seed: number,
): Promise<MixWindow> {
  const pool = new Pool(t.url, { connections: concurrency });
  const all = new LatencyHistogram();
  const txn = new LatencyHistogram();
  const byKind = Object.fromEntries(KINDS.map((k) => [k, new LatencyHistogram()])) as Record<
    Kind,
    LatencyHistogram
  >;
  const counts = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
  let postAttempts = 0;
  let postsGivenUp = 0;
  const start = performance.now();
  const measureStart = start + phases.warmupMs;
  const measureEnd = measureStart + phases.measureMs;
  let stop = false;
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        const random = rng(seed * 7919 + w);
        while (!stop) {
          const kind = pickKind(random);
          const input = request(kind, random);
          const t0 = performance.now();
          const out = await call(pool, `retwis-${kind}`, input);
          const t1 = performance.now();
          if (t1 >= measureEnd) {
            stop = true;
            break;
          }
          if (t1 < measureStart) continue;
          counts[kind]++;
          all.recordSpan(t0, t1);
          byKind[kind].recordSpan(t0, t1);
          if (TRANSACTIONAL.includes(kind)) txn.recordSpan(t0, t1);
          if (kind === "post") {
            postAttempts += typeof out["attempts"] === "number" ? out["attempts"] : 1;
            if (out["conflict"] === true) postsGivenUp++;
          } else if (out["ok"] !== true) {
            throw new Error(`${t.system} ${kind} failed: ${JSON.stringify(out).slice(0, 200)}`);
          }
        }
      }).map((p) =>
        p.catch((err: unknown) => {
          stop = true;
          throw err;
        }),
      ),
    );
    return {
      windowMs: phases.measureMs,
      counts,
      all: all.summary(),
      transactional: txn.summary(),
      byKind: Object.fromEntries(KINDS.map((k) => [k, byKind[k].summary()])) as Record<
        Kind,
        LatencySummary
      >,
      postAttempts,
      postsGivenUp,
    };
  } finally {
    all.destroy();
    txn.destroy();
    for (const k of KINDS) byKind[k].destroy();
    await pool.close();
  }
}

function opsPerSec(n: number, windowMs: number): number {
  return n / (windowMs / 1000);
}

function rowsOf(t: Target, c: number, runs: MixWindow[]): ResultRow[] {
  const total = (w: MixWindow): number => KINDS.reduce((s, k) => s + w.counts[k], 0);
  const m = runs[medianIndex(runs.map(total))]!;
  const base = { system: t.system, mode: t.mode, concurrency: c, payloadBytes: BODY_BYTES };
  const lat = (l: LatencySummary) => ({
    p50Ms: round(l.p50Ms, 4),
    p99Ms: round(l.p99Ms, 4),
    p999Ms: round(l.p999Ms, 4),
    maxMs: round(l.maxMs, 4),
    meanMs: round(l.meanMs, 4),
    samples: l.count,
  });
  const posts = m.counts.post;
  const conflict = {
    postAttempts: m.postAttempts,
    abortedAttempts: m.postAttempts - posts + m.postsGivenUp,
    conflictRate:
      m.postAttempts === 0
        ? 0
        : round((m.postAttempts - posts + m.postsGivenUp) / m.postAttempts, 4),
    postsGivenUp: m.postsGivenUp,
  };
  const runOps = runs.map((w) => round(opsPerSec(total(w), w.windowMs), 1));
  const rows: ResultRow[] = [
    {
      ...base,
      workload: "retwis-mix",
      opsPerSec: round(opsPerSec(total(m), m.windowMs), 1),
      ...lat(m.all),
      runs: runs.length,
      runOpsPerSec: runOps,
      windowSec: m.windowMs / 1000,
      ...conflict,
      ...t.extras,
    },
    {
      ...base,
      workload: "retwis-transactional",
      opsPerSec: round(
        opsPerSec(
          TRANSACTIONAL.reduce((s, k) => s + m.counts[k], 0),
          m.windowMs,
        ),
        1,
      ),
      ...lat(m.transactional),
      requests: "login + timeline (read-only transactions) + post (read-write transaction)",
      runP50Ms: runs.map((w) => round(w.transactional.p50Ms, 3)),
      ...conflict,
    },
  ];
  for (const k of KINDS) {
    rows.push({
      ...base,
      workload: `retwis-${k}`,
      opsPerSec: round(opsPerSec(m.counts[k], m.windowMs), 1),
      ...lat(m.byKind[k]),
      ...(k === "post" ? conflict : {}),
    });
  }
  return rows;
}

async function run(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK : FULL;
  const rows: ResultRow[] = [];
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const ratios: Record<string, unknown>[] = [];
  const dataset = makeDataset();
  progress(
    `store: Retwis, ${USERS} users × ${FOLLOWEES_PER_USER} followees, ${PRELOADED_POSTS} posts; ` +
      `c = ${CONCURRENCY.join(", ")}; ${phases.runs} run(s) of ${phases.warmupMs / 1000} s + ${phases.measureMs / 1000} s per system`,
  );
  await withTempDir("boki-bench-store", async (dir) => {
    const boki = await startBoki(join(dir, "boki"));
    let peer: { target: Target; server: PostgresServer } | undefined;
    try {
      let t0 = performance.now();
      await loadBoki(boki, dataset);
      progress(
        `store: boki dev up at ${boki.url}, dataset loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      if (options.peers) {
        t0 = performance.now();
        const p = await startPostgresPeer(dataset);
        if ("skipped" in p) {
          progress(`store: ${p.skipped}; going on without it`);
          skipped.push({ system: "postgres", mode: "*", reason: p.skipped });
        } else {
          peer = p;
          progress(
            `store: PostgreSQL ${p.server.version} up and loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
          );
        }
      } else {
        skipped.push({ system: "postgres", mode: "*", reason: "--no-peers" });
      }
      const targets = peer === undefined ? [boki] : [boki, peer.target];
      // Each system's first load after its start (JIT, caches, the loaded data settling on
      // disk) is not measured.
      for (const t of targets) {
        progress(`store: [${t.system}] warming up for ${phases.firstWarmupMs / 1000} s`);
        await runMix(t, CONCURRENCY[0], { warmupMs: phases.firstWarmupMs, measureMs: 1 }, 99);
      }
      for (const c of CONCURRENCY) {
        const results = new Map<Target, MixWindow[]>(targets.map((t) => [t, []]));
        for (let r = 0; r < phases.runs; r++) {
          // Turns: the same run of each system back to back, under the same machine load.
          for (const t of targets) {
            progress(
              `store: [${t.system} c=${c}${phases.runs > 1 ? ` run ${r + 1}/${phases.runs}` : ""}]`,
            );
            const w = await runMix(t, c, phases, r + 1);
            const total = KINDS.reduce((s, k) => s + w.counts[k], 0);
            progress(
              `store: [${t.system} c=${c}] ${Math.round(opsPerSec(total, w.windowMs)).toLocaleString("en-US")} req/s, ` +
                `p50 ${w.all.p50Ms.toFixed(2)} ms (transactional ${w.transactional.p50Ms.toFixed(2)} ms), p99 ${w.all.p99Ms.toFixed(1)} ms, ` +
                `post attempts ${w.postAttempts} for ${w.counts.post} posts`,
            );
            results.get(t)!.push(w);
          }
        }
        for (const t of targets) rows.push(...rowsOf(t, c, results.get(t)!));
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\nboki dev output:\n${boki.proc.output(20)}`, {
        cause: err,
      });
    } finally {
      await boki.proc.stop();
      if (peer !== undefined) {
        await peer.target.proc.stop();
        await peer.server.stop();
      }
    }
  });
  for (const c of CONCURRENCY) {
    const get = (system: string, workload: string) =>
      rows.find((r) => r.system === system && r.workload === workload && r.concurrency === c);
    const bm = get("boki", "retwis-mix");
    const pm = get("postgres", "retwis-mix");
    const bt = get("boki", "retwis-transactional");
    const pt = get("postgres", "retwis-transactional");
    if (bm && pm && bt && pt) {
      const bRuns = bm["runOpsPerSec"] as number[];
      const pRuns = pm["runOpsPerSec"] as number[];
      const paired = bRuns.map((b, i) => round(b / pRuns[i]!, 2));
      const bP50 = bt["runP50Ms"] as number[];
      const pP50 = pt["runP50Ms"] as number[];
      const pairedP50 = bP50.map((b, i) => round(b / pP50[i]!, 2));
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;
      ratios.push({
        concurrency: c,
        throughputRatio: round(bm.opsPerSec / pm.opsPerSec, 3),
        throughputRatioPerRun: paired,
        throughputRatioPerRunMedian: median(paired),
        transactionalP50Ratio: round(bt.p50Ms / pt.p50Ms, 3),
        transactionalP50RatioPerRun: pairedP50,
        bokiConflictRate: bm["conflictRate"],
        postgresConflictRate: pm["conflictRate"],
      });
      notes.push(
        `c=${c}: boki/postgres throughput ${(bm.opsPerSec / pm.opsPerSec).toFixed(2)}x (per run ${paired.join(", ")}; median ${median(paired)}); ` +
          `transactional p50 ${bt.p50Ms.toFixed(2)} ms vs ${pt.p50Ms.toFixed(2)} ms (${(bt.p50Ms / pt.p50Ms).toFixed(2)}x; per run ${pairedP50.join(", ")}); ` +
          `post conflict rate ${String(bm["conflictRate"])} vs ${String(pm["conflictRate"])}`,
      );
    }
  }
  notes.push(
    "fairness: both systems are HTTP servers in their own process on this machine, driven by the same load generator " +
      "(this process, undici, keep-alive) with the same seeded request sequence; boki: boki dev with 2 worker threads, " +
      "every append fsynced before it is acknowledged; postgres: fastify + pg Pool (" +
      `${PG_POOL} connections) in front of PostgreSQL with fsync=on, synchronous_commit=on, every transaction SERIALIZABLE ` +
      "(conflicts retried with the same bound and backoff as the store's helper)",
  );
  return { rows, skipped, notes, extra: { ratios } };
}

export const storeSuite: Suite = {
  name: "store",
  description:
    "Retwis on boki-ts/store through boki dev, beside PostgreSQL 15 (serializable, synchronous commit)",
  run,
};
