/**
 * `npm run bench -- log --cluster`: the shared log as a local cluster of OS processes
 * (3 sequencers, 3 storage nodes, 2 engines; replication 3, 2 physical logs, every node its
 * own `bin/boki.js start` process on 127.0.0.1), driven from this process by a
 * `ClusterClient` over TCP, next to the NATS JetStream peer measured in the same run.
 *
 * In turns with the peer: while a Boki cluster is up, the peer's 3-node cluster in the
 * matching durability mode is up too, and each append point (concurrency × payload) is
 * measured alternately: Boki run 1, NATS run 1, Boki run 2, ... Each system is idle while
 * the other is measured. The machine is shared and its speed drifts by tens of percent over
 * minutes; taking turns keeps both systems' runs of one point within a minute of each
 * other, so the ratios hold even when the absolute figures move.
 *
 * Two clusters, one after the other, each kept up across all of its measurements:
 *  - durability "memory" (Boki's choice: a storage node counts a record as held once it is
 *    in its memory; the metalog cut once a majority of sequencers wrote it to their WAL,
 *    unsynced): appends,
 *    then the read workloads. Compared with NATS `replicated-3-default-sync`.
 *  - durability "disk" (a storage node counts a record once its WAL write, O_DSYNC, returns):
 *    appends. Its counterpart, NATS `replicated-3-sync-always`, needs nats-server ≥ 2.10;
 *    when that mode is skipped the rows say there is no peer figure and why.
 *
 * Both clusters run with `indexReplicas: 1` (physical log L is indexed only by engine L), so
 * that the memory cluster can serve all three read paths; the disk cluster uses the same
 * setting so that the two sets of append rows differ only in durability.
 *
 * Appends: C closed-loop appenders (C = 1, 16, 64, 256), worker w on engine w mod 2 and on
 * book BOOKS[w mod 8] (4 books on each physical log, each engine using both logs), each
 * worker its own session; 100 B and 1 KiB payloads, no tags.
 *
 * Reads (memory cluster, concurrency 1, readNext(tag 0, seqnum) over preloaded 100 B
 * records; "E_idx" indexes the book's log, "E_other" does not):
 *  - read-local-cache-hit: through E_idx, records E_idx appended itself (in its cache).
 *  - read-local-cache-miss: through E_idx, records appended through E_other (E_idx indexes
 *    them but never held their payload): a storage read. Each record is read once only
 *    (a storage read puts the record in the cache), so enough are preloaded for the window.
 *  - read-remote-index: through E_other, records E_other appended (in its cache): the index
 *    lookup goes to E_idx over the network, the record comes from E_other's cache.
 *  - read-remote-index-cache-miss: through E_other, records appended through E_idx: remote
 *    index lookup plus a storage read; each record read once.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { RemoteLogBook } from "../../src/cluster/client.js";
import { logOfBook } from "../../src/log/mapping.js";
import type { BookId, SeqNum } from "../../src/log/types.js";
import { LOCAL_TOPOLOGY, startBokiCluster, type BokiCluster } from "../lib/boki-cluster.js";
import {
  FULL_PHASES,
  round,
  runMeasurements,
  windowSeconds,
  type Measurement,
  type Phases,
} from "../lib/measure.js";
import { NATS_MODES, NATS_SYSTEM, openNatsSession, type NatsSession } from "../lib/peers/nats.js";
import { cpuMsPerSec } from "../lib/proc-cpu.js";
import { progress } from "../lib/progress.js";
import type { ResultRow } from "../lib/results.js";
import { runClosedLoop } from "../lib/runner.js";
import type { Skipped, SuiteOptions, SuiteOutput } from "../lib/suite.js";
import { withTempDir } from "../lib/tmpdir.js";

type Durability = "memory" | "disk";

/**
 * Quick windows. 20 Boki measurements and 8 NATS ones, plus three cluster start-ups (a Boki
 * cluster takes ~8 s to start on 2 CPUs: eight node processes loading TypeScript through
 * tsx), must fit in 60 s, so every quick window is 0.25 s warm-up + 0.75 s.
 */
export const CLUSTER_QUICK_PHASES: Phases = { warmupMs: 250, measureMs: 750, runs: 1 };

export const CLUSTER_CONCURRENCY = [1, 16, 64, 256] as const;
export const CLUSTER_PAYLOAD_BYTES = [100, 1024] as const;

