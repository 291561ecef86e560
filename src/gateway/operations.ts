/**
 * What makes a gateway operable, added to its fastify app in one call: authentication
 * (auth.ts), TLS (tls.ts), request tracing (../tracing/http.ts) and the dashboard
 * (ui/routes.ts). The server itself only calls `gatewayServerOptions` and
 * `registerOperations`.
 */
import type { FastifyInstance } from "fastify";
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

/** The fastify options these add (the HTTPS server). */
export function gatewayServerOptions(o: OperationsOptions): {
  https?: { cert: string | Buffer; key: string | Buffer; minVersion: "TLSv1.2" };
} {
  if (o.tls === undefined) return {};
  checkTls(o.tls);
  return { https: { cert: o.tls.cert, key: o.tls.key, minVersion: TLS_VERSION_MIN } };
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
