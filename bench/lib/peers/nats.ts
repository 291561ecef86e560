/**
 * Peer system "nats-jetstream": a 3-node NATS JetStream cluster on 127.0.0.1 (nats-server
 * child processes, installed from Debian when missing), one stream with 3 replicas on file
 * storage and one subject, and C closed-loop publishers that each await the PubAck
 * (`js.publish`) before publishing again.
 *
 * Durability modes, to compare like with like:
 *  - replicated-3-default-sync: acknowledged once the write is committed by the stream's
 *    Raft group, i.e. stored (in the OS page cache) on a quorum of 2 of the 3 replicas;
 *    fsync happens on the server's own schedule. The counterpart of a log replicated in
 *    memory to a quorum.
 *  - replicated-3-sync-always: the same, with `jetstream { sync_interval: always }` so every
 *    write is fsync'ed before it counts. nats-server < 2.10 does not know this option; then
 *    the mode is skipped with the server's own error as the reason, never approximated.
 *
 * The load generator runs in this Node process over one NATS connection (to node n1; the
 * stream leader is wherever JetStream places it, recorded per row), the three servers run
 * on the same machine, so the load generator and all three replicas share its CPUs.
 */
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  FULL_PHASES,
  QUICK_PHASES,
  runMeasurements,
  windowSeconds,
  type Measurement,
  type Phases,
} from "../measure.js";
import { progress as defaultProgress } from "../progress.js";
import type { ResultRow } from "../results.js";
import { runClosedLoop } from "../runner.js";
import type { Skipped } from "../suite.js";
import { withTempDir } from "../tmpdir.js";
import {
  checkNatsConfig,
  ensureNatsServer,
  startNatsCluster,
  type NatsCluster,
  type NatsFsync,
  type NatsServerBinary,
} from "./nats-server.js";

export const NATS_SYSTEM = "nats-jetstream";

export const NATS_CONCURRENCY = [1, 16, 64, 256] as const;
export const NATS_PAYLOAD_BYTES = [100, 1024] as const;

/**
 * Quick windows when both durability modes run: 16 measurements at the log suite's quick
 * windows would take ~29 s plus two cluster start-ups, over the ~25 s budget for this peer.
 */
const QUICK_TWO_MODES: Phases = { warmupMs: 200, measureMs: 1000, runs: 1 };

const REPLICAS = 3;

interface NatsMode {
  readonly mode: string;
  readonly fsync: NatsFsync;
  readonly durability: string;
}

export const NATS_MODES: readonly NatsMode[] = [
  {
    mode: "replicated-3-default-sync",
    fsync: "server-schedule",
    durability:
      "PubAck once committed by the stream's Raft group: stored (OS page cache) on a quorum of 2 of 3 replicas; fsync on the server's own schedule",
  },
  {
    mode: "replicated-3-sync-always",
    fsync: "always",
    durability:
      "PubAck once committed by the stream's Raft group on a quorum of 2 of 3 replicas, every write fsync'ed (jetstream sync_interval: always)",
  },
];

export interface NatsPeerOptions {
  readonly quick: boolean;
  readonly progress?: (msg: string) => void;
  /** Defaults to NATS_CONCURRENCY. */
  readonly concurrency?: readonly number[];
  /** Defaults to NATS_PAYLOAD_BYTES. */
  readonly payloadBytes?: readonly number[];
  /** Warm-up, window and runs; by default the log suite's (quick: see QUICK_TWO_MODES). */
  readonly phases?: Phases;
}

export interface NatsPeerResult {
  readonly rows: ResultRow[];
  /** Set when the whole peer was skipped: why (nats-server missing, not installable, ...). */
  readonly skipped?: string;
  /** Modes (or the whole peer, mode "*") not measured, each with its reason. */
  readonly skippedModes: Skipped[];
  /** What ran: server version and how it was found, client libraries, cluster set-up. */
  readonly peer: Record<string, unknown>;
}

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url);
    let dir = dirname(require.resolve(name));
    for (let i = 0; i < 5; i++) {
      const p = join(dir, "package.json");
      if (existsSync(p)) {
        const pkg = JSON.parse(readFileSync(p, "utf8")) as { name?: unknown; version?: unknown };
        if (pkg.name === name && typeof pkg.version === "string") return pkg.version;
      }
      dir = dirname(dir);
    }
  } catch {
    // fall through
  }
  return "unknown";
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Creates the stream, retrying while the cluster is still settling (JetStream can answer
 * "insufficient resources" / "no suitable peers" or time out just after start-up).
 */
