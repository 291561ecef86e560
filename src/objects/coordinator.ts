/**
 * Coordinator functions (after "Distributed Transactions on Serverless Stateful Functions",
 * DEBS 2021), as workflows of `boki-ts/flow`: every call a coordinator makes is a workflow
 * operation with a request id derived from the instance's, so a coordinator that crashes
 * mid-protocol is resumed from its log and finishes the protocol without repeating a call.
 *
 * - A **transaction** prepares each call on its instance (two-phase locking: the instance
 *   runs the handler on its state, keeps the new state and the messages aside and holds a
 *   lock); if every vote is yes it commits (the instances apply what they kept, release the
 *   lock and send the messages), else it aborts (they discard it). Locks follow wait-die, so
 *   deadlocks end: a younger transaction meeting an older one's lock dies, and the
 *   coordinator retries it (a bounded number of times) or reports a retryable outcome.
 *   Outcome-dependent calls run after: on success, on failure, on a retryable failure.
 * - A **saga** runs steps in order, each with a compensation; when a step fails, the
 *   compensations of the steps that succeeded run in reverse order, exactly once, including
 *   for a step whose outcome came late (the coordinator waits for every step's definite
 *   outcome before it decides).
 */
import type { JsonValue } from "../index.js";
import {
  CallFailedError,
  defineWorkflow,
  type StepContext,
  type Workflow,
  type WorkflowContext,
} from "../flow/index.js";
import { errorInfo, ObjectError } from "./errors.js";
import { definitions, request, type ObjectEnv } from "./executor.js";
import { objectEnv } from "./object.js";
import type { ErrorInfo, Outcome, TxnPart } from "./records.js";

/** One call on an instance. */
export interface Call {
  readonly object: string;
  readonly key: string;
  readonly handler: string;
  /** A JSON value. */
  readonly input?: unknown;
}

export interface TransactionPlan {
  readonly calls: readonly Call[];
  /** Sent (exactly once) after a commit. */
  readonly onSuccess?: readonly Call[];
  /** Sent after an abort for a handler's failure. */
  readonly onFailure?: readonly Call[];
  /** Sent after an abort that a retry could fix (wait-die, timeouts), once the retries are spent. */
  readonly onRetryable?: readonly Call[];
}

export type TransactionOutcome =
  | {
      readonly status: "committed";
      readonly outputs: readonly JsonValue[];
      readonly attempts: number;
    }
  | {
      readonly status: "aborted";
      readonly retryable: boolean;
      readonly error: ErrorInfo;
      readonly attempts: number;
    };

/** Default retries of a transaction that died (wait-die) or timed out. */
export const TXN_RETRIES_DEFAULT = 5;
/** Most calls one transaction or saga may make. */
export const COORDINATED_CALLS_MAX = 64;
/** How long a prepare may wait for its lock, ms: after it, it votes TIMEOUT. */
export const PREPARE_TIMEOUT_MS = 5_000;
/**
 * How long after a prepare's deadline its coordinator waits before aborting a transaction
 * with a prepare of unknown outcome, ms: a prepare applied after its deadline (by the
 * applying executor's clock) locks nothing, and this covers the skew between that clock and
 * the coordinator's.
 */
export const PREPARE_CLOCK_MARGIN_MS = 500;
/** Attempts at delivering a commit or an abort whose outcome is not known yet. */
const DECISION_ATTEMPTS_MAX = 100;
/** First pause before a transaction is retried, ms (doubling, with the attempt). */
const TXN_RETRY_PAUSE_MS = 5;
/** Attempts at a saga step or compensation whose outcome is not known yet (TIMEOUT). */
const UNKNOWN_OUTCOME_ATTEMPTS_MAX = 20;
/** Attempts at a compensation that fails, before the saga reports it. */
const COMPENSATION_ATTEMPTS_MAX = 5;

/** Whether a value is an array (without narrowing its type, which would widen it to any[]). */
function isList(v: unknown): boolean {
  return Array.isArray(v);
}

function checkCalls(calls: readonly Call[] | undefined, what: string): readonly Call[] {
  if (calls === undefined) return [];
  if (!isList(calls) || calls.length > COORDINATED_CALLS_MAX) {
    throw new ObjectError(
      "INVALID_ARGUMENT",
      `${what} must be an array of at most ${COORDINATED_CALLS_MAX} calls`,
    );
  }
  for (const c of calls) {
    if (
      typeof c?.object !== "string" ||
      typeof c.key !== "string" ||
      typeof c.handler !== "string"
    ) {
      throw new ObjectError(
        "INVALID_ARGUMENT",
        `${what}: a call is { object, key, handler, input? }`,
      );
    }
  }
  return calls;
}

