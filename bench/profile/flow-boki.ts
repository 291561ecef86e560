/**
 * The flow suite's Boki side by itself, for finding where a workflow's time goes: starts
 * `boki dev` on bench/functions/flow (as the suite does), loads one workload closed-loop at
 * one concurrency (warm-up, then a window), and prints ops/s, caller-side p50/p99, and the
 * CPU boki dev spent per operation split by thread (main thread, the two function workers,
 * libuv and V8 helper threads; from /proc/<pid>/task/<tid>/stat), plus this process's own
 * CPU per operation (the load generator).
 *
 * With --cpu-prof <dir>, boki dev runs under `node --cpu-prof --cpu-prof-dir <dir>`: each
 * thread (the main thread and every worker) writes a .cpuprofile there when boki dev exits
 * after SIGTERM; summarise one with `npx tsx bench/profile/summarize.ts <file> 30 <seconds>`.
 *
 *   npx tsx bench/profile/flow-boki.ts [-w workflow-3-steps|plain-3-inline|plain-3-invoke]
 *     [-c 64] [-s 10] [--warmup 5] [--cpu-prof /tmp/flow-prof]
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { threadCpu } from "../lib/boki-metrics.js";
import { join } from "node:path";
import { Command } from "commander";
import { Pool } from "undici";
import { cpuMs, cpuMsPerSec } from "../lib/proc-cpu.js";
import { progress } from "../lib/progress.js";
import { runClosedLoop } from "../lib/runner.js";
import { fmtMs } from "../lib/table.js";
import { withTempDir } from "../lib/tmpdir.js";
import {
  bokiRequest,
  BOKI_PATH,
  instanceIds,
  startGateway,
  type BokiWorkload,
} from "../suites/flow.js";

const opts = new Command()
  .option(
    "-w, --workload <name>",
    "workflow-3-steps, plain-3-inline or plain-3-invoke",
    "workflow-3-steps",
  )
  .option("-c, --concurrency <n>", "requests in flight", "64")
  .option("-s, --seconds <s>", "seconds measured", "10")
  .option("--warmup <s>", "seconds of load before the window", "5")
  .option("--cpu-prof <dir>", "run boki dev under node --cpu-prof, profiles written to <dir>")
  .option(
    "--path <path>",
    "another route for the workload's requests, e.g. /workflow/bench-flow3-short-retention",
  )
  .option("--idle <s>", "seconds of boki dev's idle CPU sampled before and after the load", "3")
  .option(
    "--states",
    "sample the state of boki dev's main thread every ms (running, waiting on disk, idle)",
  )
  .parse()
  .opts<{
    workload: string;
    concurrency: string;
    seconds: string;
    warmup: string;
    cpuProf?: string;
    states?: boolean;
    idle: string;
    path?: string;
  }>();

if (!(opts.workload in BOKI_PATH)) {
  throw new Error(
    `unknown workload ${opts.workload} (known: ${Object.keys(BOKI_PATH).join(", ")})`,
  );
}
const workload = opts.workload as BokiWorkload;
const concurrency = Number(opts.concurrency);
const measureMs = Number(opts.seconds) * 1000;
const warmupMs = Number(opts.warmup) * 1000;

for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

/** The scheduler state letter of thread `tid` of `pid` (R, S, D, ...), or "?" once it is gone. */
function threadState(pid: number, tid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return stat.charAt(stat.lastIndexOf(")") + 2);
  } catch {
    return "?";
  }
}

/** Samples the main thread's state every `everyMs` until stopped; returns the share of each. */
function sampleStates(pid: number, everyMs: number): () => Record<string, number> {
  const counts = new Map<string, number>();
  const timer = setInterval(() => {
    const s = threadState(pid, pid);
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }, everyMs);
  return () => {
    clearInterval(timer);
    const n = [...counts.values()].reduce((a, b) => a + b, 0);
    return Object.fromEntries([...counts].map(([k, v]) => [k, Math.round((v / n) * 1000) / 10]));
  };
}

/** Prometheus text of boki dev's /metrics. */
async function metrics(url: string): Promise<string> {
  const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return r.text();
}

