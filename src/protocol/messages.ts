/**
 * Messages between roles. Plain objects with a `t` discriminator, so that msgpack can carry
 * them over TCP unchanged. Every batch field has a named limit in `log/limits.ts`.
 */
import type { MetalogEntry } from "../log/metalog.js";

/** Engine → storage: records of the engine's shard, contiguous from local id `first`. */
export interface ReplicateMsg {
  t: "replicate";
  log: number;
  shard: number;
  first: number;
  records: Uint8Array[];
}

/** Storage → sequencer: how many records of each shard the storage node holds (contiguously). */
export interface ProgressMsg {
  t: "progress";
  log: number;
  term: number;
  held: Array<[shard: number, count: number]>;
}

/** Sequencer → engines and storage: committed metalog entries, ascending and contiguous. */
export interface MetalogMsg {
  t: "metalog";
  log: number;
  entries: MetalogEntry[];
  /** The sender's committed metalog length when it sent this message. */
  tail: number;
  /** A sequencer answering a fetch: the term of its view (its tail counts for that term only). */
  term?: number;
}

/** Engine or storage → sequencer: send committed entries from `from` on. */
export interface MetalogFetchMsg {
  t: "metalog-fetch";
  log: number;
  from: number;
}

/** Storage → engine: record headers of a shard, contiguous from local id `first`. */
export interface IndexDataMsg {
  t: "index-data";
  log: number;
  shard: number;
  first: number;
  headers: Uint8Array[];
}

/** Storage → storage: send the records of a shard with local ids [from, to) (answered with `replicate`). */
export interface ReplicaFetchMsg {
  t: "replica-fetch";
  log: number;
  shard: number;
  from: number;
  to: number;
}

/** Engine → storage, at start: how many records of my shard do you hold? */
export interface ShardEndQueryMsg {
  t: "shard-end-query";
  log: number;
  shard: number;
}

/** Storage → engine: it holds records [0, end) of the shard. */
export interface ShardEndMsg {
  t: "shard-end";
  log: number;
  shard: number;
  end: number;
}

/** Engine → storage: send index data for local ids [from, to) of a shard. */
export interface IndexFetchMsg {
  t: "index-fetch";
  log: number;
  shard: number;
  from: number;
  to: number;
}

/** Engine → storage: read one record by sequence number. */
export interface ReadMsg {
  t: "read";
  id: number;
  log: number;
  seqnum: number;
}

export interface ReadReplyMsg {
  t: "read-reply";
  id: number;
  /** The encoded record, or null if this node does not have it. */
  record: Uint8Array | null;
  aux: Uint8Array | null;
}

/** Engine → storage: best-effort aux data for a record. */
export interface SetAuxMsg {
  t: "set-aux";
  log: number;
  seqnum: number;
  data: Uint8Array;
}

/** Engine → storage: records a trim removed; their bytes may be deleted. */
export interface DeleteMsg {
  t: "delete";
  log: number;
  seqnums: number[];
}

/** Primary sequencer → backup: entries to store, contiguous from `entries[0].position`. */
export interface MetalogReplicateMsg {
  t: "metalog-replicate";
  log: number;
  term: number;
  entries: MetalogEntry[];
}

/** Backup sequencer → primary: the backup holds entries [0, durable) on disk. */
export interface MetalogAckMsg {
  t: "metalog-ack";
  log: number;
  term: number;
  durable: number;
  /**
   * Which run of the backup acknowledges: later runs have larger values. A backup that
   * restarted may hold fewer entries than it acknowledged before (unsynced writes lost with
   * "memory" durability); its primary then believes the new run's count.
   */
  boot: number;
}

/** Queries an engine without a local index sends to an index replica. */
export const INDEX_QUERY_OPS = ["next", "prev", "blocking", "cond"] as const;
export type IndexQueryOp = (typeof INDEX_QUERY_OPS)[number];

/**
 * Engine → index replica: answer `op` once the index has applied `position`. `next`/`prev`
 * find a record of the (book, tag) sub-stream from `seqnum`; `blocking` waits up to
 * `timeoutMs` for one; `cond` tells whether the conditional append at `seqnum` succeeded.
 */
export interface IndexQueryMsg {
  t: "index-query";
  id: number;
  log: number;
  op: IndexQueryOp;
  book: number;
  tag: string;
  seqnum: number;
  position: number;
  timeoutMs: number;
}

export interface IndexReplyMsg {
  t: "index-reply";
  id: number;
  seqnum: number | null;
  /** The index's position when it answered. */
  position: number;
  /** For `cond`: the sub-stream position found when the append failed, or null if it succeeded. */
  failedAt: number | null;
  error: { code: string; message: string } | null;
}

/** LogBook operations a client may ask an engine to run. */
export const CLIENT_OPS = [
  "append",
  "condAppend",
  "readNext",
  "readPrev",
  "readNextBlocking",
  "setAuxData",
  "trim",
] as const;
export type ClientOp = (typeof CLIENT_OPS)[number];

/**
 * Client → engine: one LogBook operation on a book, at the client session's metalog
 * position. Fields an operation does not use carry neutral values. Tags are decimal strings
 * (msgpack has no unsigned 64-bit integer that every client can produce).
 */
export interface ClientRequestMsg {
  t: "client-request";
  id: number;
  op: ClientOp;
  book: number;
  position: number;
  tags: string[];
  data: Uint8Array;
  tag: string;
  seqnum: number;
  timeoutMs: number;
  condTag: string;
  condPosition: number;
}

export interface WireRecord {
  seqnum: number;
  book: number;
  tags: string[];
  data: Uint8Array;
  auxData: Uint8Array | null;
}

/** Engine → client: the outcome, and the session's metalog position after it. */
export interface ClientReplyMsg {
  t: "client-reply";
  id: number;
  position: number;
  seqnum: number | null;
  record: WireRecord | null;
  error: { code: string; message: string } | null;
}

/** Longest JSON text (input or output) an invocation message carries, in UTF-16 units. */
export const INVOCATION_JSON_CHARS_MAX = 8 * 1024 * 1024;
/** Longest function name or invocation id on the wire. */
export const INVOCATION_NAME_CHARS_MAX = 256;
/** Length of a W3C `traceparent` (version, trace id, span id, flags). */
export const TRACEPARENT_CHARS = 55;

/**
 * Gateway (or client) → engine: run function `name` on `input` (JSON text) in `book`, with
 * the caller's metalog position, failing after `timeoutMs`.
 */
export interface InvokeRequestMsg {
  t: "invoke-request";
  id: number;
  name: string;
  input: string;
  book: number;
  position: number;
  invocationId: string;
  timeoutMs: number;
  /** The caller's trace context (W3C `traceparent`), when it is tracing. */
  trace?: string;
}

/** Engine → caller: the output (JSON text) or the error, and the position after the run. */
export interface InvokeReplyMsg {
  t: "invoke-reply";
  id: number;
  position: number;
  output: string | null;
  error: { code: string; message: string } | null;
}

export type Message =
  | ReplicateMsg
  | ProgressMsg
  | MetalogReplicateMsg
  | MetalogAckMsg
  | MetalogMsg
  | MetalogFetchMsg
  | IndexDataMsg
  | IndexFetchMsg
  | ReplicaFetchMsg
  | ShardEndQueryMsg
  | ShardEndMsg
  | ReadMsg
  | ReadReplyMsg
  | SetAuxMsg
  | DeleteMsg
  | ClientRequestMsg
  | ClientReplyMsg
  | InvokeRequestMsg
  | InvokeReplyMsg
  | IndexQueryMsg
  | IndexReplyMsg;
