/**
 * Applying an instance's requests over a LogBook. Any process may apply any request: the
 * order is machine.ts's, each result is a conditional append at its position in the
 * instance's results stream, and a request's messages are dispatched (idempotently, under
 * ids derived from the request's) before its result is logged, so an executor that dies
 * between the two leaves nothing half done for the next one. A caller applies its own
 * request when its turn comes; it applies another caller's only once that request has
 * waited `EXECUTOR_GRACE_MS` (its caller may be gone).
 *
 * A handler may therefore run more than once for one request (by racing executors, or
 * again after a crash); exactly one run's state, output and messages count. Handlers keep
 * their effects to the context (state, send, call).
 */
import type { FunctionLogger, JsonValue, LogBook, LogRecord, Tag } from "../index.js";
import { toJsonText } from "../index.js";
import { ObjectError, errorInfo, RequestFailedError } from "./errors.js";
import {
  CALLS_PER_REQUEST_MAX,
  DEADLINE_MARGIN_MS,
  DEFERRED_MAX,
  EXECUTOR_GRACE_MS,
  INBOX_SCAN_MAX,
  MESSAGES_PER_REQUEST_MAX,
  NAME_CHARS_MAX,
  REQUESTS_CACHED_BYTES_MAX,
  REQUESTS_CACHED_MAX,
  RESULT_WAIT_MS_MAX,
  STATE_BYTES_MAX,
} from "./limits.js";
import { admission, appliedOf, nextToApply, type Applied, type Request } from "./machine.js";
import {
  decodeRecord,
  encodeRecord,
  inboxTag,
  requestTag,
  resultOfTag,
  resultsTag,
  type Message,
  type Outcome,
  type RequestRecord,
  type ResultRecord,
  type TxnPart,
} from "./records.js";

/** The `req` of a result whose request was applied directly, not from the inbox. */
const DIRECT_SEQNUM = -1;

/** What a handler gets. */
export interface ObjectContext<S = JsonValue> {
  readonly object: string;
  readonly key: string;
  readonly handler: string;
  /** The request's id (the same in every run of it). */
  readonly requestId: string;
  /** The transaction this request prepares, if any. */
  readonly transaction: string | undefined;
  readonly state: {
    /** The instance's state (undefined: none yet). A copy: change it with `set`. */
    get(): S | undefined;
    set(value: S): void;
    clear(): void;
  };
  /** Sends a request to another instance, exactly once, when this request commits. */
  send(
    object: string,
    key: string,
    handler: string,
    input?: unknown,
    options?: { delayMs?: number },
  ): void;
  /** Calls another instance and waits for its output (not inside a transaction). */
  call<O = JsonValue>(object: string, key: string, handler: string, input?: unknown): Promise<O>;
  readonly logger: FunctionLogger;
}

export type ObjectHandler = (ctx: ObjectContext<never>, input: never) => unknown;

export interface HandlerDef {
  readonly shared: boolean;
  readonly fn: (ctx: ObjectContext, input: JsonValue) => unknown;
}

export interface ObjectDef {
  readonly name: string;
  readonly handlers: ReadonlyMap<string, HandlerDef>;
}

/** The object definitions loaded in this thread (by any copy of the library). */
const DEFINITIONS_KEY = Symbol.for("boki-ts.objects.definitions");
export function definitions(): Map<string, ObjectDef> {
  const g = globalThis as Record<symbol, unknown>;
  let m = g[DEFINITIONS_KEY] as Map<string, ObjectDef> | undefined;
  if (m === undefined) {
    m = new Map();
    g[DEFINITIONS_KEY] = m;
  }
  return m;
}

/** What an executor needs from the function it runs in. */
export interface ObjectEnv {
  readonly log: LogBook;
  readonly logger: FunctionLogger;
  /** When the invocation running it times out, ms since the epoch. */
  readonly deadline: number;
  now(): number;
  /** Starts a function without waiting (the runtime records it: it runs at least once). */
  invokeAsync(name: string, input: JsonValue): Promise<unknown>;
  /** Function names of the library's own functions. */
  readonly drainFunction: string;
  readonly deliverWorkflow: string;
}

function isCondFailure(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "COND_APPEND_FAILED";
}

