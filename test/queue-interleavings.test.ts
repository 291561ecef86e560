// The real queue library over an embedded log, with every log operation of producers and
// consumers started in an order fast-check picks (its scheduler): consumers in several
// processes (caches) never receive one message twice while nothing times out, receive
// messages in push order, and together receive every message; with consumers that stop
// without acking, the messages they held come back and every message is acked exactly once.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedLog, type LogBook } from "../src/index.js";
import { openQueue, QueueCache, type Message } from "../src/queue/index.js";
import { tempDir } from "./helpers/tmp.js";

let log: EmbeddedLog;
let tmp: ReturnType<typeof tempDir>;
let run = 0;

beforeAll(async () => {
  tmp = tempDir("boki-queue-il-");
  log = await EmbeddedLog.open({ dir: tmp.dir });
});
afterAll(async () => {
  await log.close();
  tmp.remove();
});

/** A LogBook whose operations start only when the scheduler says so. */
function scheduled(s: fc.Scheduler, b: LogBook, who: string): LogBook {
  return new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) =>
        s
          .schedule(Promise.resolve(), `${who} ${String(prop)}`)
          .then(() => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    },
  });
}

interface Delivered {
  readonly consumer: number;
  readonly popSeq: number;
  readonly message: Message;
}

const shape = fc.record({
  producers: fc.integer({ min: 1, max: 3 }),
  perProducer: fc.integer({ min: 1, max: 6 }),
  consumers: fc.integer({ min: 1, max: 4 }),
  /** Consumers c and c+1 share a process (cache) when c is even and this is true. */
  sharedCaches: fc.boolean(),
  rounds: fc.integer({ min: 1, max: 6 }),
  max: fc.integer({ min: 1, max: 3 }),
  shards: fc.constantFrom(1, 1, 2),
  /** Messages pushed before the consumers start (the rest race them). */
  prepushed: fc.integer({ min: 0, max: 8 }),
});

