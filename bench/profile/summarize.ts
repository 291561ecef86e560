/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): top functions by self time, and
 * self time per file / category.
 *   tsx bench/profile/summarize.ts <file.cpuprofile> [topN] [lastSeconds]
 * With `lastSeconds`, only the samples of the profile's last seconds count (e.g. a node's
 * steady state, without its start-up).
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg = "25", lastArg] = process.argv.slice(2);
if (file === undefined) throw new Error("usage: summarize.ts <file.cpuprofile> [topN]");
const prof = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
const top = Number(topArg);

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
// Time of sample i is the gap to the next sample (how DevTools attributes it).
const selfUs = new Map<number, number>();
const fromUs = lastArg === undefined ? -Infinity : prof.endTime - Number(lastArg) * 1e6;
let at = prof.startTime;
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]!;
  at += prof.timeDeltas[i] ?? 0;
  if (at < fromUs) continue;
  const dt = prof.timeDeltas[i + 1] ?? 0;
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
}
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);

function place(cf: CallFrame): string {
  const url = cf.url;
  const src = url.indexOf("/src/");
  const nm = url.lastIndexOf("/node_modules/");
  if (src >= 0 && nm < 0) return `src/${url.slice(src + 5)}`;
  if (nm >= 0)
    return `node_modules/${url
      .slice(nm + 14)
      .split("/")
      .slice(0, 2)
      .join("/")}`;
  if (url.startsWith("node:")) return url;
  if (url === "") return "(native/vm)";
  return url.replace(/^file:\/\//, "");
}

const label = (cf: CallFrame): string => {
  const where = place(cf);
  const name = cf.functionName || "(anonymous)";
  return where === "(native/vm)" ? name : `${name}  ${where}:${cf.lineNumber + 1}`;
};

/** Self time of library and native code charged to the nearest src/ function up the stack. */
const bySrcCaller = new Map<string, number>();
for (const [id, us] of selfUs) {
  let cur: number | undefined = id;
  let key = "(no src/ frame on the stack)";
  while (cur !== undefined) {
    const cf = byId.get(cur)!.callFrame;
    if (place(cf).startsWith("src/")) {
      key = label(cf);
      break;
    }
    cur = parentOf.get(cur);
  }
  const name = byId.get(id)!.callFrame.functionName;
  if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") key = name;
  bySrcCaller.set(key, (bySrcCaller.get(key) ?? 0) + us);
}

const fn = new Map<string, number>();
const files = new Map<string, number>();
for (const [id, us] of selfUs) {
  const cf = byId.get(id)!.callFrame;
  const where = place(cf);
  const name = cf.functionName || "(anonymous)";
  const key = label(cf);
  fn.set(key, (fn.get(key) ?? 0) + us);
  const fileKey = where === "(native/vm)" ? name : where;
  files.set(fileKey, (files.get(fileKey) ?? 0) + us);
}

const pct = (us: number): string => `${((100 * us) / totalUs).toFixed(1).padStart(5)}%`;
const ms = (us: number): string => `${(us / 1000).toFixed(0).padStart(7)} ms`;
const show = (
  title: string,
  m: Map<string, number>,
  n: number,
  filter?: (k: string) => boolean,
): void => {
  console.log(`\n${title}`);
  [...m.entries()]
    .filter(([k]) => filter?.(k) ?? true)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .forEach(([k, us]) => console.log(`${pct(us)} ${ms(us)}  ${k}`));
};

console.log(
  `profile ${file}: ${(totalUs / 1e6).toFixed(2)} s sampled, ${prof.samples.length} samples`,
);
show("self time by file / category", files, top);
show("top functions by self time", fn, top);
show("top functions by self time in src/", fn, top, (k) => k.includes(" src/"));
show("self time (incl. libraries and native code) by nearest src/ caller", bySrcCaller, top);