export function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > NAME_CHARS_MAX) {
    throw new ObjectError(
      "INVALID_ARGUMENT",
      `${what} must be a string of 1 to ${NAME_CHARS_MAX} characters`,
    );
  }
  return value;
}

function json(value: unknown, what: string): JsonValue {
  return JSON.parse(toJsonText(value ?? null, what, "INVALID_ARGUMENT")) as JsonValue;
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

export interface NewRequest {
  readonly id: string;
  readonly handler: string;
  readonly input: JsonValue;
  readonly txn?: TxnPart;
}

/** Appends a request to an instance's inbox, once per id; resolves to its inbox seqnum. */
export async function submit(
  env: ObjectEnv,
  object: string,
  key: string,
  req: NewRequest,
): Promise<number> {
  const rec: RequestRecord = {
    v: 1,
    k: "req",
    id: req.id,
    handler: req.handler,
    input: req.input,
    at: env.now(),
    ...(req.txn === undefined ? {} : { txn: req.txn }),
  };
  const idTag = requestTag(object, key, req.id);
  try {
    return await env.log.condAppend([inboxTag(object, key), idTag], encodeRecord(rec), idTag, 0);
  } catch (err) {
    if (!isCondFailure(err)) throw err;
    const r = await env.log.readNext(idTag, 0);
    if (r === null)
      throw new Error(`objects invariant: request ${req.id} was taken but reads as empty`);
    return r.seqnum;
  }
}

function asRequest(r: LogRecord): Request {
  return decodeRecord<RequestRecord>(r, "req");
}

/**
 * Inbox requests read, by book, inbox tag and the seqnum read from: the first request at or
 * after it. An entry never goes stale (a later append gets a later seqnum than any record
 * there), so executors that look at an instance again (a deferred request's waiters, racing
 * callers) read each request from the log once per thread. Evicted least recently used
 * first, with a second chance: a hit marks its entry (`used`) instead of reordering the map,
 * and eviction moves marked entries back, clearing the mark.
 */
const requestsRead = new Map<string, { req: Request; bytes: number; used: boolean }>();
let requestsReadBytes = 0;

function forget(k: string): void {
  const e = requestsRead.get(k);
  if (e === undefined) return;
  requestsRead.delete(k);
  requestsReadBytes -= e.bytes;
}

async function readRequest(log: LogBook, tag: Tag, from: number): Promise<Request | null> {
  const k = `${String(log.book)}:${String(tag)}:${from}`;
  const hit = requestsRead.get(k);
  if (hit !== undefined) {
    hit.used = true;
    return hit.req;
  }
  const r = await log.readNext(tag, from);
  if (r === null) return null;
  const req = asRequest(r);
  const keys = r.seqnum === from ? [k] : [k, `${String(log.book)}:${String(tag)}:${r.seqnum}`];
  for (const key of keys) {
    forget(key);
    requestsRead.set(key, { req, bytes: r.data.byteLength, used: false });
    requestsReadBytes += r.data.byteLength;
  }
  while (requestsRead.size > REQUESTS_CACHED_MAX || requestsReadBytes > REQUESTS_CACHED_BYTES_MAX) {
    const [oldest, e] = requestsRead.entries().next().value!;
    if (e.used) {
      e.used = false;
      requestsRead.delete(oldest);
      requestsRead.set(oldest, e);
    } else forget(oldest);
  }
  return req;
}

async function readInbox(
  log: LogBook,
  object: string,
  key: string,
  from: number,
): Promise<Request[]> {
  const tag = inboxTag(object, key);
  const out: Request[] = [];
  for (let r = await readRequest(log, tag, from); r !== null && out.length < INBOX_SCAN_MAX;) {
    out.push(r);
    if (out.length < INBOX_SCAN_MAX) r = await readRequest(log, tag, r.seqnum + 1);
  }
  return out;
}

async function readDeferred(
  log: LogBook,
  object: string,
  key: string,
  seqnums: readonly number[],
): Promise<Request[]> {
  const tag = inboxTag(object, key);
  return Promise.all(
    seqnums.map(async (s) => {
      const r = await readRequest(log, tag, s);
      if (r === null || r.seqnum !== s)
        throw new Error(`objects invariant: deferred request ${s} of ${object}/${key} is gone`);
      return r;
    }),
  );
}

export async function latestResult(
  log: LogBook,
  object: string,
  key: string,
): Promise<(ResultRecord & { seqnum: number }) | undefined> {
  const r = await log.checkTail(resultsTag(object, key));
  return r === null ? undefined : decodeRecord<ResultRecord>(r, "res");
}

/** Sends messages: into the targets' inboxes (then a drain of each), or later through a workflow. */
async function dispatch(env: ObjectEnv, messages: readonly Message[]): Promise<void> {
  for (const m of messages) {
    if (m.notBefore !== undefined && m.notBefore > env.now()) {
      await env.invokeAsync(env.deliverWorkflow, {
        $flow: "start",
        id: `deliver/${m.id}`,
        input: m as unknown as JsonValue,
      });
      continue;
    }
    await submit(env, m.object, m.key, { id: m.id, handler: m.handler, input: m.input });
    await env.invokeAsync(env.drainFunction, { object: m.object, key: m.key });
  }
}

/** Runs a handler on a copy of the state; what it did, or what it threw. */
async function runHandler(
  env: ObjectEnv,
  def: ObjectDef,
  object: string,
  key: string,
  r: Request,
  state: JsonValue | undefined,
  readOnly: boolean,
  direct = false,
): Promise<
  | { ok: true; value: JsonValue; state: JsonValue | undefined; messages: Message[] }
  | { ok: false; error: Outcome & { ok: false } }
  | { ok: false; refused: true }
> {
  const h = def.handlers.get(r.handler);
  if (h === undefined) {
    return {
      ok: false,
      error: {
        ok: false,
        error: {
          name: "ObjectError",
          code: "HANDLER_NOT_FOUND",
          message: `object ${object} has no handler ${JSON.stringify(r.handler)}`,
        },
      },
    };
  }
  let current = clone(state);
  let changed = false;
  let refused = false;
  const messages: Message[] = [];
  let calls = 0;
  const inTxn = r.txn?.op === "prepare" ? r.txn.id : undefined;
  const ctx: ObjectContext = {
    object,
    key,
    handler: r.handler,
    requestId: r.id,
    transaction: inTxn,
    state: {
      get: () => clone(current),
      set: (v) => {
        if (readOnly)
          throw new ObjectError(
            "READ_ONLY",
            `handler ${r.handler} of ${object} is shared (read-only)`,
          );
        current = json(v, `the state of ${object}/${key}`);
        changed = true;
      },
      clear: () => {
        if (readOnly)
          throw new ObjectError(
            "READ_ONLY",
            `handler ${r.handler} of ${object} is shared (read-only)`,
          );
        current = undefined;
        changed = true;
      },
    },
    send: (to, toKey, handler, input, options) => {
      if (messages.length >= MESSAGES_PER_REQUEST_MAX) {
        throw new ObjectError(
          "INVALID_ARGUMENT",
          `a request may send at most ${MESSAGES_PER_REQUEST_MAX} messages (MESSAGES_PER_REQUEST_MAX)`,
        );
      }
      const delay = options?.delayMs ?? 0;
      if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) {
        throw new ObjectError(
          "INVALID_ARGUMENT",
          `delayMs must be a number ≥ 0, got ${String(delay)}`,
        );
      }
      messages.push({
        object: checkName(to, "an object name"),
        key: checkName(toKey, "a key"),
        handler: checkName(handler, "a handler name"),
        input: json(input, `the input of ${to}.${handler}`),
        id: `${r.id}/m${messages.length}`,
        ...(delay > 0 ? { notBefore: env.now() + delay } : {}),
      });
    },
    call: async <O>(to: string, toKey: string, handler: string, input?: unknown): Promise<O> => {
      if (direct) {
        // A call's effect would stand even if this run's result did not land.
        refused = true;
        throw new ObjectError("INVALID_ARGUMENT", "a call is made through the inbox");
      }
      if (inTxn !== undefined) {
        throw new ObjectError(
          "INVALID_ARGUMENT",
          "a handler inside a transaction cannot call other instances (their effects would escape it); send instead",
        );
      }
      if (++calls > CALLS_PER_REQUEST_MAX) {
        throw new ObjectError(
          "INVALID_ARGUMENT",
          `a request may make at most ${CALLS_PER_REQUEST_MAX} calls (CALLS_PER_REQUEST_MAX)`,
        );
      }
      const out = await request(env, checkName(to, "an object name"), checkName(toKey, "a key"), {
        id: `${r.id}/c${calls}`,
        handler: checkName(handler, "a handler name"),
        input: json(input, `the input of ${to}.${handler}`),
      });
      if (!out.ok) throw new RequestFailedError(`call of ${to}/${toKey}.${handler}`, out.error);
      return out.value as O;
    },
    logger: env.logger,
  };
  try {
    const out = await h.fn(ctx, clone(r.input));
    if (refused) return { ok: false, refused: true };
    const value = json(out, `the output of ${object}.${r.handler}`);
    const next = changed ? current : state;
    if (next !== undefined && Buffer.byteLength(JSON.stringify(next)) > STATE_BYTES_MAX) {
      throw new ObjectError(
        "STATE_TOO_LARGE",
        `the state of ${object}/${key} would be over ${STATE_BYTES_MAX} bytes (STATE_BYTES_MAX)`,
      );
    }
    return { ok: true, value, state: next, messages };
  } catch (err) {
    if (refused) return { ok: false, refused: true };
    return { ok: false, error: { ok: false, error: errorInfo(err) } };
  }
}

