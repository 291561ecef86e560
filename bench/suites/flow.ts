/**
 * Suite "flow": durable 3-step workflows (boki-ts/flow) through the HTTP gateway of `boki dev`,
 * beside the same three computations without any logging, and beside the workflow peers
 * Restate and DBOS, all in the same run.
 *
 * The work, on every system: a workflow of three durable steps, step k returning
 * `{ k, v: input.v + k }`, the workflow returning the last step's value, started with input
 * `{ v: seq }` under a fresh instance id and waited for; the client checks the output.
 *
 *  - boki embedded, workflow-3-steps: `bin/boki.js dev` as its own process (2 worker threads,
 *    the embedded log acknowledging appends after fsync) serving bench/functions/flow;
 *    `POST /workflow/bench-flow3` with a fresh `X-Boki-Workflow-Id` (a random run tag and a
 *    counter, so unique across runs) and body `{ "v": seq }`. Five log records per instance,
 *    each a conditional append acknowledged after fsync: start, three steps, end.
 *  - boki embedded, plain-3-inline: `POST /function/bench-plain3-inline`, the three
 *    computations in one plain handler; no log record.
 *  - boki embedded, plain-3-invoke: `POST /function/bench-plain3-invoke`, a plain function
 *    calling the plain step function bench-flow-step three times with `ctx.invoke`; no log
 *    record.
 *  - restate and dbos (bench/lib/peers/restate.ts, dbos.ts): their `runWorkflow`.
 *
 * The load generator is this process: C closed-loop clients (C = 1, 16, 64) over undici
 * Pools of keep-alive connections, latency measured around each request. All systems are up
 * for the whole run; at each concurrency they are measured in turns (every system's run 1,
 * then every system's run 2, ...; `runMeasurements`' interleave), the median run reported,
 * so that a drift of this shared machine's speed meets all of them alike. The systems not
 * being measured are idle (boki dev's idle cost, its recovery task and GC, is recorded; it
 * grows with the instances kept in the log, and it runs beside the peers' turns).
 *
 * The results file has, besides the rows: `durability` (each system's), `ratios` (per
 * concurrency: Boki's workflow against each peer and the best one, per paired run too, and
 * against the plain calls), `goals` (the ratios at c=64 against their targets), `boki`
 * (idle CPU, instances started), `peers` (versions, notes). Each row has runP50Ms beside
 * runOpsPerSec, and serverCpuMsPerOp (boki dev, all threads) and loadGeneratorCpuMsPerOp.
 *
 *   npm run bench -- flow              # 5 runs of 1 s + 5 s in turns at each point (~8.5 min)
 *   npm run bench -- flow --quick      # 1 run of 0.3 s + 1.5 s (~40 s)
 *   npm run bench -- flow --no-peers   # Boki's rows only
 *
 * Probes: bench/profile/flow-boki.ts (one Boki workload alone: CPU per thread, a CPU
 * profile, idle cost), bench/profile/flow-append-path.ts (WAL writes and loop turns per
 * append of the embedded log), bench/profile/flow-peers.ts (the peers alone).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { round, runMeasurements, type Measurement, type Phases } from "../lib/measure.js";
import { startDbosPeer } from "../lib/peers/dbos.js";
import type { ManagedProcess } from "../lib/peers/proc.js";
import { startRestatePeer, type WorkflowPeer } from "../lib/peers/restate.js";
import { cpuMs, cpuMsPerSec } from "../lib/proc-cpu.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { runClosedLoop, type WindowResult } from "../lib/runner.js";
import type { Skipped, Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";
import { checkOutput } from "../peers/flow/workflow-peer.js";

export const CONCURRENCY = [1, 16, 64] as const;
/** Where the ratios against the goals are taken. */
const GOAL_CONCURRENCY = 64;
export const WORKERS = 2;
/** Longest one request may take before the measurement fails. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Bytes of a failed response's body quoted in the error. */
const ERROR_BODY_CHARS_MAX = 300;

