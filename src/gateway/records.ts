/**
 * Invocation records: how the gateway keeps requests and results in the log, so that
 * asynchronous invocations survive restarts and idempotency keys hold across them.
 *
 * Every record lives in the system book (`SYSTEM_BOOK`, 4294967295) and is one JSON object
 * (UTF-8) with `v: 1` and a `type`:
 *
 *   request     {"v":1,"type":"request","id","fn","book","mode":"async"|"sync","at",
 *                 "key"?,"fp"?,"position"?,"input":<the input>}
 *   result      {"v":1,"type":"result","id","ok":true,"at","output":<the output>}
 *               {"v":1,"type":"result","id","ok":false,"at","error":{"code","message"}}
 *   checkpoint  {"v":1,"type":"checkpoint","lowWater":"<seqnum>","at"}
 *
 * Tags (each `tagOf` of the string shown):
 *
 *   "boki/invocation/<id>"            the invocation's request, then its result. The result is
 *                                     a conditional append at position 1 of this sub-stream,
 *                                     so an invocation has at most one result even when two
 *                                     runs of it race.
 *   "boki/recorded"                   every request and result: recovery scans it.
 *   "boki/idempotency/<book>/<key>"   the request that claimed the key: a conditional append at
 *                                     position 0, so one request wins a key.
 *   "boki/checkpoint"                 where the next recovery scan may start.
 */
import { createHash } from "node:crypto";
import { tagOf, type Tag } from "../log/types.js";
import type { InvocationErrorJSON } from "../runtime/errors.js";
import type { InvocationId } from "../runtime/ids.js";

export const RECORD_VERSION = 1;

export const RECORDED_TAG: Tag = tagOf("boki/recorded");
export const CHECKPOINT_TAG: Tag = tagOf("boki/checkpoint");

export function invocationTag(id: InvocationId): Tag {
  return tagOf(`boki/invocation/${id}`);
}

export function idempotencyTag(book: number, key: string): Tag {
  return tagOf(`boki/idempotency/${book}/${key}`);
}

/** Identifies what a request asks for, so a reused idempotency key can be told apart. */
export function fingerprint(fn: string, book: number, inputJson: string): string {
  return createHash("sha256").update(`${fn}\n${book}\n${inputJson}`).digest("hex").slice(0, 32);
}

export type InvocationMode = "async" | "sync";

export interface RequestRecord {
  readonly v: 1;
  readonly type: "request";
  readonly id: InvocationId;
  readonly fn: string;
  readonly book: number;
  readonly mode: InvocationMode;
  readonly at: number;
  readonly key?: string;
  readonly fp?: string;
  readonly position?: number;
  readonly input: unknown;
}

export type ResultRecord =
  | {
      readonly v: 1;
      readonly type: "result";
      readonly id: InvocationId;
      readonly ok: true;
      readonly at: number;
      readonly output: unknown;
    }
  | {
      readonly v: 1;
      readonly type: "result";
      readonly id: InvocationId;
      readonly ok: false;
      readonly at: number;
      readonly error: InvocationErrorJSON;
    };

export interface CheckpointRecord {
  readonly v: 1;
  readonly type: "checkpoint";
  readonly lowWater: string;
  readonly at: number;
}

export type InvocationRecord = RequestRecord | ResultRecord | CheckpointRecord;

/** The request record's text; `inputJson` is spliced in as it is (it is JSON already). */
export function encodeRequest(
  r: Omit<RequestRecord, "v" | "type" | "input">,
  inputJson: string,
): string {
  const head = JSON.stringify({ v: RECORD_VERSION, type: "request", ...r });
  return `${head.slice(0, -1)},"input":${inputJson}}`;
}

export function encodeResult(
  id: InvocationId,
  at: number,
  outcome: { ok: true; outputJson: string } | { ok: false; error: InvocationErrorJSON },
): string {
  if (outcome.ok) {
    const head = JSON.stringify({ v: RECORD_VERSION, type: "result", id, ok: true, at });
    return `${head.slice(0, -1)},"output":${outcome.outputJson}}`;
  }
  return JSON.stringify({
    v: RECORD_VERSION,
    type: "result",
    id,
    ok: false,
    at,
    error: { code: outcome.error.code, message: outcome.error.message },
  });
}

export function encodeCheckpoint(lowWater: number, at: number): string {
  return JSON.stringify({ v: RECORD_VERSION, type: "checkpoint", lowWater: String(lowWater), at });
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Parses a record of the system book; null if it is not one of ours (or malformed). */
export function decodeRecord(data: Uint8Array): InvocationRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(data));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const r = value as { v?: unknown; type?: unknown; id?: unknown };
  if (r.v !== RECORD_VERSION) return null;
  if (r.type === "checkpoint") return value as CheckpointRecord;
  if (typeof r.id !== "string") return null;
  if (r.type === "request" || r.type === "result") return value as RequestRecord | ResultRecord;
  return null;
}
