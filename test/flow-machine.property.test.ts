/** The recovery task's decisions (flow/machine.ts), against simple models. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  foldIntents,
  gcReadFrom,
  gcWalk,
  RESUME_MARGIN_MS,
  resumeDecision,
  SCAN_STATE_EMPTY,
  SLEEP_RESUME_GRACE_MS,
} from "../src/flow/machine.js";
import type { Known } from "../src/flow/records.js";

/** A book's intents: starts and ends of instances 0..n-1, each end after its start. */
const intentsArb = fc
  .array(fc.record({ ends: fc.boolean(), gcAt: fc.integer({ min: 0, max: 100 }) }), {
    maxLength: 30,
  })
  .chain((instances) => {
    const events = instances.flatMap<[string, number]>((inst, i) =>
      inst.ends
        ? [
            ["s", i],
            ["e", i],
          ]
        : [["s", i]],
    );
    return fc
      .shuffledSubarray(events, { minLength: events.length, maxLength: events.length })
      .map((order) => {
        // Put each end after its start, keeping the shuffled order otherwise.
        const started = new Set<number>();
        const out: Array<[string, number]> = [];
        const held: number[] = [];
        for (const [k, i] of order) {
          if (k === "s") {
            started.add(i);
            out.push([k, i]);
            for (const h of held.filter((x) => x === i)) out.push(["e", h]);
            held.splice(0, held.length, ...held.filter((x) => x !== i));
          } else if (started.has(i)) out.push([k, i]);
          else held.push(i);
        }
        return out.map(([k, i], n): Known => ({
          seqnum: 10 + 2 * n,
          rec:
            k === "s"
              ? {
                  v: 1,
                  k: "start",
                  at: n,
                  wf: "w",
                  id: `i${i}`,
                  input: null,
                  timeoutMs: 1000,
                  retentionMs: 10,
                }
              : {
                  v: 1,
                  k: "end",
                  at: n,
                  id: `i${i}`,
                  status: "succeeded",
                  gcAt: instances[i]!.gcAt,
                  ok: true,
                  value: null,
                },
        }));
      });
  });

describe("the recovery task's decisions", () => {
  test("folding intents in any number of slices leaves exactly the started, unended instances pending", () => {
    fc.assert(
      fc.property(
        intentsArb,
        fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 5 }),
        (intents, cuts) => {
          let state = SCAN_STATE_EMPTY;
          let at = 0;
          for (const c of [...cuts, intents.length]) {
            state = foldIntents(state, intents.slice(at, at + c), 1000).state;
            at = Math.min(intents.length, at + c);
          }
          state = foldIntents(state, intents, 1000).state; // a re-read of old records changes nothing
          const model = new Set<string>();
          for (const k of intents) {
            if (k.rec.k === "start") model.add(k.rec.id);
            if (k.rec.k === "end") model.delete(k.rec.id);
          }
          expect(new Set(state.pending.map((p) => p[0]))).toEqual(model);
          expect(state.cursor).toBe(
            intents.length === 0 ? 0 : intents[intents.length - 1]!.seqnum + 1,
          );
        },
      ),
    );
  });

  test("at most pendingMax instances are tracked, and the cursor stops before the first it cannot take", () => {
    fc.assert(
      fc.property(intentsArb, fc.integer({ min: 0, max: 5 }), (intents, max) => {
        const { state, blocked } = foldIntents(SCAN_STATE_EMPTY, intents, max);
        expect(state.pending.length).toBeLessThanOrEqual(max);
        if (blocked) {
          const next = intents.find((k) => k.seqnum >= state.cursor)!;
          expect(next.rec.k).toBe("start");
        }
      }),
    );
  });

  test("the garbage collector trims every due end once, each retention class up to its first end not yet due", () => {
    fc.assert(
      fc.property(
        intentsArb,
        fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 5 }),
        (intents, nows, budget) => {
          // Runs at rising times, each with a trim budget, reading from where the last stopped.
          let s = SCAN_STATE_EMPTY;
          const trimmed: string[] = [];
          let now = 0;
          for (const step of nows) {
            now += step;
            for (let run = 0; run < 40; run++) {
              const w = gcWalk(s, intents, now, budget);
              trimmed.push(...w.trim.map((t) => t.id));
              s = { ...s, gc: w.gc, gcFloor: w.gcFloor };
              if (w.trim.length < budget) break;
            }
            // Model: within a class (one retention) ends are trimmed in log order, up to the first not due.
            const expected: string[] = [];
            const stoppedClasses = new Set<number>();
            for (const k of intents) {
              if (k.rec.k !== "end") continue;
              const cls = k.rec.gcAt - k.rec.at;
              if (stoppedClasses.has(cls)) continue;
              if (k.rec.gcAt > now) stoppedClasses.add(cls);
              else expected.push(k.rec.id);
            }
            expect(new Set(trimmed)).toEqual(new Set(expected));
            expect(trimmed.length).toBe(new Set(trimmed).size);
          }
        },
      ),
    );
  });

  test("while no retention class is due, the collector reads nothing it has read before", () => {
    fc.assert(
      fc.property(intentsArb, (intents) => {
        const farFuture = 1e12;
        const w = gcWalk(SCAN_STATE_EMPTY, intents, 0);
        const s = { ...SCAN_STATE_EMPTY, gc: w.gc, gcFloor: w.gcFloor };
        // Every end's gcAt (0..100) lies before farFuture, so this is the state before any is due:
        const notDue = gcWalk(SCAN_STATE_EMPTY, intents, -1);
        const sleeping = { ...SCAN_STATE_EMPTY, gc: notDue.gc, gcFloor: notDue.gcFloor };
        expect(gcReadFrom(sleeping, -1)).toBe(notDue.gcFloor);
        expect(notDue.trim).toEqual([]);
        // Once due, the classes wake and start where they stopped.
        expect(gcReadFrom(sleeping, farFuture)).toBeLessThanOrEqual(notDue.gcFloor);
        expect(gcReadFrom(s, 0)).toBeLessThanOrEqual(w.gcFloor);
      }),
    );
  });

  test("an instance is resumed only once no execution can be alive, or its sleep is over", () => {
    const last = { v: 1, k: "step", at: 1000, name: "a", ok: true, value: null } as const;
    const tail = { id: "i", workflow: "w", last, timeoutMs: 5000 };
    expect(resumeDecision(tail, 1000 + 5000 + RESUME_MARGIN_MS - 1, undefined).t).toBe("wait");
    expect(resumeDecision(tail, 1000 + 5000 + RESUME_MARGIN_MS, undefined).t).toBe("resume");
    // Not again before the resumed execution's own time limit has passed.
    expect(resumeDecision(tail, 20_000, 19_000).t).toBe("wait");
    const sleeping = { ...tail, last: { v: 1, k: "sleep", at: 1000, until: 50_000 } as const };
    expect(resumeDecision(sleeping, 50_000 + SLEEP_RESUME_GRACE_MS - 1, undefined).t).toBe("wait");
    expect(resumeDecision(sleeping, 50_000 + SLEEP_RESUME_GRACE_MS, undefined).t).toBe("resume");
    const ended = {
      ...tail,
      last: {
        v: 1,
        k: "end",
        at: 1,
        id: "i",
        status: "failed",
        gcAt: 9,
        ok: false,
        error: { name: "E", message: "m" },
      } as const,
    };
    expect(resumeDecision(ended, 0, undefined).t).toBe("done");
  });
});
