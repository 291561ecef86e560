/**
 * A local Boki cluster for benchmarks: every node its own OS process (`bin/boki.js start`,
 * the command line `boki cluster up` uses), all on 127.0.0.1 with ports found free at
 * runtime, data under a directory the caller owns (a temp dir), and a `ClusterClient` in
 * this process talking to the engines over TCP.
 *
 * The nodes are started through `ManagedProcess` (bench/lib/peers/proc.ts) rather than
 * `superviseCluster`, with the same arguments and the term from the supervisor's own
 * `nextTerm`: their output is kept (and shown when start-up fails) instead of going to this
 * process's stdout, where the results table goes, and they are SIGKILLed by the benchmark's
 * exit/interrupt hook before the temp dir is removed.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ClusterClient } from "../../src/cluster/client.js";
import {
  loadClusterConfig,
  viewOf,
  type ClusterConfig,
  type NodeConfig,
  type Role,
} from "../../src/cluster/config.js";
import { nextTerm, nodeCommand, type FunctionsOption } from "../../src/cluster/supervisor.js";
import type { View } from "../../src/log/view.js";
import { freePorts, ManagedProcess, type StopInfo } from "./peers/proc.js";

/**
 * The client's request timeout: longer than the engine's own append timeout (10 s), so that
 * an append the cluster cannot order fails with the engine's error, not the client's.
 */
export const CLIENT_TIMEOUT_MS = 15_000;

/** Longest a cluster may take to accept an append through every engine. */
export const CLUSTER_READY_TIMEOUT_MS = 60_000;

/**
 * The local cluster the benchmarks and profiles run: 3 sequencers (one group sequencing one
 * physical log, as the cluster config defaults to), 3 storage nodes with replication 3, and
 * 2 engines. Callers add the index replicas.
 */
export const LOCAL_TOPOLOGY = {
  sequencers: 3,
  storages: 3,
  engines: 2,
  physicalLogs: 1,
  replication: 3,
  sequencersPerLog: 3,
} as const;

export interface BokiClusterOptions {
  /** Directory for the config file and the nodes' data (`<dir>/data/<node id>`). */
  readonly dir: string;
  readonly durability: "memory" | "disk";
  readonly physicalLogs: number;
  readonly replication: number;
  readonly sequencersPerLog: number;
  readonly indexReplicas: number;
  readonly sequencers: number;
  readonly storages: number;
  readonly engines: number;
  /** Gateway nodes (default 0); they need `functions`. */
  readonly gateways?: number;
  /** Function modules the engines run and the gateways serve. */
  readonly functions?: FunctionsOption;
  /** Give every node a metrics endpoint (`metricsPort` in the config). */
  readonly metrics?: boolean;
  /** The primary sequencers' cut interval (default: the config's default). */
  readonly cutIntervalMs?: number;
  /** The nodes' --log-level (default "warn"). */
  readonly logLevel?: string;
  /** Extra node options for one node's process, e.g. `--cpu-prof` (for profiling). */
  readonly nodeArgs?: (id: string) => readonly string[];
  /** Lines of each node's output kept (default 400). */
  readonly keepLines?: number;
  readonly say: (msg: string) => void;
}

