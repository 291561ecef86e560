/**
 * The gateway's workflow routes. Workflows are functions (`boki-ts/flow`), so each route is
 * an invocation: of the workflow's function with a flow call, or of the library's own
 * functions for status, listing and cancelling.
 *
 *   POST /workflow/<name>             start (or join) an instance and wait for its outcome
 *   POST /async/workflow/<name>       record the start and answer 202 at once
 *   GET  /workflows/<id>              status, steps, output or error
 *   GET  /workflows?status=&workflow=&limit=   recent instances, newest first
 *   POST /workflows/<id>/cancel       cancel it ({ "reason": "..." } optional)
 *
 * The instance id is `X-Boki-Workflow-Id`, else the `Idempotency-Key`, else a new one; a
 * start with the id of an instance that exists joins it (and returns its outcome). Headers
 * `X-Boki-Book` as for functions; responses carry `X-Boki-Workflow-Id` and
 * `X-Boki-Workflow-Status`.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FLOW_FUNCTIONS, WORKFLOW_KIND, type FlowOutcome } from "../flow/protocol.js";
import { InvocationError } from "../runtime/errors.js";
import type { Dispatcher } from "../runtime/dispatcher.js";
import type { InvocationService } from "./invocations.js";

/** Longest instance id a request may give. */
export const WORKFLOW_ID_CHARS_MAX = 512;

/** HTTP statuses of the refusals the flow library answers with. */
const REFUSAL_STATUS: Readonly<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  ID_CONFLICT: 409,
};

export interface WorkflowRouteDeps {
  readonly invocations: InvocationService;
  readonly dispatcher: Dispatcher;
  readonly bookOf: (req: FastifyRequest) => number | undefined;
  readonly keyOf: (req: FastifyRequest) => string | undefined;
  readonly header: (req: FastifyRequest, name: string) => string | undefined;
  readonly inputOf: (req: FastifyRequest) => string;
  readonly sendError: (reply: FastifyReply, err: InvocationError) => FastifyReply;
}

function checkId(id: string, what: string): string {
  if (id.length === 0 || id.length > WORKFLOW_ID_CHARS_MAX || !/^[\x21-\x7e]+$/.test(id)) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `${what} is 1 to ${WORKFLOW_ID_CHARS_MAX} visible ASCII characters`,
    );
  }
  return id;
}