/**
 * Full: 1 s warm-up + 5 s window per run, 5 runs in turns, the median run reported. Quick:
 * the log suite's quick windows (0.3 s + 1.5 s, one run): 15 measurements, the three
 * systems' starts (in parallel) and their first warm-ups fit in 60 s.
 */
const FULL: Phases = { warmupMs: 1000, measureMs: 5000, runs: 5 };
const QUICK: Phases = { warmupMs: 300, measureMs: 1500, runs: 1 };

/**
 * Load each system takes after its start before the first measurement, at 64 in flight: a
 * fresh Node process runs slowly while V8 compiles its hot paths.
 */
const FIRST_WARMUP_MS = { workflow: 10_000, plain: 3_000, peer: 5_000 } as const;
const FIRST_WARMUP_MS_QUICK = { workflow: 1_200, plain: 400, peer: 800 } as const;
const FIRST_WARMUP_CONCURRENCY = 64;
/** How long boki dev's idle CPU is sampled after its warm-up. */
const IDLE_SAMPLE_MS = { full: 3000, quick: 1000 } as const;

export const FUNCTIONS = fileURLToPath(new URL("../functions/flow", import.meta.url));

export type BokiWorkload = "workflow-3-steps" | "plain-3-inline" | "plain-3-invoke";
const WORKFLOW = "workflow-3-steps";
export const BOKI_PATH: Record<BokiWorkload, string> = {
  "workflow-3-steps": "/workflow/bench-flow3",
  "plain-3-inline": "/function/bench-plain3-inline",
  "plain-3-invoke": "/function/bench-plain3-invoke",
};
const BOKI_WORKLOADS: readonly BokiWorkload[] = [
  "workflow-3-steps",
  "plain-3-inline",
  "plain-3-invoke",
];

const BOKI_DURABILITY =
  "one node (boki dev, embedded log): a workflow's start, each step's result and its end are " +
  "five conditional appends on the instance's step stream, each acknowledged after its WAL " +
  "group write (O_DSYNC) returned; a step's function runs after the previous record is " +
  "acknowledged, the HTTP answer after the end record is; the plain baselines log nothing";

export interface Gateway {
  readonly url: string;
  readonly proc: ManagedProcess;
}

/**
 * Starts `boki dev` on bench/functions/flow in its own process (`nodeArgs` go before the
 * script, e.g. `--cpu-prof`); resolves once /healthz answers.
 */
