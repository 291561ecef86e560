/**
 * The coordination store on etcd (v3 API, through the `etcd3` client's gRPC stubs), for
 * clusters. Keys, revisions and leases are etcd's own; this module adds bounded waits,
 * typed errors, its own lease keep-alive and watch resumption:
 *
 * - **Calls.** Every call has a deadline (`opTimeoutMs`). Reads, puts, deletes and lease
 *   calls are retried on transient failures (etcd restarting, no leader) with backoff until
 *   that deadline. A conditional put is sent once: it is sent only over a connection that
 *   just answered, and if the answer is lost it fails with `outcomeUnknown` set. The
 *   client library's own retry and circuit-breaker policies are turned off, so no hidden
 *   wait adds to ours.
 * - **Leases** are kept alive `LEASE_KEEPALIVES_PER_TTL` times per TTL. The local deadline
 *   of a lease is the send time of its last answered keep-alive plus its TTL, so this side
 *   declares a lease lost no later than etcd can expire it: a leader steps down before
 *   another can be elected. etcd restores leases when it restarts (with their full TTL),
 *   so a short outage costs no lease.
 * - **Watches** resume after a lost connection from the revision after the last event
 *   received, so nothing is lost or repeated; if etcd has compacted that revision away, or
 *   stays unreachable for `WATCH_DISCONNECTED_MS_MAX`, the watch ends and says so.
 */
