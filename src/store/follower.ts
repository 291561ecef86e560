/**
 * The log played forward, as Tango's local views are: an I/O-free state machine fed the
 * store's records in log order (the `boki-store/stream` sub-stream, which every store write
 * and commit record carries). From the records it has seen since it started it knows, for
 * every object, its last committed write, so that
 *
 *  - a cached value can be vouched for at any seqnum up to the follower's position without
 *    asking the log ("no committed write to the object since the value's record"), and
 *  - a commit record whose snapshot is at or after the start can be decided locally: it
 *    commits if and only if no object it checks has a committed write after its snapshot,
 *    which is the same rule the `CommitDecider` applies by reading the log, so both give
 *    the same answer (the property tests hold them to it).
 *
 * What it cannot vouch for it says so (`undefined`), and the store asks the log instead.
 */
import { invariant } from "./assert.js";
import type { CommitInfo, StoreRecord } from "./records.js";

/** What the follower learned from one record. */
export type FollowStep =
  | { readonly kind: "skipped" }
  /** Objects the record changed (a write, or a commit that committed), and the decision. */
  | {
      readonly kind: "applied";
      readonly objects: readonly string[];
      readonly decision: boolean | undefined;
      readonly conflict?: { readonly object: string; readonly seqnum: number };
    }
  /** A commit whose decision this follower cannot make: the driver must decide it from the log. */
  | { readonly kind: "needs-decision"; readonly info: CommitInfo };

export class FollowerState {
  /** Every store record in (start, position] has been seen. */
  private startAt: number;
  private pos: number;
  /** Last committed write per object, since the start (least recently written first). */
  private readonly lastWrite = new Map<string, number>();
  /** The highest last-write among the objects dropped from `lastWrite` (it is bounded); -1: none. */
  private evictedUpTo = -1;
  /** How many times it started afresh. */
  resets = 0;

  constructor(
    position: number,
    private readonly objectsMax: number,
  ) {
    this.startAt = position;
    this.pos = position;
  }

  get start(): number {
    return this.startAt;
  }
  get position(): number {
    return this.pos;
  }

  /** Forgets everything and starts again at `position` (after a gap too long to read). */
  reset(position: number): void {
    invariant(position >= this.pos, "a follower never moves back");
    this.startAt = position;
    this.pos = position;
    this.lastWrite.clear();
    this.evictedUpTo = -1;
    this.resets++;
  }

  /** No store record in (position, seqnum]: the position moves up. */
  advanceTo(seqnum: number): void {
    if (seqnum > this.pos) this.pos = seqnum;
  }

  /**
   * Whether the value of `object` as of record `seqnum`, known to be current at
   * `confirmedAt` (≥ seqnum), is still its value at `at`.
   */
  vouches(object: string, seqnum: number, confirmedAt: number, at: number): boolean {
    if (at > this.pos || at < seqnum) return false;
    // Writes in (seqnum, confirmedAt] there are none (it was confirmed); those after it, up to
    // the position, the follower has seen all of, if it has been following since then.
    if (confirmedAt < this.startAt) return false;
    const w = this.lastWrite.get(object);
    if (w !== undefined) return w <= seqnum;
    return this.evictedUpTo <= confirmedAt;
  }

  /** The local decision of a commit record, or undefined when it is not this follower's to make. */
  decide(
    info: CommitInfo,
  ): { committed: boolean; conflict?: { object: string; seqnum: number } } | undefined {
    if (info.snapshot < this.startAt || info.seqnum <= this.pos) return undefined;
    for (const k of info.checks) {
      const w = this.lastWrite.get(k);
      if (w !== undefined) {
        if (w > info.snapshot) return { committed: false, conflict: { object: k, seqnum: w } };
      } else if (this.evictedUpTo > info.snapshot) {
        return undefined; // it may have been written after the snapshot, and forgotten since
      }
    }
    return { committed: true };
  }

  /**
   * Feeds the next store record (seqnum > position). `decision` is the commit's decision if
   * known from elsewhere (a checkpoint, the cache, the log).
   */
  apply(rec: StoreRecord, decision?: boolean): FollowStep {
    invariant(rec.seqnum > this.pos, `record ${rec.seqnum} fed at position ${this.pos}`);
    if (rec.kind === "write") {
      this.pos = rec.seqnum;
      this.wrote(rec.object, rec.seqnum);
      return { kind: "applied", objects: [rec.object], decision: undefined };
    }
    if (rec.kind !== "commit") {
      this.pos = rec.seqnum;
      return { kind: "skipped" };
    }
    let d = decision;
    let conflict: { object: string; seqnum: number } | undefined;
    if (d === undefined) {
      const local = this.decide(rec.info);
      if (local === undefined) return { kind: "needs-decision", info: rec.info };
      d = local.committed;
      conflict = local.conflict;
    }
    this.pos = rec.seqnum;
    if (!d) {
      return conflict === undefined
        ? { kind: "applied", objects: [], decision: false }
        : { kind: "applied", objects: [], decision: false, conflict };
    }
    for (const o of rec.info.writes) this.wrote(o, rec.seqnum);
    return { kind: "applied", objects: rec.info.writes, decision: true };
  }

  private wrote(object: string, seqnum: number): void {
    this.lastWrite.delete(object);
    this.lastWrite.set(object, seqnum);
    while (this.lastWrite.size > this.objectsMax) {
      const [k, v] = this.lastWrite.entries().next().value as [string, number];
      this.lastWrite.delete(k);
      if (v > this.evictedUpTo) this.evictedUpTo = v;
    }
  }
}
