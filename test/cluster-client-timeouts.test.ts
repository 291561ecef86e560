/**
 * Request timeouts of the cluster client, against a fake engine: a TCP transport on
 * 127.0.0.1 that answers `client-request`s as the test decides (now, later or never). The
 * client keeps one shared timer for requests without extra time and a timer per blocking
 * read; these tests pin what callers see. Waits are real and short (a 200 ms request
 * timeout), and bounded; every client and transport a test starts is closed in `afterEach`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { until as untilHolds } from "./helpers/async.js";
import { ClusterClient, type RemoteLogBook } from "../src/cluster/client.js";
import { LogClosedError, TimeoutError } from "../src/log/errors.js";
import type { ClientReplyMsg, ClientRequestMsg } from "../src/protocol/messages.js";
import { TcpTransport, type PeerAddress } from "../src/transport/tcp.js";
import type { NodeId } from "../src/transport/transport.js";

const HOST = "127.0.0.1";
const ENGINE = "engine-0";
const TIMEOUT_MS = 200;
/** Most a timeout may come after its deadline here (a loaded machine, a slow event loop). */
const LATE_MS_MAX = 1_000;
const WAIT_MS = 5_000;

const transports: TcpTransport[] = [];
const clients: ClusterClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  const all = transports.splice(0);
  for (const t of all) t.close();
  await Promise.all(all.map((t) => t.whenClosed()));
});

