/**
 * Suite "apps": the example applications (examples/apps/<app>/: travel reservation, movie
 * review, Retwis) at rising request rates, each beside its unsafe variant (the same code
 * without the libraries' logging), as the Boki and Beldi papers judged their libraries.
 *
 * For each application, its safe and unsafe variants run at once, each in its own system
 * (`bin/boki.js dev`: 2 worker threads, the embedded log acknowledging appends after fsync;
 * or, in cluster mode, a local cluster of 3 sequencers, 3 storage nodes with replication 3
 * on disk, 2 engines and a gateway, every node its own process), each loaded with the
 * application's dataset (bench/apps/<app>.ts). The load generator is this process: an open
 * loop (bench/lib/open-loop.ts) sending the application's request mix at a fixed arrival
 * rate, 100, 200, 300, … requests/s, latency measured from each request's due time, over
 * undici keep-alive connections. At every rate the two variants are measured in turns; the
 * ramp stops at the first rate where either is saturated (it completes under 90 % of the
 * offered rate, sheds requests, or its p99 passes 1 s), and the highest completed rate is
 * its saturation throughput. After the ramp the application's invariants are checked on
 * both variants (the safe one must hold them; what the unsafe one shows is reported).
 *
 * Rows: system "boki", mode "<embedded|cluster>-<safe|unsafe>", workload the application,
 * concurrency the peak requests in flight, opsPerSec the completed rate, p50/p99 from due
 * time; extra fields offeredPerSec, failed, shed, late, per-kind p50/p99 and CPU per request
 * of the system's processes. The results file's `goals` holds p50 at 100 requests/s against
 * the papers' BokiFlow figures (travel 20 ms, movie 26 ms) and safe/unsafe p50 (≤ 1.5×).
 *
 *   npm run bench -- apps              # embedded then cluster, 1 s + 5 s per rate, 3 runs at 100/s
 *   npm run bench -- apps --cluster    # the cluster only
 *   npm run bench -- apps --quick      # embedded, 100/s, 0.5 s + 2 s (within 60 s)
 *   BENCH_APPS=movie npm run bench -- apps --cluster   # only the applications named (comma-separated)
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Pool } from "undici";
import type { AppTarget, BenchApp, Variant } from "../apps/app.js";
import { BENCH_APPS } from "../apps/index.js";
import { LOCAL_TOPOLOGY, startBokiCluster, type BokiCluster } from "../lib/boki-cluster.js";
import type { LatencySummary } from "../lib/histogram.js";
import { round } from "../lib/measure.js";
import { runOpenLoop, type OpenLoopResult } from "../lib/open-loop.js";
import { lastLines } from "../lib/peers/proc.js";
import { cpuMs } from "../lib/proc-cpu.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { rng } from "./txn.js";
import type { Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";

/** Offered rates, requests/s, in order; the ramp stops at the first saturated one. */
const RATES_FULL = [100, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000, 2400, 3200] as const;
const RATES_QUICK = [100] as const;
/** The rate the goals are read at. */
const GOAL_RATE = 100;
/** Runs at the goal's rate (the median by p50 reported); other rates run once. */
const GOAL_RUNS_FULL = 3;
const PHASES_FULL = { warmupMs: 1000, measureMs: 5000 } as const;
const PHASES_QUICK = { warmupMs: 500, measureMs: 2000 } as const;
/** Load a fresh system takes before its first measurement (V8 compiles the hot paths). */
const FIRST_WARMUP = { full: { ms: 3000, rate: 100 }, quick: { ms: 800, rate: 100 } } as const;
/** A rate is saturated when the completed rate is below this share of the offered one, */
const SATURATED_SHARE = 0.9;
/** … or its p99 (from due time) passes this. */
const SATURATED_P99_MS = 1000;
/** Requests outstanding at most per system; more are shed (it is saturated). */
const IN_FLIGHT_MAX = 2048;
/** Keep-alive connections per system. */
const CONNECTIONS = 256;
/** Time after a window for its outstanding requests to complete. */
const DRAIN_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
export const WORKERS = 2;
/** The papers' BokiFlow p50 at light load (hotel reservation, movie review), ms. */
const PAPER_P50_MS: Readonly<Record<string, number>> = { travel: 20, movie: 26 };
const SAFE_UNSAFE_P50_MAX = 1.5;

type Mode = "embedded" | "cluster";

interface System {
  readonly mode: Mode;
  readonly variant: Variant;
  readonly target: AppTarget;
  readonly pool: Pool;
  readonly pids: () => number[];
  readonly describe: () => string;
  stop(): Promise<void>;
}

