/**
 * Membership: every node keeps `/boki/nodes/<id>` alive with a lease; the key disappearing
 * (its lease expired, or the node deregistered) is how the controller learns a node is gone.
 *
 * - `registerNode` puts the node's record with a lease of `NODE_LEASE_TTL_MS`, which the store
 *   keeps alive. When the lease is lost (keep-alives did not reach the store in time), it
 *   registers again with a new lease, at most `REREGISTER_ATTEMPTS_MAX` times in a row,
 *   and reports failure after that. `close` deregisters.
 * - `MembershipWatcher` lists the prefix, watches it from the list's revision, and turns
 *   puts and deletes into a map of live members, with a callback for every member that
 *   leaves. When the watch says changes were missed, it lists again and compares.
 */
import { systemClock, type Clock, type TimerHandle } from "../clock/clock.js";
import type { Role } from "../cluster/config.js";
import { ROLES } from "../cluster/config.js";
import { InvalidArgumentError } from "../log/errors.js";
import type { NodeId } from "../transport/transport.js";
import { silentLogger, type Logger } from "../util/logger.js";
import {
  mustRelist,
  valueText,
  type CoordStore,
  type KeyValue,
  type Lease,
  type Watch,
  type WatchEnd,
  type WatchEvent,
} from "../coord/store.js";

/** Prefix of the members' keys: `/boki/nodes/<node id>`. */
export const NODES_PREFIX = "/boki/nodes/";
/** TTL of a node's membership lease: a dead node is noticed within about this long. */
export const NODE_LEASE_TTL_MS = 3_000;
/** Registrations in a row after a lost lease before a node reports that it is not a member. */
export const REREGISTER_ATTEMPTS_MAX = 5;
/** Pause before the first re-registration; it doubles with each further attempt. */
export const REREGISTER_BACKOFF_MS = 100;
/** Lists in a row a watcher tries after a watch ended with missed changes. */
export const RELIST_ATTEMPTS_MAX = 5;
/** Pause before a watcher lists again; it doubles with each further attempt. */
export const RELIST_BACKOFF_MS = 100;

/** What a node says about itself in its membership key. */
export interface MemberRecord {
  readonly id: NodeId;
  readonly role: Role;
  readonly host: string;
  readonly port: number;
  readonly metricsPort?: number;
  readonly pid: number;
  /** Wall-clock time the node started, ms since the epoch. */
  readonly startedAt: number;
  /** The term the node runs in. */
  readonly term: number;
}

export function memberKey(id: NodeId): string {
  return `${NODES_PREFIX}${id}`;
}

/** Parses a membership value; null when it is not a member record (it is then ignored). */
export function parseMemberRecord(kv: KeyValue): MemberRecord | null {
  let o: unknown;
  try {
    o = JSON.parse(valueText(kv));
  } catch {
    return null;
  }
  if (typeof o !== "object" || o === null) return null;
  const r = o as Record<string, unknown>;
  if (
    typeof r["id"] !== "string" ||
    memberKey(r["id"]) !== kv.key ||
    typeof r["role"] !== "string" ||
    !(ROLES as readonly string[]).includes(r["role"]) ||
    typeof r["host"] !== "string" ||
    typeof r["port"] !== "number" ||
    typeof r["pid"] !== "number" ||
    typeof r["startedAt"] !== "number" ||
    typeof r["term"] !== "number" ||
    (r["metricsPort"] !== undefined && typeof r["metricsPort"] !== "number")
  ) {
    return null;
  }
  return r as unknown as MemberRecord;
}

const sleep = (clock: Clock, ms: number): Promise<void> =>
  new Promise((resolve) => clock.setTimer(ms, resolve));

export interface RegisterOptions {
  readonly ttlMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

export type RegistrationState = "registered" | "re-registering" | "failed" | "closed";

/** A node's membership; see `registerNode`. */
export class NodeRegistration {
  private lease: Lease;
  private stateNow: RegistrationState = "registered";
  private resolveFailed!: (e: Error) => void;
  /** Resolves when the node could not register again after losing its lease. */
  readonly failed: Promise<Error>;