function isRetryableCode(code: string | undefined): boolean {
  return code === "TXN_DIED" || code === "TIMEOUT" || code === "OBJECT_BUSY";
}

/**
 * One request on an instance, as a workflow operation: exactly once by its id. The object's
 * function answers the request's outcome; when the function itself fails (it ran out of
 * time waiting for the request's turn, its worker was lost, the node was overloaded), the
 * request may still be applied later, so the outcome is TIMEOUT (unknown), unless the call
 * was refused before it was submitted (INVALID_ARGUMENT).
 */
async function callObject(
  wf: WorkflowContext,
  c: Call,
  id: string,
  txn?: TxnPart,
): Promise<Outcome> {
  try {
    return await wf.invoke<Outcome>(c.object, {
      key: c.key,
      handler: c.handler,
      input: (c.input ?? null) as JsonValue,
      id,
      reply: "outcome",
      ...(txn === undefined ? {} : { txn }),
    });
  } catch (err) {
    if (!(err instanceof CallFailedError)) throw err;
    const code = err.error.code === "INVALID_ARGUMENT" ? "INVALID_ARGUMENT" : "TIMEOUT";
    return {
      ok: false,
      error: {
        name: "ObjectError",
        code,
        message: `call of ${c.object}/${c.key}.${c.handler} failed (${err.error.code ?? err.error.name}: ${err.error.message})`,
      },
    };
  }
}

/** Whether every call's object is defined in this thread, so the coordinator can apply its requests itself. */
function allLocal(calls: readonly Call[]): boolean {
  const defs = definitions();
  return calls.every((c) => defs.has(c.object));
}

/** The executor's environment inside a step of coordinator `wf`. */
function stepEnv(wf: WorkflowContext, s: StepContext): ObjectEnv {
  return objectEnv({
    log: s.log,
    logger: wf.logger,
    deadline: s.deadline,
    invokeAsync: (name, input) => s.invokeAsync(name, input),
  });
}

/**
 * One request applied by the coordinator itself, over its own LogBook (the instances live in
 * its book, as when it invokes them): the same request, by the same id, as an invocation of
 * the object's function would make, without the invocation. Anything but the request's
 * outcome (its time ran out, a log error) is an unknown outcome: TIMEOUT, as `callObject`.
 */
async function requestHere(env: ObjectEnv, c: Call, id: string, txn?: TxnPart): Promise<Outcome> {
  try {
    return await request(env, c.object, c.key, {
      id,
      handler: c.handler,
      input: (c.input ?? null) as JsonValue,
      ...(txn === undefined ? {} : { txn }),
    });
  } catch (err) {
    const e = errorInfo(err);
    return {
      ok: false,
      error: {
        name: "ObjectError",
        code: e.code === "INVALID_ARGUMENT" ? "INVALID_ARGUMENT" : "TIMEOUT",
        message: `call of ${c.object}/${c.key}.${c.handler} failed (${e.code ?? e.name}: ${e.message})`,
      },
    };
  }
}

/** A step whose function never fails (its outcomes are data): one attempt. */
const ONCE = { retry: { maxAttempts: 1 } } as const;

/** A decided request (a commit or an abort): asked again, by the same id, until it is applied. */
async function decided(wf: WorkflowContext, c: Call, id: string, txn: TxnPart): Promise<void> {
  for (let i = 0; ; i++) {
    const out = await callObject(wf, c, id, txn);
    if (out.ok || out.error.code !== "TIMEOUT") return;
    if (i + 1 >= DECISION_ATTEMPTS_MAX) {
      throw new ObjectError(
        "TIMEOUT",
        `the ${txn.op} of transaction ${txn.id} on ${c.object}/${c.key} was not applied after ${DECISION_ATTEMPTS_MAX} attempts (DECISION_ATTEMPTS_MAX); its lock stays until it is`,
      );
    }
    await wf.sleep(Math.min(1000, 50 * 2 ** i));
  }
}

/** Sends calls without waiting for them (they run exactly once, by their ids). */
async function sendAll(wf: WorkflowContext, calls: readonly Call[], tag: string): Promise<void> {
  await Promise.all(calls.map((c, i) => callObject(wf, c, `${wf.id}:${tag}${i}`)));
}