function refusal(code: string, message: string): Outcome {
  return { ok: false, error: { name: "ObjectError", code, message } };
}

/** The result of applying `next.r` after `a`; its messages are dispatched first. */
async function applyOne(
  env: ObjectEnv,
  def: ObjectDef | undefined,
  object: string,
  key: string,
  a: Applied,
  next: Extract<ReturnType<typeof nextToApply>, { t: "apply" }>,
  /** Direct (see `applyDirect`): undefined when the run called or sent, which needs the inbox. */
  direct = false,
): Promise<ResultRecord | undefined> {
  const r = next.r;
  const base = {
    v: 1 as const,
    k: "res" as const,
    j: a.j + 1,
    id: r.id,
    req: r.seqnum,
    at: env.now(),
    cursor: next.cursor,
    deferred: next.deferred,
  };
  const keep = { ...(a.state === undefined ? {} : { state: a.state }), lock: a.lock };
  if (next.verdict === "die") {
    return {
      ...base,
      ...keep,
      outcome: refusal(
        "TXN_DIED",
        `transaction ${r.txn?.id} met the lock of an older transaction on ${object}/${key} (wait-die); retry it`,
      ),
    };
  }
  if (next.verdict === "busy") {
    return {
      ...base,
      ...keep,
      outcome: refusal(
        "OBJECT_BUSY",
        `more than ${DEFERRED_MAX} requests wait behind a transaction on ${object}/${key}`,
      ),
    };
  }
  if (r.txn?.op === "prepare" && r.txn.deadline !== undefined && base.at > r.txn.deadline) {
    // Its coordinator may have given up on it and aborted already: it must lock nothing.
    return {
      ...base,
      ...keep,
      outcome: refusal(
        "TIMEOUT",
        `the prepare of transaction ${r.txn.id} on ${object}/${key} came to be applied after its deadline; it locks nothing`,
      ),
    };
  }
  const mine = a.lock !== null && r.txn !== undefined && a.lock.txn === r.txn.id;
  if (r.txn?.op === "commit") {
    if (!mine) return { ...base, ...keep, outcome: { ok: true, value: "nothing held" } };
    await dispatch(env, a.lock.messages);
    const state = a.lock.state;
    return {
      ...base,
      ...(state === undefined ? {} : { state }),
      lock: null,
      outcome: { ok: true, value: "committed" },
    };
  }
  if (r.txn?.op === "abort") {
    return {
      ...base,
      ...(a.state === undefined ? {} : { state: a.state }),
      lock: mine ? null : a.lock,
      outcome: { ok: true, value: mine ? "aborted" : "nothing held" },
    };
  }
  if (def === undefined)
    return {
      ...base,
      ...keep,
      outcome: refusal("OBJECT_NOT_FOUND", `no object named ${JSON.stringify(object)} is loaded`),
    };
  const prepared = r.txn?.op === "prepare";
  const start = mine ? a.lock.state : a.state;
  const ran = await runHandler(
    env,
    def,
    object,
    key,
    r,
    start,
    def.handlers.get(r.handler)?.shared === true,
    direct,
  );
  if (!ran.ok) return "refused" in ran ? undefined : { ...base, ...keep, outcome: ran.error };
  if (prepared) {
    const lock = {
      txn: r.txn.id,
      ts: r.txn.ts,
      ...(ran.state === undefined ? {} : { state: ran.state }),
      messages: [...(mine ? a.lock.messages : []), ...ran.messages],
    };
    return {
      ...base,
      ...(a.state === undefined ? {} : { state: a.state }),
      lock,
      outcome: { ok: true, value: ran.value },
    };
  }
  if (direct && ran.messages.length > 0) return undefined;
  await dispatch(env, ran.messages);
  return {
    ...base,
    ...(ran.state === undefined ? {} : { state: ran.state }),
    lock: a.lock,
    outcome: { ok: true, value: ran.value },
  };
}

