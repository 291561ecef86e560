/**
 * The claim computation of one shard: an I/O-free state machine fed the shard's records in
 * log order. Every reader that feeds it the same prefix of the log computes the same state,
 * so concurrent consumers agree on which pop received which message without talking to each
 * other and without locks.
 *
 * The rules, in log order, with the shard's log time `now` = the largest `at` seen so far
 * (records carry their writer's clock, so every reader decides timeouts the same way):
 *  - A push adds its messages at the end of the shard.
 *  - A pop claims up to `max` of the oldest *available* messages (never delivered, or whose
 *    delivery was nacked or is past its visibility deadline), each for `visibilityMs` of log
 *    time. A message already delivered `maxDeliveries` times is dead-lettered instead of being
 *    delivered again. A pop that finds nothing and may wait joins the waiting pops, which are
 *    served first come, first served, by later pushes and by messages coming back, until its
 *    `waitMs` of log time has passed or its owner cancels it.
 *  - An ack, nack or extend names one delivery (push seqnum, index, delivery number). It takes
 *    effect only if that is still the message's latest delivery and it was not nacked: a
 *    delivery past its deadline can still be acked as long as no other pop has claimed the
 *    message since.
 *  - Before each record, deliveries and delays whose deadline is at or before `now` come
 *    back, and waiting pops are served; so whenever a pop waits, nothing is available.
 *
 * Besides the assignment the machine decides, deterministically, which pop's owner writes the
 * next checkpoints (so that readers do not all write them) and what may be trimmed.
 */
import { invariant } from "./assert.js";
import { Heap } from "./heap.js";
import type { ElementRef, ReceiptRef } from "./ids.js";
import type { QueueRecord } from "./records.js";

export interface MachineConfig {
  /** Deliveries of a message before it is dead-lettered (≥ 1). */
  readonly maxDeliveries: number;
  /** Whether dead letters wait to be copied to a dead-letter queue (else they are dropped). */
  readonly deadLetter: boolean;
  /** Records between durable checkpoints. */
  readonly checkpointIntervalRecords: number;
  /** Records between aux-data checkpoints. */
  readonly auxIntervalRecords: number;
  /** Waiting pops the shard holds; beyond it a pop that would wait is answered empty. */
  readonly waitingPopsMax: number;
}

/** One delivery, as a pop receives it. */
export interface Delivery {
  readonly seq: number;
  readonly idx: number;
  /** 1 for the first delivery of the message. */
  readonly delivery: number;
  /** The push record's `at`. */
  readonly pushedAt: number;
  /** Log time until which the delivery is the consumer's. */
  readonly deadline: number;
}

export type PopOutcome =
  | {
      readonly status: "delivered";
      /** Log time at which the pop received the messages. */
      readonly at: number;
      readonly deliveries: readonly Delivery[];
    }
  | { readonly status: "waiting" }
  /** Nothing available and the pop may not wait (or too many pops wait already). */
  | { readonly status: "empty" }
  /** The pop waited until its `waitMs` of log time had passed. */
  | { readonly status: "expired" }
  | { readonly status: "cancelled" };

/** A message past its last delivery, waiting to be copied to the dead-letter queue. */
export interface DeadLetter extends ElementRef {
  readonly pushedAt: number;
  readonly deliveries: number;
  /** Log time at which it was dead-lettered. */
  readonly markedAt: number;
  /** The pop that found it (its owner copies it). */
  readonly popSeq: number;
}

export type Effect =
  | { readonly type: "pop"; readonly popSeq: number; readonly outcome: PopOutcome }
  /** Which receipts of an ack, nack, extend (or of a pop's acks) took effect, in order. */
  | { readonly type: "receipts"; readonly recordSeq: number; readonly accepted: readonly boolean[] }
  | { readonly type: "dead"; readonly letter: DeadLetter };

/** Counts of a shard's unfinished messages. */
export interface ShardLength {
  /** A pop would receive these now. */
  readonly available: number;
  readonly inFlight: number;
  /** Nacked with a delay that has not yet passed. */
  readonly delayed: number;
  /** Past their last delivery, not yet copied to the dead-letter queue. */
  readonly deadPending: number;
  /** All of the above. */
  readonly total: number;
}

