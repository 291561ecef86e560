// The queue's claim computation (src/queue/machine.ts), fed generated records: it agrees with
// a plain FIFO queue when nothing times out, with a naive reference model of every rule
// otherwise, and a machine restored from a snapshot continues exactly as the original.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ReceiptRef } from "../src/queue/ids.js";
import {
  ShardMachine,
  type Effect,
  type MachineConfig,
  type PopOutcome,
  type ShardSnapshot,
} from "../src/queue/machine.js";
import { decodeRecord, encodeRecord, type QueueRecord } from "../src/queue/records.js";

const CONFIG: MachineConfig = {
  maxDeliveries: 3,
  deadLetter: true,
  checkpointIntervalRecords: 16,
  auxIntervalRecords: 5,
  waitingPopsMax: 4,
};

// ---- a naive model of the same rules ----------------------------------------------------------

type ModelState = "fresh" | "inflight" | "available" | "delayed" | "done" | "dead";
interface ModelElement {
  seq: number;
  idx: number;
  pushedAt: number;
  deliveries: number;
  state: ModelState;
  deadline: number;
  released: boolean;
}
interface ModelWaiting {
  popSeq: number;
  max: number;
  vis: number;
  waitUntil: number;
  done: boolean;
}

/** Every rule of the machine, written the slow and obvious way (arrays and scans). */
class ReferenceModel {
  now = 0;
  readonly elements: ModelElement[] = [];
  readonly waiting: ModelWaiting[] = [];
  private effects: Effect[] = [];

  constructor(private readonly config: MachineConfig) {}

  private firstAvailable(): ModelElement | undefined {
    // Elements are kept in (seq, idx) order, so the first match is the oldest.
    return this.elements.find((e) => e.state === "fresh" || e.state === "available");
  }

