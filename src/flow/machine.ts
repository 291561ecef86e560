/**
 * The decisions of `boki-ts/flow`, without I/O: what a record found at a position means to
 * an execution, what an instance's records say about its state, and what the recovery task
 * does with a book's intents. The execution (execution.ts) and the recovery task
 * (recovery.ts) only carry these decisions out on a LogBook.
 */
import type {
  CheckpointRecord,
  EndRecord,
  FlowRecord,
  Known,
  PendingInstance,
  StartRecord,
} from "./records.js";

/** An operation of a handler, as it asks for its position's record. */
export type OpDesc =
  | { readonly k: "step"; readonly name: string }
  | { readonly k: "call"; readonly fn: string }
  | { readonly k: "spawn"; readonly fn: string }
  | { readonly k: "now" }
  | { readonly k: "sleep" }
  | { readonly k: "write"; readonly table: string; readonly key: string }
  | { readonly k: "cwrite"; readonly table: string; readonly key: string }
  | { readonly k: "end" };

export function describeOp(d: OpDesc): string {
  switch (d.k) {
    case "step":
      return `step ${JSON.stringify(d.name)}`;
    case "call":
    case "spawn":
      return `${d.k === "call" ? "invoke" : "invokeAsync"} of ${JSON.stringify(d.fn)}`;
    case "write":
    case "cwrite":
      return `${d.k === "write" ? "write" : "condWrite"} of ${d.table}/${d.key}`;
    default:
      return d.k;
  }
}

function describeRecord(r: FlowRecord): string {
  switch (r.k) {
    case "step":
      return `step ${JSON.stringify(r.name)}`;
    case "call":
    case "spawn":
      return `${r.k === "call" ? "invoke" : "invokeAsync"} of ${JSON.stringify(r.fn)}`;
    case "write":
    case "cwrite":
      return `${r.k === "write" ? "write" : "condWrite"} of ${r.table}/${r.key}`;
    case "tver":
      return `table write of ${String(r.table)}/${String(r.key)}`;
    default:
      return r.k;
  }
}

/** Whether record `r` is the result of operation `d`. */
export function matches(d: OpDesc, r: FlowRecord): boolean {
  switch (d.k) {
    case "step":
      return r.k === "step" && r.name === d.name;
    case "call":
      return r.k === "call" && r.fn === d.fn;
    case "spawn":
      return r.k === "spawn" && r.fn === d.fn;
    case "now":
    case "sleep":
    case "end":
      return r.k === d.k;
    case "write":
      return (r.k === "write" || r.k === "tver") && r.table === d.table && r.key === d.key;
    case "cwrite":
      return (
        (r.k === "write" || r.k === "tver" || r.k === "cwrite") &&
        r.table === d.table &&
        r.key === d.key
      );
  }
}

/** What an execution makes of the record at the position its operation `d` asked for. */
export type Verdict =
  | { readonly t: "result" }
  | { readonly t: "cancelled"; readonly reason: string }
  | { readonly t: "mismatch"; readonly message: string };

/** Replay: the log already holds `found` where operation `d` is. */
export function replayVerdict(d: OpDesc, found: FlowRecord, pos: number): Verdict {
  if (found.k === "cancel") return { t: "cancelled", reason: found.reason };
  if (matches(d, found)) return { t: "result" };
  return {
    t: "mismatch",
    message: `at position ${pos} the handler asks for ${describeOp(d)} but the log holds ${describeRecord(found)}: the workflow's code changed under a running instance, or it is not deterministic`,
  };
}

/**
 * A conditional append of this execution's record for `d` failed: `found` took the position
 * first. A callee's callback (its `call` record) is the result this execution wanted; an
 * `end` written by another execution is the instance's outcome; anything else means
 * another execution is ahead, and this one stops.
 */
export type RaceVerdict =
  | { readonly t: "adopt" }
  | { readonly t: "cancelled"; readonly reason: string }
  | { readonly t: "superseded" };

export function raceVerdict(d: OpDesc, found: FlowRecord): RaceVerdict {
  if (found.k === "cancel") return { t: "cancelled", reason: found.reason };
  if (d.k === "call" && found.k === "call" && found.cb === true && found.fn === d.fn)
    return { t: "adopt" };
  if (d.k === "end" && found.k === "end") return { t: "adopt" };
  return { t: "superseded" };
}

// ---------------------------------------------------------------------------------------
// An instance's state, from its records.

