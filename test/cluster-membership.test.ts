import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { tempDir } from "./helpers/tmp.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { requireEtcd, startEtcd, type EtcdProcess } from "./helpers/etcd-process.js";
import type { ClusterConfig } from "../src/cluster/config.js";
import { superviseCluster, type Supervisor } from "../src/cluster/supervisor.js";
import { EtcdStore, type CoordStore } from "../src/coord/index.js";
import { readClusterStatus } from "../src/controller/status.js";
import { NODE_LEASE_TTL_MS } from "../src/controller/membership.js";

/** Polls `check` every 100 ms until it holds, failing after `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("nodes register in etcd with leases (real processes, real etcd)", () => {
  const t = tempDir();
  let etcd: EtcdProcess;
  let store: CoordStore;
  let sup: Supervisor | null = null;
  let config: ClusterConfig;

  const live = async (): Promise<string[]> =>
    (await readClusterStatus(store)).nodes.filter((n) => n.health === "live").map((n) => n.id);

  beforeAll(async () => {
    requireEtcd();
    etcd = await startEtcd();
    store = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    const configPath = join(t.dir, "cluster.json");
    config = await writeClusterConfig(configPath, ["sequencer", "storage", "engine"], {
      replication: 1,
      dataDir: "data",
    });
    const spec = `etcd:${etcd.endpoint.replace(/^http:\/\//, "")}`;
    sup = superviseCluster(configPath, config, () => undefined, "error", undefined, spec);
  }, 60_000);

  afterAll(async () => {
    await sup?.stop();
    await store?.close();
    await etcd?.destroy();
    t.remove();
  }, 30_000);

  it("every node of a running cluster is registered and live", async () => {
    await eventually(async () => (await live()).length === 3, 30_000);
    const status = await readClusterStatus(store);
    const storage = status.nodes.find((n) => n.id === "storage-0")!;
    expect(storage.member).toMatchObject({
      role: "storage",
      host: "127.0.0.1",
      term: sup!.term,
      pid: sup!.children.get("storage-0")!.pid,
    });
  }, 40_000);

  it("a node killed with SIGKILL drops out once its lease expires; the others stay", async () => {
    const killedAt = Date.now();
    sup!.children.get("storage-0")!.kill("SIGKILL");
    await eventually(async () => !(await live()).includes("storage-0"), 4 * NODE_LEASE_TTL_MS);
    // Not before the lease could have expired: the key went with the lease, not with a delete.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(NODE_LEASE_TTL_MS / 2);
    expect((await live()).sort()).toEqual(["engine-0", "sequencer-0"]);
  }, 30_000);

  it("a node stopped cleanly deregisters at once", async () => {
    const stoppedAt = Date.now();
    await new Promise<void>((resolve) => {
      const child = sup!.children.get("engine-0")!;
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
    await eventually(async () => !(await live()).includes("engine-0"), 10_000);
    expect(Date.now() - stoppedAt).toBeLessThan(NODE_LEASE_TTL_MS + 2_000);
  }, 20_000);
});