export async function startGateway(
  dataDir: string,
  o: { nodeArgs?: readonly string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<Gateway> {
  return startBokiDev({
    functions: FUNCTIONS,
    dataDir,
    workers: WORKERS,
    ...(o.nodeArgs === undefined ? {} : { nodeArgs: o.nodeArgs }),
    ...(o.env === undefined ? {} : { env: o.env }),
  });
}

/** A fresh instance id per call: a random run tag and a counter. */
export function instanceIds(): () => string {
  const tag = `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
  let n = 0;
  return () => `bench-${tag}-${n++}`;
}

/**
 * One request of `workload` with input `{ v: seq }` to boki dev; rejects unless the answer
 * is 200 with the expected output (and, for the workflow, status "succeeded").
 */
export async function bokiRequest(
  pool: Pool,
  workload: BokiWorkload,
  seq: number,
  nextId: () => string,
  path: string = BOKI_PATH[workload],
): Promise<void> {
  const workflow = workload === WORKFLOW;
  const id = workflow ? nextId() : undefined;
  const r = await pool.request({
    path,
    method: "POST",
    body: JSON.stringify({ v: seq }),
    headers:
      id === undefined
        ? { "content-type": "application/json" }
        : { "content-type": "application/json", "x-boki-workflow-id": id },
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const text = await r.body.text();
  if (r.statusCode !== 200) {
    throw new Error(
      `HTTP ${r.statusCode} from ${path}${id === undefined ? "" : ` (${id})`}: ${text.slice(0, ERROR_BODY_CHARS_MAX)}`,
    );
  }
  if (workflow && r.headers["x-boki-workflow-status"] !== "succeeded") {
    throw new Error(
      `workflow ${id}: status ${String(r.headers["x-boki-workflow-status"])}, expected succeeded`,
    );
  }
  checkOutput(`boki ${workload}`, id ?? "-", seq, JSON.parse(text) as unknown);
}

/** One system and workload the suite measures. */
interface Target {
  readonly system: string;
  readonly mode: string;
  readonly workload: string;
  readonly durability: string;
  /** Runs a closed loop against the target. */
  readonly load: (
    concurrency: number,
    phases: Pick<Phases, "warmupMs" | "measureMs">,
    onProgress?: Parameters<typeof runClosedLoop>[0]["onProgress"],
  ) => Promise<{ window: WindowResult; extras: Record<string, unknown> }>;
}

/** Each worker's next `seq` (the input's v), kept across a target's measurements. */
function seqCounter(): (worker: number) => number {
  const next: number[] = [];
  return (w) => {
    const s = next[w] ?? 0;
    next[w] = s + 1;
    return s;
  };
}

/**
 * What the load generator and boki dev spent per completed operation over a whole
 * measurement (warm-up and window): CPU ms per op, of this process and of boki dev (all its
 * threads), so that the rows show where the machine's two cores went.
 */
async function withCpu(
  pid: number | undefined,
  run: (count: () => void) => Promise<WindowResult>,
): Promise<{ window: WindowResult; extras: Record<string, unknown> }> {
  let ops = 0;
  const self0 = process.cpuUsage();
  const sys0 = pid === undefined ? 0 : cpuMs([pid]);
  const window = await run(() => ops++);
  const self = process.cpuUsage(self0);
  const extras: Record<string, unknown> = {
    loadGeneratorCpuMsPerOp: round((self.user + self.system) / 1000 / Math.max(1, ops), 4),
  };
  if (pid !== undefined)
    extras["serverCpuMsPerOp"] = round((cpuMs([pid]) - sys0) / Math.max(1, ops), 4);
  return { window, extras };
}

function bokiTarget(
  gateway: () => Gateway,
  workload: BokiWorkload,
  onDone: () => void = () => undefined,
): Target {
  const nextSeq = seqCounter();
  const nextId = instanceIds();
  return {
    system: "boki",
    mode: "embedded",
    workload,
    durability:
      workload === WORKFLOW
        ? BOKI_DURABILITY
        : "nothing logged: the gateway invokes the plain function and answers its output",
    load: async (concurrency, phases, onProgress) => {
      const g = gateway();
      const pool = new Pool(g.url, { connections: concurrency });
      try {
        return await withCpu(g.proc.pid, (count) =>
          runClosedLoop({
            concurrency,
            ...phases,
            op: async (w) => {
              await bokiRequest(pool, workload, nextSeq(w), nextId);
              count();
              onDone();
            },
            ...(onProgress === undefined ? {} : { onProgress }),
          }),
        );
      } finally {
        await pool.close();
      }
    },
  };
}

function peerTarget(peer: WorkflowPeer): Target {
  const nextSeq = seqCounter();
  return {
    system: peer.system,
    mode: peer.mode,
    workload: WORKFLOW,
    durability: peer.durability,
    load: (concurrency, phases, onProgress) =>
      withCpu(undefined, (count) =>
        runClosedLoop({
          concurrency,
          ...phases,
          op: async (w) => {
            const seq = nextSeq(w);
            const out = await peer.runWorkflow(w, seq);
            // runWorkflow checks the output itself; this guards against a peer that does not.
            checkOutput(peer.system, "-", seq, out);
            count();
          },
          ...(onProgress === undefined ? {} : { onProgress }),
        }),
      ),
  };
}

const targetName = (t: Target): string =>
  t.system === "boki" ? `boki ${t.workload}` : `${t.system} ${t.mode}`;
/** The name of the target a row was measured on (as `targetName`). */
const rowTarget = (r: ResultRow): string =>
  r.system === "boki" ? `boki ${r.workload}` : `${r.system} ${r.mode}`;

/** The input's JSON bytes, `{"v":seq}`, for seq up to about ten thousand. */
const PAYLOAD_BYTES = Buffer.byteLength(JSON.stringify({ v: 1000 }));

/** Every run's window of each target at each concurrency, for paired ratios. */
type RunLog = Map<string, WindowResult[]>;

function measurementOf(t: Target, c: number, others: readonly string[], log: RunLog): Measurement {
  const key = `${targetName(t)}/${c}`;
  return {
    label: `${targetName(t)} c=${c}`,
    run: async (phases, onProgress) => {
      const { window, extras } = await t.load(c, phases, onProgress);
      const runs = log.get(key) ?? [];
      runs.push(window);
      log.set(key, runs);
      return {
        window,
        row: {
          system: t.system,
          mode: t.mode,
          workload: t.workload,
          concurrency: c,
          payloadBytes: PAYLOAD_BYTES,
        },
        extras: {
          durability: t.durability,
          ...extras,
          ...(others.length === 0 ? {} : { measuredInTurnsWith: others }),
        },
      };
    },
  };
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Ratios of row a to row b: throughput and p50, and per paired run when both have runs. */
function ratio(
  a: ResultRow,
  b: ResultRow,
  log: RunLog,
): { opsRatio: number; p50Ratio: number; runOpsRatios: number[]; runP50Ratios: number[] } {
  const runsOf = (r: ResultRow): WindowResult[] =>
    log.get(`${rowTarget(r)}/${r.concurrency}`) ?? [];
  const ra = runsOf(a);
  const rb = runsOf(b);
  const n = Math.min(ra.length, rb.length);
  return {
    opsRatio: round(a.opsPerSec / b.opsPerSec, 3),
    p50Ratio: round(a.p50Ms / b.p50Ms, 4),
    runOpsRatios: Array.from({ length: n }, (_, i) =>
      round(ra[i]!.opsPerSec / rb[i]!.opsPerSec, 3),
    ),
    runP50Ratios: Array.from({ length: n }, (_, i) =>
      round(ra[i]!.latency.p50Ms / rb[i]!.latency.p50Ms, 4),
    ),
  };
}

/** The ratios the results file reports at each concurrency, and the goals at c=64. */
function comparisons(
  rows: readonly ResultRow[],
  log: RunLog,
): { ratios: Record<string, unknown>; goals: Record<string, unknown>; notes: string[] } {
  const ratios: Record<string, unknown> = {};
  const notes: string[] = [];
  let goals: Record<string, unknown> = {};
  for (const c of CONCURRENCY) {
    const at = rows.filter((r) => r.concurrency === c);
    const flow = at.find((r) => r.system === "boki" && r.workload === WORKFLOW);
    if (flow === undefined) continue;
    const inline = at.find((r) => r.system === "boki" && r.workload === "plain-3-inline");
    const invoke = at.find((r) => r.system === "boki" && r.workload === "plain-3-invoke");
    const peers = at.filter((r) => r.system !== "boki");
    const bestOps = [...peers].sort((x, y) => y.opsPerSec - x.opsPerSec)[0];
    const bestP50 = [...peers].sort((x, y) => x.p50Ms - y.p50Ms)[0];
    const here: Record<string, unknown> = {};
    if (bestOps !== undefined && bestP50 !== undefined) {
      const o = ratio(flow, bestOps, log);
      const p = ratio(flow, bestP50, log);
      here["bokiOverBestPeerOps"] = {
        peer: bestOps.system,
        ratio: o.opsRatio,
        runRatios: o.runOpsRatios,
      };
      here["bokiOverBestPeerP50"] = {
        peer: bestP50.system,
        ratio: p.p50Ratio,
        runRatios: p.runP50Ratios,
      };
      for (const peer of peers) {
        const r = ratio(flow, peer, log);
        here[`over-${peer.system}`] = r;
      }
    }
    if (invoke !== undefined) here["flowP50OverPlainInvokeP50"] = ratio(flow, invoke, log).p50Ratio;
    if (inline !== undefined) here["flowP50OverPlainInlineP50"] = ratio(flow, inline, log).p50Ratio;
    if (invoke !== undefined) here["flowOpsOverPlainInvokeOps"] = ratio(flow, invoke, log).opsRatio;
    if (inline !== undefined) here["flowOpsOverPlainInlineOps"] = ratio(flow, inline, log).opsRatio;
    ratios[`c${c}`] = here;
    if (c !== GOAL_CONCURRENCY) continue;
    const g = (value: unknown, target: string, met: boolean | undefined): unknown =>
      value === undefined ? { target, value: null, met: null } : { target, value, met };
    const ops = here["bokiOverBestPeerOps"] as { ratio: number; peer: string } | undefined;
    const p50 = here["bokiOverBestPeerP50"] as { ratio: number; peer: string } | undefined;
    const vInvoke = here["flowP50OverPlainInvokeP50"] as number | undefined;
    const vInline = here["flowP50OverPlainInlineP50"] as number | undefined;
    goals = {
      concurrency: c,
      bokiOverBestPeerOps: g(ops?.ratio, ">= 10", ops === undefined ? undefined : ops.ratio >= 10),
      bokiOverBestPeerP50: g(
        p50?.ratio,
        "<= 0.1",
        p50 === undefined ? undefined : p50.ratio <= 0.1,
      ),
      flowP50OverPlainInvokeP50: g(
        vInvoke,
        "<= 2",
        vInvoke === undefined ? undefined : vInvoke <= 2,
      ),
      flowP50OverPlainInlineP50: g(
        vInline,
        "<= 2",
        vInline === undefined ? undefined : vInline <= 2,
      ),
    };
    const fmt = (x: number | undefined, digits: number): string =>
      x === undefined ? "no figure" : `${x.toFixed(digits)}x`;
    const verdict = (met: boolean | undefined): string =>
      met === undefined ? "" : met ? " (goal met)" : " (goal missed)";
    notes.push(
      `c=${c}: boki workflow-3-steps ops/s over the best peer's (${ops?.peer ?? "-"}): ${fmt(ops?.ratio, 2)}, goal >= 10x${verdict(ops === undefined ? undefined : ops.ratio >= 10)}`,
      `c=${c}: boki workflow-3-steps p50 over the best peer's (${p50?.peer ?? "-"}): ${fmt(p50?.ratio, 3)}, goal <= 0.1x${verdict(p50 === undefined ? undefined : p50.ratio <= 0.1)}`,
      `c=${c}: workflow-3-steps p50 over plain-3-invoke's: ${fmt(vInvoke, 2)}, goal <= 2x${verdict(vInvoke === undefined ? undefined : vInvoke <= 2)}`,
      `c=${c}: workflow-3-steps p50 over plain-3-inline's: ${fmt(vInline, 2)}, goal <= 2x${verdict(vInline === undefined ? undefined : vInline <= 2)}`,
    );
  }
  return { ratios, goals, notes };
}

