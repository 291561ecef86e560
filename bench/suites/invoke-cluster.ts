/**
 * `npm run bench -- invoke --cluster`: invocations through a gateway node in front of the
 * local cluster (3 sequencers, 3 storage nodes, 2 engines running the functions with
 * `WORKERS` worker threads each, 1 gateway; memory durability, replication 3; every node
 * its own process), with the same workloads and rows as the embedded suite (mode
 * "cluster-memory"). The gateway balances invocations over both engines; a function's
 * log operations go to its engine's own log.
 */
import { measurement, CONCURRENCY, FUNCTIONS, WORKLOADS, type Target } from "./invoke.js";
import { LOCAL_TOPOLOGY, startBokiCluster, type BokiCluster } from "../lib/boki-cluster.js";
import {
  FULL_PHASES,
  QUICK_PHASES,
  runMeasurements,
  windowSeconds,
  type Measurement,
} from "../lib/measure.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import type { SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";

export async function runInvokeCluster(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK_PHASES : FULL_PHASES;
  let cluster: BokiCluster | undefined;
  const target = (): Target => {
    const gw = cluster!.config.nodes.find((n) => n.role === "gateway")!;
    return {
      url: `http://${gw.host}:${gw.port}`,
      mode: "cluster-memory",
      extras: {
        via: "http gateway node in front of 2 engines, undici keep-alive",
        nodes: "3 sequencers, 3 storage (replication 3), 2 engines, 1 gateway",
        durability: "memory (acknowledged once on 3 storage nodes' memory)",
        term: cluster!.term,
      },
    };
  };
  const list: Measurement[] = [];
  for (const workload of WORKLOADS) {
    for (const c of CONCURRENCY) list.push(measurement(target, workload, c));
  }
  progress(
    `invoke --cluster: ${list.length} measurements, ~${Math.round(windowSeconds(list.length, phases))} s of windows plus the cluster's start`,
  );
  const rows: ResultRow[] = [];
  await withTempDir("boki-bench-invoke-cluster", async (dir) => {
    cluster = await startBokiCluster({
      dir,
      durability: "memory",
      ...LOCAL_TOPOLOGY,
      indexReplicas: 2,
      gateways: 1,
      functions: { path: FUNCTIONS },
      say: progress,
    });
    progress(`invoke --cluster: the cluster is up in ${Math.round(cluster.readyMs)} ms`);
    try {
      await runMeasurements(list, { phases, quick: options.quick, into: rows });
    } finally {
      await cluster.stop();
    }
  });
  return {
    rows,
    notes: [
      "system under test: 9 node processes on this machine (3 sequencers, 3 storage, 2 engines with 2 worker threads each, 1 gateway); load generator: this process",
    ],
  };
}
