/**
 * The HTTP endpoint of a cluster node that is not a gateway: `GET /metrics` (Prometheus
 * text format) and `GET /healthz`, on the node's `metricsPort`. Metrics are read from the
 * node's parts when scraped: the transport's counters on every node, the engine's appends
 * and cache hits on engines, and the function runtime's metrics where functions run.
 */
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import type { TcpTransportStats } from "../transport/tcp.js";
import type { Role } from "./config.js";

/** Bucket bounds (seconds) of the engine's append stage histograms: 0.1 ms to 1 s. */
export const APPEND_STAGE_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024,
  0.032, 0.048, 0.064, 0.128, 0.256, 1,
];

/** Longest a metrics request may take before its connection is closed. */
export const METRICS_REQUEST_TIMEOUT_MS = 10_000;

export interface NodeMetricsOptions {
  readonly id: string;
  readonly role: Role;
  readonly term: number;
  readonly transport: () => TcpTransportStats;
  /** An engine's counters. */
  readonly engine?: () => { appends: number; cacheHits: number; cacheMisses: number };
  /** Further registries to serve (e.g. the function runtime's). */
  readonly extra?: readonly Registry[];
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly appendHeld: Histogram | undefined;
  private readonly appendOrdering: Histogram | undefined;

  constructor(private readonly o: NodeMetricsOptions) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: o.id, role: o.role });
    // Event-loop lag sampled every 100 ms rather than prom-client's 10 ms: a busy node pays
    // for every sample.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    const counter = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    };
    const t = o.transport;
    counter(
      "boki_transport_messages_sent_total",
      "Messages queued to peers",
      () => t().messagesQueued,
    );
    counter(
      "boki_transport_messages_received_total",
      "Messages received from peers",
      () => t().messagesReceived,
    );
    counter("boki_transport_socket_writes_total", "Socket writes", () => t().socketWrites);
    counter("boki_transport_socket_reads_total", "Socket reads", () => t().socketReads);
    counter("boki_transport_bytes_sent_total", "Bytes written to sockets", () => t().bytesWritten);
    counter(
      "boki_transport_bytes_received_total",
      "Bytes read from sockets",
      () => t().bytesReceived,
    );
    counter(
      "boki_transport_dropped_total",
      "Messages dropped: queue full, too large, unknown peer or closed",
      () => {
        const s = t();
        return s.droppedQueueFull + s.droppedTooLarge + s.droppedUnknownPeer + s.droppedClosed;
      },
    );
    counter(
      "boki_transport_malformed_frames_total",
      "Inbound connections closed for a malformed frame",
      () => t().malformedFrames,
    );
    const e = o.engine;
    if (e !== undefined) {
      counter("boki_log_appends_total", "Appends accepted by this engine", () => e().appends);
      counter("boki_log_cache_hits_total", "Record cache hits", () => e().cacheHits);
      counter("boki_log_cache_misses_total", "Record cache misses", () => e().cacheMisses);
      this.appendHeld = new Histogram({
        name: "boki_engine_append_held_seconds",
        help: "Time an append waited in the engine before its batch was sent to the storage nodes",
        buckets: APPEND_STAGE_BUCKETS_SECONDS,
        registers,
      });
      this.appendOrdering = new Histogram({
        name: "boki_engine_append_ordering_seconds",
        help: "Time from an append's batch being sent to storage until the metalog ordered it (storage replicas, cut, metalog commit)",
        buckets: APPEND_STAGE_BUCKETS_SECONDS,
        registers,
      });
    }
  }

  /** An engine's `onAppendStages`: one ordered append's stage times, in milliseconds. */
  observeAppendStages(heldMs: number, orderingMs: number): void {
    this.appendHeld?.observe(heldMs / 1000);
    this.appendOrdering?.observe(orderingMs / 1000);
  }

  async text(): Promise<string> {
    const registries = [this.registry, ...(this.o.extra ?? [])];
    const parts = await Promise.all(registries.map((r) => r.metrics()));
    return parts.join("\n");
  }

  /** Serves `/metrics` and `/healthz` on `host:port`; resolves once listening. */
  async listen(host: string, port: number): Promise<Server> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET") {
        res.writeHead(405, { "content-type": "application/json", allow: "GET" });
        res.end(JSON.stringify({ error: { code: "INVALID_ARGUMENT", message: "use GET" } }));
        return;
      }
      if (path === "/healthz") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({ status: "ok", node: this.o.id, role: this.o.role, term: this.o.term }),
        );
        return;
      }
      if (path === "/metrics") {
        this.text().then(
          (body) => {
            res.writeHead(200, { "content-type": this.registry.contentType });
            res.end(body);
          },
          (err: unknown) => {
            res.writeHead(500, { "content-type": "application/json" });
            res.end(JSON.stringify({ error: { code: "INTERNAL", message: String(err) } }));
          },
        );
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: `no route ${path}` } }));
    });
    server.requestTimeout = METRICS_REQUEST_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return server;
  }
}