import {
  castGrpcError,
  ClientClosedError,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  isRecoverableError,
  type IDuplexStream,
  type IKeyValue,
  type IOptions,
  type IWatchRequest,
  type IWatchResponse,
} from "etcd3";
import { systemClock, type Clock, type TimerHandle } from "../clock/clock.js";
import { BokiError, InvalidArgumentError, TimeoutError } from "../log/errors.js";
import { readLeader, runCampaign } from "./election.js";
import {
  CoordUnavailableError,
  LeaseLostError,
  LimitExceededError,
  StoreClosedError,
} from "./errors.js";
import {
  asRevision,
  checkExpected,
  checkKey,
  checkPrefix,
  checkTimeoutMs,
  checkTtlMs,
  checkValue,
  CLOSE_TIMEOUT_MS,
  LEASE_KEEPALIVES_PER_TTL,
  LIST_ENTRIES_MAX,
  OP_TIMEOUT_MS_DEFAULT,
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

/** A watch that cannot reconnect for this long ends with `unavailable`. */
export const WATCH_DISCONNECTED_MS_MAX = 30_000;
/** First pause before retrying a failed call or reconnecting a watch; doubles each time. */
export const RETRY_BACKOFF_MS_MIN = 50;
/** Longest pause between retries. */
export const RETRY_BACKOFF_MS_MAX = 1_000;
/** Attempts to revoke a lease this side has declared lost (etcd may still hold it). */
export const LOST_LEASE_REVOKE_ATTEMPTS_MAX = 5;
/** Longest `opTimeoutMs` accepted. */
export const OP_TIMEOUT_MS_MAX = 600_000;

export interface EtcdStoreOptions {
  /** Client URLs of the etcd members, e.g. `http://127.0.0.1:2379`. */
  readonly endpoints: string | readonly string[];
  /** Longest time one call may take, retries included (default `OP_TIMEOUT_MS_DEFAULT`). */
  readonly opTimeoutMs?: number;
  /** Time for lease deadlines, keep-alives and campaign timeouts (default: system clock). */
  readonly clock?: Clock;
}

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/** A fault-handling policy that runs the call once: retries are this module's business. */
const RUN_ONCE = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as Policy;

/** The end of etcd's key range for every key starting with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte is 0xff (or the prefix is empty): the range runs to the end of the keyspace.
  return Buffer.from([0]);
}

function revisionOf(s: string): Revision {
  return asRevision(Number(s));
}

function leaseHex(decimal: string): LeaseId {
  return BigInt(decimal).toString(16) as LeaseId;
}

function leaseDecimal(hex: string): string {
  return BigInt(`0x${hex}`).toString();
}

function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString("utf8"),
    value: new Uint8Array(kv.value.buffer, kv.value.byteOffset, kv.value.byteLength),
    revision: revisionOf(kv.mod_revision),
    createRevision: revisionOf(kv.create_revision),
    version: Number(kv.version),
    leaseId: kv.lease === "0" || kv.lease === "" ? null : leaseHex(kv.lease),
  };
}

/** What went wrong with an etcd call, as a typed error. */
function mapError(e: unknown, what: string, timeoutMs: number): BokiError {
  if (e instanceof BokiError) return e;
  if (e instanceof ClientClosedError) return new StoreClosedError();
  const err = e instanceof Error ? castGrpcError(e) : new Error(String(e));
  if (err instanceof EtcdLeaseInvalidError) {
    return new LeaseLostError(`${what}: the lease is not alive in etcd`, err);
  }
  if (err instanceof GRPCDeadlineExceededError) {
    return new TimeoutError(`${what}: etcd did not answer within ${timeoutMs} ms`, err);
  }
  const m = err.message;
  if (
    isRecoverableError(err) ||
    /no leader|leader changed|timed out|too many requests|not capable|unavailable|connect/i.test(m)
  ) {
    return new CoordUnavailableError(`${what}: etcd is unavailable: ${m}`, { cause: err });
  }
  return new BokiError("INTERNAL", `${what}: etcd failed: ${m}`, { cause: err });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class EtcdStore implements CoordStore {
  readonly backend = "etcd" as const;
  readonly opTimeoutMs: number;
  private readonly client: Etcd3;
  private readonly clock: Clock;
  private readonly endpoints: readonly string[];
  private closed = false;
  /** Set when close begins: new calls fail, the revokes of close still run. */
  private closing = false;
  /** False after a call failed on the connection, until one succeeds again. */
  private healthy = false;
  private readonly leases = new Set<EtcdLease>();
  private readonly watches = new Set<EtcdWatch>();

  private constructor(options: EtcdStoreOptions) {
    const endpoints =
      typeof options.endpoints === "string" ? [options.endpoints] : [...(options.endpoints ?? [])];
    if (endpoints.length === 0 || !endpoints.every((e) => /^https?:\/\/./.test(e))) {
      throw new InvalidArgumentError(
        "EtcdStore needs endpoints: one or more URLs such as http://127.0.0.1:2379",
      );
    }
    this.endpoints = endpoints;
    this.opTimeoutMs = checkTimeoutMs(
      options.opTimeoutMs ?? OP_TIMEOUT_MS_DEFAULT,
      "opTimeoutMs",
      OP_TIMEOUT_MS_MAX,
    );
    this.clock = options.clock ?? systemClock;
    this.client = new Etcd3({
      hosts: endpoints,
      dialTimeout: this.opTimeoutMs,
      faultHandling: { host: () => RUN_ONCE, global: RUN_ONCE },
      grpcOptions: {
        // A silent peer (a partition, not a crash) is found within keepalive time + timeout.
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.initial_reconnect_backoff_ms": RETRY_BACKOFF_MS_MIN * 2,
        "grpc.max_reconnect_backoff_ms": RETRY_BACKOFF_MS_MAX * 2,
      },
    });
  }

  /** Connects to etcd; fails with `UNAVAILABLE` if no endpoint answers within the timeout. */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    try {
      await store.call("connect", (o) =>
        store.client.kv.range({ key: Buffer.from("/"), limit: 1, keys_only: true }, o),
      );
    } catch (e) {
      store.client.close();
      store.closed = true;
      throw e;
    }
    return store;
  }

  private check(): void {
    if (this.closing) throw new StoreClosedError();
  }

  /**
   * Runs an etcd call with a deadline. Transient failures are retried with backoff until
   * the deadline; with `once`, the call is sent a single time.
   */
  private async call<T>(
    what: string,
    fn: (options: { deadline: number }) => Promise<T>,
    mode: "retry" | "once" = "retry",
    internal = false,
  ): Promise<T> {
    if (internal ? this.closed : this.closing) throw new StoreClosedError();
    const deadline = Date.now() + this.opTimeoutMs;
    let backoff = RETRY_BACKOFF_MS_MIN;
    while (true) {
      try {
        const r = await fn({ deadline });
        this.healthy = true;
        return r;
      } catch (e) {
        if (this.closed) throw new StoreClosedError();
        const err = mapError(e, what, this.opTimeoutMs);
        if (!(err instanceof CoordUnavailableError)) throw err;
        this.healthy = false;
        if (mode === "once") {
          throw new CoordUnavailableError(
            `${err.message} (the request may have been applied: read to find out)`,
            { cause: err, outcomeUnknown: true },
          );
        }
        if (Date.now() + backoff >= deadline) {
          throw new CoordUnavailableError(
            `${what}: no answer from etcd at ${this.endpoints.join(", ")} within ${this.opTimeoutMs} ms: ${err.message}`,
            { cause: err },
          );
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, RETRY_BACKOFF_MS_MAX);
      }
    }
  }

  async get(key: string): Promise<KeyValue | null> {
    checkKey(key);
    const res = await this.call(`get ${key}`, (o) =>
      this.client.kv.range({ key: Buffer.from(key, "utf8") }, o),
    );
    const kv = res.kvs[0];
    return kv === undefined ? null : toKv(kv);
  }

  async list(prefix: string): Promise<ListResult> {
    checkPrefix(prefix);
    const start = Buffer.from(prefix, "utf8");
    const res = await this.call(`list ${prefix}`, (o) =>
      this.client.kv.range(
        {
          key: prefix === "" ? Buffer.from([0]) : start,
          range_end: prefixEnd(start),
          limit: LIST_ENTRIES_MAX + 1,
        },
        o,
      ),
    );
    if (res.kvs.length > LIST_ENTRIES_MAX) {
      throw new LimitExceededError(
        `list of "${prefix}" has more than ${LIST_ENTRIES_MAX} entries`,
        LIST_ENTRIES_MAX,
      );
    }
    return { entries: res.kvs.map(toKv), revision: revisionOf(res.header.revision) };
  }

  async put(key: string, value: CoordValue, options: PutOptions = {}): Promise<Revision> {
    checkKey(key);
    const bytes = checkValue(value);
    const lease = this.leaseOf(options);
    const res = await this.call(`put ${key}`, (o) =>
      this.client.kv.put(
        {
          key: Buffer.from(key, "utf8"),
          value: Buffer.from(bytes),
          ...(lease === null ? {} : { lease }),
        },
        o,
      ),
    );
    return revisionOf(res.header.revision);
  }

  async putIf(
    key: string,
    value: CoordValue,
    expected: Revision | "absent",
    options: PutOptions = {},
  ): Promise<Revision | null> {
    checkKey(key);
    const bytes = checkValue(value);
    const want = checkExpected(expected);
    const lease = this.leaseOf(options);
    const k = Buffer.from(key, "utf8");
    if (!this.healthy) {
      // A conditional put is sent once, so first make sure the connection answers. A probe
      // that gets no answer sent nothing: etcd is unavailable (not an unknown outcome).
      try {
        await this.call("connect", (o) =>
          this.client.kv.range({ key: k, limit: 1, keys_only: true }, o),
        );
      } catch (err) {
        if (err instanceof TimeoutError) {
          throw new CoordUnavailableError(`conditional put ${key}: ${err.message}`, { cause: err });
        }
        throw err;
      }
    }
    const res = await this.call(
      `conditional put ${key}`,
      (o) =>
        this.client.kv.txn(
          {
            compare: [
              want === "absent"
                ? { key: k, target: "Create", result: "Equal", create_revision: 0 }
                : { key: k, target: "Mod", result: "Equal", mod_revision: want },
            ],
            success: [
              {
                request_put: {
                  key: k,
                  value: Buffer.from(bytes),
                  ...(lease === null ? {} : { lease }),
                },
              },
            ],
          },
          o,
        ),
      "once",
    );
    return res.succeeded ? revisionOf(res.header.revision) : null;
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    const res = await this.call(`delete ${key}`, (o) =>
      this.client.kv.deleteRange({ key: Buffer.from(key, "utf8") }, o),
    );
    return Number(res.deleted) > 0;
  }

  private leaseOf(options: PutOptions): string | null {
    const lease = options.lease;
    if (lease === undefined) return null;
    if (!(lease instanceof EtcdLease)) {
      throw new InvalidArgumentError("the lease was not granted by an etcd-backed store");
    }
    if (lease.state !== "alive") throw new LeaseLostError(`lease ${lease.id} is ${lease.state}`);
    return leaseDecimal(lease.id);
  }

  async watch(prefix: string, listener: WatchListener, options: WatchOptions = {}): Promise<Watch> {
    checkPrefix(prefix);
    if (typeof listener !== "function")
      throw new InvalidArgumentError("watch needs a listener function");
    if (options.fromRevision !== undefined) checkExpected(options.fromRevision);
    this.check();
    const w = new EtcdWatch(this.client, prefix, listener, options.fromRevision ?? null, (x) =>
      this.watches.delete(x),
    );
    this.watches.add(w);
    await w.start(this.opTimeoutMs);
    return w.queue;
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtlMs(ttlMs);
    // etcd counts whole seconds; rounding up never shortens what the caller asked for.
    const ttlS = Math.ceil(ttlMs / 1000);
    // etcd starts the TTL when it grants, so the local deadline counts from the request.
    const sentAt = this.clock.now();
    const res = await this.call("grant lease", (o) =>
      this.client.leaseClient.leaseGrant({ TTL: ttlS }, o),
    );
    if (res.error !== "")
      throw new CoordUnavailableError(`grant lease: etcd refused: ${res.error}`);
    const lease = new EtcdLease(this, leaseHex(res.ID), res.ID, Number(res.TTL) * 1000);
    if (this.closing) {
      await lease.revoke().catch(() => undefined);
      throw new StoreClosedError();
    }
    this.leases.add(lease);
    lease.start(sentAt);
    return lease;
  }

  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    return runCampaign(this, this.clock, election, candidateId, options);
  }

  leader(election: string): Promise<LeaderInfo | null> {
    return readLeader(this, election);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const w of [...this.watches]) w.queue.end({ reason: "closed" });
    const leases = [...this.leases];
    this.leases.clear();
    // Leases are revoked so their keys go now, not a TTL later; bounded, since etcd may be gone.
    const revoked = Promise.allSettled(leases.map((l) => l.revoke()));
    await Promise.race([revoked, sleep(CLOSE_TIMEOUT_MS)]);
    this.closed = true;
    for (const l of leases) l.stop();
    this.client.close();
  }

  // --- for leases ---------------------------------------------------------------------------

  /** @internal */
  get leaseClock(): Clock {
    return this.clock;
  }

  /** @internal Sends one keep-alive; resolves with the TTL etcd reports (0: expired). */
  async keepAliveOnce(idDecimal: string, timeoutMs: number): Promise<number> {
    if (this.closed) throw new StoreClosedError();
    const stream = await this.client.leaseClient.leaseKeepAlive({
      deadline: Date.now() + timeoutMs,
    });
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on("data", resolve);
        stream.on("error", reject);
        stream.on("end", () => reject(new Error("keep-alive stream ended")));
        stream.write({ ID: idDecimal });
      });
      this.healthy = true;
      return Number(res.TTL);
    } finally {
      stream.end();
    }
  }

  /** @internal */
  revokeLease(idDecimal: string): Promise<void> {
    return this.call(
      "revoke lease",
      (o) => this.client.leaseClient.leaseRevoke({ ID: idDecimal }, o),
      "retry",
      true,
    ).then(
      () => undefined,
      (e: unknown) => {
        if (e instanceof LeaseLostError) return; // gone already
        throw e;
      },
    );
  }

  /** @internal */
  forgetLease(lease: EtcdLease): void {
    this.leases.delete(lease);
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }
}