async function createStream(
  jsm: JetStreamManager,
  name: string,
  subject: string,
  timeoutMs: number,
): Promise<{ leader: string | undefined; attempts: number }> {
  const deadline = Date.now() + timeoutMs;
  for (let attempts = 1; ; attempts++) {
    try {
      const info = await jsm.streams.add({
        name,
        subjects: [subject],
        num_replicas: REPLICAS,
        storage: StorageType.File,
      });
      if (info.config.num_replicas !== REPLICAS) {
        throw new Error(`stream ${name} has ${info.config.num_replicas} replicas, not ${REPLICAS}`);
      }
      return { leader: info.cluster?.leader, attempts };
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(
          `cannot create stream ${name} within ${timeoutMs / 1000} s: ${errMessage(err)}`,
        );
      }
      await sleep(250);
    }
  }
}

interface ModeContext {
  readonly mode: NatsMode;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly serverVersion: string;
  readonly modeIndex: number;
}

let streamCounter = 0;

function appendMeasurement(
  ctx: ModeContext,
  concurrency: number,
  payloadBytes: number,
): Measurement {
  return {
    label: `${NATS_SYSTEM} ${ctx.mode.mode}: publish c=${concurrency} ${payloadBytes} B`,
    run: async (phases, onProgress) => {
      const id = ++streamCounter;
      const name = `BENCH_${ctx.modeIndex}_${id}`;
      const subject = `bench.${ctx.modeIndex}.${id}`;
      const created = await createStream(ctx.jsm, name, subject, 20_000);
      try {
        const data = new Uint8Array(randomBytes(payloadBytes));
        const window = await runClosedLoop({
          concurrency,
          warmupMs: phases.warmupMs,
          measureMs: phases.measureMs,
          op: () => ctx.js.publish(subject, data),
          ...(onProgress === undefined ? {} : { onProgress }),
        });
        const info = await ctx.jsm.streams.info(name);
        if (info.state.messages < window.ops) {
          throw new Error(
            `stream ${name} holds ${info.state.messages} messages, fewer than the ${window.ops} acknowledged in the window`,
          );
        }
        const clientServer = ctx.nc.info?.server_name;
        const leader = info.cluster?.leader ?? created.leader;
        return {
          window,
          row: {
            system: NATS_SYSTEM,
            mode: ctx.mode.mode,
            workload: "append",
            concurrency,
            payloadBytes,
          },
          extras: {
            durability: ctx.mode.durability,
            replicas: REPLICAS,
            ackQuorum: 2,
            storage: "file",
            fsync: ctx.mode.fsync,
            natsServer: ctx.serverVersion,
            subjects: 1,
            connections: 1,
            clientServer: clientServer ?? null,
            streamLeader: leader ?? null,
            leaderIsClientServer:
              clientServer === undefined || leader === undefined ? null : clientServer === leader,
            streamCreateAttempts: created.attempts,
            streamMessages: info.state.messages,
            streamBytes: info.state.bytes,
          },
        };
      } finally {
        await ctx.jsm.streams.delete(name).catch(() => false);
      }
    },
  };
}

/** One durability mode of the peer, running: a fresh 3-node cluster and a connection to it. */
export interface NatsSession {
  readonly mode: string;
  /** What ran, for the results file: server, client libraries, cluster start-up. */
  readonly info: Record<string, unknown>;
  /** `js.publish` awaiting the PubAck, `concurrency` callers, a fresh R3 stream per run. */
  measurement(concurrency: number, payloadBytes: number): Measurement;
  /** The servers' process ids. */
  pids(): number[];
  /** Closes the connection and stops the cluster; returns how each server stopped. */
  close(): Promise<string[]>;
}

export type NatsSessionResult =
  | { readonly ok: true; readonly session: NatsSession }
  | { readonly ok: false; readonly reason: string; readonly info: Record<string, unknown> };

/** The whole peer cannot run (nats-server missing and not installable). */
class SkipAll extends Error {}