export type InstanceStatus = "running" | "sleeping" | "succeeded" | "failed" | "cancelled";

export interface InstanceState {
  readonly id: string;
  readonly workflow: string;
  readonly status: InstanceStatus;
  readonly start: Known<StartRecord>;
  readonly end?: Known<EndRecord>;
  /** For "sleeping": when the sleep ends. */
  readonly until?: number;
  /** A cancel was asked for but the instance has not ended yet. */
  readonly cancelRequested: boolean;
  /** The last record's time: no execution is alive past it plus the timeout. */
  readonly lastAt: number;
  readonly records: number;
}

/** The state of an instance whose step stream, from position 0, is `stream`. */
export function instanceState(stream: readonly Known[], now: number): InstanceState {
  const first = stream[0];
  if (first === undefined || first.rec.k !== "start") {
    throw new Error("an instance's step stream starts with its start record");
  }
  const start = first as Known<StartRecord>;
  let cancelRequested = false;
  for (const k of stream) {
    if (k.rec.k === "cancel") cancelRequested = true;
    if (k.rec.k === "end") {
      return {
        id: start.rec.id,
        workflow: start.rec.wf,
        status: k.rec.status,
        start,
        end: k as Known<EndRecord>,
        cancelRequested,
        lastAt: k.rec.at,
        records: stream.length,
      };
    }
  }
  const last = stream[stream.length - 1]!;
  const sleeping = last.rec.k === "sleep" && last.rec.until > now;
  return {
    id: start.rec.id,
    workflow: start.rec.wf,
    status: sleeping ? "sleeping" : "running",
    start,
    ...(sleeping && last.rec.k === "sleep" ? { until: last.rec.until } : {}),
    cancelRequested,
    lastAt: last.rec.at,
    records: stream.length,
  };
}

// ---------------------------------------------------------------------------------------
// The recovery task's decisions for one book.

/** How long after an instance's last record its execution is surely gone, beyond its timeout. */
export const RESUME_MARGIN_MS = 2_000;
/** A sleeping instance is resumed this long after its sleep ends (one still running in-process wakes first). */
export const SLEEP_RESUME_GRACE_MS = 1_000;

/** What the recovery task knows of an unfinished instance's tail. */
export interface TailInfo {
  readonly id: string;
  readonly workflow: string;
  /** Its last record. */
  readonly last: FlowRecord;
  readonly timeoutMs: number;
}

export type ResumeDecision =
  | { readonly t: "done" }
  | { readonly t: "wait"; readonly untilMs: number }
  | { readonly t: "resume" };

/**
 * Whether to resume an unfinished instance now: an ended one is done; a sleeping one is
 * resumed once its sleep is over (plus a grace); a running one once no execution can still
 * be alive, i.e. its time limit has passed since its last record (plus a margin), and not
 * again before the same time has passed since the task last resumed it.
 */
export function resumeDecision(
  t: TailInfo,
  now: number,
  lastResumedAt: number | undefined,
): ResumeDecision {
  if (t.last.k === "end") return { t: "done" };
  let due: number;
  if (t.last.k === "sleep") due = t.last.until + SLEEP_RESUME_GRACE_MS;
  else due = t.last.at + t.timeoutMs + RESUME_MARGIN_MS;
  if (lastResumedAt !== undefined)
    due = Math.max(due, lastResumedAt + t.timeoutMs + RESUME_MARGIN_MS);
  return now >= due ? { t: "resume" } : { t: "wait", untilMs: due };
}

/** The scan state of a book, as its latest checkpoint keeps it. */
/** A retention class's place: the next intents seqnum to look at, and when it is due (0: now). */
export interface GcCursor {
  at: number;
  dueAt: number;
}

export interface ScanState {
  readonly n: number;
  readonly cursor: number;
  /** The garbage collector's cursor per retention class (see gcWalk). */
  readonly gc: Readonly<Record<string, GcCursor>>;
  /** Every intents record below it has been walked by the garbage collector. */
  readonly gcFloor: number;
  readonly pending: readonly PendingInstance[];
  readonly trimmed: number;
}

export const SCAN_STATE_EMPTY: ScanState = {
  n: -1,
  cursor: 0,
  gc: {},
  gcFloor: 0,
  pending: [],
  trimmed: 0,
};

export function scanStateOf(cp: CheckpointRecord | undefined): ScanState {
  return cp === undefined
    ? SCAN_STATE_EMPTY
    : {
        n: cp.n,
        cursor: cp.cursor,
        gc: cp.gc,
        gcFloor: cp.gcFloor,
        pending: cp.pending,
        trimmed: cp.trimmed,
      };
}

