/**
 * The Restate peer of the flow benchmark: one restate-server (single node, all roles) on
 * 127.0.0.1 with free ports and a temp base dir, and one Node process serving the deployment
 * (bench/peers/flow/restate-app.mjs: a workflow of three `ctx.run` steps), registered with the
 * server's admin API. A workflow is started by a POST to the ingress,
 * `/BenchFlow/<fresh id>/run`, which answers with the workflow's result once it is done.
 *
 * Both packages come from npm, installed at run time into ~/.cache/boki-bench/peers/restate
 * (the server binary is published inside @restatedev/restate-server's per-platform package).
 *
 * Configuration: the server's defaults (which are its production defaults but for
 * auto-provisioning a one-node cluster), except that logs are plain text at
 * "warn,restate=info" (the default filter), telemetry and the web UI are off, and the fsync
 * settings of the log are set explicitly to their defaults (on). The SDK logs at WARN (its
 * default INFO prints two lines per invocation).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ensurePeerPackages, installAppFile } from "../../peers/flow/npm-cache.js";
import {
  checkOutput,
  PeerClient,
  removeOnExit,
  workflowIds,
  type WorkflowPeer,
} from "../../peers/flow/workflow-peer.js";
import { progress as defaultProgress } from "../progress.js";
import { freePorts, lastLines, ManagedProcess, runCommand } from "./proc.js";

export type { WorkflowPeer } from "../../peers/flow/workflow-peer.js";

/**
 * Pinned versions. The SDK is the newest that runs on Node 20: from 1.15 its invocation handler
 * calls Promise.withResolvers (Node 22+), and every invocation fails on Node 20 with a TypeError.
 */
export const RESTATE_SERVER_VERSION = "1.7.12";
export const RESTATE_SDK_VERSION = "1.14.5";

/** restate-server's own default, stated. */
export const DEFAULT_PARTITIONS = 24;
const WORKFLOW = "BenchFlow";
const START_TIMEOUT_MS = 60_000;
const POLL_MS = 100;
const PROBE_TIMEOUT_MS = 2_000;
/** How long the first workflow may keep failing while partitions get their leaders. */
const FIRST_WORKFLOW_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const VERSION_TIMEOUT_MS = 15_000;

function describeExit(p: ManagedProcess): string {
  const e = p.exit;
  if (e === undefined) return "running";
  return e.error ?? (e.code !== null ? `exit code ${e.code}` : `signal ${e.signal}`);
}

function tail(p: ManagedProcess, n = 8): string {
  return lastLines(p.output(n * 3), n).replace(/\n/g, " | ");
}

