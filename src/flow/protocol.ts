/**
 * How the runtime and `boki-ts/flow` talk: a workflow is a function whose input may be a
 * `FlowCall` (start an instance with an id, resume one) and whose answer to a FlowCall is a
 * `FlowOutcome`; the library's own functions serve status, listing, cancelling, and the
 * recovery task. The gateway's `/workflow` routes are built on these, nothing else.
 */
import type { JsonValue } from "../index.js";
import type { ErrorInfo } from "./records.js";
import { FlowError } from "./errors.js";

/** Names of the library's own functions (loaded with every workflow). */
export const FLOW_FUNCTIONS = {
  status: "boki-flow.status",
  list: "boki-flow.list",
  cancel: "boki-flow.cancel",
  register: "boki-flow.register",
  recover: "boki-flow.recover",
  scan: "boki-flow.scan",
} as const;

/** The function kind the runtime reports for workflows. */
export const WORKFLOW_KIND = "workflow";

/** The book the registry of books with workflows lives in. */
export const REGISTRY_BOOK = 0;

export type FlowCall =
  | {
      readonly $flow: "start";
      readonly id: string;
      readonly input?: JsonValue;
      /** Set by a parent's `wf.invoke`: where the child writes its result. */
      readonly parent?: { readonly id: string; readonly pos: number; readonly wf: string };
    }
  | { readonly $flow: "resume"; readonly id: string };

export type FlowOutcome =
  | { readonly status: "succeeded"; readonly output: JsonValue }
  | { readonly status: "failed" | "cancelled"; readonly error: ErrorInfo }
  | { readonly status: "sleeping"; readonly until: number }
  /** Another execution has the instance, or it waits for a child: not ended yet. */
  | { readonly status: "running" }
  /** The call was refused (a bad id, an id of another workflow, no such instance). */
  | { readonly status: "rejected"; readonly error: ErrorInfo & { readonly code: string } };

/** How the library's own functions answer a refused request (instead of throwing). */
export interface FlowRefusal {
  readonly $error: { readonly code: string; readonly message: string };
}

/** Codes of FlowErrors that are the caller's mistake, answered as refusals. */
export const REFUSAL_CODES: ReadonlySet<string> = new Set([
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "ID_CONFLICT",
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The call a workflow function's input stands for: a FlowCall, or (any other input) a new
 * instance with that input and the id `defaultId` (the invocation's id).
 */
export function flowCallOf(input: unknown, defaultId: string): FlowCall {
  if (!isObject(input) || !("$flow" in input))
    return { $flow: "start", id: defaultId, input: (input ?? null) as JsonValue };
  const kind = input["$flow"];
  const id = input["id"] ?? defaultId;
  if (typeof id !== "string")
    throw new FlowError("INVALID_ARGUMENT", "a flow call's id must be a string");
  if (kind === "resume") return { $flow: "resume", id };
  if (kind !== "start")
    throw new FlowError("INVALID_ARGUMENT", `unknown flow call ${JSON.stringify(kind)}`);
  const parent = input["parent"];
  if (parent !== undefined) {
    if (
      !isObject(parent) ||
      typeof parent["id"] !== "string" ||
      !Number.isInteger(parent["pos"]) ||
      typeof parent["wf"] !== "string"
    ) {
      throw new FlowError("INVALID_ARGUMENT", "a flow call's parent is { id, pos, wf }");
    }
    return {
      $flow: "start",
      id,
      input: (input["input"] ?? null) as JsonValue,
      parent: { id: parent["id"], pos: parent["pos"] as number, wf: parent["wf"] },
    };
  }
  return { $flow: "start", id, input: (input["input"] ?? null) as JsonValue };
}

export function isFlowCall(input: unknown): boolean {
  return isObject(input) && "$flow" in input;
}

/** One instance as status and list answers describe it. */
export interface InstanceSummary {
  readonly workflowId: string;
  readonly workflow: string;
  readonly book: number;
  readonly status: "running" | "sleeping" | "succeeded" | "failed" | "cancelled";
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly sleepingUntil?: string;
  readonly cancelRequested?: boolean;
}

export interface StepSummary {
  readonly position: number;
  readonly kind: string;
  readonly name?: string;
  readonly at: string;
  readonly ok?: boolean;
  readonly value?: JsonValue;
  readonly error?: ErrorInfo;
}

export interface InstanceStatusReport extends InstanceSummary {
  readonly input: JsonValue;
  readonly output?: JsonValue;
  readonly error?: ErrorInfo;
  readonly steps: readonly StepSummary[];
  /** More steps than STATUS_STEPS_MAX were left out. */
  readonly stepsTruncated?: boolean;
}