export function registerWorkflowRoutes(app: FastifyInstance, d: WorkflowRouteDeps): void {
  const { invocations, dispatcher } = d;

  const workflowFunction = (name: string): void => {
    const f = dispatcher.functions().find((x) => x.name === name);
    if (f === undefined || f.kind !== WORKFLOW_KIND) {
      throw new InvocationError("FUNCTION_NOT_FOUND", `no workflow named ${JSON.stringify(name)}`);
    }
  };

  const flowLoaded = (): void => {
    if (!dispatcher.functions().some((f) => f.name === FLOW_FUNCTIONS.status)) {
      throw new InvocationError(
        "NOT_FOUND",
        "no workflows are loaded (export one made with defineWorkflow)",
      );
    }
  };

  const idOf = (req: FastifyRequest): string => {
    const given = d.header(req, "x-boki-workflow-id") ?? d.keyOf(req);
    return given === undefined ? randomUUID() : checkId(given, "X-Boki-Workflow-Id");
  };

  const startCall = (req: FastifyRequest, id: string): string =>
    `{"$flow":"start","id":${JSON.stringify(id)},"input":${d.inputOf(req)}}`;

  /** Runs one of the library's functions; its refusals become HTTP errors. */
  const system = async (
    req: FastifyRequest,
    reply: FastifyReply,
    name: string,
    input: unknown,
  ): Promise<FastifyReply> => {
    flowLoaded();
    const book = d.bookOf(req);
    const o = await invocations.invokeSync({
      name,
      inputJson: JSON.stringify(input),
      ...(book === undefined ? {} : { book }),
    });
    if (!o.ok) return d.sendError(reply, o.error);
    const value = JSON.parse(o.outputJson) as { $error?: { code: string; message: string } };
    if (value.$error !== undefined) {
      return reply.code(REFUSAL_STATUS[value.$error.code] ?? 400).send({ error: value.$error });
    }
    return reply.code(200).type("application/json; charset=utf-8").send(o.outputJson);
  };

  const sendFlowOutcome = (reply: FastifyReply, id: string, o: FlowOutcome): FastifyReply => {
    void reply.header("x-boki-workflow-id", id).header("x-boki-workflow-status", o.status);
    const statusUrl = `/workflows/${encodeURIComponent(id)}`;
    switch (o.status) {
      case "succeeded":
        return reply
          .code(200)
          .type("application/json; charset=utf-8")
          .send(JSON.stringify(o.output));
      case "failed":
        return reply.code(500).send({
          error: { code: "WORKFLOW_FAILED", message: `${o.error.name}: ${o.error.message}` },
          workflowId: id,
        });
      case "cancelled":
        return reply
          .code(409)
          .send({ error: { code: "CANCELLED", message: o.error.message }, workflowId: id });
      case "rejected":
        return reply
          .code(REFUSAL_STATUS[o.error.code] ?? 400)
          .send({ error: { code: o.error.code, message: o.error.message } });
      case "sleeping":
        return reply.code(202).send({
          workflowId: id,
          status: o.status,
          sleepingUntil: new Date(o.until).toISOString(),
          statusUrl,
        });
      case "running":
        return reply.code(202).send({ workflowId: id, status: o.status, statusUrl });
    }
  };

  app.post<{ Params: { name: string } }>("/workflow/:name", async (req, reply) => {
    workflowFunction(req.params.name);
    const id = idOf(req);
    const book = d.bookOf(req);
    const o = await invocations.invokeSync({
      name: req.params.name,
      inputJson: startCall(req, id),
      ...(book === undefined ? {} : { book }),
    });
    if (!o.ok) {
      void reply.header("x-boki-workflow-id", id);
      return d.sendError(reply, o.error);
    }
    return sendFlowOutcome(reply, id, JSON.parse(o.outputJson) as FlowOutcome);
  });

  app.post<{ Params: { name: string } }>("/async/workflow/:name", async (req, reply) => {
    workflowFunction(req.params.name);
    const id = idOf(req);
    const book = d.bookOf(req);
    await invocations.acceptAsync({
      name: req.params.name,
      inputJson: startCall(req, id),
      ...(book === undefined ? {} : { book }),
    });
    void reply.header("x-boki-workflow-id", id);
    return reply.code(202).send({
      workflowId: id,
      status: "pending",
      statusUrl: `/workflows/${encodeURIComponent(id)}`,
    });
  });

  app.get<{ Params: { id: string } }>("/workflows/:id", (req, reply) =>
    system(req, reply, FLOW_FUNCTIONS.status, { id: checkId(req.params.id, "a workflow id") }),
  );

  app.get<{ Querystring: Record<string, string | undefined> }>("/workflows", (req, reply) => {
    const q = req.query;
    const limit = q["limit"] === undefined ? undefined : Number(q["limit"]);
    if (limit !== undefined && !Number.isInteger(limit)) {
      throw new InvocationError("INVALID_ARGUMENT", "limit must be an integer");
    }
    return system(req, reply, FLOW_FUNCTIONS.list, {
      ...(q["status"] === undefined ? {} : { status: q["status"] }),
      ...(q["workflow"] === undefined ? {} : { workflow: q["workflow"] }),
      ...(limit === undefined ? {} : { limit }),
    });
  });

  app.post<{ Params: { id: string } }>("/workflows/:id/cancel", (req, reply) => {
    const body = JSON.parse(d.inputOf(req)) as { reason?: unknown } | null;
    return system(req, reply, FLOW_FUNCTIONS.cancel, {
      id: checkId(req.params.id, "a workflow id"),
      ...(body?.reason === undefined ? {} : { reason: body.reason }),
    });
  });
}
