import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { tempDir } from "./helpers/tmp.js";
import { LOG_ROLES, writeClusterConfig } from "./helpers/cluster-config.js";
import { ClusterClient } from "../src/cluster/client.js";
import type { ClusterConfig } from "../src/cluster/config.js";
import { superviseCluster, type Supervisor } from "../src/cluster/supervisor.js";
import {
  appendConcurrently,
  verifyReadYourWritesAcrossEngines,
  verifySameOrderEverywhere,
  type Acked,
  type BookOn,
} from "./helpers/scenario.js";
import { withInProcCluster } from "./helpers/inproc-cluster.js";

/** Waits until an append through every engine succeeds (nodes are up and connected). */
async function waitReady(client: ClusterClient, engines: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (let e = 0; e < engines; e++) {
    for (;;) {
      try {
        await client.book(999, { engine: e }).append([], "ready");
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}

describe("a cluster of real processes over TCP (3 sequencers, 3 storage nodes, 2 engines, replication 3, one index replica per log)", () => {
  const t = tempDir();
  const configPath = join(t.dir, "cluster.json");
  let config: ClusterConfig;
  let sup: Supervisor | null = null;
  let client: ClusterClient | null = null;
  const exits: string[] = [];

  const up = async (): Promise<ClusterClient> => {
    sup = superviseCluster(configPath, config, (id, code) => exits.push(`${id}:${code}`), "error");
    const c = await ClusterClient.connect({
      engines: config.nodes
        .filter((n) => n.role === "engine")
        .map((n) => ({ id: n.id, host: n.host, port: n.port })),
      // Longer than an engine's own append timeout (10 s), so that on a loaded machine a slow
      // append fails with the engine's error, if at all, rather than the client's.
      requestTimeoutMs: 15_000,
    });
    await waitReady(c, 2);
    return c;
  };
  const down = async (): Promise<void> => {
    await client?.close();
    client = null;
    await sup?.stop();
    sup = null;
  };
  const bookOn: BookOn = (engine, book, position = 0) => client!.book(book, { engine, position });

  beforeAll(async () => {
    // One index replica per physical log: reads of a book through the other engine use the remote index.
    config = await writeClusterConfig(configPath, LOG_ROLES, {
      physicalLogs: 2,
      replication: 3,
      durability: "disk",
      indexReplicas: 1,
      dataDir: "data",
    });
    client = await up();
  }, 90_000);

  afterAll(async () => {
    await down();
    t.remove();
  }, 30_000);

  const books = [1, 2, 3, 4];
  let acked: Acked[] = [];

  it("orders concurrent appends through both engines once, and both engines read the same order", async () => {
    acked = await appendConcurrently(bookOn, 2, books, 16, 40);
    expect(acked).toHaveLength(640);
    // A fresh session at position 0 may not see everything; read at a position past every acknowledgement.
    const probe = client!.book(1, { engine: 0 });
    await probe.append([], "probe");
    await verifySameOrderEverywhere(bookOn, 2, books, acked, probe.position);
  }, 60_000);

  it("gives read-your-writes and monotonic reads when a session moves between engines", async () => {
    await verifyReadYourWritesAcrossEngines(bookOn, 7);
    await verifyReadYourWritesAcrossEngines((e, b, p) => bookOn(1 - e, b, p), 8);
  }, 30_000);

  it("keeps every acknowledged append, in order, after the whole cluster restarts", async () => {
    await down();
    client = await up();
    const probe = client.book(1, { engine: 1 });
    await probe.append([], "after-restart");
    await verifySameOrderEverywhere(bookOn, 2, books, acked, probe.position);
    expect(exits.filter((e) => !e.endsWith(":0"))).toEqual([]);
  }, 90_000);
});

describe("the same scenario on the in-process transport", () => {
  it("orders concurrent appends through both engines once, with read-your-writes across engines", async () => {
    await withInProcCluster(
      {
        engines: 2,
        storages: 3,
        sequencers: 3,
        replication: 3,
      },
      async (c) => {
        const bookOn: BookOn = (engine, book, position = 0) => c.book(engine, book, position);
        const acked = await appendConcurrently(bookOn, 2, [1, 2, 3, 4], 16, 40);
        const probe = c.book(0, 1);
        await probe.append([], "probe");
        await verifySameOrderEverywhere(bookOn, 2, [1, 2, 3, 4], acked, probe.position);
        await verifyReadYourWritesAcrossEngines(bookOn, 7);
      },
    );
  }, 60_000);
});
