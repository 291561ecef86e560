/**
 * The commit decision, as an I/O-free state machine: records in, reads and decisions out.
 *
 * A commit record C (at seqnum c, snapshot s) commits if and only if no object C checks
 * has a committed write in (s, c): a plain write record of the object, or a commit
 * record that writes it and itself commits. That is a function of the log prefix before
 * c, so every reader decides every commit record the same way, whatever it has cached:
 * the log's order is the only arbiter. Deciding C may need the decisions of earlier
 * commit records; those only ever point to smaller seqnums, so the recursion ends.
 *
 * The machine asks for `readNext(tag of object, fromSeqnum)` reads (many at once, so a
 * driver can run them in parallel), takes their answers in any order, and reports each
 * commit record it decided on the way (for caching) and finally the root's decision.
 * Decisions it already knows (a checkpoint's, a cache's) it uses without reading.
 */
import { invariant } from "./assert.js";
import type { ReadLimit } from "./errors.js";
import type { Checkpoint, CommitInfo, StoreRecord } from "./records.js";

/** A record as the decision sees it. */
export type DeciderRecord =
  | { readonly kind: "write"; readonly seqnum: number; readonly objects: readonly string[] }
  | {
      readonly kind: "commit";
      readonly seqnum: number;
      readonly info: CommitInfo;
      /** Its decision, when a checkpoint says. */
      readonly decision: boolean | undefined;
    }
  | { readonly kind: "other"; readonly seqnum: number };

export function toDeciderRecord(rec: StoreRecord, cp: Checkpoint): DeciderRecord {
  switch (rec.kind) {
    case "write":
      return { kind: "write", seqnum: rec.seqnum, objects: [rec.object] };
    case "commit":
      return { kind: "commit", seqnum: rec.seqnum, info: rec.info, decision: cp.decision };
    default:
      return { kind: "other", seqnum: rec.seqnum };
  }
}

/** Read the first record of `object`'s sub-stream at or after `fromSeqnum`. */
export interface ReadRequest {
  readonly id: number;
  readonly object: string;
  readonly fromSeqnum: number;
}

export interface Decision {
  readonly seqnum: number;
  readonly committed: boolean;
  /** For an abort: the object and the committed write that caused it. */
  readonly conflict?: { readonly object: string; readonly seqnum: number };
}

export interface DeciderOutput {
  readonly reads: ReadRequest[];
  /** Commit records this step decided (not those whose decision was already known). */
  readonly decided: Decision[];
  /** The root's decision, once made. */
  done?: Decision;
  /** A limit was hit; the machine stops. */
  failed?: { readonly limit: ReadLimit; readonly value: number };
}

export interface DeciderOptions {
  readonly recordsWalkedMax: number;
  readonly decisionsPendingMax: number;
  /** A decision known from elsewhere (a cache), or undefined. */
  readonly known?: (seqnum: number) => boolean | undefined;
}

interface Frame {
  readonly info: CommitInfo;
  /** Checked objects not yet clear. */
  pending: number;
  done: boolean;
}

interface Waiter {
  readonly frame: Frame;
  readonly object: string;
}

export class CommitDecider {
  private readonly frames = new Map<number, Frame>();
  private readonly reads = new Map<number, { frame: Frame; object: string }>();
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly decisions = new Map<number, boolean>();
  /** Frames decided whose waiters are still to be told. */
  private readonly finished: Frame[] = [];
  private nextId = 1;
  private walked = 0;
  private stopped = false;
  private out: DeciderOutput = { reads: [], decided: [] };

  constructor(
    private readonly root: CommitInfo,
    private readonly o: DeciderOptions,
  ) {}

  /** Starts deciding the root. */
  start(): DeciderOutput {
    this.out = { reads: [], decided: [] };
    const known = this.o.known?.(this.root.seqnum);
    if (known !== undefined) {
      this.stopped = true;
      this.out.done = { seqnum: this.root.seqnum, committed: known };
      return this.out;
    }
    this.open(this.root);
    this.drain();
    return this.out;
  }

  /** The answer to read `id`: the record found, or null when the sub-stream has none. */
  onRead(id: number, rec: DeciderRecord | null): DeciderOutput {
    this.out = { reads: [], decided: [] };
    const r = this.reads.get(id);
    if (r === undefined) return this.out;
    this.reads.delete(id);
    if (this.stopped || r.frame.done) return this.out;
    this.handle(r.frame, r.object, rec);
    this.drain();
    return this.out;
  }