function unsupportedReason(mode: NatsMode, version: string, complaint: string): string {
  return mode.fsync === "always"
    ? `nats-server ${version} does not support 'jetstream { sync_interval: always }' ` +
        `(added in 2.10); its config check says: ${complaint}`
    : `nats-server ${version} rejects the configuration: ${complaint}`;
}

function clientInfo(): Record<string, unknown> {
  return {
    client: {
      "@nats-io/transport-node": packageVersion("@nats-io/transport-node"),
      "@nats-io/jetstream": packageVersion("@nats-io/jetstream"),
    },
    cluster: { nodes: 3, host: "127.0.0.1", streamReplicas: REPLICAS, storage: "file" },
    loadGenerator: "this Node process, one NATS connection, C closed-loop js.publish callers",
  };
}

/**
 * Starts the peer in one durability mode (`NATS_MODES[].mode`) under `dir`: finds or installs
 * nats-server, checks that it accepts the mode's configuration, starts a 3-node cluster and
 * connects. Never throws: what prevents the mode is returned as the reason. A caller that
 * has already found the server and had it accept the mode passes `accepted`.
 */
export async function openNatsSession(
  modeName: string,
  dir: string,
  say: (msg: string) => void = defaultProgress,
  accepted?: NatsServerBinary,
): Promise<NatsSessionResult> {
  const info = clientInfo();
  const index = NATS_MODES.findIndex((m) => m.mode === modeName);
  const mode = NATS_MODES[index];
  if (mode === undefined) return { ok: false, reason: `no NATS mode ${modeName}`, info };
  let cluster: NatsCluster | undefined;
  try {
    let server = accepted;
    if (server === undefined) {
      say("nats: looking for nats-server");
      const r = await ensureNatsServer(say);
      info["serverSetup"] = r.notes;
      if (!r.ok) return { ok: false, reason: r.reason, info };
      say(`nats: nats-server ${r.version} at ${r.bin} (${r.source})`);
      server = r;
    }
    info["natsServer"] = { version: server.version, bin: server.bin, source: server.source };
    const complaint =
      accepted === undefined
        ? await checkNatsConfig(server.bin, join(dir, "check"), mode.fsync)
        : undefined;
    if (complaint !== undefined) {
      return { ok: false, reason: unsupportedReason(mode, server.version, complaint), info };
    }
    say(`nats: starting a 3-node JetStream cluster (${mode.mode})`);
    const started = await startNatsCluster({
      bin: server.bin,
      dir: join(dir, mode.mode),
      fsync: mode.fsync,
      say,
    });
    cluster = started;
    say(
      `nats: cluster ready in ${(started.readyMs / 1000).toFixed(1)} s ` +
        `(clients ${started.clientUrls.join(", ")})`,
    );
    info["clusters"] = { [mode.mode]: { readySec: started.readyMs / 1000 } };
    const nc = await connect({
      servers: [...started.clientUrls],
      noRandomize: true,
      name: "boki-bench",
      timeout: 10_000,
    });
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc, { timeout: 20_000 });
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
    const ctx: ModeContext = {
      mode,
      nc,
      js: jetstream(nc, { timeout: 20_000 }),
      jsm,
      serverVersion: server.version,
      modeIndex: index,
    };
    return {
      ok: true,
      session: {
        mode: mode.mode,
        info,
        measurement: (c, p) => appendMeasurement(ctx, c, p),
        pids: () => started.nodes.flatMap((n) => (n.proc.pid === undefined ? [] : [n.proc.pid])),
        close: async () => {
          await nc.close().catch(() => undefined);
          const stops = await started.stop();
          return stops.map((x) => x.how);
        },
      },
    };
  } catch (err) {
    if (cluster !== undefined) await cluster.stop().catch(() => undefined);
    return { ok: false, reason: `failed: ${errMessage(err)}`, info };
  }
}

/**
 * Runs the NATS JetStream peer: ensures nats-server, then for each durability mode that
 * this server supports starts a fresh 3-node cluster, measures `js.publish` awaiting the
 * PubAck at each concurrency × payload (a fresh R3 file stream per run, deleted after),
 * and stops the cluster. Never throws: whatever could not run is in `skipped` /
 * `skippedModes` with its reason (and was printed via `progress`).
 */
