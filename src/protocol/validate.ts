/**
 * A parser for messages that arrive from outside the process (over TCP). It checks that
 * `t` is a known message type and that every field has the type the union declares, and
 * builds a fresh object with exactly those fields, so a peer cannot smuggle extra
 * properties, prototypes or wrong types into the protocol state machines. It checks shape
 * only: whether a metalog entry follows the previous one is the metalog's business.
 *
 * Every number in the message union is an index, count, id or sequence number, so numbers
 * must be non-negative safe integers.
 */
import type { LogId } from "../log/types.js";
import type { MetalogEntry } from "../log/metalog.js";
import { InvalidArgumentError } from "../log/errors.js";
import {
  CLIENT_OPS,
  INDEX_QUERY_OPS,
  INVOCATION_JSON_CHARS_MAX,
  INVOCATION_NAME_CHARS_MAX,
  TRACEPARENT_CHARS,
  type ClientOp,
  type IndexQueryOp,
  type Message,
  type WireRecord,
} from "./messages.js";

type Fields = Record<string, unknown>;

function bad(t: string, what: string): InvalidArgumentError {
  return new InvalidArgumentError(`message ${JSON.stringify(t)}: ${what}`);
}

function isFields(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function count(t: string, o: Fields, key: string): number {
  const v = o[key];
  if (!isCount(v)) throw bad(t, `${key} must be a non-negative safe integer`);
  return v;
}

/** Buffers become plain Uint8Array views (no copy), the type the message union declares. */
function plainBytes(b: Uint8Array): Uint8Array {
  return b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function bytes(t: string, o: Fields, key: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) throw bad(t, `${key} must be bytes`);
  return plainBytes(v);
}

function bytesOrNull(t: string, o: Fields, key: string): Uint8Array | null {
  return o[key] === null ? null : bytes(t, o, key);
}

function array(t: string, o: Fields, key: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw bad(t, `${key} must be an array`);
  return v;
}

function bytesArray(t: string, o: Fields, key: string): Uint8Array[] {
  return array(t, o, key).map((v, i) => {
    if (!(v instanceof Uint8Array)) throw bad(t, `${key}[${i}] must be bytes`);
    return plainBytes(v);
  });
}

function countArray(t: string, o: Fields, key: string): number[] {
  return array(t, o, key).map((v, i) => {
    if (!isCount(v)) throw bad(t, `${key}[${i}] must be a non-negative safe integer`);
    return v;
  });
}

function pairArray(t: string, o: Fields, key: string): Array<[number, number]> {
  return array(t, o, key).map((v, i) => {
    if (!Array.isArray(v) || v.length !== 2 || !isCount(v[0]) || !isCount(v[1]))
      throw bad(t, `${key}[${i}] must be a pair of non-negative safe integers`);
    return [v[0], v[1]];
  });
}

function metalogEntries(t: string, o: Fields, key: string): MetalogEntry[] {
  return array(t, o, key).map((v, i) => {
    if (!isFields(v)) throw bad(t, `${key}[${i}] must be a metalog entry`);
    const where = `${key}[${i}].`;
    return {
      log: count(t, v, "log") as LogId,
      term: count(t, v, "term"),
      position: count(t, v, "position"),
      startSeqnum: count(t, v, "startSeqnum"),
      cut: pairArray(t + " " + where, v, "cut"),
    };
  });
}

function str(t: string, o: Fields, key: string, maxChars = 64): string {
  const v = o[key];
  if (typeof v !== "string" || v.length > maxChars)
    throw bad(t, `${key} must be a string of at most ${maxChars} characters`);
  return v;
}

function strArray(t: string, o: Fields, key: string): string[] {
  return array(t, o, key).map((v, i) => {
    if (typeof v !== "string" || v.length > 64) throw bad(t, `${key}[${i}] must be a short string`);
    return v;
  });
}

function countOrNull(t: string, o: Fields, key: string): number | null {
  return o[key] === null ? null : count(t, o, key);
}

function clientOp(t: string, o: Fields): ClientOp {
  const v = o["op"];
  if (typeof v !== "string" || !(CLIENT_OPS as readonly string[]).includes(v))
    throw bad(t, `op must be one of ${CLIENT_OPS.join(", ")}`);
  return v as ClientOp;
}

function indexOp(t: string, o: Fields): IndexQueryOp {
  const v = o["op"];
  if (typeof v !== "string" || !(INDEX_QUERY_OPS as readonly string[]).includes(v))
    throw bad(t, `op must be one of ${INDEX_QUERY_OPS.join(", ")}`);
  return v as IndexQueryOp;
}

function wireRecord(t: string, o: Fields): WireRecord | null {
  const v = o["record"];
  if (v === null) return null;
  if (!isFields(v)) throw bad(t, "record must be an object or null");
  return {
    seqnum: count(t, v, "seqnum"),
    book: count(t, v, "book"),
    tags: strArray(t, v, "tags"),
    data: bytes(t, v, "data"),
    auxData: bytesOrNull(t, v, "auxData"),
  };
}

function clientError(t: string, o: Fields): { code: string; message: string } | null {
  const v = o["error"];
  if (v === null) return null;
  if (!isFields(v)) throw bad(t, "error must be an object or null");
  return { code: str(t, v, "code"), message: str(t, v, "message", 4096) };
}

function traceparent(t: string, o: Fields): string {
  const v = o["trace"];
  if (
    typeof v !== "string" ||
    v.length !== TRACEPARENT_CHARS ||
    !/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(v)
  )
    throw bad(t, "trace must be a W3C traceparent");
  return v;
}

type Parsers = { [K in Message["t"]]: (t: K, o: Fields) => Extract<Message, { t: K }> };

// A mapped type over `Message["t"]`, so adding a message type without a parser fails to compile.
const parsers: Parsers = {
  replicate: (t, o) => ({
    t,
    log: count(t, o, "log"),
    shard: count(t, o, "shard"),
    first: count(t, o, "first"),
    records: bytesArray(t, o, "records"),
  }),
  progress: (t, o) => ({
    t,
    log: count(t, o, "log"),
    term: count(t, o, "term"),
    held: pairArray(t, o, "held"),
  }),
  "metalog-replicate": (t, o) => ({
    t,
    log: count(t, o, "log"),
    term: count(t, o, "term"),
    entries: metalogEntries(t, o, "entries"),
  }),
  "metalog-ack": (t, o) => ({
    t,
    log: count(t, o, "log"),
    term: count(t, o, "term"),
    durable: count(t, o, "durable"),
    boot: count(t, o, "boot"),
  }),
  metalog: (t, o) => ({
    t,
    log: count(t, o, "log"),
    entries: metalogEntries(t, o, "entries"),
    tail: count(t, o, "tail"),
    ...(o["term"] === undefined ? {} : { term: count(t, o, "term") }),
  }),
  "metalog-fetch": (t, o) => ({ t, log: count(t, o, "log"), from: count(t, o, "from") }),
  "index-data": (t, o) => ({
    t,
    log: count(t, o, "log"),
    shard: count(t, o, "shard"),
    first: count(t, o, "first"),
    headers: bytesArray(t, o, "headers"),
  }),
  "shard-end-query": (t, o) => ({ t, log: count(t, o, "log"), shard: count(t, o, "shard") }),
  "shard-end": (t, o) => ({
    t,
    log: count(t, o, "log"),
    shard: count(t, o, "shard"),
    end: count(t, o, "end"),
  }),
  "replica-fetch": (t, o) => ({
    t,
    log: count(t, o, "log"),
    shard: count(t, o, "shard"),
    from: count(t, o, "from"),
    to: count(t, o, "to"),
  }),
  "index-fetch": (t, o) => ({
    t,
    log: count(t, o, "log"),
    shard: count(t, o, "shard"),
    from: count(t, o, "from"),
    to: count(t, o, "to"),
  }),
  read: (t, o) => ({
    t,
    id: count(t, o, "id"),
    log: count(t, o, "log"),
    seqnum: count(t, o, "seqnum"),
  }),
  "read-reply": (t, o) => ({
    t,
    id: count(t, o, "id"),
    record: bytesOrNull(t, o, "record"),
    aux: bytesOrNull(t, o, "aux"),
  }),
  "set-aux": (t, o) => ({
    t,
    log: count(t, o, "log"),
    seqnum: count(t, o, "seqnum"),
    data: bytes(t, o, "data"),
  }),
  delete: (t, o) => ({ t, log: count(t, o, "log"), seqnums: countArray(t, o, "seqnums") }),
  "client-request": (t, o) => ({
    t,
    id: count(t, o, "id"),
    op: clientOp(t, o),
    book: count(t, o, "book"),
    position: count(t, o, "position"),
    tags: strArray(t, o, "tags"),
    data: bytes(t, o, "data"),
    tag: str(t, o, "tag"),
    seqnum: count(t, o, "seqnum"),
    timeoutMs: count(t, o, "timeoutMs"),
    condTag: str(t, o, "condTag"),
    condPosition: count(t, o, "condPosition"),
  }),
  "index-query": (t, o) => ({
    t,
    id: count(t, o, "id"),
    log: count(t, o, "log"),
    op: indexOp(t, o),
    book: count(t, o, "book"),
    tag: str(t, o, "tag"),
    seqnum: count(t, o, "seqnum"),
    position: count(t, o, "position"),
    timeoutMs: count(t, o, "timeoutMs"),
  }),
  "index-reply": (t, o) => ({
    t,
    id: count(t, o, "id"),
    seqnum: countOrNull(t, o, "seqnum"),
    position: count(t, o, "position"),
    failedAt: countOrNull(t, o, "failedAt"),
    error: clientError(t, o),
  }),
  "client-reply": (t, o) => ({
    t,
    id: count(t, o, "id"),
    position: count(t, o, "position"),
    seqnum: countOrNull(t, o, "seqnum"),
    record: wireRecord(t, o),
    error: clientError(t, o),
  }),
  "invoke-request": (t, o) => ({
    t,
    id: count(t, o, "id"),
    name: str(t, o, "name", INVOCATION_NAME_CHARS_MAX),
    input: str(t, o, "input", INVOCATION_JSON_CHARS_MAX),
    book: count(t, o, "book"),
    position: count(t, o, "position"),
    invocationId: str(t, o, "invocationId", INVOCATION_NAME_CHARS_MAX),
    timeoutMs: count(t, o, "timeoutMs"),
    ...(o["trace"] === undefined ? {} : { trace: traceparent(t, o) }),
  }),
  "invoke-reply": (t, o) => ({
    t,
    id: count(t, o, "id"),
    position: count(t, o, "position"),
    output: o["output"] === null ? null : str(t, o, "output", INVOCATION_JSON_CHARS_MAX),
    error: clientError(t, o),
  }),
};

/** The message types, for validation and tests. */
export const MESSAGE_TYPES: readonly Message["t"][] = Object.keys(parsers) as Message["t"][];

export function isMessageType(t: unknown): t is Message["t"] {
  return typeof t === "string" && Object.hasOwn(parsers, t);
}

/**
 * Checks that `value` (decoded from the wire) is a message and returns a fresh copy holding
 * only the declared fields. Throws `InvalidArgumentError` saying what is wrong.
 */
export function parseMessage(value: unknown): Message {
  if (!isFields(value)) throw new InvalidArgumentError("a message must be an object");
  const t = value["t"];
  if (!isMessageType(t))
    throw new InvalidArgumentError(
      `unknown message type ${typeof t === "string" ? JSON.stringify(t) : `of type ${typeof t}`}`,
    );
  // The cast pairs each type with its own parser; `Parsers` checks each parser's result.
  return (parsers[t] as (t: Message["t"], o: Fields) => Message)(t, value);
}
