/**
 * The records of `boki-ts/flow` and the tags they carry. Every record is one JSON object
 * with `v: 1` and a kind `k`; every tag is `tagOf("boki-flow/<kind>/<name>")`, so flow's
 * records never collide with other libraries' or users' records in a shared book.
 *
 * An instance's **step stream** (`boki-flow/steps/<id>`) holds, at positions 0, 1, 2, ...:
 * its `start` record, one record per operation of the handler in call order (`step`,
 * `call`, `spawn`, `now`, `sleep`, `tver` (a table write: the key's new version, on both
 * streams), `cwrite`), and its `end` record; a `cancel`
 * record may take any position after the start. Each record but `cancel` and `tver` is a
 * conditional append at its position, so of racing executions exactly one writes each
 * position; a `tver` is conditional on the key's stream and goes out once every position
 * below its own is known (execution.ts says why that is enough).
 */
import { tagOf, type JsonValue, type LogRecord, type Tag } from "../index.js";

export const FLOW_NAMESPACE = "boki-flow";

/** An instance's step stream. */
export function stepsTag(id: string): Tag {
  return tagOf(`${FLOW_NAMESPACE}/steps/${id}`);
}
/** Every start and end record of a book: what the recovery task scans. */
export const INTENTS_TAG: Tag = tagOf(`${FLOW_NAMESPACE}/intents/all`);
/** The recovery task's checkpoints in a book. */
export const CHECKPOINT_TAG: Tag = tagOf(`${FLOW_NAMESPACE}/checkpoint/scan`);
/** The books that have workflow instances, in the registry book. */
export const BOOKS_TAG: Tag = tagOf(`${FLOW_NAMESPACE}/books/all`);
/** One book's registration (a conditional append at position 0: registered once). */
export function bookTag(book: number): Tag {
  return tagOf(`${FLOW_NAMESPACE}/book/${book}`);
}
/** One key of a durable table: its versions, newest last. */
export function tableTag(table: string, key: string): Tag {
  return tagOf(`${FLOW_NAMESPACE}/table/${table.length}:${table}/${key}`);
}

/** An error as records keep it: enough to throw an equal one on replay. */
export interface ErrorInfo {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
}

export type Outcome =
  | { readonly ok: true; readonly value: JsonValue }
  | { readonly ok: false; readonly error: ErrorInfo };

interface Base {
  readonly v: 1;
  /** When it was written, ms since the epoch (the writer's clock). */
  readonly at: number;
}

export interface StartRecord extends Base {
  readonly k: "start";
  /** The workflow's name. */
  readonly wf: string;
  readonly id: string;
  readonly input: JsonValue;
  /** The workflow function's time limit: no execution outlives `at` of its last record by more. */
  readonly timeoutMs: number;
  /** When ended instances' streams may be trimmed: this long after their end. */
  readonly retentionMs: number;
  /** A workflow started by another with `wf.invoke`: where its result goes (Beldi's callback). */
  readonly parent?: { readonly id: string; readonly pos: number; readonly wf: string };
}
export type StepRecord = Base & { readonly k: "step"; readonly name: string } & Outcome;
/** A synchronous call's result; `cb`: written by the callee workflow itself. */
export type CallRecord = Base & {
  readonly k: "call";
  readonly fn: string;
  readonly child?: string;
  readonly cb?: true;
} & Outcome;
export interface SpawnRecord extends Base {
  readonly k: "spawn";
  readonly fn: string;
  readonly child: string;
}
/** `wf.now()`: the time is `at`. */
export interface NowRecord extends Base {
  readonly k: "now";
}
export interface SleepRecord extends Base {
  readonly k: "sleep";
  /** When the sleep ends, ms since the epoch. */
  readonly until: number;
}
/** A table write made by the operation: it wrote version `ver` of the key. */
export interface WriteRecord extends Base {
  readonly k: "write";
  readonly table: string;
  readonly key: string;
  readonly ver: number;
}
/**
 * Version `ver` of a table key, on the key's stream (a conditional append at position
 * `ver`), written by the operation at position `pos` of instance `by`. It is also that
 * operation's record on the instance's step stream (it carries both tags); versions
 * without `table` and `key` were written before that, and a `write` record followed them.
 */
