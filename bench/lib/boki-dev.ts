/**
 * `boki dev` as a benchmark's system under test: its own process (`bin/boki.js dev`, the
 * embedded log acknowledging appends after fsync) on 127.0.0.1 at a free port, its output
 * kept, resolved once `/healthz` answers.
 */
import { fileURLToPath } from "node:url";
import { freePorts, ManagedProcess, waitHealthy } from "./peers/proc.js";

const BIN = fileURLToPath(new URL("../../bin/boki.js", import.meta.url));
/** Longest `boki dev` may take to answer /healthz after it starts. */
export const BOKI_DEV_START_TIMEOUT_MS = 60_000;

export interface BokiDev {
  readonly url: string;
  readonly proc: ManagedProcess;
}

export interface BokiDevOptions {
  /** The functions folder or module (`--functions`). */
  readonly functions: string;
  readonly dataDir: string;
  /** Worker threads (`--workers`). */
  readonly workers: number;
  /** The process's name in messages (default "boki-dev"). */
  readonly name?: string;
  /** Node options before the script, e.g. `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

export async function startBokiDev(o: BokiDevOptions): Promise<BokiDev> {
  const [port] = await freePorts(1);
  const proc = ManagedProcess.start(
    o.name ?? "boki-dev",
    process.execPath,
    [
      ...(o.nodeArgs ?? []),
      BIN,
      "dev",
      "--functions",
      o.functions,
      "--data",
      o.dataDir,
      "--port",
      String(port),
      "--workers",
      String(o.workers),
      "--log-level",
      "warn",
    ],
    o.env === undefined ? {} : { env: o.env },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(o.name ?? "boki dev", proc, url, BOKI_DEV_START_TIMEOUT_MS);
  return { url, proc };
}
