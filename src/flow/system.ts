/**
 * The library's own functions, loaded with every workflow:
 *
 * - `boki-flow.register` (in the registry book): records that a book has workflow
 *   instances, once per book, so the recovery task knows where to look.
 * - `boki-flow.recover` (run by the runtime every RECOVERY_INTERVAL_MS): visits the
 *   registered books, `boki-flow.scan` in each.
 * - `boki-flow.scan` (in a book): reads the book's intents (start and end records) from its
 *   last checkpoint, resumes instances that started and did not end once no execution can
 *   still be running them (or their sleep is over), and trims the streams of instances that
 *   ended longer ago than their retention.
 * - `boki-flow.status`, `boki-flow.list`, `boki-flow.cancel`: what the gateway's
 *   `/workflows` routes answer.
 */
import {
  defineFunction,
  SEQNUM_MAX,
  type BokiFunction,
  type FunctionContext,
  type JsonValue,
  type LogBook,
} from "../index.js";
import { errorInfo, FlowError } from "./errors.js";
import { checkInstanceId } from "./execution.js";
import {
  CANCEL_REASON_CHARS_MAX,
  BOOKS_PER_RUN_MAX,
  LIST_LIMIT_MAX,
  LIST_RECORDS_MAX,
  PENDING_TRACKED_MAX,
  RECOVERY_INTERVAL_MS,
  RESUMES_PER_RUN_MAX,
  SCAN_RECORDS_MAX,
  STATUS_STEPS_MAX,
  TAILS_CHECKED_MAX,
  TRIMS_PER_RUN_MAX,
} from "./limits.js";
import {
  foldIntents,
  gcReadFrom,
  gcWalk,
  intentsTrimPoint,
  instanceState,
  resumeDecision,
  scanStateOf,
  type InstanceState,
  type ScanState,
} from "./machine.js";
import {
  FLOW_FUNCTIONS,
  REFUSAL_CODES,
  REGISTRY_BOOK,
  type FlowRefusal,
  type InstanceStatusReport,
  type InstanceSummary,
  type StepSummary,
} from "./protocol.js";
import {
  BOOKS_TAG,
  bookTag,
  CHECKPOINT_TAG,
  decodeFlowRecord,
  encodeFlowRecord,
  INTENTS_TAG,
  stepsTag,
  type BookRecord,
  type CheckpointRecord,
  type FlowRecord,
  type Known,
} from "./records.js";

function isCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}

async function readForward(
  log: LogBook,
  tag: ReturnType<typeof stepsTag>,
  from: number,
  max: number,
): Promise<Known[]> {
  const out: Known[] = [];
  for (let r = await log.readNext(tag, from); r !== null && out.length < max;) {
    out.push(decodeFlowRecord(r));
    if (out.length < max) r = await log.readNext(tag, r.seqnum + 1);
  }
  return out;
}

// ------------------------------------------------------------------ registry of books

/** Per thread: the books read from the registry so far, and where reading stopped. */
const books = { list: [] as number[], next: 0, turn: 0 };

async function registeredBooks(log: LogBook): Promise<number[]> {
  for (;;) {
    const more = await readForward(log, BOOKS_TAG, books.next, SCAN_RECORDS_MAX);
    for (const k of more) {
      if (k.rec.k === "book" && !books.list.includes(k.rec.book)) books.list.push(k.rec.book);
      books.next = k.seqnum + 1;
    }
    if (more.length < SCAN_RECORDS_MAX) return books.list;
  }
}

async function register(ctx: FunctionContext, input: unknown): Promise<JsonValue> {
  const book = (input as { book?: unknown } | null)?.book;
  if (!Number.isInteger(book) || (book as number) < 0 || (book as number) > 0xffff_fffe) {
    throw new FlowError("INVALID_ARGUMENT", "register needs { book }");
  }
  const rec: BookRecord = { v: 1, k: "book", at: Date.now(), book: book as number };
  try {
    await ctx.log.condAppend(
      [BOOKS_TAG, bookTag(book as number)],
      encodeFlowRecord(rec),
      bookTag(book as number),
      0,
    );
    return { registered: true };
  } catch (err) {
    if (isCode(err, "COND_APPEND_FAILED")) return { registered: false };
    throw err;
  }
}

// ------------------------------------------------------------------ recovery

/** Per thread: when the task last resumed each instance (losing it costs one extra resume). */
const resumedAt = new Map<string, number>();
const RESUMED_AT_ENTRIES_MAX = 100_000;