const TOPOLOGY = { ...LOCAL_TOPOLOGY, indexReplicas: 1 } as const;

/** Books the appenders use, spread evenly over the physical logs. */
const APPEND_BOOK_COUNT = 8;
const READ_PAYLOAD_BYTES = 100;
/** Records cycled through by the cache-hit reads. */
const HIT_RECORDS = 2000;
const PRELOAD_CONCURRENCY = 128;
/** Records read (and so consumed) to estimate how fast storage reads go. */
const PROBE_RECORDS = 300;
/** Most records preloaded per read-once workload. */
const READ_ONCE_RECORDS_MAX = 250_000;

/** What each side has done when it acknowledges; goes into the rows as `durability`. */
const BOKI_DURABILITY: Record<Durability, string> = {
  memory:
    "acked once the record is in memory on all 3 storage replicas (each then writes it to its WAL, not synced, without waiting) " +
    "and the metalog cut ordering it is written (not synced) to the WAL of the primary sequencer and 1 of its 2 backups",
  disk:
    "acked once the record's WAL write (O_DSYNC) has returned on all 3 storage replicas " +
    "and the metalog cut ordering it is in the WAL (O_DSYNC) of the primary sequencer and 1 of its 2 backups",
};

/** The NATS mode each Boki durability is compared with. */
const PEER_MODE: Record<Durability, string> = {
  memory: "replicated-3-default-sync",
  disk: "replicated-3-sync-always",
};

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function payload(bytes: number): Uint8Array {
  return new Uint8Array(randomBytes(bytes));
}

/** The first `count` book ids ≥ `from` whose physical log is `log`. */
function booksOnLog(log: number, count: number, from: number): number[] {
  const out: number[] = [];
  for (let b = from; out.length < count; b++) {
    if (logOfBook(b as BookId, TOPOLOGY.physicalLogs) === log) out.push(b);
  }
  return out;
}

/**
 * Books for the appenders, ordered so that worker w (engine w mod 2, book w mod 8) puts
 * both engines on every log: with two logs [L0, L0, L1, L1, L0, L0, L1, L1].
 */
function appendBooks(): number[] {
  const logs = TOPOLOGY.physicalLogs;
  const perLog = Array.from({ length: logs }, (_, l) => booksOnLog(l, APPEND_BOOK_COUNT / logs, 1));
  const out: number[] = [];
  for (let i = 0; out.length < APPEND_BOOK_COUNT; i += 2) {
    for (const books of perLog) out.push(books[i]!, books[i + 1]!);
  }
  return out;
}

function clusterExtras(c: BokiCluster, durability: Durability): Record<string, unknown> {
  return {
    durability: BOKI_DURABILITY[durability],
    storageDurability: durability,
    ...TOPOLOGY,
    cutIntervalMs: c.config.cutIntervalMs,
    term: c.term,
  };
}

function appendMeasurement(
  c: BokiCluster,
  durability: Durability,
  concurrency: number,
  payloadBytes: number,
): Measurement {
  const books = appendBooks();
  return {
    label: `boki cluster-${durability}: append c=${concurrency} ${payloadBytes} B`,
    run: async (phases, onProgress) => {
      const handles = Array.from({ length: concurrency }, (_, w) =>
        c.client.book(books[w % books.length]!, { engine: w % c.engines.length }),
      );
      const data = payload(payloadBytes);
      const window = await runClosedLoop({
        concurrency,
        warmupMs: phases.warmupMs,
        measureMs: phases.measureMs,
        op: (w) => handles[w]!.append([], data),
        ...(onProgress === undefined ? {} : { onProgress }),
      });
      return {
        window,
        row: {
          system: "boki",
          mode: `cluster-${durability}`,
          workload: "append",
          concurrency,
          payloadBytes,
        },
        extras: {
          ...clusterExtras(c, durability),
          booksUsed: Math.min(concurrency, books.length),
          enginesUsed: Math.min(concurrency, c.engines.length),
          tags: 0,
        },
      };
    },
  };
}

/** Appends `count` records to one session; returns their seqnums in order. */
async function preload(book: RemoteLogBook, count: number, data: Uint8Array): Promise<SeqNum[]> {
  const seqnums: SeqNum[] = [];
  let issued = 0;
  const appender = async (): Promise<void> => {
    while (issued < count) {
      issued++;
      seqnums.push(await book.append([], data));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PRELOAD_CONCURRENCY, count) }, appender));
  return seqnums.sort((a, b) => a - b);
}

