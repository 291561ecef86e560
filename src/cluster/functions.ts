/**
 * Functions in a cluster. An engine node runs a `FunctionHost` over its own log and serves
 * `invoke-request`s from gateways; a gateway balances invocations over the engines with an
 * `EngineDispatcher`, which is the gateway's `Dispatcher` in cluster mode.
 */
import type { Engine } from "../engine/engine.js";
import { EngineLogBook } from "../engine/logbook.js";
import type { InvokeReplyMsg } from "../protocol/messages.js";
import { parseBookId, type MetalogPosition } from "../log/types.js";
import type {
  Dispatcher,
  FunctionInfo,
  InvokeRequest,
  InvokeResult,
  LogProvider,
} from "../runtime/dispatcher.js";
import { FunctionHost, type FunctionHostOptions } from "../runtime/function-host.js";
import { InvocationError, describeThrown } from "../runtime/errors.js";
import { parseInvocationId } from "../runtime/ids.js";
import { loadFunctions } from "../runtime/loader.js";
import { FUNCTION_TIMEOUT_MS_DEFAULT } from "../runtime/limits.js";
import type { ClusterClient } from "./client.js";
import { traceDispatch, withRemoteParent } from "../tracing/spans.js";

/**
 * How many engines a gateway tries for one invocation before it gives up with UNAVAILABLE:
 * an engine that cannot be reached (or answers UNAVAILABLE) passes the request on.
 */
export const ENGINE_ATTEMPTS_MAX = 3;

/** LogBook sessions on an engine's own log (what functions on that engine use). */
export function engineLogProvider(engine: Engine): LogProvider {
  return {
    book(book, options = {}) {
      const id = parseBookId(book);
      const position = options.position ?? engine.positionOf(id);
      return new EngineLogBook(engine, id, position as MetalogPosition);
    },
  };
}

function wireError(err: unknown): { code: string; message: string } {
  if (err instanceof InvocationError) return err.toJSON();
  return { code: "INTERNAL", message: describeThrown(err) };
}

/**
 * Starts a function host on `engine` and serves invocations sent to the engine over the
 * transport. Nested invocations (`ctx.invoke`) run on the same engine.
 */
export async function serveFunctions(
  engine: Engine,
  options: Omit<FunctionHostOptions, "log">,
): Promise<FunctionHost> {
  engine.functionsLoaded(false);
  let host: FunctionHost;
  try {
    host = await FunctionHost.start({ ...options, log: engineLogProvider(engine) });
  } catch (err) {
    engine.functionsLoaded(true);
    throw err;
  }
  engine.setInvokeHandler(async (m): Promise<InvokeReplyMsg> => {
    try {
      // The invocation's span continues the trace of the gateway that sent it.
      const r = await withRemoteParent(m.trace, () =>
        host.invoke({
          name: m.name,
          inputJson: m.input,
          book: m.book,
          position: m.position,
          invocationId: parseInvocationId(m.invocationId),
          deadline: Date.now() + m.timeoutMs,
        }),
      );
      return {
        t: "invoke-reply",
        id: m.id,
        position: r.position,
        output: r.outputJson,
        error: null,
      };
    } catch (err) {
      return {
        t: "invoke-reply",
        id: m.id,
        position: m.position,
        output: null,
        error: wireError(err),
      };
    }
  });
  return host;
}

/**
 * A gateway's dispatcher in a cluster: the function catalogue comes from loading the same
 * modules the engines run (in the gateway's main thread, for names, books and time limits
 * only), and each invocation goes to the next engine in turn, passing to another engine
 * when one cannot be reached.
 */
export class EngineDispatcher implements Dispatcher {
  private next = 0;

  private constructor(
    private readonly client: ClusterClient,
    private readonly catalogue: ReadonlyMap<string, FunctionInfo>,
  ) {}

  static async create(
    client: ClusterClient,
    functions: string,
    defaultTimeoutMs = FUNCTION_TIMEOUT_MS_DEFAULT,
  ): Promise<EngineDispatcher> {
    const loaded = await loadFunctions(functions);
    const catalogue = new Map<string, FunctionInfo>();
    for (const [name, f] of loaded.byName) {
      catalogue.set(name, {
        name,
        book: f.fn.book,
        timeoutMs: f.fn.timeoutMs ?? defaultTimeoutMs,
        ...(f.fn.kind === undefined ? {} : { kind: f.fn.kind }),
        ...(f.fn.schedule === undefined ? {} : { scheduleEveryMs: f.fn.schedule.everyMs }),
        ...(f.fn.meta === undefined ? {} : { meta: f.fn.meta }),
      });
    }
    return new EngineDispatcher(client, catalogue);
  }

  functions(): readonly FunctionInfo[] {
    return [...this.catalogue.values()];
  }

  async invoke(req: InvokeRequest): Promise<InvokeResult> {
    const info = this.catalogue.get(req.name);
    if (info === undefined)
      throw new InvocationError("FUNCTION_NOT_FOUND", `no function named "${req.name}"`);
    const engines = this.client.engines;
    let last: InvocationError | undefined;
    for (let attempt = 0; attempt < Math.min(ENGINE_ATTEMPTS_MAX, engines.length); attempt++) {
      if (attempt > 0 && req.deadline <= Date.now()) break;
      const timeoutMs = Math.max(1, req.deadline - Date.now());
      const engine = engines[this.next++ % engines.length]!;
      let reply: InvokeReplyMsg;
      try {
        reply = await traceDispatch(req.name, engine, (trace) =>
          this.client.invoke(engine, {
            name: req.name,
            input: req.inputJson,
            book: req.book,
            position: req.position ?? 0,
            invocationId: req.invocationId,
            timeoutMs,
            ...(trace === undefined ? {} : { trace }),
          }),
        );
      } catch (err) {
        // The engine did not answer (unreachable, or gone mid-request): the function may have
        // run there. Only a request that never reached an engine could safely go elsewhere,
        // which the transport cannot tell apart; so this fails, and callers that need
        // exactly-once use an idempotency key.
        throw new InvocationError(
          "UNAVAILABLE",
          `engine ${engine} did not answer: ${describeThrown(err)}`,
          { cause: err },
        );
      }
      if (reply.error === null) {
        return { outputJson: reply.output ?? "null", position: reply.position };
      }
      last = InvocationError.fromJSON(reply.error);
      // An engine that runs no functions, or is shutting down, passes the request on.
      if (reply.error.code !== "UNAVAILABLE" && reply.error.code !== "NOT_FOUND") throw last;
    }
    throw last ?? new InvocationError("UNAVAILABLE", "no engine could run the invocation");
  }
}
