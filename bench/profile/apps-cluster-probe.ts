/**
 * One example application's variant on the local cluster (as `npm run bench -- apps
 * --cluster` starts it), seeded, then requests of its mix one at a time, printing each
 * kind's latency: for finding where a cluster request's time goes at no load.
 *
 * Prints each process's CPU use in two idle windows after the seed. With --call, instead of the mix, each `<function>=<json input>` is called in turn, n calls in
 * all (`$i` in the input becomes the call's number).
 *
 *   npx tsx bench/profile/apps-cluster-probe.ts [-a movie] [-v safe|unsafe] [-n 200]
 *     [--call movie-rating='{"reqId":"r","rating":5}' ...]
 */
import { Command } from "commander";
import { BENCH_APPS } from "../apps/index.js";
import { LOCAL_TOPOLOGY, startBokiCluster } from "../lib/boki-cluster.js";
import { progress } from "../lib/progress.js";
import { cpuMs } from "../lib/proc-cpu.js";
import { withTempDir } from "../lib/tmpdir.js";
import { rng } from "../suites/txn.js";

const opts = new Command()
  .option("-a, --app <app>", "travel, movie or retwis", "movie")
  .option("-v, --variant <v>", "safe or unsafe", "safe")
  .option("-n, --requests <n>", "requests sent one after another", "200")
  .option("--call <fn=json...>", "functions to call instead of the mix")
  .parse()
  .opts<{ app: string; variant: string; requests: string; call?: string[] }>();
const calls = (opts.call ?? []).map((c) => {
  const at = c.indexOf("=");
  return { fn: c.slice(0, at), body: JSON.parse(c.slice(at + 1)) as unknown };
});
const app = BENCH_APPS.find((a) => a.name === opts.app);
if (app === undefined) throw new Error(`unknown app ${opts.app}`);
const variant = opts.variant === "unsafe" ? "unsafe" : "safe";

await withTempDir("boki-apps-probe", async (dir) => {
  const cluster = await startBokiCluster({
    dir,
    durability: "disk",
    ...LOCAL_TOPOLOGY,
    indexReplicas: 2,
    gateways: 1,
    functions: { path: app.functions[variant] },
    say: progress,
  });
  try {
    const g = cluster.config.nodes.find((n) => n.role === "gateway")!;
    const target = { url: `http://${g.host}:${g.port}` };
    for (let i = 0; ; i++) {
      try {
        await app.seed(target, variant);
        break;
      } catch (err) {
        if (i > 100 || !/\b503\b/.test(String(err))) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    const cpuPerProcess = async (what: string, ms: number): Promise<void> => {
      const procs = [...cluster.processes].map(([id, p]) => ({ id, pid: p.pid! }));
      const before = procs.map((p) => cpuMs([p.pid]));
      await new Promise((r) => setTimeout(r, ms));
      console.log(
        `CPU ${what}, ms per s: ` +
          procs
            .map((p, i) => `${p.id} ${((cpuMs([p.pid]) - before[i]!) / (ms / 1000)).toFixed(0)}`)
            .join(", "),
      );
    };
    await cpuPerProcess("just after the seed", 3000);
    await cpuPerProcess("3 s later", 3000);
    const random = rng(1);
    const byKind = new Map<string, number[]>();
    const allPids = [...cluster.processes.values()].map((p) => p.pid!);
    const cpu0 = cpuMs(allPids);
    const each0 = allPids.map((p) => cpuMs([p]));
    const t00 = performance.now();
    for (let i = 0; i < Number(opts.requests); i++) {
      const req =
        calls.length === 0
          ? app.nextRequest(random, variant)
          : {
              kind: calls[i % calls.length]!.fn,
              method: "POST" as const,
              path: `/function/${calls[i % calls.length]!.fn}`,
              body: JSON.parse(
                JSON.stringify(calls[i % calls.length]!.body).replaceAll("$i", String(i)),
              ) as unknown,
            };
      const t0 = performance.now();
      const res = await fetch(target.url + req.path, {
        method: req.method,
        ...(req.body === undefined
          ? {}
          : { body: JSON.stringify(req.body), headers: { "content-type": "application/json" } }),
      });
      await res.text();
      const ms = performance.now() - t0;
      const k = `${req.kind}:${res.status}`;
      byKind.set(k, [...(byKind.get(k) ?? []), ms]);
    }
    const cpu = cpuMs(allPids) - cpu0;
    console.log(
      `cluster CPU ${(cpu / Number(opts.requests)).toFixed(2)} ms per request, ${((cpu / (performance.now() - t00)) * 1000).toFixed(0)} ms per s`,
    );
    console.log(
      "  by process, ms per request: " +
        [...cluster.processes.keys()]
          .map(
            (id, i) =>
              `${id} ${((cpuMs([allPids[i]!]) - each0[i]!) / Number(opts.requests)).toFixed(2)}`,
          )
          .join(", "),
    );
    for (const [k, v] of byKind) {
      v.sort((a, b) => a - b);
      const q = (p: number): string =>
        v[Math.min(v.length - 1, Math.floor(p * v.length))]!.toFixed(2);
      console.log(
        `${k.padEnd(24)} n=${String(v.length).padEnd(5)} p10 ${q(0.1)} p50 ${q(0.5)} p90 ${q(0.9)} max ${q(0.999)}`,
      );
    }
  } finally {
    await cluster.stop();
  }
});