/** Runs a transaction's plan inside a workflow; see the module comment. */
export async function runTransaction(
  wf: WorkflowContext,
  planIn: TransactionPlan,
  options: { retries?: number } = {},
): Promise<TransactionOutcome> {
  const calls = checkCalls(planIn.calls, "calls");
  if (calls.length === 0)
    throw new ObjectError("INVALID_ARGUMENT", "a transaction needs at least one call");
  const retries = options.retries ?? TXN_RETRIES_DEFAULT;
  const instances = [
    ...new Map(calls.map((c) => [`${c.object.length}:${c.object}/${c.key}`, c])).values(),
  ];
  let last: { retryable: boolean; error: ErrorInfo } | undefined;
  const here = allLocal([...calls, ...instances]);
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    const txnId = `${wf.id}#${attempt}`;
    const prepareOf = (ts: number): TxnPart => ({
      id: txnId,
      ts,
      op: "prepare",
      deadline: ts + PREPARE_TIMEOUT_MS,
    });
    let ts: number;
    let votes: readonly Outcome[];
    if (here) {
      // The prepares applied here, in one step that logs their time and votes. A step run
      // again after a crash finds its requests by their ids (their votes stand) and logs a
      // later time: the deadline waited for below is then later than theirs, never earlier.
      const p = await wf.step(
        `prepare ${attempt}`,
        async (s) => {
          const t = Date.now();
          const env = stepEnv(wf, s);
          const out = await Promise.all(
            calls.map((c, i) => requestHere(env, c, `${txnId}:p${i}`, prepareOf(t))),
          );
          return { ts: t, votes: out } as unknown as JsonValue;
        },
        ONCE,
      );
      ({ ts, votes } = p as unknown as { ts: number; votes: Outcome[] });
    } else {
      ts = await wf.now();
      votes = await Promise.all(
        calls.map((c, i) => callObject(wf, c, `${txnId}:p${i}`, prepareOf(ts))),
      );
    }
    const failed = votes.find((v) => !v.ok) as (Outcome & { ok: false }) | undefined;
    const decision = failed === undefined ? "commit" : "abort";
    if (failed !== undefined && failed.error.code === "TIMEOUT") {
      // A prepare not applied yet can still be; applied after its deadline it locks nothing.
      await wf.sleepUntil(prepareOf(ts).deadline! + PREPARE_CLOCK_MARGIN_MS);
    }
    const part: TxnPart = { id: txnId, ts, op: decision };
    const decisionOf = (c: Call): Call => ({ ...c, handler: `$${decision}` });
    // Applied here in one step, the decisions not applied yet (unknown outcome) asked again
    // through the object's function until they are.
    const pending = here
      ? await wf.step<number[]>(
          `${decision} ${attempt}`,
          async (s) => {
            const env = stepEnv(wf, s);
            const out = await Promise.all(
              instances.map((c, i) =>
                requestHere(env, decisionOf(c), `${txnId}:${decision}${i}`, part),
              ),
            );
            return out.flatMap((o, i) => (!o.ok && o.error.code === "TIMEOUT" ? [i] : []));
          },
          ONCE,
        )
      : instances.map((_, i) => i);
    await Promise.all(
      pending.map((i) => decided(wf, decisionOf(instances[i]!), `${txnId}:${decision}${i}`, part)),
    );
    if (failed === undefined) {
      await sendAll(wf, checkCalls(planIn.onSuccess, "onSuccess"), "ok");
      return {
        status: "committed",
        outputs: votes.map((v) => (v.ok ? v.value : null)),
        attempts: attempt,
      };
    }
    last = { retryable: isRetryableCode(failed.error.code), error: failed.error };
    if (!last.retryable) break;
    if (attempt <= retries)
      await wf.sleep(TXN_RETRY_PAUSE_MS * 2 ** (attempt - 1) * (1 + wf.random()));
  }
  const attempts = last!.retryable ? retries + 1 : undefined;
  await sendAll(
    wf,
    checkCalls(last!.retryable ? planIn.onRetryable : planIn.onFailure, "outcome calls"),
    "fail",
  );
  return {
    status: "aborted",
    retryable: last!.retryable,
    error: last!.error,
    attempts: attempts ?? 0,
  };
}

export interface TransactionOptions<I> {
  readonly name: string;
  /** The calls to make atomically, from the coordinator's input. */
  readonly plan: (input: I) => TransactionPlan;
  /** Retries of a transaction that died or timed out (default 5). */
  readonly retries?: number;
  readonly timeoutMs?: number;
  readonly book?: number;
}