class EtcdLease implements Lease {
  readonly lost: Promise<LeaseLostError>;
  private stateNow: LeaseState = "alive";
  private resolveLost!: (e: LeaseLostError) => void;
  private deadline = 0;
  private deadlineTimer: TimerHandle | null = null;
  private keepAliveTimer: TimerHandle | null = null;
  private keepingAlive = true;

  constructor(
    private readonly store: EtcdStore,
    readonly id: LeaseId,
    private readonly idDecimal: string,
    readonly ttlMs: number,
  ) {
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
  }

  get state(): LeaseState {
    return this.stateNow;
  }

  private get clock(): Clock {
    return this.store.leaseClock;
  }

  /** Starts keep-alives; `grantedAt` is when the grant was sent. */
  start(grantedAt: number): void {
    this.setDeadline(grantedAt + this.ttlMs);
    this.schedule(this.interval());
  }

  private interval(): number {
    return Math.max(1, Math.floor(this.ttlMs / LEASE_KEEPALIVES_PER_TTL));
  }

  private setDeadline(at: number): void {
    this.deadline = at;
    if (this.deadlineTimer !== null) this.clock.clearTimer(this.deadlineTimer);
    this.deadlineTimer = this.clock.setTimer(Math.max(0, at - this.clock.now()), () => {
      this.deadlineTimer = null;
      // Timers may fire a fraction of a millisecond early: wait out the rest.
      if (this.clock.now() < this.deadline) this.setDeadline(this.deadline);
      else {
        this.markLost(
          new LeaseLostError(
            this.keepingAlive
              ? `lease ${this.id} lost: no keep-alive answered for ${this.ttlMs} ms`
              : `lease ${this.id} expired: keep-alives stopped ${this.ttlMs} ms ago`,
          ),
          this.keepingAlive,
        );
      }
    });
  }

