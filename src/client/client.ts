/**
 * A client of the HTTP gateway, for programs and tests that call functions from outside the
 * runtime. Every request has a time limit; every failure is an `InvocationError` with the
 * gateway's code (`UNAVAILABLE` when the gateway cannot be reached).
 */
import { InvocationError } from "../runtime/errors.js";
import type { JsonValue } from "../runtime/json.js";

/** Default time limit of one HTTP request. */
export const CLIENT_REQUEST_TIMEOUT_MS_DEFAULT = 60_000;
/** Default longest `waitFor` waits for an asynchronous invocation to finish. */
export const CLIENT_WAIT_TIMEOUT_MS_DEFAULT = 60_000;
/** How often `waitFor` asks for an invocation's status. */
export const CLIENT_POLL_INTERVAL_MS = 50;

export interface BokiClientOptions {
  /** The gateway's base URL, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  /** Time limit of each request (default CLIENT_REQUEST_TIMEOUT_MS_DEFAULT). */
  readonly timeoutMs?: number;
  /** Headers sent with every request (e.g. authorization). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface InvokeOptions {
  /** The book to run in (X-Boki-Book); default: the function's book, else 0. */
  readonly book?: number;
  /** Makes the request exactly-once: repeats with the same key get the first answer. */
  readonly idempotencyKey?: string;
  /** Time limit of this request (default: the client's). */
  readonly timeoutMs?: number;
}

export type InvocationStatus = "pending" | "running" | "succeeded" | "failed";

export interface WorkflowStartOptions {
  /** The instance id (default: a new one). */
  readonly id?: string;
  readonly book?: number;
  /** Wait for the outcome (default true); false: record the start and return at once. */
  readonly wait?: boolean;
  readonly timeoutMs?: number;
}

/** How a workflow start ended, as far as the gateway could tell within the request. */
export interface WorkflowOutcome {
  readonly workflowId: string;
  readonly status: "succeeded" | "failed" | "cancelled" | "sleeping" | "running" | "pending";
  readonly output?: JsonValue;
  readonly error?: { readonly code: string; readonly message: string };
  readonly sleepingUntil?: string;
}

function bookHeader(book: number | undefined): Record<string, string> {
  return book === undefined ? {} : { "x-boki-book": String(book) };
}

/** What `GET /invocations/<id>` answers. */
export interface InvocationRecord {
  readonly invocationId: string;
  readonly function: string;
  readonly book: number;
  readonly mode: "async" | "sync";
  readonly status: InvocationStatus;
  readonly requestedAt: string;
  readonly finishedAt?: string;
  readonly output?: JsonValue;
  readonly error?: { readonly code: string; readonly message: string };
}

function positiveMs(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `${what} must be a positive number of ms, got ${value}`,
    );
  }
  return value;
}

export class BokiClient {
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly headers: Readonly<Record<string, string>>;

  constructor(options: BokiClientOptions) {
    const url = options.url.replace(/\/+$/, "");
    if (!/^https?:\/\/[^/]+/.test(url)) {
      throw new InvocationError(
        "INVALID_ARGUMENT",
        `url must be an http(s) URL, got ${options.url}`,
      );
    }
    this.url = url;
    this.timeoutMs = positiveMs(
      options.timeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
      "timeoutMs",
    );
    this.headers = options.headers ?? {};
  }

  /** Runs `name` with `input` and resolves with its output. */
  async invoke<O extends JsonValue = JsonValue>(
    name: string,
    input: JsonValue = null,
    options: InvokeOptions = {},
  ): Promise<O> {
    return (await this.post(`/function/${encodeURIComponent(name)}`, input, options)) as O;
  }

  /** Records and starts `name`; resolves with the invocation id once it is recorded. */
  async invokeAsync(
    name: string,
    input: JsonValue = null,
    options: InvokeOptions = {},
  ): Promise<string> {
    const body = (await this.post(
      `/async/function/${encodeURIComponent(name)}`,
      input,
      options,
    )) as {
      invocationId: string;
    };
    return body.invocationId;
  }

  /** The recorded state of an invocation. */
  async invocation(id: string, options: { timeoutMs?: number } = {}): Promise<InvocationRecord> {
    return (await this.request(
      "GET",
      `/invocations/${encodeURIComponent(id)}`,
      undefined,
      {},
      options.timeoutMs,
    )) as unknown as InvocationRecord;
  }

