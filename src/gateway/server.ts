/**
 * The HTTP gateway (fastify): invocations in, JSON out. It knows nothing of where functions
 * run: it talks to an `InvocationService` over a `Dispatcher`.
 *
 *   POST /function/<name>          run synchronously; 200 with the output as the body
 *   POST /async/function/<name>    record and start; 202 with { invocationId, status }
 *   GET  /invocations/<id>         status (and output or error) of a recorded invocation
 *   GET  /functions                the functions that can be invoked
 *   /workflow..., /workflows...    workflows (boki-ts/flow): see workflows.ts
 *   /object/...                    keyed stateful objects (boki-ts/objects): see objects.ts
 *   /queue/...                     message queues (boki-ts/queue): see queues.ts
 *   GET  /healthz                  200 while serving, 503 while shutting down
 *   GET  /metrics                  Prometheus metrics
 *
 * Request headers: `X-Boki-Book` (the book, default the function's, else 0) and
 * `Idempotency-Key`. Response headers: `X-Boki-Invocation-Id`, and `Idempotent-Replayed:
 * true` when the response is the recorded result of an earlier request with the key.
 * Errors are `{ "error": { "code", "message" } }` with the status from `HTTP_STATUS`.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { AddressInfo } from "node:net";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { describeThrown, InvocationError, type InvocationErrorCode } from "../runtime/errors.js";
import { parseIdempotencyKey, parseUserBook } from "../runtime/ids.js";
import { normalizeJsonText } from "../runtime/json.js";
import { PAYLOAD_BYTES_MAX } from "../runtime/limits.js";
import type { Dispatcher } from "../runtime/dispatcher.js";
import type { RuntimeMetrics } from "../runtime/metrics.js";
import type { InvocationService, SyncOutcome } from "./invocations.js";
import { registerObjectRoutes } from "./objects.js";
import { GatewayQueues, registerQueueRoutes } from "./queues.js";
import { registerWorkflowRoutes } from "./workflows.js";
import { gatewayServerOptions, registerOperations, type OperationsOptions } from "./operations.js";
import { gatewayLibraries, RecentlySeen } from "./ui/libraries.js";

/** Largest request body the gateway reads; larger ones get 413. */
export const HTTP_BODY_BYTES_MAX = PAYLOAD_BYTES_MAX;
/** Seconds a client is told to wait (Retry-After) after a 503. */
const RETRY_AFTER_SEC = 1;

/** The HTTP status of each error code. */
export const HTTP_STATUS: Readonly<Record<InvocationErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  FUNCTION_NOT_FOUND: 404,
  NOT_FOUND: 404,
  IDEMPOTENCY_CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  FUNCTION_ERROR: 500,
  INVALID_OUTPUT: 500,
  INTERNAL: 500,
  WORKER_LOST: 502,
  OVERLOADED: 503,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

/** Authentication, TLS and the dashboard's sources: see operations.ts. */
export interface GatewayOptions extends OperationsOptions {
  readonly invocations: InvocationService;
  readonly dispatcher: Dispatcher;
  readonly metrics?: RuntimeMetrics;
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** Port (default 0: any free port). */
  readonly port?: number;
  readonly logger?: Logger;
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  if (Array.isArray(v)) {
    throw new InvocationError("INVALID_ARGUMENT", `header ${name} was given ${v.length} times`);
  }
  return v;
}

function bookOf(req: FastifyRequest): number | undefined {
  const v = header(req, "x-boki-book");
  return v === undefined ? undefined : parseUserBook(v.trim(), "X-Boki-Book");
}

function keyOf(req: FastifyRequest): string | undefined {
  const v = header(req, "idempotency-key");
  return v === undefined ? undefined : parseIdempotencyKey(v);
}

function inputOf(req: FastifyRequest): string {
  const body = req.body;
  if (body === undefined || body === null) return "null";
  if (typeof body !== "string") {
    throw new InvocationError("INVALID_ARGUMENT", "the request body must be JSON text");
  }
  return normalizeJsonText(body, "the request body");
}

function sendError(reply: FastifyReply, err: InvocationError): FastifyReply {
  const status = HTTP_STATUS[err.code];
  if (status === 503) void reply.header("retry-after", String(RETRY_AFTER_SEC));
  return reply.code(status).send({ error: err.toJSON() });
}

/** Turns whatever a route threw (fastify's own errors included) into an InvocationError. */
function toInvocationError(err: unknown): InvocationError {
  if (err instanceof InvocationError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE" || e.statusCode === 413) {
    return new InvocationError(
      "PAYLOAD_TOO_LARGE",
      `the request body is larger than ${HTTP_BODY_BYTES_MAX} bytes (HTTP_BODY_BYTES_MAX)`,
    );
  }
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new InvocationError("INVALID_ARGUMENT", String(e.message));
  }
  return new InvocationError("INTERNAL", describeThrown(err));
}

