/**
 * The commit decision state machine against its specification, on random logs: answers
 * in random order, random decisions known in advance (checkpoints, caches), random tag
 * collisions and foreign records. No I/O: the log is an array.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CommitDecider, type DeciderRecord } from "../src/store/decider.js";
import { FollowerState } from "../src/store/follower.js";
import type { Op } from "../src/store/ops.js";
import type { CommitInfo, StoreRecord } from "../src/store/records.js";

const OBJECTS = ["a", "b", "c", "d"] as const;

interface Entry {
  readonly rec: DeciderRecord;
  /** The sub-streams the record is in (its tags). */
  readonly tags: ReadonlySet<string>;
}

type Gen =
  | { kind: "write"; object: number; extraTag: number | null }
  | { kind: "commit"; back: number; writes: number[]; reads: number[]; extraTag: number | null }
  | { kind: "other"; tag: number };

const objectIx = fc.integer({ min: 0, max: OBJECTS.length - 1 });
const genEntry: fc.Arbitrary<Gen> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      object: objectIx,
      extraTag: fc.option(objectIx),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("commit" as const),
      back: fc.integer({ min: 1, max: 12 }),
      writes: fc.uniqueArray(objectIx, { minLength: 1, maxLength: 3 }),
      reads: fc.uniqueArray(objectIx, { maxLength: 3 }),
      extraTag: fc.option(objectIx),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("other" as const), tag: objectIx }) },
);

function buildLog(gens: readonly Gen[]): Entry[] {
  return gens.map((g, seqnum): Entry => {
    switch (g.kind) {
      case "write": {
        const o = OBJECTS[g.object]!;
        const tags = new Set([o]);
        if (g.extraTag !== null) tags.add(OBJECTS[g.extraTag]!); // a tag collision
        return { rec: { kind: "write", seqnum, objects: [o] }, tags };
      }
      case "commit": {
        const writes = g.writes.map((i) => OBJECTS[i]!);
        const checks = [...new Set([...writes, ...g.reads.map((i) => OBJECTS[i]!)])];
        const info: CommitInfo = {
          seqnum,
          snapshot: Math.max(-1, seqnum - g.back),
          writes,
          checks,
        };
        const tags = new Set(writes);
        if (g.extraTag !== null) tags.add(OBJECTS[g.extraTag]!);
        return { rec: { kind: "commit", seqnum, info, decision: undefined }, tags };
      }
      case "other":
        return { rec: { kind: "other", seqnum }, tags: new Set([OBJECTS[g.tag]!]) };
    }
  });
}

/** The specification, by plain recursion over the log. */
function reference(log: readonly Entry[]): Map<number, boolean> {
  const memo = new Map<number, boolean>();
  const committed = (c: number): boolean => {
    const known = memo.get(c);
    if (known !== undefined) return known;
    const e = log[c]!.rec;
    if (e.kind !== "commit") throw new Error("not a commit");
    let ok = true;
    for (const k of e.info.checks) {
      for (let s = e.info.snapshot + 1; s < c && ok; s++) {
        const r = log[s]!.rec;
        if (r.kind === "write" && r.objects.includes(k)) ok = false;
        if (r.kind === "commit" && r.info.writes.includes(k) && committed(s)) ok = false;
      }
    }
    memo.set(c, ok);
    return ok;
  };
  log.forEach((e, i) => {
    if (e.rec.kind === "commit") committed(i);
  });
  return memo;
}

function readNext(log: readonly Entry[], object: string, from: number): Entry | null {
  for (let s = Math.max(0, from); s < log.length; s++) if (log[s]!.tags.has(object)) return log[s]!;
  return null;
}

interface RunResult {
  done: boolean | undefined;
  failed: boolean;
  decided: Map<number, boolean>;
}

