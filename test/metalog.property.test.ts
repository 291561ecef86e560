/**
 * The cut rule and the metalog state, driven by random storage progress. Storage nodes
 * report per-shard progress that only grows, but reports arrive repeated, late and out of
 * order, and nodes that are not replicas of a shard report too. Entries cut at random
 * points are delivered to several metalog replicas, some of them receiving entries
 * duplicated and out of order, and every replica must end with the same numbering as a
 * model that lays the cuts end to end, shard after shard in ascending order.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CutBuilder, MetalogState, type MetalogEntry } from "../src/log/metalog.js";
import { InvariantViolation } from "../src/log/assert.js";
import type { LogId, SeqNum, ShardId } from "../src/log/types.js";

const STORAGES: readonly string[] = ["s0", "s1", "s2", "s3", "s4"];
const LOG = 3 as LogId;
/** A shard id no configuration has; reports for it must be ignored. */
const UNKNOWN_SHARD = 9_999;

type Config = ReadonlyMap<number, readonly string[]>;

/** 1-5 shards of one term, each with 1-3 replicas. Shard ids carry the term, as views do. */
function configArb(term: number): fc.Arbitrary<Config> {
  return fc
    .uniqueArray(fc.nat(99), { minLength: 1, maxLength: 5 })
    .chain((ids) =>
      fc
        .tuple(...ids.map(() => fc.shuffledSubarray([...STORAGES], { minLength: 1, maxLength: 3 })))
        .map(
          (replicas) =>
            new Map(
              ids.map((id, i): [number, readonly string[]] => [term * 100 + id, replicas[i]!]),
            ),
        ),
    );
}

type Event =
  | {
      readonly kind: "report";
      /** Which shard reports; an index past the last shard reports for an unknown shard. */
      readonly shardIx: number;
      /** Which of the shard's replicas reports, unless `stranger` is set. */
      readonly replicaIx: number;
      /** When set, a storage node that need not replicate the shard reports instead. */
      readonly stranger: number | null;
      /** advance: report more than before (or the same, if inc is 0); stale: resend an old value. */
      readonly how: "advance" | "stale";
      readonly inc: number;
      readonly pick: number;
    }
  | { readonly kind: "cut" };

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("report" as const),
      shardIx: fc.nat(5),
      replicaIx: fc.nat(2),
      stranger: fc.oneof(
        { weight: 5, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.nat(STORAGES.length - 1) },
      ),
      how: fc.constantFrom("advance" as const, "advance" as const, "stale" as const),
      inc: fc.nat(4),
      pick: fc.nat(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "cut" as const }) },
);

/**
 * Feeds `events` to a fresh CutBuilder and returns the entries it cut, checking each cut
 * against the cut rule: a shard's end is the minimum over its replicas of the most each
 * reported, and an entry appears exactly when some shard advanced.
 */
