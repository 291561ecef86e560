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