/** Drives the machine over the array log, answering outstanding reads in the order `pick` says. */
function run(
  log: readonly Entry[],
  root: number,
  pick: () => number,
  hint: (seqnum: number) => "cache" | "aux" | "none",
  truth: Map<number, boolean>,
  recordsWalkedMax = 100_000,
): RunResult {
  const e = log[root]!.rec;
  if (e.kind !== "commit") throw new Error("root is not a commit");
  const m = new CommitDecider(e.info, {
    recordsWalkedMax,
    decisionsPendingMax: 10_000,
    known: (s) => (hint(s) === "cache" ? truth.get(s) : undefined),
  });
  const decided = new Map<number, boolean>();
  const queue: Array<{ id: number; object: string; fromSeqnum: number }> = [];
  let done: boolean | undefined;
  let failed = false;
  const take = (out: ReturnType<CommitDecider["start"]>): void => {
    for (const d of out.decided) {
      expect(decided.has(d.seqnum)).toBe(false);
      decided.set(d.seqnum, d.committed);
    }
    if (out.done !== undefined) done = out.done.committed;
    if (out.failed !== undefined) failed = true;
    queue.push(...out.reads);
  };
  take(m.start());
  let steps = 0;
  while (queue.length > 0 && done === undefined && !failed) {
    if (++steps > 100_000) throw new Error("the machine does not finish");
    const [q] = queue.splice(pick() % queue.length, 1);
    const found = readNext(log, q!.object, q!.fromSeqnum);
    let rec: DeciderRecord | null = found?.rec ?? null;
    if (rec?.kind === "commit" && hint(rec.seqnum) === "aux") {
      rec = { ...rec, decision: truth.get(rec.seqnum) };
    }
    take(m.onRead(q!.id, rec));
  }
  return { done, failed, decided };
}

const hintArb = fc.func(
  fc.constantFrom("cache" as const, "aux" as const, "none" as const, "none" as const),
);