async function startSystem(
  app: BenchApp,
  variant: Variant,
  mode: Mode,
  dir: string,
): Promise<System> {
  const functions = app.functions[variant];
  if (mode === "embedded") {
    const { url, proc } = await startBokiDev({
      functions,
      dataDir: dir,
      workers: WORKERS,
      name: `boki dev (${app.name}, ${variant})`,
    });
    return {
      mode,
      variant,
      target: { url },
      pool: new Pool(url, { connections: CONNECTIONS }),
      pids: () => [proc.pid!],
      describe: () => proc.output(30),
      stop: async () => {
        await proc.stop(15_000);
      },
    };
  }
  const cluster: BokiCluster = await startBokiCluster({
    dir,
    durability: "disk",
    ...LOCAL_TOPOLOGY,
    indexReplicas: 2,
    gateways: 1,
    functions: { path: functions },
    say: progress,
  });
  const g = cluster.config.nodes.find((n) => n.role === "gateway")!;
  const url = `http://${g.host}:${g.port}`;
  return {
    mode,
    variant,
    target: { url },
    pool: new Pool(url, { connections: CONNECTIONS }),
    pids: () => [...cluster.processes.values()].map((p) => p.pid!).filter((p) => p > 0),
    describe: () =>
      [...cluster.processes].map(([id, p]) => `${id}:\n${lastLines(p.output(8), 8)}`).join("\n"),
    stop: async () => {
      await cluster.stop();
    },
  };
}

/** Longest a fresh system may answer 503 (engines still loading their functions) to the seed. */
const SEED_READY_MS_MAX = 60_000;