/** Reads `seqnums` in order, one at a time, each exactly once (across runs too). */
class ReadOnce {
  private next = 0;
  constructor(
    private readonly reader: RemoteLogBook,
    private readonly seqnums: readonly SeqNum[],
    readonly what: string,
  ) {}
  get left(): number {
    return this.seqnums.length - this.next;
  }
  async read(): Promise<void> {
    const s = this.seqnums[this.next++];
    if (s === undefined) {
      throw new Error(
        `${this.what}: all ${this.seqnums.length} preloaded records were read; the reads went faster than estimated`,
      );
    }
    const r = await this.reader.readNext(0, s);
    if (r?.seqnum !== s) {
      throw new Error(
        `${this.what}: readNext(0, ${s}) returned ${r === null ? "null" : `seqnum ${r.seqnum}`}`,
      );
    }
  }
}

interface ReadSetup {
  readonly indexEngine: number;
  readonly otherEngine: number;
  readonly indexEngineId: string;
  readonly otherEngineId: string;
  readonly log: number;
  readonly book: { own: number; foreign: number };
  /** Seqnums of the book appended through the indexing engine, through the other one. */
  readonly ownSeqnums: SeqNum[];
  readonly foreignSeqnums: SeqNum[];
  /** A metalog position past every preloaded record. */
  readonly position: number;
  readonly readOnceRecords: number;
  readonly probe: { records: number; p10Ms: number; p50Ms: number };
}

/**
 * Preloads the read workloads' records on the memory cluster. The number of records read
 * once is estimated from a probe of storage reads: enough for every warm-up and window at
 * twice the probe's 10th-percentile speed.
 */
