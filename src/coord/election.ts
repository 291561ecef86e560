/**
 * Leader election on any `CoordStore`, the way etcd's own client does it: a candidate puts
 * the key `<election>/<lease id>` with its lease, and the candidate whose key has the
 * lowest creation revision leads. The others wait for a lower key to be deleted (its lease
 * revoked or expired), then look again. A leader stays leader while its lease lives and its
 * key exists; the key's creation revision is a fencing token that grows with every leader.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import { InternalError, TimeoutError } from "../log/errors.js";
import { LeaseLostError, StoreClosedError } from "./errors.js";
import {
  CAMPAIGN_TIMEOUT_MS_DEFAULT,
  CAMPAIGN_TIMEOUT_MS_MAX,
  checkCandidateId,
  checkElection,
  checkTimeoutMs,
  checkTtlMs,
  ELECTION_TTL_MS_DEFAULT,
  mustRelist,
  valueText,
  type CampaignOptions,
  type CoordStore,
  type KeyValue,
  type LeaderInfo,
  type Leadership,
  type Lease,
  type LeaseId,
  type Revision,
  type Watch,
  type WatchEnd,
} from "./store.js";

/** Pause between attempts to re-establish a leader's watch on its key. */
const REWATCH_BACKOFF_MS = 200;

const CANDIDATE_SUFFIX = /^[0-9a-f]{1,16}$/;

function candidates(election: string, entries: readonly KeyValue[]): KeyValue[] {
  const prefix = `${election}/`;
  return entries.filter(
    (kv) => kv.leaseId !== null && CANDIDATE_SUFFIX.test(kv.key.slice(prefix.length)),
  );
}

function info(kv: KeyValue): LeaderInfo {
  return {
    candidateId: valueText(kv),
    key: kv.key,
    revision: kv.createRevision,
    leaseId: kv.leaseId as LeaseId,
  };
}

/** Who leads `election`: the living candidate with the lowest creation revision. */
export async function readLeader(store: CoordStore, election: string): Promise<LeaderInfo | null> {
  checkElection(election);
  const { entries } = await store.list(`${election}/`);
  let first: KeyValue | null = null;
  for (const kv of candidates(election, entries)) {
    if (first === null || kv.createRevision < first.createRevision) first = kv;
  }
  return first === null ? null : info(first);
}

/** One wake-up source for a waiting candidate: resolves to what happened. */
type Wake =
  | { kind: "changed" }
  | { kind: "watch-ended"; end: WatchEnd }
  | { kind: "lease-lost"; error: LeaseLostError }
  | { kind: "timeout" }
  | { kind: "aborted" };

export async function runCampaign(
  store: CoordStore,
  clock: Clock,
  election: string,
  candidateId: string,
  options: CampaignOptions = {},
): Promise<Leadership> {
  checkElection(election);
  checkCandidateId(candidateId);
  const ttlMs = checkTtlMs(options.ttlMs ?? ELECTION_TTL_MS_DEFAULT);
  const timeoutMs = checkTimeoutMs(
    options.timeoutMs ?? CAMPAIGN_TIMEOUT_MS_DEFAULT,
    "campaign timeout",
    CAMPAIGN_TIMEOUT_MS_MAX,
  );
  const signal = options.signal;
  signal?.throwIfAborted();

  const prefix = `${election}/`;
  const lease = await store.grantLease(ttlMs);
  const key = `${prefix}${lease.id}`;
  let watch: Watch | null = null;
  let wake: ((w: Wake) => void) | null = null;
  // What happened while nobody waited (during a call); anything beats a mere change.
  let latched: Wake | null = null;
  const fire = (w: Wake) => {
    const f = wake;
    wake = null;
    if (f !== null) f(w);
    else if (latched === null || w.kind !== "changed") latched = w;
  };
  let timedOut = false;
  const timer: TimerHandle = clock.setTimer(timeoutMs, () => {
    timedOut = true;
    fire({ kind: "timeout" });
  });
  const onAbort = () => fire({ kind: "aborted" });
  signal?.addEventListener("abort", onAbort);
  void lease.lost.then((error) => fire({ kind: "lease-lost", error }));

  const openWatch = async (): Promise<Watch> => {
    const w = await store.watch(prefix, (e) => {
      if (e.type === "delete") fire({ kind: "changed" });
    });
    void w.done.then((end) => {
      if (end.reason !== "cancelled") fire({ kind: "watch-ended", end });
    });
    return w;
  };

  try {
    // The watch starts before the candidacy is listed, so no deletion after a list is missed.
    watch = await openWatch();
    const created = await store.putIf(key, candidateId, "absent", { lease });
    if (created === null) throw new InternalError(`election key ${key} exists already`);
    while (true) {
      if (timedOut)
        throw new TimeoutError(`campaign for ${election} timed out after ${timeoutMs} ms`);
      if (signal?.aborted === true) throw signal.reason;
      const woken =
        latched !== null ? Promise.resolve(latched) : new Promise<Wake>((r) => (wake = r));
      latched = null;
      const listed = await store.list(prefix);
      const all = candidates(election, listed.entries);
      const mine = all.find((kv) => kv.key === key);
      if (mine === undefined) {
        if (lease.state === "lost") throw await lease.lost;
        throw new LeaseLostError(
          `candidacy ${key} for ${election} ended: its key was deleted or its lease revoked`,
        );
      }
      if (!all.some((kv) => kv.createRevision < mine.createRevision)) {
        watch.cancel();
        watch = null;
        return new LeadershipImpl(store, clock, election, lease, mine, listed.revision);
      }
      const w = await woken;
      switch (w.kind) {
        case "changed":
          break;
        case "watch-ended":
          if (w.end.reason === "closed") throw new StoreClosedError();
          if (!mustRelist(w.end)) throw new InternalError(`election watch ended: ${w.end.reason}`);
          watch = await openWatch();
          break;
        case "lease-lost":
          throw w.error;
        case "timeout":
        case "aborted":
          break; // the loop's head throws
      }
    }
  } catch (e) {
    watch?.cancel();
    // The candidacy is withdrawn; if the revoke fails too, the lease expires after its TTL
    // and the first error is the one worth reporting.
    await lease.revoke().catch(() => undefined);
    throw e;
  } finally {
    clock.clearTimer(timer);
    signal?.removeEventListener("abort", onAbort);
    wake = null;
  }
}