const IN_FLIGHT = 0;
const AVAILABLE = 1;
const DELAYED = 2;
type ElementState = typeof IN_FLIGHT | typeof AVAILABLE | typeof DELAYED;

interface Element {
  readonly seq: number;
  readonly idx: number;
  readonly pushedAt: number;
  deliveries: number;
  state: ElementState;
  consumer: string;
  popSeq: number;
  /** IN_FLIGHT: the visibility deadline; DELAYED: when it becomes available. */
  deadline: number;
  /** Its latest delivery was nacked: receipts for it no longer count. */
  released: boolean;
  /** Bumped on every change that makes older heap entries stale. */
  version: number;
}

/** Messages of one push record never delivered: indexes `next` to `end - 1`. */
interface Run {
  readonly seq: number;
  next: number;
  readonly end: number;
  readonly at: number;
}

interface Waiting {
  readonly popSeq: number;
  readonly consumer: string;
  readonly max: number;
  readonly visibilityMs: number;
  readonly waitUntil: number;
  done: boolean;
}

interface HeapEntry {
  readonly seq: number;
  readonly idx: number;
  readonly version: number;
}

interface TimerEntry extends HeapEntry {
  readonly time: number;
}

const keyOf = (seq: number, idx: number): string => `${seq}:${idx}`;
const byKey = (a: ElementRef, b: ElementRef): boolean =>
  a.seq < b.seq || (a.seq === b.seq && a.idx < b.idx);
const byTime = (a: TimerEntry, b: TimerEntry): boolean =>
  a.time < b.time || (a.time === b.time && byKey(a, b));

/** The JSON form of a shard's state (checkpoints). Arrays keep it small. */
export interface ShardSnapshot {
  readonly v: 1;
  readonly lastSeq: number;
  readonly records: number;
  readonly now: number;
  readonly malformed: number;
  readonly trimBelow: number;
  readonly lastCheckpointSeq: number;
  readonly lastCheckpointRecords: number;
  readonly checkpointDue: readonly [popSeq: number, since: number] | null;
  readonly auxBoundary: number;
  readonly auxDuePop: number | null;
  /** [seq, next, end, at] */
  readonly fresh: readonly (readonly [number, number, number, number])[];
  /** [seq, idx, pushedAt, deliveries, state, consumer, popSeq, deadline, released] */
  readonly elements: readonly (readonly [
    number,
    number,
    number,
    number,
    number,
    string,
    number,
    number,
    0 | 1,
  ])[];
  /** [popSeq, consumer, max, visibilityMs, waitUntil] */
  readonly waiting: readonly (readonly [number, string, number, number, number])[];
  /** [seq, idx, pushedAt, deliveries, markedAt, popSeq] */
  readonly dead: readonly (readonly [number, number, number, number, number, number])[];
}

export class ShardMachine {
  private lastSeqValue = -1;
  private recordsValue = 0;
  private nowValue = 0;
  private malformedValue = 0;
  private trimBelowValue = 0;
  private lastCheckpointSeqValue = -1;
  private lastCheckpointRecords = 0;
  private checkpointDueValue: { popSeq: number; since: number } | null = null;
  private auxBoundary = 0;
  private auxDuePopValue: number | null = null;

  private readonly fresh: Run[] = [];
  private freshHead = 0;
  private freshCount = 0;
  private readonly elements = new Map<string, Element>();
  private readonly available = new Heap<HeapEntry>(byKey);
  private readonly timers = new Heap<TimerEntry>(byTime);
  private availableCount = 0;
  private inFlightCount = 0;
  private delayedCount = 0;
  private readonly waiting: Waiting[] = [];
  private waitingHead = 0;
  private readonly waitingByPop = new Map<number, Waiting>();
  private readonly deadPending = new Map<string, DeadLetter>();
  /** Unfinished messages per push record, in seqnum order (Map keeps insertion order). */
  private readonly remaining = new Map<number, number>();

  private effects: Effect[] = [];

  constructor(readonly config: MachineConfig) {
    invariant(config.maxDeliveries >= 1, "maxDeliveries must be at least 1");
    invariant(config.checkpointIntervalRecords >= 1, "checkpoint interval must be positive");
    invariant(config.auxIntervalRecords >= 1, "aux checkpoint interval must be positive");
  }