describe("queue under generated interleavings", () => {
  it("concurrent consumers receive disjoint messages, in push order, and all of them", async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), shape, async (s, o) => {
        const name = `il-${++run}`;
        const book = 7;
        const clock = (): number => 1_000_000;
        const caches = Array.from({ length: o.consumers }, () => new QueueCache());
        const cacheOf = (c: number): QueueCache =>
          o.sharedCaches && c % 2 === 1 ? caches[c - 1]! : caches[c]!;
        const setup = await openQueue(log.book(book), name, { shards: o.shards });
        const pushed = new Set<string>();
        for (let i = 0; i < o.prepushed; i++) {
          await setup.push(`pre:${i}`, { shard: i % o.shards });
          pushed.add(`pre:${i}`);
        }
        const delivered: Delivered[] = [];
        const producers = Array.from({ length: o.producers }, async (_, p) => {
          const q = await openQueue(scheduled(s, log.book(book), `p${p}`), name, { clock });
          for (let i = 0; i < o.perProducer; i++) {
            await q.push(`${p}:${i}`, { shard: i % o.shards });
            pushed.add(`${p}:${i}`);
          }
        });
        const consumers = Array.from({ length: o.consumers }, async (_, c) => {
          const q = await openQueue(scheduled(s, log.book(book), `c${c}`), name, {
            clock,
            cache: cacheOf(c),
          });
          let held: string[] = [];
          for (let r = 0; r < o.rounds; r++) {
            const got = await q.pop({
              consumer: `c${c}`,
              max: o.max,
              visibilityMs: 3_600_000,
              ack: held,
              shard: c % o.shards,
            });
            if (held.length > 0) expect(got.acks).toEqual({ accepted: held.length, rejected: [] });
            for (const m of got.messages)
              delivered.push({ consumer: c, popSeq: got.popSeq!, message: m });
            held = got.messages.map((m) => m.receipt);
          }
          if (held.length > 0) expect((await q.ack(held)).accepted).toBe(held.length);
        });
        await s.waitFor(Promise.all([...producers, ...consumers]));

        // Drain what is left, unscheduled.
        const drain = await openQueue(log.book(book), name);
        for (let shard = 0; shard < o.shards; shard++) {
          for (;;) {
            const got = await drain.pop({ consumer: "drain", max: 100, shard });
            if (got.messages.length === 0) break;
            for (const m of got.messages)
              delivered.push({ consumer: -1, popSeq: got.popSeq!, message: m });
          }
        }
        const values = delivered.map((d) => d.message.value as string);
        expect(new Set(values).size).toBe(values.length); // nothing twice
        expect(new Set(values)).toEqual(pushed); // nothing lost
        expect(delivered.every((d) => d.message.delivery === 1)).toBe(true);
        // In log order of the pops, each shard's messages go out in push order.
        for (let shard = 0; shard < o.shards; shard++) {
          const seqs = delivered
            .filter((d) => d.message.shard === shard)
            .sort((a, b) => a.popSeq - b.popSeq || a.message.seqnum - b.message.seqnum)
            .map((d) => d.message.seqnum);
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        }
      }),
      { numRuns: 25 },
    );
  });

  it("messages held by consumers that stop come back after the visibility timeout; each is acked once", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.record({
          messages: fc.integer({ min: 1, max: 10 }),
          consumers: fc.integer({ min: 2, max: 4 }),
          /** After how many pops each consumer stops for good, without acking what it holds. */
          stopAfter: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 4, maxLength: 4 }),
          max: fc.integer({ min: 1, max: 3 }),
        }),
        async (s, o) => {
          const name = `crash-${++run}`;
          const book = 8;
          let now = 5_000_000;
          const clock = (): number => now;
          const setup = await openQueue(log.book(book), name, { clock, maxDeliveries: 100 });
          await setup.pushMany(Array.from({ length: o.messages }, (_, i) => i));
          const acked = new Map<number, number>();
          const lastDelivery = new Map<number, number>();
          const consumers = Array.from({ length: o.consumers }, async (_, c) => {
            const q = await openQueue(scheduled(s, log.book(book), `c${c}`), name, {
              clock,
              cache: new QueueCache(),
            });
            for (let r = 0; r < o.stopAfter[c]!; r++) {
              const got = await q.pop({ consumer: `c${c}`, max: o.max, visibilityMs: 1000 });
              for (const m of got.messages) {
                const v = m.value as number;
                expect(acked.has(v)).toBe(false); // never delivered after its ack
                expect(m.delivery).toBeGreaterThan(lastDelivery.get(v) ?? 0);
                lastDelivery.set(v, m.delivery);
              }
              // Consumers with an even index ack; the others keep what they hold and stop.
              if (c % 2 === 0 && got.messages.length > 0) {
                const res = await q.ack(got.messages.map((m) => m.receipt));
                expect(res.accepted).toBe(got.messages.length);
                for (const m of got.messages)
                  acked.set(m.value as number, (acked.get(m.value as number) ?? 0) + 1);
              }
            }
          });
          await s.waitFor(Promise.all(consumers));
          // Time passes: everything still held comes back to the next consumer.
          now += 1001;
          const rescuer = await openQueue(log.book(book), name, { clock });
          for (;;) {
            const got = await rescuer.pop({ consumer: "rescue", max: 100 });
            if (got.messages.length === 0) break;
            for (const m of got.messages) {
              const v = m.value as number;
              expect(acked.has(v)).toBe(false);
              expect(m.delivery).toBeGreaterThan(lastDelivery.get(v) ?? 0);
            }
            const res = await rescuer.ack(got.messages.map((m) => m.receipt));
            expect(res.accepted).toBe(got.messages.length);
            for (const m of got.messages)
              acked.set(m.value as number, (acked.get(m.value as number) ?? 0) + 1);
          }
          expect([...acked.keys()].sort((a, b) => a - b)).toEqual(
            Array.from({ length: o.messages }, (_, i) => i),
          );
          expect([...acked.values()].every((n) => n === 1)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });
});