async function httpStatus(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: string } | string> {
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    return { status: r.status, body: await r.text() };
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Polls `check` until it returns undefined (done), a process dies, or the time is up. */
async function until(
  what: string,
  timeoutMs: number,
  procs: readonly ManagedProcess[],
  check: () => Promise<string | undefined>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (true) {
    for (const p of procs) {
      if (!p.running)
        throw new Error(`${p.name} exited (${describeExit(p)}) while ${what}: ${tail(p)}`);
    }
    const r = await check();
    if (r === undefined) return;
    last = r;
    if (Date.now() > deadline)
      throw new Error(`${what}: not done after ${timeoutMs / 1000} s (${last})`);
    await sleep(POLL_MS);
  }
}

/**
 * Starts the Restate peer. Resolves with `{ skipped }` and the reason when it cannot run here
 * (packages not installable, no binary for this platform, the server not starting); never
 * throws.
 */
export async function startRestatePeer(
  o: {
    progress?: (line: string) => void;
    /**
     * Partitions provisioned (the server's default: 24). Fewer were usually faster on this
     * 2-core machine (4 partitions: 1.1-1.8x the workflows/s at 64 in flight in paired runs,
     * with a large run-to-run spread); the default is what Restate ships for production, and a
     * cluster's partition count is fixed once provisioned.
     */
    partitions?: number;
  } = {},
): Promise<WorkflowPeer | { skipped: string }> {
  const say = o.progress ?? defaultProgress;
  const partitions = o.partitions ?? DEFAULT_PARTITIONS;
  const pkgs = await ensurePeerPackages({
    peer: "restate",
    dependencies: {
      "@restatedev/restate-server": RESTATE_SERVER_VERSION,
      "@restatedev/restate-sdk": RESTATE_SDK_VERSION,
    },
    say,
  });
  if (!pkgs.ok) return { skipped: `restate: ${pkgs.reason}` };
  const binPkg = `@restatedev/restate-server-${platform()}-${arch()}`;
  const bin = join(pkgs.dir, "node_modules", binPkg, "bin", "restate-server");
  const v = await runCommand(bin, ["--version"], { timeoutMs: VERSION_TIMEOUT_MS });
  if (v.code !== 0) {
    return {
      skipped: `restate: no runnable restate-server for ${platform()}-${arch()} (${binPkg}): ${v.error ?? lastLines(v.stderr, 2)}`,
    };
  }
  const version = /(\d+\.\d+\.\d+\S*)/.exec(v.stdout)?.[1] ?? v.stdout.trim();
  const app = installAppFile(pkgs.dir, "restate-app.mjs");

  const dir = mkdtempSync(join(tmpdir(), "boki-bench-restate-"));
  const procs: ManagedProcess[] = [];
  let client: PeerClient | undefined;
  let forget = (): void => undefined;
  const teardown = async (): Promise<void> => {
    await client?.close().catch(() => undefined);
    // The server first, so that it does not retry invocations against a vanished deployment.
    for (const p of [...procs].reverse()) await p.stop(STOP_GRACE_MS);
    rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    forget();
  };
  try {
    const [ingressPort, adminPort, fabricPort, deploymentPort] = (await freePorts(4)) as [
      number,
      number,
      number,
      number,
    ];
    const deployment = ManagedProcess.start("restate deployment", process.execPath, [app], {
      cwd: pkgs.dir,
      env: { ...process.env, PORT: String(deploymentPort), RESTATE_LOGGING: "WARN" },
    });
    procs.push(deployment);
    const server = ManagedProcess.start(
      "restate-server",
      bin,
      [
        "--base-dir",
        join(dir, "data"),
        "--node-name",
        "bench",
        "--listen-mode",
        "tcp",
        "--no-logo",
      ],
      {
        cwd: dir,
        env: {
          ...process.env,
          RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingressPort}`,
          RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${adminPort}`,
          RESTATE_BIND_ADDRESS: `127.0.0.1:${fabricPort}`,
          RESTATE_ADVERTISED_ADDRESS: `http://127.0.0.1:${fabricPort}/`,
          RESTATE_LOG_FORMAT: "compact",
          RESTATE_LOG_DISABLE_ANSI_CODES: "true",
          RESTATE_DISABLE_TELEMETRY: "true",
          RESTATE_ADMIN__DISABLE_WEB_UI: "true",
          RESTATE_DEFAULT_NUM_PARTITIONS: String(partitions),
          // The defaults, stated: the log's RocksDB WAL is fsynced on every write batch.
          RESTATE_LOG_SERVER__ROCKSDB_DISABLE_WAL_FSYNC: "false",
          RESTATE_BIFROST__LOCAL__ROCKSDB_DISABLE_WAL_FSYNC: "false",
        },
      },
    );
    procs.push(server);
    forget = removeOnExit(dir);
    const admin = `http://127.0.0.1:${adminPort}`;
    const ingress = `http://127.0.0.1:${ingressPort}`;
    const t0 = Date.now();

    await until("the deployment starts", START_TIMEOUT_MS, [deployment], () =>
      Promise.resolve(
        deployment.output(50).includes(`ready ${deploymentPort}`) ? undefined : "no ready line",
      ),
    );
    await until("restate-server starts", START_TIMEOUT_MS, [server], async () => {
      const a = await httpStatus(`${admin}/health`);
      if (typeof a === "string") return `admin: ${a}`;
      if (a.status !== 200) return `admin /health: ${a.status}`;
      const i = await httpStatus(`${ingress}/restate/health`);
      if (typeof i === "string") return `ingress: ${i}`;
      return i.status === 200 ? undefined : `ingress /restate/health: ${i.status}`;
    });
    await until("registering the deployment", START_TIMEOUT_MS, [server, deployment], async () => {
      const r = await httpStatus(`${admin}/deployments`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ uri: `http://127.0.0.1:${deploymentPort}` }),
      });
      if (typeof r === "string") return r;
      return r.status === 200 || r.status === 201
        ? undefined
        : `POST /deployments: ${r.status} ${r.body.slice(0, 200)}`;
    });

    client = new PeerClient(ingress);
    const c = client;
    const nextId = workflowIds("restate");
    const runWorkflow = async (worker: number, seq: number): Promise<unknown> => {
      const id = nextId(worker, seq);
      const out = await c.postJson(`/${WORKFLOW}/${encodeURIComponent(id)}/run`, { v: seq });
      return checkOutput("restate", id, seq, out);
    };
    await until(
      "the first workflow completes",
      FIRST_WORKFLOW_TIMEOUT_MS,
      [server, deployment],
      async () => {
        try {
          await runWorkflow(0, 0);
          return undefined;
        } catch (err) {
          return err instanceof Error ? err.message : String(err);
        }
      },
    );
    const readyMs = Date.now() - t0;
    say(
      `restate: restate-server ${version} up at ${ingress} (deployment registered, ${readyMs} ms)`,
    );

    let stopped: Promise<void> | undefined;
    return {
      system: "restate",
      mode: "single-node, fsync",
      version: `restate-server ${version}, @restatedev/restate-sdk ${pkgs.versions["@restatedev/restate-sdk"]}`,
      durability:
        "one node, all roles; a ctx.run result and the workflow's completion are appended to the " +
        "log (Bifrost replicated loglet, replication 1, on the node's own log-server), which " +
        "writes each batch to RocksDB with its WAL fsynced (log-server rocksdb-disable-wal-fsync " +
        "= false, the default) before acknowledging; the handler continues after the append is " +
        "acknowledged, the ingress answers after the completion is",
      notes: [
        ...pkgs.notes,
        `server: ${bin} (--listen-mode tcp, ports ingress ${ingressPort}, admin ${adminPort}, fabric ${fabricPort}; base dir in a temp dir)`,
        `server configuration: defaults (replicated loglet, replication 1) with ${partitions} partitions${partitions === DEFAULT_PARTITIONS ? " (the default)" : ""}, telemetry and web UI off`,
        `deployment: Node ${process.version} process, HTTP/2 (h2c) on 127.0.0.1:${deploymentPort}, SDK logging WARN`,
        `client: POST /${WORKFLOW}/<fresh id>/run on the ingress (undici Pool, keep-alive), waits for the result`,
        `ready after ${readyMs} ms`,
        "at start the server looks up its latest release on GitHub; without a route out it logs one 'ERROR octocrab' line and carries on",
      ],
      runWorkflow,
      stop: () => (stopped ??= teardown()),
    };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    await teardown();
    return { skipped: `restate: ${why}` };
  }
}
