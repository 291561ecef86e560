/**
 * Failures of a real cluster: every node its own process on loopback TCP, real lmdb disks,
 * real etcd, two controller processes. While appends run through both engines, one node at
 * a time is killed with SIGKILL (a storage node, a backup sequencer, the primary sequencer,
 * the active controller, an engine); after each, the cluster must serve appends through
 * every live engine again within a bound, and the killed node is restarted on its disk and
 * must rejoin. Then two spare nodes of the config (a storage node and an engine, with empty
 * disks) start and must be placed in a new term. At the end every acknowledged append is
 * read exactly once, at its sequence number, in the same order from every engine, the new
 * one included.
 *
 * The recovery times are printed (kill → first append through every live engine that was
 * issued after the kill and succeeded).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/tmp.js";
import { eventually, sleep } from "./helpers/async.js";
import { recoveryTime, type Attempt } from "./helpers/attempts.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { requireEtcd, startEtcd, type EtcdProcess } from "./helpers/etcd-process.js";
import type { ClusterConfig } from "../src/cluster/config.js";
import { nodeCommand } from "../src/cluster/supervisor.js";
import { ClusterClient } from "../src/cluster/client.js";
import { EtcdStore, type CoordStore } from "../src/coord/index.js";
import { readPublishedView } from "../src/cluster/view-follower.js";
import { CONTROLLER_ELECTION } from "../src/controller/controller.js";
import { formatClusterStatus, readClusterStatus } from "../src/controller/status.js";
import { parseBookId } from "../src/log/types.js";
import { nodesOfView } from "../src/log/view.js";

const BIN = fileURLToPath(new URL("../bin/boki.js", import.meta.url));
const BOOKS = [1, 2, 3, 4];
/** Bound on the time from a kill until every live engine serves appends again. */
const RECOVERY_BOUND_MS = 20_000;
/** Bound on a restarted node getting a place in a new view again. */
const REJOIN_BOUND_MS = 30_000;

/** The client's index of engine `engine-<i>`. */
const engineIndex = (id: string): number => Number(id.slice("engine-".length));

/** `eventually`, counting a check that throws (the cluster not ready yet) as not yet. */
const eventuallyOk = <T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
): Promise<T> => eventually(what, () => check().catch(() => null), timeoutMs);

interface Acked {
  readonly book: number;
  readonly text: string;
  readonly seqnum: number;
}