/** A coordinator function that runs `plan(input)` as one serializable transaction. */
export function defineTransaction<I = JsonValue>(
  options: TransactionOptions<I>,
): Workflow<I, TransactionOutcome> {
  return defineWorkflow<I, TransactionOutcome>({
    name: options.name,
    meta: { coordinator: "transaction" },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.book === undefined ? {} : { book: options.book }),
    handler: (wf, input) =>
      runTransaction(
        wf,
        options.plan(input),
        options.retries === undefined ? {} : { retries: options.retries },
      ),
  });
}

export interface SagaStep {
  readonly call: Call;
  /** Undoes `call` once it succeeded (omit for a step that needs no undoing). */
  readonly compensate?: Call;
}

export type SagaOutcome =
  | { readonly status: "completed"; readonly outputs: readonly JsonValue[] }
  | {
      readonly status: "compensated";
      /** The step that failed, and why. */
      readonly failedStep: number;
      readonly error: ErrorInfo;
      /** Steps whose compensation ran, in the order they ran. */
      readonly compensated: readonly number[];
      /** Compensations that kept failing (they need a person). */
      readonly compensationsFailed: readonly number[];
    };

/**
 * A saga step's definite outcome: asked again (same id) while it is not known yet. `here`:
 * each attempt is a workflow step applying the request in this thread (`label` names it).
 */
async function definite(
  wf: WorkflowContext,
  c: Call,
  id: string,
  here: boolean,
  label: string,
): Promise<Outcome> {
  const once = (attempt: number): Promise<Outcome> =>
    here
      ? (wf.step(
          `${label} ${attempt}`,
          async (s) => (await requestHere(stepEnv(wf, s), c, id)) as unknown as JsonValue,
          ONCE,
        ) as unknown as Promise<Outcome>)
      : callObject(wf, c, id);
  let out = await once(0);
  for (
    let i = 1;
    !out.ok && out.error.code === "TIMEOUT" && i < UNKNOWN_OUTCOME_ATTEMPTS_MAX;
    i++
  ) {
    await wf.sleep(Math.min(1000, 50 * 2 ** i));
    out = await once(i);
  }
  return out;
}

/** Runs saga steps inside a workflow; see the module comment. */
export async function runSaga(
  wf: WorkflowContext,
  steps: readonly SagaStep[],
): Promise<SagaOutcome> {
  if (!isList(steps) || steps.length === 0 || steps.length > COORDINATED_CALLS_MAX) {
    throw new ObjectError("INVALID_ARGUMENT", `a saga has 1 to ${COORDINATED_CALLS_MAX} steps`);
  }
  checkCalls(
    steps.map((s) => s.call),
    "steps",
  );
  checkCalls(
    steps.flatMap((s) => (s.compensate === undefined ? [] : [s.compensate])),
    "compensations",
  );
  const here = allLocal(steps.flatMap((s) => [s.call, ...(s.compensate ? [s.compensate] : [])]));
  const outputs: JsonValue[] = [];
  let failure: { step: number; error: ErrorInfo } | undefined;
  for (const [i, s] of steps.entries()) {
    const out = await definite(wf, s.call, `${wf.id}:s${i}`, here, `step ${i}`);
    if (!out.ok) {
      failure = { step: i, error: out.error };
      break;
    }
    outputs.push(out.value);
  }
  if (failure === undefined) return { status: "completed", outputs };
  const compensated: number[] = [];
  const compensationsFailed: number[] = [];
  for (let i = failure.step - 1; i >= 0; i--) {
    const c = steps[i]!.compensate;
    if (c === undefined) continue;
    let out: Outcome = { ok: false, error: { name: "Error", message: "not run" } };
    for (let attempt = 0; attempt < COMPENSATION_ATTEMPTS_MAX; attempt++) {
      out = await definite(
        wf,
        c,
        `${wf.id}:c${i}#${attempt}`,
        here,
        `compensation ${i}#${attempt}`,
      );
      if (out.ok) break;
      await wf.sleep(100 * 2 ** attempt);
    }
    (out.ok ? compensated : compensationsFailed).push(i);
  }
  return {
    status: "compensated",
    failedStep: failure.step,
    error: failure.error,
    compensated,
    compensationsFailed,
  };
}

export interface SagaOptions<I> {
  readonly name: string;
  readonly steps: (input: I) => readonly SagaStep[];
  readonly timeoutMs?: number;
  readonly book?: number;
}

/** A coordinator function that runs `steps(input)` as a saga. */
export function defineSaga<I = JsonValue>(options: SagaOptions<I>): Workflow<I, SagaOutcome> {
  return defineWorkflow<I, SagaOutcome>({
    name: options.name,
    meta: { coordinator: "saga" },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.book === undefined ? {} : { book: options.book }),
    handler: (wf, input) => runSaga(wf, options.steps(input)),
  });
}