export class Gateway {
  private constructor(
    private readonly app: FastifyInstance,
    /** The base URL it listens on, e.g. http://127.0.0.1:8080 */
    readonly url: string,
    private readonly state: { closing: boolean },
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const logger = options.logger ?? silentLogger;
    const { invocations, dispatcher, metrics } = options;
    const app = Fastify({
      bodyLimit: HTTP_BODY_BYTES_MAX,
      logger: false,
      return503OnClosing: true,
      ...gatewayServerOptions(options),
    });
    const state = { closing: false };
    const listenHost = options.host ?? "127.0.0.1";
    let url = "";
    // The queues as the routes open them, and what the routes reached lately: the
    // dashboard's Objects and Queues sections read both.
    const queues = new GatewayQueues((book) => invocations.logBook(book));
    const seen = new RecentlySeen();
    const dashboard = options.dashboard ?? {};
    registerOperations(app, {
      ...options,
      host: listenHost,
      dispatcher,
      url: () => url,
      dashboard: {
        ...dashboard,
        libraries:
          dashboard.libraries ??
          gatewayLibraries({
            dispatcher,
            seen,
            log: (book) => invocations.logBook(book),
            queues,
            ...(dashboard.queueNotes === undefined ? {} : { queueNotes: dashboard.queueNotes }),
          }),
      },
    });

    // Bodies are JSON whatever their Content-Type says (curl -d sends a form type): the
    // text is parsed by the route, so a syntax error is our 400 and not fastify's.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));

    app.setErrorHandler((err, _req, reply) => {
      const e = toInvocationError(err);
      if (e.code === "INTERNAL") logger.error({ err: describeThrown(err) }, "gateway error");
      return sendError(reply, e);
    });
    app.setNotFoundHandler((req, reply) =>
      sendError(reply, new InvocationError("NOT_FOUND", `no route ${req.method} ${req.url}`)),
    );
    if (metrics !== undefined) {
      app.addHook("onResponse", (req, reply, done) => {
        metrics.httpRequest(
          req.routeOptions.url ?? "unmatched",
          reply.statusCode,
          reply.elapsedTime / 1000,
        );
        done();
      });
    }

    const sendOutcome = (reply: FastifyReply, o: SyncOutcome): FastifyReply => {
      void reply.header("x-boki-invocation-id", o.invocationId);
      if (o.replayed) void reply.header("idempotent-replayed", "true");
      if (!o.ok) return sendError(reply, o.error);
      return reply.code(200).type("application/json; charset=utf-8").send(o.outputJson);
    };

    app.post<{ Params: { name: string } }>("/function/:name", async (req, reply) => {
      const outcome = await invocations.invokeSync({
        name: req.params.name,
        inputJson: inputOf(req),
        ...optional("book", bookOf(req)),
        ...optional("idempotencyKey", keyOf(req)),
      });
      return sendOutcome(reply, outcome);
    });

    app.post<{ Params: { name: string } }>("/async/function/:name", async (req, reply) => {
      const accepted = await invocations.acceptAsync({
        name: req.params.name,
        inputJson: inputOf(req),
        ...optional("book", bookOf(req)),
        ...optional("idempotencyKey", keyOf(req)),
      });
      void reply.header("x-boki-invocation-id", accepted.invocationId);
      if (accepted.replayed) void reply.header("idempotent-replayed", "true");
      return reply.code(202).send({
        invocationId: accepted.invocationId,
        status: accepted.replayed ? "recorded earlier" : "pending",
        statusUrl: `/invocations/${accepted.invocationId}`,
      });
    });

    registerQueueRoutes(app, {
      queues,
      bookOf,
      inputOf,
      seen: (queue, book) => seen.queue(queue, book),
    });
    registerObjectRoutes(app, {
      invocations,
      dispatcher,
      bookOf,
      keyOf,
      inputOf,
      sendError,
      seen: (object, key, book) => seen.object(object, key, book),
    });
    registerWorkflowRoutes(app, {
      invocations,
      dispatcher,
      bookOf,
      keyOf,
      header,
      inputOf,
      sendError,
    });

    app.get<{ Params: { id: string } }>("/invocations/:id", async (req) =>
      invocations.status(req.params.id),
    );

    app.get("/functions", () => ({ functions: dispatcher.functions() }));

    app.get("/healthz", (_req, reply) => {
      if (state.closing) {
        return reply.code(503).send({ status: "shutting down" });
      }
      return reply.send({
        status: "ok",
        functions: dispatcher.functions().length,
        ...invocations.load(),
      });
    });

    app.get("/metrics", async (_req, reply) => {
      if (metrics === undefined) {
        return sendError(reply, new InvocationError("NOT_FOUND", "metrics are not enabled"));
      }
      const m = await metrics.scrape();
      return reply.type(m.contentType).send(m.body);
    });

    await app.listen({ host: listenHost, port: options.port ?? 0 });
    const addr = app.server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    url = `${options.tls === undefined ? "http" : "https"}://${host}:${addr.port}`;
    return new Gateway(app, url, state);
  }

  /** The port it listens on. */
  get port(): number {
    return (this.app.server.address() as AddressInfo).port;
  }

  /** Stops taking requests and waits for the ones in progress to be answered. */
  async close(): Promise<void> {
    if (this.state.closing) return;
    this.state.closing = true;
    await this.app.close();
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