function runTerm(
  term: number,
  config: Config,
  events: readonly Event[],
  startPosition: number,
  startSeqnum: number,
): MetalogEntry[] {
  const builder = new CutBuilder(LOG, term, config, startPosition, startSeqnum);
  const shardIds = [...config.keys()];
  const sent = new Map<string, number[]>();
  const highest = new Map<string, number>();
  const cutEnds = new Map<number, number>();
  const entries: MetalogEntry[] = [];
  let position = startPosition;
  let seqnum = startSeqnum;

  const rule = (shard: number): number =>
    Math.min(...config.get(shard)!.map((r) => highest.get(`${r}/${shard}`) ?? 0));

  const cut = (): void => {
    const entry = builder.cut();
    const advanced = shardIds.filter((s) => rule(s) > (cutEnds.get(s) ?? 0));
    if (advanced.length === 0) {
      expect(entry).toBeNull();
      return;
    }
    expect(entry).not.toBeNull();
    const e = entry!;
    expect(e.log).toBe(LOG);
    expect(e.term).toBe(term);
    expect(e.position).toBe(position);
    expect(e.startSeqnum).toBe(seqnum);
    const listed = e.cut.map(([s]) => s);
    expect(listed).toEqual([...listed].sort((a, b) => a - b));
    for (const s of advanced) expect(listed).toContain(s);
    let count = 0;
    for (const [shard, end] of e.cut) {
      expect(config.has(shard)).toBe(true);
      // Safety: never order a record that some replica of its shard may not hold.
      expect(end).toBeLessThanOrEqual(rule(shard));
      // Progress: order everything that every replica holds.
      expect(end).toBe(rule(shard));
      count += end - (cutEnds.get(shard) ?? 0);
      cutEnds.set(shard, end);
    }
    entries.push(e);
    position += 1;
    seqnum += count;
  };

  for (const ev of events) {
    if (ev.kind === "cut") {
      cut();
      continue;
    }
    const shard = ev.shardIx < shardIds.length ? shardIds[ev.shardIx]! : UNKNOWN_SHARD;
    const replicas = config.get(shard) ?? STORAGES;
    const storage =
      ev.stranger === null ? replicas[ev.replicaIx % replicas.length]! : STORAGES[ev.stranger]!;
    const key = `${storage}/${shard}`;
    const history = sent.get(key) ?? [];
    sent.set(key, history);
    let held: number;
    if (ev.how === "advance" || history.length === 0) {
      held = (history.at(-1) ?? 0) + ev.inc;
      history.push(held);
    } else {
      held = history[ev.pick % history.length]!;
    }
    builder.report(storage, shard, held);
    if (config.get(shard)?.includes(storage) === true)
      highest.set(key, Math.max(highest.get(key) ?? 0, held));
  }
  cut();
  // Everything every replica reported is ordered now.
  for (const s of shardIds) expect(cutEnds.get(s) ?? 0).toBe(rule(s));
  return entries;
}

/** The numbering the entries define, computed independently: seqnum → (shard, local id). */
function modelNumbering(
  entries: readonly MetalogEntry[],
): Array<{ shard: number; localId: number }> {
  const ends = new Map<number, number>();
  const out: Array<{ shard: number; localId: number }> = [];
  for (const e of entries) {
    expect(e.startSeqnum).toBe(out.length);
    for (const [shard, end] of [...e.cut].sort((a, b) => a[0] - b[0])) {
      for (let l = ends.get(shard) ?? 0; l < end; l++) out.push({ shard, localId: l });
      ends.set(shard, Math.max(end, ends.get(shard) ?? 0));
    }
  }
  return out;
}

/** A metalog replica fed by an unreliable channel: it applies what `check` accepts and buffers early entries. */
class Replica {
  readonly state = new MetalogState();
  private readonly early = new Map<number, MetalogEntry>();

  receive(e: MetalogEntry): void {
    const problem = this.state.check(e);
    if (e.position < this.state.position) {
      expect(problem, "a duplicate entry must be rejected").not.toBeNull();
    } else if (e.position > this.state.position) {
      expect(problem, "an entry from the future must be rejected").not.toBeNull();
      this.early.set(e.position, e);
    } else {
      expect(problem).toBeNull();
      this.state.apply(e);
      let next = this.early.get(this.state.position);
      while (next !== undefined) {
        this.early.delete(next.position);
        expect(this.state.check(next)).toBeNull();
        this.state.apply(next);
        next = this.early.get(this.state.position);
      }
    }
  }
}

