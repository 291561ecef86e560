/**
 * The whole runtime in one process, as `boki dev` runs it: the embedded log, a function host
 * (worker threads) over it, the invocation records and the HTTP gateway.
 */
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { FunctionHost } from "../runtime/function-host.js";
import { RuntimeMetrics } from "../runtime/metrics.js";
import type { FunctionInfo } from "../runtime/dispatcher.js";
import { SHUTDOWN_GRACE_MS } from "../runtime/limits.js";
import { InvocationService } from "../gateway/invocations.js";
import { Gateway } from "../gateway/server.js";
import type { GatewayAuthOptions } from "../gateway/auth.js";
import type { GatewayTls } from "../gateway/tls.js";
import { FunctionStats, ObservedDispatcher } from "../gateway/ui/stats.js";
import { embeddedSource } from "../gateway/ui/sources.js";
import { EmbeddedLog } from "./embedded-log.js";

export interface DevServerOptions {
  /** A function module, or a directory of them. */
  readonly functions: string;
  /** Data directory of the embedded log. */
  readonly dataDir: string;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Worker threads (default 2). */
  readonly workers?: number;
  /** Time limit of functions that set none, in ms (default 30 s). */
  readonly timeoutMs?: number;
  /** Invocations one worker runs at once (default 64). */
  readonly invocationsPerWorker?: number;
  /** Invocations that may wait for a worker (default 1024). */
  readonly queueMax?: number;
  /** Whether appends wait for fsync (default true; see EmbeddedLogOptions.sync). */
  readonly sync?: boolean;
  readonly logger?: Logger;
  /** Bearer tokens of the gateway (required when `host` is beyond loopback). */
  readonly auth?: GatewayAuthOptions;
  /** Serve HTTPS with this certificate and key. */
  readonly tls?: GatewayTls;
}

export class DevServer {
  private closed = false;

  private constructor(
    readonly log: EmbeddedLog,
    readonly host: FunctionHost,
    readonly invocations: InvocationService,
    readonly gateway: Gateway,
    /** Recorded invocations found unfinished at start and queued to run again. */
    readonly recovered: number,
  ) {}

  static async start(options: DevServerOptions): Promise<DevServer> {
    const logger = options.logger ?? silentLogger;
    const log = await EmbeddedLog.open({
      dir: options.dataDir,
      logger,
      ...(options.sync === undefined ? {} : { sync: options.sync }),
    });
    let host: FunctionHost | undefined;
    let invocations: InvocationService | undefined;
    try {
      const metrics = new RuntimeMetrics();
      metrics.observeLogCache(() => log.cacheStats());
      host = await FunctionHost.start({
        functions: options.functions,
        log,
        logger,
        metrics,
        ...(options.workers === undefined ? {} : { workers: options.workers }),
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
        ...(options.invocationsPerWorker === undefined
          ? {}
          : { invocationsPerWorker: options.invocationsPerWorker }),
        ...(options.queueMax === undefined ? {} : { queueMax: options.queueMax }),
      });
      // The dashboard's figures: every invocation the gateway dispatches.
      const stats = new FunctionStats();
      const dispatcher = new ObservedDispatcher(host, stats);
      invocations = new InvocationService({ log, dispatcher, logger, metrics });
      host.setAsyncInvoker(invocations);
      const { recovered } = await invocations.start();
      let url: string | null = null;
      const gateway = await Gateway.start({
        invocations,
        dispatcher,
        metrics,
        logger,
        ...(options.host === undefined ? {} : { host: options.host }),
        ...(options.port === undefined ? {} : { port: options.port }),
        ...(options.auth === undefined ? {} : { auth: options.auth }),
        ...(options.tls === undefined ? {} : { tls: options.tls }),
        dashboard: {
          stats,
          source: embeddedSource({
            log,
            address: () => url,
            appends: () => metrics.logOps.appends,
          }),
        },
      });
      url = gateway.url;
      return new DevServer(log, host, invocations, gateway, recovered);
    } catch (err) {
      await invocations?.close();
      await host?.close();
      await log.close();
      throw err;
    }
  }

  get url(): string {
    return this.gateway.url;
  }

  functions(): readonly FunctionInfo[] {
    return this.host.functions();
  }

  /**
   * Stops taking requests, gives running invocations up to `graceMs` to finish (what does
   * not finish in time fails with UNAVAILABLE; recorded ones run again at the next start),
   * then closes the log.
   */
  async close(graceMs = SHUTDOWN_GRACE_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const until = Date.now() + graceMs;
    // Stop accepting connections first; requests in progress are answered as their
    // invocations end, which the steps below bound.
    const gatewayClosed = this.gateway.close();
    await this.invocations.close(graceMs);
    await this.host.close(Math.max(0, until - Date.now()));
    await gatewayClosed;
    await this.log.close();
  }
}
