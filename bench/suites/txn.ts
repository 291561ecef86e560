/**
 * Suite "txn": YCSB-T (as in "Distributed Transactions on Serverless Stateful Functions",
 * DEBS 2021) on boki-ts/objects through `boki dev`, beside the same operations on PostgreSQL
 * 15, in the same run.
 *
 * Dataset: accounts with balance 10,000 and 10 fields of 100-byte strings, in two sets of
 * 100 and 5,000 keys (both loaded at the start). Key choice uniform or zipfian 0.99 (YCSB's
 * generator over the key's rank, the ranks spread over the keys by a fixed permutation). Mixes
 * (read / update / transfer) 45/45/10 and 0/0/100:
 *  - read: a shared handler returning the account (PostgreSQL: a SELECT of the row);
 *  - update: an exclusive handler writing one field (PostgreSQL: an UPDATE of one column);
 *  - transfer: 1 unit between two distinct accounts, atomically. Boki: once as a transaction
 *    (`defineTransaction`, 2PC over 2PL with wait-die, `POST /workflow/ycsbt-transfer`) and
 *    once as a saga (`defineSaga`, `POST /workflow/ycsbt-transfer-saga`), separate rows;
 *    PostgreSQL: a SERIALIZABLE transaction (BEGIN, withdraw, deposit, COMMIT), serialization
 *    failures and deadlocks retried and counted.
 *
 * Both systems are HTTP servers in their own process on 127.0.0.1, driven by this process
 * (undici Pool of C keep-alive connections, C closed-loop clients, C = 64, and 16 in the
 * full run) with the same seeded request sequence:
 *  - boki: `bin/boki.js dev` (2 worker threads, embedded log, appends acknowledged after
 *    fsync) on bench/functions/txn;
 *  - postgres: bench/lib/peers/postgres-ycsbt-server.ts (fastify + a pg Pool) in front of
 *    PostgreSQL 15 (fsync and synchronous_commit on).
 * At each point (mix × keys × distribution × C) the three (boki transaction, boki saga,
 * postgres) are measured in turns (`runMeasurements`' interleave), the median run reported.
 * After every run the total balance of the run's key set is read back (Boki: every instance's
 * committed state and lock, `GET /object/...`; PostgreSQL: `SELECT sum(balance)`) and must be
 * unchanged, with no lock left; each row records its checks.
 *
 * Rows carry, besides the standard fields: mix, keys, distribution, kind (transaction | saga |
 * pg), transfersPerSec (the goal's figure), per-operation p50/p99, abortsPerTransfer
 * (transfers that did not commit: aborted, or compensated for a saga), deadlocksPerTransfer
 * (Boki transactions: wait-die deaths, TXN_DIED, i.e. a transaction's `attempts` − 1, or all
 * of them when it gave up; PostgreSQL: deadlocks it detected; sagas take no locks: 0),
 * retriesPerTransfer, serializationFailuresPerTransfer (PostgreSQL), balanceChecks, and CPU per
 * operation of the server processes and of the load generator. The results file's `ratios`
 * and `goal` hold Boki's transfer throughput against PostgreSQL's (target ≥ 1.5× at 5,000
 * keys).
 *
 *   npm run bench -- txn              # 3 runs of 1 s + 5 s in turns per point, C = 64 and 16
 *   npm run bench -- txn --quick      # 1 run of 0.3 s + 1 s per point, C = 64, 5,000 keys only
 *                                     # (within 60 s)
 *   npm run bench -- txn --no-peers   # Boki's rows only
 *
 * Probe: bench/profile/txn-boki.ts (one Boki workload alone: CPU per thread, a CPU profile).
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { Pool } from "undici";
import { LatencyHistogram, type LatencySummary } from "../lib/histogram.js";
import { round, runMeasurements, type Measurement, type Phases } from "../lib/measure.js";
import {
  startPostgres,
  startPostgresHttpPeer,
  type PostgresServer,
} from "../lib/peers/postgres.js";
import { YCSBT_FIELDS, YCSBT_SCHEMA } from "../lib/peers/postgres-ycsbt-server.js";
import type { ManagedProcess } from "../lib/peers/proc.js";
import { cpuMs } from "../lib/proc-cpu.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import type { WindowResult } from "../lib/runner.js";
import type { Skipped, Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";

export const BALANCE = 10_000;
export const FIELD_BYTES = 100;
export const KEY_COUNTS = [100, 5000] as const;
export const DISTRIBUTIONS = ["uniform", "zipfian"] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];
export const ZIPF_THETA = 0.99;
/** Units one transfer moves. */
const AMOUNT = 1;
export interface Mix {
  readonly name: string;
  readonly read: number;
  readonly update: number;
  readonly transfer: number;
}
export const MIXES: readonly Mix[] = [
  { name: "45/45/10", read: 45, update: 45, transfer: 10 },
  { name: "0/0/100", read: 0, update: 0, transfer: 100 },
];
const CONCURRENCY_FULL = [64, 16] as const;
const CONCURRENCY_QUICK = [64] as const;
/** Where the goal is read: Boki's transfer throughput against PostgreSQL's at this key count. */
const GOAL_KEYS = 5000;
const GOAL_RATIO = 1.5;
export const WORKERS = 2;
/** Connections of the PostgreSQL server's pool: one per client at the highest concurrency. */
const PG_POOL = 64;

