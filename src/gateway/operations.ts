/**
 * What makes a gateway operable, added to its fastify app in one call: authentication
 * (auth.ts), TLS (tls.ts), request tracing (../tracing/http.ts) and the dashboard
 * (ui/routes.ts). The server itself only calls `gatewayServerOptions` and
 * `registerOperations`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Dispatcher } from "../runtime/dispatcher.js";
import { registerHttpTracing } from "../tracing/http.js";
import { checkListenAuth, GatewayAuth, registerAuth, type GatewayAuthOptions } from "./auth.js";
import { checkTls, TLS_VERSION_MIN, type GatewayTls } from "./tls.js";
import { registerDashboard, type DashboardOptions } from "./ui/routes.js";

export interface OperationsOptions {
  /** Bearer tokens (see auth.ts). Required to listen beyond loopback. */
  readonly auth?: GatewayAuthOptions;
  /** Serve HTTPS with this certificate and key. */
  readonly tls?: GatewayTls;
  /** The dashboard's sources (`/ui` is served either way). */
  readonly dashboard?: DashboardOptions;
}

/**
 * The fastify options these add: the HTTPS server, and typed errors for what fastify refuses
 * before any route or hook runs (a URL that does not decode), like every other refusal.
 */
export function gatewayServerOptions(o: OperationsOptions): {
  https?: { cert: string | Buffer; key: string | Buffer; minVersion: "TLSv1.2" };
  frameworkErrors: (error: Error, req: FastifyRequest, reply: FastifyReply) => void;
} {
  const frameworkErrors = (error: Error, _req: FastifyRequest, reply: FastifyReply): void => {
    void reply.code(400).send({
      error: { code: "INVALID_ARGUMENT", message: error.message.slice(0, 512) },
    });
  };
  if (o.tls === undefined) return { frameworkErrors };
  checkTls(o.tls);
  return {
    https: { cert: o.tls.cert, key: o.tls.key, minVersion: TLS_VERSION_MIN },
    frameworkErrors,
  };
}

/**
 * Checks that the gateway may listen on `host` as configured, then adds the hooks and the
 * dashboard's routes. Call before the other routes are added.
 */
export function registerOperations(
  app: FastifyInstance,
  o: OperationsOptions & {
    readonly host: string;
    readonly dispatcher: Dispatcher;
    readonly url: () => string;
  },
): void {
  checkListenAuth(o.host, o.auth);
  const auth = new GatewayAuth(o.auth);
  registerHttpTracing(app);
  registerAuth(app, auth);
  registerDashboard(app, {
    dispatcher: o.dispatcher,
    options: o.dashboard ?? {},
    gatewayUrl: o.url,
    auth: auth.enabled,
    tls: o.tls !== undefined,
  });
}
