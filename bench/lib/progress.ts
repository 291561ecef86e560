/** Progress lines on stderr, stamped with the time since the run started. */
import { performance } from "node:perf_hooks";

const t0 = performance.now();

export function progress(msg: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${msg}\n`);
}