/**
 * Folds intents records (starts and ends, in log order from `s.cursor`) into the pending
 * list. At most `pendingMax` instances are tracked: the cursor stops before a start that
 * would exceed it, so nothing is skipped, only delayed.
 */
export function foldIntents(
  s: ScanState,
  intents: readonly Known[],
  pendingMax: number,
): { readonly state: ScanState; readonly blocked: boolean } {
  const pending = new Map<string, PendingInstance>(s.pending.map((p) => [p[0], p] as const));
  let cursor = s.cursor;
  let blocked = false;
  for (const k of intents) {
    if (k.seqnum < cursor) continue;
    if (k.rec.k === "start") {
      if (!pending.has(k.rec.id) && pending.size >= pendingMax) {
        blocked = true;
        break;
      }
      pending.set(k.rec.id, [k.rec.id, k.seqnum, k.rec.wf, k.rec.timeoutMs]);
    } else if (k.rec.k === "end") {
      pending.delete(intentId(k.rec));
    }
    cursor = k.seqnum + 1;
  }
  return { state: { ...s, cursor, pending: [...pending.values()] }, blocked };
}

/** The instance an intents record belongs to. */
export function intentId(r: FlowRecord): string {
  return r.k === "start" || r.k === "end" ? r.id : "";
}

/**
 * The garbage collector's walk over intents. An ended instance's stream may be trimmed once
 * its `gcAt` has passed. Ends of workflows with one retention are due in log order, so the
 * walk keeps one cursor per retention (a class): a class stops at its first end not yet due
 * and sleeps until that end is due (it is not walked, nor its records read, before), while
 * the others go on. At most `trimsMax` trims are planned; the walk stops before the record
 * that would exceed it.
 */
export function gcWalk(
  s: ScanState,
  intents: readonly Known[],
  now: number,
  trimsMax: number = Number.POSITIVE_INFINITY,
): {
  readonly trim: ReadonlyArray<{ readonly id: string; readonly below: number }>;
  readonly gc: ScanState["gc"];
  readonly gcFloor: number;
} {
  const trim: Array<{ id: string; below: number }> = [];
  const cursors: Record<string, GcCursor> = {};
  for (const [c, v] of Object.entries(s.gc)) cursors[c] = { ...v };
  const stopped = new Set(Object.keys(cursors).filter((c) => cursors[c]!.dueAt > now));
  let floor = s.gcFloor;
  const from = gcReadFrom(s, now);
  for (const k of intents) {
    if (k.seqnum < from) continue;
    if (k.rec.k === "end") {
      const cls = String(k.rec.gcAt - k.rec.at);
      if (!(cls in cursors)) {
        if (Object.keys(cursors).length >= GC_CLASSES_MAX) break;
        cursors[cls] = { at: k.seqnum, dueAt: 0 };
      }
      const c = cursors[cls]!;
      if (!stopped.has(cls) && c.at <= k.seqnum) {
        if (k.rec.gcAt > now) {
          stopped.add(cls);
          c.at = k.seqnum;
          c.dueAt = k.rec.gcAt;
        } else {
          if (trim.length >= trimsMax) break;
          trim.push({ id: k.rec.id, below: k.seqnum + 1 });
        }
      }
    }
    for (const [cls, c] of Object.entries(cursors)) {
      if (!stopped.has(cls) && c.at <= k.seqnum) c.at = k.seqnum + 1;
    }
    floor = Math.max(floor, k.seqnum + 1);
  }
  return { trim, gc: cursors, gcFloor: floor };
}

/** Where the garbage collector needs intents from: the floor, and the classes awake now. */
export function gcReadFrom(s: ScanState, now: number): number {
  const awake = Object.values(s.gc)
    .filter((c) => c.dueAt <= now)
    .map((c) => c.at);
  return Math.min(s.gcFloor, ...awake);
}

/** Retention classes the garbage collector keeps cursors for (one per distinct retention). */
export const GC_CLASSES_MAX = 64;

/** Where INTENTS_TAG may be trimmed below: nothing a cursor or a pending instance still needs. */
export function intentsTrimPoint(s: ScanState): number {
  return Math.min(
    s.cursor,
    s.gcFloor,
    ...Object.values(s.gc).map((c) => c.at),
    ...s.pending.map((p) => p[1]),
  );
}