  private constructor(
    private readonly store: CoordStore,
    readonly record: MemberRecord,
    lease: Lease,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.lease = lease;
    this.failed = new Promise((resolve) => (this.resolveFailed = resolve));
    this.watchLease();
  }

  static async register(
    store: CoordStore,
    record: MemberRecord,
    options: RegisterOptions = {},
  ): Promise<NodeRegistration> {
    if (!(ROLES as readonly string[]).includes(record.role)) {
      throw new InvalidArgumentError(`role must be one of ${ROLES.join(", ")}`);
    }
    const ttlMs = options.ttlMs ?? NODE_LEASE_TTL_MS;
    const lease = await NodeRegistration.put(store, record, ttlMs);
    return new NodeRegistration(
      store,
      record,
      lease,
      ttlMs,
      options.clock ?? systemClock,
      (options.logger ?? silentLogger).child({ member: record.id }),
    );
  }

  private static async put(store: CoordStore, record: MemberRecord, ttlMs: number): Promise<Lease> {
    const lease = await store.grantLease(ttlMs);
    try {
      // A plain put: a restarted node takes its key over from its earlier run's lease.
      await store.put(memberKey(record.id), JSON.stringify(record), { lease });
    } catch (e) {
      await lease.revoke().catch(() => {});
      throw e;
    }
    return lease;
  }

  get state(): RegistrationState {
    return this.stateNow;
  }

  private watchLease(): void {
    const lease = this.lease;
    void lease.lost.then((err) => {
      if (this.stateNow !== "registered" || lease !== this.lease) return;
      this.logger.warn({ err: err.message }, "membership lease lost; registering again");
      void this.reregister();
    });
  }

  private async reregister(): Promise<void> {
    this.stateNow = "re-registering";
    let last: unknown = null;
    for (let attempt = 1; attempt <= REREGISTER_ATTEMPTS_MAX; attempt++) {
      await sleep(this.clock, REREGISTER_BACKOFF_MS * 2 ** (attempt - 1));
      if (this.stateNow !== "re-registering") return;
      try {
        const lease = await NodeRegistration.put(this.store, this.record, this.ttlMs);
        if (this.stateNow !== "re-registering") {
          await lease.revoke();
          return;
        }
        this.lease = lease;
        this.stateNow = "registered";
        this.logger.info({ attempt }, "registered again");
        this.watchLease();
        return;
      } catch (e) {
        last = e;
        this.logger.warn(
          { attempt, err: e instanceof Error ? e.message : String(e) },
          "registering again failed",
        );
      }
    }
    this.stateNow = "failed";
    const err = new Error(
      `node ${this.record.id} could not register again after ${REREGISTER_ATTEMPTS_MAX} attempts`,
      { cause: last },
    );
    this.logger.error({ err: err.message }, "membership failed");
    this.resolveFailed(err);
  }

  /** Deregisters: the key goes at once. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.stateNow === "closed") return;
    this.stateNow = "closed";
    await this.lease.revoke();
  }

  /**
   * Stops keep-alives and re-registration without deregistering, as if this process had
   * died: the key goes when the lease expires. For failure drills and tests.
   */
  abandon(): void {
    this.stateNow = "closed";
    this.lease.stopKeepAlive();
  }
}

/** Registers a node with a lease; see `NodeRegistration`. */
export function registerNode(
  store: CoordStore,
  record: MemberRecord,
  options: RegisterOptions = {},
): Promise<NodeRegistration> {
  return NodeRegistration.register(store, record, options);
}

export type MembershipEvent =
  | { readonly type: "joined"; readonly member: MemberRecord }
  | { readonly type: "updated"; readonly member: MemberRecord }
  | { readonly type: "left"; readonly member: MemberRecord };

export interface WatcherOptions {
  /** Every change of the live set, in order. */
  readonly onEvent?: (e: MembershipEvent) => void;
  /** A member left: its lease expired or it deregistered. */
  readonly onFailure?: (member: MemberRecord) => void;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** The live members, kept current from the store; see the module comment. */
export class MembershipWatcher {
  private readonly live = new Map<NodeId, MemberRecord>();
  private watch: Watch | null = null;
  private closed = false;
  private timer: TimerHandle | null = null;
  private resolveDone!: (e: Error | null) => void;
  /** Resolves when the watcher stops: null after `close`, an error when relisting failed. */
  readonly done: Promise<Error | null>;

