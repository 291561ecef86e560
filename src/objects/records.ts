/**
 * The records of `boki-ts/objects` and their tags (`tagOf("boki-objects/<kind>/<name>")`).
 *
 * An instance (object name, key) has an **inbox** (`inbox/<object>/<key>`): the requests to
 * it, in log order, each also tagged with its id's tag so that a request is appended once
 * (a conditional append at position 0 of `request/...`). Its **results** stream
 * (`results/<object>/<key>`) holds one record per applied request, the j-th a conditional
 * append at position j, carrying the state after it: so the newest result is the instance's
 * state (its checkpoint), and of racing executors one writes each result.
 */
import { tagOf, type JsonValue, type LogRecord, type Tag } from "../index.js";

export const OBJECTS_NAMESPACE = "boki-objects";

function instance(object: string, key: string): string {
  return `${object.length}:${object}/${key}`;
}

export function inboxTag(object: string, key: string): Tag {
  return tagOf(`${OBJECTS_NAMESPACE}/inbox/${instance(object, key)}`);
}
export function resultsTag(object: string, key: string): Tag {
  return tagOf(`${OBJECTS_NAMESPACE}/results/${instance(object, key)}`);
}
export function requestTag(object: string, key: string, id: string): Tag {
  return tagOf(`${OBJECTS_NAMESPACE}/request/${instance(object, key)}/${id}`);
}
export function resultOfTag(object: string, key: string, id: string): Tag {
  return tagOf(`${OBJECTS_NAMESPACE}/result/${instance(object, key)}/${id}`);
}

export interface ErrorInfo {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
}

export type Outcome =
  | { readonly ok: true; readonly value: JsonValue }
  | { readonly ok: false; readonly error: ErrorInfo };

/** A transaction's part in a request (2PC over 2PL). */
export interface TxnPart {
  readonly id: string;
  /** Its start time (wait-die: the older of two transactions waits, the younger dies). */
  readonly ts: number;
  readonly op: "prepare" | "commit" | "abort";
  /**
   * For a prepare: applied after this (ms since the epoch) it votes TIMEOUT and locks
   * nothing, so a coordinator that heard no vote can abort once it has passed.
   */
  readonly deadline?: number;
}

/** A message a handler sent, dispatched when its request's result is logged (or its transaction commits). */
export interface Message {
  readonly object: string;
  readonly key: string;
  readonly handler: string;
  readonly input: JsonValue;
  readonly id: string;
  /** Deliver no earlier than this (ms since the epoch). */
  readonly notBefore?: number;
}

export interface RequestRecord {
  readonly v: 1;
  readonly k: "req";
  readonly id: string;
  readonly handler: string;
  readonly input: JsonValue;
  readonly at: number;
  readonly txn?: TxnPart;
}

/** A lock a prepared transaction holds on the instance, with what it would commit. */
export interface LockState {
  readonly txn: string;
  readonly ts: number;
  /** The state the transaction would commit (undefined: cleared). */
  readonly state?: JsonValue;
  readonly messages: readonly Message[];
}

export interface ResultRecord {
  readonly v: 1;
  readonly k: "res";
  /** Its position in the results stream. */
  readonly j: number;
  /** The request it applied: its id and inbox seqnum. */
  readonly id: string;
  readonly req: number;
  readonly at: number;
  readonly outcome: Outcome;
  /** The committed state after it (absent: no state). */
  readonly state?: JsonValue;
  readonly lock: LockState | null;
  /** The next inbox seqnum not yet looked at. */
  readonly cursor: number;
  /** Inbox requests seen but waiting for the lock to go, oldest first. */
  readonly deferred: readonly number[];
}

export type ObjectRecord = RequestRecord | ResultRecord;

export class CorruptObjectRecordError extends Error {
  readonly code = "CORRUPT_RECORD";
  constructor(message: string) {
    super(message);
    this.name = "CorruptObjectRecordError";
  }
}

export function encodeRecord(r: ObjectRecord): string {
  return JSON.stringify(r);
}

export function decodeRecord<R extends ObjectRecord>(
  r: LogRecord,
  kind: R["k"],
): R & { seqnum: number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(r.data).toString("utf8"));
  } catch {
    throw new CorruptObjectRecordError(`record ${r.seqnum} under an objects tag is not JSON`);
  }
  const o = parsed as { v?: unknown; k?: unknown } | null;
  if (o === null || typeof o !== "object" || o.v !== 1 || o.k !== kind) {
    throw new CorruptObjectRecordError(
      `record ${r.seqnum} under an objects tag is not a ${kind} record`,
    );
  }
  return { ...(parsed as R), seqnum: r.seqnum };
}