export interface TableVersionRecord extends Base {
  readonly k: "tver";
  readonly ver: number;
  readonly by: string;
  readonly pos: number;
  readonly table?: string;
  readonly key?: string;
  /** Absent for a delete. */
  readonly value?: JsonValue;
}
/** A conditional table write whose condition did not hold (one that held is a `write`). */
export interface CondWriteRecord extends Base {
  readonly k: "cwrite";
  readonly table: string;
  readonly key: string;
  /** The version found. */
  readonly ver: number;
}
export type EndRecord = Base & {
  readonly k: "end";
  readonly id: string;
  readonly status: "succeeded" | "failed" | "cancelled";
  /** When its stream may be trimmed (`at` plus the workflow's retention). */
  readonly gcAt: number;
} & Outcome;
export interface CancelRecord extends Base {
  readonly k: "cancel";
  readonly reason: string;
}
export interface CheckpointRecord extends Base {
  readonly k: "checkpoint";
  /** This checkpoint's position among the book's checkpoints. */
  readonly n: number;
  /** The next seqnum of INTENTS_TAG to scan. */
  readonly cursor: number;
  /** The garbage collector's next INTENTS_TAG seqnum per retention class. */
  readonly gc: Readonly<Record<string, { at: number; dueAt: number }>>;
  /** INTENTS_TAG records below it were all walked by the garbage collector. */
  readonly gcFloor: number;
  /** Started, not yet ended instances below `cursor`. */
  readonly pending: readonly PendingInstance[];
  /** INTENTS_TAG is trimmed below this seqnum. */
  readonly trimmed: number;
}
/** An unfinished instance the recovery task tracks: [id, start seqnum, workflow, timeoutMs]. */
export type PendingInstance = readonly [string, number, string, number];

export interface BookRecord extends Base {
  readonly k: "book";
  readonly book: number;
}

export type FlowRecord =
  | StartRecord
  | StepRecord
  | CallRecord
  | SpawnRecord
  | NowRecord
  | SleepRecord
  | WriteRecord
  | TableVersionRecord
  | CondWriteRecord
  | EndRecord
  | CancelRecord
  | CheckpointRecord
  | BookRecord;

const KINDS: ReadonlySet<string> = new Set([
  "start",
  "step",
  "call",
  "spawn",
  "now",
  "sleep",
  "write",
  "tver",
  "cwrite",
  "end",
  "cancel",
  "checkpoint",
  "book",
]);

/** Thrown when a record under a flow tag is not one of flow's: a broken invariant. */
export class CorruptFlowRecordError extends Error {
  readonly code = "CORRUPT_RECORD";
  constructor(message: string) {
    super(message);
    this.name = "CorruptFlowRecordError";
  }
}

export function encodeFlowRecord(r: FlowRecord): string {
  return JSON.stringify(r);
}

/** A flow record read back with its seqnum. */
export interface Known<R extends FlowRecord = FlowRecord> {
  readonly seqnum: number;
  readonly rec: R;
}

export function decodeFlowRecord(r: LogRecord): Known {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(r.data).toString("utf8"));
  } catch {
    throw new CorruptFlowRecordError(`record ${r.seqnum} under a flow tag is not JSON`);
  }
  const o = parsed as { v?: unknown; k?: unknown; at?: unknown } | null;
  if (
    o === null ||
    typeof o !== "object" ||
    o.v !== 1 ||
    typeof o.k !== "string" ||
    !KINDS.has(o.k)
  ) {
    throw new CorruptFlowRecordError(`record ${r.seqnum} under a flow tag is not a flow record`);
  }
  return { seqnum: r.seqnum, rec: parsed as FlowRecord };
}

/** Whether a record is the result of an operation the handler made (not start/end/cancel). */
export function isOperation(r: FlowRecord): boolean {
  return (
    r.k !== "start" && r.k !== "end" && r.k !== "cancel" && r.k !== "checkpoint" && r.k !== "book"
  );
}