async function recover(ctx: FunctionContext): Promise<JsonValue> {
  const all = await registeredBooks(ctx.log);
  const visit: number[] = [];
  for (let i = 0; i < Math.min(all.length, BOOKS_PER_RUN_MAX); i++) {
    visit.push(all[(books.turn + i) % all.length]!);
  }
  books.turn = all.length === 0 ? 0 : (books.turn + visit.length) % all.length;
  let resumed = 0;
  let trimmed = 0;
  for (const book of visit) {
    try {
      const r = (
        book === ctx.book ? await scan(ctx) : await ctx.invoke(FLOW_FUNCTIONS.scan, null, { book })
      ) as {
        resumed: number;
        trimmed: number;
      };
      resumed += r.resumed;
      trimmed += r.trimmed;
    } catch (err) {
      ctx.logger.warn("the workflow recovery scan of a book failed; it runs again next time", {
        book,
        error: errorInfo(err).message,
      });
    }
  }
  return { books: visit.length, resumed, trimmed };
}

async function latestCheckpoint(log: LogBook): Promise<CheckpointRecord | undefined> {
  const r = await log.checkTail(CHECKPOINT_TAG);
  if (r === null) return undefined;
  const k = decodeFlowRecord(r);
  return k.rec.k === "checkpoint" ? k.rec : undefined;
}

async function scan(ctx: FunctionContext): Promise<JsonValue> {
  const log = ctx.log;
  const now = Date.now();
  const before = scanStateOf(await latestCheckpoint(log));
  // Only what is new, and what an awake retention class of the collector still has to walk.
  const from = Math.min(before.cursor, gcReadFrom(before, now));
  const intents = await readForward(
    log,
    INTENTS_TAG,
    Math.max(from, before.trimmed),
    SCAN_RECORDS_MAX,
  );
  const folded = foldIntents(before, intents, PENDING_TRACKED_MAX);
  if (folded.blocked) {
    ctx.logger.warn(
      `more than ${PENDING_TRACKED_MAX} unfinished workflow instances (PENDING_TRACKED_MAX); later ones wait`,
      {},
    );
  }
  const walked = gcWalk(before, intents, now, TRIMS_PER_RUN_MAX);

  // Resume what is due; drop what has ended.
  const done = new Set<string>();
  let resumed = 0;
  for (const [id, , wf, timeoutMs] of folded.state.pending.slice(0, TAILS_CHECKED_MAX)) {
    if (resumed >= RESUMES_PER_RUN_MAX) break;
    const tail = await log.checkTail(stepsTag(id));
    if (tail === null) {
      done.add(id); // trimmed
      continue;
    }
    const key = `${ctx.book}/${id}`;
    const d = resumeDecision(
      { id, workflow: wf, last: decodeFlowRecord(tail).rec, timeoutMs },
      now,
      resumedAt.get(key),
    );
    if (d.t === "done") done.add(id);
    if (d.t !== "resume") continue;
    try {
      await ctx.invokeAsync(wf, { $flow: "resume", id });
      if (resumedAt.size >= RESUMED_AT_ENTRIES_MAX) resumedAt.clear();
      resumedAt.set(key, now);
      resumed++;
    } catch (err) {
      ctx.logger.warn("resuming a workflow instance failed; the next scan tries again", {
        workflowId: id,
        error: errorInfo(err).message,
      });
    }
  }

  // Trim ended instances past their retention.
  for (const t of walked.trim) {
    try {
      await log.trim(stepsTag(t.id), t.below);
    } catch (err) {
      if (!isCode(err, "BOOK_EMPTY")) throw err;
    }
  }
  const trimmed = walked.trim.length;

  const pending = folded.state.pending.filter(([id]) => !done.has(id));
  const next: ScanState = { ...folded.state, gc: walked.gc, gcFloor: walked.gcFloor, pending };
  const trimBelow = intentsTrimPoint(next);
  let trimmedBelow = before.trimmed;
  if (Number.isFinite(trimBelow) && trimBelow > before.trimmed) {
    try {
      await log.trim(INTENTS_TAG, trimBelow);
      trimmedBelow = trimBelow;
    } catch (err) {
      if (!isCode(err, "BOOK_EMPTY")) throw err;
    }
  }
  const after: ScanState = { ...next, n: before.n + 1, trimmed: trimmedBelow };
  const { n: _n1, ...was } = before;
  const { n: _n2, ...is } = after;
  const changed = JSON.stringify(was) !== JSON.stringify(is);
  if (changed) {
    const cp: CheckpointRecord = { v: 1, k: "checkpoint", at: now, ...after };
    try {
      await log.condAppend([CHECKPOINT_TAG], encodeFlowRecord(cp), CHECKPOINT_TAG, after.n);
    } catch (err) {
      // Another scan of this book wrote its checkpoint first; it saw the same log.
      if (!isCode(err, "COND_APPEND_FAILED")) throw err;
    }
  }
  return { resumed, trimmed, pending: pending.length };
}