function leftMs(env: ObjectEnv): number {
  return env.deadline - env.now() - DEADLINE_MARGIN_MS;
}

async function waitForResult(
  env: ObjectEnv,
  object: string,
  key: string,
  after: number,
  ms: number,
): Promise<void> {
  const wait = Math.max(1, Math.floor(Math.min(ms, RESULT_WAIT_MS_MAX, leftMs(env))));
  await env.log.readNextBlocking(resultsTag(object, key), after, wait);
}

/**
 * Applies the instance's requests in order until request `id` has its result (or, with
 * `id` undefined, until nothing is left that can be applied now); resolves to that result.
 */
export async function drain(
  env: ObjectEnv,
  object: string,
  key: string,
  id: string | undefined,
): Promise<ResultRecord | undefined> {
  const def = definitions().get(object);
  for (;;) {
    if (leftMs(env) <= 0) {
      if (id === undefined) return undefined;
      throw new ObjectError(
        "TIMEOUT",
        `request ${id} to ${object}/${key} has no result yet; it stays and is applied later`,
      );
    }
    const last = await latestResult(env.log, object, key);
    if (id !== undefined) {
      const own = await resultOf(env.log, object, key, id, last);
      if (own !== undefined) return own;
    }
    const a = appliedOf(last);
    let deferredReqs = await readDeferred(env.log, object, key, a.deferred);
    let inbox = await readInbox(env.log, object, key, a.cursor);
    let next = nextToApply(a, deferredReqs, inbox, DEFERRED_MAX);
    // A request may have been applied directly (`applyDirect`) while a copy of it went into
    // the inbox: it is passed over, and leaves the deferred list with the next result.
    const passed = new Set<number>();
    while (next.t === "apply" && (await appliedBefore(env.log, object, key, next.r, last))) {
      const r = next.r;
      passed.add(r.seqnum);
      deferredReqs = deferredReqs.filter((x) => x !== r);
      inbox = inbox.filter((x) => x !== r);
      next = nextToApply(a, deferredReqs, inbox, DEFERRED_MAX);
    }
    if (passed.size > 0 && next.t !== "idle")
      next = { ...next, deferred: next.deferred.filter((x) => !passed.has(x)) };
    const after = last === undefined ? 0 : last.seqnum + 1;
    if (next.t === "idle") {
      if (id === undefined) return undefined;
      await waitForResult(env, object, key, after, 20);
      continue;
    }
    if (next.t === "wait") {
      // Everything waits for a transaction's lock: its commit or abort comes as a request.
      if (id === undefined) return undefined;
      await env.log.readNextBlocking(
        inboxTag(object, key),
        next.cursor,
        Math.max(1, Math.floor(Math.min(RESULT_WAIT_MS_MAX, leftMs(env)))),
      );
      continue;
    }
    const age = env.now() - next.r.at;
    if (id !== undefined && next.r.id !== id && age < EXECUTOR_GRACE_MS) {
      await waitForResult(env, object, key, after, EXECUTOR_GRACE_MS - age);
      continue;
    }
    const res = await applyOne(env, def, object, key, a, next);
    if (res === undefined) throw new Error("objects invariant: only a direct run is refused");
    try {
      await env.log.condAppend(
        [resultsTag(object, key), resultOfTag(object, key, res.id)],
        encodeRecord(res),
        resultsTag(object, key),
        res.j,
      );
    } catch (err) {
      if (!isCondFailure(err)) throw err;
      continue; // another executor applied it first
    }
    if (res.id === id) return res;
  }
}

