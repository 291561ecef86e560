/**
 * The TCP transport over real sockets on 127.0.0.1. Every wait is bounded; every transport,
 * server and socket a test starts is closed in `afterEach`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { until as untilHolds } from "./helpers/async.js";
import type { Message, SetAuxMsg } from "../src/protocol/messages.js";
import type { NodeId } from "../src/transport/transport.js";
import type { Logger } from "../src/util/logger.js";
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FrameEncoder } from "../src/transport/frame.js";
import {
  backoffDelayMs,
  TcpTransport,
  WIRE_VERSION,
  type PeerAddress,
  type TcpLimits,
} from "../src/transport/tcp.js";

const HOST = "127.0.0.1";
const WAIT_MS = 5_000;

/** Short backoff so reconnect tests take milliseconds. */
const FAST: Partial<TcpLimits> = { reconnectBackoffMsMin: 5, reconnectBackoffMsMax: 50 };

const started: TcpTransport[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  const all = started.splice(0);
  for (const t of all) t.close();
  await Promise.all(all.map((t) => t.whenClosed()));
});

const until = (cond: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> =>
  untilHolds(cond, what, timeoutMs);

interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  obj: object;
  msg: string | undefined;
}

/** A logger that records what it is told, in the shape of src/util/logger.ts. */
function recordingLogger(lines: LogLine[]): Logger {
  const at =
    (level: LogLine["level"]) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, msg });
    };
  const logger: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: () => logger,
  };
  return logger;
}

interface Node {
  t: TcpTransport;
  /** Received messages, by sender. */
  got: Map<NodeId, Message[]>;
  count(): number;
}

async function start(
  id: NodeId,
  peers: Map<NodeId, PeerAddress>,
  opts: { port?: number; limits?: Partial<TcpLimits>; log?: LogLine[] } = {},
): Promise<Node> {
  const t = await TcpTransport.listen({
    self: id,
    host: HOST,
    port: opts.port ?? 0,
    peers,
    limits: { ...FAST, ...opts.limits },
    random: () => 0.5,
    logger: recordingLogger(opts.log ?? []),
  });
  started.push(t);
  peers.set(id, t.address);
  const got = new Map<NodeId, Message[]>();
  let n = 0;
  t.onMessage((from, m) => {
    let list = got.get(from);
    if (list === undefined) got.set(from, (list = []));
    list.push(m);
    n++;
  });
  return { t, got, count: () => n };
}

function msg(seq: number, dataBytes = seq % 97): SetAuxMsg {
  const data = new Uint8Array(dataBytes);
  for (let i = 0; i < dataBytes; i++) data[i] = (seq + i) & 0xff;
  return { t: "set-aux", log: 1, seqnum: seq, data };
}

/**
 * Whether `m` equals `expected` (a set-aux message), compared by hand: `toStrictEqual` walks
 * byte arrays element by element and would dominate the run time.
 */
function sameSetAux(m: Message | undefined, expected: SetAuxMsg): boolean {
  return (
    m !== undefined &&
    m.t === "set-aux" &&
    Object.keys(m).length === 4 &&
    m.log === expected.log &&
    m.seqnum === expected.seqnum &&
    m.data.constructor === Uint8Array &&
    Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).equals(expected.data)
  );
}

/** Asserts `list` is exactly msg(first), msg(first+1), ... of length `n`. */
function expectSequence(list: Message[] | undefined, n: number, first = 0): void {
  expect(list?.length).toBe(n);
  for (let i = 0; i < n; i++) {
    const m = list![i];
    if (!sameSetAux(m, msg(first + i)))
      throw new Error(
        `message ${i}: expected seqnum ${first + i}, got ${JSON.stringify(m)?.slice(0, 200)}`,
      );
  }
}

/** A raw client that says hello as `from` (unless `from` is null). */
async function rawClient(
  to: PeerAddress,
  from: NodeId | null,
): Promise<{ s: Socket; closed: Promise<void> }> {
  const s = connect(to.port, to.host);
  sockets.push(s);
  s.on("error", () => {});
  const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  if (from !== null) s.write(new FrameEncoder().encode({ t: "hello", v: WIRE_VERSION, from }));
  return { s, closed };
}

async function closedWithin(closed: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([closed.then(() => true), sleep(ms).then(() => false)]);
}

