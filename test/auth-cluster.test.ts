/**
 * Authenticated cluster links: the HMAC challenge-response handshake as a state machine
 * (property tests), the TCP transport refusing peers without the secret or with a wrong one
 * (both ways: an acceptor refuses a dialer, a dialer refuses an impostor acceptor and sends
 * it nothing), and a real storage node of a cluster whose config names a secret file.
 */
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AcceptorHandshake,
  ClusterSecret,
  DialerHandshake,
  HANDSHAKE_NONCE_BYTES,
  HandshakeError,
  type HandshakeFrame,
  type HandshakeOptions,
} from "../src/transport/handshake.js";
import { FrameDecoder, FrameEncoder } from "../src/transport/frame.js";
import { TcpTransport, WIRE_VERSION, type PeerAddress } from "../src/transport/tcp.js";
import type { Message } from "../src/protocol/messages.js";
import type { NodeId } from "../src/transport/transport.js";
import { startNode, type RunningNode } from "../src/cluster/node.js";
import { checkLinkAuth, clusterSecretOf, parseClusterConfig } from "../src/cluster/config.js";
import { silentLogger } from "../src/util/logger.js";
import { writeClusterConfig } from "./helpers/cluster-config.js";
import { tempDir } from "./helpers/tmp.js";
import { sleep, until } from "./helpers/async.js";

const SECRET = ClusterSecret.fromText("a".repeat(16) + "cluster-secret-for-tests-0123456789");
const OTHER = ClusterSecret.fromText("b".repeat(16) + "another-secret-for-tests-0123456789");
const HOST = "127.0.0.1";
const FAST = {
  reconnectBackoffMsMin: 5,
  reconnectBackoffMsMax: 50,
  handshakeTimeoutMs: 1_000,
  helloTimeoutMs: 1_000,
};

const started: TcpTransport[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  const all = started.splice(0);
  for (const t of all) t.close();
  await Promise.all(all.map((t) => t.whenClosed()));
});

function opts(self: string, secret: ClusterSecret | null, seed: number): HandshakeOptions {
  let n = seed;
  return {
    self,
    secret,
    wireVersion: WIRE_VERSION,
    nonce: () => {
      const b = new Uint8Array(HANDSHAKE_NONCE_BYTES);
      for (let i = 0; i < b.length; i++) b[i] = (n = (n * 1103515245 + 12345) >>> 0) & 0xff;
      return b;
    },
  };
}

/** Runs a handshake between two state machines; returns who learned whom, or the refusal. */
function run(
  dialer: DialerHandshake,
  acceptor: AcceptorHandshake,
): { dialerPeer?: string; acceptorPeer?: string; refused?: HandshakeError } {
  const toAcceptor: HandshakeFrame[] = [];
  const toDialer: HandshakeFrame[] = [];
  const c = acceptor.start();
  if (c !== null) toDialer.push(c);
  const h = dialer.start();
  if (h !== null) toAcceptor.push(h);
  const out: { dialerPeer?: string; acceptorPeer?: string; refused?: HandshakeError } = {};
  try {
    for (let i = 0; i < 10 && (toAcceptor.length > 0 || toDialer.length > 0); i++) {
      const a = toAcceptor.shift();
      if (a !== undefined) {
        const s = acceptor.receive(a);
        if (s.send) toDialer.push(s.send);
        if (s.peer) out.acceptorPeer = s.peer;
      }
      const d = toDialer.shift();
      if (d !== undefined) {
        const s = dialer.receive(d);
        if (s.send) toAcceptor.push(s.send);
        if (s.peer) out.dialerPeer = s.peer;
      }
    }
  } catch (err) {
    if (!(err instanceof HandshakeError)) throw err;
    out.refused = err;
  }
  return out;
}