/** Request `id`'s result if it has one (`last`: the instance's newest result, read before). */
async function resultOf(
  log: LogBook,
  object: string,
  key: string,
  id: string,
  last: ResultRecord | undefined,
): Promise<ResultRecord | undefined> {
  if (last === undefined) return undefined;
  if (last.id === id) return last;
  const own = await log.checkTail(resultOfTag(object, key, id));
  return own === null ? undefined : decodeRecord<ResultRecord>(own, "res");
}

/**
 * Whether inbox request `r` has a result at or before `last` already: it was applied
 * directly. (A request applied from the inbox is behind the cursor or off the deferred list,
 * so it is no candidate.) Every executor that read `last` answers the same.
 */
async function appliedBefore(
  log: LogBook,
  object: string,
  key: string,
  r: Request,
  last: (ResultRecord & { seqnum: number }) | undefined,
): Promise<boolean> {
  if (last === undefined) return false;
  const res = await log.checkTail(resultOfTag(object, key, r.id));
  return res !== null && res.seqnum <= last.seqnum;
}

/**
 * A request applied without going through the inbox, when the instance has nothing waiting:
 * its result, which carries the request's tag too (a later submit of the id finds it taken),
 * is the conditional append at the next position. One append instead of two. Undefined when
 * the instance is not idle, a lock makes the request wait, the run called another instance or
 * sent a message (their effects would stand even if this result did not land, and a later run
 * at another position could make them differently; a transaction's prepare keeps its messages
 * in the lock and a commit sends the lock's, which are the same wherever it lands), or another
 * result took the position first: the request then goes through the inbox.
 */
