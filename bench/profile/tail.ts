/**
 * Where the append tail comes from: starts the benchmark cluster (memory durability),
 * runs closed-loop appends at one concurrency, keeps every append's start and end time,
 * and prints
 *  - the latency quantiles;
 *  - the longest gaps in which no append completed anywhere (a stall of the whole path);
 *  - how the slow appends (over --slow ms) fall on the phase of the periodic timers
 *    (completion time modulo 20, 50 and 100 ms): a flat spread means no timer is to blame.
 *
 *  - each engine's split of an append's time (from its metrics, as histogram bucket bounds):
 *    held in the engine until its batch left, then ordering (storage, cut, metalog commit);
 *  - the quantiles per 2 s of the window, which show a cluster still warming up (V8 compiles
 *    the hot paths in the first seconds of load; `--prewarm 10` loads it first).
 *
 *   npx tsx bench/profile/tail.ts [-c 64] [-s 6] [--slow 10] [--prewarm 10 --prewarm-concurrency 16]
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";
import { LOCAL_TOPOLOGY, startBokiCluster } from "../lib/boki-cluster.js";
import { parseBookId } from "../../src/log/types.js";

const opts = new Command()
  .option("-c, --concurrency <n>", "appends in flight", "64")
  .option("-p, --payload <bytes>", "payload bytes", "100")
  .option("-s, --seconds <n>", "measured seconds", "6")
  .option("--slow <ms>", "an append slower than this counts as slow", "10")
  .option("--durability <d>", "memory or disk", "memory")
  .option("--prewarm <s>", "seconds of load (then a 2 s pause) before the warm-up", "0")
  .option("--prewarm-concurrency <n>", "appends in flight during --prewarm (default: -c)")
  .parse()
  .opts<{
    concurrency: string;
    payload: string;
    seconds: string;
    slow: string;
    durability: string;
    prewarm: string;
    prewarmConcurrency?: string;
  }>();

const dir = mkdtempSync(join(tmpdir(), "boki-tail-"));
const c = await startBokiCluster({
  dir,
  durability: opts.durability as "memory" | "disk",
  ...LOCAL_TOPOLOGY,
  indexReplicas: Number(process.env.PROBE_INDEX_REPLICAS ?? 2),
  metrics: true,
  nodeArgs: () => [
    "--trace-gc",
    ...(process.env.TAIL_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""),
  ],
  keepLines: 100_000,
  say: (m) => process.stderr.write(m + "\n"),
});
try {
  const concurrency = Number(opts.concurrency);
  const data = new Uint8Array(Number(opts.payload)).fill(7);
  const handles = Array.from({ length: concurrency }, (_, w) =>
    c.client.book(parseBookId(1 + (w % 64)), { engine: w % c.engines.length }),
  );
  const readMetrics = async (): Promise<Map<string, Map<string, number>>> => {
    const out = new Map<string, Map<string, number>>();
    for (const node of c.config.nodes) {
      if (node.metricsPort === undefined) continue;
      const res = await fetch(`http://${node.host}:${node.metricsPort}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      const m = new Map<string, number>();
      for (const line of (await res.text()).split("\n")) {
        const r =
          /^(nodejs_gc_duration_seconds_(?:sum|count)\{kind="[a-z]+"\}|nodejs_eventloop_lag_max_seconds)\S* ([0-9.e+-]+)$/.exec(
            line,
          );
        if (r !== null) m.set(r[1]!, Number(r[2]));
        const b =
          /^boki_engine_append_(held|ordering)_seconds_bucket\{le="([^"]+)"\S* ([0-9.e+-]+)$/.exec(
            line,
          );
        if (b !== null) m.set(`${b[1]} ${b[2]}`, Number(b[3]));
      }
      out.set(node.id, m);
    }
    return out;
  };
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const gcPauses: number[] = [];
  const gcObs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcPauses.push(e.duration);
  });
  await new Promise((r) => setTimeout(r, 500));
  // An earlier load, then a pause: shows whether the cluster's warm-up is once per process.
  const prewarmEnd = performance.now() + Number(opts.prewarm) * 1000;
  if (prewarmEnd > performance.now()) {
    await Promise.all(
      handles.slice(0, Number(opts.prewarmConcurrency ?? handles.length)).map(async (h) => {
        while (performance.now() < prewarmEnd) await h.append([], data);
      }),
    );
    await new Promise((r) => setTimeout(r, 2000));
  }
  const warmEnd = performance.now() + 2000;
  let stagesBefore = new Map<string, Map<string, number>>();
  setTimeout(() => {
    loop.enable();
    gcObs.observe({ entryTypes: ["gc"] });
    void readMetrics().then((m) => (stagesBefore = m));
  }, 2000);
  const end = warmEnd + Number(opts.seconds) * 1000;
  const starts: number[] = [];
  const ends: number[] = [];
  const engineOf: number[] = [];
  await Promise.all(
    handles.map(async (h, w) => {
      for (;;) {
        const t0 = performance.now();
        await h.append([], data);
        const t1 = performance.now();
        if (t1 >= end) return;
        if (t1 >= warmEnd) {
          starts.push(t0);
          ends.push(t1);
          engineOf.push(w % c.engines.length);
        }
      }
    }),
  );
  loop.disable();
  gcObs.disconnect();
  const n = ends.length;
  const gcSorted = gcPauses.sort((a, b) => b - a);
  console.log(
    `client: event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} max ${(loop.max / 1e6).toFixed(1)} ms; ` +
      `${gcPauses.length} GC pauses, longest ${gcSorted
        .slice(0, 5)
        .map((x) => x.toFixed(1))
        .join(" ")} ms`,
  );
  for (const [id, p] of c.processes) {
    // --trace-gc lines: "[pid:addr]   1234 ms: Scavenge 10.1 (12.0) -> 9.8 (12.0) MB, 1.23 / 0.00 ms ..."
    const pauses: Array<[string, number]> = [];
    for (const line of p.output(100_000).split("\n")) {
      const r = /ms: (Scavenge|Mark-Compact|Mark-sweep)[^,]*, ([0-9.]+) \/ ([0-9.]+) ms/.exec(line);
      if (r !== null) pauses.push([r[1]!, Number(r[2])]);
    }
    pauses.sort((a, b) => b[1] - a[1]);
    if (process.env.TAIL_DUMP_GC === id) {
      for (const line of p.output(100_000).split("\n"))
        if (/ ms: [SM]/.test(line)) console.log(line.slice(0, 150));
    }
    const over = (ms: number): number => pauses.filter(([, x]) => x > ms).length;
    console.log(
      `  ${id.padEnd(12)} ${pauses.length} GCs (${over(5)} over 5 ms, ${over(10)} over 10 ms), ` +
        `longest: ${pauses
          .slice(0, 4)
          .map(([k, ms]) => `${k} ${ms}`)
          .join(", ")}`,
    );
  }
  const metricsAfter = await readMetrics();
  // The engines' own split of an append's time (their histograms over the window): waiting in
  // the engine for its batch to leave, then storage replicas + cut + metalog commit.
  for (const [id, m] of metricsAfter) {
    if (!id.startsWith("engine")) continue;
    const parts = (["held", "ordering"] as const).map((stage) => {
      const buckets = [...m]
        .filter(([k]) => k.startsWith(`${stage} `))
        .map(([k, v]) => {
          const le = k.slice(stage.length + 1);
          return {
            le: le === "+Inf" ? Infinity : Number(le),
            n: v - (stagesBefore.get(id)?.get(k) ?? 0),
          };
        })
        .sort((a, b) => a.le - b.le);
      const total = buckets.at(-1)?.n ?? 0;
      const at = (p: number): string => {
        const b = buckets.find((x) => x.n >= p * total);
        return b === undefined || total === 0
          ? "-"
          : b.le === Infinity
            ? ">1000"
            : `≤${(b.le * 1000).toString()}`;
      };
      return `${stage} p50 ${at(0.5)} p99 ${at(0.99)} ms`;
    });
    console.log(`  ${id.padEnd(12)} appends' stages in the engine: ${parts.join("; ")}`);
  }
  for (const [id, m] of metricsAfter) {
    const kinds = ["minor", "major", "incremental"].map((k) => {
      const sum = m.get(`nodejs_gc_duration_seconds_sum{kind="${k}"}`) ?? 0;
      const count = m.get(`nodejs_gc_duration_seconds_count{kind="${k}"}`) ?? 0;
      return `${k} ${count} (${((1000 * sum) / Math.max(count, 1)).toFixed(2)} ms avg)`;
    });
    console.log(
      `  ${id.padEnd(12)} loop lag max ${((m.get("nodejs_eventloop_lag_max_seconds") ?? 0) * 1000).toFixed(1)} ms; GC ${kinds.join(", ")}`,
    );
  }
  const lat = ends.map((e, i) => e - starts[i]!);
  const sorted = [...lat].sort((a, b) => a - b);
  const q = (p: number): string => sorted[Math.min(n - 1, Math.floor(p * n))]!.toFixed(2);
  console.log(
    `${n} appends, ${Math.round(n / Number(opts.seconds))}/s; p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} p99.9 ${q(0.999)} max ${q(1 - 1e-9)} ms`,
  );
  // The trend: quantiles per 2 s of the window, by completion time.
  const slices: string[] = [];
  for (let t = 0; t < Number(opts.seconds) * 1000; t += 2000) {
    const l = lat
      .filter((_, i) => ends[i]! - warmEnd >= t && ends[i]! - warmEnd < t + 2000)
      .sort((a, b) => a - b);
    if (l.length === 0) continue;
    slices.push(
      `${t / 1000}s: ${Math.round(l.length / 2)}/s p50 ${l[Math.floor(l.length / 2)]!.toFixed(1)} p99 ${l[Math.floor(l.length * 0.99)]!.toFixed(1)}`,
    );
  }
  console.log(`per 2 s: ${slices.join("; ")}`);
  for (let e = 0; e < c.engines.length; e++) {
    const l = lat.filter((_, i) => engineOf[i] === e).sort((a, b) => a - b);
    console.log(
      `  via engine ${e}: p50 ${l[Math.floor(l.length / 2)]!.toFixed(2)} p99 ${l[Math.floor(l.length * 0.99)]!.toFixed(2)}`,
    );
  }
  const byEnd = [...ends].sort((a, b) => a - b);
  const gaps: Array<[number, number]> = [];
  for (let i = 1; i < byEnd.length; i++)
    gaps.push([byEnd[i]! - byEnd[i - 1]!, byEnd[i - 1]! - warmEnd]);
  gaps.sort((a, b) => b[0] - a[0]);
  console.log(
    "longest gaps without a completion (ms @ time into window): " +
      gaps
        .slice(0, 12)
        .map(([g, t]) => `${g.toFixed(1)}@${t.toFixed(0)}`)
        .join(", "),
  );
  const slow = Number(opts.slow);
  const slowIdx = lat.map((l, i) => (l > slow ? i : -1)).filter((i) => i >= 0);
  console.log(
    `${slowIdx.length} appends over ${slow} ms (${((100 * slowIdx.length) / n).toFixed(2)}%)`,
  );
  for (const period of [20, 50, 100]) {
    const bins = new Array<number>(10).fill(0);
    for (const i of slowIdx) bins[Math.floor(((ends[i]! % period) / period) * 10)]!++;
    console.log(`  completion phase mod ${period} ms (10 bins): ${bins.join(" ")}`);
  }
  // Bursts: slow appends grouped by completion within 2 ms of each other.
  const slowEnds = slowIdx.map((i) => ends[i]!).sort((a, b) => a - b);
  const bursts: Array<{ at: number; count: number }> = [];
  for (const t of slowEnds) {
    const last = bursts.at(-1);
    if (last !== undefined && t - last.at < 2) last.count++;
    else bursts.push({ at: t, count: 1 });
  }
  const starts2 = bursts.map((b) => b.at);
  const intervals = starts2
    .slice(1)
    .map((t, i) => t - starts2[i]!)
    .sort((a, b) => a - b);
  console.log(
    `${bursts.length} bursts of slow completions; median burst ${[...bursts.map((b) => b.count)].sort((a, b) => a - b)[Math.floor(bursts.length / 2)] ?? 0}; ` +
      `interval between bursts p10/p50/p90 ${[0.1, 0.5, 0.9].map((p) => (intervals[Math.floor(p * intervals.length)] ?? 0).toFixed(1)).join("/")} ms`,
  );
} finally {
  await c.stop();
  rmSync(dir, { recursive: true, force: true });
}
