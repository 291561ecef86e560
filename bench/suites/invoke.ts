/**
 * Suite "invoke": invocations through the HTTP gateway, embedded mode. The system under test
 * is `boki dev` as its own process (bin/boki.js: the embedded log with appends acknowledged
 * after fsync, a function host with 2 worker threads, the fastify gateway) on 127.0.0.1,
 * serving bench/functions; the load generator is this process: C closed-loop clients over an
 * undici Pool of C keep-alive connections (undici's request API: several times cheaper per
 * request than fetch, so less of the shared CPU goes to the load generator), latency
 * measured around each request.
 *
 *  - invoke-echo: POST /function/bench-echo with a 100-byte JSON string; returns it.
 *  - invoke-append-read: POST /function/bench-append-read with a 100-byte string: the function
 *    appends it as one record (durable: fsync) and reads it back. Client w uses book w + 1.
 *
 * C = 1, 16, 64. Both run on one data directory (a fresh temp dir, removed afterwards).
 * With `--cluster`, the suite measures a gateway in front of a local cluster instead
 * (suites/invoke-cluster.ts).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import {
  FULL_PHASES,
  QUICK_PHASES,
  runMeasurements,
  windowSeconds,
  type Measurement,
} from "../lib/measure.js";
import type { ManagedProcess } from "../lib/peers/proc.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { runClosedLoop } from "../lib/runner.js";
import type { Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";
import { runInvokeCluster } from "./invoke-cluster.js";

export const CONCURRENCY = [1, 16, 64] as const;
const PAYLOAD_BYTES = 100;
export const WORKERS = 2;
/** Longest one request may take before the measurement fails. */
const REQUEST_TIMEOUT_MS = 30_000;

export const FUNCTIONS = fileURLToPath(new URL("../functions", import.meta.url));

type Workload = "invoke-echo" | "invoke-append-read";
export const WORKLOADS: readonly Workload[] = ["invoke-echo", "invoke-append-read"];
const FUNCTION_OF: Record<Workload, string> = {
  "invoke-echo": "bench-echo",
  "invoke-append-read": "bench-append-read",
};

interface Gateway {
  readonly url: string;
  readonly proc: ManagedProcess;
}

async function startGateway(dataDir: string): Promise<Gateway> {
  return startBokiDev({ functions: FUNCTIONS, dataDir, workers: WORKERS });
}

async function post(pool: Pool, path: string, body: string, book: number): Promise<void> {
  const r = await pool.request({
    path,
    method: "POST",
    body,
    headers: { "content-type": "application/json", "x-boki-book": String(book) },
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const text = await r.body.text();
  if (r.statusCode !== 200)
    throw new Error(`HTTP ${r.statusCode} from ${path}: ${text.slice(0, 300)}`);
}

/** Where the requests go, and how the rows describe the system under test. */
export interface Target {
  readonly url: string;
  readonly mode: string;
  readonly extras: Record<string, unknown>;
}

export function measurement(
  target: () => Target,
  workload: Workload,
  concurrency: number,
): Measurement {
  // A JSON string of exactly PAYLOAD_BYTES bytes, quotes included.
  const body = JSON.stringify("x".repeat(PAYLOAD_BYTES - 2));
  return {
    label: `${workload} c=${concurrency} ${PAYLOAD_BYTES} B`,
    run: async (phases, onProgress) => {
      const path = `/function/${FUNCTION_OF[workload]}`;
      const t = target();
      const pool = new Pool(t.url, { connections: concurrency });
      let window;
      try {
        window = await runClosedLoop({
          concurrency,
          warmupMs: phases.warmupMs,
          measureMs: phases.measureMs,
          op: (w) => post(pool, path, body, w + 1),
          ...(onProgress === undefined ? {} : { onProgress }),
        });
      } finally {
        await pool.close();
      }
      return {
        window,
        row: {
          system: "boki",
          mode: t.mode,
          workload,
          concurrency,
          payloadBytes: PAYLOAD_BYTES,
        },
        extras: t.extras,
      };
    },
  };
}

async function runEmbedded(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK_PHASES : FULL_PHASES;
  const list: Measurement[] = [];
  let gateway: Gateway | undefined;
  const target = (): Target => ({
    url: gateway!.url,
    mode: "embedded",
    extras: {
      via: "http gateway (boki dev process), undici keep-alive",
      workers: WORKERS,
      durability: "disk (fsync per append)",
    },
  });
  for (const workload of WORKLOADS) {
    for (const c of CONCURRENCY) list.push(measurement(target, workload, c));
  }
  progress(
    `invoke: ${list.length} measurements, ~${Math.round(windowSeconds(list.length, phases))} s of windows plus the gateway's start`,
  );
  const rows: ResultRow[] = [];
  await withTempDir("boki-bench-invoke", async (dir) => {
    gateway = await startGateway(join(dir, "data"));
    progress(`invoke: boki dev is up at ${gateway.url}`);
    try {
      await runMeasurements(list, { phases, quick: options.quick, into: rows });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nboki dev output:\n${gateway.proc.output(20)}`, {
        cause: err,
      });
    } finally {
      await gateway.proc.stop();
    }
  });
  return {
    rows,
    notes: [
      `system under test: boki dev (${WORKERS} worker threads, embedded log, fsync per append) in its own process; load generator: this process (undici Pool, keep-alive), same machine`,
    ],
  };
}

export const invokeSuite: Suite = {
  name: "invoke",
  description: "invocations/s and latency through the HTTP gateway (echo; append + read back)",
  hasClusterMode: true,
  run: (options) => (options.cluster ? runInvokeCluster(options) : runEmbedded(options)),
};