async function prepareReads(
  c: BokiCluster,
  phases: Phases,
  say: (msg: string) => void,
): Promise<ReadSetup> {
  const log = 0;
  const indexEngineId = c.view.indexEnginesOf(log)[0]!;
  const indexEngine = c.engines.findIndex((e) => e.id === indexEngineId);
  if (indexEngine < 0 || c.view.indexEnginesOf(log).length !== 1) {
    throw new Error(`expected log ${log} to be indexed by exactly one engine`);
  }
  const otherEngine = (indexEngine + 1) % c.engines.length;
  const otherEngineId = c.engines[otherEngine]!.id;
  const [ownBook, foreignBook, probeBook] = booksOnLog(log, 3, 10_000) as [number, number, number];
  const data = payload(READ_PAYLOAD_BYTES);

  // Probe: storage reads through the indexing engine of records the other engine appended.
  const probeWriter = c.client.book(probeBook, { engine: otherEngine });
  const probeSeqnums = await preload(probeWriter, PROBE_RECORDS, data);
  const probeReader = c.client.book(probeBook, {
    engine: indexEngine,
    position: probeWriter.position,
  });
  const lat: number[] = [];
  for (const s of probeSeqnums) {
    const t0 = performance.now();
    const r = await probeReader.readNext(0, s);
    lat.push(performance.now() - t0);
    if (r?.seqnum !== s) throw new Error(`probe readNext(0, ${s}) returned ${r?.seqnum ?? "null"}`);
  }
  lat.sort((a, b) => a - b);
  const p10 = lat[Math.floor(lat.length * 0.1)]!;
  const p50 = lat[Math.floor(lat.length * 0.5)]!;
  const perRunMs = phases.warmupMs + phases.measureMs;
  const readOnceRecords = Math.min(
    READ_ONCE_RECORDS_MAX,
    Math.ceil((perRunMs / Math.max(p10 / 2, 0.05)) * phases.runs) + 100,
  );
  say(
    `boki reads: storage-read probe p10 ${p10.toFixed(2)} ms, p50 ${p50.toFixed(2)} ms; ` +
      `preloading ${readOnceRecords.toLocaleString("en-US")} records for each read-once workload`,
  );

  const t0 = performance.now();
  const ownWriter = c.client.book(ownBook, { engine: indexEngine });
  const foreignWriter = c.client.book(foreignBook, { engine: otherEngine });
  const [ownSeqnums, foreignSeqnums] = await Promise.all([
    preload(ownWriter, Math.max(HIT_RECORDS, readOnceRecords), data),
    preload(foreignWriter, Math.max(HIT_RECORDS, readOnceRecords), data),
  ]);
  say(`boki reads: preloaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return {
    indexEngine,
    otherEngine,
    indexEngineId,
    otherEngineId,
    log,
    book: { own: ownBook, foreign: foreignBook },
    ownSeqnums,
    foreignSeqnums,
    position: Math.max(ownWriter.position, foreignWriter.position),
    readOnceRecords,
    probe: { records: PROBE_RECORDS, p10Ms: round(p10, 4), p50Ms: round(p50, 4) },
  };
}

type ReadKind =
  | "read-local-cache-hit"
  | "read-local-cache-miss"
  | "read-remote-index"
  | "read-remote-index-cache-miss";

/** Which engine reads, and through which engine the records were appended. */
const READ_PATHS: Record<
  ReadKind,
  {
    readonly via: "index" | "other";
    readonly appendedVia: "index" | "other";
    readonly what: string;
  }
> = {
  "read-local-cache-hit": {
    via: "index",
    appendedVia: "index",
    what: "through the indexing engine, records it appended (its cache)",
  },
  "read-local-cache-miss": {
    via: "index",
    appendedVia: "other",
    what: "through the indexing engine, records appended via the other engine (storage read)",
  },
  "read-remote-index": {
    via: "other",
    appendedVia: "other",
    what: "through the non-indexing engine (index query to the other), records it appended (its cache)",
  },
  "read-remote-index-cache-miss": {
    via: "other",
    appendedVia: "index",
    what: "through the non-indexing engine (index query to the other), records appended via the indexing engine (storage read)",
  },
};

function readMeasurement(c: BokiCluster, s: ReadSetup, kind: ReadKind): Measurement {
  const path = READ_PATHS[kind];
  // Records the reading engine appended itself are in its cache; the others are not, and
  // each of those is read once (across runs: every run takes the next records).
  const cached = path.via === path.appendedVia;
  let once: ReadOnce | undefined;
  return {
    label: `boki cluster-memory: ${kind} (${path.what})`,
    run: async (phases, onProgress) => {
      const engine = path.via === "index" ? s.indexEngine : s.otherEngine;
      const book = path.appendedVia === "index" ? s.book.own : s.book.foreign;
      const seqnums = path.appendedVia === "index" ? s.ownSeqnums : s.foreignSeqnums;
      const reader = c.client.book(book, { engine, position: s.position });
      let op: () => Promise<unknown>;
      let records: number;
      if (cached) {
        const hits = seqnums.slice(0, HIT_RECORDS);
        records = hits.length;
        let i = 0;
        op = async () => {
          const want = hits[i++ % hits.length]!;
          const r = await reader.readNext(0, want);
          if (r?.seqnum !== want) {
            throw new Error(`${kind}: readNext(0, ${want}) returned ${r?.seqnum ?? "null"}`);
          }
        };
      } else {
        once ??= new ReadOnce(reader, seqnums, kind);
        const o = once;
        records = o.left;
        op = () => o.read();
      }
      const window = await runClosedLoop({
        concurrency: 1,
        warmupMs: phases.warmupMs,
        measureMs: phases.measureMs,
        op,
        ...(onProgress === undefined ? {} : { onProgress }),
      });
      return {
        window,
        row: {
          system: "boki",
          mode: "cluster-memory",
          workload: kind,
          concurrency: 1,
          payloadBytes: READ_PAYLOAD_BYTES,
        },
        extras: {
          ...clusterExtras(c, "memory"),
          readPath: path.what,
          readerEngine: c.engines[engine]!.id,
          indexEngine: s.indexEngineId,
          appendedVia: path.appendedVia === "index" ? s.indexEngineId : s.otherEngineId,
          physicalLog: s.log,
          book,
          access: cached ? "sequential, cycling" : "sequential, each record once",
          [cached ? "recordsCycled" : "recordsPreloaded"]: records,
          expectedRecordSource: cached ? "reader's cache" : "storage (storage-node memory or lmdb)",
          storageReadProbe: s.probe,
        },
      };
    },
  };
}

/**
 * Load a freshly started system takes before its first measurement: V8 compiles a Node
 * process's hot paths during its first seconds of load (the cluster's throughput at 64 in
 * flight climbs for about 6 s after a start), and each measurement's own warm-up is short.
 * The NATS peer gets the same load after its start.
 */
const WARM_UP_MS = 10_000;
const WARM_UP_MS_QUICK = 1_000;
const WARM_UP_CONCURRENCY = 64;

async function warmUp(what: string, m: Measurement, quick: boolean): Promise<void> {
  const ms = quick ? WARM_UP_MS_QUICK : WARM_UP_MS;
  progress(
    `${what}: warming up, ${ms / 1000} s of appends at ${WARM_UP_CONCURRENCY} in flight (not measured)`,
  );
  const r = await m.run({ warmupMs: ms, measureMs: 100, runs: 1 });
  progress(
    `${what}: warm (${Math.round(r.window.opsPerSec).toLocaleString("en-US")} ops/s at the end)`,
  );
}

/**
 * CPU the system's processes use per second while idle: what it takes from the other system
 * while that one is measured (both are up while appends are measured in turns).
 */
async function idleCpu(what: string, pids: readonly number[], quick: boolean): Promise<number> {
  const perSec = round(await cpuMsPerSec(pids, quick ? 500 : 3000), 1);
  progress(`${what}: idle, its ${pids.length} processes use ${perSec} ms of CPU per second`);
  return perSec;
}

/** Marks a measurement's row as taken in turns with `other` (see `runMeasurements`' interleave). */
function inTurns(m: Measurement, other: string): Measurement {
  return {
    label: m.label,
    run: async (phases, onProgress) => {
      const r = await m.run(phases, onProgress);
      return { ...r, extras: { ...r.extras, measuredInTurnsWith: other } };
    },
  };
}

interface ClusterRun {
  readonly durability: Durability;
  readonly withReads: boolean;
}

type Item =
  | { readonly kind: "append"; readonly concurrency: number; readonly payloadBytes: number }
  | { readonly kind: "read"; readonly read: ReadKind };

function itemLabel(durability: Durability, item: Item): string {
  return item.kind === "append"
    ? `cluster-${durability} append c=${item.concurrency} ${item.payloadBytes} B`
    : `cluster-${durability} ${item.read}`;
}

/** The last warning/error lines each node printed (pino JSON at level ≥ 40), for a failure record. */
function nodeWarnings(c: BokiCluster): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [id, p] of c.processes) {
    const lines = p
      .output(400)
      .split("\n")
      .filter((l) => /"level":(40|50|60)/.test(l) && !l.includes("ECONNREFUSED"))
      .slice(-3)
      .map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l));
    if (lines.length > 0) out[id] = lines;
  }
  return out;
}

/**
 * Runs one durability mode's measurements on one cluster kept up across them. A measurement
 * that fails (e.g. an append stays unordered until the engine's 10 s timeout: see the bench
 * README on index stalls) is recorded, the cluster is replaced by a fresh one, and the
 * measurement is run once more there; its row then says so (`rerunOnFreshCluster`).
 */
async function runCluster(
  run: ClusterRun,
  phases: Phases,
  quick: boolean,
  rows: ResultRow[],
  info: Record<string, unknown>,
  failures: Skipped[],
  notes: string[],
  peer: NatsSession | undefined,
): Promise<void> {
  const { durability } = run;
  const items: Item[] = [];
  for (const concurrency of CLUSTER_CONCURRENCY) {
    for (const payloadBytes of CLUSTER_PAYLOAD_BYTES) {
      items.push({ kind: "append", concurrency, payloadBytes });
    }
  }
  if (run.withReads) {
    for (const read of [
      "read-local-cache-hit",
      "read-local-cache-miss",
      "read-remote-index",
      "read-remote-index-cache-miss",
    ] as const) {
      items.push({ kind: "read", read });
    }
  }
  const starts: Array<Record<string, unknown>> = [];
  const failed: Array<Record<string, unknown>> = [];
  info[`cluster-${durability}`] = { starts, failedAttempts: failed };

  await withTempDir(`boki-bench-cluster-${durability}`, async (dir) => {
    let c: BokiCluster | undefined;
    let cdir = "";
    let setup: ReadSetup | undefined;
    let here: Record<string, unknown> = {};
    const start = async (): Promise<BokiCluster> => {
      cdir = join(dir, `cluster-${starts.length + 1}`);
      mkdirSync(cdir);
      progress(
        `boki cluster-${durability}: starting 3 sequencers, 3 storage nodes, 2 engines (each its own process)`,
      );
      const started = await startBokiCluster({
        dir: cdir,
        durability,
        ...TOPOLOGY,
        logLevel: "warn",
        say: progress,
      });
      here = {
        readySec: round(started.readyMs / 1000, 2),
        term: started.term,
        nodes: started.config.nodes.map((n) => `${n.role}:${n.id}@${n.host}:${n.port}`),
        pids: Object.fromEntries([...started.processes].map(([id, p]) => [id, p.pid ?? null])),
      };
      starts.push(here);
      progress(
        `boki cluster-${durability}: ready in ${(started.readyMs / 1000).toFixed(1)} s (term ${started.term})`,
      );
      await warmUp(
        `boki cluster-${durability}`,
        appendMeasurement(started, durability, WARM_UP_CONCURRENCY, 100),
        quick,
      );
      here["idleCpuMsPerSec"] = await idleCpu(
        `boki cluster-${durability}`,
        [...started.processes.values()].flatMap((p) => (p.pid === undefined ? [] : [p.pid])),
        quick,
      );
      setup = undefined;
      return started;
    };
    const stop = async (): Promise<void> => {
      if (c === undefined) return;
      const stopping = c;
      c = undefined;
      const stops = await stopping.stop();
      here["stopped"] = stops.map((s) => `${s.id}:${s.how}`);
      const bad = stops.filter((s) => s.how !== "sigterm" || s.code !== 0);
      progress(
        `boki cluster-${durability}: stopped` +
          (bad.length === 0
            ? " (every node exited 0 after SIGTERM)"
            : `; unclean: ${bad.map((s) => `${s.id} ${s.how} code ${s.code ?? "-"} signal ${s.signal ?? "-"}`).join(", ")}`),
      );
      rmSync(cdir, { recursive: true, force: true });
    };
    try {
      for (const [i, item] of items.entries()) {
        let firstError: string | undefined;
        for (let attempt = 1; attempt <= 2; attempt++) {
          // A cluster that cannot start fails the whole mode (caught by the caller).
          const cluster = (c ??= await start());
          const rowsBefore = rows.length;
          try {
            let m: Measurement;
            if (item.kind === "append") {
              m = appendMeasurement(cluster, durability, item.concurrency, item.payloadBytes);
            } else {
              if (setup === undefined) {
                const s = await prepareReads(cluster, phases, progress);
                setup = s;
                here["reads"] = {
                  indexEngine: s.indexEngineId,
                  otherEngine: s.otherEngineId,
                  physicalLog: s.log,
                  books: s.book,
                  readOnceRecordsPreloaded: s.readOnceRecords,
                  probe: s.probe,
                };
              }
              m = readMeasurement(cluster, setup, item.read);
            }
            const rerun = firstError;
            const measured: Measurement =
              rerun === undefined
                ? m
                : {
                    label: `${m.label} (again, on a fresh cluster)`,
                    run: async (ph, onProgress) => {
                      const r = await m.run(ph, onProgress);
                      return { ...r, extras: { ...r.extras, rerunOnFreshCluster: rerun } };
                    },
                  };
            // Each append point is measured in turns with the peer at the same point: a run
            // of Boki, a run of the peer, and so on, so that the ratio compares runs taken
            // minutes apart at most.
            const list: Measurement[] = [measured];
            if (peer !== undefined && item.kind === "append") {
              list.push(inTurns(peer.measurement(item.concurrency, item.payloadBytes), "boki"));
              list[0] = inTurns(measured, `${NATS_SYSTEM} ${peer.mode}`);
            }
            await runMeasurements(list, {
              phases,
              quick,
              tag: item.kind === "append" ? durability : "reads",
              progress,
              into: rows,
              numbering: { offset: i, total: items.length },
              interleave: true,
            });
            const died = cluster.exitedEarly();
            if (died.length > 0)
              throw new Error(`nodes exited while measuring: ${died.join(", ")}`);
            if (rerun !== undefined) {
              notes.push(
                `boki ${itemLabel(durability, item)}: first attempt failed (${rerun}); the row is from a re-run on a fresh cluster`,
              );
            }
            break;
          } catch (err) {
            // A row already written (nodes died after the window) is dropped with the attempt.
            rows.length = rowsBefore;
            const reason = errMessage(err);
            const label = itemLabel(durability, item);
            failed.push({
              measurement: label,
              attempt,
              error: reason,
              nodeWarnings: nodeWarnings(cluster),
            });
            progress(
              `boki ${label} failed (attempt ${attempt} of 2): ${reason}; ` +
                (attempt === 1 ? "replacing the cluster and running it again" : "giving up on it"),
            );
            await stop();
            if (attempt === 1) {
              firstError = reason;
            } else {
              failures.push({
                system: "boki",
                mode: `cluster-${durability}`,
                reason: `${label} failed twice; last: ${reason}`,
              });
            }
          }
        }
      }
    } finally {
      await stop();
    }
  });
}

/**
 * Run-by-run ratios when the two rows were measured in turns (Boki's run k beside the peer's
 * run k): how much the ratio moved from one pair of runs to the next.
 */
function pairedRatios(r: ResultRow, peer: ResultRow): Record<string, number[]> {
  const runs = (row: ResultRow, key: string): number[] | undefined => {
    const v = row[key];
    return Array.isArray(v) && v.every((x) => typeof x === "number") ? v : undefined;
  };
  const ops = runs(r, "runOpsPerSec");
  const peerOps = runs(peer, "runOpsPerSec");
  const p99 = runs(r, "runP99Ms");
  const peerP99 = runs(peer, "runP99Ms");
  if (
    r["measuredInTurnsWith"] === undefined ||
    ops === undefined ||
    peerOps === undefined ||
    p99 === undefined ||
    peerP99 === undefined ||
    ops.length !== peerOps.length ||
    p99.length !== peerP99.length
  )
    return {};
  return {
    runOpsRatiosToPeer: ops.map((x, i) => round(x / peerOps[i]!, 3)),
    runP99RatiosToPeer: p99.map((x, i) => round(x / peerP99[i]!, 3)),
  };
}

/** Adds peer comparison fields to Boki's append rows; returns notes for the table. */
function compareWithPeer(rows: ResultRow[], peerSkipped: ReadonlyMap<string, string>): string[] {
  const notes: string[] = [];
  const nats = new Map(
    rows
      .filter((r) => r.system === NATS_SYSTEM && r.workload === "append")
      .map((r) => [`${r.mode}/${r.concurrency}/${r.payloadBytes}`, r]),
  );
  for (const [i, r] of rows.entries()) {
    if (r.system !== "boki") continue;
    const durability = r.mode.replace(/^cluster-/, "") as Durability;
    const peerMode = PEER_MODE[durability];
    if (r.workload !== "append" || peerMode === undefined) continue;
    const peer = nats.get(`${peerMode}/${r.concurrency}/${r.payloadBytes}`);
    if (peer === undefined) {
      const why = peerSkipped.get(peerMode) ?? peerSkipped.get("*") ?? "no matching peer row";
      rows[i] = { ...r, peer: `${NATS_SYSTEM} ${peerMode}`, peerFigure: null, peerSkipped: why };
      continue;
    }
    rows[i] = {
      ...r,
      peer: `${NATS_SYSTEM} ${peerMode}`,
      peerFigure: { opsPerSec: peer.opsPerSec, p50Ms: peer.p50Ms, p99Ms: peer.p99Ms },
      opsRatioToPeer: round(r.opsPerSec / peer.opsPerSec, 3),
      p99RatioToPeer: round(r.p99Ms / peer.p99Ms, 3),
      ...pairedRatios(r, peer),
    };
  }
  for (const d of ["memory", "disk"] as const) {
    const peerMode = PEER_MODE[d];
    const why = peerSkipped.get(peerMode) ?? peerSkipped.get("*");
    if (why !== undefined && rows.some((r) => r.system === "boki" && r.mode === `cluster-${d}`)) {
      notes.push(
        `no peer figure for boki cluster-${d} (compared with ${NATS_SYSTEM} ${peerMode}): ${why}`,
      );
    }
  }
  return notes;
}

export async function runLogCluster(options: SuiteOptions): Promise<SuiteOutput> {
  const phases = options.quick ? CLUSTER_QUICK_PHASES : FULL_PHASES;
  const rows: ResultRow[] = [];
  const skipped: Skipped[] = [];
  const clusters: Record<string, unknown> = {};
  const runs: ClusterRun[] = [
    { durability: "memory", withReads: true },
    { durability: "disk", withReads: false },
  ];
  const bokiCount = runs.length * CLUSTER_CONCURRENCY.length * CLUSTER_PAYLOAD_BYTES.length + 4;
  progress(
    `log --cluster: ${bokiCount} Boki measurements over 2 clusters, appends in turns with the NATS peer; ` +
      `${phases.runs} run(s) of warm-up ${phases.warmupMs / 1000} s + window ${phases.measureMs / 1000} s each ` +
      `(~${Math.round(windowSeconds(bokiCount, phases))} s of Boki windows, plus cluster start-ups and preloads)`,
  );
  let failed = false;
  const clusterNotes: string[] = [];
  const peerSkipped = new Map<string, string>();
  const peerInfo: Record<string, unknown> = {};
  const peerClusters: Record<string, unknown> = {};
  if (!options.peers) {
    const reason = "--no-peers given";
    progress(`nats: ${reason}; skipping the NATS JetStream peer`);
    skipped.push({ system: NATS_SYSTEM, mode: "*", reason });
    peerSkipped.set("*", reason);
  }
  for (const run of runs) {
    const peerMode = PEER_MODE[run.durability];
    await withTempDir(`boki-bench-nats-${run.durability}`, async (natsDir) => {
      // The peer's cluster for this durability runs beside Boki's, idle while the other
      // system is measured, so that both take turns at every load point.
      let session: NatsSession | undefined;
      if (options.peers) {
        const opened = await openNatsSession(peerMode, natsDir, progress);
        Object.assign(peerInfo, opened.ok ? opened.session.info : opened.info);
        if (opened.ok) {
          session = opened.session;
          await warmUp(
            `nats ${peerMode}`,
            session.measurement(WARM_UP_CONCURRENCY, 100),
            options.quick,
          );
          const idle = await idleCpu(`nats ${peerMode}`, session.pids(), options.quick);
          peerClusters[peerMode] = {
            ...((session.info["clusters"] as Record<string, object>)[peerMode] ?? {}),
            idleCpuMsPerSec: idle,
          };
        } else {
          progress(`nats: skipping mode ${peerMode}: ${opened.reason}`);
          skipped.push({ system: NATS_SYSTEM, mode: peerMode, reason: opened.reason });
          peerSkipped.set(peerMode, opened.reason);
        }
      }
      try {
        const before = skipped.length;
        await runCluster(
          run,
          phases,
          options.quick,
          rows,
          clusters,
          skipped,
          clusterNotes,
          session,
        );
        if (skipped.length > before) failed = true;
      } catch (err) {
        failed = true;
        const reason = `failed: ${errMessage(err)}`;
        progress(`boki cluster-${run.durability}: ${reason}`);
        skipped.push({ system: "boki", mode: `cluster-${run.durability}`, reason });
      } finally {
        if (session !== undefined) {
          const how = await session.close();
          peerClusters[peerMode] = {
            ...(peerClusters[peerMode] as object | undefined),
            stopped: how,
          };
          if (how.some((h) => h !== "sigterm")) {
            progress(`nats: stopping the cluster needed: ${how.join(", ")}`);
          }
        }
      }
    });
  }
  const peers: Record<string, unknown> = options.peers
    ? { [NATS_SYSTEM]: { ...peerInfo, clusters: peerClusters } }
    : {};
  const notes = [...clusterNotes, ...compareWithPeer(rows, peerSkipped)];
  for (const n of notes) progress(n);
  if (failed) process.exitCode = 1;
  return {
    rows,
    skipped,
    notes,
    extra: {
      variant: "cluster",
      clusters,
      peers,
      comparedModes: Object.fromEntries(
        (["memory", "disk"] as const).map((d) => [
          `cluster-${d}`,
          {
            peer: `${NATS_SYSTEM} ${PEER_MODE[d]}`,
            boki: BOKI_DURABILITY[d],
            nats: NATS_MODES.find((m) => m.mode === PEER_MODE[d])?.durability ?? null,
          },
        ]),
      ),
      loadGenerator:
        "this Node process: one ClusterClient (TCP to both engines), closed-loop sessions; the 8 node processes and it share this machine's CPUs",
    },
  };
}