/** Entries that must not follow `state`, each with what is wrong with it. */
function badSuccessors(
  state: MetalogState,
  last: MetalogEntry | undefined,
  allShards: readonly number[],
): Array<[string, MetalogEntry]> {
  const base = {
    log: LOG,
    term: state.currentTerm,
    position: state.position as number,
    startSeqnum: state.nextSeqnum as number,
  };
  const bad: Array<[string, MetalogEntry]> = [
    ["an entry from the future", { ...base, position: base.position + 1, cut: [] }],
    ["a start seqnum too high", { ...base, startSeqnum: base.startSeqnum + 1, cut: [] }],
  ];
  if (last !== undefined) bad.push(["the last entry again", last]);
  if (base.startSeqnum > 0)
    bad.push(["a start seqnum too low", { ...base, startSeqnum: base.startSeqnum - 1, cut: [] }]);
  if (state.currentTerm > 0)
    bad.push(["an older term", { ...base, term: state.currentTerm - 1, cut: [] }]);
  const held = allShards.filter((s) => state.shardEnd(s as ShardId) > 0);
  for (const s of held) {
    const end = state.shardEnd(s as ShardId);
    bad.push([`shard ${s} moving backwards`, { ...base, cut: [[s, end - 1]] }]);
    bad.push([`shard ${s} at a fractional end`, { ...base, cut: [[s, end + 0.5]] }]);
    bad.push([
      `shard ${s} listed twice`,
      {
        ...base,
        cut: [
          [s, end],
          [s, end + 1],
        ],
      },
    ]);
  }
  if (allShards.length >= 2) {
    const [a, b] = [...allShards].sort((x, y) => x - y) as [number, number];
    const ea = state.shardEnd(a as ShardId);
    const eb = state.shardEnd(b as ShardId);
    bad.push([
      "shards out of order",
      {
        ...base,
        cut: [
          [b, eb + 1],
          [a, ea + 1],
        ],
      },
    ]);
  }
  return bad;
}

const scenarioArb = fc.record({
  config1: configArb(1),
  events1: fc.array(eventArb, { maxLength: 100, size: "max" }),
  term2: fc.option(
    fc.record({ config: configArb(2), events: fc.array(eventArb, { maxLength: 60, size: "max" }) }),
    {
      nil: undefined,
    },
  ),
  deliveries: fc.array(fc.array(fc.nat(), { maxLength: 40, size: "max" }), {
    minLength: 2,
    maxLength: 3,
  }),
});