export interface BokiCluster {
  readonly config: ClusterConfig;
  readonly configPath: string;
  readonly term: number;
  readonly view: View;
  readonly engines: readonly NodeConfig[];
  readonly client: ClusterClient;
  readonly processes: ReadonlyMap<string, ManagedProcess>;
  /** Milliseconds from spawning the nodes until an append through every engine succeeded. */
  readonly readyMs: number;
  /** Node ids that exited while the cluster was meant to be up. */
  readonly exitedEarly: () => string[];
  /** Closes the client, then stops every node (SIGTERM, SIGKILL after 5 s). Never rejects. */
  stop(): Promise<Array<StopInfo & { id: string }>>;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function writeConfig(o: BokiClusterOptions, ports: readonly number[]): string {
  const roles: Array<[Role, number]> = [
    ["sequencer", o.sequencers],
    ["storage", o.storages],
    ["engine", o.engines],
    ["gateway", o.gateways ?? 0],
  ];
  const nodes: NodeConfig[] = [];
  let k = 0;
  for (const [role, n] of roles) {
    for (let i = 0; i < n; i++) {
      const port = ports[k++]!;
      nodes.push({
        id: `${role}-${i}`,
        role,
        host: "127.0.0.1",
        port,
        ...(o.metrics === true ? { metricsPort: ports[k++]! } : {}),
      });
    }
  }
  const path = join(o.dir, "cluster.json");
  writeFileSync(
    path,
    JSON.stringify(
      {
        physicalLogs: o.physicalLogs,
        replication: o.replication,
        sequencersPerLog: o.sequencersPerLog,
        durability: o.durability,
        indexReplicas: o.indexReplicas,
        ...(o.cutIntervalMs === undefined ? {} : { cutIntervalMs: o.cutIntervalMs }),
        dataDir: "data",
        nodes,
      },
      null,
      2,
    ) + "\n",
  );
  return path;
}

async function stopAll(
  processes: ReadonlyMap<string, ManagedProcess>,
): Promise<Array<StopInfo & { id: string }>> {
  return Promise.all([...processes].map(async ([id, p]) => ({ id, ...(await p.stop(5000)) })));
}

/** Spawns every node and waits until an append through each engine is acknowledged. */
async function tryStart(o: BokiClusterOptions): Promise<BokiCluster> {
  const total = o.sequencers + o.storages + o.engines + (o.gateways ?? 0);
  const ports = await freePorts(o.metrics === true ? 2 * total : total);
  const configPath = writeConfig(o, ports);
  const config = loadClusterConfig(configPath);
  const term = nextTerm(config);
  const started = performance.now();
  const processes = new Map<string, ManagedProcess>();
  let stopping = false;
  const exited: string[] = [];
  for (const n of config.nodes) {
    const p = ManagedProcess.start(
      n.id,
      process.execPath,
      [
        ...(o.nodeArgs?.(n.id) ?? []),
        ...nodeCommand(
          configPath,
          n.id,
          term,
          o.logLevel ?? "warn",
          n.role === "engine" || n.role === "gateway" ? o.functions : undefined,
        ),
      ],
      { keepLines: o.keepLines ?? 400 },
    );
    void p.exited.then(() => {
      if (!stopping) exited.push(n.id);
    });
    processes.set(n.id, p);
  }
  const engines = config.nodes.filter((n) => n.role === "engine");
  let client: ClusterClient | undefined;
  const stop = async (): Promise<Array<StopInfo & { id: string }>> => {
    stopping = true;
    await client?.close().catch(() => undefined);
    return stopAll(processes);
  };
  const died = (): string | undefined => {
    const first = exited[0];
    if (first === undefined) return undefined;
    const p = processes.get(first)!;
    const e = p.exit;
    const others = exited.length > 1 ? ` (also exited: ${exited.slice(1).join(", ")})` : "";
    return (
      `node ${first} exited (code ${e?.code ?? "?"}, signal ${e?.signal ?? "none"}` +
      `${e?.error === undefined ? "" : `, ${e.error}`})${others}; its last output (stack frames left out):\n${
        p
          .output(60)
          .split("\n")
          .filter((l) => !/^\s+at /.test(l))
          .slice(-8)
          .join("\n") || "(none)"
      }`
    );
  };
  // Resolves when any node exits, so that start-up does not wait out a request timeout.
  const anyExit = Promise.race([...processes.values()].map((p) => p.exited));
  try {
    client = await ClusterClient.connect({
      engines: engines.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      requestTimeoutMs: CLIENT_TIMEOUT_MS,
    });
    const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
    for (let e = 0; e < engines.length; e++) {
      for (;;) {
        const dead = died();
        if (dead !== undefined) throw new Error(`a node exited during start-up: ${dead}`);
        try {
          const ok = await Promise.race([
            client
              .book(999, { engine: e })
              .append([], "ready")
              .then(() => true),
            anyExit.then(() => false),
          ]);
          if (ok) break;
          continue;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(
              `no append through ${engines[e]!.id} succeeded within ${CLUSTER_READY_TIMEOUT_MS / 1000} s: ${errMessage(err)}`,
            );
          }
          await sleep(100);
        }
      }
    }
    for (const g of config.nodes.filter((n) => n.role === "gateway")) {
      for (;;) {
        const dead = died();
        if (dead !== undefined) throw new Error(`a node exited during start-up: ${dead}`);
        try {
          const r = await fetch(`http://${g.host}:${g.port}/healthz`, {
            signal: AbortSignal.timeout(1000),
          });
          if (r.ok) break;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(
              `gateway ${g.id} did not answer within ${CLUSTER_READY_TIMEOUT_MS / 1000} s: ${errMessage(err)}`,
            );
          }
        }
        await sleep(100);
      }
    }
    const readyMs = performance.now() - started;
    const c = client;
    return {
      config,
      configPath,
      term,
      view: viewOf(config, term),
      engines,
      client: c,
      processes,
      readyMs,
      exitedEarly: () => [...exited],
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Starts a cluster; retries once with fresh ports if a node could not listen (another
 * process took a port between `freePorts` and the node's start).
 */
export async function startBokiCluster(o: BokiClusterOptions): Promise<BokiCluster> {
  try {
    return await tryStart(o);
  } catch (err) {
    if (!errMessage(err).includes("EADDRINUSE")) throw err;
    o.say(`boki: a port was taken meanwhile; retrying once with fresh ports: ${errMessage(err)}`);
    return tryStart(o);
  }
}
