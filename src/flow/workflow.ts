/**
 * `defineWorkflow`: a workflow is a function of the runtime whose invocations run
 * executions of instances (execution.ts). Every workflow brings the library's own functions
 * along (status, list, cancel, the recovery task), so a project that exports one workflow
 * has them all.
 */
import {
  defineFunction,
  type BokiFunction,
  type FunctionContext,
  type JsonValue,
} from "../index.js";
import type { WorkflowContext } from "./context.js";
import { errorInfo, FlowError, type FlowErrorCode } from "./errors.js";
import { Execution, checkInstanceId, type ExecutionEnv } from "./execution.js";
import { RETENTION_MS_DEFAULT, RETENTION_MS_MAX, WORKFLOW_TIMEOUT_MS_DEFAULT } from "./limits.js";
import {
  flowCallOf,
  isFlowCall,
  REFUSAL_CODES,
  REGISTRY_BOOK,
  WORKFLOW_KIND,
  FLOW_FUNCTIONS,
  type FlowOutcome,
} from "./protocol.js";
import { flowSystemFunctions } from "./system.js";

export interface WorkflowOptions<I = JsonValue, O = JsonValue> {
  /** The workflow's name: the name of its function (a letter or _, then letters, digits, _ . -). */
  readonly name: string;
  readonly handler: (wf: WorkflowContext, input: I) => O | Promise<O>;
  /** The book instances live in unless a request names one; default 0. */
  readonly book?: number;
  /**
   * Time limit of one execution, ms (default 60 s). Sleeps longer than what is left end the
   * execution and resume the instance later; the recovery task resumes an instance whose
   * execution died once this long has passed since its last logged operation.
   */
  readonly timeoutMs?: number;
  /** How long an ended instance's records are kept before they are trimmed, ms (default one day). */
  readonly retentionMs?: number;
  /** Data about the workflow for tools (the dashboard), in its function info. */
  readonly meta?: JsonValue;
}

export interface Workflow<I = JsonValue, O = JsonValue> extends BokiFunction<I, O> {
  readonly retentionMs: number;
}

/** Names of the workflows defined in this thread (by any copy of the library). */
const WORKFLOWS_KEY = Symbol.for("boki-ts.flow.workflows");

function workflowNames(): Set<string> {
  const g = globalThis as Record<symbol, unknown>;
  let s = g[WORKFLOWS_KEY] as Set<string> | undefined;
  if (s === undefined) {
    s = new Set();
    g[WORKFLOWS_KEY] = s;
  }
  return s;
}

export function isWorkflowName(name: string): boolean {
  return workflowNames().has(name);
}

/** Books this thread has registered for the recovery task. */
const registered = new Set<number>();

async function ensureRegistered(ctx: FunctionContext): Promise<void> {
  if (registered.has(ctx.book)) return;
  await ctx.invoke(FLOW_FUNCTIONS.register, { book: ctx.book }, { book: REGISTRY_BOOK });
  registered.add(ctx.book);
}

function envOf(ctx: FunctionContext): ExecutionEnv {
  return {
    log: ctx.log,
    book: ctx.book,
    logger: ctx.logger,
    deadline: ctx.deadline,
    signal: ctx.signal,
    now: () => Date.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    invoke: (name, input) => ctx.invoke<JsonValue>(name, input),
    invokeAsync: (name, input) => ctx.invokeAsync(name, input),
    isWorkflow: isWorkflowName,
  };
}

function checkMs(value: unknown, what: string, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw new FlowError(
      "INVALID_ARGUMENT",
      `${what} must be an integer in [1, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

/** The answer to a plain call (not a FlowCall): the output, or an error for anything else. */
function plainAnswer(id: string, o: FlowOutcome): JsonValue {
  switch (o.status) {
    case "succeeded":
      return o.output;
    case "failed":
      throw new FlowError(
        "WORKFLOW_FAILED",
        `workflow ${id} failed: ${o.error.name}: ${o.error.message}`,
      );
    case "cancelled":
      throw new FlowError("CANCELLED", `workflow ${id} was cancelled: ${o.error.message}`);
    case "sleeping":
      throw new FlowError(
        "WORKFLOW_FAILED",
        `workflow ${id} sleeps until ${new Date(o.until).toISOString()}; it goes on then (GET /workflows/${id})`,
        { retryable: true },
      );
    case "running":
      throw new FlowError(
        "WORKFLOW_FAILED",
        `workflow ${id} is still running (GET /workflows/${id})`,
        { retryable: true },
      );
    case "rejected":
      throw new FlowError(o.error.code as FlowErrorCode, o.error.message);
  }
}

/**
 * Defines a workflow. Export it from a function module like a function. Invoking its
 * function with any input starts an instance whose id is the invocation's id; the gateway's
 * `POST /workflow/<name>` starts one with an id of the caller's choosing and answers with
 * its outcome; a repeat with the same id returns the same outcome without running anything.
 */
export function defineWorkflow<I = JsonValue, O = JsonValue>(
  options: WorkflowOptions<I, O>,
): Workflow<I, O> {
  if (typeof options !== "object" || options === null) {
    throw new FlowError("INVALID_ARGUMENT", "defineWorkflow needs an options object");
  }
  if (typeof options.handler !== "function") {
    throw new FlowError(
      "INVALID_ARGUMENT",
      `workflow ${String(options.name)}: handler must be a function`,
    );
  }
  const timeoutMs = checkMs(
    options.timeoutMs ?? WORKFLOW_TIMEOUT_MS_DEFAULT,
    `workflow ${options.name}: timeoutMs`,
    15 * 60_000,
  );
  const retentionMs = checkMs(
    options.retentionMs ?? RETENTION_MS_DEFAULT,
    `workflow ${options.name}: retentionMs`,
    RETENTION_MS_MAX,
  );
  const def = {
    name: options.name,
    timeoutMs,
    retentionMs,
    handler: options.handler as (wf: WorkflowContext, input: JsonValue) => unknown,
  };
  const fn = defineFunction<JsonValue, JsonValue>({
    name: options.name,
    timeoutMs,
    kind: WORKFLOW_KIND,
    companions: flowSystemFunctions(),
    ...(options.book === undefined ? {} : { book: options.book }),
    ...(options.meta === undefined ? {} : { meta: options.meta }),
    async handler(ctx, input) {
      const flowCall = isFlowCall(input);
      let outcome: FlowOutcome;
      let id: string = ctx.invocationId;
      try {
        const call = flowCallOf(input, ctx.invocationId);
        id = checkInstanceId(call.id);
        if (call.$flow === "start") await ensureRegistered(ctx);
        outcome = await new Execution(def, id, envOf(ctx)).run(call);
      } catch (err) {
        // A caller's mistake is an answer to a flow call (the gateway maps it to 4xx).
        const code = (err as { code?: unknown }).code;
        if (!flowCall || typeof code !== "string" || !REFUSAL_CODES.has(code)) throw err;
        outcome = { status: "rejected", error: { ...errorInfo(err), code } };
      }
      return flowCall
        ? ({ id, workflow: def.name, ...outcome } as unknown as JsonValue)
        : plainAnswer(id, outcome);
    },
  });
  workflowNames().add(options.name);
  return Object.freeze({ ...fn, retentionMs }) as unknown as Workflow<I, O>;
}