export async function runNatsPeer(o: NatsPeerOptions): Promise<NatsPeerResult> {
  const say = o.progress ?? defaultProgress;
  const rows: ResultRow[] = [];
  const skippedModes: Skipped[] = [];
  const peer: Record<string, unknown> = clientInfo();
  const clusters: Record<string, unknown> = {};
  try {
    say("nats: looking for nats-server");
    const server = await ensureNatsServer(say);
    peer["serverSetup"] = server.notes;
    if (!server.ok) throw new SkipAll(server.reason);
    say(`nats: nats-server ${server.version} at ${server.bin} (${server.source})`);
    await withTempDir("boki-bench-nats", async (dir) => {
      // Which modes this server accepts decides the quick phases; each mode's cluster then
      // runs alone, started before its measurements and stopped after them.
      const runnable: string[] = [];
      for (const mode of NATS_MODES) {
        const complaint = await checkNatsConfig(server.bin, join(dir, "check"), mode.fsync);
        if (complaint === undefined) runnable.push(mode.mode);
        else {
          const reason = unsupportedReason(mode, server.version, complaint);
          say(`nats: skipping mode ${mode.mode}: ${reason}`);
          skippedModes.push({ system: NATS_SYSTEM, mode: mode.mode, reason });
        }
      }
      const phases =
        o.phases ??
        (o.quick ? (runnable.length > 1 ? QUICK_TWO_MODES : QUICK_PHASES) : FULL_PHASES);
      const perMode =
        (o.concurrency ?? NATS_CONCURRENCY).length * (o.payloadBytes ?? NATS_PAYLOAD_BYTES).length;
      if (runnable.length > 0) {
        say(
          `nats: ${runnable.length} mode(s) × ${perMode} measurements × ${phases.runs} run(s), warm-up ` +
            `${phases.warmupMs / 1000} s + window ${phases.measureMs / 1000} s each ` +
            `(~${Math.round(windowSeconds(runnable.length * perMode, phases))} s of windows)`,
        );
      }
      peer["clusters"] = clusters;
      for (const modeName of runnable) {
        const opened = await openNatsSession(modeName, dir, say, server);
        Object.assign(peer, opened.ok ? opened.session.info : opened.info, { clusters });
        if (!opened.ok) {
          say(`nats: mode ${modeName} ${opened.reason}`);
          skippedModes.push({ system: NATS_SYSTEM, mode: modeName, reason: opened.reason });
          continue;
        }
        const session = opened.session;
        clusters[modeName] = (session.info["clusters"] as Record<string, unknown>)[modeName];
        try {
          const list: Measurement[] = [];
          for (const c of o.concurrency ?? NATS_CONCURRENCY) {
            for (const p of o.payloadBytes ?? NATS_PAYLOAD_BYTES)
              list.push(session.measurement(c, p));
          }
          await runMeasurements(list, {
            phases,
            quick: o.quick,
            tag: "nats",
            progress: say,
            into: rows,
          });
        } catch (err) {
          const reason = `failed: ${errMessage(err)}`;
          say(`nats: mode ${modeName} ${reason}`);
          skippedModes.push({ system: NATS_SYSTEM, mode: modeName, reason });
        } finally {
          const how = await session.close();
          clusters[modeName] = { ...(clusters[modeName] as object | undefined), stopped: how };
          if (how.some((h) => h !== "sigterm")) {
            say(`nats: stopping the cluster needed: ${how.join(", ")}`);
          }
        }
      }
    });
    if (rows.length === 0) {
      const reason = skippedModes.map((s) => `${s.mode}: ${s.reason}`).join("; ");
      say(`nats: no NATS JetStream figures: ${reason}`);
      return { rows, skipped: reason || "nothing measured", skippedModes, peer };
    }
    return { rows, skippedModes, peer };
  } catch (err) {
    const reason = err instanceof SkipAll ? err.message : `unexpected error: ${errMessage(err)}`;
    say(`nats: skipping the NATS JetStream peer: ${reason}`);
    return {
      rows,
      skipped: reason,
      skippedModes: [...skippedModes, { system: NATS_SYSTEM, mode: "*", reason }],
      peer,
    };
  }
}