  /** The seqnum of the last record applied, or -1. */
  get lastSeq(): number {
    return this.lastSeqValue;
  }
  /** Records applied (malformed ones included). */
  get records(): number {
    return this.recordsValue;
  }
  /** The shard's log time: the largest `at` applied. */
  get now(): number {
    return this.nowValue;
  }
  get malformed(): number {
    return this.malformedValue;
  }
  /** The largest trim point announced by a checkpoint record. */
  get trimBelow(): number {
    return this.trimBelowValue;
  }
  /** The seqnum of the last checkpoint record applied, or -1. */
  get lastCheckpointSeq(): number {
    return this.lastCheckpointSeqValue;
  }
  /** The pop whose owner should write the next durable checkpoint, if one is due. */
  get checkpointDuePop(): number | null {
    return this.checkpointDueValue?.popSeq ?? null;
  }
  /** The pop whose owner should write the current aux-data checkpoint, if any. */
  get auxDuePop(): number | null {
    return this.auxDuePopValue;
  }
  /** Waiting pops (not yet served, expired or cancelled). */
  get waitingPops(): number {
    return this.waitingByPop.size;
  }

  /**
   * Applies the record at `seq` (null: a record of the shard's tag that does not decode) and
   * returns what it decided. Seqnums must increase.
   */
  apply(seq: number, rec: QueueRecord | null): Effect[] {
    invariant(
      Number.isSafeInteger(seq) && seq > this.lastSeqValue,
      () => `queue records applied out of order: ${seq} after ${this.lastSeqValue}`,
    );
    this.lastSeqValue = seq;
    this.recordsValue++;
    const effects: Effect[] = [];
    this.effects = effects;
    if (rec === null) {
      this.malformedValue++;
      return effects;
    }
    if (rec.at > this.nowValue) this.nowValue = rec.at;
    this.expireTimers();
    this.serveWaiting();
    switch (rec.type) {
      case "push": {
        const n = rec.messages.length;
        this.fresh.push({ seq, next: 0, end: n, at: rec.at });
        this.freshCount += n;
        this.remaining.set(seq, n);
        break;
      }
      case "pop":
        if (rec.acks.length > 0) this.receipts(seq, rec.acks, (e) => this.ack(e));
        this.pop(seq, rec.consumer, rec.max, rec.visibilityMs, rec.waitMs);
        this.duties(seq);
        break;
      case "ack":
        this.receipts(seq, rec.receipts, (e) => this.ack(e));
        break;
      case "nack":
        this.receipts(seq, rec.receipts, (e) => this.nack(e, rec.delayMs));
        break;
      case "extend":
        this.receipts(seq, rec.receipts, (e) => this.extend(e, rec.visibilityMs));
        break;
      case "cancel": {
        const w = this.waitingByPop.get(rec.popSeq);
        if (w !== undefined) {
          w.done = true;
          this.waitingByPop.delete(rec.popSeq);
          effects.push({ type: "pop", popSeq: rec.popSeq, outcome: { status: "cancelled" } });
        }
        break;
      }
      case "tick":
        break;
      case "checkpoint":
        this.checkpointDueValue = null;
        this.lastCheckpointRecords = this.recordsValue;
        this.lastCheckpointSeqValue = seq;
        if (rec.trimBelow > this.trimBelowValue) this.trimBelowValue = rec.trimBelow;
        break;
      case "dead-done":
        for (const e of rec.elements) {
          if (this.deadPending.delete(keyOf(e.seq, e.idx))) this.finished(e.seq);
        }
        break;
    }
    this.serveWaiting();
    return effects;
  }

  // ---- transitions --------------------------------------------------------------------------

  private expireTimers(): void {
    for (let t = this.timers.peek(); t !== undefined && t.time <= this.nowValue;) {
      this.timers.pop();
      const e = this.elements.get(keyOf(t.seq, t.idx));
      if (e !== undefined && e.version === t.version && e.state !== AVAILABLE) {
        if (e.state === IN_FLIGHT) this.inFlightCount--;
        else this.delayedCount--;
        e.state = AVAILABLE;
        this.availableCount++;
        this.available.push({ seq: e.seq, idx: e.idx, version: e.version });
      }
      t = this.timers.peek();
    }
  }