const FULL: Phases = { warmupMs: 1000, measureMs: 5000, runs: 3 };
const QUICK: Phases = { warmupMs: 300, measureMs: 1000, runs: 1 };
/**
 * Load each system takes after its start (and the dataset's load) before the first
 * measurement: a fresh Node process runs slowly while V8 compiles its hot paths.
 */
const FIRST_WARMUP_MS = { full: 8000, quick: 1200 } as const;
const FIRST_WARMUP_CONCURRENCY = 64;
/** Longest one request may take (a transaction's coordinator has 30 s). */
const REQUEST_TIMEOUT_MS = 60_000;
/** Requests in flight while loading accounts or reading them back for the balance check. */
const LOAD_IN_FLIGHT = 64;
/** Characters of a failed response kept as its sample. */
const ERROR_SAMPLE_CHARS_MAX = 300;
/** Failed requests (non-200 answers) one window may have before it is abandoned. */
const FAILED_REQUESTS_MAX = 1000;

export const FUNCTIONS = fileURLToPath(new URL("../functions/txn", import.meta.url));
const PG_SERVER = fileURLToPath(new URL("../lib/peers/postgres-ycsbt-server.ts", import.meta.url));
const ACCOUNT_PATH = "/object/ycsbt-account";

export type Kind = "transaction" | "saga" | "pg";
const TRANSFER_PATH: Record<Kind, string> = {
  transaction: "/workflow/ycsbt-transfer",
  saga: "/workflow/ycsbt-transfer-saga",
  pg: "/workflow/ycsbt-transfer",
};

const BOKI_DURABILITY =
  "one node (boki dev, embedded log): every request to an account is a conditional append to " +
  "its inbox and its result another (carrying the state), a coordinator's start, each call " +
  "and its end conditional appends on its step stream; each acknowledged after its WAL group " +
  "write (O_DSYNC) returned";

// ---- keys and requests ----------------------------------------------------------------

/** A seeded generator: both systems get the same dataset and request sequence. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

export const keyName = (keys: number, i: number): string => `k${keys}-${i}`;

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
function text(random: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return s;
}

/**
 * Zipfian ranks in [0, n) with exponent theta (Gray et al., "Quickly generating
 * billion-record synthetic databases", as YCSB's generator), rank 0 the most frequent.
 */
export function zipfian(n: number, theta: number): (u: number) => number {
  let zetan = 0;
  for (let i = 1; i <= n; i++) zetan += 1 / i ** theta;
  const zeta2 = 1 + 1 / 2 ** theta;
  const alpha = 1 / (1 - theta);
  const eta = (1 - (2 / n) ** (1 - theta)) / (1 - zeta2 / zetan);
  const half = 0.5 ** theta;
  return (u) => {
    const uz = u * zetan;
    if (uz < 1) return 0;
    if (uz < 1 + half) return 1;
    return Math.min(n - 1, Math.floor(n * (eta * u - eta + 1) ** alpha));
  };
}

