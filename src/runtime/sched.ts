/**
 * How function worker threads are scheduled. On Linux a worker moves itself to SCHED_BATCH
 * (same nice value, same CPU share): a batch thread woken by a message does not preempt the
 * thread running on that CPU. The thread that wakes workers most is the engine's main thread
 * (the log, the gateway, every invocation's log operations), and without this every message
 * it posts to a sleeping worker can hand its CPU to that worker on a busy machine.
 *
 * `BOKI_WORKER_SCHED=normal` in the environment (or the pool's `schedBatch: false`) keeps
 * the default policy. Best effort: without Linux or util-linux's `chrt` the policy stays.
 */
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";

/** Longest the `chrt` call may take. */
const CHRT_TIMEOUT_MS = 2000;

/** Whether workers should ask for SCHED_BATCH, by the environment's `BOKI_WORKER_SCHED`. */
export function schedBatchDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.BOKI_WORKER_SCHED;
  if (v === undefined || v === "" || v === "batch") return true;
  if (v === "normal") return false;
  throw new Error(`BOKI_WORKER_SCHED must be "batch" or "normal", got ${JSON.stringify(v)}`);
}

/** Moves the calling thread to SCHED_BATCH; true if it did. */
export function scheduleThisThreadAsBatch(): boolean {
  if (process.platform !== "linux") return false;
  try {
    // "<pid>/task/<tid>"
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    execFileSync("chrt", ["--batch", "--pid", "0", String(tid)], {
      stdio: "ignore",
      timeout: CHRT_TIMEOUT_MS,
    });
    return true;
  } catch {
    return false;
  }
}
