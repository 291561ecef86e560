/**
 * The order in which an instance applies its requests, and what a transaction's request
 * does, without I/O. Every executor computes the same answers from the same log, so racing
 * executors agree, and the conditional append of each result settles which one writes it.
 *
 * Order: requests apply in inbox order, except that while a transaction holds the
 * instance's lock, requests that are not that transaction's wait (are deferred); when the
 * lock goes, the deferred ones come first, oldest first. A prepare of another transaction
 * meeting the lock follows wait-die: an older transaction waits, a younger one dies at once
 * (its vote is "died", a retryable outcome), so transactions never wait in a cycle.
 */
import type { LockState, RequestRecord, ResultRecord } from "./records.js";

/** What an executor knows after the newest result (or before the first). */
export interface Applied {
  readonly j: number;
  readonly state: ResultRecord["state"];
  readonly lock: LockState | null;
  readonly cursor: number;
  readonly deferred: readonly number[];
}

export const NOTHING_APPLIED: Applied = {
  j: -1,
  state: undefined,
  lock: null,
  cursor: 0,
  deferred: [],
};

export function appliedOf(r: ResultRecord | undefined): Applied {
  if (r === undefined) return NOTHING_APPLIED;
  return {
    j: r.j,
    ...(r.state === undefined ? { state: undefined } : { state: r.state }),
    lock: r.lock,
    cursor: r.cursor,
    deferred: r.deferred,
  };
}

export type Request = RequestRecord & { readonly seqnum: number };

/** How a request meets the instance's lock. */
export type Admission = "apply" | "defer" | "die";

export function admission(lock: LockState | null, r: Request): Admission {
  if (lock === null) return "apply";
  if (r.txn?.id === lock.txn) return "apply";
  if (r.txn?.op === "prepare") {
    // Wait-die: the older waits, the younger dies (ties by id, so both sides agree).
    const older = r.txn.ts < lock.ts || (r.txn.ts === lock.ts && r.txn.id < lock.txn);
    return older ? "defer" : "die";
  }
  // Commits and aborts of other transactions hold no lock here: nothing to wait for.
  if (r.txn?.op === "commit" || r.txn?.op === "abort") return "apply";
  return "defer";
}

/**
 * The next request to apply: the first deferred one that is now admitted, else the first
 * inbox request from the cursor that is; `candidates` are the deferred requests (in
 * order) followed by inbox requests from the cursor (in order). Returns the request, with
 * the cursor and deferred list the result will carry; or "wait" when none is admitted (all
 * wait for the lock), with the deferred list grown by the inbox requests seen.
 */
export function nextToApply(
  a: Applied,
  deferredReqs: readonly Request[],
  inbox: readonly Request[],
  deferredMax: number = Number.POSITIVE_INFINITY,
):
  | {
      readonly t: "apply";
      readonly r: Request;
      /** "die": a younger transaction's prepare (wait-die); "busy": no room to defer it. */
      readonly verdict: "run" | "die" | "busy";
      readonly cursor: number;
      readonly deferred: number[];
    }
  | { readonly t: "wait"; readonly cursor: number; readonly deferred: number[] }
  | { readonly t: "idle" } {
  const stillDeferred: number[] = [];
  for (const d of deferredReqs) {
    const how = admission(a.lock, d);
    if (how === "defer") {
      stillDeferred.push(d.seqnum);
      continue;
    }
    const deferred = a.deferred.filter((s) => s !== d.seqnum);
    return { t: "apply", r: d, verdict: how === "die" ? "die" : "run", cursor: a.cursor, deferred };
  }
  let cursor = a.cursor;
  const newlyDeferred: number[] = [];
  for (const r of inbox) {
    if (r.seqnum < cursor) continue;
    const how = admission(a.lock, r);
    cursor = r.seqnum + 1;
    const deferred = [...a.deferred, ...newlyDeferred];
    if (how === "defer") {
      // With no room left to wait, the request fails at once (OBJECT_BUSY) instead.
      if (deferred.length >= deferredMax)
        return { t: "apply", r, verdict: "busy", cursor, deferred };
      newlyDeferred.push(r.seqnum);
      continue;
    }
    return { t: "apply", r, verdict: how === "die" ? "die" : "run", cursor, deferred };
  }
  if (a.deferred.length === 0 && newlyDeferred.length === 0) return { t: "idle" };
  return { t: "wait", cursor, deferred: [...a.deferred, ...newlyDeferred] };
}
