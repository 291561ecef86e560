/**
 * Spans of the gateway's HTTP requests: one server span per request, named by method and
 * route, a child of the `traceparent` the request carries (so a caller's trace goes on), with
 * the route's handler running in its context (so the invocation it makes is its child). The
 * response carries `traceparent` back, naming the request's span. Nothing is added while
 * tracing is off.
 */
import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
} from "@opentelemetry/api";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { contextFromHeaders, runtimeTracer, traceparentOf, tracingEnabled } from "./spans.js";

const SPAN = Symbol("boki-ts http span");

type Traced = FastifyRequest & { [SPAN]?: { span: Span; ctx: Context } };

export function registerHttpTracing(app: FastifyInstance): void {
  if (!tracingEnabled()) return;
  app.addHook("onRequest", (req, reply, done) => {
    const route = req.routeOptions.url ?? "unmatched";
    const parent = contextFromHeaders(req.headers);
    const span = runtimeTracer().startSpan(
      `${req.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": req.method,
          "http.route": route,
          "url.path": req.url.split("?")[0]!.slice(0, 1024),
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    (req as Traced)[SPAN] = { span, ctx };
    const tp = traceparentOf(ctx);
    if (tp !== undefined) void reply.header("traceparent", tp);
    done();
  });
  // After the body is read: the handler runs inside the span's context from here on.
  app.addHook("preHandler", (req, _reply, done) => {
    const traced = (req as Traced)[SPAN];
    if (traced === undefined) return done();
    context.with(traced.ctx, done);
  });
  app.addHook("onResponse", (req, reply, done) => {
    const span = (req as Traced)[SPAN]?.span;
    if (span !== undefined) {
      span.setAttribute("http.response.status_code", reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
    done();
  });
}
