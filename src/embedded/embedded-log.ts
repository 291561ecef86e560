/**
 * The whole log in one process: a sequencer, a storage node and an engine over the
 * in-process transport, with lmdb on a data directory. Every open starts a new term, so
 * records that were sent but never ordered before a crash are sealed out, exactly as a
 * reconfiguration would.
 *
 * Durability with one fsync per acknowledgement: the sequencer and the storage node share
 * one lmdb environment. The storage node reports records as held once it has issued their
 * writes, the sequencer cuts right away and writes the metalog entry, and an append is
 * acknowledged only when that entry's commit is on disk. lmdb commits writes in the order
 * they were issued, and a record's write is issued before the entry that orders it, so the
 * record is on disk too. One commit thus makes a whole batch of records and its order
 * durable.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { systemClock, type Clock } from "../clock/clock.js";
import { InProcNetwork } from "../transport/inproc.js";
import { LmdbBackend } from "../storage/lmdb-backend.js";
import { StorageNode } from "../storage/storage-node.js";
import { Sequencer } from "../sequencer/sequencer.js";
import { Engine } from "../engine/engine.js";
import { EngineLogBook } from "../engine/logbook.js";
import { View } from "../log/view.js";
import type { LogBook } from "../log/api.js";
import { parseBookId, parseMetalogPosition, type MetalogPosition } from "../log/types.js";
import { InvalidArgumentError, LogClosedError } from "../log/errors.js";
import { CACHE_BYTES_DEFAULT, PHYSICAL_LOGS_DEFAULT } from "../log/limits.js";
import { createLogger, type Logger } from "../util/logger.js";

export interface EmbeddedLogOptions {
  /** Data directory; created if missing. */
  readonly dir: string;
  /** Physical logs books are spread over. Fixed when the directory is first opened. */
  readonly physicalLogs?: number;
  readonly cacheBytes?: number;
  readonly cutIntervalMs?: number;
  /**
   * true (default): an append is acknowledged once its commit is fsync'ed, so it survives
   * a machine crash. false: commits are not fsync'ed; acknowledged appends survive a crash
   * of the process but not of the machine.
   */
  readonly sync?: boolean;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

const LOCK_FILE = "LOCK";

/** The system clock, with `afterTurn` run at the end of the current task (a microtask). */
const sameTurnClock: Clock = { ...systemClock, afterTurn: (callback) => queueMicrotask(callback) };

function takeLock(dir: string): string {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8"));
      let alive = false;
      try {
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
          process.kill(pid, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (alive || pid === process.pid) {
        throw new InvalidArgumentError(`data directory ${dir} is in use by process ${pid}`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new InvalidArgumentError(`could not lock data directory ${dir}`);
}

export class EmbeddedLog {
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly view: View,
    private readonly engine: Engine,
    private readonly storage: StorageNode,
    private readonly sequencer: Sequencer,
    private readonly backends: LmdbBackend[],
    private readonly lockPath: string,
  ) {}

  static async open(options: EmbeddedLogOptions): Promise<EmbeddedLog> {
    if (typeof options?.dir !== "string" || options.dir.length === 0) {
      throw new InvalidArgumentError("EmbeddedLog.open needs a data directory (dir)");
    }
    mkdirSync(options.dir, { recursive: true });
    const lockPath = takeLock(options.dir);
    const backends: LmdbBackend[] = [];
    try {
      const logger = options.logger ?? createLogger();
      const clock = options.clock ?? systemClock;
      const disk = await LmdbBackend.open(join(options.dir, "data"), {
        sync: options.sync ?? true,
        wal: true,
      });
      backends.push(disk);
      const seqStore = disk;

      const stored = seqStore.readMeta("physicalLogs") as number | undefined;
      const physicalLogs = options.physicalLogs ?? stored ?? PHYSICAL_LOGS_DEFAULT;
      if (stored !== undefined && stored !== physicalLogs) {
        throw new InvalidArgumentError(
          `${options.dir} was created with physicalLogs=${stored}; it cannot be opened with ${physicalLogs}`,
        );
      }
      const term = ((seqStore.readMeta("term") as number | undefined) ?? 0) + 1;
      await seqStore.writeMeta("physicalLogs", physicalLogs);
      await seqStore.writeMeta("term", term);

      const view = new View({
        term,
        physicalLogs,
        sequencers: Array.from({ length: physicalLogs }, () => ["sequencer-0"]),
        storages: ["storage-0"],
        engines: ["engine-0"],
        replication: 1,
      });
      const net = new InProcNetwork();
      const sequencer = new Sequencer({
        transport: net.connect("sequencer-0"),
        // The cut follows the storage node's progress report within the same turn, so the
        // metalog entry joins the records' group write in the WAL: one write (one sync) per
        // group of appends instead of two. (Only for the system clock: a clock passed in
        // keeps its own turns.)
        clock: clock === systemClock ? sameTurnClock : clock,
        store: seqStore,
        view,
        logger: logger.child({ role: "sequencer" }),
        cutIntervalMs: options.cutIntervalMs ?? 0,
      });
      const storage = new StorageNode({
        transport: net.connect("storage-0"),
        clock,
        backend: disk,
        view,
        logger: logger.child({ role: "storage" }),
        durability: "memory",
        persistMetalog: false,
      });
      const engine = new Engine({
        transport: net.connect("engine-0"),
        clock,
        view,
        logger: logger.child({ role: "engine" }),
        cacheBytes: options.cacheBytes ?? CACHE_BYTES_DEFAULT,
      });
      sequencer.start();
      storage.start();
      await engine.start();
      return new EmbeddedLog(options.dir, view, engine, storage, sequencer, backends, lockPath);
    } catch (err) {
      for (const b of backends) await b.close();
      rmSync(lockPath, { force: true });
      throw err;
    }
  }

  /** The term this open started; each open of the directory starts a new one. */
  get term(): number {
    return this.view.term;
  }

  /**
   * A LogBook handle for a book. Each handle is a reader session: it starts at `position`
   * (default: everything acknowledged before this call) and only moves forward.
   */
  book(book: number | string, options: { position?: MetalogPosition | number } = {}): LogBook {
    if (this.closed) throw new LogClosedError();
    const id = parseBookId(book);
    const position =
      options.position === undefined
        ? this.engine.positionOf(id)
        : parseMetalogPosition(options.position);
    return new EngineLogBook(this.engine, id, position);
  }

  /** The engine's record cache counters, summed over physical logs (for metrics). */
  cacheStats(): { hits: number; misses: number } {
    const { cacheHits, cacheMisses } = this.engine.stats();
    return { hits: cacheHits, misses: cacheMisses };
  }

  /** Stops accepting work, fails what is in flight with LOG_CLOSED, and closes the disk. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.engine.close();
    await this.sequencer.close();
    await this.storage.close();
    for (const b of this.backends) await b.close();
    rmSync(this.lockPath, { force: true });
  }
}
