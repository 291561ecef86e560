/**
 * A node's client of the simulated coordination store. The store itself is the in-memory
 * mode of the file store on the scheduler's clock: strongly consistent, as etcd is. What the
 * wrapper adds:
 *
 * - **Death.** When the node crashes, its leases stop being kept alive (the store expires
 *   them after their TTL, as etcd would), its watches end, and no call it makes from then on
 *   ever completes.
 * - **Being cut off** from the store while the node runs on. Keep-alives stop (a lease
 *   expires if the cut lasts its TTL), watch events wait, and calls wait for the store to be
 *   reachable again, failing with `UNAVAILABLE` after `OP_TIMEOUT_MS_DEFAULT`, as the etcd
 *   client's do. When the cut heals, held watch events are delivered in order.
 */
import { runCampaign } from "../coord/election.js";
import type {
  CampaignOptions,
  CoordStore,
  CoordValue,
  KeyValue,
  LeaderInfo,
  Leadership,
  Lease,
  ListResult,
  PutOptions,
  Revision,
  Watch,
  WatchListener,
  WatchOptions,
} from "../coord/store.js";
import type { Clock } from "../clock/clock.js";
import { CoordUnavailableError } from "../coord/errors.js";
import { OP_TIMEOUT_MS_DEFAULT } from "../coord/store.js";

const never = <T>(): Promise<T> => new Promise<T>(() => {});

export class SimStoreClient implements CoordStore {
  readonly backend = "memory" as const;
  private dead = false;
  private readonly leases = new Set<Lease>();
  private readonly watches = new Set<Watch>();
  private cut = false;
  /** Calls and watch deliveries waiting for the store to be reachable again. */
  private waiting: Array<() => void> = [];

  constructor(
    private readonly inner: CoordStore,
    /** The node's clock: a campaign's timers die with the node. */
    private readonly clock: Clock,
  ) {}

  /** Resolves once the store is reachable; rejects after the operation timeout. */
  private reachable(): Promise<void> {
    if (!this.cut) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = this.clock.setTimer(OP_TIMEOUT_MS_DEFAULT, () => {
        if (done) return;
        done = true;
        reject(new CoordUnavailableError("the coordination store is unreachable"));
      });
      this.waiting.push(() => {
        if (done) return;
        done = true;
        this.clock.clearTimer(timer);
        resolve();
      });
    });
  }

  private call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.dead) return never();
    const p = this.reachable().then(fn);
    // An answer that arrives after the crash is never seen by the dead node.
    return p.then(
      (v) => (this.dead ? never<T>() : v),
      (e: unknown) => (this.dead ? never<T>() : Promise.reject(e as Error)),
    );
  }

  get(key: string): Promise<KeyValue | null> {
    return this.call(() => this.inner.get(key));
  }

  list(prefix: string): Promise<ListResult> {
    return this.call(() => this.inner.list(prefix));
  }

  put(key: string, value: CoordValue, options?: PutOptions): Promise<Revision> {
    return this.call(() => this.inner.put(key, value, options));
  }

  putIf(
    key: string,
    value: CoordValue,
    expected: Revision | "absent",
    options?: PutOptions,
  ): Promise<Revision | null> {
    return this.call(() => this.inner.putIf(key, value, expected, options));
  }

  delete(key: string): Promise<boolean> {
    return this.call(() => this.inner.delete(key));
  }

  async watch(prefix: string, listener: WatchListener, options?: WatchOptions): Promise<Watch> {
    const w = await this.call(() =>
      this.inner.watch(
        prefix,
        async (e) => {
          // Events wait while the store is cut off, and go out in order once it is back.
          while (this.cut && !this.dead) await new Promise<void>((r) => this.waiting.push(r));
          return this.dead ? undefined : listener(e);
        },
        options,
      ),
    );
    if (this.dead) {
      w.cancel();
      return never();
    }
    this.watches.add(w);
    void w.done.then(() => this.watches.delete(w));
    return w;
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    if (this.dead) return never();
    await this.reachable();
    const lease = await this.inner.grantLease(ttlMs);
    // Granted while the node died or was cut off: nobody keeps it alive.
    if (this.dead) {
      lease.stopKeepAlive();
      return never();
    }
    if (this.cut) lease.stopKeepAlive();
    this.leases.add(lease);
    return lease;
  }

  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    return runCampaign(this, this.clock, election, candidateId, options);
  }

  leader(election: string): Promise<LeaderInfo | null> {
    return this.call(() => this.inner.leader(election));
  }

  /** The node loses its connection to the store (it keeps running). */
  cutOff(): void {
    if (this.dead || this.cut) return;
    this.cut = true;
    for (const l of this.leases) l.stopKeepAlive();
  }

  /** The connection is back: keep-alives of live leases resume, waiting calls go on. */
  reconnect(): void {
    if (this.dead || !this.cut) return;
    this.cut = false;
    for (const l of this.leases) {
      if (l.state === "alive") (l as Lease & { startKeepAlive?: () => void }).startKeepAlive?.();
    }
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) w();
  }

  get isCutOff(): boolean {
    return this.cut;
  }

  /** The node died: leases lapse, watches end, calls never complete. */
  crash(): void {
    this.dead = true;
    for (const l of this.leases) l.stopKeepAlive();
    for (const w of this.watches) w.cancel();
  }

  async close(): Promise<void> {
    if (this.dead) return;
    this.dead = true;
    for (const w of this.watches) w.cancel();
    await Promise.allSettled([...this.leases].map((l) => l.revoke()));
  }
}