  private schedule(delayMs: number): void {
    if (this.stateNow !== "alive" || !this.keepingAlive) return;
    this.keepAliveTimer = this.clock.setTimer(delayMs, () => {
      this.keepAliveTimer = null;
      void this.keepAlive();
    });
  }

  private async keepAlive(): Promise<void> {
    if (this.stateNow !== "alive" || !this.keepingAlive) return;
    const sentAt = this.clock.now();
    const interval = this.interval();
    try {
      const ttlS = await this.store.keepAliveOnce(this.idDecimal, interval);
      if (this.stateNow !== "alive" || !this.keepingAlive) return;
      if (ttlS <= 0) {
        this.markLost(new LeaseLostError(`lease ${this.id} expired in etcd`), false);
        return;
      }
      this.setDeadline(sentAt + ttlS * 1000);
      this.schedule(interval);
    } catch {
      // Retried soon, until the deadline declares the lease lost.
      this.schedule(Math.min(interval, RETRY_BACKOFF_MS_MIN * 4));
    }
  }

  stopKeepAlive(): void {
    this.keepingAlive = false;
    if (this.keepAliveTimer !== null) this.clock.clearTimer(this.keepAliveTimer);
    this.keepAliveTimer = null;
  }

  /** Stops every timer (the store is closing). */
  stop(): void {
    this.stopKeepAlive();
    if (this.deadlineTimer !== null) this.clock.clearTimer(this.deadlineTimer);
    this.deadlineTimer = null;
  }

