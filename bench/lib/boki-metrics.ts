/**
 * What the profiles read off a running `boki dev`: CPU by thread (from /proc), its /metrics
 * text, and sums over it.
 */
import { readdirSync, readFileSync } from "node:fs";

/** CPU ms of each thread of `pid`, by "<name>#<tid>". */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(`${name}#${tid}`, ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Prometheus text of boki dev's /metrics. */
export async function metrics(url: string): Promise<string> {
  const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return r.text();
}

/** Sum of a metric's samples whose line contains `labels`. */
export function metricTotal(text: string, name: string, labels = ""): number {
  let sum = 0;
  for (const l of text.split("\n")) {
    if (!(l.startsWith(`${name}{`) || l.startsWith(`${name} `)) || !l.includes(labels)) continue;
    sum += Number(l.slice(l.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Invocations run per function name, from boki_invocations_total. */
export function invocationsByFunction(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of text.split("\n")) {
    const m = /^boki_invocations_total\{function="([^"]+)"[^}]*\} (\S+)$/.exec(l);
    if (m !== null) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

/**
 * Prints, per `unit` (e.g. "operation"), the log operations and invocations between two
 * /metrics readings, and the CPU each thread spent between two `threadCpu` readings (the
 * busiest `threadsShown` first, with the share of a core over `windowMs`); returns the CPU
 * summed over every thread, ms.
 */
export function printPerUnit(o: {
  readonly unit: string;
  readonly count: number;
  readonly windowMs: number;
  readonly metricsBefore: string;
  readonly metricsAfter: string;
  readonly cpuBefore: ReadonlyMap<string, number>;
  readonly cpuAfter: ReadonlyMap<string, number>;
  readonly threadsShown?: number;
}): number {
  const n = Math.max(1, o.count);
  const delta = (name: string): number =>
    metricTotal(o.metricsAfter, name) - metricTotal(o.metricsBefore, name);
  console.log(
    `per ${o.unit}: ${(delta("boki_log_appends_total") / n).toFixed(2)} appends, ` +
      `${(delta("boki_log_reads_total") / n).toFixed(2)} reads by functions`,
  );
  const i0 = invocationsByFunction(o.metricsBefore);
  const inv = [...invocationsByFunction(o.metricsAfter)]
    .map(([f, k]) => [f, k - (i0.get(f) ?? 0)] as const)
    .filter(([, k]) => k > 0);
  console.log(
    `invocations per ${o.unit}: ${inv.map(([f, k]) => `${f} ${(k / n).toFixed(2)}`).join(", ")}`,
  );
  const rows = [...o.cpuAfter.entries()]
    .map(([k, v]) => [k, v - (o.cpuBefore.get(k) ?? 0)] as const)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
  for (const [k, v] of rows.slice(0, o.threadsShown ?? rows.length)) {
    console.log(
      `  ${k.padEnd(24)} ${(v / n).toFixed(4)} ms/${o.unit}  ${((v / o.windowMs) * 100).toFixed(0).padStart(3)} % of a core`,
    );
  }
  return rows.reduce((sum, [, v]) => sum + v, 0);
}
