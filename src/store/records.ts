/**
 * The store's records and checkpoints as they are in the log, and their tags. Pure:
 * encoding and decoding only. Records are JSON text (UTF-8):
 *
 *   write   {"v":1,"k":"w","o":"<object>","ops":[<op>...]}      tags: object, stream
 *   begin   {"v":1,"k":"b"}                                     tags: txn
 *   commit  {"v":1,"k":"c","s":"<snapshot>","i":"ser"|"si",
 *            "w":{"<object>":[<op>...],...},"r":["<object>",...]}
 *                                                               tags: every object in w, stream
 *
 * (tags: `boki-store/object/<name>`, `boki-store/stream`, `boki-store/txn/begin`; a write or
 * commit record without the stream tag is not a store record.)
 *
 * A commit's `r` lists the objects it read but did not write; they are checked for
 * conflicts along with `w` under serializable isolation, and absent under snapshot
 * isolation. Checkpoints are aux data on a record:
 *
 *   {"v":1,"d":"c"|"a","o":{"<object>":<value after this record>,...}}
 *
 * `d` is a commit record's decision (committed or aborted), `o` the values of objects as
 * of this record (an object that does not exist is absent from `o` and listed in `n`).
 * Anything in an object's sub-stream that is not a store record is ignored by every
 * reader alike.
 */
import { tagOf, type LogRecord, type Tag } from "../index.js";
import { isOp, type Op } from "./ops.js";
import type { JsonValue } from "../index.js";

export const TAG_NAMESPACE = "boki-store";
export const TXN_TAG: Tag = tagOf(`${TAG_NAMESPACE}/txn/begin`);
/** Every write and commit record carries it: the store's records in log order, for followers. */
export const STREAM_TAG: Tag = tagOf(`${TAG_NAMESPACE}/stream`);

export function objectTagName(name: string): string {
  return `${TAG_NAMESPACE}/object/${name}`;
}

export type Isolation = "serializable" | "snapshot";

/** What a commit decision needs to know of a commit record. */
export interface CommitInfo {
  readonly seqnum: number;
  readonly snapshot: number;
  /** Objects written (the record carries their tags). */
  readonly writes: readonly string[];
  /** Objects to check for conflicting writes in (snapshot, seqnum): writes, plus reads if serializable. */
  readonly checks: readonly string[];
}

export type StoreRecord =
  | {
      readonly kind: "write";
      readonly seqnum: number;
      readonly object: string;
      readonly ops: readonly Op[];
    }
  | {
      readonly kind: "commit";
      readonly seqnum: number;
      readonly info: CommitInfo;
      readonly ops: ReadonlyMap<string, readonly Op[]>;
    }
  | { readonly kind: "begin"; readonly seqnum: number }
  | { readonly kind: "other"; readonly seqnum: number };

export interface Checkpoint {
  /** A commit record's decision, when known. */
  readonly decision: boolean | undefined;
  /** Object values as of the record; `undefined` values mean "does not exist". */
  readonly views: ReadonlyMap<string, JsonValue | undefined>;
}

const utf8 = new TextDecoder();

export function encodeWrite(object: string, ops: readonly Op[]): string {
  return JSON.stringify({ v: 1, k: "w", o: object, ops });
}

export const BEGIN_RECORD = JSON.stringify({ v: 1, k: "b" });

/**
 * The objects a commit record's decision checks: every object it writes, plus (under
 * serializable isolation) every object it read. The committer and every reader derive
 * them from the same fields, by this one function.
 */
export function checksOf(
  writes: readonly string[],
  reads: readonly string[] | undefined,
): string[] {
  const checks = writes.slice();
  if (reads !== undefined) for (const n of reads) if (!writes.includes(n)) checks.push(n);
  return checks;
}

/** Encodes a commit record; returns its data and the objects its decision checks. */
export function encodeCommit(
  snapshot: number,
  isolation: Isolation,
  writes: ReadonlyMap<string, readonly Op[]>,
  reads: readonly string[],
): { data: string; checks: string[] } {
  const w: Record<string, readonly Op[]> = {};
  for (const [name, ops] of writes) w[name] = ops;
  const rec: Record<string, unknown> = {
    v: 1,
    k: "c",
    s: String(snapshot),
    i: isolation === "serializable" ? "ser" : "si",
    w,
  };
  const r = isolation === "serializable" && reads.length > 0 ? reads : undefined;
  if (r !== undefined) rec["r"] = r;
  return { data: JSON.stringify(rec), checks: checksOf([...writes.keys()], r) };
}

function opsOf(x: unknown): Op[] | undefined {
  if (!Array.isArray(x) || x.length === 0 || !x.every(isOp)) return undefined;
  return x;
}