async function applyDirect(
  env: ObjectEnv,
  object: string,
  key: string,
  req: NewRequest,
): Promise<ResultRecord | undefined> {
  const last = await latestResult(env.log, object, key);
  const own = await resultOf(env.log, object, key, req.id, last);
  if (own !== undefined) return own;
  const a = appliedOf(last);
  if (a.deferred.length > 0) return undefined;
  if ((await env.log.readNext(inboxTag(object, key), a.cursor)) !== null) return undefined;
  const r: Request = {
    v: 1,
    k: "req",
    id: req.id,
    handler: req.handler,
    input: req.input,
    at: env.now(),
    ...(req.txn === undefined ? {} : { txn: req.txn }),
    seqnum: DIRECT_SEQNUM,
  };
  if (admission(a.lock, r) !== "apply") return undefined;
  const res = await applyOne(
    env,
    definitions().get(object),
    object,
    key,
    a,
    { t: "apply", r, verdict: "run", cursor: a.cursor, deferred: [] },
    true,
  );
  if (res === undefined) return undefined;
  try {
    await env.log.condAppend(
      [resultsTag(object, key), resultOfTag(object, key, res.id), requestTag(object, key, res.id)],
      encodeRecord(res),
      resultsTag(object, key),
      res.j,
    );
  } catch (err) {
    if (!isCondFailure(err)) throw err;
    return undefined;
  }
  return res;
}

/** Applies a request (directly when it can, else through the inbox) and waits for its outcome. */
export async function request(
  env: ObjectEnv,
  object: string,
  key: string,
  req: NewRequest,
): Promise<Outcome> {
  const direct = await applyDirect(env, object, key, req);
  if (direct !== undefined) return direct.outcome;
  await submit(env, object, key, req);
  const res = await drain(env, object, key, req.id);
  return res!.outcome;
}

/** A shared (read-only) handler: runs on the newest committed state, appends nothing. */
export async function readOnly(
  env: ObjectEnv,
  object: string,
  key: string,
  handler: string,
  input: JsonValue,
): Promise<Outcome> {
  const def = definitions().get(object);
  if (def === undefined)
    return refusal("OBJECT_NOT_FOUND", `no object named ${JSON.stringify(object)} is loaded`);
  const last = await latestResult(env.log, object, key);
  const r: Request = { v: 1, k: "req", id: "read", handler, input, at: env.now(), seqnum: 0 };
  const ran = await runHandler(env, def, object, key, r, last?.state, true);
  if (ran.ok) return { ok: true, value: ran.value };
  if ("refused" in ran) throw new Error("objects invariant: a read-only run is never direct");
  return ran.error;
}