describe("commit decision (state machine)", () => {
  it("decides every commit record as the specification does, whatever the answer order and hints", () => {
    fc.assert(
      fc.property(
        fc.array(genEntry, { minLength: 1, maxLength: 40 }),
        fc.infiniteStream(fc.nat()),
        hintArb,
        (gens, picks, hintFn) => {
          const log = buildLog(gens);
          const truth = reference(log);
          const it = picks[Symbol.iterator]();
          const pick = (): number => it.next().value as number;
          for (const [c, expected] of truth) {
            const hint = (s: number): "cache" | "aux" | "none" => (s === c ? "none" : hintFn(s));
            const r = run(log, c, pick, hint, truth);
            expect(r.failed).toBe(false);
            expect(r.done).toBe(expected);
            // Everything it decided on the way is right too.
            for (const [s, d] of r.decided) expect(d).toBe(truth.get(s));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("reports a conflict that names a committed write between snapshot and commit", () => {
    fc.assert(
      fc.property(fc.array(genEntry, { minLength: 1, maxLength: 30 }), (gens) => {
        const log = buildLog(gens);
        const truth = reference(log);
        for (const [c, expected] of truth) {
          if (expected) continue;
          const e = log[c]!.rec;
          if (e.kind !== "commit") continue;
          const m = new CommitDecider(e.info, { recordsWalkedMax: 1e6, decisionsPendingMax: 1e6 });
          let out = m.start();
          const queue = [...out.reads];
          while (out.done === undefined) {
            const q = queue.shift()!;
            out = m.onRead(q.id, readNext(log, q.object, q.fromSeqnum)?.rec ?? null);
            queue.push(...out.reads);
          }
          const conflict = out.done.conflict!;
          expect(conflict.seqnum).toBeGreaterThan(e.info.snapshot);
          expect(conflict.seqnum).toBeLessThan(c);
          expect(e.info.checks).toContain(conflict.object);
          const w = log[conflict.seqnum]!.rec;
          expect(
            w.kind === "write" || (w.kind === "commit" && truth.get(conflict.seqnum) === true),
          ).toBe(true);
        }
      }),
      { numRuns: 100 },
    );
  });

  it("with a small recordsWalkedMax it fails or decides correctly, never wrongly", () => {
    fc.assert(
      fc.property(
        fc.array(genEntry, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 8 }),
        (gens, max) => {
          const log = buildLog(gens);
          const truth = reference(log);
          let n = 0;
          for (const [c, expected] of truth) {
            const r = run(
              log,
              c,
              () => n++,
              () => "none",
              truth,
              max,
            );
            if (!r.failed) expect(r.done).toBe(expected);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("ignores answers after it finished, and answers to unknown reads", () => {
    const info: CommitInfo = { seqnum: 5, snapshot: 1, writes: ["a"], checks: ["a", "b"] };
    const m = new CommitDecider(info, { recordsWalkedMax: 10, decisionsPendingMax: 10 });
    const out = m.start();
    expect(out.reads.map((r) => [r.object, r.fromSeqnum])).toEqual([
      ["a", 2],
      ["b", 2],
    ]);
    const first = m.onRead(out.reads[0]!.id, { kind: "write", seqnum: 3, objects: ["a"] });
    expect(first.done).toEqual({
      seqnum: 5,
      committed: false,
      conflict: { object: "a", seqnum: 3 },
    });
    expect(m.onRead(out.reads[1]!.id, null)).toEqual({ reads: [], decided: [] });
    expect(m.onRead(999, null)).toEqual({ reads: [], decided: [] });
  });

  it("a follower decides what it can locally, the same way, and vouches only for unchanged values", () => {
    const op: Op = { t: "set", p: ["x"], v: 1 };
    const asStore = (rec: DeciderRecord): StoreRecord => {
      switch (rec.kind) {
        case "write":
          return { kind: "write", seqnum: rec.seqnum, object: rec.objects[0]!, ops: [op] };
        case "commit":
          return {
            kind: "commit",
            seqnum: rec.seqnum,
            info: rec.info,
            ops: new Map(rec.info.writes.map((w) => [w, [op]])),
          };
        default:
          return { kind: "other", seqnum: rec.seqnum };
      }
    };
    fc.assert(
      fc.property(
        fc.array(genEntry, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: -1, max: 20 }),
        fc.integer({ min: 1, max: 5 }),
        fc.infiniteStream(fc.nat()),
        (gens, start, objectsMax, picks) => {
          const log = buildLog(gens);
          const truth = reference(log);
          const f = new FollowerState(start, objectsMax);
          const it = picks[Symbol.iterator]();
          let local = 0;
          for (const e of log) {
            if (e.rec.seqnum <= start) continue;
            let step = f.apply(asStore(e.rec));
            if (step.kind === "needs-decision")
              step = f.apply(asStore(e.rec), truth.get(e.rec.seqnum));
            else if (e.rec.kind === "commit") local++;
            if (e.rec.kind === "commit") {
              expect(step.kind).toBe("applied");
              if (step.kind === "applied") expect(step.decision).toBe(truth.get(e.rec.seqnum));
            }
            // Vouching: the value as of an object's last committed write at or before some
            // point x, confirmed at x, stands at `at` exactly when nothing committed since.
            const o = OBJECTS[(it.next().value as number) % OBJECTS.length]!;
            const committedWrites = log
              .filter((r) => r.rec.seqnum <= f.position)
              .filter((r) =>
                r.rec.kind === "write"
                  ? r.rec.objects.includes(o)
                  : r.rec.kind === "commit" &&
                    r.rec.info.writes.includes(o) &&
                    truth.get(r.rec.seqnum) === true,
              )
              .map((r) => r.rec.seqnum);
            const x = start + ((it.next().value as number) % (f.position - start + 1));
            const t = Math.max(-1, ...committedWrites.filter((w) => w <= x));
            const at = x + ((it.next().value as number) % (f.position - x + 1));
            const unchanged = !committedWrites.some((w) => w > t && w <= at);
            if (f.vouches(o, t, x, at)) expect(unchanged).toBe(true);
            // With room for every object it vouches for every value unchanged up to its position.
            const current = !committedWrites.some((w) => w > t);
            if (objectsMax >= OBJECTS.length) expect(f.vouches(o, t, x, at)).toBe(current);
          }
          // Following from the start with room for every object, it never needs the log.
          const commits = log.filter((e) => e.rec.kind === "commit").length;
          if (start === -1 && objectsMax >= OBJECTS.length) expect(local).toBe(commits);
        },
      ),
      { numRuns: 300 },
    );
  });
});
