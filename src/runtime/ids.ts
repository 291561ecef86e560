/**
 * Ids of the runtime: invocation ids, function names, idempotency keys, and the books a
 * function may use. Each has a validating parser, so a malformed one is a clear error at
 * the edge instead of a surprise deeper in.
 */
import { randomFillSync } from "node:crypto";
import { parseBookId, describe, type BookId } from "../log/types.js";
import { InvocationError } from "./errors.js";
import { FUNCTION_NAME_CHARS_MAX, IDEMPOTENCY_KEY_CHARS_MAX } from "./limits.js";

declare const brand: unique symbol;

/**
 * An invocation id. A top-level invocation gets 22 random base64url characters; an id
 * derived inside an invocation (a nested invocation's, or `ctx.newId()`) is the parent's id
 * followed by `.` and a counter, so the same handler run again derives the same ids.
 */
export type InvocationId = string & { readonly [brand]: "InvocationId" };

/**
 * The book the runtime keeps its invocation records in (the largest book id). Functions
 * and `X-Boki-Book` may not use it.
 */
export const SYSTEM_BOOK = 0xffff_ffff as BookId;

const INVOCATION_ID = /^[A-Za-z0-9_-]{1,64}(?:\.[0-9]{1,10}){0,32}$/;
const FUNCTION_NAME = new RegExp(`^[A-Za-z_][A-Za-z0-9_.-]{0,${FUNCTION_NAME_CHARS_MAX - 1}}$`);
const IDEMPOTENCY_KEY = new RegExp(`^[\\x21-\\x7e]{1,${IDEMPOTENCY_KEY_CHARS_MAX}}$`);

/** Random bytes drawn for ids in one batch (16 per id): one system call per 256 ids. */
const ID_POOL_BYTES = 16 * 256;
const idPool = Buffer.alloc(ID_POOL_BYTES);
let idPoolAt = ID_POOL_BYTES;

export function newInvocationId(): InvocationId {
  if (idPoolAt >= ID_POOL_BYTES) {
    randomFillSync(idPool);
    idPoolAt = 0;
  }
  const id = idPool.toString("base64url", idPoolAt, idPoolAt + 16);
  idPoolAt += 16;
  return id as InvocationId;
}

/** The `n`-th id derived within invocation `parent`. */
export function childId(parent: InvocationId, n: number): InvocationId {
  return `${parent}.${n}` as InvocationId;
}

export function parseInvocationId(value: unknown): InvocationId {
  if (typeof value !== "string" || !INVOCATION_ID.test(value)) {
    throw new InvocationError("INVALID_ARGUMENT", `not an invocation id: ${describe(value)}`);
  }
  return value as InvocationId;
}

export function isFunctionName(value: unknown): value is string {
  return typeof value === "string" && FUNCTION_NAME.test(value);
}

export function parseFunctionName(value: unknown): string {
  if (!isFunctionName(value)) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `a function name is 1 to ${FUNCTION_NAME_CHARS_MAX} characters: a letter or _ then letters, digits, _, . or -; got ${describe(value)}`,
    );
  }
  return value;
}

/** An `Idempotency-Key`: 1 to 256 visible ASCII characters. */
export function parseIdempotencyKey(value: unknown): string {
  if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `an idempotency key is 1 to ${IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters, got ${describe(value)}`,
    );
  }
  return value;
}

/** A book a function may use: any 32-bit book id but the system book. */
export function parseUserBook(value: unknown, what = "book"): BookId {
  let book: BookId;
  try {
    book = parseBookId(value, what);
  } catch (err) {
    throw new InvocationError("INVALID_ARGUMENT", (err as Error).message);
  }
  if (book === SYSTEM_BOOK) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `${what} ${SYSTEM_BOOK} is reserved for the runtime's invocation records`,
    );
  }
  return book;
}