  /**
   * Waits until an asynchronous invocation has finished; resolves with its output, or rejects
   * with its error. Gives up with TIMEOUT after `timeoutMs`.
   */
  async waitFor<O extends JsonValue = JsonValue>(
    id: string,
    options: { timeoutMs?: number } = {},
  ): Promise<O> {
    const until =
      Date.now() + positiveMs(options.timeoutMs ?? CLIENT_WAIT_TIMEOUT_MS_DEFAULT, "timeoutMs");
    for (;;) {
      const r = await this.invocation(id, {
        timeoutMs: Math.max(1, Math.min(this.timeoutMs, until - Date.now())),
      });
      if (r.status === "succeeded") return (r.output ?? null) as O;
      if (r.status === "failed") {
        throw InvocationError.fromJSON(r.error ?? { code: "INTERNAL", message: "failed" });
      }
      if (Date.now() + CLIENT_POLL_INTERVAL_MS > until) {
        throw new InvocationError(
          "TIMEOUT",
          `invocation ${id} did not finish in time (status ${r.status})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, CLIENT_POLL_INTERVAL_MS));
    }
  }

  /**
   * Starts workflow `name` (boki-ts/flow) and, unless `wait` is false, waits for its
   * outcome. The id is `options.id`, else a new one; a start with the id of an existing
   * instance joins it. A failed or cancelled workflow is an outcome, not an exception.
   */
  async startWorkflow(
    name: string,
    input: JsonValue = null,
    options: WorkflowStartOptions = {},
  ): Promise<WorkflowOutcome> {
    const headers: Record<string, string> = {};
    if (options.id !== undefined) headers["x-boki-workflow-id"] = options.id;
    if (options.book !== undefined) headers["x-boki-book"] = String(options.book);
    const wait = options.wait ?? true;
    const path = `${wait ? "" : "/async"}/workflow/${encodeURIComponent(name)}`;
    const r = await this.raw("POST", path, input, headers, options.timeoutMs);
    const workflowId = r.headers.get("x-boki-workflow-id") ?? options.id ?? "";
    const body = r.body as Record<string, unknown> | null;
    if (r.status === 200) return { workflowId, status: "succeeded", output: r.body };
    if (r.status === 202) {
      const until = body?.["sleepingUntil"];
      return {
        workflowId,
        status: (body?.["status"] as WorkflowOutcome["status"] | undefined) ?? "pending",
        ...(typeof until === "string" ? { sleepingUntil: until } : {}),
      };
    }
    const error = (body?.["error"] ?? {}) as { code?: unknown; message?: unknown };
    if (error.code === "WORKFLOW_FAILED" || error.code === "CANCELLED") {
      return {
        workflowId,
        status: error.code === "CANCELLED" ? "cancelled" : "failed",
        error: { code: error.code, message: String(error.message) },
      };
    }
    throw InvocationError.fromJSON({
      code: error.code,
      message: error.message ?? `HTTP ${r.status}`,
    });
  }

  /** An instance's status, steps and outcome. */
  async workflow(id: string, options: { book?: number } = {}): Promise<JsonValue> {
    return this.request(
      "GET",
      `/workflows/${encodeURIComponent(id)}`,
      undefined,
      bookHeader(options.book),
    );
  }

  /** Recent instances, newest first. */
  async listWorkflows(
    options: { status?: string; workflow?: string; limit?: number; book?: number } = {},
  ): Promise<JsonValue> {
    const q = new URLSearchParams();
    if (options.status !== undefined) q.set("status", options.status);
    if (options.workflow !== undefined) q.set("workflow", options.workflow);
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    const query = q.size === 0 ? "" : `?${q.toString()}`;
    return this.request("GET", `/workflows${query}`, undefined, bookHeader(options.book));
  }

  /** Cancels an instance (it ends at its next operation; a sleeping one at once). */
  async cancelWorkflow(
    id: string,
    options: { reason?: string; book?: number } = {},
  ): Promise<JsonValue> {
    return this.request(
      "POST",
      `/workflows/${encodeURIComponent(id)}/cancel`,
      options.reason === undefined ? null : { reason: options.reason },
      bookHeader(options.book),
    );
  }

  /** A JSON request to any gateway route; resolves with the parsed body of a 2xx answer. */
  async request(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: JsonValue,
    headers: Readonly<Record<string, string>> = {},
    timeoutMs?: number,
  ): Promise<JsonValue> {
    const r = await this.raw(method, path, body, headers, timeoutMs);
    if (r.status >= 400) {
      const e = (r.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      throw InvocationError.fromJSON({
        code: e?.code,
        message: e?.message ?? `${method} ${path}: HTTP ${r.status}`,
      });
    }
    return r.body;
  }

  /** A JSON request; resolves with the status, headers and parsed body, whatever the status. */
  async raw(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: JsonValue,
    headers: Readonly<Record<string, string>> = {},
    timeoutMs?: number,
  ): Promise<{ status: number; headers: Headers; body: JsonValue }> {
    const limitMs = positiveMs(timeoutMs ?? this.timeoutMs, "timeoutMs");
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: {
          ...this.headers,
          ...headers,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(limitMs),
      });
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: string; message?: string } };
      if (e.name === "TimeoutError") {
        throw new InvocationError("TIMEOUT", `${method} ${path}: no answer within ${limitMs} ms`, {
          cause: err,
        });
      }
      throw new InvocationError(
        "UNAVAILABLE",
        `cannot reach ${this.url}: ${e.cause?.code ?? e.cause?.message ?? String(err)}`,
        { cause: err },
      );
    }
    const text = await res.text();
    let parsed: JsonValue;
    try {
      parsed = text === "" ? null : (JSON.parse(text) as JsonValue);
    } catch {
      throw new InvocationError(
        "INTERNAL",
        `${method} ${path}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`,
      );
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  private post(path: string, input: JsonValue, o: InvokeOptions): Promise<JsonValue> {
    const headers: Record<string, string> = {};
    if (o.book !== undefined) headers["x-boki-book"] = String(o.book);
    if (o.idempotencyKey !== undefined) headers["idempotency-key"] = o.idempotencyKey;
    return this.request("POST", path, input, headers, o.timeoutMs);
  }
}