class LeadershipImpl implements Leadership {
  readonly election: string;
  readonly candidateId: string;
  readonly key: string;
  readonly revision: Revision;
  readonly leaseId: LeaseId;
  readonly lease: Lease;
  readonly lost: Promise<LeaseLostError>;
  private state: "leading" | "lost" | "resigned" = "leading";
  private resolveLost!: (e: LeaseLostError) => void;
  private watch: Watch | null = null;

  constructor(
    private readonly store: CoordStore,
    private readonly clock: Clock,
    election: string,
    lease: Lease,
    kv: KeyValue,
    listRevision: Revision,
  ) {
    this.election = election;
    this.candidateId = valueText(kv);
    this.key = kv.key;
    this.revision = kv.createRevision;
    this.leaseId = lease.id;
    this.lease = lease;
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    void lease.lost.then((e) =>
      this.loseWith(new LeaseLostError(`leadership of ${election} lost: ${e.message}`, e)),
    );
    void this.watchKey((listRevision + 1) as Revision);
  }

  isLeader(): boolean {
    return this.state === "leading" && this.lease.state === "alive";
  }

  async resign(): Promise<void> {
    if (this.state !== "leading") return;
    this.state = "resigned";
    this.watch?.cancel();
    this.watch = null;
    await this.lease.revoke();
  }

  /**
   * Watches our key for its deletion, from the revision the election was won at. If the
   * watch ends with a gap, a new one starts and the key is read again. Attempts repeat while
   * leading; an unreachable store ends leadership through the lease within its TTL.
   */
  private async watchKey(fromRevision: Revision | null): Promise<void> {
    while (this.state === "leading") {
      try {
        const w = await this.store.watch(
          this.key,
          (e) => {
            if (e.type === "delete" && e.key === this.key) this.keyDeleted();
          },
          fromRevision === null ? {} : { fromRevision },
        );
        if (this.state !== "leading") {
          w.cancel();
          return;
        }
        this.watch = w;
        if (fromRevision === null) {
          const kv = await this.store.get(this.key);
          if (kv === null || kv.createRevision !== this.revision) this.keyDeleted();
        }
        const end = await w.done;
        if (!mustRelist(end)) return;
        fromRevision = null;
      } catch (e) {
        if (e instanceof StoreClosedError) return;
        await new Promise<void>((r) => this.clock.setTimer(REWATCH_BACKOFF_MS, r));
      }
    }
  }

  private keyDeleted(): void {
    if (this.state !== "leading") return;
    this.loseWith(new LeaseLostError(`leadership of ${this.election} lost: its key was deleted`));
    // Nothing else rests on the lease; ending it spares the store a TTL of waiting.
    void this.lease.revoke().catch(() => undefined);
  }

  private loseWith(error: LeaseLostError): void {
    if (this.state !== "leading") return;
    this.state = "lost";
    this.watch?.cancel();
    this.watch = null;
    this.resolveLost(error);
  }
}
