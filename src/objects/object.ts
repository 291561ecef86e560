/**
 * `defineObject`: keyed stateful functions. An object is a function of the runtime whose
 * invocations address one instance (its key) and one handler; the library's own functions
 * (a drain for sent messages, a workflow for delayed ones) come along with every object.
 */
import {
  defineFunction,
  type BokiFunction,
  type FunctionContext,
  type JsonValue,
} from "../index.js";
import { defineWorkflow } from "../flow/index.js";
import { ObjectError } from "./errors.js";
import {
  checkName,
  definitions,
  drain,
  latestResult,
  readOnly,
  request,
  submit,
  type HandlerDef,
  type ObjectContext,
  type ObjectEnv,
} from "./executor.js";
import { OBJECT_TIMEOUT_MS_DEFAULT } from "./limits.js";
import type { Message, Outcome, TxnPart } from "./records.js";

/** Names of the library's own functions. */
export const OBJECT_FUNCTIONS = {
  drain: "boki-objects.drain",
  deliver: "boki-objects.deliver",
  state: "boki-objects.state",
} as const;
export const OBJECT_KIND = "object";

export type Handler<S, I, O> = (ctx: ObjectContext<S>, input: I) => O | Promise<O>;

/** A handler given as a function is exclusive; `{ shared: true, handler }` is read-only. */
export type HandlerSpec<S> =
  | Handler<S, never, unknown>
  | { readonly shared?: boolean; readonly handler: Handler<S, never, unknown> };

export interface ObjectOptions<S> {
  readonly name: string;
  readonly handlers: Readonly<Record<string, HandlerSpec<S>>>;
  /** The book instances live in unless a request names one; default 0. */
  readonly book?: number;
  /** Time limit of one invocation, ms (default 30 s). */
  readonly timeoutMs?: number;
}

/**
 * What an object's function takes: the instance (`key`), the handler and its input; `id`
 * makes the request exactly once (a repeat returns the first one's outcome; default: the
 * invocation's id); `reply: "outcome"` answers `{ ok, value | error }` instead of the value
 * (or a failure); `txn` is for coordinators.
 */
export interface ObjectCall {
  readonly key: string;
  readonly handler: string;
  readonly input?: JsonValue;
  readonly id?: string;
  readonly reply?: "outcome";
  readonly txn?: TxnPart;
}

/** An executor's environment from what runs it: a function's context, or a workflow step's. */
export function objectEnv(from: {
  readonly log: ObjectEnv["log"];
  readonly logger: ObjectEnv["logger"];
  readonly deadline: number;
  invokeAsync(name: string, input: JsonValue): Promise<unknown>;
}): ObjectEnv {
  return {
    log: from.log,
    logger: from.logger,
    deadline: from.deadline,
    now: () => Date.now(),
    invokeAsync: (name, input) => from.invokeAsync(name, input),
    drainFunction: OBJECT_FUNCTIONS.drain,
    deliverWorkflow: OBJECT_FUNCTIONS.deliver,
  };
}

export function envOf(ctx: FunctionContext): ObjectEnv {
  return objectEnv(ctx);
}

function parseCall(input: unknown): ObjectCall {
  const o = input as Partial<ObjectCall> | null;
  if (typeof o !== "object" || o === null)
    throw new ObjectError("INVALID_ARGUMENT", "an object call is { key, handler, input? }");
  checkName(o.key, "key");
  checkName(o.handler, "handler");
  if (o.id !== undefined) checkName(o.id, "id");
  if (o.txn !== undefined) {
    const t = o.txn;
    if (
      typeof t !== "object" ||
      t === null ||
      typeof t.id !== "string" ||
      typeof t.ts !== "number" ||
      !["prepare", "commit", "abort"].includes(t.op)
    ) {
      throw new ObjectError("INVALID_ARGUMENT", "txn is { id, ts, op: prepare | commit | abort }");
    }
  }
  return o as ObjectCall;
}

let libraryFunctions: readonly BokiFunction<never, unknown>[] | undefined;