/** A sample's value in Prometheus text (0 when absent). */
function sample(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Runs and time of the flow recovery task's functions, and log reads made by functions. */
function recoveryFigures(text: string): Record<string, number> {
  const out: Record<string, number> = { logReads: sample(text, "boki_log_reads_total", "") };
  for (const f of ["boki-flow.recover", "boki-flow.scan"]) {
    const l = `function="${f}",outcome="ok"`;
    out[`${f} runs`] = sample(text, "boki_invocation_duration_seconds_count", l);
    out[`${f} s`] = sample(text, "boki_invocation_duration_seconds_sum", l);
  }
  return out;
}

async function idleReport(what: string, url: string, pid: number, ms: number): Promise<void> {
  if (ms <= 0) return;
  const m0 = recoveryFigures(await metrics(url));
  const perSec = await cpuMsPerSec([pid], ms);
  const m1 = recoveryFigures(await metrics(url));
  const runs = m1["boki-flow.recover runs"]! - m0["boki-flow.recover runs"]!;
  const secs = m1["boki-flow.recover s"]! - m0["boki-flow.recover s"]!;
  const reads = m1["logReads"]! - m0["logReads"]!;
  console.log(
    `idle ${what}: boki dev uses ${perSec.toFixed(1)} ms of CPU per second; ` +
      `${runs} runs of boki-flow.recover (${runs === 0 ? "-" : ((secs / runs) * 1000).toFixed(1)} ms each), ` +
      `${Math.round((reads * 1000) / ms)} log reads/s by functions`,
  );
}

await withTempDir("boki-flow-probe", async (dir) => {
  const nodeArgs: string[] = [];
  if (opts.cpuProf !== undefined) {
    mkdirSync(opts.cpuProf, { recursive: true });
    nodeArgs.push("--cpu-prof", "--cpu-prof-dir", opts.cpuProf);
  }
  const gw = await startGateway(join(dir, "data"), { nodeArgs });
  const pid = gw.proc.pid!;
  progress(`boki dev up at ${gw.url} (pid ${pid}); ${workload} at c=${concurrency}`);
  const pool = new Pool(gw.url, { connections: concurrency });
  const nextId = instanceIds();
  const seqs: number[] = [];
  let ops = 0;
  const op = async (w: number): Promise<void> => {
    const s = seqs[w] ?? 0;
    seqs[w] = s + 1;
    await bokiRequest(pool, workload, s, nextId, opts.path ?? BOKI_PATH[workload]);
    ops++;
  };
  const idleMs = Number(opts.idle) * 1000;
  try {
    await idleReport("before the load", gw.url, pid, idleMs);
    progress(`warm-up ${warmupMs / 1000} s`);
    await runClosedLoop({ concurrency, warmupMs, measureMs: 0, op });
    const before = threadCpu(pid);
    const total0 = cpuMs([pid]);
    const self0 = process.cpuUsage();
    const ops0 = ops;
    const stopSampling = opts.states === true ? sampleStates(pid, 1) : undefined;
    const w = await runClosedLoop({ concurrency, warmupMs: 0, measureMs, op });
    const states = stopSampling?.();
    const done = ops - ops0;
    const self = process.cpuUsage(self0);
    const after = threadCpu(pid);
    const total = cpuMs([pid]) - total0;
    console.log(
      `${workload} c=${concurrency}: ${Math.round(w.opsPerSec)} ops/s, p50 ${fmtMs(w.latency.p50Ms)} ms, ` +
        `p99 ${fmtMs(w.latency.p99Ms)} ms, max ${fmtMs(w.latency.maxMs)} ms (${measureMs / 1000} s window)`,
    );
    console.log(
      `boki dev CPU: ${(total / done).toFixed(4)} ms per op (${((total / measureMs) * 100).toFixed(0)} % of one core); ` +
        `load generator: ${((self.user + self.system) / 1000 / done).toFixed(4)} ms per op`,
    );
    if (states !== undefined) {
      console.log(
        `boki dev main thread, % of 1 ms samples: ${Object.entries(states)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")} (R running or runnable, D waiting on disk, S sleeping)`,
      );
    }
    // Threads by name (two workers share the name), CPU ms per op, busiest first.
    const rowsOut = [...after.entries()]
      .map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const)
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1]);
    for (const [k, v] of rowsOut) {
      console.log(
        `  ${k.padEnd(24)} ${(v / done).toFixed(4)} ms/op  ${((v / measureMs) * 100).toFixed(0).padStart(3)} % of a core`,
      );
    }
    await idleReport(`after ${ops} requests`, gw.url, pid, idleMs);
  } finally {
    await pool.close();
    const s = await gw.proc.stop(15_000);
    progress(`boki dev stopped (${s.how})`);
    if (opts.cpuProf !== undefined) {
      progress(`profiles in ${opts.cpuProf}: ${readdirSync(opts.cpuProf).join(", ")}`);
    }
  }
});
