import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/tmp.js";
import { LOG_ROLES, writeClusterConfig } from "./helpers/cluster-config.js";
import type { ClusterConfig } from "../src/cluster/config.js";
import { nodeCommand, superviseCluster, type Supervisor } from "../src/cluster/supervisor.js";
import { gatewayScenarios } from "./helpers/gateway-scenarios.js";
import { call } from "./helpers/http.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/functions", import.meta.url));
const FUNCTIONS = { path: FIXTURES, timeoutMs: 1500 };

/** Waits until the gateway answers and an invocation through it succeeds. */
async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await call(url, "echo", "ready");
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway at ${url} not ready within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts one node of the cluster as its own process (as `cluster up` would). */
function startNodeProcess(configPath: string, id: string, term: number): ChildProcess {
  return spawn(process.execPath, nodeCommand(configPath, id, term, "error", FUNCTIONS), {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

describe("functions on a cluster of real processes (3 sequencers, 3 storage nodes, 2 engines, 1 gateway)", () => {
  const t = tempDir();
  const configPath = join(t.dir, "cluster.json");
  let config: ClusterConfig;
  let sup: Supervisor | null = null;
  let url = "";
  const exits: string[] = [];

  beforeAll(async () => {
    config = await writeClusterConfig(configPath, [...LOG_ROLES, "gateway"], {
      replication: 3,
      durability: "disk",
      dataDir: "data",
    });
    sup = superviseCluster(
      configPath,
      config,
      (id, code) => exits.push(`${id}:${code}`),
      "error",
      FUNCTIONS,
    );
    const gw = config.nodes.find((n) => n.role === "gateway")!;
    url = `http://${gw.host}:${gw.port}`;
    await waitReady(url);
  }, 90_000);

  afterAll(async () => {
    await sup?.stop();
    t.remove();
  }, 30_000);

  gatewayScenarios(() => url);

  it("balances invocations over both engines", async () => {
    const engines = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const r = await call(url, "whereami", null);
      expect(r.status).toBe(200);
      engines.add(String(r.json));
    }
    expect(engines.size).toBe(2);
  });

  // Last: it leaves the cluster without a gateway.
  it("honours an idempotency key across a restart of the gateway process", async () => {
    const key = { "idempotency-key": "cluster-restart-key" };
    const first = await call(url, "append", { tag: "idem-restart", value: "once" }, key);
    expect(first.status).toBe(200);
    // Stop the gateway started by the supervisor and start a new one on the same port.
    const gw = config.nodes.find((n) => n.role === "gateway")!;
    await stopProcess(sup!.children.get(gw.id)!);
    const again = startNodeProcess(configPath, gw.id, sup!.term);
    try {
      await waitReady(url);
      const second = await call(url, "append", { tag: "idem-restart", value: "once" }, key);
      expect(second.status).toBe(200);
      expect(second.json).toEqual(first.json);
      expect((await call(url, "read", { tag: "idem-restart" })).json).toEqual(["once"]);
    } finally {
      await stopProcess(again);
    }
  }, 90_000);
});
