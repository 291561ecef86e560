/**
 * Branded ids and positions of the log, with validating parsers. A brand keeps a sequence
 * number from being passed where a book id or a metalog position is expected.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/**
 * A record's position in its physical log. Sequence numbers are safe integers that only
 * grow, across terms too: a new term continues from where the sealed one ended, so no
 * term field is needed and 2^53 positions outlast any realistic lifetime (285 years at a
 * million appends per second). In JSON a sequence number is a decimal string.
 */
export type SeqNum = Brand<number, "SeqNum">;
/** A 64-bit tag. Tag 0 means "every record of the book". */
export type Tag = Brand<bigint, "Tag">;
/** A 32-bit unsigned book id. */
export type BookId = Brand<number, "BookId">;
/** The number of metalog entries a reader has seen; reads wait until the index has applied as many. */
export type MetalogPosition = Brand<number, "MetalogPosition">;
/** Index of a physical log. */
export type LogId = Brand<number, "LogId">;
/** A shard of a physical log: the records appended by one engine in one term. */
export type ShardId = Brand<number, "ShardId">;

export const SEQNUM_MIN = 0 as SeqNum;
/** Larger than every sequence number; `readPrev(tag, SEQNUM_MAX)` reads the tail. */
export const SEQNUM_MAX = Number.MAX_SAFE_INTEGER as SeqNum;
export const TAG_ALL = 0n as Tag;
const TAG_MAX = (1n << 64n) - 1n;
const BOOK_ID_MAX = 0xffff_ffff;

export function parseSeqNum(value: unknown, what = "sequence number"): SeqNum {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "bigint") n = Number(value);
  else if (typeof value === "string" && /^(0|[1-9][0-9]{0,15})$/.test(value)) n = Number(value);
  else
    throw new InvalidArgumentError(
      `${what} must be a non-negative integer or decimal string, got ${describe(value)}`,
    );
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidArgumentError(
      `${what} must be an integer in [0, 2^53-1], got ${describe(value)}`,
    );
  }
  return (n + 0) as SeqNum; // + 0 turns -0 into 0
}

export function seqnumToJSON(seqnum: SeqNum): string {
  return String(seqnum);
}

export function parseTag(value: unknown, what = "tag"): Tag {
  let t: bigint;
  if (typeof value === "bigint") t = value;
  else if (typeof value === "number" && Number.isSafeInteger(value)) t = BigInt(value);
  else if (typeof value === "string" && /^(0|[1-9][0-9]{0,19})$/.test(value)) t = BigInt(value);
  else
    throw new InvalidArgumentError(
      `${what} must be a 64-bit unsigned integer (bigint, safe integer or decimal string), got ${describe(value)}`,
    );
  if (t < 0n || t > TAG_MAX) {
    throw new InvalidArgumentError(`${what} must be in [0, 2^64-1], got ${t}`);
  }
  return t as Tag;
}

export function parseBookId(value: unknown, what = "book id"): BookId {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^(0|[1-9][0-9]{0,9})$/.test(value)) n = Number(value);
  else
    throw new InvalidArgumentError(
      `${what} must be a 32-bit unsigned integer, got ${describe(value)}`,
    );
  if (!Number.isInteger(n) || n < 0 || n > BOOK_ID_MAX) {
    throw new InvalidArgumentError(
      `${what} must be an integer in [0, ${BOOK_ID_MAX}], got ${describe(value)}`,
    );
  }
  return (n + 0) as BookId;
}

export function parseMetalogPosition(value: unknown, what = "metalog position"): MetalogPosition {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `${what} must be a non-negative safe integer, got ${describe(value)}`,
    );
  }
  return value as MetalogPosition;
}

/**
 * A stable 64-bit tag for a name: the first 8 bytes of its SHA-256. Never 0, since tag 0
 * is reserved for the whole book.
 */
export function tagOf(name: string): Tag {
  if (typeof name !== "string" || name.length === 0) {
    throw new InvalidArgumentError(`tagOf needs a non-empty string, got ${describe(name)}`);
  }
  const t = createHash("sha256").update(name, "utf8").digest().readBigUInt64BE(0);
  return (t === 0n ? 1n : t) as Tag;
}

export function describe(value: unknown): string {
  if (typeof value === "string")
    return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
  if (typeof value === "bigint") return `${value}n`;
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Uint8Array) return `a ${value.constructor.name}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "function") return "a function";
  return String(value as number | boolean | symbol | undefined); // eslint-disable-line @typescript-eslint/no-unnecessary-type-assertion
}
