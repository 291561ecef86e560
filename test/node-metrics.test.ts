import { describe, expect, it } from "vitest";
import { NodeMetrics } from "../src/cluster/node-metrics.js";
import { emptyTcpStats } from "../src/transport/tcp.js";

const NO_TRAFFIC = emptyTcpStats();

describe("a node's metrics", () => {
  it("on an engine, histogram each observed append's held and ordering stages in seconds", async () => {
    const m = new NodeMetrics({
      id: "engine-0",
      role: "engine",
      term: 1,
      transport: () => NO_TRAFFIC,
      engine: () => ({ appends: 2, cacheHits: 0, cacheMisses: 0 }),
    });
    m.observeAppendStages(0.05, 3); // 50 µs held, 3 ms ordering
    m.observeAppendStages(0.2, 40);
    const text = await m.text();
    const value = (series: string): number => {
      const escaped = series.replace(/[{}"+.]/g, (c) => `\\${c}`);
      const r = new RegExp(`^${escaped} (\\S+)$`, "m").exec(text);
      return r === null ? NaN : Number(r[1]);
    };
    const labels = 'node="engine-0",role="engine"';
    expect(value(`boki_engine_append_held_seconds_count{${labels}}`)).toBe(2);
    expect(value(`boki_engine_append_held_seconds_bucket{le="0.0001",${labels}}`)).toBe(1);
    expect(value(`boki_engine_append_ordering_seconds_bucket{le="0.004",${labels}}`)).toBe(1);
    expect(value(`boki_engine_append_ordering_seconds_bucket{le="0.064",${labels}}`)).toBe(2);
    expect(value(`boki_engine_append_ordering_seconds_sum{${labels}}`)).toBeCloseTo(0.043, 6);
  });

  it("on a node that is not an engine, have no append stage histograms", async () => {
    const m = new NodeMetrics({
      id: "storage-0",
      role: "storage",
      term: 1,
      transport: () => NO_TRAFFIC,
    });
    m.observeAppendStages(1, 1);
    expect(await m.text()).not.toContain("boki_engine_append");
  });
});
