/**
 * What tracing costs while it is off (the default): the off path of each hook per call,
 * against calling straight through, and the dashboard's per-invocation figures; with
 * `--baseline <checkout>`, also CPU per invocation of `boki dev`'s runtime in this checkout
 * against another one (a checkout without the hooks), in alternating runs, as medians of the
 * paired ratios (wall-clock time on a shared machine swings too much to resolve a few
 * nanoseconds).
 *
 *   npx tsx bench/profile/tracing-overhead.ts [--baseline /path/to/older/checkout] [--rounds 8]
 */
import { Command } from "commander";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

import type { DevServer as DevServerType } from "../../src/embedded/dev-server.js";
import type { InvocationId } from "../../src/runtime/ids.js";

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES = join(ROOT, "test/fixtures/functions");

async function micro(): Promise<void> {
  const { traceInvocation, traceLogOp, bindToContext, tracingEnabled } =
    await import("../../src/tracing/spans.js");
  const { FunctionStats } = await import("../../src/gateway/ui/stats.js");
  const n = 5_000_000;
  const done = Promise.resolve(1);
  const run = (): Promise<number> => done;
  const time = (label: string, f: () => unknown): void => {
    for (let i = 0; i < 100_000; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f();
    console.log(`${label.padEnd(52)} ${(((performance.now() - t0) * 1e6) / n).toFixed(2)} ns/call`);
  };
  const info = { name: "f", invocationId: "i", book: 0, depth: 0, inputJson: "null" };
  const stats = new FunctionStats();
  let k = 0;
  time("a direct call", () => run());
  time("the invocation hook, off (one branch)", () =>
    tracingEnabled() ? traceInvocation(info, run) : run(),
  );
  time("traceLogOp, off", () => traceLogOp("append", [], 0, run));
  time("bindToContext, off", () => bindToContext(run));
  time("the dashboard's FunctionStats.record", () =>
    stats.record("echo", null, 0.05, 1_000_000 + (k++ >> 10)),
  );
}

/** One run against `root`'s runtime: CPU µs per invocation of each workload, as JSON. */
async function child(root: string): Promise<void> {
  // The other checkout's own runtime, typed as this one's (the API is the same).
  const { DevServer } = (await import(join(root, "src/embedded/dev-server.ts"))) as {
    DevServer: typeof DevServerType;
  };
  const dir = mkdtempSync(join(tmpdir(), "boki-tracing-overhead-"));
  const s = await DevServer.start({ functions: FIXTURES, dataDir: dir, workers: 2, sync: false });
  let id = 0;
  const inv = (name: string, input: string): Promise<unknown> =>
    s.host.invoke({
      name,
      inputJson: input,
      book: 1,
      invocationId: `probe${id++}-${process.pid}` as InvocationId,
      deadline: Date.now() + 30_000,
    });
  const post = (path: string, body: string): Promise<string> =>
    fetch(s.url + path, { method: "POST", body }).then((r) => r.text());
  const out: Record<string, number> = {};
  const cpu = async (label: string, n: number, c: number, op: () => Promise<unknown>) => {
    for (let i = 0; i < 300; i++) await op();
    const c0 = process.cpuUsage();
    let left = n;
    await Promise.all(
      Array.from({ length: c }, async () => {
        while (left-- > 0) await op();
      }),
    );
    const u = process.cpuUsage(c0);
    out[label] = (u.user + u.system) / n;
  };
  await cpu("in-process echo, 1 in flight", 3000, 1, () => inv("echo", '"x"'));
  await cpu("in-process append, 1 in flight", 1500, 1, () =>
    inv("append", '{"tag":"t","value":"v"}'),
  );
  await cpu("HTTP echo, 1 in flight", 1500, 1, () => post("/function/echo", '"x"'));
  await cpu("HTTP append, 16 in flight", 3000, 16, () =>
    post("/function/append", '{"tag":"t","value":"v"}'),
  );
  console.log(JSON.stringify(out));
  await s.close();
  rmSync(dir, { recursive: true, force: true });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function paired(baseline: string, rounds: number): void {
  const runs: Record<"base" | "this", Array<Record<string, number>>> = { base: [], this: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [which, root] of [
      ["base", baseline],
      ["this", ROOT],
    ] as const) {
      const text = execFileSync("npx", ["tsx", SELF, "--child", root], {
        cwd: root,
        encoding: "utf8",
        timeout: 300_000,
      });
      runs[which].push(JSON.parse(text.trim().split("\n").pop()!) as Record<string, number>);
    }
  }
  console.log(`\nCPU per invocation, ${rounds} alternating runs (this checkout / ${baseline}):`);
  for (const k of Object.keys(runs.base[0]!)) {
    const b = runs.base.map((x) => x[k]!);
    const t = runs.this.map((x) => x[k]!);
    const ratios = b.map((v, i) => t[i]! / v);
    console.log(
      `${k.padEnd(34)} ${median(t).toFixed(1).padStart(7)} µs against ${median(b).toFixed(1).padStart(7)} µs, median paired ratio ${median(ratios).toFixed(3)} (runs ${ratios.map((x) => x.toFixed(2)).join(" ")})`,
    );
  }
}

const o = new Command()
  .option("--baseline <dir>", "another checkout to compare CPU per invocation with")
  .option("--rounds <n>", "alternating runs per checkout", (v) => Number(v), 8)
  .option("--child <root>", "internal: one run against a checkout")
  .parse()
  .opts<{ baseline?: string; rounds: number; child?: string }>();

if (o.child !== undefined) await child(o.child);
else {
  await micro();
  if (o.baseline !== undefined) paired(o.baseline, o.rounds);
}
