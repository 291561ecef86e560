/**
 * The embedded coordination store: the whole state in one file of a data directory, for
 * one process on one machine (`boki dev`, single-machine clusters run in one process, tests).
 *
 * - **One process.** A lock file (`coord.lock`, holding the owner's pid) refuses a second
 *   process. Within the process, every `FileStore.open` of the same directory shares one
 *   state, so the controller, the nodes and tests each hold their own client (own leases,
 *   own watches) and see each other's writes at once.
 * - **Durability.** Writes are applied in call order once per event-loop turn, as a batch:
 *   the new state goes to `coord.json.tmp`, is fsync'ed, renamed over `coord.json`, and the
 *   directory is fsync'ed; only then do the batch's calls resolve and its watch events go
 *   out. Readers therefore only ever see durable state. A failed write ends the store:
 *   every later call fails with `UNAVAILABLE`.
 * - **Leases** expire on the injected clock (default: the system clock). Expiry deadlines are
 *   not persisted: on open, every stored lease gets its full TTL again (as etcd does when a
 *   member restarts), and expires then unless its owner is still alive to keep it, which
 *   after a restart it is not.
 * - **Watches** replay history from `fromRevision` while it is among the last
 *   `FILE_HISTORY_EVENTS_MAX` events of this process's lifetime; older is `compacted`.
 *
 * The state is rewritten whole on every batch, so it is meant for configuration-sized data
 * (`FILE_STATE_BYTES_MAX`), not for bulk.
 *
 * `FileStore.openInMemory` gives the same store without the file: state lives as long as the
 * process, shared by every client opened with the same name. With a simulated clock it is
 * fully deterministic (batches are written on `clock.afterTurn`), which the simulator uses.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { systemClock, type Clock, type TimerHandle } from "../clock/clock.js";
import { DataLostError, InvalidArgumentError } from "../log/errors.js";
import { readLeader, runCampaign } from "./election.js";
import {
  CoordUnavailableError,
  LeaseLostError,
  LimitExceededError,
  StoreClosedError,
  StoreLockedError,
} from "./errors.js";
import {
  checkExpected,
  checkKey,
  checkPrefix,
  checkTtlMs,
  checkValue,
  compareKeys,
  LEASE_KEEPALIVES_PER_TTL,
  LIST_ENTRIES_MAX,
  type CampaignOptions,
  type CoordStore,
  type CoordValue,
  type KeyValue,
  type LeaderInfo,
  type Leadership,
  type Lease,
  type LeaseId,
  type LeaseState,
  type ListResult,
  type PutOptions,
  type Revision,
  type Watch,
  type WatchEvent,
  type WatchListener,
  type WatchOptions,
} from "./store.js";
import { WatchQueue } from "./watch-queue.js";

/** Largest state the file holds (estimated as stored: keys, base64 values, metadata). */
export const FILE_STATE_BYTES_MAX = 64 * 1024 * 1024;
/** Events kept in memory for watches that start at a past revision. */
export const FILE_HISTORY_EVENTS_MAX = 10_000;
/** Most leases alive at once. */
export const FILE_LEASES_MAX = 100_000;
/** Most watches open at once (over every client of the directory). */
export const FILE_WATCHES_MAX = 10_000;

export const FILE_STATE_NAME = "coord.json";
export const FILE_LOCK_NAME = "coord.lock";
const FORMAT = 1;
/** Estimated bytes of a stored entry besides its key and value. */
const ENTRY_OVERHEAD_BYTES = 64;

export interface InMemoryStoreOptions {
  /** Clients opened with the same name share one state. */
  readonly name: string;
  /** As for `FileStoreOptions.clock`. */
  readonly clock?: Clock;
}

export interface FileStoreOptions {
  /** The directory holding `coord.json` and `coord.lock` (created if missing). */
  readonly dir: string;
  /**
   * Time for lease expiry, keep-alives and campaign timeouts. Every client of a directory
   * in a process must use the same clock (the first `open` sets it).
   */
  readonly clock?: Clock;
}

interface Entry {
  value: Uint8Array;
  createRevision: number;
  revision: number;
  version: number;
  leaseId: string | null;
}

interface LeaseRecord {
  readonly id: string;
  readonly ttlMs: number;
  deadline: number;
  timer: TimerHandle | null;
  readonly keys: Set<string>;
  owner: FileLease | null;
}

