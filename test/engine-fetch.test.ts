/**
 * An engine on its own, over the in-process network, against a scripted sequencer: how it
 * asks for metalog entries it knows exist but has not received.
 */
import { describe, expect, it } from "vitest";
import { InProcNetwork } from "../src/transport/inproc.js";
import { Engine, REFETCH_AFTER_MS } from "../src/engine/engine.js";
import { silentLogger } from "../src/util/logger.js";
import { ManualClock } from "./helpers/manual-clock.js";
import { oneOfEachView } from "./helpers/views.js";

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe("an engine catching up with the metalog", () => {
  it("asks again after a pause, not at once, when the sequencer's answer brings no entries (no fetch storm)", async () => {
    const clock = new ManualClock();
    const net = new InProcNetwork();
    const view = oneOfEachView();
    // A primary that says it has committed 10 entries but cannot serve them yet (a new
    // primary still recovering them, say). It answers at most 1,000 fetches.
    let fetches = 0;
    const seq = net.connect("seq-0");
    seq.onMessage((from, m) => {
      if (m.t !== "metalog-fetch" || ++fetches > 1_000) return;
      seq.send(from, { t: "metalog", log: 0, entries: [], tail: 10, term: 1 });
    });
    net.connect("sto-0");
    const engine = new Engine({
      transport: net.connect("eng-0"),
      clock,
      view,
      logger: silentLogger,
    });
    void engine.start().catch(() => undefined);
    await turns(20);
    expect(fetches).toBeLessThanOrEqual(2);
    // Later fetches come with the engine's periodic retry.
    for (let t = 0; t < 1_000; t += 20) {
      clock.advance(20);
      await turns(2);
    }
    expect(fetches).toBeGreaterThan(2);
    expect(fetches).toBeLessThanOrEqual(2 + Math.ceil(1_000 / REFETCH_AFTER_MS) + 1);
    engine.close();
  });
});