function objectLibraryFunctions(): readonly BokiFunction<never, unknown>[] {
  libraryFunctions ??= [
    defineFunction({
      name: OBJECT_FUNCTIONS.drain,
      async handler(ctx, input: { object?: unknown; key?: unknown }) {
        const object = checkName(input?.object, "object");
        const key = checkName(input?.key, "key");
        await drain(envOf(ctx), object, key, undefined);
        return null;
      },
    }),
    // A message sent with a delay: a durable timer, then the delivery (the workflow's id is
    // the message's, so it is delivered once).
    defineWorkflow({
      name: OBJECT_FUNCTIONS.deliver,
      async handler(wf, m: Message) {
        if (m.notBefore !== undefined) await wf.sleepUntil(m.notBefore);
        await wf.invoke(OBJECT_FUNCTIONS.drain + ".submit", m);
        return null;
      },
    }),
    // An instance's committed state, and the transaction holding it, if any.
    defineFunction({
      name: OBJECT_FUNCTIONS.state,
      async handler(ctx, input: { object?: unknown; key?: unknown }) {
        const object = checkName(input?.object, "object");
        const key = checkName(input?.key, "key");
        const last = await latestResult(ctx.log, object, key);
        return {
          object,
          key,
          requestsApplied: last === undefined ? 0 : last.j + 1,
          state: last?.state ?? null,
          lockedBy: last?.lock?.txn ?? null,
          waiting: last?.deferred.length ?? 0,
        };
      },
    }),
    defineFunction({
      name: `${OBJECT_FUNCTIONS.drain}.submit`,
      async handler(ctx, m: Message) {
        const env = envOf(ctx);
        await submit(env, checkName(m.object, "object"), checkName(m.key, "key"), {
          id: checkName(m.id, "id"),
          handler: m.handler,
          input: m.input,
        });
        await drain(env, m.object, m.key, undefined);
        return null;
      },
    }),
  ] as unknown as readonly BokiFunction<never, unknown>[];
  return libraryFunctions;
}

/** The answer of an object's function to a plain call: the output, or a failure. */
function plain(o: Outcome): JsonValue {
  if (o.ok) return o.value;
  const e = new ObjectError("INVALID_ARGUMENT", o.error.message);
  Object.assign(e, { code: o.error.code ?? "HANDLER_ERROR", name: o.error.name });
  throw e;
}

/**
 * Defines an object. Invoke its function with `{ key, handler, input }` (the gateway:
 * `POST /object/<name>/<key>/<handler>`). Exclusive handlers of one instance apply one at a
 * time in log order; shared ones read the newest committed state and run concurrently.
 */
export function defineObject<S = JsonValue>(
  options: ObjectOptions<S>,
): BokiFunction<ObjectCall, JsonValue> {
  if (typeof options !== "object" || options === null)
    throw new ObjectError("INVALID_ARGUMENT", "defineObject needs an options object");
  const name = checkName(options.name, "an object name");
  if (
    typeof options.handlers !== "object" ||
    options.handlers === null ||
    Object.keys(options.handlers).length === 0
  ) {
    throw new ObjectError(
      "INVALID_ARGUMENT",
      `object ${name}: handlers must name at least one handler`,
    );
  }
  const handlers = new Map<string, HandlerDef>();
  for (const [h, spec] of Object.entries(options.handlers)) {
    checkName(h, "a handler name");
    const fn = typeof spec === "function" ? spec : spec?.handler;
    if (typeof fn !== "function")
      throw new ObjectError("INVALID_ARGUMENT", `object ${name}: handler ${h} must be a function`);
    handlers.set(h, {
      shared: typeof spec !== "function" && spec.shared === true,
      fn: fn as HandlerDef["fn"],
    });
  }
  definitions().set(name, { name, handlers });
  const modes: Record<string, string> = {};
  for (const [h, d] of handlers) modes[h] = d.shared ? "shared" : "exclusive";
  return defineFunction<ObjectCall, JsonValue>({
    name,
    kind: OBJECT_KIND,
    meta: { handlers: modes },
    timeoutMs: options.timeoutMs ?? OBJECT_TIMEOUT_MS_DEFAULT,
    companions: objectLibraryFunctions(),
    ...(options.book === undefined ? {} : { book: options.book }),
    async handler(ctx, input) {
      const call = parseCall(input);
      const env = envOf(ctx);
      const h = handlers.get(call.handler);
      let outcome: Outcome;
      if (h?.shared === true && call.txn === undefined) {
        outcome = await readOnly(env, name, call.key, call.handler, call.input ?? null);
      } else {
        outcome = await request(env, name, call.key, {
          id: call.id ?? ctx.invocationId,
          handler: call.handler,
          input: call.input ?? null,
          ...(call.txn === undefined ? {} : { txn: call.txn }),
        });
      }
      return call.reply === "outcome" ? (outcome as unknown as JsonValue) : plain(outcome);
    },
  });
}
