/**
 * Scenarios that run the same way against any cluster, in-process or as real processes:
 * they only use LogBook handles.
 */
import { expect } from "vitest";
import type { LogBook } from "../../src/log/api.js";

export type BookOn = (engine: number, book: number, position?: number) => LogBook;

export interface Acked {
  book: number;
  seqnum: number;
  payload: string;
}

/** Concurrent appends through every engine to several books; returns what was acknowledged. */
export async function appendConcurrently(
  bookOn: BookOn,
  engines: number,
  books: number[],
  writers: number,
  perWriter: number,
): Promise<Acked[]> {
  const acked: Acked[] = [];
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const book = books[w % books.length]!;
      const b = bookOn(w % engines, book);
      for (let k = 0; k < perWriter; k++) {
        const payload = `w${w}-${k}`;
        acked.push({ book, seqnum: await b.append([], payload), payload });
      }
    }),
  );
  return acked;
}

async function readBook(b: LogBook): Promise<Array<{ seqnum: number; payload: string }>> {
  const out: Array<{ seqnum: number; payload: string }> = [];
  for (let r = await b.readNext(0, 0); r !== null; r = await b.readNext(0, r.seqnum + 1)) {
    out.push({ seqnum: r.seqnum, payload: Buffer.from(r.data).toString() });
  }
  return out;
}

/**
 * Every engine returns the same order for every book; every acknowledged append is in it
 * exactly once, at its sequence number. `position` must be at or past every acknowledgement.
 */
export async function verifySameOrderEverywhere(
  bookOn: BookOn,
  engines: number,
  books: number[],
  acked: Acked[],
  position: number,
): Promise<void> {
  for (const book of books) {
    const orders = [];
    for (let e = 0; e < engines; e++) orders.push(await readBook(bookOn(e, book, position)));
    for (let e = 1; e < engines; e++) expect(orders[e]).toEqual(orders[0]);
    const order = orders[0]!;
    for (let i = 1; i < order.length; i++)
      expect(order[i]!.seqnum).toBeGreaterThan(order[i - 1]!.seqnum);
    const at = new Map<string, number[]>();
    for (const r of order) at.set(r.payload, [...(at.get(r.payload) ?? []), r.seqnum]);
    for (const a of acked.filter((x) => x.book === book))
      expect(at.get(a.payload)).toEqual([a.seqnum]);
  }
}

/** A write through one engine is read through another at the writer's position, and reads never go back. */
export async function verifyReadYourWritesAcrossEngines(
  bookOn: BookOn,
  book: number,
): Promise<void> {
  const writer = bookOn(0, book);
  const seqnum = await writer.append([], "ryw");
  const reader = bookOn(1, book, writer.position);
  expect((await reader.checkTail(0))?.seqnum).toBe(seqnum);
  const later = await writer.append([], "ryw-2");
  const moved = bookOn(1, book, Math.max(reader.position, writer.position));
  expect((await moved.checkTail(0))?.seqnum).toBe(later);
  expect((await bookOn(0, book, moved.position).checkTail(0))?.seqnum).toBe(later);
}
