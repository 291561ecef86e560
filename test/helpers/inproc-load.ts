/**
 * Load and the final log check for failure tests on the in-process cluster: appenders on
 * every engine recording what was acknowledged, and a check that every acknowledged append
 * is read exactly once, at its sequence number, in the same order from every live engine.
 */
import { expect } from "vitest";
import type { InProcCluster } from "./inproc-cluster.js";
import { parseBookId } from "../../src/log/types.js";
import { sleep, within } from "./async.js";
import { recoveryTime, type Attempt } from "./attempts.js";

export const LOAD_BOOKS = [1, 2, 3];
/** Bound on stopping the load (an append waits at most the engine's append timeout). */
export const STOP_BOUND_MS = 15_000;

export interface Acked {
  readonly book: number;
  readonly text: string;
  readonly seqnum: bigint;
}

export interface Load {
  readonly acked: Acked[];
  readonly attempts: Attempt[];
  readonly errors: string[];
  /** Time from `killedAt` until every engine of `engines` acknowledged an append issued after it. */
  recovered(killedAt: number, engines: readonly string[]): number | null;
  stop(): Promise<void>;
}

/**
 * Appends from every engine (`appenders` each, round-robin over `LOAD_BOOKS`) until
 * `stop()`; an engine in `dead` stops appending.
 */
export function startLoad(
  c: InProcCluster,
  o: { appenders?: number; dead?: ReadonlySet<string> } = {},
): Load {
  const acked: Acked[] = [];
  const attempts: Attempt[] = [];
  const errors: string[] = [];
  let stopping = false;
  let n = 0;
  const workers = c.engines.flatMap((e, i) =>
    Array.from({ length: o.appenders ?? 1 }, async () => {
      while (!stopping && o.dead?.has(e.id) !== true) {
        const book = LOAD_BOOKS[n % LOAD_BOOKS.length]!;
        const text = `e${i}-${n++}`;
        const a: Attempt = { engine: e.id, startedAt: Date.now(), okAt: null };
        attempts.push(a);
        try {
          const seqnum = await c.book(i, book).append([], text);
          a.okAt = Date.now();
          acked.push({ book, text, seqnum: BigInt(seqnum) });
        } catch (err) {
          errors.push(`${e.id} ${text}: ${(err as Error).message}`);
          await sleep(5);
        }
      }
    }),
  );
  return {
    acked,
    attempts,
    errors,
    recovered: (killedAt, engines) => recoveryTime(attempts, killedAt, engines),
    stop: async () => {
      stopping = true;
      await within("stopping the load", Promise.all(workers), STOP_BOUND_MS);
    },
  };
}

/** Every record of `book` as engine `i` reads it, in order, as of every live engine's position. */
async function readBook(
  c: InProcCluster,
  i: number,
  book: number,
  live: readonly number[],
): Promise<Array<[bigint, string]>> {
  const out: Array<[bigint, string]> = [];
  // Read at the furthest position any live engine has applied: every acknowledged append is there.
  const at = Math.max(...live.map((j) => c.engines[j]!.positionOf(parseBookId(book))));
  const b = c.book(i, book, at);
  let next = 0;
  for (;;) {
    const r = await b.readNext(0, next);
    if (r === null) return out;
    out.push([BigInt(r.seqnum), new TextDecoder().decode(r.data)]);
    next = Number(r.seqnum) + 1;
  }
}

/**
 * Every acknowledged append is read exactly once, at its seqnum, the same way from every
 * engine not in `dead`; no seqnum is given twice; every book got appends.
 */
export async function checkLog(
  c: InProcCluster,
  acked: readonly Acked[],
  dead: ReadonlySet<string> = new Set(),
): Promise<void> {
  const live = c.engines.flatMap((e, i) => (dead.has(e.id) ? [] : [i]));
  for (const book of LOAD_BOOKS) {
    const reads = await Promise.all(live.map((i) => readBook(c, i, book, live)));
    for (const r of reads.slice(1)) expect(r).toEqual(reads[0]);
    const seen = new Map<string, bigint[]>();
    for (const [seqnum, text] of reads[0]!) seen.set(text, [...(seen.get(text) ?? []), seqnum]);
    const seqnums = reads[0]!.map(([s]) => s);
    expect(new Set(seqnums).size).toBe(seqnums.length);
    const mine = acked.filter((x) => x.book === book);
    expect(mine.length).toBeGreaterThan(0);
    for (const a of mine) expect(seen.get(a.text), `record ${a.text}`).toEqual([a.seqnum]);
  }
}