describe("the handshake state machines", () => {
  it("the same secret authenticates both sides; the peers learn each other's ids", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer(),
        fc.stringMatching(/^[a-z0-9-]{1,20}$/),
        (s1, s2, id) => {
          const r = run(
            new DialerHandshake(opts(id, SECRET, s1), "acceptor-1"),
            new AcceptorHandshake(opts("acceptor-1", SECRET, s2)),
          );
          expect(r.refused).toBeUndefined();
          expect(r.acceptorPeer).toBe(id);
          expect(r.dialerPeer).toBe("acceptor-1");
        },
      ),
      { numRuns: 50 },
    );
  });

  it("a wrong secret, a missing one or an unexpected one is refused with its reason", () => {
    const cases: Array<[ClusterSecret | null, ClusterSecret | null, string]> = [
      [OTHER, SECRET, "bad-proof"],
      [null, SECRET, "no-proof"],
    ];
    for (const [d, a, reason] of cases) {
      const r = run(
        new DialerHandshake(opts("d", d, 1), "a"),
        new AcceptorHandshake(opts("a", a, 2)),
      );
      expect(r.refused?.reason, `${String(d)} → ${String(a)}`).toBe(reason);
      expect(r.acceptorPeer).toBeUndefined();
      expect(r.refused?.message).not.toMatch(/cluster-secret-for-tests/);
    }
    // A dialer with a secret waits for a challenge that a node without one never sends:
    // neither side is authenticated (the transport's timeouts close the connection).
    const stalled = run(
      new DialerHandshake(opts("d", SECRET, 1), "a"),
      new AcceptorHandshake(opts("a", null, 2)),
    );
    expect(stalled).toEqual({});
    // Without a secret on either side the plain hello names the dialer.
    const plain = run(
      new DialerHandshake(opts("d", null, 1), "a"),
      new AcceptorHandshake(opts("a", null, 2)),
    );
    expect(plain.acceptorPeer).toBe("d");
    // A hello with a proof to a node without a secret is refused as well.
    const hello: HandshakeFrame = {
      t: "hello",
      v: WIRE_VERSION,
      from: "d",
      nonce: new Uint8Array(32),
      proof: new Uint8Array(32),
    };
    expect(() => new AcceptorHandshake(opts("a", null, 2)).receive(hello)).toThrow(
      /has none configured/,
    );
  });

  it("a recorded hello replayed to a new connection is refused: its proof covers the old challenge", () => {
    const acceptor1 = new AcceptorHandshake(opts("a", SECRET, 10));
    const dialer = new DialerHandshake(opts("d", SECRET, 20), "a");
    const challenge = acceptor1.start()!;
    const hello = dialer.receive(challenge).send!;
    expect(acceptor1.receive(hello).peer).toBe("d");
    const acceptor2 = new AcceptorHandshake(opts("a", SECRET, 11));
    acceptor2.start();
    expect(() => acceptor2.receive(hello)).toThrow(HandshakeError);
    // So is a hello meant for another node (its proof names the node it was for).
    const acceptor3 = new AcceptorHandshake(opts("b", SECRET, 10));
    acceptor3.start();
    expect(() => acceptor3.receive(hello)).toThrow(/does not match/);
  });

  it("any sequence of forged frames is refused with a HandshakeError, and never authenticates", () => {
    const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
    const frame: fc.Arbitrary<HandshakeFrame> = fc.oneof(
      fc.record({
        t: fc.constant("challenge" as const),
        v: fc.constant(WIRE_VERSION),
        nonce: bytes(32),
      }),
      fc.record({ t: fc.constant("welcome" as const), proof: bytes(32) }),
      fc.record({
        t: fc.constant("hello" as const),
        v: fc.constant(WIRE_VERSION),
        from: fc.string({ minLength: 1, maxLength: 10 }),
        nonce: bytes(32),
        proof: bytes(32),
      }),
      fc.record({
        t: fc.constant("hello" as const),
        v: fc.constant(WIRE_VERSION),
        from: fc.string({ minLength: 1 }),
      }),
    );
    fc.assert(
      fc.property(
        fc.array(frame, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (frames, asAcceptor) => {
          const m = asAcceptor
            ? new AcceptorHandshake(opts("a", SECRET, 3))
            : new DialerHandshake(opts("d", SECRET, 4), "a");
          m.start();
          let authenticated = false;
          for (const f of frames) {
            try {
              const s = m.receive(f);
              if (s.peer !== undefined) authenticated = true;
            } catch (err) {
              expect(err).toBeInstanceOf(HandshakeError);
              break;
            }
          }
          // A forger without the secret cannot make either side accept it (2^-256 aside).
          expect(authenticated).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a secret is checked for length and characters, and never printed", () => {
    expect(() => ClusterSecret.fromText("short")).toThrow(
      /32 to 4096 characters, got 5.*openssl rand -hex 32/,
    );
    expect(() => ClusterSecret.fromText("x".repeat(20) + " with a space in it")).toThrow(
      /visible ASCII/,
    );
    expect(String(SECRET)).toBe("[cluster secret]");
    expect(JSON.stringify({ SECRET })).not.toContain("cluster-secret-for-tests");
  });
});

describe("authenticated TCP links", () => {
  async function node(id: string, peers: Map<NodeId, PeerAddress>, secret: ClusterSecret | null) {
    const t = await TcpTransport.listen({
      self: id,
      host: HOST,
      peers,
      limits: FAST,
      random: () => 0.5,
      ...(secret === null ? {} : { secret }),
    });
    started.push(t);
    peers.set(id, t.address);
    const got: Message[] = [];
    t.onMessage((_from, m) => got.push(m));
    return { t, got };
  }
  const aux = (seqnum: number): Message => ({
    t: "set-aux",
    log: 0,
    seqnum,
    data: new Uint8Array([1, 2, 3]),
  });

  it("nodes with the same secret exchange messages both ways, complete and in order", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const a = await node("a", peers, SECRET);
    const b = await node("b", peers, SECRET);
    for (let i = 0; i < 500; i++) a.t.send("b", aux(i));
    for (let i = 0; i < 10; i++) b.t.send("a", aux(i));
    await until(() => b.got.length === 500 && a.got.length === 10, "messages", 5_000);
    expect(b.got.map((m) => (m as { seqnum: number }).seqnum)).toEqual([...Array(500).keys()]);
    expect(a.t.stats.handshakesRefused + b.t.stats.handshakesRefused).toBe(0);
  });

  it("a peer without the secret, or with another one, is refused and delivers nothing", async () => {
    const peers = new Map<NodeId, PeerAddress>();
    const b = await node("b", peers, SECRET);
    const none = await node("none", peers, null);
    const wrong = await node("wrong", peers, OTHER);
    for (let i = 0; i < 5; i++) {
      none.t.send("b", aux(i));
      wrong.t.send("b", aux(i));
    }
    await until(() => b.t.stats.handshakesRefused >= 2, "two refusals", 5_000);
    await sleep(200);
    expect(b.got).toEqual([]);
    expect(b.t.stats.messagesReceived).toBe(0);
  });

  it("a dialer refuses an acceptor that cannot prove the secret, and sends it no message", async () => {
    // An impostor on the peer's address: it challenges, then answers with a forged welcome.
    const received: Buffer[] = [];
    const server: Server = createServer((s: Socket) => {
      const enc = new FrameEncoder();
      s.write(enc.encode({ t: "challenge", v: WIRE_VERSION, nonce: randomBytes(32) }));
      const dec = new FrameDecoder<unknown>((v) => v);
      s.on("data", (chunk: Buffer) => {
        received.push(chunk);
        dec.push(chunk, () => s.write(enc.encode({ t: "welcome", proof: randomBytes(32) })));
      });
      s.on("error", () => {});
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const peers = new Map<NodeId, PeerAddress>([
      ["b", { host: HOST, port: (server.address() as { port: number }).port }],
    ]);
    const a = await node("a", peers, SECRET);
    a.t.send("b", aux(1));
    await until(() => a.t.stats.handshakesRefused >= 1, "the dialer's refusal", 5_000);
    // All the impostor got is one hello (a proof it cannot use elsewhere), not the message.
    const dec = new FrameDecoder<{ t?: string }>((v) => v as { t?: string });
    const frames: Array<{ t?: string }> = [];
    for (const c of received) dec.push(c, (f) => frames.push(f));
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.every((f) => f.t === "hello")).toBe(true);
  });
});

describe("a cluster node with a secret file", () => {
  it("serves a peer holding the secret, refuses one without it or with a wrong one", async () => {
    const t = tempDir();
    const running: RunningNode[] = [];
    try {
      const secretFile = join(t.dir, "cluster.secret");
      writeFileSync(secretFile, "c".repeat(40) + "\n");
      const configPath = join(t.dir, "cluster.json");
      const config = await writeClusterConfig(
        configPath,
        ["sequencer", "storage", "engine", "engine", "engine"],
        {
          replication: 1,
          dataDir: "data",
          clusterSecretFile: "cluster.secret",
        },
      );
      expect(config.clusterSecretFile).toBe(secretFile);
      const secret = clusterSecretOf(config, {})!;
      running.push(await startNode(config, "storage-0", 1, silentLogger));
      const addr = (id: string): PeerAddress => {
        const n = config.nodes.find((x) => x.id === id)!;
        return { host: n.host, port: n.port };
      };
      const peers = new Map(config.nodes.map((n) => [n.id, addr(n.id)]));
      const ask = async (self: string, s: ClusterSecret | null): Promise<Message[]> => {
        const tr = await TcpTransport.listen({
          self,
          host: HOST,
          port: addr(self).port,
          peers,
          limits: FAST,
          ...(s === null ? {} : { secret: s }),
        });
        started.push(tr);
        const got: Message[] = [];
        tr.onMessage((_f, m) => got.push(m));
        tr.send("storage-0", { t: "shard-end-query", log: 0, shard: 1 });
        await sleep(700);
        return got;
      };
      expect(await ask("engine-0", secret)).toEqual([{ t: "shard-end", log: 0, shard: 1, end: 0 }]);
      expect(await ask("engine-1", null)).toEqual([]);
      expect(await ask("engine-2", OTHER)).toEqual([]);
    } finally {
      for (const r of running) await r.close();
      t.remove();
    }
  });

  it("refuses to run beyond loopback with unauthenticated links, unless the config allows it", () => {
    const raw = {
      nodes: [
        { id: "s", role: "sequencer", host: "10.0.0.1", port: 1 },
        { id: "t", role: "storage", host: "10.0.0.1", port: 2 },
        { id: "e", role: "engine", host: "10.0.0.1", port: 3 },
      ],
    };
    const config = parseClusterConfig(raw);
    expect(() => checkLinkAuth(config, config.nodes[0]!, null)).toThrow(
      /beyond loopback.*clusterSecretFile/,
    );
    expect(() => checkLinkAuth(config, config.nodes[0]!, SECRET)).not.toThrow();
    const allowed = parseClusterConfig({ ...raw, allowUnauthenticatedLinks: true });
    expect(() => checkLinkAuth(allowed, allowed.nodes[0]!, null)).not.toThrow();
    expect(() => parseClusterConfig({ ...raw, clusterSecretFile: 3 })).toThrow(
      /clusterSecretFile must be/,
    );
    expect(clusterSecretOf(config, { BOKI_CLUSTER_SECRET: "d".repeat(40) })).not.toBeNull();
  });
});
