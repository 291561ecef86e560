/**
 * The gateway's object routes (`boki-ts/objects`): each is an invocation of the object's
 * function, or of the library's state function.
 *
 *   POST /object/<name>/<key>/<handler>   a request to the instance; 200 with the handler's output
 *   GET  /object/<name>/<key>             the instance's committed state
 *
 * `Idempotency-Key` makes a request exactly once (its id); `X-Boki-Book` selects the book.
 * A handler's failure is `422 { error: { code, message } }` with the handler's code;
 * retryable refusals (TXN_DIED, OBJECT_BUSY, TIMEOUT) are 503.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { OBJECT_FUNCTIONS, OBJECT_KIND } from "../objects/object.js";
import type { Outcome } from "../objects/records.js";
import { InvocationError } from "../runtime/errors.js";
import type { Dispatcher, FunctionInfo } from "../runtime/dispatcher.js";
import type { InvocationService } from "./invocations.js";

const RETRYABLE = new Set(["TXN_DIED", "OBJECT_BUSY", "TIMEOUT"]);

export interface ObjectRouteDeps {
  readonly invocations: InvocationService;
  readonly dispatcher: Dispatcher;
  readonly bookOf: (req: FastifyRequest) => number | undefined;
  readonly keyOf: (req: FastifyRequest) => string | undefined;
  readonly inputOf: (req: FastifyRequest) => string;
  readonly sendError: (reply: FastifyReply, err: InvocationError) => FastifyReply;
  /** Told of every instance a request reached (the dashboard's recently seen instances). */
  readonly seen?: (object: string, key: string, book: number) => void;
}

export function registerObjectRoutes(app: FastifyInstance, d: ObjectRouteDeps): void {
  const objectFunction = (name: string): FunctionInfo => {
    const f = d.dispatcher.functions().find((x) => x.name === name);
    if (f === undefined || f.kind !== OBJECT_KIND) {
      throw new InvocationError("FUNCTION_NOT_FOUND", `no object named ${JSON.stringify(name)}`);
    }
    return f;
  };

  app.post<{ Params: { name: string; key: string; handler: string } }>(
    "/object/:name/:key/:handler",
    async (req, reply) => {
      const f = objectFunction(req.params.name);
      const book = d.bookOf(req);
      const id = d.keyOf(req);
      const call = `{"key":${JSON.stringify(req.params.key)},"handler":${JSON.stringify(req.params.handler)},"input":${d.inputOf(req)},"reply":"outcome"${id === undefined ? "" : `,"id":${JSON.stringify(`http/${id}`)}`}}`;
      const o = await d.invocations.invokeSync({
        name: req.params.name,
        inputJson: call,
        ...(book === undefined ? {} : { book }),
      });
      if (!o.ok) return d.sendError(reply, o.error);
      d.seen?.(req.params.name, req.params.key, book ?? f.book ?? 0);
      const out = JSON.parse(o.outputJson) as Outcome;
      if (out.ok)
        return reply
          .code(200)
          .type("application/json; charset=utf-8")
          .send(JSON.stringify(out.value));
      const code = out.error.code ?? "HANDLER_ERROR";
      if (RETRYABLE.has(code)) void reply.header("retry-after", "1");
      return reply
        .code(RETRYABLE.has(code) ? 503 : 422)
        .send({ error: { code, message: out.error.message } });
    },
  );

  app.get<{ Params: { name: string; key: string } }>("/object/:name/:key", async (req, reply) => {
    const f = objectFunction(req.params.name);
    // The instance lives in the object's book unless the request names one (as for a POST).
    const book = d.bookOf(req) ?? f.book ?? 0;
    const o = await d.invocations.invokeSync({
      name: OBJECT_FUNCTIONS.state,
      inputJson: JSON.stringify({ object: req.params.name, key: req.params.key }),
      book,
    });
    if (!o.ok) return d.sendError(reply, o.error);
    d.seen?.(req.params.name, req.params.key, book);
    return reply.code(200).type("application/json; charset=utf-8").send(o.outputJson);
  });
}