describe("CutBuilder and MetalogState", () => {
  it("give every reported record exactly one seqnum, gap-free from 0, identical on every replica whatever the delivery order, with every cut at the minimum over the shard's replicas", () => {
    fc.assert(
      fc.property(scenarioArb, ({ config1, events1, term2, deliveries }) => {
        // The primary's own replica applies entries as they are cut, which is where a new
        // term's sequencer learns its starting position and seqnum.
        const primary = new MetalogState();
        const entries = runTerm(1, config1, events1, 0, 0);
        for (const e of entries) primary.apply(e);
        const configs: Config[] = [config1];
        if (term2 !== undefined) {
          const more = runTerm(2, term2.config, term2.events, primary.position, primary.nextSeqnum);
          for (const e of more) {
            const applied = primary.apply(e);
            // Spans of an entry tile its seqnums in ascending shard order.
            let cursor = e.startSeqnum;
            for (const span of applied.spans) {
              expect(span.startSeqnum).toBe(cursor);
              cursor += span.toLocal - span.fromLocal;
            }
            expect(applied.endSeqnum).toBe(cursor);
          }
          entries.push(...more);
          configs.push(term2.config);
        }

        // Entries are consecutive and their seqnum ranges are laid end to end.
        entries.forEach((e, i) => expect(e.position).toBe(i));
        const numbering = modelNumbering(entries);
        const total = numbering.length;

        const replicas = deliveries.map((picks) => {
          const r = new Replica();
          for (const p of picks) if (entries.length > 0) r.receive(entries[p % entries.length]!);
          for (const e of [...entries].reverse()) r.receive(e);
          for (const e of entries) r.receive(e);
          return r.state;
        });
        const states = [primary, ...replicas];

        const allShards = configs.flatMap((c) => [...c.keys()]);
        for (const state of states) {
          expect(state.position).toBe(entries.length);
          expect(state.nextSeqnum).toBe(total);
          expect(state.currentTerm).toBe(entries.at(-1)?.term ?? 0);
          // Every seqnum maps to the model's (shard, local id), on every replica.
          for (let s = 0; s < total; s++) {
            const loc = state.locate(s as SeqNum);
            const want = numbering[s]!;
            if (loc?.shard !== want.shard || loc.localId !== want.localId)
              expect({ seqnum: s, loc }).toEqual({ seqnum: s, loc: want });
          }
          expect(state.locate(total as SeqNum)).toBeNull();
          expect(state.locate((total + 7) as SeqNum)).toBeNull();
        }

        // Every (shard, local id) below the shard's end has exactly one seqnum, and no
        // seqnum names anything else.
        const seen = new Map<string, number>();
        for (let s = 0; s < total; s++) {
          const loc = primary.locate(s as SeqNum)!;
          const key = `${loc.shard}/${loc.localId}`;
          expect(seen.has(key), `${key} has two seqnums`).toBe(false);
          seen.set(key, s);
        }
        let covered = 0;
        for (const shard of allShards) {
          const end = primary.shardEnd(shard as ShardId);
          for (const st of replicas) expect(st.shardEnd(shard as ShardId)).toBe(end);
          for (let l = 0; l < end; l++) {
            const s = seen.get(`${shard}/${l}`);
            expect(s, `${shard}/${l} has no seqnum`).toBeDefined();
            expect(primary.locate(s! as SeqNum)).toEqual({ shard, localId: l });
          }
          covered += end;
        }
        expect(covered).toBe(total);

        // check rejects what does not follow, and apply refuses it without changing state.
        for (const [what, bad] of badSuccessors(primary, entries.at(-1), allShards)) {
          expect(primary.check(bad), what).not.toBeNull();
          expect(() => primary.apply(bad), what).toThrow(InvariantViolation);
          expect(primary.position).toBe(entries.length);
          expect(primary.nextSeqnum).toBe(total);
        }
        // A continuation that moves no shard is accepted, so check does not reject everything.
        const keep: MetalogEntry = {
          log: LOG,
          term: primary.currentTerm,
          position: primary.position,
          startSeqnum: primary.nextSeqnum,
          cut: [...allShards]
            .sort((a, b) => a - b)
            .map((s): [number, number] => [s, primary.shardEnd(s as ShardId)]),
        };
        expect(primary.check(keep)).toBeNull();
      }),
      { numRuns: 250 },
    );
  });

  it("continues numbering across terms: a term-2 builder starts at the term-1 state's position and next seqnum, and term-1 entries are refused afterwards", () => {
    const state = new MetalogState();
    const t1 = new CutBuilder(
      LOG,
      1,
      new Map([
        [100, ["s0", "s1"]],
        [101, ["s1"]],
      ]),
      0,
      0,
    );
    t1.report("s0", 100, 3);
    t1.report("s1", 100, 2);
    t1.report("s1", 101, 1);
    const e1 = t1.cut()!;
    expect(e1.cut).toEqual([
      [100, 2],
      [101, 1],
    ]);
    state.apply(e1);
    expect(state.nextSeqnum).toBe(3);

    const t2 = new CutBuilder(LOG, 2, new Map([[200, ["s2"]]]), state.position, state.nextSeqnum);
    t2.report("s2", 200, 2);
    const e2 = t2.cut()!;
    expect(e2).toEqual({ log: LOG, term: 2, position: 1, startSeqnum: 3, cut: [[200, 2]] });
    state.apply(e2);
    expect(state.locate(3 as SeqNum)).toEqual({ shard: 200, localId: 0 });
    expect(state.locate(4 as SeqNum)).toEqual({ shard: 200, localId: 1 });
    expect(state.locate(2 as SeqNum)).toEqual({ shard: 101, localId: 0 });
    expect(state.shardEnd(100 as ShardId)).toBe(2);

    // The sealed term-1 sequencer must not append after term 2 started.
    t1.report("s0", 100, 5);
    t1.report("s1", 100, 5);
    const late = { ...t1.cut()!, position: state.position, startSeqnum: state.nextSeqnum };
    expect(state.check(late)).toMatch(/older/);
  });

  it("ignores reports from storage nodes that are not replicas of the shard and for unknown shards", () => {
    const b = new CutBuilder(LOG, 1, new Map([[1, ["s0", "s1"]]]), 0, 0);
    b.report("s2", 1, 10);
    b.report("s0", 2, 10);
    expect(b.cut()).toBeNull();
    b.report("s0", 1, 4);
    expect(b.cut()).toBeNull();
    b.report("s1", 1, 3);
    b.report("s1", 1, 1);
    expect(b.cut()?.cut).toEqual([[1, 3]]);
  });
});
