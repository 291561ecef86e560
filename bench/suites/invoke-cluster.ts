/**
 * `npm run bench -- invoke --cluster`: invocations through a gateway in front of a local
 * cluster (engines running functions, balanced by the gateway). Not measured yet: this is
 * where the cluster figures go, with the same workloads and rows as the embedded ones
 * (mode "cluster"), so that the two can be compared in one table.
 */
import type { SuiteOptions, SuiteOutput } from "../lib/suite.js";

export function runInvokeCluster(_options: SuiteOptions): Promise<SuiteOutput> {
  return Promise.resolve({
    rows: [],
    skipped: [
      {
        system: "boki",
        mode: "cluster",
        reason: "invocations through a gateway in front of a cluster are not measured yet",
      },
    ],
  });
}