/** A fixed permutation of [0, n), so that the hot ranks are spread over the key space. */
function permutation(n: number, seed: number): number[] {
  const random = rng(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** Picks key indexes in [0, keys) from a uniform random number. */
export function keyChooser(keys: number, d: Distribution): (random: () => number) => number {
  if (d === "uniform") return (random) => Math.floor(random() * keys);
  const rank = zipfian(keys, ZIPF_THETA);
  const perm = permutation(keys, 0x5eed + keys);
  return (random) => perm[rank(random())]!;
}

export type Op =
  | { readonly t: "read"; readonly key: string }
  | { readonly t: "update"; readonly key: string; readonly field: number; readonly value: string }
  | { readonly t: "transfer"; readonly from: string; readonly to: string };

export interface Point {
  readonly mix: Mix;
  readonly keys: number;
  readonly distribution: Distribution;
  readonly concurrency: number;
}

/** One client's request sequence at a point. */
export function opSource(p: Point, seed: number): () => Op {
  const random = rng(seed);
  const choose = keyChooser(p.keys, p.distribution);
  return () => {
    const x = random() * 100;
    const a = choose(random);
    if (x < p.mix.read) return { t: "read", key: keyName(p.keys, a) };
    if (x < p.mix.read + p.mix.update) {
      return {
        t: "update",
        key: keyName(p.keys, a),
        field: Math.floor(random() * YCSBT_FIELDS),
        value: text(random, FIELD_BYTES),
      };
    }
    let b = choose(random);
    while (b === a) b = choose(random);
    return { t: "transfer", from: keyName(p.keys, a), to: keyName(p.keys, b) };
  };
}

// ---- the systems --------------------------------------------------------------------------

export interface Server {
  readonly url: string;
  readonly proc: ManagedProcess;
}

export interface Target {
  readonly system: "boki" | "postgres";
  readonly kind: Kind;
  readonly mode: string;
  readonly server: Server;
  /** Processes whose CPU counts as the server's. */
  readonly pids: () => number[];
  readonly extras: Record<string, unknown>;
}

/** Starts `boki dev` on bench/functions/txn (`nodeArgs` go before the script, e.g. --cpu-prof). */
export async function startBoki(
  dataDir: string,
  o: { nodeArgs?: readonly string[] } = {},
): Promise<Server> {
  return startBokiDev({
    functions: FUNCTIONS,
    dataDir,
    workers: WORKERS,
    ...(o.nodeArgs === undefined ? {} : { nodeArgs: o.nodeArgs }),
  });
}

async function post(
  pool: Pool,
  path: string,
  body: string,
): Promise<{ status: number; text: string }> {
  const r = await pool.request({
    path,
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  return { status: r.statusCode, text: await r.body.text() };
}

async function inParallel(
  n: number,
  inFlight: number,
  job: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, inFlight) }, async () => {
      while (next < n) await job(next++);
    }),
  );
}

/** The dataset's accounts: the same fields for both systems. */
function accountOf(keys: number, i: number): { balance: number; fields: string[] } {
  const random = rng(keys * 100_003 + i);
  return {
    balance: BALANCE,
    fields: Array.from({ length: YCSBT_FIELDS }, () => text(random, FIELD_BYTES)),
  };
}

