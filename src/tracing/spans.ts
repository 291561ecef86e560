/**
 * The spans the runtime makes, through the OpenTelemetry API. Tracing is off unless
 * `startTracing` (tracing.ts) turned it on: every helper here then checks one boolean and
 * calls straight through, allocating nothing, so the cost of tracing being available is a
 * branch per invocation and per log operation.
 *
 * Spans, when on:
 * - `<METHOD> <route>` (server): an HTTP request to the gateway (http.ts);
 * - `dispatch <function>` (client): a gateway sending an invocation to an engine;
 * - `invoke <function>` (server, or internal when nested): an invocation running, with its
 *   id, book, depth, outcome and, for a workflow, the instance id;
 * - `log.<operation>` (internal): a function's log operation, with its book, tags, bytes,
 *   and the sequence number an append got;
 * - `step <name>` (and `call <fn>`, `workflow start`, `workflow end`, ...): a workflow
 *   operation whose result a function logs (a `boki-ts/flow` record): from the end of the
 *   invocation's previous log operation (when the step's code started) to the record being
 *   logged. A replayed step writes nothing, so it shows as the read that found it.
 *
 * Trace context crosses processes in W3C `traceparent` form: in HTTP headers (in and out),
 * and in the invocation messages a gateway sends to engines, so one trace follows a request
 * from the gateway through the engine that runs it, its nested calls and child workflows.
 */
import {
  context,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
} from "@opentelemetry/api";
import { performance } from "node:perf_hooks";

/** The instrumentation scope of the runtime's spans. */
export const TRACER_NAME = "boki-ts";
/** Longest prefix of a workflow's input read for its instance id. */
const FLOW_INPUT_PEEK_CHARS = 2048;
/** Longest prefix of a logged record read for a flow operation's kind and name. */
const FLOW_RECORD_PEEK_BYTES = 1024;
/** Longest attribute value of a name taken from user data. */
const NAME_ATTRIBUTE_CHARS_MAX = 256;
/** A `traceparent` header: version, trace id, parent span id, flags. */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

let enabled = false;
let tracer = trace.getTracer(TRACER_NAME);

/** Whether spans are being made (set by `startTracing`). */
export function tracingEnabled(): boolean {
  return enabled;
}

/** @internal for tracing.ts */
export function setTracingEnabled(on: boolean): void {
  enabled = on;
  // The provider registered just now serves the tracer (a tracer taken before it would
  // keep delegating to whichever provider was registered when it was made).
  if (on) tracer = trace.getTracer(TRACER_NAME);
}

/** Per invocation: when its latest log operation ended (the next step's start). */
interface InvocationState {
  lastOpEndMs: number;
}
const INVOCATION_STATE = createContextKey("boki-ts invocation state");

const nowMs = (): number => performance.timeOrigin + performance.now();

function fail(span: Span, err: unknown): void {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string") span.setAttribute("boki.error.code", code);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: err instanceof Error ? err.message.slice(0, 512) : String(err).slice(0, 512),
  });
}

function clip(s: string): string {
  return s.length > NAME_ATTRIBUTE_CHARS_MAX ? s.slice(0, NAME_ATTRIBUTE_CHARS_MAX) : s;
}

/** The instance id a workflow invocation works on: its flow call's id, else the invocation's. */
export function workflowIdOf(inputJson: string, invocationId: string): string {
  const head = inputJson.slice(0, FLOW_INPUT_PEEK_CHARS);
  if (!head.startsWith('{"$flow"')) return invocationId;
  const m = /"id":("(?:[^"\\]|\\.)*")/.exec(head);
  if (m === null) return invocationId;
  try {
    return clip(JSON.parse(m[1]!) as string);
  } catch {
    return invocationId;
  }
}