/** Decodes a record's data; anything that is not a well-formed store record is "other". */
export function decodeRecord(r: LogRecord): StoreRecord {
  const seqnum = r.seqnum as number;
  let x: unknown;
  try {
    x = JSON.parse(utf8.decode(r.data));
  } catch {
    return { kind: "other", seqnum };
  }
  if (typeof x !== "object" || x === null) return { kind: "other", seqnum };
  const o = x as Record<string, unknown>;
  if (o["v"] !== 1) return { kind: "other", seqnum };
  if ((o["k"] === "w" || o["k"] === "c") && !r.tags.includes(STREAM_TAG)) {
    return { kind: "other", seqnum };
  }
  switch (o["k"]) {
    case "w": {
      const ops = opsOf(o["ops"]);
      if (typeof o["o"] !== "string" || ops === undefined) break;
      return { kind: "write", seqnum, object: o["o"], ops };
    }
    case "b":
      return { kind: "begin", seqnum };
    case "c": {
      const s = o["s"];
      const w = o["w"];
      if (typeof s !== "string" || !/^(0|-1|[1-9][0-9]{0,15})$/.test(s)) break;
      const snapshot = Number(s);
      if (!(snapshot < seqnum) || typeof w !== "object" || w === null || Array.isArray(w)) break;
      const ops = new Map<string, readonly Op[]>();
      for (const [name, list] of Object.entries(w)) {
        const l = opsOf(list);
        if (l === undefined) return { kind: "other", seqnum };
        ops.set(name, l);
      }
      if (ops.size === 0) break;
      const writes = [...ops.keys()];
      const r = o["r"];
      if (r !== undefined && (!Array.isArray(r) || !r.every((n) => typeof n === "string"))) break;
      const checks = checksOf(writes, r);
      return { kind: "commit", seqnum, info: { seqnum, snapshot, writes, checks }, ops };
    }
  }
  return { kind: "other", seqnum };
}

/** Whether a decoded record writes `object`. */
export function writesObject(rec: StoreRecord, object: string): boolean {
  if (rec.kind === "write") return rec.object === object;
  if (rec.kind === "commit") return rec.ops.has(object);
  return false;
}

/** The operations a record applies to `object` (if it commits). */
export function opsFor(rec: StoreRecord, object: string): readonly Op[] | undefined {
  if (rec.kind === "write") return rec.object === object ? rec.ops : undefined;
  if (rec.kind === "commit") return rec.ops.get(object);
  return undefined;
}

const EMPTY: Checkpoint = { decision: undefined, views: new Map() };

/** Decodes a record's aux data; unreadable aux data is as good as none (it is a cache). */
export function decodeCheckpoint(aux: Uint8Array | null): Checkpoint {
  if (aux === null || aux.byteLength === 0) return EMPTY;
  let x: unknown;
  try {
    x = JSON.parse(utf8.decode(aux));
  } catch {
    return EMPTY;
  }
  if (typeof x !== "object" || x === null) return EMPTY;
  const o = x as Record<string, unknown>;
  if (o["v"] !== 1) return EMPTY;
  const decision = o["d"] === "c" ? true : o["d"] === "a" ? false : undefined;
  const views = new Map<string, JsonValue | undefined>();
  const ov = o["o"];
  if (typeof ov === "object" && ov !== null && !Array.isArray(ov)) {
    for (const [name, value] of Object.entries(ov as Record<string, JsonValue>)) {
      views.set(name, value);
    }
  }
  const n = o["n"];
  if (Array.isArray(n))
    for (const name of n) if (typeof name === "string") views.set(name, undefined);
  return { decision, views };
}

/**
 * Encodes a checkpoint within `maxBytes`: the decision always, then as many views as fit
 * (in the order given; the first is the one the writer cares about most). Returns
 * undefined when not even the decision would fit or there is nothing to say.
 */
export function encodeCheckpoint(cp: Checkpoint, maxBytes: number): string | undefined {
  const head = cp.decision === undefined ? `{"v":1` : `{"v":1,"d":"${cp.decision ? "c" : "a"}"`;
  const present: string[] = [];
  const missing: string[] = [];
  // Bytes of head + `,"o":{}` + `,"n":[]` + `}`, then each entry and its comma.
  let bytes = Buffer.byteLength(head) + 7 + 7 + 1;
  for (const [name, value] of cp.views) {
    const entry =
      value === undefined
        ? JSON.stringify(name)
        : `${JSON.stringify(name)}:${JSON.stringify(value)}`;
    const size = Buffer.byteLength(entry) + 1;
    if (bytes + size > maxBytes) continue;
    bytes += size;
    (value === undefined ? missing : present).push(entry);
  }
  if (cp.decision === undefined && present.length === 0 && missing.length === 0) return undefined;
  let text = head;
  if (present.length > 0) text += `,"o":{${present.join(",")}}`;
  if (missing.length > 0) text += `,"n":[${missing.join(",")}]`;
  return text + "}";
}
