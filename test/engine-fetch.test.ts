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

describe("an engine's answer to invocations before it runs functions", () => {
  it("is UNAVAILABLE (retryable) while its functions load, NOT_FOUND when it runs none, and goes to the handler once set", async () => {
    const net = new InProcNetwork();
    const view = oneOfEachView();
    net.connect("seq-0");
    net.connect("sto-0");
    const engine = new Engine({
      transport: net.connect("eng-0"),
      clock: new ManualClock(),
      view,
      logger: silentLogger,
    });
    const gateway = net.connect("gw-0");
    const replies: Array<{ code: string | undefined; output: string | null }> = [];
    gateway.onMessage((_from, m) => {
      if (m.t === "invoke-reply") replies.push({ code: m.error?.code, output: m.output });
    });
    const ask = async (id: number): Promise<void> => {
      gateway.send("eng-0", {
        t: "invoke-request",
        id,
        name: "f",
        input: "null",
        book: 0,
        position: 0,
        invocationId: `i${id}`,
        timeoutMs: 1000,
      });
      await turns(5);
    };
    await ask(1);
    engine.functionsLoaded(false);
    await ask(2);
    engine.setInvokeHandler((m) =>
      Promise.resolve({ t: "invoke-reply", id: m.id, position: 0, output: "7", error: null }),
    );
    await ask(3);
    expect(replies).toEqual([
      { code: "NOT_FOUND", output: null },
      { code: "UNAVAILABLE", output: null },
      { code: undefined, output: "7" },
    ]);
    engine.close();
  });
});
