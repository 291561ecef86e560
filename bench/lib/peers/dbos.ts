/**
 * The DBOS Transact peer of the flow benchmark: a throwaway PostgreSQL 15 server
 * (lib/peers/postgres.ts: fsync and synchronous_commit on) as DBOS's system database, and one
 * Node process running the DBOS app (bench/peers/flow/dbos-app.mjs: a workflow of three steps)
 * with a small HTTP server in front of it. A workflow is started by a POST of `{ v }` to
 * `/run/<fresh id>`, which answers with the workflow's result once it is done.
 *
 * @dbos-inc/dbos-sdk comes from npm, installed at run time into ~/.cache/boki-bench/peers/dbos.
 * Configuration: DBOS's defaults (a system database pool of 10 connections, LISTEN/NOTIFY on)
 * but for the log level (warn; the default is info).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ensurePeerPackages, installAppFile } from "../../peers/flow/npm-cache.js";
import {
  checkOutput,
  PeerClient,
  workflowIds,
  type WorkflowPeer,
} from "../../peers/flow/workflow-peer.js";
import { progress as defaultProgress } from "../progress.js";
import { startPostgres } from "./postgres.js";
import { freePorts, lastLines, ManagedProcess } from "./proc.js";

export type { WorkflowPeer } from "../../peers/flow/workflow-peer.js";

/** Pinned version (engines: node >= 20). */
export const DBOS_SDK_VERSION = "5.3.0";
/**
 * Connections in DBOS's pool to its system database: DBOS's default (10), stated. Larger pools
 * were slower here at 64 workflows in flight (on 2 cores, 32 and 64 connections gave 0.85x and
 * 0.75x the throughput of 10: more PostgreSQL backends contending for the CPUs, no more commits
 * per WAL flush).
 */
export const DBOS_POOL_SIZE = 10;
const DATABASE = "boki_bench_flow_dbos_sys";
const START_TIMEOUT_MS = 90_000;
const POLL_MS = 100;
const FIRST_WORKFLOW_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;

function describeExit(p: ManagedProcess): string {
  const e = p.exit;
  if (e === undefined) return "running";
  return e.error ?? (e.code !== null ? `exit code ${e.code}` : `signal ${e.signal}`);
}

/**
 * Starts the DBOS peer. Resolves with `{ skipped }` and the reason when it cannot run here
 * (PostgreSQL or the SDK unavailable, the app not starting); never throws.
 */
export async function startDbosPeer(
  o: { progress?: (line: string) => void; poolSize?: number } = {},
): Promise<WorkflowPeer | { skipped: string }> {
  const say = o.progress ?? defaultProgress;
  const poolSize = o.poolSize ?? DBOS_POOL_SIZE;
  const pkgs = await ensurePeerPackages({
    peer: "dbos",
    dependencies: { "@dbos-inc/dbos-sdk": DBOS_SDK_VERSION },
    say,
  });
  if (!pkgs.ok) return { skipped: `dbos: ${pkgs.reason}` };
  const app = installAppFile(pkgs.dir, "dbos-app.mjs");
  const pg = await startPostgres({ progress: say });
  if ("skipped" in pg) return { skipped: `dbos: ${pg.skipped}` };

  let proc: ManagedProcess | undefined;
  let client: PeerClient | undefined;
  const teardown = async (): Promise<void> => {
    await client?.close().catch(() => undefined);
    await proc?.stop(STOP_GRACE_MS);
    await pg.stop();
  };
  try {
    const port = (await freePorts(1))[0]!;
    const dbUrl = pg.urlFor(DATABASE);
    const t0 = Date.now();
    const p = ManagedProcess.start("dbos app", process.execPath, [app], {
      cwd: pkgs.dir,
      env: {
        ...process.env,
        PORT: String(port),
        DBOS_SYSTEM_DATABASE_URL: dbUrl,
        DBOS_POOL_SIZE: String(poolSize),
        DBOS_LOG_LEVEL: "warn",
      },
    });
    proc = p;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!p.output(50).includes(`ready ${port}`)) {
      if (!p.running) {
        throw new Error(
          `the DBOS app exited (${describeExit(p)}) while starting: ${lastLines(p.output(30), 8).replace(/\n/g, " | ")}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `the DBOS app did not print its ready line within ${START_TIMEOUT_MS / 1000} s: ${lastLines(p.output(30), 8).replace(/\n/g, " | ")}`,
        );
      }
      await sleep(POLL_MS);
    }
    client = new PeerClient(`http://127.0.0.1:${port}`);
    const c = client;
    const nextId = workflowIds("dbos");
    const runWorkflow = async (worker: number, seq: number): Promise<unknown> => {
      const id = nextId(worker, seq);
      const out = await c.postJson(`/run/${encodeURIComponent(id)}`, { v: seq });
      return checkOutput("dbos", id, seq, out);
    };
    const firstDeadline = Date.now() + FIRST_WORKFLOW_TIMEOUT_MS;
    while (true) {
      try {
        await runWorkflow(0, 0);
        break;
      } catch (err) {
        if (!p.running || Date.now() > firstDeadline) {
          throw new Error(
            `the first workflow failed: ${err instanceof Error ? err.message : String(err)}; app: ${lastLines(p.output(20), 6).replace(/\n/g, " | ")}`,
          );
        }
        await sleep(POLL_MS);
      }
    }
    const readyMs = Date.now() - t0;
    say(
      `dbos: DBOS ${pkgs.versions["@dbos-inc/dbos-sdk"]} up at 127.0.0.1:${port} on PostgreSQL ${pg.version} (${readyMs} ms)`,
    );
    let stopped: Promise<void> | undefined;
    return {
      system: "dbos",
      mode: `postgres-${pg.version.split(".")[0]}, sync commit`,
      version: `@dbos-inc/dbos-sdk ${pkgs.versions["@dbos-inc/dbos-sdk"]}, PostgreSQL ${pg.version}`,
      durability:
        `the workflow's start, each step's output and the workflow's result are PostgreSQL ` +
        `commits in DBOS's system database (${pg.durability}); a step's function runs after the ` +
        `previous step's commit has returned, the HTTP answer after the result's`,
      notes: [
        ...pkgs.notes,
        ...pg.notes,
        `DBOS app: Node ${process.version} process, system database ${DATABASE} on 127.0.0.1:${pg.port}, pool of ${poolSize} connections, log level warn`,
        "front: node:http server in the app process, POST /run/<fresh id> runs DBOS.startWorkflow(...).getResult() and answers with the result",
        "per workflow DBOS runs 5 write transactions (status with input, 3 step outputs, result) and 9 single-statement reads (status checks, a step's earlier output) (pg_stat_statements, this version)",
        "client: undici Pool, keep-alive",
        `ready after ${readyMs} ms (app start and DBOS launch; PostgreSQL before that)`,
      ],
      runWorkflow,
      stop: () => (stopped ??= teardown()),
    };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    await teardown();
    return { skipped: `dbos: ${why}` };
  }
}