/** Load a freshly started target takes before its first measurement (not measured). */
async function firstWarmUp(t: Target, ms: number): Promise<void> {
  progress(
    `flow: warming up ${targetName(t)}, ${ms / 1000} s at ${FIRST_WARMUP_CONCURRENCY} in flight`,
  );
  const r = await t.load(FIRST_WARMUP_CONCURRENCY, { warmupMs: ms, measureMs: 100 });
  progress(
    `flow: ${targetName(t)} warm (${Math.round(r.window.opsPerSec).toLocaleString("en-US")} ops/s at the end)`,
  );
}

async function runFlow(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK : FULL;
  const warm = options.quick ? FIRST_WARMUP_MS_QUICK : FIRST_WARMUP_MS;
  const rows: ResultRow[] = [];
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const peersInfo: Record<string, unknown> = {};
  const log: RunLog = new Map();
  let bokiInfo: Record<string, unknown> = {};

  await withTempDir("boki-bench-flow", async (dir) => {
    progress(
      `flow: starting boki dev${options.peers ? ", restate and dbos" : " (peers skipped: --no-peers)"}`,
    );
    if (!options.peers) skipped.push({ system: "*", mode: "*", reason: "--no-peers" });
    const t0 = Date.now();
    const gatewayStart = startGateway(join(dir, "data"));
    const peerStarts = options.peers
      ? [startRestatePeer({ progress }), startDbosPeer({ progress })]
      : [];
    const started = await Promise.allSettled([gatewayStart, ...peerStarts]);
    const peers: WorkflowPeer[] = [];
    for (const [i, s] of started.entries()) {
      if (i === 0) continue;
      // The peers' starters never throw; they say why they cannot run.
      const p =
        s.status === "fulfilled" ? (s.value as WorkflowPeer | { skipped: string }) : undefined;
      if (p === undefined) {
        skipped.push({
          system: i === 1 ? "restate" : "dbos",
          mode: "*",
          reason: errText((s as PromiseRejectedResult).reason),
        });
      } else if ("skipped" in p) {
        const system = p.skipped.split(":")[0] ?? "peer";
        skipped.push({ system, mode: "*", reason: p.skipped });
        progress(`flow: skipping ${system}: ${p.skipped}`);
      } else peers.push(p);
    }
    const stopAll = async (gw: Gateway | undefined): Promise<void> => {
      for (const p of peers) await p.stop().catch(() => undefined);
      if (gw !== undefined) {
        const s = await gw.proc.stop();
        bokiInfo["stopped"] = s.how;
      }
    };
    const first = started[0];
    if (first.status === "rejected") {
      await stopAll(undefined);
      throw first.reason;
    }
    const gateway = first.value;
    progress(
      `flow: all up in ${((Date.now() - t0) / 1000).toFixed(1)} s; boki dev at ${gateway.url}`,
    );
    bokiInfo = {
      via: "http gateway (boki dev process, its own Node process), undici keep-alive",
      workers: WORKERS,
      pid: gateway.proc.pid,
      durability: BOKI_DURABILITY,
    };
    for (const p of peers) {
      peersInfo[p.system] = {
        mode: p.mode,
        version: p.version,
        durability: p.durability,
        notes: p.notes,
      };
    }

    try {
      // Every instance's start and end stay in the log for its retention (a day), and the
      // recovery task reads them: the count says how many there were by the end.
      let workflows = 0;
      const boki = BOKI_WORKLOADS.map((w) =>
        bokiTarget(
          () => gateway,
          w,
          w === WORKFLOW
            ? () => {
                workflows++;
              }
            : undefined,
        ),
      );
      const idleCpu = async (when: string): Promise<void> => {
        const pid = gateway.proc.pid;
        if (pid === undefined) return;
        const ms = options.quick ? IDLE_SAMPLE_MS.quick : IDLE_SAMPLE_MS.full;
        const idle = round(await cpuMsPerSec([pid], ms), 1);
        bokiInfo[`idleCpuMsPerSec${when}`] = idle;
        bokiInfo[`workflowsStarted${when}`] = workflows;
        progress(
          `flow: boki dev idle ${when === "AfterWarmup" ? "after the warm-up" : "at the end"} (${workflows} workflow instances in the log) uses ${idle} ms of CPU per second`,
        );
      };
      let live: Target[] = [...boki, ...peers.map(peerTarget)];
      for (const t of live) {
        await firstWarmUp(
          t,
          t.system !== "boki" ? warm.peer : t.workload === WORKFLOW ? warm.workflow : warm.plain,
        );
      }
      await idleCpu("AfterWarmup");
      const total = CONCURRENCY.length * live.length;
      let offset = 0;
      for (const c of CONCURRENCY) {
        for (;;) {
          const names = live.map(targetName);
          const failedPeer: { t?: Target; err?: unknown } = {};
          const list = live.map((t) => {
            const m = measurementOf(
              t,
              c,
              names.filter((n) => n !== targetName(t)),
              log,
            );
            if (t.system === "boki") return m;
            return {
              label: m.label,
              run: async (ph: Phases, onProgress?: Parameters<Measurement["run"]>[1]) => {
                try {
                  return await m.run(ph, onProgress);
                } catch (err) {
                  failedPeer.t = t;
                  failedPeer.err = err;
                  throw err;
                }
              },
            } satisfies Measurement;
          });
          try {
            await runMeasurements(list, {
              phases,
              quick: options.quick,
              tag: `c=${c}`,
              progress,
              into: rows,
              numbering: { offset, total },
              interleave: true,
            });
            offset += list.length;
            break;
          } catch (err) {
            if (!gateway.proc.running) {
              throw new Error(
                `boki dev exited (${JSON.stringify(gateway.proc.exit)}): ${errText(err)}`,
                { cause: err },
              );
            }
            const t = failedPeer.t;
            if (t === undefined) throw err;
            // A peer that fails is dropped from the rest of the run; the point is measured again
            // without it (runs in turns push their rows only once every run is done).
            const reason = `${targetName(t)} failed at c=${c}: ${errText(failedPeer.err)}`;
            progress(`flow: ${reason}; going on without it`);
            skipped.push({ system: t.system, mode: t.mode, reason });
            live = live.filter((x) => x !== t);
            for (const l of log.keys()) if (l.endsWith(`/${c}`)) log.delete(l);
          }
        }
      }
      await idleCpu("AtEnd");
    } catch (err) {
      throw new Error(`${errText(err)}\nboki dev output:\n${gateway.proc.output(20)}`, {
        cause: err,
      });
    } finally {
      await stopAll(gateway);
    }
  });

  // Each run's p50 beside runOpsPerSec and runP99Ms (known only once every run is done).
  for (const [i, r] of rows.entries()) {
    const runs = log.get(`${rowTarget(r)}/${r.concurrency}`) ?? [];
    rows[i] = { ...r, runP50Ms: runs.map((w) => round(w.latency.p50Ms, 3)) };
  }
  const cmp = comparisons(rows, log);
  notes.push(
    `load generator: this process (undici Pool, keep-alive), C closed-loop clients; every system on this machine (${WORKERS} cores shared); runs in turns at each concurrency, median of ${phases.runs} run(s) of ${phases.warmupMs / 1000} s + ${phases.measureMs / 1000} s`,
    `boki: boki dev (${WORKERS} worker threads, embedded log, fsync per append, one node) in its own process`,
    ...(bokiInfo["idleCpuMsPerSecAtEnd"] === undefined
      ? []
      : [
          `boki dev idle (nothing measured, its background tasks only): ${Number(bokiInfo["idleCpuMsPerSecAfterWarmup"])} ms of CPU per second after the warm-up (${Number(bokiInfo["workflowsStartedAfterWarmup"])} workflow instances in the log), ${Number(bokiInfo["idleCpuMsPerSecAtEnd"])} ms/s at the end (${Number(bokiInfo["workflowsStartedAtEnd"])})`,
        ]),
    ...Object.entries(peersInfo).map(
      ([name, p]) =>
        `${name}: ${(p as { version: string }).version} (${(p as { mode: string }).mode})`,
    ),
    ...cmp.notes,
  );
  return {
    rows,
    skipped,
    notes,
    extra: {
      durability: {
        boki: BOKI_DURABILITY,
        ...Object.fromEntries(
          Object.entries(peersInfo).map(([k, v]) => [k, (v as { durability: string }).durability]),
        ),
      },
      ratios: cmp.ratios,
      goals: cmp.goals,
      boki: bokiInfo,
      peers: peersInfo,
      phases: { ...phases, firstWarmupMs: warm, firstWarmupConcurrency: FIRST_WARMUP_CONCURRENCY },
    },
  };
}

export const flowSuite: Suite = {
  name: "flow",
  description:
    "durable 3-step workflows through boki dev's gateway vs plain calls, Restate and DBOS",
  run: runFlow,
};
