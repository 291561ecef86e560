/**
 * Where the local cluster's CPU goes: starts the benchmark cluster (memory durability),
 * runs closed-loop appends at one concurrency and prints, per node process and for this
 * client process, the CPU milliseconds spent per append during the window.
 *
 *   npx tsx bench/profile/cluster-cpu.ts [-c 64] [-p 100] [-s 6]
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_TOPOLOGY, startBokiCluster } from "../lib/boki-cluster.js";
import { cpuMs, cpuSplitMs } from "../lib/proc-cpu.js";
import { runClosedLoop } from "../lib/runner.js";
import { parseBookId } from "../../src/log/types.js";

const opts = new Command()
  .option("-c, --concurrency <n>", "appends in flight", "64")
  .option("-p, --payload <bytes>", "payload bytes", "100")
  .option("-s, --seconds <n>", "measured seconds", "6")
  .option("--durability <d>", "memory or disk", "memory")
  .option("--logs <n>", "physical logs", "1")
  .option("--cut <ms>", "the sequencers' cut interval")
  .option("--prof-dir <dir>", "write a V8 CPU profile of every node process into <dir>")
  .parse()
  .opts<{
    concurrency: string;
    payload: string;
    seconds: string;
    durability: string;
    profDir?: string;
    cut?: string;
    logs: string;
  }>();

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const dir = mkdtempSync(join(tmpdir(), "boki-cpu-"));
const c = await startBokiCluster({
  dir,
  durability: opts.durability as "memory" | "disk",
  ...LOCAL_TOPOLOGY,
  physicalLogs: Number(opts.logs),
  indexReplicas: Number(process.env.PROBE_INDEX_REPLICAS ?? 2),
  metrics: process.env.PROBE_METRICS !== "0",
  ...(opts.cut === undefined ? {} : { cutIntervalMs: Number(opts.cut) }),
  say: (m) => process.stderr.write(m + "\n"),
  ...(opts.profDir === undefined
    ? {}
    : { nodeArgs: (id: string) => ["--cpu-prof", `--cpu-prof-dir=${opts.profDir}/${id}`] }),
});
try {
  {
    // The idle cluster's own CPU use (timers, heartbeats), for comparison.
    await new Promise((r) => setTimeout(r, 1000));
    const idle0 = new Map([...c.processes].map(([id, p]) => [id, cpuMs([p.pid!])]));
    await new Promise((r) => setTimeout(r, 3000));
    const idle = [...c.processes].map(
      ([id, p]) => `${id} ${((cpuMs([p.pid!]) - idle0.get(id)!) / 3).toFixed(0)}`,
    );
    console.log(`idle CPU ms per second: ${idle.join(", ")}`);
  }
  const concurrency = Number(opts.concurrency);
  const data = new Uint8Array(Number(opts.payload)).fill(7);
  const handles = Array.from({ length: concurrency }, (_, w) =>
    c.client.book(parseBookId(1 + (w % 64)), { engine: w % c.engines.length }),
  );
  const warm = await runClosedLoop({
    concurrency,
    warmupMs: 0,
    measureMs: 2000,
    op: (w) => handles[w]!.append([], data),
  });
  void warm;
  /** Transport counters of every node, from its metrics endpoint. */
  const readStats = async (): Promise<Map<string, Record<string, number>>> => {
    const out = new Map<string, Record<string, number>>();
    for (const n of c.config.nodes) {
      if (n.metricsPort === undefined) continue;
      const res = await fetch(`http://${n.host}:${n.metricsPort}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      const stats: Record<string, number> = {};
      for (const line of (await res.text()).split("\n")) {
        const m = /^boki_transport_([a-z_]+)_total\{[^}]*\} ([0-9.e+]+)$/.exec(line);
        if (m !== null) stats[m[1]!] = Number(m[2]);
      }
      out.set(n.id, stats);
    }
    return out;
  };
  const statsBefore = await readStats();
  const before = new Map([...c.processes].map(([id, p]) => [id, cpuMs([p.pid!])]));
  const sysBefore = new Map([...c.processes].map(([id, p]) => [id, cpuSplitMs(p.pid!)[1]]));
  const selfBefore = selfCpuMs();
  const w = await runClosedLoop({
    concurrency,
    warmupMs: 0,
    measureMs: Number(opts.seconds) * 1000,
    op: (i) => handles[i]!.append([], data),
  });
  const n = w.ops;
  for (const [id, st] of await readStats()) {
    const b = statsBefore.get(id);
    if (b === undefined) continue;
    const per = (k: string): string => ((st[k]! - b[k]!) / n).toFixed(2);
    console.log(
      `${id.padEnd(12)} per append: messages received ${per("messages_received")}, sent ${per("messages_sent")}; socket reads ${per("socket_reads")}, writes ${per("socket_writes")}; bytes out ${per("bytes_sent")}`,
    );
  }
  const rows: Array<[string, number]> = [...c.processes].map(([id, p]) => [
    id,
    cpuMs([p.pid!]) - before.get(id)!,
  ]);
  const sysMs = new Map(
    [...c.processes].map(([id, p]) => [id, cpuSplitMs(p.pid!)[1] - sysBefore.get(id)!]),
  );
  rows.push(["client", selfCpuMs() - selfBefore]);
  console.log(
    `appends ${n} in ${(w.windowMs / 1000).toFixed(1)} s = ${Math.round((n * 1000) / w.windowMs)}/s, p50 ${w.latency.p50Ms.toFixed(2)} ms, p99 ${w.latency.p99Ms.toFixed(1)} ms`,
  );
  let total = 0;
  for (const [id, ms] of rows) {
    total += ms;
    const sys = sysMs.get(id);
    console.log(
      `${id.padEnd(12)} ${ms.toFixed(0).padStart(6)} ms  ${((ms * 1000) / n).toFixed(1).padStart(7)} µs/append` +
        (sys === undefined ? "" : `  (system ${Math.round((100 * sys) / Math.max(ms, 1))}%)`),
    );
  }
  console.log(
    `${"total".padEnd(12)} ${total.toFixed(0).padStart(6)} ms  ${((total * 1000) / n).toFixed(1).padStart(7)} µs/append; wall ${w.windowMs.toFixed(0)} ms × 2 cores`,
  );
} finally {
  await c.stop();
  rmSync(dir, { recursive: true, force: true });
}
