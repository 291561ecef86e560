import type { BookId, LogId } from "./types.js";
import { invariant } from "./assert.js";

/**
 * Which physical log holds a book. A fixed multiplicative hash of the book id onto the
 * physical logs, so that consecutive and strided book ids spread out. The count of
 * physical logs is fixed for the life of a cluster: changing it would move books between
 * logs and break their order.
 */
export function logOfBook(book: BookId, physicalLogs: number): LogId {
  invariant(
    Number.isInteger(physicalLogs) && physicalLogs >= 1,
    "physicalLogs must be a positive integer",
  );
  if (physicalLogs === 1) return 0 as LogId;
  const h = Math.imul(book, 0x9e3779b1) >>> 0;
  // Take the product's high bits: its low bits depend only on the book's low bits, so
  // `h % physicalLogs` would put every even book on log 0 of 2. Exact below 2^21 logs.
  return Math.floor((h * physicalLogs) / 2 ** 32) as LogId;
}
