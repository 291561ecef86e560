/**
 * Suite "queue": message queues, producers and consumers at once, 1 KiB messages. Each
 * producer publishes one message at a time and waits until the system says it is stored;
 * each consumer receives up to POP_BATCH messages at a time (waiting up to WAIT_MS when none
 * is there) and acknowledges them. Loads (producers/consumers): 16/16, 64/64, 64/16, 16/64.
 *
 * Measured, per load, over a fixed window after a warm-up: throughput = messages received by
 * consumers per second; delivery delay = receive time − the time its producer sent it (both
 * read from this process's monotonic clock; the send time travels in the message), as a
 * histogram (p50/p99 in the row); producers' publish latency and rate as extras.
 *
 * Systems, all started by the suite on 127.0.0.1 and stopped afterwards:
 *  - boki: `boki dev` (2 worker threads, the embedded log, fsync per append) serving
 *    bench/functions/queue: push = one invocation (one append), pop = one invocation (one
 *    append with the previous batch's acks, plus reading the shard's new records). HTTP load
 *    with undici, keep-alive, one connection per client.
 *  - nats-jetstream: one nats-server, a work-queue stream on file storage, one durable pull
 *    consumer shared by all consumers (fetch batches, ack each message).
 *  - redis-streams: redis-server with AOF (appendfsync everysec, and always); XADD; a
 *    consumer group (XREADGROUP COUNT/BLOCK, with XACK of the previous batch pipelined).
 *  - rabbitmq: Debian's rabbitmq-server, one quorum queue; publisher confirms; consumers
 *    with prefetch POP_BATCH, acking each message.
 * Every client has its own connection. The load generator is this process for all systems.
 * The systems' durability differs and is stated in each row (`durability`).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import type { Redis } from "ioredis";
import { Pool } from "undici";
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import { LatencyHistogram } from "../lib/histogram.js";
import {
  describeWindow,
  round,
  type Measured,
  type Measurement,
  type Phases,
} from "../lib/measure.js";
import { checkNatsConfig, ensureNatsServer, natsConfig } from "../lib/peers/nats-server.js";
import { freePorts, lastLines, ManagedProcess } from "../lib/peers/proc.js";
import { ensureRabbitMq, startRabbitMq, type RabbitNode } from "../lib/peers/rabbitmq.js";
import { ensureRedisServer, startRedis, type RedisServer } from "../lib/peers/redis.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { medianIndex, type WindowResult } from "../lib/runner.js";
import type { Skipped, Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";
import { startBokiDev } from "../lib/boki-dev.js";

export const LOADS: readonly (readonly [producers: number, consumers: number])[] = [
  [16, 16],
  [64, 64],
  [64, 16],
  [16, 64],
];
const MESSAGE_BYTES = 1024;
/** Most messages a consumer receives at a time (pop max, COUNT, fetch size, prefetch). */
export const POP_BATCH = 16;
/** How long a consumer waits for a message when none is there. */
const WAIT_MS = 500;
const WORKERS = 2;
/** Sub-queues of the Boki queue (consumers pinned to shard = consumer index mod SHARDS). */
const BOKI_SHARDS = 1;
const FULL: Phases = { warmupMs: 1000, measureMs: 5000, runs: 3 };
/** Quick: five systems × four loads in well under 60 s, start-ups included. */
const QUICK: Phases = { warmupMs: 300, measureMs: 1000, runs: 1 };
const START_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** Longest the clients may take to stop after the window (a consumer's wait, plus slack). */
const STOP_TIMEOUT_MS = 15_000;

const FUNCTIONS = fileURLToPath(new URL("../functions/queue", import.meta.url));

// ---- the workload, common to all systems ----------------------------------------------------

/** A 1 KiB message whose first field is its send time (performance.now(), ms). */
function message(sentAt: number): string {
  const head = `${sentAt.toFixed(4)}|`;
  return head + "x".repeat(MESSAGE_BYTES - head.length);
}

function sentAtOf(m: string | Uint8Array): number {
  const text = typeof m === "string" ? m : Buffer.from(m.subarray(0, 32)).toString("latin1");
  return Number(text.slice(0, text.indexOf("|")));
}

interface Producer {
  push(msg: string): Promise<void>;
  close(): Promise<void>;
}

interface Consumer {
  /** Receives until `stopped()`, calling `got` for each message at its arrival. */
  run(stopped: () => boolean, got: (msg: string | Uint8Array) => void): Promise<void>;
  close(): Promise<void>;
}

/** One queue (fresh per measurement run) of a system. */
interface QueueRun {
  producer(i: number): Promise<Producer>;
  consumer(i: number): Promise<Consumer>;
  cleanup(): Promise<void>;
}

interface System {
  readonly system: string;
  readonly mode: string;
  readonly durability: string;
  /** Whether a publish is acknowledged only once it is fsync'ed (Boki's durability). */
  readonly fsyncBeforeAck: boolean;
  readonly extras: Record<string, unknown>;
  open(id: number): Promise<QueueRun>;
}

interface QueueWindow {
  readonly window: WindowResult;
  readonly extras: Record<string, unknown>;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function runWindow(
  q: QueueRun,
  producers: number,
  consumers: number,
  phases: Phases,
): Promise<QueueWindow> {
  const ps = await Promise.all(Array.from({ length: producers }, (_, i) => q.producer(i)));
  const cs = await Promise.all(Array.from({ length: consumers }, (_, i) => q.consumer(i)));
  const delay = new LatencyHistogram();
  const publish = new LatencyHistogram();
  let pushed = 0;
  let pushedInWindow = 0;
  let received = 0;
  let receivedInWindow = 0;
  const start = performance.now();
  const measureStart = start + phases.warmupMs;
  const measureEnd = measureStart + phases.measureMs;
  let stop = false;
  try {
    const produce = async (p: Producer): Promise<void> => {
      while (!stop) {
        const t0 = performance.now();
        if (t0 >= measureEnd) break;
        await p.push(message(t0));
        const t1 = performance.now();
        pushed++;
        if (t0 >= measureStart && t1 < measureEnd) {
          pushedInWindow++;
          publish.recordSpan(t0, t1);
        }
      }
    };
    const got = (m: string | Uint8Array): void => {
      const now = performance.now();
      received++;
      if (now >= measureStart && now < measureEnd) {
        receivedInWindow++;
        delay.recordSpan(sentAtOf(m), now);
      }
    };
    const stopped = (): boolean => stop || performance.now() >= measureEnd;
    const running = [...ps.map(produce), ...cs.map((c) => c.run(stopped, got))];
    const failFast = running.map((r) =>
      r.catch((err: unknown) => {
        stop = true;
        throw err;
      }),
    );
    await Promise.race([Promise.all(failFast), sleep(measureEnd - performance.now() + 1)]);
    stop = true;
    await within(Promise.all(failFast), STOP_TIMEOUT_MS, "stopping the clients");
    const window: WindowResult = {
      ops: receivedInWindow,
      windowMs: phases.measureMs,
      opsPerSec: receivedInWindow / (phases.measureMs / 1000),
      latency: delay.summary(),
    };
    const pub = publish.summary();
    return {
      window,
      extras: {
        producers,
        consumers,
        popBatch: POP_BATCH,
        producedPerSec: Math.round((pushedInWindow / (phases.measureMs / 1000)) * 10) / 10,
        publishP50Ms: Math.round(pub.p50Ms * 1000) / 1000,
        publishP99Ms: Math.round(pub.p99Ms * 1000) / 1000,
        /** Pushed but not received when the clients stopped (a backlog means consumers lag). */
        backlogAtEnd: pushed - received,
        delayMetric: "p50Ms/p99Ms: delivery delay (receive time - send time)",
      },
    };
  } finally {
    delay.destroy();
    publish.destroy();
    await Promise.all([...ps, ...cs].map((c) => c.close().catch(() => undefined)));
  }
}

let runIds = 0;

function measurement(sys: System, producers: number, consumers: number): SystemMeasurement {
  return {
    key: `${sys.system}|${sys.mode}`,
    label: `${sys.system} ${sys.mode}: p${producers}/c${consumers}, ${MESSAGE_BYTES} B`,
    run: async (phases) => {
      const q = await sys.open(++runIds);
      try {
        const r = await runWindow(q, producers, consumers, phases);
        return {
          window: r.window,
          row: {
            system: sys.system,
            mode: sys.mode,
            workload: `queue-p${producers}-c${consumers}`,
            concurrency: producers + consumers,
            payloadBytes: MESSAGE_BYTES,
          },
          extras: {
            ...r.extras,
            durability: sys.durability,
            fsyncBeforeAck: sys.fsyncBeforeAck,
            ...sys.extras,
          },
        };
      } finally {
        await q.cleanup();
      }
    },
  };
}

// ---- boki -----------------------------------------------------------------------------------

async function startBoki(dataDir: string): Promise<{ url: string; proc: ManagedProcess }> {
  return startBokiDev({ functions: FUNCTIONS, dataDir, workers: WORKERS });
}

interface BokiTarget {
  readonly url: string;
  readonly mode: string;
  readonly via: string;
  readonly pushPath: string;
  readonly popPath: string;
}

const DIRECT_SERVER = fileURLToPath(
  new URL("../functions/queue/_direct-server.ts", import.meta.url),
);
const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** The bench-only server: the queue library on an EmbeddedLog behind node:http, one thread. */
async function startDirect(dataDir: string): Promise<{ url: string; proc: ManagedProcess }> {
  const [port] = await freePorts(1);
  const proc = ManagedProcess.start(
    "queue-direct",
    process.execPath,
    ["--import", "tsx", DIRECT_SERVER, dataDir, String(port)],
    { cwd: REPO },
  );
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < until) {
    if (!proc.running) {
      throw new Error(
        `the direct queue server exited while starting: ${lastLines(proc.output(20), 10)}`,
      );
    }
    try {
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return { url, proc };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  await proc.stop();
  throw new Error(`the direct queue server did not answer within ${START_TIMEOUT_MS} ms`);
}

function bokiSystem(t: BokiTarget): System {
  const { url } = t;
  const call = async (pool: Pool, path: string, body: unknown): Promise<unknown> => {
    const r = await pool.request({
      path,
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    });
    const text = await r.body.text();
    if (r.statusCode !== 200)
      throw new Error(`HTTP ${r.statusCode} from ${path}: ${text.slice(0, 300)}`);
    return JSON.parse(text) as unknown;
  };
  return {
    system: "boki",
    mode: t.mode,
    fsyncBeforeAck: true,
    durability:
      "push and pop acknowledged once their record is on disk (WAL written with O_DSYNC, group commit), one node",
    extras: { via: t.via, shards: BOKI_SHARDS },
    open: (id) => {
      const q = `bench-${id}`;
      // One connection per client, as for the peers.
      const pools: Pool[] = [];
      const pool = (): Pool => {
        const p = new Pool(url, { connections: 1, pipelining: 1 });
        pools.push(p);
        return p;
      };
      return Promise.resolve({
        producer: () => {
          const p = pool();
          return Promise.resolve({
            push: async (m: string) => {
              await call(p, t.pushPath, { q, shards: BOKI_SHARDS, m });
            },
            close: () => p.close(),
          });
        },
        consumer: (i) => {
          const p = pool();
          return Promise.resolve({
            run: async (stopped, got) => {
              let ack: string[] = [];
              while (!stopped()) {
                const r = (await call(p, t.popPath, {
                  q,
                  shards: BOKI_SHARDS,
                  consumer: `c${i}`,
                  max: POP_BATCH,
                  waitMs: WAIT_MS,
                  shard: i % BOKI_SHARDS,
                  ack,
                })) as { r: string[]; m: string[] };
                for (const m of r.m) got(m);
                ack = r.r;
              }
              if (ack.length > 0) {
                await call(p, t.popPath, {
                  q,
                  shards: BOKI_SHARDS,
                  consumer: `c${i}`,
                  max: 1,
                  waitMs: 0,
                  shard: i % BOKI_SHARDS,
                  ack,
                });
              }
            },
            close: () => p.close(),
          });
        },
        cleanup: () =>
          Promise.all(pools.map((p) => p.close().catch(() => undefined))).then(() => undefined),
      });
    },
  };
}

// ---- redis streams --------------------------------------------------------------------------

function redisSystem(server: RedisServer, version: string): System {
  const durability =
    server.fsync === "always"
      ? "AOF with appendfsync always: fsync before each reply (per event-loop batch), one node"
      : "AOF with appendfsync everysec: replied before fsync; up to ~1 s of writes lost on a crash of the machine, one node";
  return {
    system: "redis-streams",
    mode: `aof-${server.fsync}`,
    fsyncBeforeAck: server.fsync === "always",
    durability,
    extras: { peerVersion: version, client: "ioredis" },
    open: async (id) => {
      const key = `q${id}`;
      const admin = server.connect();
      await admin.xgroup("CREATE", key, "g", "$", "MKSTREAM");
      const conns: Redis[] = [admin];
      const conn = (): Redis => {
        const c = server.connect();
        conns.push(c);
        return c;
      };
      return {
        producer: () => {
          const c = conn();
          return Promise.resolve({
            push: async (m: string) => {
              await c.xadd(key, "*", "d", m);
            },
            close: () => Promise.resolve(),
          });
        },
        consumer: (i) => {
          const c = conn();
          return Promise.resolve({
            run: async (stopped, got) => {
              let ack: string[] = [];
              while (!stopped()) {
                const p = c.pipeline();
                if (ack.length > 0) p.xack(key, "g", ...ack);
                p.xreadgroup(
                  "GROUP",
                  "g",
                  `c${i}`,
                  "COUNT",
                  POP_BATCH,
                  "BLOCK",
                  WAIT_MS,
                  "STREAMS",
                  key,
                  ">",
                );
                const res = await p.exec();
                const last = res?.[res.length - 1];
                if (last === undefined || last[0] !== null)
                  throw last?.[0] ?? new Error("no reply");
                const streams = last[1] as [string, [string, string[]][]][] | null;
                ack = [];
                for (const [, entries] of streams ?? []) {
                  for (const [entryId, fields] of entries) {
                    got(fields[1]!);
                    ack.push(entryId);
                  }
                }
              }
              if (ack.length > 0) await c.xack(key, "g", ...ack);
            },
            close: () => Promise.resolve(),
          });
        },
        cleanup: async () => {
          await admin.del(key).catch(() => undefined);
          for (const c of conns) c.disconnect();
        },
      };
    },
  };
}

// ---- rabbitmq -------------------------------------------------------------------------------

function rabbitSystem(node: RabbitNode, version: string): System {
  return {
    system: "rabbitmq",
    mode: "quorum-queue",
    fsyncBeforeAck: true,
    durability:
      "quorum queue, publisher confirms: confirmed once the message is in the queue's Raft log, fsync'ed (one node)",
    extras: { peerVersion: version, client: "amqplib" },
    open: async (id) => {
      const q = `q${id}`;
      const admin = await amqp.connect(node.url);
      const ach = await admin.createChannel();
      await ach.assertQueue(q, { durable: true, arguments: { "x-queue-type": "quorum" } });
      const conns: amqp.ChannelModel[] = [admin];
      return {
        producer: async () => {
          const c = await amqp.connect(node.url);
          conns.push(c);
          const ch = await c.createConfirmChannel();
          return {
            push: (m: string) =>
              new Promise<void>((resolve, reject) => {
                ch.sendToQueue(q, Buffer.from(m), { persistent: true }, (err) =>
                  err === null || err === undefined ? resolve() : reject(err as Error),
                );
              }),
            close: () => Promise.resolve(),
          };
        },
        consumer: async () => {
          const c = await amqp.connect(node.url);
          conns.push(c);
          const ch = await c.createChannel();
          await ch.prefetch(POP_BATCH);
          return {
            run: async (stopped, got) => {
              const { consumerTag } = await ch.consume(q, (msg) => {
                if (msg === null) return;
                got(msg.content);
                ch.ack(msg);
              });
              while (!stopped()) await sleep(20);
              await ch.cancel(consumerTag);
            },
            close: () => Promise.resolve(),
          };
        },
        cleanup: async () => {
          await ach.deleteQueue(q).catch(() => undefined);
          for (const c of conns) await c.close().catch(() => undefined);
        },
      };
    },
  };
}

// ---- nats jetstream -------------------------------------------------------------------------

interface NatsSingle {
  readonly url: string;
  readonly proc: ManagedProcess;
}

async function startNatsSingle(
  bin: string,
  dir: string,
  fsync: "server-schedule" | "always",
): Promise<NatsSingle> {
  const [clientPort, httpPort] = await freePorts(2);
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const storeDir = join(dir, "store");
  mkdirSync(storeDir, { recursive: true });
  const conf = join(dir, "nats.conf");
  writeFileSync(
    conf,
    natsConfig({
      name: "queue-bench",
      clientPort: clientPort!,
      httpPort: httpPort!,
      storeDir,
      fsync,
    }),
  );
  const proc = ManagedProcess.start("nats-server", bin, ["-c", conf], { cwd: dir });
  const until = Date.now() + 30_000;
  for (;;) {
    if (!proc.running)
      throw new Error(`nats-server exited while starting: ${lastLines(proc.output(10), 5)}`);
    try {
      const r = await fetch(`http://127.0.0.1:${httpPort}/healthz`, {
        signal: AbortSignal.timeout(1000),
      });
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > until) {
      await proc.stop();
      throw new Error("nats-server not healthy within 30 s");
    }
    await sleep(100);
  }
  return { url: `nats://127.0.0.1:${clientPort}`, proc };
}

function natsSystem(
  server: NatsSingle,
  version: string,
  fsync: "server-schedule" | "always",
): System {
  return {
    system: "nats-jetstream",
    mode: fsync === "always" ? "file-sync-always" : "file-default-sync",
    fsyncBeforeAck: fsync === "always",
    durability:
      fsync === "always"
        ? "work-queue stream on file storage, every write fsync'ed before the PubAck (sync_interval: always), one node"
        : "work-queue stream on file storage, PubAck once written to the OS page cache; fsync on the server's schedule (every 2 min by default), one node: weaker than the others",
    extras: { peerVersion: version, client: "@nats-io/jetstream" },
    open: async (id) => {
      const stream = `Q${id}`;
      const subject = `q.${id}`;
      const admin = await natsConnect({ servers: server.url });
      const jsm = await jetstreamManager(admin);
      await jsm.streams.add({
        name: stream,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Workqueue,
      });
      await jsm.consumers.add(stream, {
        durable_name: "work",
        ack_policy: AckPolicy.Explicit,
        max_ack_pending: 100_000,
        ack_wait: 30_000_000_000,
      });
      const conns = [admin];
      return {
        producer: async () => {
          const nc = await natsConnect({ servers: server.url });
          conns.push(nc);
          const js = jetstream(nc);
          return {
            push: async (m: string) => {
              await js.publish(subject, m);
            },
            close: () => Promise.resolve(),
          };
        },
        consumer: async () => {
          const nc = await natsConnect({ servers: server.url });
          conns.push(nc);
          const c = await jetstream(nc).consumers.get(stream, "work");
          return {
            run: async (stopped, got) => {
              while (!stopped()) {
                const msgs = await c.fetch({ max_messages: POP_BATCH, expires: 1000 });
                for await (const m of msgs) {
                  got(m.data);
                  m.ack();
                }
              }
            },
            close: () => Promise.resolve(),
          };
        },
        cleanup: async () => {
          await jsm.streams.delete(stream).catch(() => undefined);
          for (const nc of conns) await nc.close().catch(() => undefined);
        },
      };
    },
  };
}

// ---- the suite ------------------------------------------------------------------------------

async function runQueue(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? QUICK : FULL;
  const rows: ResultRow[] = [];
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const peers: Record<string, unknown> = {};
  await withTempDir("boki-bench-queue", async (dir) => {
    const stops: (() => Promise<unknown>)[] = [];
    try {
      const systems: System[] = [];
      // Start-ups run side by side (RabbitMQ alone takes seconds); the list keeps one order.
      const started: (System | undefined)[] = [];
      const slot = (): number => started.push(undefined) - 1;
      const starts: Promise<void>[] = [];
      const bokiSlot = slot();
      starts.push(
        startBoki(join(dir, "boki")).then((boki) => {
          stops.push(() => boki.proc.stop());
          progress(`queue: boki dev is up at ${boki.url}`);
          started[bokiSlot] = bokiSystem({
            url: boki.url,
            mode: "embedded",
            via: `http gateway (boki dev process, ${WORKERS} worker threads), undici keep-alive, one connection per client`,
            pushPath: "/function/bench-queue-push",
            popPath: "/function/bench-queue-pop",
          });
        }),
      );
      const directSlot = slot();
      starts.push(
        startDirect(join(dir, "direct")).then((direct) => {
          stops.push(() => direct.proc.stop());
          started[directSlot] = bokiSystem({
            url: direct.url,
            mode: "direct-http",
            via: "bench server: the queue library on an EmbeddedLog behind node:http on one thread, no function runtime (what push/pop endpoints in the runtime could do); undici keep-alive, one connection per client",
            pushPath: "/push",
            popPath: "/pop",
          });
        }),
      );
      if (options.peers) {
        const natsSlot = slot();
        starts.push(
          (async () => {
            const nats = await ensureNatsServer();
            if (!nats.ok) {
              skipped.push({ system: "nats-jetstream", mode: "*", reason: nats.reason });
              return;
            }
            // Equal durability needs fsync per write; servers before 2.10 cannot.
            const refusal = await checkNatsConfig(nats.bin, join(dir, "nats-check"), "always");
            const fsync = refusal === undefined ? "always" : "server-schedule";
            if (refusal !== undefined) {
              skipped.push({
                system: "nats-jetstream",
                mode: "file-sync-always",
                reason: `nats-server ${nats.version} refuses sync_interval: always (${refusal}); measured with its default sync instead`,
              });
            }
            try {
              const srv = await startNatsSingle(nats.bin, join(dir, "nats"), fsync);
              stops.push(() => srv.proc.stop());
              started[natsSlot] = natsSystem(srv, nats.version, fsync);
              peers["nats-jetstream"] = { version: nats.version, notes: nats.notes };
            } catch (err) {
              skipped.push({ system: "nats-jetstream", mode: "*", reason: String(err) });
            }
          })(),
        );
        const redisSlots = [slot(), slot()];
        starts.push(
          (async () => {
            const redis = await ensureRedisServer();
            if (!redis.ok) {
              skipped.push({ system: "redis-streams", mode: "*", reason: redis.reason });
              return;
            }
            peers["redis-streams"] = { version: redis.version, notes: redis.notes };
            for (const [k, fsync] of (["everysec", "always"] as const).entries()) {
              try {
                const srv = await startRedis(redis.bin, join(dir, `redis-${fsync}`), fsync);
                stops.push(() => srv.stop());
                started[redisSlots[k]!] = redisSystem(srv, redis.version);
              } catch (err) {
                skipped.push({
                  system: "redis-streams",
                  mode: `aof-${fsync}`,
                  reason: String(err),
                });
              }
            }
          })(),
        );
        const rabbitSlot = slot();
        starts.push(
          (async () => {
            const rabbit = await ensureRabbitMq();
            if (!rabbit.ok) {
              skipped.push({ system: "rabbitmq", mode: "*", reason: rabbit.reason });
              return;
            }
            try {
              const n = await startRabbitMq(rabbit.script, join(dir, "rabbit"));
              stops.push(() => n.stop());
              started[rabbitSlot] = rabbitSystem(n, rabbit.version);
              peers["rabbitmq"] = {
                version: rabbit.version,
                readyMs: n.readyMs,
                notes: rabbit.notes,
              };
            } catch (err) {
              skipped.push({ system: "rabbitmq", mode: "*", reason: String(err) });
            }
          })(),
        );
      }
      const outcomes = await Promise.allSettled(starts);
      for (const o of outcomes) if (o.status === "rejected") throw o.reason;
      for (const sys of started) if (sys !== undefined) systems.push(sys);
      for (const s of skipped) progress(`queue: skipping ${s.system} ${s.mode}: ${s.reason}`);

      const list: SystemMeasurement[] = [];
      for (const [p, c] of LOADS) for (const s of systems) list.push(measurement(s, p, c));
      progress(
        `queue: ${list.length} measurements (${systems.length} systems × ${LOADS.length} loads), ${phases.runs} run(s) each, taken in turns`,
      );
      await measureInTurns(list, phases, rows, skipped);
    } finally {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
    }
  });
  notes.push(
    `load generator: this process (P producers, C consumers, one connection each); consumers take up to ${POP_BATCH} messages at a time and wait up to ${WAIT_MS} ms; p50/p99 are delivery delays`,
    "durability differs between systems and modes: see each row's durability field",
  );
  addRatios(rows, notes);
  return { rows, skipped, notes, extra: { peers } };
}

interface SystemMeasurement extends Measurement {
  readonly key: string;
}

/**
 * Runs the measurements in turns (run 1 of each, then run 2 of each, ...) so that every
 * system is measured under the same conditions of a shared machine; the row of each is its
 * median run. A system whose measurement fails is dropped from the rest of the suite with
 * the error as the reason, and the others go on.
 */
async function measureInTurns(
  list: readonly SystemMeasurement[],
  phases: Phases,
  rows: ResultRow[],
  skipped: Skipped[],
): Promise<void> {
  const results: Measured[][] = list.map(() => []);
  const failed = new Map<string, string>();
  for (let r = 0; r < phases.runs; r++) {
    for (let k = 0; k < list.length; k++) {
      const m = list[k]!;
      if (failed.has(m.key)) continue;
      const tag = `[${k + 1}/${list.length}${phases.runs > 1 ? ` run ${r + 1}/${phases.runs}` : ""}]`;
      progress(`${tag} ${m.label}`);
      try {
        const res = await m.run(phases);
        progress(
          `${tag} ${describeWindow(res.window)}, produced ${String(res.extras?.["producedPerSec"])}/s`,
        );
        results[k]!.push(res);
      } catch (err) {
        const reason = `${m.label} failed: ${(err as Error).message.slice(0, 600)}`;
        progress(`${tag} ${reason}; no more measurements of it`);
        failed.set(m.key, reason);
      }
    }
  }
  for (const [key, reason] of failed) {
    const [system, mode] = key.split("|");
    skipped.push({ system: system!, mode: mode!, reason });
  }
  list.forEach((m, k) => {
    const runs = results[k]!;
    if (runs.length === 0 || failed.has(m.key)) return;
    const runOps = runs.map((x) => x.window.opsPerSec);
    const median = runs[medianIndex(runOps)]!;
    const l = median.window.latency;
    rows.push({
      ...median.row,
      opsPerSec: round(median.window.opsPerSec, 1),
      p50Ms: round(l.p50Ms, 4),
      p99Ms: round(l.p99Ms, 4),
      p999Ms: round(l.p999Ms, 4),
      maxMs: round(l.maxMs, 4),
      meanMs: round(l.meanMs, 4),
      samples: l.count,
      warmupSec: phases.warmupMs / 1000,
      windowSec: phases.measureMs / 1000,
      runs: runs.length,
      runOpsPerSec: runOps.map((x) => round(x, 1)),
      runP99Ms: runs.map((x) => round(x.window.latency.p99Ms, 3)),
      ...median.extras,
    });
  });
}

/**
 * Boki's throughput and p50 delay against the best peer at each load: among the peers with
 * equal durability (fsync before the acknowledgement), and among all. Also as row fields of
 * the boki rows (`ratioToBestEqualDurability`, `ratioToBestAny`).
 */
function addRatios(rows: ResultRow[], notes: string[]): void {
  const best = (list: ResultRow[]): ResultRow | undefined =>
    list.reduce<ResultRow | undefined>(
      (a, b) => (a === undefined || b.opsPerSec > a.opsPerSec ? b : a),
      undefined,
    );
  const describe = (r: ResultRow): string =>
    `${r.system} ${r.mode} ${Math.round(r.opsPerSec)} msg/s, p50 ${r.p50Ms.toFixed(2)} ms`;
  for (const [p, c] of LOADS) {
    const workload = `queue-p${p}-c${c}`;
    const peers = rows.filter((r) => r.system !== "boki" && r.workload === workload);
    const equal = best(peers.filter((r) => r.fsyncBeforeAck === true));
    const any = best(peers);
    if (any === undefined) continue;
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k]!;
      if (r.system !== "boki" || r.workload !== workload) continue;
      const ratioEqual = equal === undefined ? null : round(r.opsPerSec / equal.opsPerSec, 3);
      const ratioAny = round(r.opsPerSec / any.opsPerSec, 3);
      rows[k] = { ...r, ratioToBestEqualDurability: ratioEqual, ratioToBestAny: ratioAny };
      notes.push(
        `${workload}: boki ${r.mode} ${Math.round(r.opsPerSec)} msg/s, p50 ${r.p50Ms.toFixed(2)} ms` +
          (equal === undefined
            ? ""
            : `; best peer with fsync before ack: ${describe(equal)} (ratio ${ratioEqual})`) +
          `; best peer: ${describe(any)} (ratio ${ratioAny})`,
      );
    }
  }
}

export const queueSuite: Suite = {
  name: "queue",
  description:
    "message queues (1 KiB, producers/consumers 16/16, 64/64, 64/16, 16/64) beside JetStream, Redis Streams, RabbitMQ",
  run: runQueue,
};