// ------------------------------------------------------------------ status, list, cancel

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function summaryOf(s: InstanceState, book: number): InstanceSummary {
  return {
    workflowId: s.id,
    workflow: s.workflow,
    book,
    status: s.status,
    startedAt: iso(s.start.rec.at),
    ...(s.end === undefined ? {} : { finishedAt: iso(s.end.rec.at) }),
    ...(s.until === undefined ? {} : { sleepingUntil: iso(s.until) }),
    ...(s.cancelRequested && s.end === undefined ? { cancelRequested: true } : {}),
  };
}

function stepOf(position: number, r: FlowRecord): StepSummary {
  const base = { position, kind: r.k, at: iso(r.at) };
  switch (r.k) {
    case "step":
      return {
        ...base,
        name: r.name,
        ok: r.ok,
        ...(r.ok ? { value: r.value } : { error: r.error }),
      };
    case "call":
      return { ...base, name: r.fn, ok: r.ok, ...(r.ok ? { value: r.value } : { error: r.error }) };
    case "spawn":
      return { ...base, name: r.fn, value: r.child };
    case "sleep":
      return { ...base, value: iso(r.until) };
    case "write":
      return { ...base, name: `${r.table}/${r.key}`, ok: true, value: { version: r.ver + 1 } };
    case "tver":
      return {
        ...base,
        kind: "write",
        name: `${String(r.table)}/${String(r.key)}`,
        ok: true,
        value: { version: r.ver + 1 },
      };
    case "cwrite":
      return { ...base, name: `${r.table}/${r.key}`, ok: false, value: { version: r.ver } };
    case "cancel":
      return { ...base, value: r.reason };
    default:
      return base;
  }
}

function parseId(input: unknown): string {
  return checkInstanceId((input as { id?: unknown } | null)?.id);
}

async function readInstance(
  log: LogBook,
  id: string,
): Promise<{ stream: Known[]; truncated: boolean }> {
  const stream = await readForward(log, stepsTag(id), 0, STATUS_STEPS_MAX + 1);
  if (stream.length === 0) {
    throw new FlowError(
      "NOT_FOUND",
      `no workflow instance ${id} in book ${String(log.book)} (never started, or trimmed after its retention)`,
    );
  }
  const truncated = stream.length > STATUS_STEPS_MAX;
  if (truncated) {
    const tail = await log.checkTail(stepsTag(id));
    stream.length = STATUS_STEPS_MAX;
    if (tail !== null) stream.push(decodeFlowRecord(tail));
  }
  return { stream, truncated };
}

async function status(ctx: FunctionContext, input: unknown): Promise<JsonValue> {
  const id = parseId(input);
  const { stream, truncated } = await readInstance(ctx.log, id);
  const s = instanceState(stream, Date.now());
  const end = s.end?.rec;
  const report: InstanceStatusReport = {
    ...summaryOf(s, ctx.book),
    input: s.start.rec.input,
    ...(end === undefined ? {} : end.ok ? { output: end.value } : { error: end.error }),
    steps: stream
      .slice(1)
      .filter((k) => k.rec.k !== "end")
      .map((k, i) => stepOf(i + 1, k.rec)),
    ...(truncated ? { stepsTruncated: true } : {}),
  };
  return report as unknown as JsonValue;
}

const STATUSES = new Set(["running", "sleeping", "succeeded", "failed", "cancelled"]);