  /** The oldest available message, taken out of the available set; undefined if none. */
  private takeAvailable(): Element | undefined {
    for (let h = this.available.pop(); h !== undefined; h = this.available.pop()) {
      const e = this.elements.get(keyOf(h.seq, h.idx));
      if (e !== undefined && e.version === h.version && e.state === AVAILABLE) {
        this.availableCount--;
        return e;
      }
    }
    if (this.freshCount === 0) return undefined;
    const run = this.fresh[this.freshHead]!;
    const e: Element = {
      seq: run.seq,
      idx: run.next,
      pushedAt: run.at,
      deliveries: 0,
      state: AVAILABLE,
      consumer: "",
      popSeq: -1,
      deadline: 0,
      released: false,
      version: 0,
    };
    run.next++;
    this.freshCount--;
    if (run.next === run.end) {
      this.freshHead++;
      if (this.freshHead >= 1024 && this.freshHead * 2 >= this.fresh.length) {
        this.fresh.splice(0, this.freshHead);
        this.freshHead = 0;
      }
    }
    this.elements.set(keyOf(e.seq, e.idx), e);
    return e;
  }

  private claim(popSeq: number, consumer: string, max: number, visibilityMs: number): Delivery[] {
    const out: Delivery[] = [];
    while (out.length < max) {
      const e = this.takeAvailable();
      if (e === undefined) break;
      if (e.deliveries >= this.config.maxDeliveries) {
        this.deadLetter(e, popSeq);
        continue;
      }
      e.deliveries++;
      e.state = IN_FLIGHT;
      e.consumer = consumer;
      e.popSeq = popSeq;
      e.deadline = this.nowValue + visibilityMs;
      e.released = false;
      e.version++;
      this.inFlightCount++;
      this.timers.push({ time: e.deadline, seq: e.seq, idx: e.idx, version: e.version });
      out.push({
        seq: e.seq,
        idx: e.idx,
        delivery: e.deliveries,
        pushedAt: e.pushedAt,
        deadline: e.deadline,
      });
    }
    return out;
  }

  private deadLetter(e: Element, popSeq: number): void {
    const key = keyOf(e.seq, e.idx);
    this.elements.delete(key);
    const letter: DeadLetter = {
      seq: e.seq,
      idx: e.idx,
      pushedAt: e.pushedAt,
      deliveries: e.deliveries,
      markedAt: this.nowValue,
      popSeq,
    };
    if (this.config.deadLetter) this.deadPending.set(key, letter);
    else this.finished(e.seq);
    this.effects.push({ type: "dead", letter });
  }

  private pop(
    seq: number,
    consumer: string,
    max: number,
    visibilityMs: number,
    waitMs: number,
  ): void {
    const deliveries = this.claim(seq, consumer, max, visibilityMs);
    let outcome: PopOutcome;
    if (deliveries.length > 0) {
      outcome = { status: "delivered", at: this.nowValue, deliveries };
    } else if (waitMs > 0 && this.waitingByPop.size < this.config.waitingPopsMax) {
      const w: Waiting = {
        popSeq: seq,
        consumer,
        max,
        visibilityMs,
        waitUntil: this.nowValue + waitMs,
        done: false,
      };
      this.waiting.push(w);
      this.waitingByPop.set(seq, w);
      outcome = { status: "waiting" };
    } else {
      outcome = { status: "empty" };
    }
    this.effects.push({ type: "pop", popSeq: seq, outcome });
  }