  private claim(popSeq: number, max: number, vis: number) {
    const out: {
      seq: number;
      idx: number;
      delivery: number;
      pushedAt: number;
      deadline: number;
    }[] = [];
    while (out.length < max) {
      const e = this.firstAvailable();
      if (e === undefined) break;
      if (e.deliveries >= this.config.maxDeliveries) {
        e.state = this.config.deadLetter ? "dead" : "done";
        this.effects.push({
          type: "dead",
          letter: {
            seq: e.seq,
            idx: e.idx,
            pushedAt: e.pushedAt,
            deliveries: e.deliveries,
            markedAt: this.now,
            popSeq,
          },
        });
        continue;
      }
      e.deliveries++;
      e.state = "inflight";
      e.deadline = this.now + vis;
      e.released = false;
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

  private serve(): void {
    for (const w of this.waiting) {
      if (w.done) continue;
      if (w.waitUntil <= this.now) {
        w.done = true;
        this.effects.push({ type: "pop", popSeq: w.popSeq, outcome: { status: "expired" } });
        continue;
      }
      if (this.firstAvailable() === undefined) break;
      const d = this.claim(w.popSeq, w.max, w.vis);
      if (d.length === 0) break;
      w.done = true;
      this.effects.push({
        type: "pop",
        popSeq: w.popSeq,
        outcome: { status: "delivered", at: this.now, deliveries: d },
      });
    }
  }

  private valid(r: ReceiptRef): ModelElement | undefined {
    const e = this.elements.find((x) => x.seq === r.seq && x.idx === r.idx);
    if (e === undefined) return undefined;
    const live = e.state === "inflight" || e.state === "available";
    return live && e.deliveries === r.delivery && e.deliveries > 0 && !e.released ? e : undefined;
  }

  private receipts(seq: number, list: readonly ReceiptRef[], act: (e: ModelElement) => void) {
    const accepted = list.map((r) => {
      const e = this.valid(r);
      if (e !== undefined) act(e);
      return e !== undefined;
    });
    this.effects.push({ type: "receipts", recordSeq: seq, accepted });
  }

  apply(seq: number, rec: QueueRecord | null): Effect[] {
    this.effects = [];
    if (rec === null) return this.effects;
    this.now = Math.max(this.now, rec.at);
    for (const e of this.elements) {
      if ((e.state === "inflight" || e.state === "delayed") && e.deadline <= this.now) {
        e.state = "available";
      }
    }
    this.serve();
    switch (rec.type) {
      case "push":
        rec.messages.forEach((_, idx) =>
          this.elements.push({
            seq,
            idx,
            pushedAt: rec.at,
            deliveries: 0,
            state: "fresh",
            deadline: 0,
            released: false,
          }),
        );
        break;
      case "pop": {
        if (rec.acks.length > 0) this.receipts(seq, rec.acks, (e) => (e.state = "done"));
        const d = this.claim(seq, rec.max, rec.visibilityMs);
        let outcome: PopOutcome;
        const waitingNow = this.waiting.filter((w) => !w.done).length;
        if (d.length > 0) outcome = { status: "delivered", at: this.now, deliveries: d };
        else if (rec.waitMs > 0 && waitingNow < this.config.waitingPopsMax) {
          this.waiting.push({
            popSeq: seq,
            max: rec.max,
            vis: rec.visibilityMs,
            waitUntil: this.now + rec.waitMs,
            done: false,
          });
          outcome = { status: "waiting" };
        } else outcome = { status: "empty" };
        this.effects.push({ type: "pop", popSeq: seq, outcome });
        break;
      }
      case "ack":
        this.receipts(seq, rec.receipts, (e) => (e.state = "done"));
        break;
      case "nack":
        this.receipts(seq, rec.receipts, (e) => {
          e.released = true;
          if (rec.delayMs === 0) e.state = "available";
          else {
            e.state = "delayed";
            e.deadline = this.now + rec.delayMs;
          }
        });
        break;
      case "extend":
        this.receipts(seq, rec.receipts, (e) => {
          e.state = "inflight";
          e.deadline = this.now + rec.visibilityMs;
        });
        break;
      case "cancel": {
        const w = this.waiting.find((x) => x.popSeq === rec.popSeq && !x.done);
        if (w !== undefined) {
          w.done = true;
          this.effects.push({ type: "pop", popSeq: rec.popSeq, outcome: { status: "cancelled" } });
        }
        break;
      }
      case "dead-done":
        for (const r of rec.elements) {
          const e = this.elements.find((x) => x.seq === r.seq && x.idx === r.idx);
          if (e?.state === "dead") e.state = "done";
        }
        break;
      default:
        break;
    }
    this.serve();
    return this.effects;
  }
}

// ---- generated workloads ------------------------------------------------------------------------

type Op =
  | { op: "push"; n: number; dt: number }
  | { op: "pop"; c: number; max: number; vis: number; wait: number; ackHeld: boolean; dt: number }
  | { op: "ack"; c: number; pick: number; stale: boolean; dt: number }
  | { op: "nack"; c: number; pick: number; delay: number; dt: number }
  | { op: "extend"; c: number; pick: number; vis: number; dt: number }
  | { op: "cancel"; pick: number; dt: number }
  | { op: "deadDone"; pick: number; dt: number }
  | { op: "tick"; dt: number; skew: number }
  | { op: "malformed"; dt: number };

const dt = fc.integer({ min: 0, max: 40 });
const consumer = fc.integer({ min: 0, max: 3 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("push" as const),
      n: fc.integer({ min: 1, max: 3 }),
      dt,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("pop" as const),
      c: consumer,
      max: fc.integer({ min: 1, max: 3 }),
      vis: fc.constantFrom(15, 60, 1000),
      wait: fc.constantFrom(0, 0, 25, 200),
      ackHeld: fc.boolean(),
      dt,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("ack" as const),
      c: consumer,
      pick: fc.nat(),
      stale: fc.boolean(),
      dt,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("nack" as const),
      c: consumer,
      pick: fc.nat(),
      delay: fc.constantFrom(0, 30),
      dt,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("extend" as const),
      c: consumer,
      pick: fc.nat(),
      vis: fc.constantFrom(10, 100),
      dt,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("cancel" as const), pick: fc.nat(), dt }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("deadDone" as const), pick: fc.nat(), dt }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("tick" as const),
      dt,
      skew: fc.integer({ min: 0, max: 50 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("malformed" as const), dt }) },
);

