// The queue through real processes: `boki dev` serving push/pop/ack functions, producers
// pushing over HTTP, consumer processes popping and acking; consumers and the node are
// killed with SIGKILL under load, the node restarted on the same data directory. No pushed
// message is lost, and none is delivered again after a consumer's ack of it took effect.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { call } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/queue", import.meta.url));
const CONSUMER = join(FIXTURES, "_consumer.mjs");
const VISIBILITY_MS = 2000;
/** Longest the drain at the end may take (visibility timeouts of killed consumers included). */
const DRAIN_TIMEOUT_MS = 20_000;

interface Line {
  t: "send" | "got" | "error";
  acking?: string[];
  messages?: { id: string; receipt: string; delivery: number; value: string }[];
  accepted?: string[];
  rejected?: string[];
}

class Consumer {
  readonly lines: Line[] = [];
  private partial = "";
  readonly exited: Promise<void>;
  constructor(
    readonly id: string,
    readonly child: ChildProcess,
  ) {
    child.stdout!.on("data", (c: Buffer) => {
      const parts = (this.partial + c.toString()).split("\n");
      this.partial = parts.pop() ?? "";
      for (const p of parts) if (p !== "") this.lines.push(JSON.parse(p) as Line);
    });
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }
  static start(url: string, id: string): Consumer {
    const child = spawn(process.execPath, [CONSUMER, url, id, String(VISIBILITY_MS)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    return new Consumer(id, child);
  }
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** What became of one delivery's receipt, from a consumer's lines. */
type AckState = "accepted" | "maybe" | "rejected" | "unsent";

function valueOfReceipt(deliveries: Map<string, { value: string; delivery: number }>, r: string) {
  const d = deliveries.get(r);
  if (d === undefined) throw new Error(`ack of a receipt never delivered: ${r}`);
  return d;
}

describe("queue under kill -9", () => {
  const tmp = tempDir("boki-queue-proc-");
  const dataDir = join(tmp.dir, "data");
  let dev: DevProcess | undefined;
  const consumers: Consumer[] = [];

  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.kill("SIGKILL")));
    await dev?.stop("SIGKILL");
    tmp.remove();
  }, 30_000);

  it("loses no message and delivers none again after its ack, across killed consumers and a killed node", async () => {
    const start = () =>
      startDevProcess(["--functions", FIXTURES, "--data", dataDir, "--workers", "2"]);
    dev = await start();
    let url = dev.url;

    // Producers: unique values; a push is confirmed by a 200, unknown on any failure.
    const confirmed = new Set<string>();
    const unknown = new Set<string>();
    let producing = true;
    const producer = async (p: number): Promise<void> => {
      for (let i = 0; producing; i++) {
        const value = `p${p}-${i}`;
        try {
          const r = await call(url, "q-push", { value });
          if (r.status === 200) confirmed.add(value);
          else {
            unknown.add(value);
            await sleep(50);
          }
        } catch {
          unknown.add(value);
          await sleep(50);
        }
      }
    };
    const producers = [0, 1, 2].map((p) => producer(p));

    for (const id of ["c0", "c1", "c2"]) consumers.push(Consumer.start(url, id));
    await sleep(1500);
    // A consumer dies holding what it popped.
    await consumers[0]!.kill("SIGKILL");
    consumers.push(Consumer.start(url, "c3"));
    await sleep(1000);
    // The node dies under load; the consumers connected to it are killed too.
    await dev.stop("SIGKILL");
    await Promise.all(consumers.slice(1).map((c) => c.kill("SIGKILL")));
    dev = await start();
    url = dev.url;
    for (const id of ["c4", "c5"]) consumers.push(Consumer.start(url, id));
    await sleep(1500);
    producing = false;
    await Promise.all(producers);

    // Let the consumers drain, killed consumers' messages included (after their visibility).
    const drainEnd = Date.now() + DRAIN_TIMEOUT_MS;
    for (;;) {
      const len = await call(url, "q-length", null).catch((err: unknown) => {
        throw new Error(`q-length failed: ${String(err)}\n${dev?.output() ?? ""}`);
      });
      expect(len.status).toBe(200);
      if ((len.json as { total: number }).total === 0) break;
      if (Date.now() > drainEnd) throw new Error(`queue not drained: ${len.text}`);
      await sleep(200);
    }
    await Promise.all(consumers.slice(4).map((c) => c.kill("SIGTERM")));

    // Reconstruct every delivery and what became of its receipt.
    const deliveries = new Map<string, { value: string; delivery: number }>();
    const ackState = new Map<string, AckState>();
    for (const c of consumers) {
      const unknownSeen = new Set<string>(); // an attempt to ack it got no answer
      let sent: string[] = [];
      for (const line of c.lines) {
        if (line.t === "send") {
          sent = line.acking ?? [];
          for (const r of sent) ackState.set(r, "maybe");
        } else if (line.t === "got") {
          for (const r of line.accepted ?? []) ackState.set(r, "accepted");
          for (const r of line.rejected ?? [])
            ackState.set(r, unknownSeen.has(r) ? "maybe" : "rejected");
          for (const m of line.messages ?? []) {
            expect(deliveries.has(m.receipt)).toBe(false); // one delivery, one consumer
            deliveries.set(m.receipt, { value: m.value, delivery: m.delivery });
            ackState.set(m.receipt, "unsent");
          }
          sent = [];
        } else {
          for (const r of sent) unknownSeen.add(r);
          sent = [];
        }
      }
    }
    const byValue = new Map<string, { delivery: number; state: AckState }[]>();
    for (const [receipt, state] of ackState) {
      const d = valueOfReceipt(deliveries, receipt);
      byValue.set(d.value, [...(byValue.get(d.value) ?? []), { delivery: d.delivery, state }]);
    }
    for (const [value, list] of byValue) {
      const accepted = list.filter((x) => x.state === "accepted");
      // At most one ack of a message takes effect...
      expect(accepted.length, `accepted acks of ${value}`).toBeLessThanOrEqual(1);
      // ...and no delivery of it comes after that one.
      if (accepted.length === 1) {
        expect(Math.max(...list.map((x) => x.delivery)), `deliveries of ${value}`).toBe(
          accepted[0]!.delivery,
        );
      }
      const numbers = list.map((x) => x.delivery);
      expect(new Set(numbers).size, `delivery numbers of ${value}`).toBe(numbers.length);
      expect(confirmed.has(value) || unknown.has(value), `${value} was pushed`).toBe(true);
    }
    // No confirmed push is lost: each was acked (or its ack was sent when a process died).
    for (const value of confirmed) {
      const list = byValue.get(value) ?? [];
      expect(
        list.some((x) => x.state === "accepted" || x.state === "maybe"),
        `${value} acked`,
      ).toBe(true);
    }
    // The scenario did what it says: load on both sides of the restart, and redeliveries.
    expect(confirmed.size).toBeGreaterThan(50);
    expect([...deliveries.values()].some((d) => d.delivery > 1)).toBe(true);
  }, 90_000);
});
