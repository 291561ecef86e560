/**
 * CPU time of other processes on this (Linux) machine, read from /proc/<pid>/stat: what a
 * benchmark's node processes, or an idle system beside the measured one, use.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** [user, system] CPU milliseconds a process has used; [0, 0] once it is gone. */
export function cpuSplitMs(pid: number): [number, number] {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return [0, 0];
  }
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [(Number(f[11]) * 1000) / USER_HZ, (Number(f[12]) * 1000) / USER_HZ];
}

/** CPU milliseconds (user + system) the processes have used together. */
export function cpuMs(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    const [user, sys] = cpuSplitMs(pid);
    sum += user + sys;
  }
  return sum;
}

/** CPU milliseconds per second the processes use over `windowMs` (resolution 10 ms of CPU). */
export async function cpuMsPerSec(pids: readonly number[], windowMs: number): Promise<number> {
  const before = cpuMs(pids);
  const t0 = performance.now();
  await sleep(windowMs);
  const elapsed = performance.now() - t0;
  return ((cpuMs(pids) - before) * 1000) / elapsed;
}