/**
 * Turns ops into records. Receipts come from the deliveries the machine made so far (held per
 * consumer), so acks name real deliveries, sometimes older ones on purpose.
 */
class Driver {
  clock = 1000;
  seq = 0;
  readonly held: ReceiptRef[][] = [[], [], [], []];
  readonly old: ReceiptRef[] = [];
  readonly waiting: number[] = [];
  readonly dead: { seq: number; idx: number }[] = [];

  record(op: Op): QueueRecord | null {
    this.clock += op.dt;
    const at = this.clock;
    const take = (c: number, pick: number): ReceiptRef[] => {
      const h = this.held[c]!;
      if (h.length === 0) return [];
      const [r] = h.splice(pick % h.length, 1);
      this.old.push(r!);
      return [r!];
    };
    switch (op.op) {
      case "push":
        return {
          type: "push",
          at,
          messages: Array.from({ length: op.n }, (_, i) => ({
            json: true,
            data: new Uint8Array([48 + i]),
          })),
        };
      case "pop": {
        const acks = op.ackHeld ? this.held[op.c]!.splice(0) : [];
        this.old.push(...acks);
        return {
          type: "pop",
          at,
          consumer: `c${op.c}`,
          max: op.max,
          visibilityMs: op.vis,
          waitMs: op.wait,
          acks,
        };
      }
      case "ack": {
        const receipts =
          op.stale && this.old.length > 0
            ? [this.old[op.pick % this.old.length]!]
            : take(op.c, op.pick);
        return { type: "ack", at, receipts };
      }
      case "nack":
        return { type: "nack", at, receipts: take(op.c, op.pick), delayMs: op.delay };
      case "extend": {
        const h = this.held[op.c]!;
        return {
          type: "extend",
          at,
          receipts: h.length === 0 ? [] : [h[op.pick % h.length]!],
          visibilityMs: op.vis,
        };
      }
      case "cancel":
        if (this.waiting.length === 0) return { type: "tick", at };
        return { type: "cancel", at, popSeq: this.waiting[op.pick % this.waiting.length]! };
      case "deadDone":
        if (this.dead.length === 0) return { type: "tick", at };
        return { type: "dead-done", at, elements: this.dead.splice(op.pick % this.dead.length, 1) };
      case "tick":
        // A writer whose clock is behind: log time must not go back.
        return { type: "tick", at: Math.max(0, at - op.skew) };
      case "malformed":
        return null;
    }
  }

  observe(effects: readonly Effect[]): void {
    for (const e of effects) {
      if (e.type === "pop") {
        if (e.outcome.status === "waiting") this.waiting.push(e.popSeq);
        if (e.outcome.status === "delivered") {
          // The consumer is in the record, not the effect: find it by the waiting/pop order.
          const c = this.ownerOf.get(e.popSeq) ?? 0;
          for (const d of e.outcome.deliveries)
            this.held[c]!.push({ seq: d.seq, idx: d.idx, delivery: d.delivery });
        }
      } else if (e.type === "dead") {
        this.dead.push({ seq: e.letter.seq, idx: e.letter.idx });
      }
    }
  }

  readonly ownerOf = new Map<number, number>();
}

/** Round trip through the binary encoding, as the log would store it. */
function viaBytes(r: QueueRecord | null): QueueRecord | null {
  return r === null ? decodeRecord(new Uint8Array([1, 2, 3])) : decodeRecord(encodeRecord(r));
}

