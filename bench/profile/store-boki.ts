/**
 * The store suite's Boki side by itself, for finding where a Retwis request's time goes:
 * starts `boki dev` on bench/functions/store (as the suite does), loads the dataset, runs the
 * mix closed-loop (warm-up, then a window), and prints throughput and latency per kind, the
 * CPU boki dev spent per request split by thread, and the log operations and invocations
 * per request (from /metrics).
 *
 * With --cpu-prof <dir>, boki dev runs under `node --cpu-prof --cpu-prof-dir <dir>` (each
 * thread writes a .cpuprofile there when it exits); summarise one with
 * `npx tsx bench/profile/summarize.ts <file> 30 <seconds>`.
 *
 *   npx tsx bench/profile/store-boki.ts [-c 64] [-s 10] [--warmup 8] [--cpu-prof /tmp/store-prof]
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { metrics, printPerUnit, threadCpu } from "../lib/boki-metrics.js";
import { progress } from "../lib/progress.js";
import { fmtMs } from "../lib/table.js";
import { withTempDir } from "../lib/tmpdir.js";
import { loadBoki, makeDataset, runMix, startBoki } from "../suites/store.js";

const opts = new Command()
  .option("-c, --concurrency <n>", "clients", "64")
  .option("-s, --seconds <s>", "seconds measured", "10")
  .option("--warmup <s>", "seconds of load before the window", "8")
  .option("--cpu-prof <dir>", "run boki dev under node --cpu-prof, profiles written to <dir>")
  .parse()
  .opts<{ concurrency: string; seconds: string; warmup: string; cpuProf?: string }>();

for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

await withTempDir("boki-store-probe", async (dir) => {
  const nodeArgs: string[] = [];
  if (opts.cpuProf !== undefined) {
    mkdirSync(opts.cpuProf, { recursive: true });
    nodeArgs.push("--cpu-prof", "--cpu-prof-dir", opts.cpuProf);
  }
  const t = await startBoki(join(dir, "data"), { nodeArgs });
  const pid = t.proc.pid!;
  try {
    progress(`boki dev up at ${t.url} (pid ${pid}); loading the dataset`);
    await loadBoki(t, makeDataset());
    const c = Number(opts.concurrency);
    progress(`warm-up ${opts.warmup} s`);
    await runMix(t, c, { warmupMs: Number(opts.warmup) * 1000, measureMs: 1 }, 3);
    const before = threadCpu(pid);
    const m0 = await metrics(t.url);
    const measureMs = Number(opts.seconds) * 1000;
    progress(`mix at c=${c}: ${measureMs / 1000} s`);
    const w = await runMix(t, c, { warmupMs: 0, measureMs }, 1);
    const after = threadCpu(pid);
    const m1 = await metrics(t.url);
    const n = Object.values(w.counts).reduce((a, b) => a + b, 0);
    console.log(
      `${Math.round(n / (measureMs / 1000))} requests/s; all p50 ${fmtMs(w.all.p50Ms)} p99 ${fmtMs(w.all.p99Ms)} ms; transactional p50 ${fmtMs(w.transactional.p50Ms)} ms`,
    );
    for (const [k, l] of Object.entries(w.byKind)) {
      console.log(
        `  ${k.padEnd(8)} ${String(l.count).padStart(6)}  p50 ${fmtMs(l.p50Ms)}  p99 ${fmtMs(l.p99Ms)} ms`,
      );
    }
    console.log(`post attempts ${w.postAttempts}, given up ${w.postsGivenUp}`);
    const sum = printPerUnit({
      unit: "request",
      count: n,
      windowMs: measureMs,
      metricsBefore: m0,
      metricsAfter: m1,
      cpuBefore: before,
      cpuAfter: after,
      threadsShown: 8,
    });
    console.log(
      `boki dev CPU ${(sum / n).toFixed(3)} ms/request (${((sum / measureMs) * 100).toFixed(0)} % of a core)`,
    );
  } finally {
    const st = await t.proc.stop(15_000);
    progress(`boki dev stopped (${st.how})`);
    if (opts.cpuProf !== undefined)
      progress(`profiles in ${opts.cpuProf}: ${readdirSync(opts.cpuProf).join(", ")}`);
  }
});