  /** Reads issued and not answered (for drivers that must not leave work behind). */
  get readsInFlight(): number {
    return this.reads.size;
  }

  private open(info: CommitInfo): void {
    const frame: Frame = { info, pending: info.checks.length, done: false };
    this.frames.set(info.seqnum, frame);
    if (frame.pending === 0) {
      this.finish(frame, true, undefined);
      return;
    }
    for (const object of info.checks) this.read(frame, object, info.snapshot + 1);
  }

  private read(frame: Frame, object: string, fromSeqnum: number): void {
    if (this.stopped) return;
    if (this.walked >= this.o.recordsWalkedMax) {
      this.fail("recordsWalkedMax", this.o.recordsWalkedMax);
      return;
    }
    this.walked++;
    const id = this.nextId++;
    this.reads.set(id, { frame, object });
    this.out.reads.push({ id, object, fromSeqnum });
  }

  private fail(limit: ReadLimit, value: number): void {
    this.stopped = true;
    this.out.failed = { limit, value };
  }

  private decisionOf(seqnum: number): boolean | undefined {
    return this.decisions.get(seqnum) ?? this.o.known?.(seqnum);
  }

  private handle(frame: Frame, object: string, rec: DeciderRecord | null): void {
    const { seqnum: c, snapshot } = frame.info;
    if (rec === null || rec.seqnum >= c) {
      frame.pending--;
      if (frame.pending === 0) this.finish(frame, true, undefined);
      return;
    }
    invariant(
      rec.seqnum > snapshot,
      `read for ${c} answered with ${rec.seqnum} ≤ snapshot ${snapshot}`,
    );
    const next = rec.seqnum + 1;
    switch (rec.kind) {
      case "write":
        if (rec.objects.includes(object)) this.finish(frame, false, { object, seqnum: rec.seqnum });
        else this.read(frame, object, next);
        return;
      case "other":
        this.read(frame, object, next);
        return;
      case "commit": {
        if (!rec.info.writes.includes(object)) {
          this.read(frame, object, next);
          return;
        }
        const d = rec.decision ?? this.decisionOf(rec.seqnum);
        if (d === true) this.finish(frame, false, { object, seqnum: rec.seqnum });
        else if (d === false) this.read(frame, object, next);
        else {
          let list = this.waiters.get(rec.seqnum);
          if (list === undefined) this.waiters.set(rec.seqnum, (list = []));
          list.push({ frame, object });
          if (!this.frames.has(rec.seqnum)) {
            if (this.frames.size >= this.o.decisionsPendingMax) {
              this.fail("decisionsPendingMax", this.o.decisionsPendingMax);
              return;
            }
            invariant(
              rec.info.seqnum === rec.seqnum,
              "a commit record's info names its own seqnum",
            );
            this.open(rec.info);
          }
        }
        return;
      }
    }
  }

  private finish(
    frame: Frame,
    committed: boolean,
    conflict: { object: string; seqnum: number } | undefined,
  ): void {
    if (frame.done) return;
    frame.done = true;
    const seqnum = frame.info.seqnum;
    this.decisions.set(seqnum, committed);
    const d: Decision =
      conflict === undefined ? { seqnum, committed } : { seqnum, committed, conflict };
    this.out.decided.push(d);
    if (frame === this.frames.get(this.root.seqnum)) {
      this.out.done = d;
      this.stopped = true;
      return;
    }
    this.finished.push(frame);
  }

  /** Tells the waiters of decided frames, without recursion (chains can be long). */
  private drain(): void {
    while (!this.stopped) {
      const frame = this.finished.pop();
      if (frame === undefined) return;
      const seqnum = frame.info.seqnum;
      const committed = this.decisions.get(seqnum)!;
      const list = this.waiters.get(seqnum) ?? [];
      this.waiters.delete(seqnum);
      for (const w of list) {
        if (w.frame.done || this.stopped) continue;
        if (committed) this.finish(w.frame, false, { object: w.object, seqnum });
        else this.read(w.frame, w.object, seqnum + 1);
      }
    }
  }
}