const until = (cond: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> =>
  untilHolds(cond, what, timeoutMs);

/** Client ids carry their address (`clientId()` in src/cluster/config.ts). */
function resolveClient(node: NodeId): PeerAddress | undefined {
  const m = /^client@([0-9.]+):([0-9]{1,5})$/.exec(node);
  return m === null ? undefined : { host: m[1]!, port: Number(m[2]) };
}

interface Received {
  from: NodeId;
  m: ClientRequestMsg;
}

interface FakeEngine {
  readonly port: number;
  /** Requests received and not answered yet, in arrival order. */
  readonly held: Received[];
  received(): number;
  answer(r: Received): void;
}

/**
 * An engine that answers a request at once when `answerNow` says so, and otherwise holds
 * it for the test. A read is answered with a record whose seqnum is the one asked for, so
 * each caller can tell its own answer.
 */
async function fakeEngine(answerNow: (m: ClientRequestMsg) => boolean): Promise<FakeEngine> {
  const t = await TcpTransport.listen({ self: ENGINE, host: HOST, port: 0, peers: resolveClient });
  transports.push(t);
  const held: Received[] = [];
  let received = 0;
  const answer = (r: Received): void => {
    const reply: ClientReplyMsg = {
      t: "client-reply",
      id: r.m.id,
      position: r.m.position,
      seqnum: r.m.op === "append" ? 1 : null,
      record: {
        seqnum: r.m.seqnum,
        book: r.m.book,
        tags: [],
        data: new Uint8Array(0),
        auxData: null,
      },
      error: null,
    };
    t.send(r.from, reply);
  };
  t.onMessage((from, m) => {
    if (m.t !== "client-request") return;
    received++;
    const r = { from, m };
    if (answerNow(m)) answer(r);
    else held.push(r);
  });
  return { port: t.address.port, held, received: () => received, answer };
}

async function connect(
  engine: FakeEngine,
  requestTimeoutMs = TIMEOUT_MS,
): Promise<{ client: ClusterClient; book: RemoteLogBook }> {
  const client = await ClusterClient.connect({
    engines: [{ id: ENGINE, host: HOST, port: engine.port }],
    host: HOST,
    requestTimeoutMs,
  });
  clients.push(client);
  return { client, book: client.book(1) };
}

/** How a request ended, and when (ms on `performance.now()`). */
type Outcome = { ok: true; value: unknown; at: number } | { ok: false; error: unknown; at: number };

function settle(p: Promise<unknown>): Promise<Outcome> {
  return p.then(
    (value) => ({ ok: true as const, value, at: performance.now() }),
    (error: unknown) => ({ ok: false as const, error, at: performance.now() }),
  );
}

/** Timeouts still keeping the process alive (unref'd timers are not listed). */
function refedTimeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

describe("ClusterClient request timeouts", () => {
  it("a request the engine never answers rejects with TimeoutError after the request timeout, not before", async () => {
    const engine = await fakeEngine(() => false);
    const { book } = await connect(engine);
    const sent = performance.now();
    const out = await settle(book.readNext(0, 5));
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.error).toBeInstanceOf(TimeoutError);
    expect((out.error as Error).message).toBe(
      `engine ${ENGINE} did not answer a readNext within ${TIMEOUT_MS} ms`,
    );
    expect(engine.received()).toBe(1);
    const waited = out.at - sent;
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT_MS - 1);
    expect(waited).toBeLessThan(TIMEOUT_MS + LATE_MS_MAX);
  });

  it("of many requests in two waves, answered ones resolve, each ignored one times out at its own deadline, and late replies are ignored", async () => {
    // Enough requests that the client's deadline queue compacts while some still wait; a
    // longer timeout, so that a cold, loaded machine answers all the others in time.
    const PER_WAVE = 1_500;
    const WAVES_TIMEOUT_MS = 1_500;
    const ignored = (seqnum: number): boolean => seqnum % 7 === 0;
    const engine = await fakeEngine((m) => !ignored(m.seqnum));
    const { book } = await connect(engine, WAVES_TIMEOUT_MS);
    await book.readNext(0, 1); // connections up
    const sentAt: number[] = [];
    const outcomes: Promise<Outcome>[] = [];
    const sendWave = (from: number): void => {
      for (let s = from; s < from + PER_WAVE; s++) {
        sentAt[s] = performance.now();
        outcomes[s] = settle(book.readNext(0, s));
      }
    };
    sendWave(0);
    await sleep(WAVES_TIMEOUT_MS / 3);
    sendWave(PER_WAVE);
    const all = await Promise.all(outcomes);
    for (let s = 0; s < all.length; s++) {
      const out = all[s]!;
      if (!ignored(s)) {
        expect(out.ok, `request ${s} resolves`).toBe(true);
        if (out.ok) expect((out.value as { seqnum: number }).seqnum).toBe(s);
        continue;
      }
      expect(out.ok, `request ${s} times out`).toBe(false);
      if (out.ok) continue;
      expect(out.error).toBeInstanceOf(TimeoutError);
      const waited = out.at - sentAt[s]!;
      expect(waited, `request ${s} waited its timeout`).toBeGreaterThanOrEqual(
        WAVES_TIMEOUT_MS - 1,
      );
      expect(waited).toBeLessThan(WAVES_TIMEOUT_MS + LATE_MS_MAX);
    }
    const timedOut = all.filter((o) => !o.ok).length;
    expect(timedOut).toBe(engine.held.length);
    expect(timedOut).toBeGreaterThan(0);
    // The engine answers the timed-out requests now: the client drops those replies, and
    // goes on serving new requests.
    for (const r of engine.held.splice(0)) engine.answer(r);
    await sleep(50);
    await expect(book.readNext(0, 1)).resolves.toMatchObject({ seqnum: 1 });
  });

  it("a blocking read does not time out at the base request timeout, only after its own wait on top", async () => {
    const BLOCK_MS = 600;
    const engine = await fakeEngine(() => false);
    const { book } = await connect(engine);
    // Answered after twice the base timeout, within base + the read's own wait.
    const answered = settle(book.readNextBlocking(0, 3, BLOCK_MS));
    await until(() => engine.held.length === 1, "the blocking read to arrive");
    await sleep(2 * TIMEOUT_MS);
    engine.answer(engine.held.shift()!);
    const a = await answered;
    expect(a.ok).toBe(true);
    if (a.ok) expect((a.value as { seqnum: number }).seqnum).toBe(3);
    // Never answered: it times out after base + its own wait, with that in the message.
    const sent = performance.now();
    const out = await settle(book.readNextBlocking(0, 4, BLOCK_MS));
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.error).toBeInstanceOf(TimeoutError);
    expect((out.error as Error).message).toBe(
      `engine ${ENGINE} did not answer a readNextBlocking within ${TIMEOUT_MS + BLOCK_MS} ms`,
    );
    const waited = out.at - sent;
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT_MS + BLOCK_MS - 2);
    expect(waited).toBeLessThan(TIMEOUT_MS + BLOCK_MS + LATE_MS_MAX);
  });

  it("while requests wait a timer keeps the process alive, and once every request is answered no client timer does", async () => {
    const engine = await fakeEngine(() => false);
    const { book } = await connect(engine);
    // A first round trip, so connections (and their dial timers) are settled.
    const first = book.readNext(0, 1);
    await until(() => engine.held.length === 1, "the first request");
    engine.answer(engine.held.shift()!);
    await first;
    await sleep(20);
    const idle = refedTimeouts();
    const waiting = Array.from({ length: 10 }, (_, i) => book.readNext(0, 10 + i));
    expect(refedTimeouts()).toBeGreaterThan(idle);
    await until(() => engine.held.length === 10, "ten requests");
    for (const r of engine.held.splice(0)) engine.answer(r);
    await Promise.all(waiting);
    expect(refedTimeouts()).toBe(idle);
    // And a request sent after that idle spell still times out on time.
    const sent = performance.now();
    const out = await settle(book.readNext(0, 99));
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.error).toBeInstanceOf(TimeoutError);
    expect(out.at - sent).toBeGreaterThanOrEqual(TIMEOUT_MS - 1);
    expect(out.at - sent).toBeLessThan(TIMEOUT_MS + LATE_MS_MAX);
  });

  it("close() rejects every outstanding request with LogClosedError; later replies and deadlines cause nothing, and no timer is left", async () => {
    const timersBefore = refedTimeouts();
    const engine = await fakeEngine(() => false);
    const { client, book } = await connect(engine);
    const plain = Array.from({ length: 5 }, (_, i) => settle(book.readNext(0, i)));
    const blocking = settle(book.readNextBlocking(0, 9, 5_000));
    await until(() => engine.held.length === 6, "six requests");
    await client.close();
    const all = await Promise.all([...plain, blocking]);
    for (const out of all) {
      expect(out.ok).toBe(false);
      if (!out.ok) expect(out.error).toBeInstanceOf(LogClosedError);
    }
    // Past every deadline: late replies and expired timeouts must change nothing.
    for (const r of engine.held.splice(0)) engine.answer(r);
    await sleep(TIMEOUT_MS + 100);
    expect(refedTimeouts()).toBeLessThanOrEqual(timersBefore);
    await expect(book.readNext(0, 1)).rejects.toBeInstanceOf(LogClosedError);
  });
});