/** Seeds the application, asking again while the system answers 503 (seeds are idempotent). */
async function seedWhenReady(app: BenchApp, target: AppTarget, variant: Variant): Promise<void> {
  const until = Date.now() + SEED_READY_MS_MAX;
  for (;;) {
    try {
      return await app.seed(target, variant);
    } catch (err) {
      if (!/\b503\b/.test(String(err)) || Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Answers that count as served: success, and the application's typed refusals (422). */
const served = (status: number): boolean => (status >= 200 && status < 300) || status === 422;

async function measure(
  app: BenchApp,
  s: System,
  rate: number,
  phases: { warmupMs: number; measureMs: number },
  seed: number,
): Promise<{ result: OpenLoopResult; cpuMsPerRequest: number; statuses: Record<string, number> }> {
  const random = rng(seed);
  const statuses: Record<string, number> = {};
  const pids = s.pids();
  const cpu0 = cpuMs(pids);
  const result = await runOpenLoop({
    rate,
    ...phases,
    inFlightMax: IN_FLIGHT_MAX,
    drainMs: DRAIN_MS,
    send: async () => {
      const req = app.nextRequest(random, s.variant);
      try {
        const r = await s.pool.request({
          path: req.path,
          method: req.method,
          ...(req.body === undefined
            ? {}
            : { body: JSON.stringify(req.body), headers: { "content-type": "application/json" } }),
          headersTimeout: REQUEST_TIMEOUT_MS,
          bodyTimeout: REQUEST_TIMEOUT_MS,
        });
        await r.body.text();
        const key = `${req.kind}:${r.statusCode}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
        return { kind: req.kind, ok: served(r.statusCode) };
      } catch (err) {
        const key = `${req.kind}:${(err as { code?: string }).code ?? "error"}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
        return { kind: req.kind, ok: false };
      }
    },
  });
  const requests = Math.max(1, result.ok + result.failed);
  // CPU covers warm-up and window alike, as do the requests it is divided by.
  const all = Math.max(
    requests,
    Math.round(((phases.warmupMs + phases.measureMs) / 1000) * rate) - result.shed,
  );
  return { result, cpuMsPerRequest: (cpuMs(pids) - cpu0) / all, statuses };
}

const isSaturated = (r: OpenLoopResult): boolean =>
  r.achievedPerSec < SATURATED_SHARE * r.offeredPerSec ||
  r.shed > 0 ||
  r.late > 0 ||
  r.latency.p99Ms > SATURATED_P99_MS;

function kindFigures(byKind: Readonly<Record<string, LatencySummary>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, l] of Object.entries(byKind))
    out[k] = { count: l.count, p50Ms: round(l.p50Ms, 3), p99Ms: round(l.p99Ms, 3) };
  return out;
}

function rowOf(
  app: BenchApp,
  s: System,
  m: Awaited<ReturnType<typeof measure>>,
  runs: readonly OpenLoopResult[],
): ResultRow {
  const r = m.result;
  return {
    system: "boki",
    mode: `${s.mode}-${s.variant}`,
    workload: app.name,
    concurrency: r.inFlightPeak,
    payloadBytes: 0,
    opsPerSec: round(r.achievedPerSec, 1),
    p50Ms: round(r.latency.p50Ms, 3),
    p99Ms: round(r.latency.p99Ms, 3),
    maxMs: round(r.latency.maxMs, 3),
    offeredPerSec: r.offeredPerSec,
    due: r.due,
    ok: r.ok,
    failed: r.failed,
    shed: r.shed,
    late: r.late,
    saturated: isSaturated(r),
    byKind: kindFigures(r.byKind),
    statuses: m.statuses,
    serverCpuMsPerRequest: round(m.cpuMsPerRequest, 3),
    senderLagMaxMs: round(r.senderLagMaxMs, 1),
    runP50Ms: runs.map((x) => round(x.latency.p50Ms, 3)),
    via: "open loop from this process, undici keep-alive, latency from each request's due time",
  };
}

interface AppOutcome {
  readonly rows: ResultRow[];
  readonly notes: string[];
  readonly checks: Record<string, unknown>;
  readonly goal: Record<string, unknown>;
}

async function runApp(
  app: BenchApp,
  mode: Mode,
  options: SuiteOptions,
  dir: string,
): Promise<AppOutcome> {
  const rates = options.quick ? RATES_QUICK : RATES_FULL;
  const phases = options.quick ? PHASES_QUICK : PHASES_FULL;
  const first = options.quick ? FIRST_WARMUP.quick : FIRST_WARMUP.full;
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const systems: System[] = [];
  try {
    const t0 = performance.now();
    // Both variants start and load their data at once (each in its own processes).
    const started = await Promise.allSettled(
      (["safe", "unsafe"] as const).map(async (variant) => {
        const sub = join(dir, `${app.name}-${mode}-${variant}`);
        mkdirSync(sub, { recursive: true });
        const s = await startSystem(app, variant, mode, sub);
        systems.push(s);
        await seedWhenReady(app, s.target, variant);
        return s;
      }),
    );
    for (const r of started) if (r.status === "rejected") throw r.reason;
    systems.sort((a, b) => a.variant.localeCompare(b.variant));
    progress(
      `apps: ${app.name} ${mode}: safe and unsafe up and seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    for (const s of systems)
      await measure(app, s, first.rate, { warmupMs: first.ms, measureMs: 1 }, 7);
    const saturation: Record<Variant, number> = { safe: 0, unsafe: 0 };
    const atGoal: Partial<Record<Variant, number>> = {};
    for (const [k, rate] of rates.entries()) {
      const runs = rate === GOAL_RATE && !options.quick ? GOAL_RUNS_FULL : 1;
      const got = new Map<System, Array<Awaited<ReturnType<typeof measure>>>>();
      for (let run = 0; run < runs; run++) {
        for (const s of systems) {
          const m = await measure(app, s, rate, phases, 1000 * (k + 1) + run);
          const r = m.result;
          progress(
            `apps: ${app.name} ${mode}-${s.variant} ${rate}/s: ${r.achievedPerSec.toFixed(0)}/s done, ` +
              `p50 ${r.latency.p50Ms.toFixed(2)} ms, p99 ${r.latency.p99Ms.toFixed(1)} ms` +
              (r.failed + r.shed + r.late > 0
                ? `, failed ${r.failed}, shed ${r.shed}, late ${r.late}`
                : ""),
          );
          got.set(s, [...(got.get(s) ?? []), m]);
        }
      }
      let saturated = false;
      for (const s of systems) {
        const ms = got.get(s)!;
        const sorted = [...ms].sort((a, b) => a.result.latency.p50Ms - b.result.latency.p50Ms);
        const median = sorted[(sorted.length - 1) >> 1]!;
        rows.push(
          rowOf(
            app,
            s,
            median,
            ms.map((x) => x.result),
          ),
        );
        saturation[s.variant] = Math.max(saturation[s.variant], median.result.achievedPerSec);
        if (rate === GOAL_RATE) atGoal[s.variant] = median.result.latency.p50Ms;
        if (isSaturated(median.result)) saturated = true;
      }
      if (saturated) break;
    }
    const checks: Record<string, unknown> = {};
    for (const s of systems) {
      const c = await app.check(s.target, s.variant);
      checks[`${mode}-${s.variant}`] = c;
      notes.push(
        `${app.name} ${mode}-${s.variant}: invariants ${c.ok ? "hold" : "DO NOT hold"}: ${JSON.stringify(c.details)}`,
      );
      if (s.variant === "safe" && !c.ok)
        throw new Error(
          `${app.name} ${mode}-safe broke its invariants: ${JSON.stringify(c.details)}`,
        );
    }
    const safeP50 = atGoal.safe;
    const unsafeP50 = atGoal.unsafe;
    const paper = PAPER_P50_MS[app.name];
    const ratio =
      safeP50 !== undefined && unsafeP50 !== undefined && unsafeP50 > 0
        ? safeP50 / unsafeP50
        : undefined;
    const goal: Record<string, unknown> = {
      app: app.name,
      mode,
      rate: GOAL_RATE,
      safeP50Ms: safeP50 === undefined ? null : round(safeP50, 3),
      unsafeP50Ms: unsafeP50 === undefined ? null : round(unsafeP50, 3),
      safeOverUnsafeP50: ratio === undefined ? null : round(ratio, 3),
      safeOverUnsafeTarget: SAFE_UNSAFE_P50_MAX,
      safeOverUnsafeMet: ratio === undefined ? null : ratio <= SAFE_UNSAFE_P50_MAX,
      paperP50Ms: paper ?? null,
      paperMet: paper === undefined || safeP50 === undefined ? null : safeP50 < paper,
      saturationPerSec: { safe: round(saturation.safe, 1), unsafe: round(saturation.unsafe, 1) },
    };
    notes.push(
      `${app.name} ${mode}: p50 at ${GOAL_RATE}/s safe ${safeP50?.toFixed(2) ?? "-"} ms, unsafe ${unsafeP50?.toFixed(2) ?? "-"} ms` +
        ` (safe/unsafe ${ratio?.toFixed(2) ?? "-"}×, goal ≤ ${SAFE_UNSAFE_P50_MAX}×)` +
        (paper === undefined ? "" : `; paper's BokiFlow ${paper} ms`) +
        `; saturation safe ${saturation.safe.toFixed(0)}/s, unsafe ${saturation.unsafe.toFixed(0)}/s` +
        (options.quick ? " (quick: only the first rate)" : ""),
    );
    return { rows, notes, checks, goal };
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n${systems.map((s) => `${s.variant}:\n${s.describe()}`).join("\n")}`,
      { cause: err },
    );
  } finally {
    for (const s of systems) {
      await s.pool.close().catch(() => undefined);
      await s.stop();
    }
  }
}

/** The applications to run: all, or those `BENCH_APPS` names (comma-separated). */
function chosenApps(): readonly BenchApp[] {
  const only = process.env["BENCH_APPS"];
  if (only === undefined || only.trim() === "") return BENCH_APPS;
  const names = only.split(",").map((n) => n.trim());
  const unknown = names.filter((n) => !BENCH_APPS.some((a) => a.name === n));
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_APPS names ${unknown.join(", ")}; the applications are ${BENCH_APPS.map((a) => a.name).join(", ")}`,
    );
  }
  return BENCH_APPS.filter((a) => names.includes(a.name));
}

async function run(options: SuiteOptions): Promise<SuiteOutput> {
  const apps = chosenApps();
  const modes: Mode[] = options.cluster
    ? ["cluster"]
    : options.quick
      ? ["embedded"]
      : ["embedded", "cluster"];
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const checks: Record<string, unknown> = {};
  const goals: Record<string, unknown>[] = [];
  progress(
    `apps: ${apps.map((a) => a.name).join(", ")}; ${modes.join(" then ")}; rates ${(options.quick ? RATES_QUICK : RATES_FULL).join(", ")} requests/s until saturated`,
  );
  await withTempDir("boki-bench-apps", async (dir) => {
    for (const mode of modes) {
      for (const app of apps) {
        const o = await runApp(app, mode, options, dir);
        rows.push(...o.rows);
        notes.push(...o.notes);
        Object.assign(checks, { [app.name]: { ...(checks[app.name] as object), ...o.checks } });
        goals.push(o.goal);
      }
    }
  });
  notes.push(
    "system under test: embedded = boki dev (2 worker threads, appends acknowledged after fsync); cluster = 3 sequencers, 3 storage nodes (replication 3, disk), 2 engines, 1 gateway, each its own process; safe and unsafe variants up at once, measured in turns; load generator: this process",
  );
  return { rows, notes, extra: { goals, invariants: checks } };
}

export const appsSuite: Suite = {
  name: "apps",
  description:
    "the example applications (travel, movie review, Retwis) at rising open-loop rates, safe beside unsafe",
  hasClusterMode: true,
  run,
};