async function list(ctx: FunctionContext, input: unknown): Promise<JsonValue> {
  const o = (input ?? {}) as { status?: unknown; workflow?: unknown; limit?: unknown };
  if (o.status !== undefined && (typeof o.status !== "string" || !STATUSES.has(o.status))) {
    throw new FlowError("INVALID_ARGUMENT", `status must be one of ${[...STATUSES].join(", ")}`);
  }
  const limit = o.limit ?? 100;
  if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > LIST_LIMIT_MAX) {
    throw new FlowError("INVALID_ARGUMENT", `limit must be an integer in [1, ${LIST_LIMIT_MAX}]`);
  }
  const now = Date.now();
  // Newest first by their latest intent. An ended instance is listed at its end record, its
  // start read from its own stream: the intents stream may already be trimmed past the start
  // of an instance still kept (the collector trims it below its cursors, which stop at ends).
  const listed = new Set<string>();
  const out: InstanceSummary[] = [];
  let read = 0;
  let before = SEQNUM_MAX as number;
  while (out.length < (limit as number) && read < LIST_RECORDS_MAX) {
    const r = await ctx.log.readPrev(INTENTS_TAG, before);
    if (r === null) break;
    read++;
    before = r.seqnum - 1;
    const k = decodeFlowRecord(r);
    if (k.rec.k !== "start" && k.rec.k !== "end") continue;
    const id = k.rec.id;
    if (listed.has(id)) continue;
    listed.add(id);
    let s: InstanceState;
    if (k.rec.k === "end") {
      const first = await ctx.log.readNext(stepsTag(id), 0);
      read++;
      if (first === null) continue; // past its retention: its stream is trimmed
      const start = decodeFlowRecord(first);
      if (start.rec.k !== "start") continue;
      if (o.workflow !== undefined && start.rec.wf !== o.workflow) continue;
      s = instanceState([start, k], now);
    } else {
      if (o.workflow !== undefined && k.rec.wf !== o.workflow) continue;
      const tail = await ctx.log.checkTail(stepsTag(id));
      s = instanceState(
        tail === null || tail.seqnum === k.seqnum ? [k] : [k, decodeFlowRecord(tail)],
        now,
      );
    }
    if (o.status !== undefined && s.status !== o.status) continue;
    out.push(summaryOf(s, ctx.book));
    if (before < 0) break;
  }
  return {
    workflows: out,
    ...(read >= LIST_RECORDS_MAX ? { truncated: true } : {}),
  } as unknown as JsonValue;
}

async function cancel(ctx: FunctionContext, input: unknown): Promise<JsonValue> {
  const id = parseId(input);
  const reasonIn = (input as { reason?: unknown } | null)?.reason ?? "";
  if (typeof reasonIn !== "string")
    throw new FlowError("INVALID_ARGUMENT", "reason must be a string");
  const reason = reasonIn.slice(0, CANCEL_REASON_CHARS_MAX);
  const first = await ctx.log.readNext(stepsTag(id), 0);
  if (first === null)
    throw new FlowError("NOT_FOUND", `no workflow instance ${id} in book ${ctx.book}`);
  const start = decodeFlowRecord(first).rec;
  const tail = await ctx.log.checkTail(stepsTag(id));
  const last = tail === null ? undefined : decodeFlowRecord(tail).rec;
  if (last?.k === "end") return { workflowId: id, cancelled: false, status: last.status };
  await ctx.log.append(
    [stepsTag(id)],
    encodeFlowRecord({ v: 1, k: "cancel", at: Date.now(), reason }),
  );
  // An execution that is running sees the cancel at its next operation; a sleeping or dead
  // one is resumed to see it now.
  if (start.k === "start") await ctx.invokeAsync(start.wf, { $flow: "resume", id });
  return { workflowId: id, cancelled: true, status: "running" };
}

/** Answers a caller's mistake as a refusal value rather than a function failure. */
function refusing(handler: (ctx: FunctionContext, input: unknown) => Promise<JsonValue>) {
  return async (ctx: FunctionContext, input: unknown): Promise<JsonValue> => {
    try {
      return await handler(ctx, input);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== "string" || !REFUSAL_CODES.has(code)) throw err;
      const refusal: FlowRefusal = { $error: { code, message: errorInfo(err).message } };
      return refusal as unknown as JsonValue;
    }
  };
}

let functions: readonly BokiFunction<never, unknown>[] | undefined;

/** The library's functions (the same objects every time, so loading them twice is harmless). */
export function flowSystemFunctions(): readonly BokiFunction<never, unknown>[] {
  functions ??= [
    defineFunction({ name: FLOW_FUNCTIONS.register, book: REGISTRY_BOOK, handler: register }),
    defineFunction({
      name: FLOW_FUNCTIONS.recover,
      book: REGISTRY_BOOK,
      schedule: { everyMs: RECOVERY_INTERVAL_MS },
      handler: (ctx) => recover(ctx),
    }),
    defineFunction({ name: FLOW_FUNCTIONS.scan, handler: (ctx) => scan(ctx) }),
    defineFunction({ name: FLOW_FUNCTIONS.status, handler: refusing(status) }),
    defineFunction({ name: FLOW_FUNCTIONS.list, handler: refusing(list) }),
    defineFunction({ name: FLOW_FUNCTIONS.cancel, handler: refusing(cancel) }),
  ] as unknown as readonly BokiFunction<never, unknown>[];
  return functions;
}