  private constructor(
    private readonly store: CoordStore,
    private readonly options: WatcherOptions,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  static async start(store: CoordStore, options: WatcherOptions = {}): Promise<MembershipWatcher> {
    const w = new MembershipWatcher(
      store,
      options,
      options.clock ?? systemClock,
      options.logger ?? silentLogger,
    );
    await w.sync();
    return w;
  }

  /** Live members by id. */
  members(): ReadonlyMap<NodeId, MemberRecord> {
    return this.live;
  }

  /** Lists the prefix, reconciles the live set with it, and watches from there. */
  private async sync(): Promise<void> {
    const { entries, revision } = await this.store.list(NODES_PREFIX);
    const listed = new Map<NodeId, MemberRecord>();
    for (const kv of entries) {
      const m = parseMemberRecord(kv);
      if (m !== null) listed.set(m.id, m);
    }
    for (const [id, m] of [...this.live]) if (!listed.has(id)) this.remove(m);
    for (const m of listed.values()) this.upsert(m);
    const watch = await this.store.watch(NODES_PREFIX, (e) => this.apply(e), {
      fromRevision: (revision + 1) as typeof revision,
    });
    if (this.closed) {
      watch.cancel();
      return;
    }
    this.watch = watch;
    void watch.done.then((end) => this.ended(end));
  }

  private apply(e: WatchEvent): void {
    if (this.closed) return;
    const id = e.key.slice(NODES_PREFIX.length);
    if (e.type === "delete") {
      const m = this.live.get(id);
      if (m !== undefined) this.remove(m);
      return;
    }
    const m = parseMemberRecord(e.kv);
    if (m === null) {
      this.logger.warn({ key: e.key }, "ignoring a malformed membership record");
      return;
    }
    this.upsert(m);
  }

  private upsert(m: MemberRecord): void {
    const before = this.live.get(m.id);
    this.live.set(m.id, m);
    if (before === undefined) this.options.onEvent?.({ type: "joined", member: m });
    else if (JSON.stringify(before) !== JSON.stringify(m))
      this.options.onEvent?.({ type: "updated", member: m });
  }

  private remove(m: MemberRecord): void {
    this.live.delete(m.id);
    this.logger.warn({ member: m.id, role: m.role }, "member left");
    this.options.onEvent?.({ type: "left", member: m });
    this.options.onFailure?.(m);
  }

  private ended(end: WatchEnd): void {
    this.watch = null;
    if (this.closed) return;
    if (!mustRelist(end)) {
      this.finish(new Error(`the membership watch ended: ${end.reason}`));
      return;
    }
    this.logger.warn({ reason: end.reason }, "membership watch missed changes; listing again");
    void this.relist();
  }

  private async relist(): Promise<void> {
    let last: unknown = null;
    for (let attempt = 1; attempt <= RELIST_ATTEMPTS_MAX; attempt++) {
      await new Promise<void>((resolve) => {
        this.timer = this.clock.setTimer(RELIST_BACKOFF_MS * 2 ** (attempt - 1), resolve);
      });
      if (this.closed) return;
      try {
        await this.sync();
        return;
      } catch (e) {
        last = e;
        this.logger.warn(
          { attempt, err: e instanceof Error ? e.message : String(e) },
          "listing members failed",
        );
      }
    }
    this.finish(
      new Error(`could not list the members after ${RELIST_ATTEMPTS_MAX} attempts`, {
        cause: last,
      }),
    );
  }

  private finish(e: Error | null): void {
    if (e !== null) this.logger.error({ err: e.message }, "membership watcher stopped");
    this.closed = true;
    this.resolveDone(e);
  }

  close(): void {
    if (this.closed) return;
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.watch?.cancel();
    this.finish(null);
  }
}