  private serveWaiting(): void {
    while (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead]!;
      if (!w.done && w.waitUntil <= this.nowValue) {
        w.done = true;
        this.waitingByPop.delete(w.popSeq);
        this.effects.push({ type: "pop", popSeq: w.popSeq, outcome: { status: "expired" } });
      }
      if (w.done) {
        this.waitingHead++;
        continue;
      }
      if (this.availableCount + this.freshCount === 0) break;
      const deliveries = this.claim(w.popSeq, w.consumer, w.max, w.visibilityMs);
      if (deliveries.length === 0) break; // everything available was dead-lettered
      w.done = true;
      this.waitingByPop.delete(w.popSeq);
      this.waitingHead++;
      this.effects.push({
        type: "pop",
        popSeq: w.popSeq,
        outcome: { status: "delivered", at: this.nowValue, deliveries },
      });
    }
    if (this.waitingHead >= 1024 && this.waitingHead * 2 >= this.waiting.length) {
      this.waiting.splice(0, this.waitingHead);
      this.waitingHead = 0;
    }
  }

  private receipts(
    recordSeq: number,
    list: readonly ReceiptRef[],
    act: (e: Element) => void,
  ): void {
    const accepted: boolean[] = new Array<boolean>(list.length);
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      const e = this.elements.get(keyOf(r.seq, r.idx));
      const ok =
        e !== undefined &&
        e.deliveries === r.delivery &&
        e.deliveries > 0 &&
        !e.released &&
        e.state !== DELAYED;
      accepted[i] = ok;
      if (ok) act(e);
    }
    this.compactHeaps();
    this.effects.push({ type: "receipts", recordSeq, accepted });
  }

  private leave(e: Element): void {
    if (e.state === IN_FLIGHT) this.inFlightCount--;
    else if (e.state === AVAILABLE) this.availableCount--;
    else this.delayedCount--;
  }

  private ack(e: Element): void {
    this.leave(e);
    this.elements.delete(keyOf(e.seq, e.idx));
    this.finished(e.seq);
  }

  private nack(e: Element, delayMs: number): void {
    this.leave(e);
    e.released = true;
    e.version++;
    if (delayMs === 0) {
      e.state = AVAILABLE;
      this.availableCount++;
      this.available.push({ seq: e.seq, idx: e.idx, version: e.version });
    } else {
      e.state = DELAYED;
      e.deadline = this.nowValue + delayMs;
      this.delayedCount++;
      this.timers.push({ time: e.deadline, seq: e.seq, idx: e.idx, version: e.version });
    }
  }

  private extend(e: Element, visibilityMs: number): void {
    this.leave(e);
    e.state = IN_FLIGHT;
    e.deadline = this.nowValue + visibilityMs;
    e.version++;
    this.inFlightCount++;
    this.timers.push({ time: e.deadline, seq: e.seq, idx: e.idx, version: e.version });
  }

  private finished(seq: number): void {
    const n = this.remaining.get(seq);
    invariant(
      n !== undefined && n > 0,
      () => `queue: push record ${seq} finished more often than it has messages`,
    );
    if (n === 1) this.remaining.delete(seq);
    else this.remaining.set(seq, n - 1);
  }

  private duties(popSeq: number): void {
    const c = this.config;
    if (this.recordsValue - this.auxBoundary >= c.auxIntervalRecords) {
      this.auxBoundary = this.recordsValue;
      this.auxDuePopValue = popSeq;
    }
    const due = this.checkpointDueValue;
    if (due === null) {
      if (this.recordsValue - this.lastCheckpointRecords >= c.checkpointIntervalRecords) {
        this.checkpointDueValue = { popSeq, since: this.recordsValue };
      }
    } else if (
      this.recordsValue - due.since >=
      Math.max(1, Math.floor(c.checkpointIntervalRecords / 4))
    ) {
      // Its owner did not write it (gone, or its state was too large): the next pop's owner.
      this.checkpointDueValue = { popSeq, since: this.recordsValue };
    }
  }

  // ---- queries ------------------------------------------------------------------------------

  /**
   * The oldest push record with an unfinished message, or (if none) the next seqnum: records
   * below it are no longer needed by any message.
   */
  lowWater(): number {
    for (const seq of this.remaining.keys()) return seq;
    return this.lastSeqValue + 1;
  }

  /** Dead letters waiting to be copied, oldest first. */
  deadLetters(): DeadLetter[] {
    return [...this.deadPending.values()];
  }

  /** The length now, or as if a record with `atTime` came next (nothing else changing). */
  length(atTime = this.nowValue): ShardLength {
    let available = this.availableCount + this.freshCount;
    let inFlight = this.inFlightCount;
    let delayed = this.delayedCount;
    if (atTime > this.nowValue) {
      for (const t of this.timers.values()) {
        if (t.time > atTime) continue;
        const e = this.elements.get(keyOf(t.seq, t.idx));
        if (e === undefined || e.version !== t.version || e.state === AVAILABLE) continue;
        available++;
        if (e.state === IN_FLIGHT) inFlight--;
        else delayed--;
      }
    }
    const deadPending = this.deadPending.size;
    return {
      available,
      inFlight,
      delayed,
      deadPending,
      total: available + inFlight + delayed + deadPending,
    };
  }

  /**
   * The message a pop would receive if a record with `atTime` came next, with its deliveries
   * so far (it would be dead-lettered instead when they reach maxDeliveries); null if none.
   */
  peek(atTime = this.nowValue): (ElementRef & { pushedAt: number; deliveries: number }) | null {
    let best: Element | undefined;
    const consider = (e: Element | undefined): void => {
      if (e !== undefined && (best === undefined || byKey(e, best))) best = e;
    };
    for (const h of this.available.values()) {
      const e = this.elements.get(keyOf(h.seq, h.idx));
      if (e !== undefined && e.version === h.version && e.state === AVAILABLE) consider(e);
    }
    if (atTime > this.nowValue) {
      for (const t of this.timers.values()) {
        if (t.time > atTime) continue;
        const e = this.elements.get(keyOf(t.seq, t.idx));
        if (e !== undefined && e.version === t.version && e.state !== AVAILABLE) consider(e);
      }
    }
    if (best !== undefined) {
      const b: Element = best;
      return { seq: b.seq, idx: b.idx, pushedAt: b.pushedAt, deliveries: b.deliveries };
    }
    if (this.freshCount === 0) return null;
    const run = this.fresh[this.freshHead]!;
    return { seq: run.seq, idx: run.next, pushedAt: run.at, deliveries: 0 };
  }

  /** The waiting pop `popSeq`'s outcome as the state has it: "waiting", or null if not waiting. */
  isWaiting(popSeq: number): boolean {
    return this.waitingByPop.has(popSeq);
  }

  /** Deliveries of pop `popSeq` still in flight (for a reader that started after that pop). */
  inFlightOf(popSeq: number): Delivery[] {
    const out: Delivery[] = [];
    for (const e of this.elements.values()) {
      if (e.popSeq === popSeq && e.state === IN_FLIGHT && !e.released) {
        out.push({
          seq: e.seq,
          idx: e.idx,
          delivery: e.deliveries,
          pushedAt: e.pushedAt,
          deadline: e.deadline,
        });
      }
    }
    return out.sort((a, b) => (byKey(a, b) ? -1 : 1));
  }

  /** When the next delivery or delay comes back (log time), or null if none is pending. */
  nextDeadline(): number | null {
    this.pruneTimers();
    return this.timers.peek()?.time ?? null;
  }

  /** Whether a pop arriving with `atTime` would find a message (without counting them). */
  hasAvailable(atTime = this.nowValue): boolean {
    if (this.availableCount + this.freshCount > 0) return true;
    const next = this.nextDeadline();
    return next !== null && next <= atTime;
  }

  // ---- heap upkeep --------------------------------------------------------------------------
  // Heap entries go stale when their element changes (acked, redelivered, extended); they are
  // skipped when they reach the top. These keep the heaps' size proportional to the live
  // elements, and their tops live, which none of the decisions depend on.

  private pruneTimers(): void {
    for (let t = this.timers.peek(); t !== undefined; t = this.timers.peek()) {
      const e = this.elements.get(keyOf(t.seq, t.idx));
      if (e !== undefined && e.version === t.version && e.state !== AVAILABLE) return;
      this.timers.pop();
    }
  }

  private compactHeaps(): void {
    const live = this.inFlightCount + this.delayedCount;
    if (this.timers.size > 1024 && this.timers.size > 2 * live) {
      const keep = this.timers.values().filter((t) => {
        const e = this.elements.get(keyOf(t.seq, t.idx));
        return e !== undefined && e.version === t.version && e.state !== AVAILABLE;
      });
      this.timers.reset(keep);
    }
    if (this.available.size > 1024 && this.available.size > 2 * this.availableCount) {
      const keep = this.available.values().filter((h) => {
        const e = this.elements.get(keyOf(h.seq, h.idx));
        return e !== undefined && e.version === h.version && e.state === AVAILABLE;
      });
      this.available.reset(keep);
    }
  }

  // ---- snapshots ----------------------------------------------------------------------------

  snapshot(): ShardSnapshot {
    const fresh: [number, number, number, number][] = [];
    for (let i = this.freshHead; i < this.fresh.length; i++) {
      const r = this.fresh[i]!;
      if (r.next < r.end) fresh.push([r.seq, r.next, r.end, r.at]);
    }
    const elements = [...this.elements.values()]
      .sort((a, b) => (byKey(a, b) ? -1 : 1))
      .map(
        (e) =>
          [
            e.seq,
            e.idx,
            e.pushedAt,
            e.deliveries,
            e.state,
            e.consumer,
            e.popSeq,
            e.deadline,
            e.released ? 1 : 0,
          ] as const,
      );
    const waiting: [number, string, number, number, number][] = [];
    for (let i = this.waitingHead; i < this.waiting.length; i++) {
      const w = this.waiting[i]!;
      if (!w.done) waiting.push([w.popSeq, w.consumer, w.max, w.visibilityMs, w.waitUntil]);
    }
    const dead = [...this.deadPending.values()]
      .sort((a, b) => (byKey(a, b) ? -1 : 1))
      .map((d) => [d.seq, d.idx, d.pushedAt, d.deliveries, d.markedAt, d.popSeq] as const);
    const due = this.checkpointDueValue;
    return {
      v: 1,
      lastSeq: this.lastSeqValue,
      records: this.recordsValue,
      now: this.nowValue,
      malformed: this.malformedValue,
      trimBelow: this.trimBelowValue,
      lastCheckpointSeq: this.lastCheckpointSeqValue,
      lastCheckpointRecords: this.lastCheckpointRecords,
      checkpointDue: due === null ? null : [due.popSeq, due.since],
      auxBoundary: this.auxBoundary,
      auxDuePop: this.auxDuePopValue,
      fresh,
      elements,
      waiting,
      dead,
    };
  }

  /** A machine in the state a snapshot describes. Throws on a snapshot that is not one. */
  static restore(config: MachineConfig, s: ShardSnapshot): ShardMachine {
    invariant(s !== null && typeof s === "object" && s.v === 1, "not a queue shard snapshot");
    const m = new ShardMachine(config);
    m.lastSeqValue = s.lastSeq;
    m.recordsValue = s.records;
    m.nowValue = s.now;
    m.malformedValue = s.malformed;
    m.trimBelowValue = s.trimBelow;
    m.lastCheckpointSeqValue = s.lastCheckpointSeq;
    m.lastCheckpointRecords = s.lastCheckpointRecords;
    m.checkpointDueValue =
      s.checkpointDue === null ? null : { popSeq: s.checkpointDue[0], since: s.checkpointDue[1] };
    m.auxBoundary = s.auxBoundary;
    m.auxDuePopValue = s.auxDuePop;
    const counts = new Map<number, number>();
    const count = (seq: number, n: number): void => {
      counts.set(seq, (counts.get(seq) ?? 0) + n);
    };
    for (const [seq, next, end, at] of s.fresh) {
      m.fresh.push({ seq, next, end, at });
      m.freshCount += end - next;
      count(seq, end - next);
    }
    for (const [
      seq,
      idx,
      pushedAt,
      deliveries,
      state,
      consumer,
      popSeq,
      deadline,
      released,
    ] of s.elements) {
      invariant(
        state === IN_FLIGHT || state === AVAILABLE || state === DELAYED,
        "bad element state in snapshot",
      );
      const e: Element = {
        seq,
        idx,
        pushedAt,
        deliveries,
        state,
        consumer,
        popSeq,
        deadline,
        released: released === 1,
        version: 0,
      };
      m.elements.set(keyOf(seq, idx), e);
      if (state === AVAILABLE) {
        m.availableCount++;
        m.available.push({ seq, idx, version: 0 });
      } else {
        if (state === IN_FLIGHT) m.inFlightCount++;
        else m.delayedCount++;
        m.timers.push({ time: deadline, seq, idx, version: 0 });
      }
      count(seq, 1);
    }
    for (const [popSeq, consumer, max, visibilityMs, waitUntil] of s.waiting) {
      const w: Waiting = { popSeq, consumer, max, visibilityMs, waitUntil, done: false };
      m.waiting.push(w);
      m.waitingByPop.set(popSeq, w);
    }
    for (const [seq, idx, pushedAt, deliveries, markedAt, popSeq] of s.dead) {
      m.deadPending.set(keyOf(seq, idx), { seq, idx, pushedAt, deliveries, markedAt, popSeq });
      count(seq, 1);
    }
    for (const seq of [...counts.keys()].sort((a, b) => a - b))
      m.remaining.set(seq, counts.get(seq)!);
    return m;
  }
}