  async revoke(): Promise<void> {
    if (this.stateNow !== "alive") return;
    this.stateNow = "revoked";
    this.stop();
    this.store.forgetLease(this);
    await this.store.revokeLease(this.idDecimal);
  }

  private markLost(error: LeaseLostError, revokeInEtcd: boolean): void {
    if (this.stateNow !== "alive") return;
    this.stateNow = "lost";
    this.stop();
    this.store.forgetLease(this);
    this.resolveLost(error);
    // This side has given the lease up; etcd may still hold it (a restarted etcd restores
    // leases with a full TTL), so its keys are removed as soon as etcd answers.
    if (revokeInEtcd) void this.revokeLost(0);
  }

  private async revokeLost(attempt: number): Promise<void> {
    if (this.store.isClosed || attempt >= LOST_LEASE_REVOKE_ATTEMPTS_MAX) return;
    try {
      await this.store.revokeLease(this.idDecimal);
    } catch {
      await sleep(RETRY_BACKOFF_MS_MAX);
      await this.revokeLost(attempt + 1);
    }
  }
}

/**
 * One watch on its own gRPC stream. It remembers the revision after the last event it
 * received and, after a lost connection, asks etcd for the changes from there.
 */
class EtcdWatch {
  readonly queue: WatchQueue;
  private readonly key: Buffer;
  private readonly rangeEnd: Buffer;
  private nextRevision: number | null;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | null = null;
  private disconnectedAt: number | null = null;
  private backoff = RETRY_BACKOFF_MS_MIN;
  private created: { resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(
    private readonly client: Etcd3,
    prefix: string,
    listener: WatchListener,
    fromRevision: number | null,
    forget: (w: EtcdWatch) => void,
  ) {
    const start = Buffer.from(prefix, "utf8");
    this.key = prefix === "" ? Buffer.from([0]) : start;
    this.rangeEnd = prefixEnd(start);
    this.nextRevision = fromRevision;
    this.queue = new WatchQueue(prefix, listener, (end) => {
      forget(this);
      this.closeStream();
      this.created?.reject(
        end.reason === "closed"
          ? new StoreClosedError()
          : new CoordUnavailableError(
              `watch ${prefix} ended before etcd created it: ${end.reason}`,
            ),
      );
      this.created = null;
    });
  }

  /** Resolves once etcd has created the watch, within `timeoutMs`. */
  async start(timeoutMs: number): Promise<void> {
    const created = new Promise<void>((resolve, reject) => (this.created = { resolve, reject }));
    const timer = setTimeout(() => {
      this.created?.reject(
        new TimeoutError(
          `watch ${this.queue.prefix}: etcd did not create it within ${timeoutMs} ms`,
        ),
      );
      this.created = null;
    }, timeoutMs);
    this.disconnectedAt = Date.now();
    void this.connect();
    try {
      await created;
    } catch (e) {
      this.queue.cancel();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async connect(): Promise<void> {
    if (this.queue.isEnded) return;
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.client.watchClient.watch();
    } catch (e) {
      this.disconnected(e);
      return;
    }
    this.stream = stream;
    if (this.queue.isEnded) {
      this.closeStream();
      return;
    }
    stream.on("data", (res) => this.onResponse(stream, res));
    stream.on("error", (e) => this.onStreamEnd(stream, e));
    stream.on("end", () => this.onStreamEnd(stream, new Error("watch stream ended")));
    stream.write({
      create_request: {
        key: this.key,
        range_end: this.rangeEnd,
        progress_notify: true,
        ...(this.nextRevision === null ? {} : { start_revision: this.nextRevision }),
      },
    });
  }

  private onResponse(
    stream: IDuplexStream<IWatchRequest, IWatchResponse>,
    res: IWatchResponse,
  ): void {
    if (stream !== this.stream || this.queue.isEnded) return;
    if (res.canceled) {
      const compact = Number(res.compact_revision);
      if (compact > 0) {
        this.queue.end({ reason: "compacted", compactRevision: asRevision(compact) });
      } else {
        this.queue.end({
          reason: "unavailable",
          error: new CoordUnavailableError(
            `watch ${this.queue.prefix} cancelled by etcd: ${res.cancel_reason}`,
          ),
        });
      }
      return;
    }
    if (res.created) {
      // Without a start revision, the watch covers changes after the store's revision now.
      this.nextRevision ??= Number(res.header.revision) + 1;
      this.disconnectedAt = null;
      this.backoff = RETRY_BACKOFF_MS_MIN;
      this.created?.resolve();
      this.created = null;
    }
    if (res.events.length > 0) {
      const events: WatchEvent[] = res.events.map((ev) => {
        const key = ev.kv.key.toString("utf8");
        const revision = revisionOf(ev.kv.mod_revision);
        return ev.type === "Put"
          ? { type: "put", key, revision, kv: toKv(ev.kv) }
          : { type: "delete", key, revision };
      });
      // etcd never splits one revision over two responses, so resuming after the last
      // event's revision neither repeats nor skips a change.
      this.nextRevision = events[events.length - 1]!.revision + 1;
      this.queue.push(events);
    } else if (!res.created) {
      // A progress notice: every change up to the header's revision was sent.
      const progressed = Number(res.header.revision) + 1;
      if (this.nextRevision === null || progressed > this.nextRevision)
        this.nextRevision = progressed;
    }
  }

  private onStreamEnd(stream: IDuplexStream<IWatchRequest, IWatchResponse>, e: unknown): void {
    if (stream !== this.stream) return;
    this.stream = null;
    this.disconnected(e);
  }

  private disconnected(e: unknown): void {
    if (this.queue.isEnded) return;
    const now = Date.now();
    this.disconnectedAt ??= now;
    if (now - this.disconnectedAt >= WATCH_DISCONNECTED_MS_MAX) {
      this.queue.end({
        reason: "unavailable",
        error: new CoordUnavailableError(
          `watch ${this.queue.prefix}: etcd unreachable for ${WATCH_DISCONNECTED_MS_MAX} ms`,
          { cause: e },
        ),
      });
      return;
    }
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, RETRY_BACKOFF_MS_MAX);
    setTimeout(() => void this.connect(), delay);
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = null;
    if (s !== null) {
      try {
        // Ending our side first keeps the client library from taking the cancellation
        // for a failed connection and resetting every stream of the client.
        s.end();
        s.cancel();
      } catch {
        // Cancelling an ended stream throws; it is closed either way.
      }
    }
  }
}
