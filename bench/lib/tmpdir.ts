/** Fresh temporary data directories under os.tmpdir(), always removed afterwards. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const live = new Set<string>();
const beforeRemoval: Array<() => void> = [];

/**
 * Registers a synchronous step to run before the directories are removed when the process is
 * exiting or was interrupted (SIGINT/SIGTERM): e.g. killing peer servers that write into them.
 */
export function beforeEmergencyRemoval(fn: () => void): void {
  beforeRemoval.push(fn);
}

function removeAll(): void {
  for (const fn of beforeRemoval.splice(0)) {
    try {
      fn();
    } catch {
      // best effort: still remove the directories
    }
  }
  for (const d of live) {
    try {
      rmSync(d, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    } catch (err) {
      process.stderr.write(`could not remove ${d}: ${String(err)}\n`);
    }
  }
  live.clear();
}

let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once("exit", removeAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      removeAll();
      process.exit(130);
    });
  }
}

export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  hookExit();
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  live.add(dir);
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    live.delete(dir);
  }
}