/** Runs `fn` in `span`'s context and ends the span with its outcome. */
async function inSpan<T>(span: Span, ctx: Context, fn: () => Promise<T>): Promise<T> {
  try {
    return await context.with(ctx, fn);
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

export interface InvocationSpanInfo {
  readonly name: string;
  readonly invocationId: string;
  readonly book: number;
  readonly depth: number;
  readonly kind?: string | undefined;
  readonly inputJson: string;
}

/** Runs an invocation in its span (a child of the active context). */
export function traceInvocation<T>(info: InvocationSpanInfo, run: () => Promise<T>): Promise<T> {
  if (!enabled) return run();
  const attributes: Attributes = {
    "boki.function": info.name,
    "boki.invocation.id": info.invocationId,
    "boki.book": info.book,
    "boki.invocation.depth": info.depth,
  };
  if (info.kind !== undefined) attributes["boki.function.kind"] = info.kind;
  if (info.kind === "workflow")
    attributes["boki.workflow.id"] = workflowIdOf(info.inputJson, info.invocationId);
  const span = tracer.startSpan(`invoke ${info.name}`, {
    kind: info.depth > 0 ? SpanKind.INTERNAL : SpanKind.SERVER,
    attributes,
  });
  const state: InvocationState = { lastOpEndMs: nowMs() };
  const ctx = trace.setSpan(context.active(), span).setValue(INVOCATION_STATE, state);
  return inSpan(span, ctx, run);
}

/**
 * `fn` bound to the active context (the invocation's, when called inside one), so callbacks
 * that run later from elsewhere (a worker thread's messages) make their spans in it.
 * Returns `fn` itself while tracing is off.
 */
export function bindToContext<F extends (...args: never[]) => unknown>(fn: F): F {
  return enabled ? context.bind(context.active(), fn) : fn;
}

function byteLength(data: unknown): number | undefined {
  if (typeof data === "string") return Buffer.byteLength(data);
  if (data instanceof Uint8Array) return data.byteLength;
  return undefined;
}

/** What a logged record says of itself when it is a `boki-ts/flow` record: its kind and name. */
export function flowRecordOf(data: unknown): { kind: string; name: string | null } | null {
  let head: string;
  if (typeof data === "string") head = data.slice(0, FLOW_RECORD_PEEK_BYTES);
  else if (data instanceof Uint8Array)
    head = Buffer.from(
      data.buffer,
      data.byteOffset,
      Math.min(data.byteLength, FLOW_RECORD_PEEK_BYTES),
    ).toString("utf8");
  else return null;
  const m = /^\{"v":1,"k":"([a-z]{1,16})"/.exec(head);
  if (m === null) return null;
  const kind = m[1]!;
  const field =
    kind === "step"
      ? "name"
      : kind === "call" || kind === "spawn"
        ? "fn"
        : kind === "start"
          ? "wf"
          : kind === "end"
            ? "status"
            : null;
  if (field === null) return { kind, name: null };
  const n = new RegExp(`"${field}":("(?:[^"\\\\]|\\\\.)*")`).exec(head);
  if (n === null) return { kind, name: null };
  try {
    return { kind, name: clip(JSON.parse(n[1]!) as string) };
  } catch {
    return { kind, name: null };
  }
}

function flowSpanName(f: { kind: string; name: string | null }): string {
  switch (f.kind) {
    case "step":
      return `step ${f.name ?? "?"}`;
    case "call":
    case "spawn":
      return `${f.kind} ${f.name ?? "?"}`;
    case "start":
    case "end":
      return `workflow ${f.kind}${f.name === null ? "" : ` ${f.name}`}`;
    default:
      return `workflow ${f.kind}`;
  }
}

const APPENDS: ReadonlySet<string> = new Set(["append", "condAppend"]);

/**
 * Runs a function's log operation `op` (with the arguments the worker sent) in a
 * `log.<op>` span; an append of a flow record also gets its step span around it.
 */
export function traceLogOp<T>(
  op: string,
  args: readonly unknown[],
  book: number,
  run: () => Promise<T>,
): Promise<T> {
  if (!enabled) return run();
  const parent = context.active();
  const state = parent.getValue(INVOCATION_STATE) as InvocationState | undefined;
  const attributes: Attributes = { "boki.log.op": op, "boki.book": book };
  let flow: { kind: string; name: string | null } | null = null;
  if (APPENDS.has(op)) {
    const tags = args[0];
    if (Array.isArray(tags)) attributes["boki.log.tags"] = tags.length;
    const bytes = byteLength(args[1]);
    if (bytes !== undefined) attributes["boki.log.bytes"] = bytes;
    if (op === "condAppend" && typeof args[3] === "number")
      attributes["boki.log.cond_position"] = args[3];
    flow = flowRecordOf(args[1]);
  }
  let stepSpan: Span | null = null;
  let ctx = parent;
  if (flow !== null) {
    stepSpan = tracer.startSpan(
      flowSpanName(flow),
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          "boki.flow.kind": flow.kind,
          ...(flow.name === null ? {} : { "boki.flow.name": flow.name }),
        },
        ...(state === undefined ? {} : { startTime: state.lastOpEndMs }),
      },
      parent,
    );
    ctx = trace.setSpan(parent, stepSpan);
  }
  const span = tracer.startSpan(`log.${op}`, { kind: SpanKind.INTERNAL, attributes }, ctx);
  const finish = (): void => {
    span.end();
    stepSpan?.end();
    if (state !== undefined) state.lastOpEndMs = nowMs();
  };
  return context.with(trace.setSpan(ctx, span), run).then(
    (value) => {
      if (typeof value === "number" && APPENDS.has(op)) span.setAttribute("boki.log.seqnum", value);
      finish();
      return value;
    },
    (err: unknown) => {
      if ((err as { code?: unknown } | null)?.code === "COND_APPEND_FAILED") {
        // Losing a conditional append is an answer (another execution wrote first), not a fault.
        span.setAttribute("boki.log.cond_failed", true);
        stepSpan?.setAttribute("boki.flow.superseded", true);
      } else {
        fail(span, err);
        if (stepSpan !== null) fail(stepSpan, err);
      }
      finish();
      throw err;
    },
  );
}

/**
 * Runs a gateway's call of an engine in a `dispatch <function>` span; `send` gets the
 * `traceparent` to put in the invocation message (undefined while tracing is off).
 */
export function traceDispatch<T>(
  name: string,
  engine: string,
  send: (traceparent: string | undefined) => Promise<T>,
): Promise<T> {
  if (!enabled) return send(undefined);
  const span = tracer.startSpan(`dispatch ${name}`, {
    kind: SpanKind.CLIENT,
    attributes: { "boki.function": name, "boki.engine": engine },
  });
  const ctx = trace.setSpan(context.active(), span);
  return inSpan(span, ctx, () => send(traceparentOf(ctx)));
}

/** The `traceparent` of `ctx` (default the active one), or undefined without a sampled span. */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  if (!enabled) return undefined;
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** Whether `s` is a well-formed W3C `traceparent`. */
export function isTraceparent(s: string): boolean {
  return TRACEPARENT.test(s);
}

const headerGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** The context a request's headers carry (`traceparent`, `tracestate`), on ROOT otherwise. */
export function contextFromHeaders(
  headers: Record<string, string | string[] | undefined>,
): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** Runs `run` with the remote parent a message carried (or none) as the active context. */
export function withRemoteParent<T>(traceparent: string | undefined, run: () => T): T {
  if (!enabled) return run();
  const ctx =
    traceparent === undefined || !isTraceparent(traceparent)
      ? ROOT_CONTEXT
      : contextFromHeaders({ traceparent });
  return context.with(ctx, run);
}

/** @internal the runtime's tracer, for http.ts */
export function runtimeTracer(): ReturnType<typeof trace.getTracer> {
  return tracer;
}
