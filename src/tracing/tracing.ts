/**
 * Turning tracing on. Off by default: nothing of the OpenTelemetry SDK is even loaded. With
 * an endpoint (`--otlp-endpoint`, or the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_ENDPOINT`) the process registers a tracer provider whose spans go in
 * batches to an OTLP/HTTP collector (JSON over HTTP; `OTEL_EXPORTER_OTLP_HEADERS` adds
 * headers), W3C trace-context propagation, and an AsyncLocalStorage context manager.
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off whatever else is set.
 *
 * One provider per process: the runtime's spans come from the global OpenTelemetry API.
 */
import type { SpanExporter } from "@opentelemetry/sdk-trace-node";
import { InvalidArgumentError } from "../log/errors.js";
import { setTracingEnabled, tracingEnabled } from "./spans.js";

/** Most spans waiting to be exported; beyond it new spans are dropped (the SDK counts them). */
export const SPAN_QUEUE_MAX = 4096;
/** Most spans per export request. */
export const SPAN_EXPORT_BATCH_MAX = 512;
/** How often waiting spans are exported. */
export const SPAN_EXPORT_INTERVAL_MS = 2_000;
/** Longest one export may take. */
export const SPAN_EXPORT_TIMEOUT_MS = 10_000;
/** Longest `shutdown` waits for the last spans to be exported. */
export const TRACING_SHUTDOWN_TIMEOUT_MS = 5_000;

export interface TracingOptions {
  /** The OTLP/HTTP traces URL (…/v1/traces). */
  readonly url?: string;
  /** Instead of OTLP, an exporter of your own (tests use the SDK's InMemorySpanExporter). */
  readonly exporter?: SpanExporter;
  /** `service.name` (default `OTEL_SERVICE_NAME`, else "boki"). */
  readonly serviceName?: string;
  /** Further resource attributes, e.g. the node's id and role. */
  readonly attributes?: Readonly<Record<string, string>>;
  /** Export each span as it ends instead of in batches (tests). */
  readonly immediate?: boolean;
}

export interface Tracing {
  /** Exports what is waiting. */
  flush(): Promise<void>;
  /** Exports what is waiting and turns tracing off. */
  shutdown(): Promise<void>;
}

/**
 * The traces URL the environment and a flag ask for, or null for none. `endpoint` (a flag)
 * and `OTEL_EXPORTER_OTLP_ENDPOINT` are base URLs (`/v1/traces` is added);
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is.
 */
export function tracesUrlFrom(
  env: Readonly<Record<string, string | undefined>>,
  endpoint?: string,
): string | null {
  if (env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true") return null;
  if (env["OTEL_TRACES_EXPORTER"]?.trim().toLowerCase() === "none") return null;
  const base = (u: string): string => `${u.replace(/\/+$/, "")}/v1/traces`;
  let url: string | null = null;
  if (endpoint !== undefined && endpoint.trim() !== "") url = base(endpoint.trim());
  else if ((env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? "").trim() !== "")
    url = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]!.trim();
  else if ((env["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? "").trim() !== "")
    url = base(env["OTEL_EXPORTER_OTLP_ENDPOINT"]!.trim());
  if (url === null) return null;
  if (!/^https?:\/\/[^/]+/.test(url))
    throw new InvalidArgumentError(`the OTLP endpoint must be an http(s) URL, got ${url}`);
  return url;
}

const OFF: Tracing = { flush: () => Promise.resolve(), shutdown: () => Promise.resolve() };

/**
 * Starts tracing for this process (once; a second call while on fails). Loads the SDK only
 * now, so a process that never traces never pays for it.
 */
export async function startTracing(o: TracingOptions): Promise<Tracing> {
  if (tracingEnabled()) throw new InvalidArgumentError("tracing is already on in this process");
  if (o.url === undefined && o.exporter === undefined) return OFF;
  const [
    { NodeTracerProvider, BatchSpanProcessor, SimpleSpanProcessor },
    { resourceFromAttributes },
  ] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/resources"),
  ]);
  let exporter: SpanExporter;
  if (o.exporter !== undefined) exporter = o.exporter;
  else {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    exporter = new OTLPTraceExporter({ url: o.url!, timeoutMillis: SPAN_EXPORT_TIMEOUT_MS });
  }
  const processor = o.immediate
    ? new SimpleSpanProcessor(exporter)
    : new BatchSpanProcessor(exporter, {
        maxQueueSize: SPAN_QUEUE_MAX,
        maxExportBatchSize: SPAN_EXPORT_BATCH_MAX,
        scheduledDelayMillis: SPAN_EXPORT_INTERVAL_MS,
        exportTimeoutMillis: SPAN_EXPORT_TIMEOUT_MS,
      });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": o.serviceName ?? process.env["OTEL_SERVICE_NAME"] ?? "boki",
      "process.pid": process.pid,
      ...o.attributes,
    }),
    spanProcessors: [processor],
  });
  provider.register();
  setTracingEnabled(true);
  let stopped = false;
  return {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      if (stopped) return;
      stopped = true;
      setTracingEnabled(false);
      const { trace, context, propagation } = await import("@opentelemetry/api");
      await Promise.race([
        provider.shutdown(),
        new Promise<void>((resolve) => setTimeout(resolve, TRACING_SHUTDOWN_TIMEOUT_MS).unref()),
      ]);
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
