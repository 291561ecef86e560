/**
 * The txn suite's Boki side by itself, for finding where a transfer's time goes: starts
 * `boki dev` on bench/functions/txn (as the suite does), loads the accounts, runs one YCSB-T
 * point closed-loop (warm-up, then a window), and prints throughput and latency per operation,
 * the outcome counts, the CPU boki dev spent per operation split by thread (from
 * /proc/<pid>/task/<tid>/stat) and the load generator's, and the balance check.
 *
 * With --cpu-prof <dir>, boki dev runs under `node --cpu-prof --cpu-prof-dir <dir>`: each
 * thread (the main thread and every worker) writes a .cpuprofile there when boki dev exits
 * after SIGTERM; summarise one with `npx tsx bench/profile/summarize.ts <file> 30 <seconds>`.
 *
 *   npx tsx bench/profile/txn-boki.ts [-k transaction|saga] [-m 45/45/10|0/0/100]
 *     [--keys 5000] [-d uniform|zipfian] [-c 64] [-s 10] [--warmup 5] [--cpu-prof /tmp/txn-prof]
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { metrics, printPerUnit, threadCpu } from "../lib/boki-metrics.js";
import { progress } from "../lib/progress.js";
import { fmtMs } from "../lib/table.js";
import { withTempDir } from "../lib/tmpdir.js";
import {
  checkBoki,
  DISTRIBUTIONS,
  loadBoki,
  MIXES,
  runYcsbt,
  startBoki,
  type Distribution,
  type Kind,
} from "../suites/txn.js";

const opts = new Command()
  .option("-k, --kind <kind>", "transaction or saga", "transaction")
  .option("-m, --mix <mix>", `one of ${MIXES.map((m) => m.name).join(", ")}`, "0/0/100")
  .option("--keys <n>", "100 or 5000", "5000")
  .option("-d, --distribution <d>", DISTRIBUTIONS.join(" or "), "uniform")
  .option("-c, --concurrency <n>", "requests in flight", "64")
  .option("-s, --seconds <s>", "seconds measured", "10")
  .option("--warmup <s>", "seconds of load before the window", "5")
  .option("--cpu-prof <dir>", "run boki dev under node --cpu-prof, profiles written to <dir>")
  .parse()
  .opts<{
    kind: string;
    mix: string;
    keys: string;
    distribution: string;
    concurrency: string;
    seconds: string;
    warmup: string;
    cpuProf?: string;
  }>();

const mix = MIXES.find((m) => m.name === opts.mix);
if (mix === undefined) throw new Error(`unknown mix ${opts.mix}`);
if (opts.kind !== "transaction" && opts.kind !== "saga")
  throw new Error(`kind is transaction or saga, not ${opts.kind}`);
if (!(DISTRIBUTIONS as readonly string[]).includes(opts.distribution))
  throw new Error(`unknown distribution ${opts.distribution}`);
const kind = opts.kind as Kind;
const point = {
  mix,
  keys: Number(opts.keys),
  distribution: opts.distribution as Distribution,
  concurrency: Number(opts.concurrency),
};

for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

await withTempDir("boki-txn-probe", async (dir) => {
  const nodeArgs: string[] = [];
  if (opts.cpuProf !== undefined) {
    mkdirSync(opts.cpuProf, { recursive: true });
    nodeArgs.push("--cpu-prof", "--cpu-prof-dir", opts.cpuProf);
  }
  const s = await startBoki(join(dir, "data"), { nodeArgs });
  const pid = s.proc.pid!;
  const target = { system: "boki" as const, kind, server: s, pids: () => [pid] };
  try {
    progress(`boki dev up at ${s.url} (pid ${pid}); loading accounts`);
    await loadBoki(s);
    const warmupMs = Number(opts.warmup) * 1000;
    progress(`warm-up ${warmupMs / 1000} s`);
    await runYcsbt(target, point, { warmupMs, measureMs: 1 }, 7);
    const before = threadCpu(pid);
    const m0 = await metrics(s.url);
    const measureMs = Number(opts.seconds) * 1000;
    progress(
      `${kind} ${mix.name} ${point.keys} keys ${point.distribution} c=${point.concurrency}: ${measureMs / 1000} s`,
    );
    const w = await runYcsbt(target, point, { warmupMs: 0, measureMs }, 1);
    const after = threadCpu(pid);
    const m1 = await metrics(s.url);
    const ops = w.counts.read + w.counts.update + w.counts.transfer;
    console.log(
      `${Math.round(ops / (measureMs / 1000))} ops/s (${Math.round(w.counts.transfer / (measureMs / 1000))} transfers/s); ` +
        `all p50 ${fmtMs(w.all.p50Ms)} p99 ${fmtMs(w.all.p99Ms)} max ${fmtMs(w.all.maxMs)} ms`,
    );
    for (const k of ["read", "update", "transfer"] as const) {
      const l = w.byOp[k];
      if (l.count === 0) continue;
      console.log(
        `  ${k.padEnd(8)} ${String(l.count).padStart(6)}  p50 ${fmtMs(l.p50Ms)}  p99 ${fmtMs(l.p99Ms)}  max ${fmtMs(l.maxMs)} ms`,
      );
    }
    console.log(
      `aborts ${JSON.stringify(w.abortsByCode)}, wait-die deaths ${w.deadlocks}, retries ${w.retries}, failed requests ${w.failedRequests}${w.failedSample === undefined ? "" : ` (${w.failedSample})`}`,
    );
    console.log(
      `boki dev CPU ${(w.serverCpuMs / ops).toFixed(3)} ms/op (${((w.serverCpuMs / measureMs) * 100).toFixed(0)} % of a core); ` +
        `load generator ${(w.loadGeneratorCpuMs / ops).toFixed(3)} ms/op`,
    );
    printPerUnit({
      unit: "op",
      count: ops,
      windowMs: measureMs,
      metricsBefore: m0,
      metricsAfter: m1,
      cpuBefore: before,
      cpuAfter: after,
    });
    const c = await checkBoki(s, point.keys);
    console.log(`balance check: ${JSON.stringify(c)}`);
  } finally {
    const st = await s.proc.stop(15_000);
    progress(`boki dev stopped (${st.how})`);
    if (opts.cpuProf !== undefined)
      progress(`profiles in ${opts.cpuProf}: ${readdirSync(opts.cpuProf).join(", ")}`);
  }
});
