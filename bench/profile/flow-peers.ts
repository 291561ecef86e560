/**
 * The flow benchmark's peers by themselves: starts each workflow peer in turn (Restate, then
 * DBOS on PostgreSQL), loads it for a warm-up (5 s; --quick: 2 s) and then measures closed-loop
 * 3-step workflows at concurrency 1, 16 and 64 (10 s windows; --quick: 2 s), printing ops/s
 * and the caller-side p50/p99 of each, and stops it before the next. A peer that cannot run is
 * reported with its reason. The load generator is this process (undici Pool, keep-alive).
 *
 *   npx tsx bench/profile/flow-peers.ts [--quick] [--peers restate,dbos] [-c 1,16,64]
 *     [--restate-partitions 24] [--dbos-pool 10]
 */
import { Command } from "commander";
import { startDbosPeer } from "../lib/peers/dbos.js";
import { startRestatePeer, type WorkflowPeer } from "../lib/peers/restate.js";
import { progress } from "../lib/progress.js";
import { runClosedLoop, type WindowResult } from "../lib/runner.js";
import { fmtMs } from "../lib/table.js";

const opts = new Command()
  .option("--quick", "2 s warm-up and 2 s windows")
  .option("--peers <list>", "which peers, comma-separated", "restate,dbos")
  .option("-c, --concurrency <list>", "concurrency levels, comma-separated", "1,16,64")
  .option("--warmup <s>", "seconds of warm-up load after each peer starts")
  .option("--window <s>", "seconds measured at each concurrency")
  .option("--restate-partitions <n>", "partitions the Restate server provisions (its default: 24)")
  .option("--dbos-pool <n>", "connections in DBOS's system database pool (its default: 10)")
  .parse()
  .opts<{
    quick?: boolean;
    peers: string;
    concurrency: string;
    warmup?: string;
    window?: string;
    restatePartitions?: string;
    dbosPool?: string;
  }>();

const quick = opts.quick === true;
const warmupMs = Number(opts.warmup ?? (quick ? 2 : 5)) * 1000;
const windowMs = Number(opts.window ?? (quick ? 2 : 10)) * 1000;
const levels = opts.concurrency.split(",").map(Number);
/** Concurrency of the warm-up load: the highest measured. */
const warmupConcurrency = Math.max(...levels);

const STARTERS: Record<string, () => Promise<WorkflowPeer | { skipped: string }>> = {
  restate: () =>
    startRestatePeer({
      progress,
      ...(opts.restatePartitions === undefined
        ? {}
        : { partitions: Number(opts.restatePartitions) }),
    }),
  dbos: () =>
    startDbosPeer({
      progress,
      ...(opts.dbosPool === undefined ? {} : { poolSize: Number(opts.dbosPool) }),
    }),
};

// An interrupted probe still stops its peers: exit runs proc.ts's hook (SIGKILL children).
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

interface Row {
  readonly system: string;
  readonly concurrency: number;
  readonly w: WindowResult;
}

async function measure(peer: WorkflowPeer): Promise<Row[]> {
  const seq = new Map<number, number>();
  const op = (worker: number): Promise<unknown> => {
    const s = seq.get(worker) ?? 0;
    seq.set(worker, s + 1);
    return peer.runWorkflow(worker, s);
  };
  progress(`${peer.system}: warm-up ${warmupMs / 1000} s at c=${warmupConcurrency}`);
  await runClosedLoop({ concurrency: warmupConcurrency, warmupMs, measureMs: 0, op });
  const rows: Row[] = [];
  for (const c of levels) {
    const w = await runClosedLoop({ concurrency: c, warmupMs: 0, measureMs: windowMs, op });
    progress(
      `${peer.system} c=${c}: ${Math.round(w.opsPerSec)} workflows/s, p50 ${fmtMs(w.latency.p50Ms)} ms, p99 ${fmtMs(w.latency.p99Ms)} ms`,
    );
    rows.push({ system: peer.system, concurrency: c, w });
  }
  return rows;
}

const rows: Row[] = [];
const described: string[] = [];
for (const name of opts.peers.split(",").filter((n) => n !== "")) {
  const start = STARTERS[name];
  if (start === undefined) {
    described.push(`${name}: unknown peer (known: ${Object.keys(STARTERS).join(", ")})`);
    continue;
  }
  progress(`${name}: starting`);
  const peer = await start();
  if ("skipped" in peer) {
    described.push(`${name}: skipped: ${peer.skipped}`);
    continue;
  }
  try {
    described.push(
      `${peer.system} (${peer.mode}): ${peer.version}\n  durability: ${peer.durability}\n` +
        peer.notes.map((n) => `  - ${n}`).join("\n"),
    );
    rows.push(...(await measure(peer)));
  } catch (err) {
    described.push(`${name}: failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await peer.stop();
    progress(`${name}: stopped`);
  }
}

const header = ["system", "conc", "workflows/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"];
const body = rows.map((r) => [
  r.system,
  String(r.concurrency),
  r.w.opsPerSec.toFixed(0),
  fmtMs(r.w.latency.p50Ms),
  fmtMs(r.w.latency.p99Ms),
  fmtMs(r.w.latency.p999Ms),
  fmtMs(r.w.latency.maxMs),
]);
const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
const line = (cells: readonly string[]): string =>
  cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
console.log(described.join("\n"));
console.log(
  `\n3-step workflows, closed loop, warm-up ${warmupMs / 1000} s, windows ${windowMs / 1000} s${quick ? " (quick)" : ""}`,
);
console.log(line(header));
for (const b of body) console.log(line(b));