interface StoredState {
  format: number;
  revision: number;
  nextLeaseId: number;
  leases: Array<[string, number]>;
  keys: Array<[string, string, number, number, number, string | null]>;
}

interface Op {
  apply(): unknown;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

function entryBytes(key: string, value: Uint8Array): number {
  return Buffer.byteLength(key, "utf8") + Math.ceil(value.length / 3) * 4 + ENTRY_OVERHEAD_BYTES;
}

function takeLock(path: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      fsyncSync(fd);
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8").trim());
      let alive = false;
      // A lock left by this very process (a store it failed to close) is stale too: a
      // live store of this process would have been found in the registry.
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (e) {
          alive = (e as NodeJS.ErrnoException).code === "EPERM";
        }
      }
      if (alive) throw new StoreLockedError(path, pid);
      rmSync(path, { force: true });
    }
  }
  throw new CoordUnavailableError(`could not take the lock ${path}`);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The state of one directory, shared by every client of it in this process. */
class FileCore {
  private static readonly open = new Map<string, FileCore>();

  static acquire(options: FileStoreOptions | InMemoryStoreOptions): FileCore {
    let dir: string;
    let persist: boolean;
    if ("name" in options) {
      if (typeof options.name !== "string" || options.name.length === 0) {
        throw new InvalidArgumentError("FileStore.openInMemory needs a name");
      }
      dir = `memory:${options.name}`;
      persist = false;
    } else {
      if (typeof options?.dir !== "string" || options.dir.length === 0) {
        throw new InvalidArgumentError("FileStore.open needs a directory (dir)");
      }
      mkdirSync(options.dir, { recursive: true });
      dir = realpathSync(options.dir);
      persist = true;
    }
    let core = FileCore.open.get(dir);
    if (core === undefined) {
      core = new FileCore(dir, options.clock ?? systemClock, persist);
      FileCore.open.set(dir, core);
    } else if (options.clock !== undefined && options.clock !== core.clock) {
      throw new InvalidArgumentError(
        `the coordination store in ${dir} is open in this process with another clock`,
      );
    }
    core.refs++;
    return core;
  }

  readonly clock: Clock;
  private refs = 0;
  private readonly statePath: string;
  private readonly tmpPath: string;
  private readonly lockPath: string;
  revision = 0;
  private nextLeaseId = 1;
  private readonly keys = new Map<string, Entry>();
  private readonly leases = new Map<string, LeaseRecord>();
  private stateBytes = 0;
  private history: WatchEvent[] = [];
  /** The oldest revision whose events are all in `history`. */
  private historyStart = 1;
  private readonly watches = new Set<{ prefix: string; from: number; queue: WatchQueue }>();
  private ops: Op[] = [];
  private flushScheduled = false;
  private failure: Error | null = null;