describe("failures of a real cluster (processes, TCP, lmdb, etcd)", () => {
  const t = tempDir();
  let etcd: EtcdProcess;
  let store: CoordStore;
  let config: ClusterConfig;
  let configPath: string;
  let storeSpec: string;
  const procs = new Map<string, ChildProcess>();
  const output = new Map<string, string[]>();
  let client: ClusterClient;

  const spawnTracked = (id: string, args: string[]): void => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    output.set(id, lines);
    const keep = (b: Buffer): void => {
      lines.push(
        ...b
          .toString("utf8")
          .split("\n")
          .filter((l) => l !== ""),
      );
      if (lines.length > 200) lines.splice(0, lines.length - 200);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    procs.set(id, child);
  };
  const startNode = (id: string): void =>
    spawnTracked(id, nodeCommand(configPath, id, 1, "warn", undefined, storeSpec));
  const startController = (id: string): void =>
    spawnTracked(id, [
      BIN,
      "controller",
      "--config",
      configPath,
      "--store",
      storeSpec,
      "--id",
      id,
      "--log-level",
      "warn",
    ]);
  const kill = async (id: string): Promise<void> => {
    const p = procs.get(id)!;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  };
  const view = async () => (await readPublishedView(store))!.view;

  // The load: a few appenders per engine, each on its own books, recording what is acknowledged.
  const acked: Acked[] = [];
  const attempts: Attempt[] = [];
  let stopping = false;
  let loaders: Promise<void>[] = [];
  let counter = 0;
  const runLoad = (engines: readonly string[]): void => {
    loaders = engines.flatMap((engine) =>
      [0, 1].map(async () => {
        while (!stopping) {
          const book = BOOKS[counter % BOOKS.length]!;
          const text = `${engine}-${counter++}`;
          const a: Attempt = { engine, startedAt: Date.now(), okAt: null };
          attempts.push(a);
          try {
            const seqnum = await client
              .book(parseBookId(book), { engine: engineIndex(engine) })
              .append([], text);
            a.okAt = Date.now();
            acked.push({ book, text, seqnum: Number(seqnum) });
          } catch {
            await sleep(20);
          }
        }
      }),
    );
  };
  const recovered = (killedAt: number, engines: readonly string[]): number | null =>
    recoveryTime(attempts, killedAt, engines);

  beforeAll(async () => {
    requireEtcd();
    etcd = await startEtcd();
    store = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    storeSpec = `etcd:${etcd.endpoint.replace(/^http:\/\//, "")}`;
    configPath = join(t.dir, "cluster.json");
    config = await writeClusterConfig(
      configPath,
      [
        ...["sequencer", "sequencer", "sequencer"],
        ...["storage", "storage", "storage", "storage"],
        ...["engine", "engine"],
        // New empty nodes that join at the end.
        { role: "storage", spare: true },
        { role: "engine", spare: true },
      ],
      { replication: 3, dataDir: join(t.dir, "data"), durability: "memory" },
    );
    startController("controller-a");
    await eventuallyOk("a view is published", async () => readPublishedView(store), 20_000);
    startController("controller-b");
    for (const n of config.nodes) if (n.spare !== true) startNode(n.id);
    client = await ClusterClient.connect({
      engines: config.nodes
        .filter((n) => n.role === "engine")
        .map((n) => ({ id: n.id, host: n.host, port: n.port })),
      host: "127.0.0.1",
      requestTimeoutMs: 5_000,
    });
    await eventuallyOk(
      "both engines append",
      async () => {
        for (const e of ["engine-0", "engine-1"])
          await client.book(parseBookId(9), { engine: engineIndex(e) }).append([], "warm-up");
        return true;
      },
      30_000,
    );
  }, 90_000);

  afterAll(async () => {
    stopping = true;
    await Promise.all(loaders);
    await client?.close();
    for (const p of procs.values()) p.kill("SIGKILL");
    await store?.close();
    await etcd?.destroy();
    t.remove();
  }, 30_000);

  it("kill -9 a storage node, a backup sequencer, the primary sequencer, the active controller and an engine in turn: the cluster recovers each time, the killed node rejoins, new empty nodes join, boki reconfigure and boki drain work, and no acknowledged append is lost or reordered", async () => {
    const engines = ["engine-0", "engine-1"];
    runLoad(engines);
    await sleep(500);
    const times: Record<string, number> = {};
    const victims: Array<{ role: string; pick: () => Promise<string> }> = [
      { role: "storage", pick: () => Promise.resolve("storage-0") },
      { role: "backup sequencer", pick: async () => (await view()).config.sequencers[0]!.at(-1)! },
      { role: "primary sequencer", pick: async () => (await view()).config.sequencers[0]![0]! },
      // The controller before the engine: a restarted engine catches up on the log's index
      // for a while, which would count against the next kill.
      {
        role: "controller",
        pick: async () => (await store.leader(CONTROLLER_ELECTION))!.candidateId,
      },
      { role: "engine", pick: () => Promise.resolve("engine-1") },
    ];
    for (const v of victims) {
      const id = await v.pick();
      const termBefore = (await view()).term;
      const killedAt = Date.now();
      await kill(id);
      const live = engines.filter((e) => e !== id);
      const took = await eventuallyOk(
        `appends through every live engine after killing ${id}`,
        () => Promise.resolve(recovered(killedAt, live)),
        RECOVERY_BOUND_MS,
      ).catch((err: unknown) => {
        throw new Error(
          `${(err as Error).message}\n${[...output].map(([n, l]) => `--- ${n}\n${l.slice(-15).join("\n")}`).join("\n")}`,
        );
      });
      times[`${v.role} (${id})`] = took;
      if (v.role === "controller") {
        // The standby takes over; the next failure is its to handle.
        await eventuallyOk(
          "the standby controller leads",
          async () => (await store.leader(CONTROLLER_ELECTION))?.candidateId !== id,
          REJOIN_BOUND_MS,
        );
        startController(id);
        continue;
      }
      await eventuallyOk(
        `a view without ${id}`,
        async () => {
          const v = await view();
          return v.term > termBefore && !nodesOfView(v.config).has(id);
        },
        REJOIN_BOUND_MS,
      );
      startNode(id);
      await eventuallyOk(
        `${id} rejoins`,
        async () => nodesOfView((await view()).config).has(id),
        REJOIN_BOUND_MS,
      );
      // Before the next kill, every engine serves appends again (a restarted engine first
      // catches up on the log).
      const back = Date.now();
      await eventuallyOk(
        `every engine serves appends after ${id} rejoined`,
        () => Promise.resolve(recovered(back, engines)),
        REJOIN_BOUND_MS,
      );
    }
    // A failure handled by the controller that took over: a storage node once more.
    {
      const killedAt = Date.now();
      await kill("storage-1");
      times["storage after controller failover (storage-1)"] = await eventuallyOk(
        "appends after killing storage-1 under the new controller",
        () => Promise.resolve(recovered(killedAt, engines)),
        RECOVERY_BOUND_MS,
      );
    }
    // New empty nodes join: a storage node, whose disk then holds new shards, and an engine
    // that serves appends and reads the whole log.
    for (const id of ["storage-4", "engine-2"]) {
      startNode(id);
      const joinedAt = Date.now();
      await eventuallyOk(
        `${id} joins`,
        async () => nodesOfView((await view()).config).has(id),
        REJOIN_BOUND_MS,
      );
      times[`new ${id} placed`] = Date.now() - joinedAt;
    }
    {
      const v = await view();
      const shards = v.config.engines.map((e) => v.shardOf(e));
      expect(shards.some((s) => v.replicasOf(s).includes("storage-4"))).toBe(true);
      await eventuallyOk(
        "an append through the new engine",
        () => client.book(parseBookId(1), { engine: engineIndex("engine-2") }).append([], "new"),
        REJOIN_BOUND_MS,
      );
    }
    // The operator's commands: `boki reconfigure` gives a new term with the same nodes,
    // `boki drain` one without the node.
    {
      const before = await view();
      const cli = (...args: string[]): string =>
        execFileSync(process.execPath, [BIN, ...args, "--store", storeSpec], {
          encoding: "utf8",
          timeout: 20_000,
        });
      expect(cli("reconfigure")).toContain("asked the controller for a new term");
      const next = await eventuallyOk(
        "a new term after boki reconfigure",
        async () => {
          const v = await view();
          return v.term > before.term ? v : null;
        },
        REJOIN_BOUND_MS,
      );
      expect(nodesOfView(next.config)).toEqual(nodesOfView(before.config));
      expect(cli("drain", "storage-4")).toContain("drain storage-4");
      await eventuallyOk(
        "storage-4 drained",
        async () => !nodesOfView((await view()).config).has("storage-4"),
        REJOIN_BOUND_MS,
      );
    }
    // `boki status` shows each log's committed position, as the current primary reports it.
    const final = await view();
    const status = await eventuallyOk(
      "the primary reports its log's position",
      async () => {
        const st = await readClusterStatus(store);
        const p = st.logs[0]?.position;
        return p !== null && p !== undefined && p.term === final.term ? st : null;
      },
      REJOIN_BOUND_MS,
    );
    expect(status.logs[0]!.position!.position).toBeGreaterThanOrEqual(final.startOf(0));
    expect(formatClusterStatus(status)).toContain(
      `committed position ${status.logs[0]!.position!.position}`,
    );
    await sleep(300);
    stopping = true;
    await Promise.all(loaders);
    console.log(
      `recovery (kill → appends through every live engine): ${Object.entries(times)
        .map(([k, ms]) => `${k} ${ms} ms`)
        .join("; ")}; final term ${(await view()).term}; ${acked.length} appends acknowledged`,
    );

    // Every acknowledged append exactly once, at its seqnum, the same from every engine.
    for (const book of BOOKS) {
      const reads: Array<Array<[number, string]>> = [];
      for (const e of [...engines, "engine-2"]) {
        const b = client.book(parseBookId(book), { engine: engineIndex(e) });
        // Make this handle's position cover every acknowledged append: append a marker first.
        await b.append([], `marker-${e}`);
        const out: Array<[number, string]> = [];
        let next = 0;
        for (;;) {
          const r = await b.readNext(0, next);
          if (r === null) break;
          const text = new TextDecoder().decode(r.data);
          if (!text.startsWith("marker-")) out.push([Number(r.seqnum), text]);
          next = Number(r.seqnum) + 1;
        }
        reads.push(out);
      }
      for (const r of reads.slice(1)) expect(r).toEqual(reads[0]);
      const seqnums = reads[0]!.map(([s]) => s);
      expect(new Set(seqnums).size).toBe(seqnums.length);
      const at = new Map<string, number[]>();
      for (const [s, text] of reads[0]!) at.set(text, [...(at.get(text) ?? []), s]);
      for (const a of acked.filter((x) => x.book === book))
        expect(at.get(a.text), `append ${a.text}`).toEqual([a.seqnum]);
    }
    for (const ms of Object.values(times)) expect(ms).toBeLessThan(RECOVERY_BOUND_MS);
  }, 300_000);
});