/** Loads both key sets into boki dev (one `load` request per account). */
export async function loadBoki(s: Server): Promise<void> {
  const pool = new Pool(s.url, { connections: LOAD_IN_FLIGHT });
  try {
    for (const keys of KEY_COUNTS) {
      await inParallel(keys, LOAD_IN_FLIGHT, async (i) => {
        const r = await post(
          pool,
          `${ACCOUNT_PATH}/${keyName(keys, i)}/load`,
          JSON.stringify(accountOf(keys, i)),
        );
        if (r.status !== 200)
          throw new Error(`loading ${keyName(keys, i)}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      });
    }
  } finally {
    await pool.close();
  }
}

export interface BalanceCheck {
  readonly keys: number;
  readonly expected: number;
  readonly total: number;
  /** Accounts a transaction still holds the lock of (Boki), or rows missing (PostgreSQL). */
  readonly locked: number;
  /** Requests still waiting behind a lock (Boki). */
  readonly waiting: number;
  readonly ok: boolean;
  readonly ms: number;
}

/** Reads every account of a key set back from boki dev: the total and the locks left. */
export async function checkBoki(s: Server, keys: number): Promise<BalanceCheck> {
  const t0 = performance.now();
  const pool = new Pool(s.url, { connections: LOAD_IN_FLIGHT });
  let total = 0;
  let locked = 0;
  let waiting = 0;
  try {
    await inParallel(keys, LOAD_IN_FLIGHT, async (i) => {
      const r = await pool.request({
        path: `${ACCOUNT_PATH}/${keyName(keys, i)}`,
        method: "GET",
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      const body = await r.body.text();
      if (r.statusCode !== 200)
        throw new Error(`reading ${keyName(keys, i)}: HTTP ${r.statusCode} ${body.slice(0, 200)}`);
      const st = JSON.parse(body) as {
        state: { balance: number } | null;
        lockedBy: string | null;
        waiting: number;
      };
      total += st.state?.balance ?? 0;
      if (st.lockedBy !== null) locked++;
      waiting += st.waiting;
    });
  } finally {
    await pool.close();
  }
  const expected = keys * BALANCE;
  return {
    keys,
    expected,
    total,
    locked,
    waiting,
    ok: total === expected && locked === 0,
    ms: Math.round(performance.now() - t0),
  };
}

async function checkPostgres(client: pg.Client, keys: number): Promise<BalanceCheck> {
  const t0 = performance.now();
  const r = await client.query<{ n: string; total: string }>(
    "SELECT count(*) AS n, coalesce(sum(balance), 0) AS total FROM accounts WHERE key LIKE $1",
    [`k${keys}-%`],
  );
  const n = Number(r.rows[0]!.n);
  const total = Number(r.rows[0]!.total);
  const expected = keys * BALANCE;
  return {
    keys,
    expected,
    total,
    locked: keys - n,
    waiting: 0,
    ok: total === expected && n === keys,
    ms: Math.round(performance.now() - t0),
  };
}

/** Pids of `pid`'s children (Linux /proc): PostgreSQL's backends under its postmaster. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === pid) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

interface PostgresPeer {
  readonly server: PostgresServer;
  readonly http: Server;
  readonly client: pg.Client;
}

async function startPostgresPeer(): Promise<PostgresPeer | { skipped: string }> {
  const server = await startPostgres({ progress });
  if ("skipped" in server) return server;
  let client: pg.Client | undefined;
  try {
    client = new pg.Client({ connectionString: server.url });
    await client.connect();
    await client.query(YCSBT_SCHEMA);
    const cols = Array.from({ length: YCSBT_FIELDS }, (_, i) => `f${i}`);
    for (const keys of KEY_COUNTS) {
      const rows = Array.from({ length: keys }, (_, i) => ({
        key: keyName(keys, i),
        ...accountOf(keys, i),
      }));
      await client.query(
        `INSERT INTO accounts (key, balance, ${cols.join(", ")})
         SELECT x->>'key', (x->>'balance')::bigint, ${cols.map((_, i) => `x->'fields'->>${i}`).join(", ")}
         FROM jsonb_array_elements($1::jsonb) AS x`,
        [JSON.stringify(rows)],
      );
    }
    await client.query("VACUUM ANALYZE accounts");
    await client.query("CHECKPOINT");
    const { url, proc } = await startPostgresHttpPeer("ycsbt-postgres", PG_SERVER, server, PG_POOL);
    return { server, http: { url, proc }, client };
  } catch (err) {
    await client?.end().catch(() => undefined);
    await server.stop();
    return {
      skipped: `PostgreSQL YCSB-T peer: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

// ---- the measurement ----------------------------------------------------------------------

const OP_KINDS = ["read", "update", "transfer"] as const;
type OpKind = (typeof OP_KINDS)[number];

export interface YcsbtWindow {
  readonly windowMs: number;
  readonly counts: Record<OpKind, number>;
  readonly all: LatencySummary;
  readonly byOp: Record<OpKind, LatencySummary>;
  /** Transfers that did not commit (aborted; compensated, for a saga), by error code. */
  readonly abortsByCode: Record<string, number>;
  /** Wait-die deaths (Boki transactions) or deadlocks detected (PostgreSQL). */
  readonly deadlocks: number;
  /** Attempts beyond the first, summed over transfers. */
  readonly retries: number;
  readonly serializationFailures: number;
  /** Saga compensations that kept failing. */
  readonly compensationsFailed: number;
  readonly failedRequests: number;
  readonly failedSample?: string;
  readonly serverCpuMs: number;
  readonly loadGeneratorCpuMs: number;
}

interface TransferOutcome {
  readonly status?: string;
  readonly attempts?: number;
  readonly retryable?: boolean;
  readonly error?: { readonly code?: string };
  readonly serializationFailures?: number;
  readonly deadlocks?: number;
  readonly compensationsFailed?: readonly number[];
}

/** Runs a point's mix closed-loop against one target: warm-up, then a fixed window. */
export async function runYcsbt(
  t: Pick<Target, "kind" | "server" | "pids" | "system">,
  p: Point,
  phases: { warmupMs: number; measureMs: number },
  seed: number,
): Promise<YcsbtWindow> {
  const pool = new Pool(t.server.url, { connections: p.concurrency });
  const all = new LatencyHistogram();
  const byOp = Object.fromEntries(OP_KINDS.map((k) => [k, new LatencyHistogram()])) as Record<
    OpKind,
    LatencyHistogram
  >;
  const counts: Record<OpKind, number> = { read: 0, update: 0, transfer: 0 };
  const abortsByCode: Record<string, number> = {};
  let deadlocks = 0;
  let retries = 0;
  let serializationFailures = 0;
  let compensationsFailed = 0;
  let failedRequests = 0;
  let failedSample: string | undefined;
  const start = performance.now();
  const measureStart = start + phases.warmupMs;
  const measureEnd = measureStart + phases.measureMs;
  let stop = false;
  // CPU is read at the window's edges (timers; the window itself is judged per completion).
  let cpu0 = { server: 0, self: process.cpuUsage() };
  let cpu1 = { server: 0, self: process.cpuUsage() };
  const pidsNow = t.pids();
  const t0Timer = setTimeout(() => {
    cpu0 = { server: cpuMs(pidsNow), self: process.cpuUsage() };
  }, phases.warmupMs);
  const t1Timer = setTimeout(() => {
    cpu1 = { server: cpuMs(pidsNow), self: process.cpuUsage() };
  }, phases.warmupMs + phases.measureMs);
  const path = TRANSFER_PATH[t.kind];
  try {
    await Promise.all(
      Array.from({ length: p.concurrency }, async (_, w) => {
        const next = opSource(p, seed * 7919 + w);
        while (!stop) {
          const op = next();
          const t0 = performance.now();
          const r =
            op.t === "read"
              ? await post(pool, `${ACCOUNT_PATH}/${op.key}/read`, "null")
              : op.t === "update"
                ? await post(
                    pool,
                    `${ACCOUNT_PATH}/${op.key}/update`,
                    JSON.stringify({ field: op.field, value: op.value }),
                  )
                : await post(
                    pool,
                    path,
                    JSON.stringify({ from: op.from, to: op.to, amount: AMOUNT }),
                  );
          const t1 = performance.now();
          if (t1 >= measureEnd) {
            stop = true;
            break;
          }
          if (t1 < measureStart) continue;
          if (r.status !== 200) {
            failedRequests++;
            failedSample ??= `${op.t}: HTTP ${r.status} ${r.text.slice(0, ERROR_SAMPLE_CHARS_MAX)}`;
            if (failedRequests > FAILED_REQUESTS_MAX) {
              throw new Error(
                `${t.system} ${t.kind}: more than ${FAILED_REQUESTS_MAX} failed requests in one window; first: ${failedSample}`,
              );
            }
            continue;
          }
          counts[op.t]++;
          all.recordSpan(t0, t1);
          byOp[op.t].recordSpan(t0, t1);
          if (op.t !== "transfer") continue;
          const o = JSON.parse(r.text) as TransferOutcome;
          const attempts = o.attempts ?? 1;
          if (o.status === "committed" || o.status === "completed") {
            if (t.kind === "transaction") deadlocks += attempts - 1;
            retries += attempts - 1;
          } else if (o.status === "aborted" || o.status === "compensated") {
            const code = o.error?.code ?? "UNKNOWN";
            abortsByCode[code] = (abortsByCode[code] ?? 0) + 1;
            if (t.kind === "transaction")
              deadlocks += code === "TXN_DIED" ? attempts : attempts - 1;
            retries += Math.max(0, attempts - 1);
            compensationsFailed += o.compensationsFailed?.length ?? 0;
          } else {
            throw new Error(
              `${t.system} ${t.kind}: unexpected transfer outcome ${r.text.slice(0, 300)}`,
            );
          }
          if (t.kind === "pg") {
            deadlocks += o.deadlocks ?? 0;
            serializationFailures += o.serializationFailures ?? 0;
          }
        }
      }).map((x) =>
        x.catch((err: unknown) => {
          stop = true;
          throw err;
        }),
      ),
    );
    const selfWindow = cpu1.self.user - cpu0.self.user + cpu1.self.system - cpu0.self.system;
    return {
      windowMs: phases.measureMs,
      counts,
      all: all.summary(),
      byOp: Object.fromEntries(OP_KINDS.map((k) => [k, byOp[k].summary()])) as Record<
        OpKind,
        LatencySummary
      >,
      abortsByCode,
      deadlocks,
      retries,
      serializationFailures,
      compensationsFailed,
      failedRequests,
      ...(failedSample === undefined ? {} : { failedSample }),
      serverCpuMs: cpu1.server - cpu0.server,
      loadGeneratorCpuMs: selfWindow / 1000,
    };
  } finally {
    clearTimeout(t0Timer);
    clearTimeout(t1Timer);
    all.destroy();
    for (const k of OP_KINDS) byOp[k].destroy();
    await pool.close();
  }
}

const perSec = (n: number, windowMs: number): number => n / (windowMs / 1000);
const opsOf = (w: YcsbtWindow): number => OP_KINDS.reduce((s, k) => s + w.counts[k], 0);

function latency(prefix: string, l: LatencySummary): Record<string, number> {
  return {
    [`${prefix}P50Ms`]: round(l.p50Ms, 3),
    [`${prefix}P99Ms`]: round(l.p99Ms, 3),
  };
}

function workloadOf(p: Point): string {
  return `ycsbt-${p.mix.name.replace(/\//g, "-")}-k${p.keys}-${p.distribution === "uniform" ? "unif" : "zipf"}`;
}

interface RunRecord {
  readonly window: YcsbtWindow;
  readonly check: BalanceCheck;
}

/** One point's measurements, one per target; each run's windows and checks are kept in `runs`. */
function measurementsOf(
  p: Point,
  targets: readonly Target[],
  check: (t: Target, keys: number) => Promise<BalanceCheck>,
  runs: Map<Target, RunRecord[]>,
  pointSeed: number,
): Measurement[] {
  return targets.map((t) => ({
    label: `${t.system} ${t.kind} ${p.mix.name} ${p.keys} keys ${p.distribution} c=${p.concurrency}`,
    run: async (phases) => {
      const done = runs.get(t) ?? [];
      runs.set(t, done);
      const w = await runYcsbt(t, p, phases, pointSeed + done.length);
      const c = await check(t, p.keys);
      if (!c.ok) {
        progress(
          `txn: BALANCE CHECK FAILED for ${t.system} ${t.kind} at ${p.keys} keys: total ${c.total}, expected ${c.expected}, ${c.locked} locked`,
        );
      }
      done.push({ window: w, check: c });
      const transfers = w.counts.transfer;
      const aborts = Object.values(w.abortsByCode).reduce((a, b) => a + b, 0);
      const window: WindowResult = {
        ops: opsOf(w),
        windowMs: w.windowMs,
        opsPerSec: perSec(opsOf(w), w.windowMs),
        latency: w.all,
      };
      const per = (n: number): number | null => (transfers === 0 ? null : round(n / transfers, 4));
      return {
        window,
        row: {
          system: t.system,
          mode: t.mode,
          workload: workloadOf(p),
          concurrency: p.concurrency,
          payloadBytes: FIELD_BYTES,
        },
        extras: {
          mix: p.mix.name,
          keys: p.keys,
          distribution: p.distribution,
          kind: t.kind,
          transfersPerSec: round(perSec(transfers, w.windowMs), 1),
          readsPerSec: round(perSec(w.counts.read, w.windowMs), 1),
          updatesPerSec: round(perSec(w.counts.update, w.windowMs), 1),
          ...latency("transfer", w.byOp.transfer),
          ...latency("read", w.byOp.read),
          ...latency("update", w.byOp.update),
          transfers,
          abortsPerTransfer: per(aborts),
          abortsByCode: w.abortsByCode,
          deadlocksPerTransfer: per(w.deadlocks),
          retriesPerTransfer: per(w.retries),
          ...(t.kind === "pg"
            ? { serializationFailuresPerTransfer: per(w.serializationFailures) }
            : {}),
          ...(t.kind === "saga" ? { compensationsFailed: w.compensationsFailed } : {}),
          failedRequests: w.failedRequests,
          ...(w.failedSample === undefined ? {} : { failedSample: w.failedSample }),
          serverCpuMsPerOp: round(w.serverCpuMs / Math.max(1, opsOf(w)), 4),
          loadGeneratorCpuMsPerOp: round(w.loadGeneratorCpuMs / Math.max(1, opsOf(w)), 4),
          ...t.extras,
        },
      };
    },
  }));
}

const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;

async function run(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK : FULL;
  const concurrencies = options.quick ? CONCURRENCY_QUICK : CONCURRENCY_FULL;
  const firstWarmupMs = options.quick ? FIRST_WARMUP_MS.quick : FIRST_WARMUP_MS.full;
  const rows: ResultRow[] = [];
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const points: Point[] = [];
  // --quick measures the goal's key count only (within 60 s); both sets are loaded either way.
  const keyCounts = options.quick ? [GOAL_KEYS] : [...KEY_COUNTS].reverse();
  for (const concurrency of concurrencies)
    for (const keys of keyCounts)
      for (const distribution of DISTRIBUTIONS)
        for (const mix of MIXES) points.push({ mix, keys, distribution, concurrency });
  progress(
    `txn: YCSB-T, ${KEY_COUNTS.join(" and ")} accounts × ${YCSBT_FIELDS} fields of ${FIELD_BYTES} B, ` +
      `mixes ${MIXES.map((m) => m.name).join(", ")}, ${DISTRIBUTIONS.join(" / ")}, c = ${concurrencies.join(", ")}; ` +
      `${points.length} points × ${phases.runs} run(s) of ${phases.warmupMs / 1000} s + ${phases.measureMs / 1000} s per system`,
  );
  const runTag = randomBytes(4).toString("hex");
  await withTempDir("boki-bench-txn", async (dir) => {
    let boki: Server | undefined;
    let peer: PostgresPeer | undefined;
    try {
      const t0 = performance.now();
      const [b, p] = await Promise.all([
        (async () => {
          const s = await startBoki(join(dir, "boki"));
          boki = s;
          await loadBoki(s);
          progress(
            `txn: boki dev up at ${s.url}, ${KEY_COUNTS.reduce((a, k) => a + k, 0)} accounts loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
          );
          return s;
        })(),
        (async () => {
          if (!options.peers) {
            skipped.push({ system: "postgres", mode: "*", reason: "--no-peers" });
            return undefined;
          }
          const r = await startPostgresPeer();
          if ("skipped" in r) {
            progress(`txn: ${r.skipped}; going on without it`);
            skipped.push({ system: "postgres", mode: "*", reason: r.skipped });
            return undefined;
          }
          peer = r;
          progress(
            `txn: PostgreSQL ${r.server.version} up and loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
          );
          return r;
        })(),
      ]);
      const bokiPid = b.proc.pid!;
      const bokiExtras = {
        via: "boki dev process (gateway + log in the main thread, functions in 2 worker threads), HTTP",
        durability: BOKI_DURABILITY,
      };
      const targets: Target[] = [
        {
          system: "boki",
          kind: "transaction",
          mode: "transaction",
          server: b,
          pids: () => [bokiPid],
          extras: {
            ...bokiExtras,
            isolation:
              "serializable (2PC over strict 2PL, wait-die; shared reads of committed state)",
          },
        },
        {
          system: "boki",
          kind: "saga",
          mode: "saga",
          server: b,
          pids: () => [bokiPid],
          extras: { ...bokiExtras, isolation: "saga (atomic by compensation, not isolated)" },
        },
      ];
      if (p !== undefined) {
        const postmaster = p.server.proc.pid!;
        const httpPid = p.http.proc.pid!;
        targets.push({
          system: "postgres",
          kind: "pg",
          mode: `${p.server.version} serializable`,
          server: p.http,
          pids: () => [httpPid, postmaster, ...childrenOf(postmaster)],
          extras: {
            via: `Node HTTP server process (fastify) with a pg Pool of ${PG_POOL} connections, HTTP`,
            durability: p.server.durability,
            isolation:
              "serializable (every statement; a transfer is BEGIN, UPDATE, UPDATE, COMMIT, retried on 40001/40P01)",
            postgresVersion: p.server.version,
          },
        });
      }
      const check = (t: Target, keys: number): Promise<BalanceCheck> =>
        t.system === "boki" ? checkBoki(b, keys) : checkPostgres(peer!.client, keys);
      for (const t of targets) {
        progress(`txn: [${t.system} ${t.kind}] warming up for ${firstWarmupMs / 1000} s`);
        await runYcsbt(
          t,
          {
            mix: MIXES[0]!,
            keys: GOAL_KEYS,
            distribution: "uniform",
            concurrency: FIRST_WARMUP_CONCURRENCY,
          },
          { warmupMs: firstWarmupMs, measureMs: 1 },
          99,
        );
      }
      for (const [k, p0] of points.entries()) {
        const runs = new Map<Target, RunRecord[]>();
        const got = await runMeasurements(
          measurementsOf(p0, targets, check, runs, 1000 * (k + 1)),
          {
            phases,
            quick: options.quick,
            interleave: true,
            tag: `txn ${runTag}`,
            numbering: { offset: k * targets.length, total: points.length * targets.length },
          },
        );
        for (const row of got) {
          const t = targets.find((x) => x.system === row.system && x.mode === row.mode)!;
          const rs = runs.get(t) ?? [];
          rows.push({
            ...row,
            runTransfersPerSec: rs.map((r) =>
              round(perSec(r.window.counts.transfer, r.window.windowMs), 1),
            ),
            balanceChecks: rs.map((r) => r.check),
            balanceOk: rs.every((r) => r.check.ok),
          });
        }
      }
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\nboki dev output:\n${boki?.proc.output(20) ?? "(not started)"}`,
        { cause: err },
      );
    } finally {
      await boki?.proc.stop(15_000);
      if (peer !== undefined) {
        await peer.client.end().catch(() => undefined);
        await peer.http.proc.stop();
        await peer.server.stop();
      }
    }
  });
  // Boki's transfers against PostgreSQL's, per point and per paired run.
  const ratios: Record<string, unknown>[] = [];
  for (const p of points) {
    const get = (kind: Kind) =>
      rows.find(
        (r) =>
          r.workload === workloadOf(p) && r.concurrency === p.concurrency && r["kind"] === kind,
      );
    const pgRow = get("pg");
    for (const kind of ["transaction", "saga"] as const) {
      const r = get(kind);
      if (r === undefined || pgRow === undefined) continue;
      const br = r["runTransfersPerSec"] as number[];
      const pr = pgRow["runTransfersPerSec"] as number[];
      const perRun = br.map((x, i) => round(x / (pr[i] ?? NaN), 3));
      ratios.push({
        mix: p.mix.name,
        keys: p.keys,
        distribution: p.distribution,
        concurrency: p.concurrency,
        kind,
        bokiTransfersPerSec: r["transfersPerSec"],
        postgresTransfersPerSec: pgRow["transfersPerSec"],
        transferThroughputRatio: round(
          (r["transfersPerSec"] as number) / (pgRow["transfersPerSec"] as number),
          3,
        ),
        transferThroughputRatioPerRun: perRun,
        transferThroughputRatioPerRunMedian: median(perRun),
      });
    }
  }
  const goalRows = ratios.filter((r) => r["keys"] === GOAL_KEYS);
  const goal = {
    target: `boki transfers/s ≥ ${GOAL_RATIO}× PostgreSQL's at ${GOAL_KEYS} keys`,
    ratio: GOAL_RATIO,
    points: goalRows.map((r) => ({
      mix: r["mix"],
      distribution: r["distribution"],
      concurrency: r["concurrency"],
      kind: r["kind"],
      ratio: r["transferThroughputRatioPerRunMedian"],
      met: (r["transferThroughputRatioPerRunMedian"] as number) >= GOAL_RATIO,
    })),
  };
  for (const p of points) {
    const at = rows.filter((r) => r.workload === workloadOf(p) && r.concurrency === p.concurrency);
    const fmt = (r: ResultRow): string =>
      `${String(r["kind"])} ${Math.round(r["transfersPerSec"] as number)}/s` +
      ` (aborts ${String(r["abortsPerTransfer"])}, deadlocks ${String(r["deadlocksPerTransfer"])}/transfer${r["balanceOk"] === true ? "" : ", BALANCE CHECK FAILED"})`;
    const rs = ratios.filter(
      (r) =>
        r["mix"] === p.mix.name &&
        r["keys"] === p.keys &&
        r["distribution"] === p.distribution &&
        r["concurrency"] === p.concurrency,
    );
    notes.push(
      `${p.mix.name} ${p.keys} keys ${p.distribution} c=${p.concurrency}: transfers ${at.map(fmt).join("; ")}` +
        (rs.length === 0
          ? ""
          : `; vs pg ${rs.map((r) => `${String(r["kind"])} ${String(r["transferThroughputRatioPerRunMedian"])}x`).join(", ")}`),
    );
  }
  const failedChecks = rows.filter((r) => r["balanceOk"] !== true);
  notes.push(
    failedChecks.length === 0
      ? `balance checks: all ${rows.reduce((a, r) => a + (r["balanceChecks"] as unknown[]).length, 0)} passed (total unchanged, no lock left)`
      : `balance checks FAILED in ${failedChecks.map((r) => `${r.system} ${r.mode} ${r.workload} c=${r.concurrency}`).join(", ")}`,
  );
  notes.push(
    "fairness: both systems are HTTP servers in their own process on this machine, driven by the same load generator " +
      "(this process, undici, keep-alive) with the same seeded request sequence; boki: boki dev with 2 worker threads, " +
      "every append fsynced before it is acknowledged; postgres: fastify + pg Pool " +
      `(${PG_POOL} connections) in front of PostgreSQL with fsync=on, synchronous_commit=on, every statement SERIALIZABLE; ` +
      "PostgreSQL's deadlock_timeout is its default (1 s)",
  );
  return {
    rows,
    skipped,
    notes,
    extra: {
      ratios,
      goal,
      dataset: {
        keys: KEY_COUNTS,
        balance: BALANCE,
        fields: YCSBT_FIELDS,
        fieldBytes: FIELD_BYTES,
        amount: AMOUNT,
        zipfTheta: ZIPF_THETA,
        mixes: MIXES,
      },
    },
  };
}

export const txnSuite: Suite = {
  name: "txn",
  description:
    "YCSB-T on boki-ts/objects (transactions and sagas) through boki dev, beside PostgreSQL 15 (serializable)",
  run,
};
