/**
 * Prometheus metrics of a node running functions and/or the gateway, in one registry of
 * its own (so several nodes can live in one process, as in tests). Counters that live
 * elsewhere (the pool's, the log's) are read when the registry is scraped.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { LogOpCounts } from "./session.js";

export interface PoolStats {
  readonly workers: number;
  readonly running: number;
  readonly queued: number;
  readonly workerRestarts: number;
}

export interface LogCacheStats {
  readonly hits: number;
  readonly misses: number;
}

/** Latency buckets in seconds, from 0.5 ms to 30 s. */
const SECONDS_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export class RuntimeMetrics {
  readonly registry = new Registry();
  /** Log operations made by functions, counted by their sessions. */
  readonly logOps: LogOpCounts = { appends: 0, reads: 0, other: 0 };
  private readonly invocations: Counter<"function" | "outcome">;
  private readonly invocationSeconds: Histogram<"function" | "outcome">;
  private readonly httpSeconds: Histogram<"route" | "status">;
  private pool: (() => PoolStats) | undefined;
  private cache: (() => LogCacheStats | undefined) | undefined;
  private async: (() => { queued: number; running: number }) | undefined;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // Event-loop lag sampled every 100 ms rather than prom-client's 10 ms (cheaper when busy).
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    this.invocations = new Counter({
      name: "boki_invocations_total",
      help: "Invocations run, by function and outcome (ok or the error code, lower case)",
      labelNames: ["function", "outcome"],
      registers,
    });
    this.invocationSeconds = new Histogram({
      name: "boki_invocation_duration_seconds",
      help: "Time from an invocation's start (or queueing for a worker) to its end",
      labelNames: ["function", "outcome"],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.httpSeconds = new Histogram({
      name: "boki_http_request_duration_seconds",
      help: "HTTP requests to the gateway, by route and status",
      labelNames: ["route", "status"],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    const counter = (name: string, help: string, read: () => number | undefined): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          const v = read();
          this.reset();
          if (v !== undefined) this.inc(v);
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number | undefined): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read() ?? 0);
        },
      });
    };
    counter(
      "boki_log_appends_total",
      "Appends (and conditional appends) made by functions",
      () => this.logOps.appends,
    );
    counter("boki_log_reads_total", "Reads made by functions", () => this.logOps.reads);
    counter(
      "boki_log_cache_hits_total",
      "Record cache hits of the log",
      () => this.cache?.()?.hits,
    );
    counter(
      "boki_log_cache_misses_total",
      "Record cache misses of the log",
      () => this.cache?.()?.misses,
    );
    gauge(
      "boki_pool_workers",
      "Worker threads ready to run functions",
      () => this.pool?.().workers,
    );
    gauge(
      "boki_pool_running_invocations",
      "Invocations running in workers",
      () => this.pool?.().running,
    );
    gauge(
      "boki_pool_queued_invocations",
      "Invocations waiting for a worker",
      () => this.pool?.().queued,
    );
    counter(
      "boki_pool_worker_restarts_total",
      "Workers replaced after dying or getting stuck",
      () => this.pool?.().workerRestarts,
    );
    gauge(
      "boki_async_queued_invocations",
      "Asynchronous invocations recorded and waiting to run",
      () => this.async?.().queued,
    );
    gauge(
      "boki_async_running_invocations",
      "Asynchronous invocations running",
      () => this.async?.().running,
    );
  }

  /** Reads the gateway's asynchronous backlog at each scrape. */
  observeAsync(read: () => { queued: number; running: number }): void {
    this.async = read;
  }

  /** Reads the pool's figures at each scrape. */
  observePool(read: () => PoolStats): void {
    this.pool = read;
  }

  /** Reads the log's record cache counters at each scrape. */
  observeLogCache(read: () => LogCacheStats | undefined): void {
    this.cache = read;
  }

  /** One finished invocation: outcome "ok" or its error code. */
  invocation(fn: string, outcome: string, seconds: number): void {
    const labels = { function: fn, outcome: outcome.toLowerCase() };
    this.invocations.inc(labels);
    this.invocationSeconds.observe(labels, seconds);
  }

  httpRequest(route: string, status: number, seconds: number): void {
    this.httpSeconds.observe({ route, status: String(status) }, seconds);
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
