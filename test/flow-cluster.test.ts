/**
 * Workflows on a cluster of real processes (3 sequencers, 3 storage nodes, 2 engines, a
 * gateway) when an engine is killed with SIGKILL while they run, then restarted: every
 * instance completes, and each step's effect was asked for under its own key only.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ClusterConfig } from "../src/cluster/config.js";
import { nodeCommand, superviseCluster, type Supervisor } from "../src/cluster/supervisor.js";
import { eventually, sleep } from "./helpers/async.js";
import { LOG_ROLES, writeClusterConfig } from "./helpers/cluster-config.js";
import { startEffectCounter, type EffectCounter } from "./helpers/effect-counter.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const FUNCTIONS = {
  path: fileURLToPath(new URL("./fixtures/flow", import.meta.url)),
  timeoutMs: 3000,
};
const INSTANCES = 24;
const STEPS = 5;

describe("workflows on a cluster when an engine is killed", () => {
  const t = tempDir("boki-flow-cluster-");
  const configPath = join(t.dir, "cluster.json");
  let config: ClusterConfig;
  let sup: Supervisor | null = null;
  let restarted: ChildProcess | null = null;
  let counter: EffectCounter;
  let url = "";

  beforeAll(async () => {
    counter = await startEffectCounter();
    config = await writeClusterConfig(configPath, [...LOG_ROLES, "gateway"], {
      replication: 3,
      durability: "disk",
      dataDir: "data",
    });
    sup = superviseCluster(configPath, config, () => undefined, "error", FUNCTIONS);
    const gw = config.nodes.find((n) => n.role === "gateway")!;
    url = `http://${gw.host}:${gw.port}`;
    await eventually(
      "the gateway serving workflows",
      async () => {
        try {
          const r = await http(url, "POST", "/workflow/chain", {
            body: '{"steps":1}',
            headers: { "x-boki-workflow-id": "warm-up" },
          });
          return r.status === 200;
        } catch {
          return false;
        }
      },
      60_000,
    );
  }, 90_000);

  afterAll(async () => {
    restarted?.kill("SIGKILL");
    await sup?.stop();
    await counter?.close();
    t.remove();
  }, 30_000);

  test("every instance completes after the engine's SIGKILL and restart, each step's effect asked for under its own key only", async () => {
    const ids = Array.from({ length: INSTANCES }, (_, i) => `k-${i}`);
    const body = JSON.stringify({ steps: STEPS, counter: counter.url, pauseMs: 20 });
    const start = (id: string) =>
      http(url, "POST", "/workflow/chain", {
        body,
        headers: { "x-boki-workflow-id": id },
        timeoutMs: 30_000,
      }).catch(() => undefined);
    const running = ids.map((id) => start(id));
    await sleep(150);
    const engine =
      config.nodes.find((n) => n.role === "engine" && n.id.endsWith("1")) ??
      config.nodes.filter((n) => n.role === "engine")[1]!;
    sup!.children.get(engine.id)!.kill("SIGKILL");
    await Promise.all(running);
    restarted = spawn(
      process.execPath,
      nodeCommand(configPath, engine.id, sup!.term, "error", FUNCTIONS),
      {
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    // A caller whose request failed sends it again (joining the instance if it began).
    const status = async (id: string) =>
      (await http(url, "GET", `/workflows/${id}`)).json as { status?: string; output?: unknown };
    await eventually(
      "every instance's end",
      async () => {
        for (const id of ids) {
          const s = await status(id);
          if (s.status === "succeeded") continue;
          if (s.status === undefined) void start(id);
          return false;
        }
        return true;
      },
      90_000,
      async () =>
        (
          await Promise.all(
            ids.map(async (id) => `${id}: ${(await status(id)).status ?? "not found"}`),
          )
        ).join("\n"),
    );
    let repeated = 0;
    for (const id of ids) {
      const expected = Array.from({ length: STEPS }, (_, k) => `${id}:${k + 1}`);
      expect((await status(id)).output).toEqual({ keys: expected });
      expect([...counter.counts.keys()].filter((k) => k.startsWith(`${id}:`)).sort()).toEqual(
        [...expected].sort(),
      );
      for (const k of expected) repeated += (counter.counts.get(k) ?? 0) - 1;
    }
    console.log(
      `flow cluster test: ${INSTANCES} instances of ${STEPS} steps; ${repeated} effects asked for again after the engine's kill`,
    );
  }, 180_000);
});
