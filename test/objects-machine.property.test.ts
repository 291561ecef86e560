/**
 * The order in which an instance applies its requests (objects/machine.ts), driven by
 * random arrivals of plain requests and transactions, against the rules it must keep.
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  appliedOf,
  NOTHING_APPLIED,
  nextToApply,
  type Applied,
  type Request,
} from "../src/objects/machine.js";
import type { LockState, ResultRecord } from "../src/objects/records.js";

interface Txn {
  readonly id: string;
  readonly ts: number;
  readonly commits: boolean;
}

type Arrival =
  | { readonly kind: "plain"; readonly n: number }
  | { readonly kind: "prepare" | "end"; readonly txn: Txn };

describe("the order an instance applies requests in", () => {
  test("applies every request once; none but a transaction's own while it holds the lock; plain ones in inbox order; wait-die never waits for a younger one", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12 }),
        fc.array(fc.record({ ts: fc.integer({ min: 0, max: 50 }), commits: fc.boolean() }), {
          maxLength: 6,
        }),
        fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
        fc.integer({ min: 1, max: 30 }),
        (plains, txnSpecs, choices, deferredMax) => {
          const txns: Txn[] = txnSpecs.map((t, i) => ({
            id: `T${i}`,
            ts: t.ts,
            commits: t.commits,
          }));
          // Arrivals not yet appended: plain requests and prepares, in a random order; a
          // transaction's end arrives only after its prepare's result (its vote).
          const waiting: Arrival[] = [
            ...Array.from({ length: plains }, (_, n) => ({ kind: "plain" as const, n })),
            ...txns.map((txn) => ({ kind: "prepare" as const, txn })),
          ];
          const inbox: Request[] = [];
          const applied = new Map<number, { lock: LockState | null; verdict: string }>();
          const appliedOrder: Request[] = [];
          let last: ResultRecord | undefined;
          let seq = 1;
          let pick = 0;
          const choose = (n: number): number => (choices[pick++ % choices.length]! + pick) % n;
          for (let step = 0; step < 2000; step++) {
            const a: Applied = last === undefined ? NOTHING_APPLIED : appliedOf(last);
            const deferredReqs = a.deferred.map((s) => inbox.find((r) => r.seqnum === s)!);
            const next = nextToApply(a, deferredReqs, inbox, deferredMax);
            const canArrive = waiting.length > 0;
            if (next.t !== "apply" && !canArrive) break;
            if (canArrive && (next.t !== "apply" || choose(3) === 0)) {
              const [arr] = waiting.splice(choose(waiting.length), 1);
              const r: Request =
                arr!.kind === "plain"
                  ? {
                      v: 1,
                      k: "req",
                      id: `p${arr!.n}`,
                      handler: "h",
                      input: null,
                      at: 0,
                      seqnum: seq,
                    }
                  : {
                      v: 1,
                      k: "req",
                      id: `${arr!.txn.id}:${arr!.kind}`,
                      handler: "h",
                      input: null,
                      at: 0,
                      seqnum: seq,
                      txn: {
                        id: arr!.txn.id,
                        ts: arr!.txn.ts,
                        op:
                          arr!.kind === "prepare"
                            ? "prepare"
                            : arr!.txn.commits
                              ? "commit"
                              : "abort",
                      },
                    };
              seq += 1 + choose(3);
              inbox.push(r);
              continue;
            }
            if (next.t !== "apply") break;
            const r = next.r;
            expect(applied.has(r.seqnum), `request ${r.id} applied twice`).toBe(false);
            // While a lock is held, only its transaction's requests run; others die (younger prepares) or wait.
            if (a.lock !== null && next.verdict === "run" && r.txn?.id !== a.lock.txn) {
              expect(
                r.txn?.op === "commit" || r.txn?.op === "abort",
                `${r.id} ran under ${a.lock.txn}'s lock`,
              ).toBe(true);
            }
            if (next.verdict === "die") {
              expect(a.lock).not.toBeNull();
              expect(
                r.txn!.ts > a.lock!.ts || (r.txn!.ts === a.lock!.ts && r.txn!.id > a.lock!.txn),
                `${r.id} died under an older... or younger lock`,
              ).toBe(true);
            }
            let lock = a.lock;
            if (next.verdict === "run" && r.txn?.op === "prepare")
              lock = { txn: r.txn.id, ts: r.txn.ts, messages: [] };
            if (
              next.verdict === "run" &&
              (r.txn?.op === "commit" || r.txn?.op === "abort") &&
              a.lock?.txn === r.txn.id
            )
              lock = null;
            applied.set(r.seqnum, { lock, verdict: next.verdict });
            appliedOrder.push(r);
            last = {
              v: 1,
              k: "res",
              j: a.j + 1,
              id: r.id,
              req: r.seqnum,
              at: 0,
              outcome: { ok: true, value: null },
              lock,
              cursor: next.cursor,
              deferred: next.deferred,
            };
            // The coordinator sends the transaction's end once it has the vote.
            if (r.txn?.op === "prepare") {
              const txn = txns.find((t) => t.id === r.txn!.id)!;
              waiting.push({
                kind: "end",
                txn: next.verdict === "run" ? txn : { ...txn, commits: false },
              });
            }
          }
          expect(waiting).toEqual([]);
          expect(applied.size, "every request is applied").toBe(inbox.length);
          expect(last?.lock ?? null).toBeNull();
          // Plain requests that ran did so in inbox order (refused ones, OBJECT_BUSY, do not run).
          const plainOrder = appliedOrder
            .filter((r) => r.txn === undefined && applied.get(r.seqnum)!.verdict === "run")
            .map((r) => r.seqnum);
          expect(plainOrder).toEqual([...plainOrder].sort((x, y) => x - y));
        },
      ),
      { numRuns: 300 },
    );
  });
});