  private constructor(
    private readonly dir: string,
    clock: Clock,
    /** False for an in-memory store: no lock, no file. */
    readonly persist: boolean,
  ) {
    this.clock = clock;
    this.statePath = join(dir, FILE_STATE_NAME);
    this.tmpPath = join(dir, `${FILE_STATE_NAME}.tmp`);
    this.lockPath = join(dir, FILE_LOCK_NAME);
    if (!persist) return;
    takeLock(this.lockPath);
    try {
      rmSync(this.tmpPath, { force: true });
      this.load();
    } catch (e) {
      rmSync(this.lockPath, { force: true });
      throw e;
    }
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.statePath, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        this.historyStart = 1;
        return;
      }
      throw e;
    }
    let s: StoredState;
    try {
      s = JSON.parse(text) as StoredState;
      if (s.format !== FORMAT || !Array.isArray(s.keys) || !Array.isArray(s.leases)) {
        throw new Error(`unknown format ${String(s.format)}`);
      }
    } catch (e) {
      throw new DataLostError(
        `the coordination store file ${this.statePath} is unreadable: ${(e as Error).message}`,
      );
    }
    this.revision = s.revision;
    this.nextLeaseId = s.nextLeaseId;
    const now = this.clock.now();
    for (const [id, ttlMs] of s.leases) {
      const rec: LeaseRecord = {
        id,
        ttlMs,
        deadline: now + ttlMs,
        timer: null,
        keys: new Set(),
        owner: null,
      };
      this.leases.set(id, rec);
      this.armExpiry(rec);
    }
    for (const [key, b64, createRevision, revision, version, leaseId] of s.keys) {
      const value = new Uint8Array(Buffer.from(b64, "base64"));
      this.keys.set(key, { value, createRevision, revision, version, leaseId });
      this.stateBytes += entryBytes(key, value);
      if (leaseId !== null) this.leases.get(leaseId)?.keys.add(key);
    }
    this.historyStart = this.revision + 1;
  }

  // --- reads (of durable state: writes apply only when their batch is written) ---------

  check(): void {
    if (this.failure !== null) {
      throw new CoordUnavailableError(
        `the coordination store in ${this.dir} failed: ${this.failure.message}`,
        { cause: this.failure },
      );
    }
  }

  get(key: string): KeyValue | null {
    const e = this.keys.get(key);
    return e === undefined ? null : this.toKv(key, e);
  }

  list(prefix: string): ListResult {
    const keys: string[] = [];
    for (const k of this.keys.keys()) if (k.startsWith(prefix)) keys.push(k);
    if (keys.length > LIST_ENTRIES_MAX) {
      throw new LimitExceededError(
        `list of "${prefix}" has ${keys.length} entries; the limit is ${LIST_ENTRIES_MAX}`,
        LIST_ENTRIES_MAX,
      );
    }
    keys.sort(compareKeys);
    return {
      entries: keys.map((k) => this.toKv(k, this.keys.get(k)!)),
      revision: this.revision as Revision,
    };
  }

  private toKv(key: string, e: Entry): KeyValue {
    return {
      key,
      value: e.value,
      revision: e.revision as Revision,
      createRevision: e.createRevision as Revision,
      version: e.version,
      leaseId: e.leaseId as LeaseId | null,
    };
  }

  // --- writes -----------------------------------------------------------------------------

  /** Queues a write; `apply` runs in call order when the batch is written. */
  submit<T>(apply: () => T): Promise<T> {
    if (this.failure !== null) return Promise.reject(this.failureError());
    return new Promise<T>((resolve, reject) => {
      this.ops.push({ apply, resolve: resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        this.clock.afterTurn(() => this.flush());
      }
    });
  }

  private events: WatchEvent[] = [];
  private dirty = false;

  private flush(): void {
    this.flushScheduled = false;
    const ops = this.ops;
    this.ops = [];
    const results: Array<{ op: Op; ok: boolean; value: unknown }> = [];
    for (const op of ops) {
      if (this.failure !== null) {
        results.push({ op, ok: false, value: this.failureError() });
        continue;
      }
      try {
        results.push({ op, ok: true, value: op.apply() });
      } catch (e) {
        results.push({ op, ok: false, value: e });
      }
    }
    const events = this.events;
    this.events = [];
    if (this.dirty && this.failure === null && this.persist) {
      this.dirty = false;
      try {
        this.write();
      } catch (e) {
        this.failure = e as Error;
      }
    }
    if (this.failure !== null) {
      const err = this.failureError();
      for (const r of results) r.op.reject(err);
      this.failAll();
      return;
    }
    for (const r of results) {
      if (r.ok) r.op.resolve(r.value);
      else r.op.reject(r.value);
    }
    this.publish(events);
  }

  private failureError(): CoordUnavailableError {
    return new CoordUnavailableError(
      `the coordination store in ${this.dir} failed to write its state: ${this.failure?.message}`,
      { cause: this.failure, outcomeUnknown: true },
    );
  }

  private failAll(): void {
    const error = this.failureError();
    for (const w of [...this.watches]) w.queue.end({ reason: "unavailable", error });
    for (const rec of this.leases.values()) {
      if (rec.timer !== null) this.clock.clearTimer(rec.timer);
      rec.timer = null;
      rec.owner?.markLost(new LeaseLostError(`lease ${rec.id} lost: ${error.message}`, error));
    }
  }

  private write(): void {
    const leases: StoredState["leases"] = [];
    for (const rec of this.leases.values()) leases.push([rec.id, rec.ttlMs]);
    const keys: StoredState["keys"] = [];
    for (const [k, e] of this.keys) {
      keys.push([
        k,
        Buffer.from(e.value.buffer, e.value.byteOffset, e.value.byteLength).toString("base64"),
        e.createRevision,
        e.revision,
        e.version,
        e.leaseId,
      ]);
    }
    const state: StoredState = {
      format: FORMAT,
      revision: this.revision,
      nextLeaseId: this.nextLeaseId,
      leases,
      keys,
    };
    const fd = openSync(this.tmpPath, "w");
    try {
      writeSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(this.tmpPath, this.statePath);
    fsyncDir(this.dir);
  }

  /** Applies a put (inside a batch). */
  applyPut(key: string, value: Uint8Array, leaseId: string | null): Revision {
    let lease: LeaseRecord | undefined;
    if (leaseId !== null) {
      lease = this.leases.get(leaseId);
      if (lease === undefined) throw new LeaseLostError(`lease ${leaseId} is not alive`);
    }
    const old = this.keys.get(key);
    const bytes =
      this.stateBytes -
      (old === undefined ? 0 : entryBytes(key, old.value)) +
      entryBytes(key, value);
    if (bytes > FILE_STATE_BYTES_MAX) {
      throw new LimitExceededError(
        `the coordination store's state would grow to ${bytes} bytes; the limit is ${FILE_STATE_BYTES_MAX}`,
        FILE_STATE_BYTES_MAX,
      );
    }
    const revision = ++this.revision;
    if (old?.leaseId != null && old.leaseId !== leaseId) {
      this.leases.get(old.leaseId)?.keys.delete(key);
    }
    lease?.keys.add(key);
    const e: Entry = {
      value,
      createRevision: old?.createRevision ?? revision,
      revision,
      version: (old?.version ?? 0) + 1,
      leaseId,
    };
    this.keys.set(key, e);
    this.stateBytes = bytes;
    this.dirty = true;
    this.events.push({ type: "put", key, revision: revision as Revision, kv: this.toKv(key, e) });
    return revision as Revision;
  }

  /** Deletes keys at one revision (inside a batch); returns how many existed. */
  applyDelete(keys: Iterable<string>): number {
    let deleted = 0;
    let revision = 0;
    for (const key of keys) {
      const e = this.keys.get(key);
      if (e === undefined) continue;
      if (revision === 0) revision = ++this.revision;
      this.keys.delete(key);
      this.stateBytes -= entryBytes(key, e.value);
      if (e.leaseId !== null) this.leases.get(e.leaseId)?.keys.delete(key);
      this.events.push({ type: "delete", key, revision: revision as Revision });
      deleted++;
    }
    if (deleted > 0) this.dirty = true;
    return deleted;
  }

  applyGrant(ttlMs: number): LeaseRecord {
    if (this.leases.size >= FILE_LEASES_MAX) {
      throw new LimitExceededError(`${FILE_LEASES_MAX} leases are alive already`, FILE_LEASES_MAX);
    }
    const id = (this.nextLeaseId++).toString(16);
    const rec: LeaseRecord = {
      id,
      ttlMs,
      deadline: this.clock.now() + ttlMs,
      timer: null,
      keys: new Set(),
      owner: null,
    };
    this.leases.set(id, rec);
    this.dirty = true;
    this.armExpiry(rec);
    return rec;
  }

  /** Ends a lease and deletes its keys (inside a batch); false if it was not alive. */
  applyEndLease(id: string): boolean {
    const rec = this.leases.get(id);
    if (rec === undefined) return false;
    if (rec.timer !== null) this.clock.clearTimer(rec.timer);
    rec.timer = null;
    this.applyDelete([...rec.keys]);
    this.leases.delete(id);
    this.dirty = true;
    return true;
  }

  keepAlive(id: string): boolean {
    const rec = this.leases.get(id);
    if (rec === undefined || this.failure !== null) return false;
    rec.deadline = this.clock.now() + rec.ttlMs;
    return true;
  }

  private armExpiry(rec: LeaseRecord): void {
    const delay = Math.max(0, rec.deadline - this.clock.now());
    rec.timer = this.clock.setTimer(delay, () => {
      rec.timer = null;
      if (this.leases.get(rec.id) !== rec) return;
      if (rec.deadline > this.clock.now()) {
        this.armExpiry(rec);
        return;
      }
      this.expire(rec);
    });
  }

  private expire(rec: LeaseRecord): void {
    // The owner learns at the deadline; the keys go with the next batch, a turn later.
    rec.owner?.markLost(
      new LeaseLostError(`lease ${rec.id} expired: no keep-alive for ${rec.ttlMs} ms`),
    );
    rec.owner = null;
    // A failed store has told every owner already (failAll).
    this.submit(() => this.applyEndLease(rec.id)).catch(() => undefined);
  }

  // --- watches ------------------------------------------------------------------------------

  addWatch(prefix: string, listener: WatchListener, options: WatchOptions): WatchQueue {
    this.check();
    if (this.watches.size >= FILE_WATCHES_MAX) {
      throw new LimitExceededError(
        `${FILE_WATCHES_MAX} watches are open already`,
        FILE_WATCHES_MAX,
      );
    }
    const from = options.fromRevision ?? this.revision + 1;
    const w = {
      prefix,
      from,
      queue: new WatchQueue(prefix, listener, () => this.watches.delete(w)),
    };
    this.watches.add(w);
    if (from < this.historyStart) {
      w.queue.end({ reason: "compacted", compactRevision: (this.historyStart - 1) as Revision });
    } else if (from <= this.revision) {
      w.queue.push(this.history.filter((e) => e.revision >= from && e.key.startsWith(prefix)));
    }
    return w.queue;
  }

  private publish(events: WatchEvent[]): void {
    if (events.length === 0) return;
    for (const w of this.watches) {
      const mine = events.filter((e) => e.revision >= w.from && e.key.startsWith(w.prefix));
      if (mine.length > 0) w.queue.push(mine);
    }
    for (const e of events) this.history.push(e);
    if (this.history.length > FILE_HISTORY_EVENTS_MAX) {
      // Whole revisions are dropped, so the history never starts inside one.
      let cut = this.history.length - FILE_HISTORY_EVENTS_MAX;
      const last = this.history[cut - 1]!.revision;
      while (cut < this.history.length && this.history[cut]!.revision === last) cut++;
      this.history = this.history.slice(cut);
      this.historyStart = last + 1;
    }
  }

  // --- lifetime -------------------------------------------------------------------------------

  /** Waits until every write queued so far is written. */
  async settle(): Promise<void> {
    if (this.ops.length > 0) await this.submit(() => undefined).catch(() => undefined);
  }

  release(): void {
    if (--this.refs > 0) return;
    FileCore.open.delete(this.dir);
    for (const rec of this.leases.values()) {
      if (rec.timer !== null) this.clock.clearTimer(rec.timer);
      rec.timer = null;
    }
    for (const w of [...this.watches]) w.queue.end({ reason: "closed" });
    if (this.persist) rmSync(this.lockPath, { force: true });
  }
}

class FileLease implements Lease {
  readonly id: LeaseId;
  readonly ttlMs: number;
  readonly lost: Promise<LeaseLostError>;
  private stateNow: LeaseState = "alive";
  private resolveLost!: (e: LeaseLostError) => void;
  private keepAliveTimer: TimerHandle | null = null;

  constructor(
    private readonly core: FileCore,
    private readonly forget: (lease: FileLease) => void,
    id: string,
    ttlMs: number,
  ) {
    this.id = id as LeaseId;
    this.ttlMs = ttlMs;
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
  }

  get state(): LeaseState {
    return this.stateNow;
  }

  startKeepAlive(): void {
    const interval = Math.max(1, Math.floor(this.ttlMs / LEASE_KEEPALIVES_PER_TTL));
    const tick = () => {
      this.keepAliveTimer = null;
      if (this.stateNow !== "alive") return;
      if (!this.core.keepAlive(this.id)) return;
      this.keepAliveTimer = this.core.clock.setTimer(interval, tick);
    };
    this.keepAliveTimer = this.core.clock.setTimer(interval, tick);
  }

  stopKeepAlive(): void {
    if (this.keepAliveTimer !== null) this.core.clock.clearTimer(this.keepAliveTimer);
    this.keepAliveTimer = null;
  }

  async revoke(): Promise<void> {
    if (this.stateNow !== "alive") return;
    this.stateNow = "revoked";
    this.stopKeepAlive();
    this.forget(this);
    await this.core.submit(() => this.core.applyEndLease(this.id));
  }

  markLost(error: LeaseLostError): void {
    if (this.stateNow !== "alive") return;
    this.stateNow = "lost";
    this.stopKeepAlive();
    this.forget(this);
    this.resolveLost(error);
  }
}

export class FileStore implements CoordStore {
  readonly backend: "file" | "memory";
  private closed = false;
  private readonly leases = new Set<FileLease>();
  private readonly watches = new Set<WatchQueue>();

  private constructor(private readonly core: FileCore) {
    this.backend = core.persist ? "file" : "memory";
  }

  /**
   * Opens the store in `options.dir`. Opens of the same directory in one process share the
   * state; an open while another process holds the directory fails with `STORE_LOCKED`.
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- throws become rejections
  static async open(options: FileStoreOptions): Promise<FileStore> {
    return new FileStore(FileCore.acquire(options));
  }

  /**
   * Opens a client of the in-memory store `options.name` (created on first open, gone when
   * its last client closes).
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- throws become rejections
  static async openInMemory(options: InMemoryStoreOptions): Promise<FileStore> {
    return new FileStore(FileCore.acquire(options));
  }

  private check(): void {
    if (this.closed) throw new StoreClosedError();
    this.core.check();
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- throws become rejections
  async get(key: string): Promise<KeyValue | null> {
    checkKey(key);
    this.check();
    return this.core.get(key);
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- throws become rejections
  async list(prefix: string): Promise<ListResult> {
    checkPrefix(prefix);
    this.check();
    return this.core.list(prefix);
  }

  put(key: string, value: CoordValue, options: PutOptions = {}): Promise<Revision> {
    return this.write(() => {
      checkKey(key);
      const bytes = checkValue(value);
      const leaseId = this.leaseOf(options);
      return () => this.core.applyPut(key, bytes, leaseId);
    });
  }

  putIf(
    key: string,
    value: CoordValue,
    expected: Revision | "absent",
    options: PutOptions = {},
  ): Promise<Revision | null> {
    return this.write(() => {
      checkKey(key);
      const bytes = checkValue(value);
      const want = checkExpected(expected);
      const leaseId = this.leaseOf(options);
      return () => {
        const current = this.core.get(key);
        const holds = want === "absent" ? current === null : current?.revision === want;
        return holds ? this.core.applyPut(key, bytes, leaseId) : null;
      };
    });
  }

  delete(key: string): Promise<boolean> {
    return this.write(() => {
      checkKey(key);
      return () => this.core.applyDelete([key]) > 0;
    });
  }

  /** Validates now, applies in the next batch. */
  private async write<T>(prepare: () => () => T): Promise<T> {
    const apply = prepare();
    this.check();
    return this.core.submit(apply);
  }

  private leaseOf(options: PutOptions): string | null {
    const lease = options.lease;
    if (lease === undefined) return null;
    if (!(lease instanceof FileLease)) {
      throw new InvalidArgumentError("the lease was not granted by a file-backed store");
    }
    if (lease.state !== "alive") throw new LeaseLostError(`lease ${lease.id} is ${lease.state}`);
    return lease.id;
  }

  async watch(prefix: string, listener: WatchListener, options: WatchOptions = {}): Promise<Watch> {
    checkPrefix(prefix);
    if (typeof listener !== "function") {
      throw new InvalidArgumentError("watch needs a listener function");
    }
    if (options.fromRevision !== undefined) checkExpected(options.fromRevision);
    this.check();
    // Writes queued before the watch are written first, so "from now" means after them.
    await this.core.settle();
    this.check();
    const q = this.core.addWatch(prefix, listener, options);
    if (!q.isEnded) {
      this.watches.add(q);
      void q.done.then(() => this.watches.delete(q));
    }
    return q;
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtlMs(ttlMs);
    this.check();
    const forget = (l: FileLease) => this.leases.delete(l);
    const lease = await this.core.submit(() => {
      const rec = this.core.applyGrant(ttlMs);
      const l = new FileLease(this.core, forget, rec.id, ttlMs);
      rec.owner = l;
      return l;
    });
    if (this.closed) {
      await lease.revoke();
      throw new StoreClosedError();
    }
    this.leases.add(lease);
    lease.startKeepAlive();
    return lease;
  }

  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    return runCampaign(this, this.core.clock, election, candidateId, options);
  }

  leader(election: string): Promise<LeaderInfo | null> {
    return readLeader(this, election);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.end({ reason: "closed" });
    const leases = [...this.leases];
    this.leases.clear();
    await Promise.allSettled(leases.map((l) => l.revoke()));
    await this.core.settle();
    this.core.release();
  }
}
