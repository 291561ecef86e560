/**
 * A node's client of the simulated coordination store. The store itself is the in-memory
 * mode of the file store on the scheduler's clock: strongly consistent and always reachable,
 * as etcd is meant to be. What the wrapper adds is death: when the node crashes, its leases
 * stop being kept alive (the store expires them after their TTL, as etcd would), its watches
 * end, and no call it makes from then on ever completes.
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

const never = <T>(): Promise<T> => new Promise<T>(() => {});

export class SimStoreClient implements CoordStore {
  readonly backend = "memory" as const;
  private dead = false;
  private readonly leases = new Set<Lease>();
  private readonly watches = new Set<Watch>();

  constructor(
    private readonly inner: CoordStore,
    /** The node's clock: a campaign's timers die with the node. */
    private readonly clock: Clock,
  ) {}

  private call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.dead) return never();
    const p = fn();
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
      this.inner.watch(prefix, (e) => (this.dead ? undefined : listener(e)), options),
    );
    this.watches.add(w);
    void w.done.then(() => this.watches.delete(w));
    return w;
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    const lease = await this.call(() => this.inner.grantLease(ttlMs));
    this.leases.add(lease);
    return lease;
  }

  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    return runCampaign(this, this.clock, election, candidateId, options);
  }

  leader(election: string): Promise<LeaderInfo | null> {
    return this.call(() => this.inner.leader(election));
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