/** A port with nothing listening on it (bound, then released). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, HOST, resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe("TcpTransport", () => {
  it("two transports exchange thousands of messages, complete and in order per sender", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers);
    const b = await start("b", peers);
    const N = 5_000;
    // Both dial at the same moment; bursts of 250 with a turn in between mix coalesced writes.
    for (let i = 0; i < N; i++) {
      a.t.send("b", msg(i));
      b.t.send("a", msg(i));
      if (i % 250 === 249) await sleep(0);
    }
    await until(() => a.count() === N && b.count() === N, "all messages");
    expectSequence(b.got.get("a"), N);
    expectSequence(a.got.get("b"), N);
    expect(a.t.stats.socketWrites).toBeLessThan(N / 10);
  });

  it("three transports all-to-all: every sender's messages arrive complete and in order", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const nodes = [await start("n1", peers), await start("n2", peers), await start("n3", peers)];
    const N = 3_000;
    for (let i = 0; i < N; i++) {
      for (const from of nodes)
        for (const to of nodes) if (from !== to) from.t.send(to.t.self, msg(i));
      if (i % 500 === 499) await sleep(0);
    }
    await until(() => nodes.every((n) => n.count() === 2 * N), "all messages");
    for (const to of nodes)
      for (const from of nodes) if (from !== to) expectSequence(to.got.get(from.t.self), N);
  });

  it("a burst sent in one turn goes out in one socket write", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers);
    const b = await start("b", peers);
    a.t.send("b", msg(0));
    await until(() => b.count() === 1, "warm-up message");
    const writesBefore = a.t.stats.socketWrites;
    const N = 1_000;
    for (let i = 1; i <= N; i++) a.t.send("b", msg(i));
    await until(() => b.count() === N + 1, "the burst");
    expect(a.t.stats.socketWrites - writesBefore).toBe(1);
    expectSequence(b.got.get("a"), N + 1);
  });

  it("a burst larger than the socket buffer waits for drain and arrives complete and in order", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers);
    const b = await start("b", peers);
    a.t.send("b", msg(0));
    await until(() => b.count() === 1, "warm-up message");
    // 24 MB in one turn: far beyond the socket's buffer, within the send queue bound.
    const big = (seq: number): SetAuxMsg => ({
      t: "set-aux",
      log: 1,
      seqnum: seq,
      data: new Uint8Array(64 * 1024).fill(seq & 0xff),
    });
    const N = 384;
    for (let i = 1; i <= N; i++) a.t.send("b", big(i));
    expect(a.t.stats.droppedQueueFull).toBe(0);
    await until(() => b.count() === N + 1, "the large burst", 10_000);
    const list = b.got.get("a")!;
    for (let i = 1; i <= N; i++)
      if (!sameSetAux(list[i], big(i))) throw new Error(`message ${i} differs`);
    // Batches are bounded (1 MiB per write), so a 24 MB burst needs many writes.
    expect(a.t.stats.socketWrites).toBeGreaterThan(20);
    expect(a.t.queuedBytes("b")).toBe(0);
  });

  it("a malformed frame closes that connection while the node keeps exchanging with a good peer", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const log: LogLine[] = [];
    const a = await start("a", peers, { log });
    const b = await start("b", peers);
    const bad = await rawClient(a.t.address, "mallory");
    const garbage = Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]);
    bad.s.write(garbage);
    expect(await closedWithin(bad.closed, WAIT_MS)).toBe(true);
    expect(a.t.stats.malformedFrames).toBe(1);
    // A valid msgpack value that is not a message also closes the connection.
    const bad2 = await rawClient(a.t.address, "mallory");
    bad2.s.write(new FrameEncoder().encode({ t: "drop-tables", log: 1 }));
    expect(await closedWithin(bad2.closed, WAIT_MS)).toBe(true);
    // So does a message before the hello.
    const bad3 = await rawClient(a.t.address, null);
    bad3.s.write(new FrameEncoder().encode(msg(1)));
    expect(await closedWithin(bad3.closed, WAIT_MS)).toBe(true);
    expect(a.t.stats.malformedFrames).toBe(3);
    const errors = log.filter((l) => l.level === "error");
    expect(errors.map((l) => (l.obj as { kind?: string }).kind)).toEqual([
      "undecodable",
      "invalid",
      "invalid",
    ]);
    for (let i = 0; i < 100; i++) {
      a.t.send("b", msg(i));
      b.t.send("a", msg(i));
    }
    await until(() => a.count() === 100 && b.count() === 100, "messages with the good peer");
    expectSequence(a.got.get("b"), 100);
    expectSequence(b.got.get("a"), 100);
    expect(a.got.has("mallory")).toBe(false);
  });

  it("an oversized length prefix closes that connection at once, without waiting for the payload", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers);
    const b = await start("b", peers);
    const bad = await rawClient(a.t.address, "mallory");
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUInt32BE(FRAME_BYTES_MAX + 1, 0);
    bad.s.write(header);
    expect(await closedWithin(bad.closed, WAIT_MS)).toBe(true);
    expect(a.t.stats.malformedFrames).toBe(1);
    b.t.send("a", msg(0));
    a.t.send("b", msg(0));
    await until(() => a.count() === 1 && b.count() === 1, "messages with the good peer");
  });

  it("a connection that sends no hello is closed after the hello timeout", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers, { limits: { helloTimeoutMs: 50 } });
    const silent = await rawClient(a.t.address, null);
    expect(await closedWithin(silent.closed, WAIT_MS)).toBe(true);
    expect(a.t.stats.malformedFrames).toBe(1);
  });

  it("a peer that restarts on the same port receives what was queued while it was down, then new messages", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers);
    const b = await start("b", peers);
    a.t.send("b", msg(0));
    await until(() => b.count() === 1, "first message");
    const port = b.t.address.port;
    b.t.close();
    await b.t.whenClosed();
    await until(() => a.t.stats.connectionsLost === 1, "a noticing the lost connection");
    for (let i = 1; i <= 200; i++) a.t.send("b", msg(i));
    await until(() => a.t.stats.connectsFailed >= 1, "a failing to redial");
    const b2 = await start("b", peers, { port });
    await until(() => b2.count() === 200, "queued messages after the restart");
    expectSequence(b2.got.get("a"), 200, 1);
    for (let i = 201; i <= 300; i++) a.t.send("b", msg(i));
    await until(() => b2.count() === 300, "messages sent after the restart");
    expectSequence(b2.got.get("a"), 300, 1);
    // The restarted peer can answer on its own connection.
    b2.t.send("a", msg(0));
    await until(() => a.count() === 1, "the answer");
  });

  it("the send queue to an unreachable peer is bounded: beyond it messages are dropped and counted", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const queueMax = 10_000;
    const log: LogLine[] = [];
    const a = await start("a", peers, { limits: { sendQueueBytesMax: queueMax }, log });
    const port = await freePort();
    peers.set("ghost", { host: HOST, port });
    const N = 1_000;
    for (let i = 0; i < N; i++) {
      a.t.send("ghost", msg(i));
      expect(a.t.queuedBytes("ghost")).toBeLessThanOrEqual(queueMax);
    }
    const kept = a.t.stats.messagesQueued;
    expect(a.t.stats.droppedQueueFull).toBe(N - kept);
    expect(kept).toBeGreaterThan(10);
    expect(kept).toBeLessThan(N / 5);
    // One warning for the episode, not one per dropped message.
    expect(log.filter((l) => l.msg?.startsWith("send queue full"))).toHaveLength(1);
    await until(() => a.t.stats.connectsFailed >= 2, "repeated failed dials");
    expect(a.t.queuedBytes("ghost")).toBeLessThanOrEqual(queueMax);
    // When the peer appears, exactly the messages that fit arrive, the earliest ones, in order.
    const ghost = await start("ghost", peers, { port });
    await until(() => ghost.count() === kept, "the queued messages");
    await sleep(20);
    expectSequence(ghost.got.get("a"), kept);
    expect(a.t.queuedBytes("ghost")).toBe(0);
  });

  it("a message larger than the frame limit is dropped at the sender and counted", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers, { limits: { frameBytesMax: 1_000 } });
    const b = await start("b", peers);
    a.t.send("b", msg(0, 2_000));
    expect(a.t.stats.droppedTooLarge).toBe(1);
    expect(a.t.queuedBytes("b")).toBe(0);
    a.t.send("b", msg(1));
    await until(() => b.count() === 1, "the small message");
    expectSequence(b.got.get("a"), 1, 1);
  });

  it("a message to a node with no known address is dropped and counted", async () => {
    const a = await start("a", new Map());
    a.t.send("nobody", msg(0));
    expect(a.t.stats.droppedUnknownPeer).toBe(1);
    expect(a.t.queuedBytes("nobody")).toBe(0);
  });

  it("a message to itself is delivered through the handler, in order", async () => {
    const a = await start("a", new Map());
    for (let i = 0; i < 10; i++) a.t.send("a", msg(i));
    await until(() => a.count() === 10, "self messages");
    expectSequence(a.got.get("a"), 10);
  });

  it("close() releases every socket, server and timer of the transport", async () => {
    const count = (prefix: string): number =>
      process.getActiveResourcesInfo().filter((r) => r.startsWith(prefix)).length;
    // Sockets of earlier tests finish closing asynchronously; none may be left for good.
    await until(() => count("TCP") === 0, "earlier tests' sockets to be released");
    // Timers of earlier tests' closing connections may still be going: start from a count
    // that has stayed the same for 200 ms, so that one of them ending cannot hide ours.
    let timersBefore = count("Timeout");
    for (let still = 0, rounds = 0; still < 4 && rounds < 100; rounds++) {
      await new Promise((r) => setTimeout(r, 50));
      const now = count("Timeout");
      still = now === timersBefore ? still + 1 : 0;
      timersBefore = now;
    }
    const peers = new Map<NodeId, PeerAddress>();
    const a = await start("a", peers, {
      limits: { reconnectBackoffMsMin: 10_000, reconnectBackoffMsMax: 20_000 },
    });
    const b = await start("b", peers);
    peers.set("ghost", { host: HOST, port: await freePort() });
    a.t.send("b", msg(0));
    b.t.send("a", msg(0));
    a.t.send("ghost", msg(0)); // leaves a long backoff timer armed
    await until(
      () => a.count() === 1 && b.count() === 1 && a.t.stats.connectsFailed === 1,
      "traffic",
    );
    expect(count("TCP")).toBeGreaterThanOrEqual(4); // 2 servers, a→b, b→a (and their accepted ends)
    expect(count("Timeout")).toBeGreaterThan(timersBefore);
    a.t.close();
    b.t.close();
    await Promise.all([a.t.whenClosed(), b.t.whenClosed()]);
    await until(() => count("TCP") === 0, "every TCP handle to be released");
    expect(count("Timeout")).toBeLessThanOrEqual(timersBefore);
    a.t.send("b", msg(1));
    expect(a.t.stats.droppedClosed).toBe(1);
  });

  it("a process that starts transports, exchanges messages and closes them exits on its own", async () => {
    // Nothing may keep the event loop alive after close(): no socket, server or timer.
    const script = `
      import { TcpTransport } from ${JSON.stringify(new URL("../src/transport/tcp.ts", import.meta.url).href)};
      const peers = new Map();
      const limits = { reconnectBackoffMsMin: 60000, reconnectBackoffMsMax: 60000, connectTimeoutMs: 60000, helloTimeoutMs: 60000 };
      const a = await TcpTransport.listen({ self: "a", peers, limits });
      const b = await TcpTransport.listen({ self: "b", peers, limits });
      peers.set("a", a.address); peers.set("b", b.address);
      peers.set("ghost", { host: "127.0.0.1", port: 1 });
      let n = 0;
      b.onMessage(() => { n++; });
      for (let i = 0; i < 100; i++) a.send("b", { t: "read", id: i, log: 0, seqnum: i });
      a.send("ghost", { t: "read", id: 0, log: 0, seqnum: 0 });
      const deadline = Date.now() + 5000;
      while (n < 100 || a.stats.connectsFailed < 1) {
        if (Date.now() > deadline) { console.log("stuck", n); process.exit(2); }
        await new Promise((r) => setTimeout(r, 5));
      }
      a.close(); b.close();
      console.log("closed", n);
    `;
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ["--import", "tsx", "--input-type=module", "-e", script],
          { cwd: new URL("..", import.meta.url).pathname, timeout: 10_000, killSignal: "SIGKILL" },
          (err, stdout, stderr) =>
            resolve({
              code: err === null ? 0 : ((err.code as number | null) ?? null),
              stdout,
              stderr,
            }),
        );
      },
    );
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("closed 100");
    expect(result.code).toBe(0);
  }, 15_000);

  it("reconnect backoff grows exponentially from min to max with jitter from the random source", () => {
    const min = 50;
    const max = 5_000;
    expect(backoffDelayMs(0, min, max, () => 0)).toBe(50);
    expect(backoffDelayMs(0, min, max, () => 0.999999)).toBe(100);
    expect(backoffDelayMs(3, min, max, () => 0)).toBe(400);
    expect(backoffDelayMs(3, min, max, () => 0.5)).toBe(600);
    expect(backoffDelayMs(100, min, max, () => 0)).toBe(2_500);
    expect(backoffDelayMs(100, min, max, () => 0.999999)).toBe(5_000);
    for (let f = 0; f < 60; f++) {
      for (const r of [0, 0.25, 0.5, 0.75, 0.999]) {
        const d = backoffDelayMs(f, min, max, () => r);
        expect(d).toBeGreaterThanOrEqual(min);
        expect(d).toBeLessThanOrEqual(max);
      }
    }
  });

  it("rejects nonsense limits with an exact message", async () => {
    await expect(
      TcpTransport.listen({ self: "a", peers: new Map(), limits: { sendQueueBytesMax: 0 } }),
    ).rejects.toThrow("sendQueueBytesMax must be a positive integer, got 0");
    await expect(
      TcpTransport.listen({
        self: "a",
        peers: new Map(),
        limits: { reconnectBackoffMsMin: 10, reconnectBackoffMsMax: 5 },
      }),
    ).rejects.toThrow("reconnectBackoffMsMin (10) cannot exceed reconnectBackoffMsMax (5)");
  });
});