function run(
  ops: readonly Op[],
  onStep: (seq: number, rec: QueueRecord | null, effects: Effect[]) => void,
): void {
  const m = new ShardMachine(CONFIG);
  const d = new Driver();
  for (const op of ops) {
    const rec = viaBytes(d.record(op));
    const seq = (d.seq += 1 + (op.dt % 3)); // gaps: other tags' records in between
    if (op.op === "pop") d.ownerOf.set(seq, op.c);
    const effects = m.apply(seq, rec);
    d.observe(effects);
    onStep(seq, rec, effects);
  }
}

describe("queue state machine", () => {
  it("agrees with a FIFO queue when nothing times out: concurrent consumers get disjoint messages, in push order", () => {
    const fifoOp = fc.oneof(
      fc.record({ op: fc.constant("push" as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({
        op: fc.constant("pop" as const),
        c: consumer,
        max: fc.integer({ min: 1, max: 3 }),
      }),
      fc.record({ op: fc.constant("ack" as const), c: consumer }),
    );
    fc.assert(
      fc.property(fc.array(fifoOp, { minLength: 20, maxLength: 150, size: "max" }), (ops) => {
        const m = new ShardMachine(CONFIG);
        const fifo: string[] = [];
        const held: ReceiptRef[][] = [[], [], [], []];
        const deliveredTo = new Map<string, number>();
        let seq = 0;
        for (const op of ops) {
          seq++;
          if (op.op === "push") {
            m.apply(seq, {
              type: "push",
              at: 0,
              messages: Array.from({ length: op.n }, () => ({
                json: true,
                data: new Uint8Array(0),
              })),
            });
            for (let i = 0; i < op.n; i++) fifo.push(`${seq}:${i}`);
          } else if (op.op === "pop") {
            const effects = m.apply(seq, {
              type: "pop",
              at: 0,
              consumer: `c${op.c}`,
              max: op.max,
              visibilityMs: 60_000,
              waitMs: 0,
              acks: [],
            });
            const expected = fifo.splice(0, op.max);
            const pop = effects.find((e) => e.type === "pop");
            const got =
              pop?.type === "pop" && pop.outcome.status === "delivered"
                ? pop.outcome.deliveries
                : [];
            expect(got.map((x) => `${x.seq}:${x.idx}`)).toEqual(expected);
            for (const x of got) {
              expect(deliveredTo.has(`${x.seq}:${x.idx}`)).toBe(false);
              deliveredTo.set(`${x.seq}:${x.idx}`, op.c);
              expect(x.delivery).toBe(1);
              held[op.c]!.push(x);
            }
          } else {
            const receipts = held[op.c]!.splice(0);
            const effects = m.apply(seq, { type: "ack", at: 0, receipts });
            const r = effects.find((e) => e.type === "receipts");
            expect(r?.type === "receipts" ? r.accepted : null).toEqual(receipts.map(() => true));
          }
          expect(m.length().available).toBe(fifo.length);
        }
      }),
      { numRuns: 80 },
    );
  });

  it("decides every pop, ack, nack, extend, expiry and dead letter as the reference model does", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 40, maxLength: 200, size: "max" }), (ops) => {
        const model = new ReferenceModel(CONFIG);
        run(ops, (seq, rec, effects) => {
          expect(effects).toEqual(model.apply(seq, rec));
        });
      }),
      { numRuns: 120 },
    );
  });

  it("keeps its invariants: one holder per message, nothing available while a pop waits, low water below every unfinished message", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 40, maxLength: 200, size: "max" }), (ops) => {
        const holder = new Map<string, { delivery: number; deadline: number }>();
        const m = new ShardMachine(CONFIG);
        const d = new Driver();
        for (const op of ops) {
          const rec = viaBytes(d.record(op));
          const seq = (d.seq += 1);
          if (op.op === "pop") d.ownerOf.set(seq, op.c);
          const effects = m.apply(seq, rec);
          d.observe(effects);
          for (const e of effects) {
            if (e.type !== "pop" || e.outcome.status !== "delivered") continue;
            for (const x of e.outcome.deliveries) {
              const k = `${x.seq}:${x.idx}`;
              const prev = holder.get(k);
              // A message is delivered again only once its previous delivery is over.
              if (prev !== undefined) expect(x.delivery).toBe(prev.delivery + 1);
              holder.set(k, { delivery: x.delivery, deadline: x.deadline });
            }
          }
          const len = m.length();
          if (m.waitingPops > 0) expect(len.available).toBe(0);
          const s = m.snapshot();
          const low = m.lowWater();
          for (const [seq2] of s.fresh) expect(low).toBeLessThanOrEqual(seq2);
          for (const [seq2] of s.elements) expect(low).toBeLessThanOrEqual(seq2);
          for (const [seq2] of s.dead) expect(low).toBeLessThanOrEqual(seq2);
          expect(len.total).toBe(
            s.fresh.reduce((n, [, next, end]) => n + end - next, 0) +
              s.elements.length +
              s.dead.length,
          );
        }
      }),
      { numRuns: 40 },
    );
  });

  it("continues from a snapshot exactly as the machine that took it", () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 40, maxLength: 200, size: "max" }),
        fc.nat(),
        (ops, cut) => {
          const k = cut % ops.length;
          const steps: { seq: number; rec: QueueRecord | null; effects: Effect[] }[] = [];
          let snap: ShardSnapshot | undefined;
          const m = new ShardMachine(CONFIG);
          const d = new Driver();
          ops.forEach((op, i) => {
            const rec = viaBytes(d.record(op));
            const seq = (d.seq += 1);
            if (op.op === "pop") d.ownerOf.set(seq, op.c);
            const effects = m.apply(seq, rec);
            d.observe(effects);
            steps.push({ seq, rec, effects });
            if (i === k) snap = JSON.parse(JSON.stringify(m.snapshot())) as ShardSnapshot;
          });
          const finalSnap = m.snapshot();
          const restored = ShardMachine.restore(CONFIG, snap!);
          expect(restored.snapshot()).toEqual(snap);
          for (const s of steps.slice(k + 1))
            expect(restored.apply(s.seq, s.rec)).toEqual(s.effects);
          expect(restored.snapshot()).toEqual(finalSnap);
          expect(restored.lowWater()).toBe(m.lowWater());
          expect(restored.length()).toEqual(m.length());
        },
      ),
      { numRuns: 150 },
    );
  });

  it("names one pop's owner for each due checkpoint, the same for every reader", () => {
    const m = new ShardMachine(CONFIG);
    const dues: number[] = [];
    for (let seq = 1; seq <= 200; seq++) {
      m.apply(
        seq,
        seq % 2 === 0
          ? { type: "pop", at: seq, consumer: "c", max: 1, visibilityMs: 10, waitMs: 0, acks: [] }
          : { type: "push", at: seq, messages: [{ json: false, data: new Uint8Array(1) }] },
      );
      const due = m.checkpointDuePop;
      if (due !== null && dues[dues.length - 1] !== due) dues.push(due);
      // The owner writes it at once, every other time (the rest: an owner that died).
      if (due === seq && seq % 4 === 0) {
        m.apply(++seq, {
          type: "checkpoint",
          at: seq,
          asOf: seq - 1,
          trimBelow: m.lowWater(),
          stateJson: "{}",
        });
        expect(m.checkpointDuePop).toBe(null);
      }
    }
    expect(dues.length).toBeGreaterThan(3);
    expect(dues.every((s) => s % 2 === 0)).toBe(true); // always a pop
  });

  it("rejects bytes that are not a queue record instead of throwing", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeRecord(bytes);
        if (r !== null) expect(decodeRecord(encodeRecord(r))).toEqual(r);
      }),
      { numRuns: 500 },
    );
    expect(decodeRecord(new Uint8Array(0))).toBe(null);
  });
});
