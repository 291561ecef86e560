/**
 * OpenTelemetry tracing: off by default (nothing made, the helpers call straight through);
 * when on, one trace per request from the caller's `traceparent` through the gateway's
 * request span, the invocation, nested invocations and child workflows, each workflow
 * step and its log operation; and across processes, a cluster exporting over OTLP/HTTP to a
 * collector the test runs, where the engine's invocation span is the child of the gateway's
 * dispatch span, carried in the invocation message.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-node";
import { DevServer } from "../src/embedded/dev-server.js";
import {
  bindToContext,
  flowRecordOf,
  traceInvocation,
  tracingEnabled,
  workflowIdOf,
} from "../src/tracing/spans.js";
import { startTracing, tracesUrlFrom, type Tracing } from "../src/tracing/tracing.js";
import { superviseCluster, type Supervisor } from "../src/cluster/supervisor.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { tempDir } from "./helpers/tmp.js";
import { http } from "./helpers/http.js";

const FLOWS = fileURLToPath(new URL("./fixtures/flow/workflows.ts", import.meta.url));
const CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN = "b7ad6b7169203331";

describe("tracing off (the default)", () => {
  it("makes no spans: the helpers call straight through and bind nothing", async () => {
    expect(tracingEnabled()).toBe(false);
    const fn = (): number => 1;
    expect(bindToContext(fn)).toBe(fn);
    let ran = 0;
    await traceInvocation(
      { name: "f", invocationId: "i", book: 0, depth: 0, inputJson: "null" },
      () => Promise.resolve(ran++),
    );
    expect(ran).toBe(1);
  });

  it("takes its endpoint from the flag or the standard variables, and OTEL_SDK_DISABLED wins", () => {
    expect(tracesUrlFrom({})).toBeNull();
    expect(tracesUrlFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })).toBe(
      "http://c:4318/v1/traces",
    );
    expect(tracesUrlFrom({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/x" })).toBe(
      "http://c:4318/x",
    );
    expect(tracesUrlFrom({}, "http://flag:1")).toBe("http://flag:1/v1/traces");
    expect(
      tracesUrlFrom({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c" }),
    ).toBeNull();
    expect(
      tracesUrlFrom({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c" }),
    ).toBeNull();
    expect(() => tracesUrlFrom({}, "ftp://x")).toThrow(/http\(s\) URL/);
  });

  it("reads a workflow's instance id and a flow record's kind and name without parsing all of it", () => {
    expect(workflowIdOf('{"$flow":"start","id":"order-\\"1","input":{}}', "inv")).toBe('order-"1');
    expect(workflowIdOf('{"a":1}', "inv")).toBe("inv");
    expect(flowRecordOf('{"v":1,"k":"step","at":1,"name":"charge","ok":true,"value":1}')).toEqual({
      kind: "step",
      name: "charge",
    });
    expect(
      flowRecordOf(new TextEncoder().encode('{"v":1,"k":"start","at":1,"wf":"checkout"}')),
    ).toEqual({
      kind: "start",
      name: "checkout",
    });
    expect(flowRecordOf("plain data")).toBeNull();
  });
});

describe("tracing on, in one process", () => {
  const t = tempDir();
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let server: DevServer;

  beforeAll(async () => {
    tracing = await startTracing({ exporter, immediate: true, serviceName: "boki-test" });
    server = await DevServer.start({ functions: FLOWS, dataDir: join(t.dir, "data"), workers: 1 });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await tracing?.shutdown();
    t.remove();
  });

  it("follows a workflow from the caller's traceparent through the request, the invocation, its child workflow, its steps and their log operations", async () => {
    exporter.reset();
    const r = await http(server.url, "POST", "/workflow/parent", {
      body: '{"n":4}',
      headers: {
        traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
        "x-boki-workflow-id": "traced-1",
      },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get("traceparent")).toMatch(
      new RegExp(`^00-${CALLER_TRACE}-[0-9a-f]{16}-01$`),
    );
    // The request's own spans end with it; the child spawned asynchronously may come later.
    let spans: ReadableSpan[] = [];
    for (let i = 0; i < 100; i++) {
      spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === CALLER_TRACE);
      if (
        spans.some((s) => s.name === "step double") &&
        spans.some((s) => s.name === "POST /workflow/:name")
      )
        break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan): ReadableSpan | undefined =>
      byId.get(s.parentSpanContext?.spanId ?? "");
    const one = (name: string, pred: (s: ReadableSpan) => boolean = () => true): ReadableSpan => {
      const found = spans.filter((s) => s.name === name && pred(s));
      expect(
        found.length,
        `${name} in ${spans.map((s) => s.name).join(", ")}`,
      ).toBeGreaterThanOrEqual(1);
      return found[0]!;
    };

    const request = one("POST /workflow/:name");
    expect(request.parentSpanContext?.spanId).toBe(CALLER_SPAN);
    expect(request.attributes["http.response.status_code"]).toBe(200);
    const invocation = one("invoke parent");
    expect(parentOf(invocation)).toBe(request);
    expect(invocation.attributes["boki.workflow.id"]).toBe("traced-1");
    expect(invocation.attributes["boki.invocation.depth"]).toBe(0);

    // wf.invoke of a workflow: a nested invocation in the parent's trace, with its step.
    const child = one("invoke child", (s) => s.attributes["boki.workflow.id"] === "traced-1/1");
    expect(child.attributes["boki.invocation.depth"]).toBe(1);
    let up: ReadableSpan | undefined = parentOf(child);
    while (up !== undefined && up !== invocation) up = parentOf(up);
    expect(up).toBe(invocation);
    const step = one("step double", (s) => {
      let p = parentOf(s);
      while (p !== undefined && p !== child) p = parentOf(p);
      return p === child;
    });
    const append = spans.find((s) => parentOf(s) === step && s.name === "log.condAppend");
    expect(append, "the step's record append").toBeDefined();
    expect(append!.attributes["boki.log.seqnum"]).toEqual(expect.any(Number));
    expect(append!.attributes["boki.book"]).toBe(0);
    // The step began when the invocation's previous log operation ended, before its append.
    // Span times are given to different resolutions (a start passed in as milliseconds since
    // the epoch, another taken from the high-resolution clock), so they are compared to 1 ms.
    const ms = (t: readonly [number, number]): number => t[0] * 1e3 + t[1] / 1e6;
    expect(ms(step.startTime)).toBeLessThanOrEqual(ms(append!.startTime) + 1);
    // The plain function called with wf.invoke, and the workflow's start record.
    one("invoke plain-add");
    one("workflow start parent");
    expect(spans.every((s) => s.resource.attributes["service.name"] === "boki-test")).toBe(true);
  });

  it("marks a failed invocation's span as an error with its code", async () => {
    exporter.reset();
    const r = await http(server.url, "POST", "/function/no-such-function", { body: "1" });
    expect(r.status).toBe(404);
    const failing = await http(server.url, "POST", "/workflow/failing", { body: "null" });
    expect(failing.status).toBe(500);
    const spans = exporter.getFinishedSpans();
    const req = spans.find((s) => s.name === "POST /function/:name");
    expect(req?.attributes["http.response.status_code"]).toBe(404);
    const inv = spans.find((s) => s.name === "invoke failing");
    expect(inv).toBeDefined();
    const stepFailed = spans.find((s) => s.name === "step refuse");
    expect(stepFailed?.attributes["boki.flow.kind"]).toBe("step");
  });
});

describe("tracing across processes, over OTLP/HTTP", () => {
  const t = tempDir();
  let sup: Supervisor | null = null;
  let collector: Server;
  let url = "";
  /** Spans the collector received: name, ids, parent, and the sending service. */
  const received: Array<{
    name: string;
    traceId: string;
    spanId: string;
    parentSpanId: string;
    service: string;
    engine?: string;
  }> = [];

  beforeAll(async () => {
    collector = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        try {
          const o = JSON.parse(body) as {
            resourceSpans: Array<{
              resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
              scopeSpans: Array<{
                spans: Array<{
                  name: string;
                  traceId: string;
                  spanId: string;
                  parentSpanId?: string;
                  attributes: Array<{ key: string; value: { stringValue?: string } }>;
                }>;
              }>;
            }>;
          };
          for (const rs of o.resourceSpans) {
            const service =
              rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "";
            for (const ss of rs.scopeSpans)
              for (const s of ss.spans)
                received.push({
                  name: s.name,
                  traceId: s.traceId,
                  spanId: s.spanId,
                  parentSpanId: s.parentSpanId ?? "",
                  service,
                  ...(s.attributes.some((a) => a.key === "boki.engine")
                    ? {
                        engine: s.attributes.find((a) => a.key === "boki.engine")!.value
                          .stringValue!,
                      }
                    : {}),
                });
          }
        } catch {
          // not JSON: counted as nothing
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{}");
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(collector.address() as { port: number }).port}`;
    const configPath = join(t.dir, "cluster.json");
    const config = await writeClusterConfig(
      configPath,
      ["sequencer", "storage", "engine", "engine", "gateway"],
      {
        replication: 1,
        sequencersPerLog: 1,
        dataDir: "data",
      },
    );
    const before = process.env["OTEL_EXPORTER_OTLP_ENDPOINT"];
    process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint;
    try {
      sup = superviseCluster(configPath, config, () => undefined, "error", {
        path: FLOWS,
        timeoutMs: 5000,
      });
    } finally {
      if (before === undefined) delete process.env["OTEL_EXPORTER_OTLP_ENDPOINT"];
      else process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = before;
    }
    const gw = config.nodes.find((n) => n.role === "gateway")!;
    url = `http://${gw.host}:${gw.port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        if (
          (
            await http(url, "POST", "/function/plain-add", {
              body: '{"a":1,"b":1}',
              timeoutMs: 2000,
            })
          ).status === 200
        )
          break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error("the cluster did not come up within 60 s");
      await new Promise((r) => setTimeout(r, 200));
    }
    // One answer shows one engine serving; the test balances over both, and an engine still
    // loading its functions passes requests on to the other. Wait for both to have run one.
    const setupTrace = "9".repeat(32);
    const enginesServing = () =>
      new Set(
        received
          .filter((x) => x.traceId === setupTrace && x.name === "dispatch plain-add")
          .map((x) => x.engine),
      ).size;
    for (let i = 0; enginesServing() < 2; i++) {
      if (Date.now() > deadline) throw new Error("both engines did not serve within 60 s");
      await http(url, "POST", "/function/plain-add", {
        body: '{"a":1,"b":1}',
        timeoutMs: 2000,
        headers: { traceparent: `00-${setupTrace}-${(i + 1).toString(16).padStart(16, "0")}-01` },
      }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 90_000);

  afterAll(async () => {
    await sup?.stop();
    await new Promise<void>((r) => collector?.close(() => r()));
    t.remove();
  }, 30_000);

  it("each engine's invocation span is the child of the gateway's dispatch span, in the caller's trace", async () => {
    const traces = ["1".repeat(32), "2".repeat(32)];
    for (const [i, trace] of traces.entries()) {
      const r = await http(url, "POST", "/workflow/parent", {
        body: '{"n":2}',
        headers: {
          traceparent: `00-${trace}-${"a".repeat(15)}${i}-01`,
          "x-boki-workflow-id": `x-${i}`,
        },
      });
      expect(r.status).toBe(200);
    }
    // Spans leave every process in batches (about every 2 s).
    const deadline = Date.now() + 20_000;
    const linked = (trace: string) => {
      const dispatch = received.find((s) => s.traceId === trace && s.name === "dispatch parent");
      const invoke = received.find((s) => s.traceId === trace && s.name === "invoke parent");
      const step = received.find((s) => s.traceId === trace && s.name === "step double");
      return { dispatch, invoke, step };
    };
    while (
      Date.now() < deadline &&
      !traces.every((tr) => Object.values(linked(tr)).every((x) => x !== undefined))
    )
      await new Promise((r) => setTimeout(r, 200));
    const engines = new Set<string>();
    for (const trace of traces) {
      const { dispatch, invoke, step } = linked(trace);
      expect(dispatch?.service, JSON.stringify(received.filter((s) => s.traceId === trace))).toBe(
        "boki-gateway",
      );
      expect(invoke?.service).toBe("boki-engine");
      expect(invoke?.parentSpanId).toBe(dispatch?.spanId);
      expect(step?.service).toBe("boki-engine");
      engines.add(dispatch!.engine!);
    }
    // The gateway balanced the two requests over both engines.
    expect(engines.size).toBe(2);
  }, 60_000);
});
