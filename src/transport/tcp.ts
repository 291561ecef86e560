/**
 * The Transport over TCP, for roles running as separate processes.
 *
 * Connections. Each node dials its own outbound connection to a peer on the first send to
 * it and only writes on that connection; connections a node accepts are receive-only. A
 * pair of nodes therefore uses one connection per direction, and when both dial at once
 * there is no race to resolve: each keeps its own. The dialer's first frame is a hello that
 * names it, so the acceptor knows who sent what follows. Messages from A to B always travel
 * on A's single outbound connection to B, hence in order. When A reconnects, B closes the
 * older inbound connection from A as soon as the new hello arrives; frames still unread on
 * the old one are lost, never delivered after newer ones. Delivery is thus in order per
 * pair, with possible gaps at reconnects.
 *
 * Best effort, bounded memory. `send` never blocks and never throws for a network
 * condition. Messages wait in a per-peer send queue of at most `sendQueueBytesMax` bytes
 * while the peer is unreachable or its socket is full; a message that does not fit is
 * dropped and counted (`stats.droppedQueueFull`). Bytes handed to a socket that then fails
 * are lost. Protocols above resend what matters (fetches, progress reports and metalog
 * broadcasts are all repeated), which is what the Transport contract asks of them.
 *
 * Batching and backpressure. Messages are encoded when sent; the queue is flushed in a
 * microtask, so every message sent in one turn of the event loop goes out in one socket
 * write (up to `writeBatchBytesMax` bytes per write). When `write` returns false the
 * queue stops draining until 'drain', and keeps accepting messages up to its bound.
 *
 * Reconnects. A failed or lost connection with messages waiting is redialed after a
 * bounded exponential backoff with jitter (from an injectable random source), so a restarted
 * peer receives what was queued for it. The peer's address is looked up at every dial.
 *
 * Authentication. With a cluster secret (`secret`), a connection carries nothing until the
 * handshake of handshake.ts has succeeded: the acceptor challenges, the dialer proves it
 * holds the secret, the acceptor proves it back, and only then does the dialer send what it
 * has queued. A peer that fails is refused (its connection closed, `stats.handshakesRefused`
 * counted, a warning logged without any secret material); a dialer that cannot authenticate
 * to a peer treats it as unreachable and retries with backoff. Without a secret the dialer's
 * first frame is a plain hello, as before.
 *
 * Malformed input (oversized, undecodable, or not a valid message) closes that connection
 * with a logged error; the node keeps serving everyone else. A message handler that throws
 * is a bug in the role: the error propagates, as it does with the in-process transport.
 *
 * The transport uses real timers (connect timeout, backoff, hello timeout); `close()` stops
 * them all and destroys every socket, so nothing keeps the process alive afterwards.
 */
import { randomBytes } from "node:crypto";
import { createConnection, createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import type { Message } from "../protocol/messages.js";
import { parseMessage } from "../protocol/validate.js";
import { InvalidArgumentError } from "../log/errors.js";
import { silentLogger, type Logger } from "../util/logger.js";
import {
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameEncoder,
  FrameError,
} from "./frame.js";
import type { MessageHandler, NodeId, Transport } from "./transport.js";
import {
  AcceptorHandshake,
  DialerHandshake,
  HANDSHAKE_NONCE_BYTES,
  HandshakeError,
  isHandshakeFrame,
  parseHandshakeFrame,
  type ClusterSecret,
  type HandshakeFrame,
  type HandshakeOptions,
  type HandshakeStep,
} from "./handshake.js";

export { FRAME_BYTES_MAX, FrameError } from "./frame.js";

/** Most bytes of encoded messages waiting for one peer; beyond it `send` drops. */
export const SEND_QUEUE_BYTES_MAX = 64 * 1024 * 1024;
/** Most bytes concatenated into one socket write. */
export const WRITE_BATCH_BYTES_MAX = 1024 * 1024;
/** Shortest wait before redialing a peer after a failed or lost connection. */
export const RECONNECT_BACKOFF_MS_MIN = 50;
/**
 * Longest wait between dials of an unreachable peer. Short, because a peer that comes back
 * (a restarted node rejoining) is needed at once, and a dial on loopback or a LAN is cheap.
 */
export const RECONNECT_BACKOFF_MS_MAX = 1_000;
/** Longest a dial may take before it counts as failed. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Longest an accepted connection may stay silent before its hello; then it is closed. */
export const HELLO_TIMEOUT_MS = 5_000;
/** Longest a dialer waits for the peer's challenge and welcome once connected. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/**
 * Most bytes an authenticating peer may send before its handshake is done (its hello is about
 * 150 bytes): a stranger cannot make the node buffer a whole frame's worth.
 */
export const PRE_AUTH_BYTES_MAX = 4096;
/** Largest handshake frame a dialer reads from the peer it dials. */
const HANDSHAKE_FRAME_BYTES_MAX = 1024;
/** Idle time before TCP keepalive probes start, to notice peers that vanished silently. */
export const KEEPALIVE_INITIAL_DELAY_MS = 10_000;
/** Most connections a node accepts at once. */
export const INBOUND_CONNECTIONS_MAX = 4096;
/** Longest node id a hello may carry. */
export const NODE_ID_CHARS_MAX = 256;
/** Version of the wire format, checked in the hello. */
export const WIRE_VERSION = 1;

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/** Looks up a peer's address; `undefined` when the node is unknown. Called at every dial. */
export type PeerResolver = (node: NodeId) => PeerAddress | undefined;

export interface TcpLimits {
  readonly frameBytesMax: number;
  readonly sendQueueBytesMax: number;
  readonly writeBatchBytesMax: number;
  readonly reconnectBackoffMsMin: number;
  readonly reconnectBackoffMsMax: number;
  readonly connectTimeoutMs: number;
  readonly helloTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
}

export const TCP_LIMITS_DEFAULT: TcpLimits = {
  frameBytesMax: FRAME_BYTES_MAX,
  sendQueueBytesMax: SEND_QUEUE_BYTES_MAX,
  writeBatchBytesMax: WRITE_BATCH_BYTES_MAX,
  reconnectBackoffMsMin: RECONNECT_BACKOFF_MS_MIN,
  reconnectBackoffMsMax: RECONNECT_BACKOFF_MS_MAX,
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  helloTimeoutMs: HELLO_TIMEOUT_MS,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
};

export interface TcpTransportOptions {
  readonly self: NodeId;
  /** Interface to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Port to listen on; 0 (the default) picks a free one, see `address`. */
  readonly port?: number;
  /** Peer addresses, as a map (read at every dial, so it may be updated) or a resolver. */
  readonly peers: ReadonlyMap<NodeId, PeerAddress> | PeerResolver;
  readonly logger?: Logger;
  /** Source of jitter for reconnect backoff, uniform in [0, 1); default `Math.random`. */
  readonly random?: () => number;
  /** Overrides of `TCP_LIMITS_DEFAULT`, mostly for tests. */
  readonly limits?: Partial<TcpLimits>;
  /**
   * The cluster's shared secret: every connection, both ways, is authenticated with it and
   * peers that cannot prove they hold it are refused. Absent: links are not authenticated.
   */
  readonly secret?: ClusterSecret;
  /** Source of handshake nonces (default `crypto.randomBytes`); for tests. */
  readonly nonce?: () => Uint8Array;
}

/** Counters, for tests and metrics. */
export interface TcpTransportStats {
  /** Messages accepted by `send` into a peer's queue. */
  messagesQueued: number;
  /** Frames (hellos included) handed to sockets. */
  framesWritten: number;
  messagesReceived: number;
  /** Calls of `socket.write`; fewer than frames written when sends are coalesced. */
  socketWrites: number;
  bytesWritten: number;
  bytesReceived: number;
  /** Chunks read from sockets (each one wake-up of the node, at most). */
  socketReads: number;
  droppedQueueFull: number;
  droppedTooLarge: number;
  droppedUnknownPeer: number;
  droppedClosed: number;
  /** Inbound connections closed for a malformed frame or a protocol violation. */
  malformedFrames: number;
  /** Connections refused because the peer failed the handshake (either side). */
  handshakesRefused: number;
  connectsSucceeded: number;
  connectsFailed: number;
  /** Established outbound connections that failed or were closed by the peer. */
  connectionsLost: number;
}

/**
 * Delay before the next dial after `failures` consecutive failed dials (0 after a lost
 * connection): uniform in [d/2, d) for d = min · 2^(failures+1), clamped to [min, max].
 */
export function backoffDelayMs(
  failures: number,
  minMs: number,
  maxMs: number,
  random: () => number,
): number {
  const hi = Math.min(maxMs, minMs * 2 ** Math.min(failures + 1, 40));
  const lo = Math.max(minMs, hi / 2);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(lo + r * (hi - lo));
}

type WireFrame = HandshakeFrame | Message;

function parseWireFrame(value: unknown): WireFrame {
  if (isHandshakeFrame(value)) return parseHandshakeFrame(value, WIRE_VERSION);
  return parseMessage(value);
}

type OutboundState = "idle" | "connecting" | "handshaking" | "open" | "backoff";

interface Outbound {
  readonly node: NodeId;
  state: OutboundState;
  socket: Socket | null;
  /** False from a `write` that returned false until 'drain'. */
  writable: boolean;
  /** Encoded frames waiting; `queue[head..]` are pending. */
  queue: Buffer[];
  head: number;
  queueBytes: number;
  flushScheduled: boolean;
  /** Consecutive failed dials, for backoff. */
  failures: number;
  /** Connect timeout or backoff timer. */
  timer: NodeJS.Timeout | null;
  /** Messages dropped since the queue last had room, to log once per episode. */
  dropped: number;
  /** The current connection's handshake (null when not connected). */
  handshake: DialerHandshake | null;
  /** Frames the peer sends during the handshake. */
  decoder: FrameDecoder<HandshakeFrame> | null;
}

interface Inbound {
  readonly socket: Socket;
  readonly decoder: FrameDecoder<WireFrame>;
  readonly remote: string;
  from: NodeId | null;
  helloTimer: NodeJS.Timeout | null;
  readonly handshake: AcceptorHandshake;
}

function checkLimits(l: TcpLimits): void {
  for (const [name, v] of Object.entries(l)) {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
      throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(v)}`);
  }
  if (l.reconnectBackoffMsMin > l.reconnectBackoffMsMax)
    throw new InvalidArgumentError(
      `reconnectBackoffMsMin (${l.reconnectBackoffMsMin}) cannot exceed reconnectBackoffMsMax (${l.reconnectBackoffMsMax})`,
    );
  if (l.frameBytesMax > 0xffff_ffff)
    throw new InvalidArgumentError(
      `frameBytesMax cannot exceed ${0xffff_ffff} (a u32 length prefix)`,
    );
}

/** Counters of a transport that has done nothing yet. */
export function emptyTcpStats(): TcpTransportStats {
  return {
    messagesQueued: 0,
    framesWritten: 0,
    messagesReceived: 0,
    socketWrites: 0,
    bytesWritten: 0,
    bytesReceived: 0,
    socketReads: 0,
    droppedQueueFull: 0,
    droppedTooLarge: 0,
    droppedUnknownPeer: 0,
    droppedClosed: 0,
    malformedFrames: 0,
    handshakesRefused: 0,
    connectsSucceeded: 0,
    connectsFailed: 0,
    connectionsLost: 0,
  };
}

export class TcpTransport implements Transport {
  readonly self: NodeId;
  readonly stats: TcpTransportStats = emptyTcpStats();

  private readonly limits: TcpLimits;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly resolve: PeerResolver;
  private readonly encoder = new FrameEncoder();
  private readonly outbound = new Map<NodeId, Outbound>();
  private readonly inbound = new Set<Inbound>();
  private readonly inboundFrom = new Map<NodeId, Inbound>();
  private readonly serverClosed: Promise<void>;
  private handler: MessageHandler | null = null;
  private selfInbox: Message[] = [];
  private selfScheduled = false;
  private closed = false;
  private bound: PeerAddress | null = null;
  private readonly handshakeOptions: HandshakeOptions;

  /** Starts listening; resolves once the server is bound. */
  static async listen(options: TcpTransportOptions): Promise<TcpTransport> {
    const t = new TcpTransport(options, createServer());
    await t.bind(options.host ?? "127.0.0.1", options.port ?? 0);
    return t;
  }

  private constructor(
    options: TcpTransportOptions,
    private readonly server: Server,
  ) {
    if (options.self.length === 0 || options.self.length > NODE_ID_CHARS_MAX)
      throw new InvalidArgumentError(`self must be 1..${NODE_ID_CHARS_MAX} characters`);
    this.self = options.self;
    this.limits = { ...TCP_LIMITS_DEFAULT, ...options.limits };
    checkLimits(this.limits);
    this.log = (options.logger ?? silentLogger).child({ component: "tcp", node: options.self });
    this.random = options.random ?? Math.random;
    const peers = options.peers;
    this.resolve = typeof peers === "function" ? peers : (node) => peers.get(node);
    this.handshakeOptions = {
      self: options.self,
      secret: options.secret ?? null,
      nonce: options.nonce ?? (() => randomBytes(HANDSHAKE_NONCE_BYTES)),
      wireVersion: WIRE_VERSION,
    };
    server.maxConnections = INBOUND_CONNECTIONS_MAX;
    server.on("connection", (socket) => this.accept(socket));
    this.serverClosed = new Promise((resolve) => server.once("close", () => resolve()));
  }

  private async bind(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.server.on("error", (err) => this.log.error({ err }, "server error"));
    const a = this.server.address() as AddressInfo;
    this.bound = { host: a.address, port: a.port };
  }

  /** The address the server is bound to; give it to peers. */
  get address(): PeerAddress {
    if (this.bound === null) throw new InvalidArgumentError("the transport is not bound yet");
    return this.bound;
  }

  /** Bytes waiting in the send queue to `node` (not yet handed to a socket). */
  queuedBytes(node: NodeId): number {
    return this.outbound.get(node)?.queueBytes ?? 0;
  }

  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  send(to: NodeId, message: Message): void {
    if (this.closed) {
      this.stats.droppedClosed++;
      return;
    }
    if (to === this.self) {
      this.sendToSelf(message);
      return;
    }
    let out = this.outbound.get(to);
    if (out === undefined) {
      if (this.resolve(to) === undefined) {
        this.stats.droppedUnknownPeer++;
        this.log.warn(
          { peer: to, t: message.t },
          "message to a node with no known address dropped",
        );
        return;
      }
      out = {
        node: to,
        state: "idle",
        socket: null,
        writable: false,
        queue: [],
        head: 0,
        queueBytes: 0,
        flushScheduled: false,
        failures: 0,
        timer: null,
        dropped: 0,
        handshake: null,
        decoder: null,
      };
      this.outbound.set(to, out);
    }
    // A full queue drops without paying for encoding (no frame is shorter than a prefix
    // and one byte); otherwise the encoded size decides.
    const frame =
      out.queueBytes + FRAME_HEADER_BYTES + 1 > this.limits.sendQueueBytesMax
        ? null
        : this.encoder.encode(message);
    if (frame !== null && frame.length - FRAME_HEADER_BYTES > this.limits.frameBytesMax) {
      // The protocols' own batch limits keep messages far below this; this is a bug upstream.
      this.stats.droppedTooLarge++;
      this.log.error(
        { peer: to, t: message.t, bytes: frame.length, limitBytes: this.limits.frameBytesMax },
        "message larger than a frame may be dropped",
      );
      return;
    }
    if (frame === null || out.queueBytes + frame.length > this.limits.sendQueueBytesMax) {
      this.stats.droppedQueueFull++;
      if (out.dropped++ === 0)
        this.log.warn(
          { peer: to, queuedBytes: out.queueBytes, limitBytes: this.limits.sendQueueBytesMax },
          "send queue full; dropping messages until it drains",
        );
      return;
    }
    if (out.dropped > 0) {
      this.log.warn({ peer: to, dropped: out.dropped }, "send queue has room again");
      out.dropped = 0;
    }
    out.queue.push(frame);
    out.queueBytes += frame.length;
    this.stats.messagesQueued++;
    if (out.state === "idle") this.dial(out);
    else if (out.state === "open") this.scheduleFlush(out);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = null;
    this.selfInbox = [];
    for (const out of this.outbound.values()) {
      if (out.timer !== null) clearTimeout(out.timer);
      out.timer = null;
      out.socket?.destroy();
      out.socket = null;
      out.queue = [];
      out.head = 0;
      out.queueBytes = 0;
      out.state = "idle";
      out.handshake = null;
      out.decoder?.stop();
      out.decoder = null;
    }
    for (const conn of this.inbound) this.dropInbound(conn);
    this.server.close();
  }

  /** Resolves when the listening socket is closed (after `close()`); the port is free then. */
  whenClosed(): Promise<void> {
    return this.serverClosed;
  }

  // ---- sending ----

  private sendToSelf(message: Message): void {
    // Like the in-process transport: delivered by reference, in a microtask, in order.
    this.selfInbox.push(message);
    if (this.selfScheduled) return;
    this.selfScheduled = true;
    queueMicrotask(() => {
      this.selfScheduled = false;
      const batch = this.selfInbox;
      this.selfInbox = [];
      for (const m of batch) {
        const h = this.handler;
        if (h === null) return;
        this.stats.messagesReceived++;
        h(this.self, m);
      }
    });
  }

  private dial(out: Outbound): void {
    const address = this.resolve(out.node);
    if (address === undefined) {
      this.stats.connectsFailed++;
      out.failures++;
      this.log.warn({ peer: out.node }, "no address for peer; will retry");
      this.scheduleRedial(out);
      return;
    }
    out.state = "connecting";
    const socket = createConnection({
      host: address.host,
      port: address.port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_INITIAL_DELAY_MS,
    });
    out.socket = socket;
    out.writable = false;
    out.timer = setTimeout(() => {
      out.timer = null;
      socket.destroy(new Error(`connect timed out after ${this.limits.connectTimeoutMs} ms`));
    }, this.limits.connectTimeoutMs);
    let error: Error | null = null;
    socket.on("error", (err) => {
      error = err;
    });
    socket.once("connect", () => this.onConnected(out, socket, address));
    socket.on("drain", () => {
      if (out.socket !== socket) return;
      out.writable = true;
      this.flush(out);
    });
    socket.on("data", (chunk: Buffer) => this.onOutboundData(out, socket, chunk));
    socket.on("close", () => this.onOutboundClosed(out, socket, error));
  }

  private onConnected(out: Outbound, socket: Socket, address: PeerAddress): void {
    if (out.socket !== socket || this.closed) return;
    if (out.timer !== null) clearTimeout(out.timer);
    out.timer = null;
    this.stats.connectsSucceeded++;
    if (out.failures > 0)
      this.log.info({ peer: out.node, failures: out.failures }, "connected to peer after failures");
    else this.log.debug({ peer: out.node, ...address }, "connected to peer");
    const handshake = new DialerHandshake(this.handshakeOptions, out.node);
    const first = handshake.start();
    if (first === null) {
      // Authenticated link: nothing is sent until the peer has proved itself.
      out.state = "handshaking";
      out.handshake = handshake;
      out.decoder = new FrameDecoder(
        (v) => parseHandshakeFrame(v, WIRE_VERSION),
        HANDSHAKE_FRAME_BYTES_MAX,
      );
      out.timer = setTimeout(() => {
        out.timer = null;
        socket.destroy(
          new Error(`no handshake from the peer within ${this.limits.handshakeTimeoutMs} ms`),
        );
      }, this.limits.handshakeTimeoutMs);
      return;
    }
    out.failures = 0;
    out.state = "open";
    out.writable = true;
    // The hello goes first, ahead of everything queued, and does not count against the bound.
    const hello = this.encoder.encode(first);
    if (out.head > 0) out.queue[--out.head] = hello;
    else out.queue.unshift(hello);
    out.queueBytes += hello.length;
    this.flush(out);
  }

  /** Bytes from the peer a node dialed: handshake frames, and nothing after them. */
  private onOutboundData(out: Outbound, socket: Socket, chunk: Buffer): void {
    if (out.socket !== socket) return;
    const handshake = out.handshake;
    const decoder = out.decoder;
    if (out.state !== "handshaking" || handshake === null || decoder === null) {
      // Outbound connections are send-only; bytes from the acceptor break the protocol.
      this.log.error(
        { peer: out.node },
        out.state === "open" && this.handshakeOptions.secret === null
          ? "peer wrote on a send-only connection (does it require a cluster secret?); closing it"
          : "peer wrote on a send-only connection; closing it",
      );
      socket.destroy();
      return;
    }
    this.stats.bytesReceived += chunk.length;
    this.stats.socketReads++;
    try {
      decoder.push(chunk, (frame) => {
        const step = handshake.receive(frame);
        if (step.send !== undefined) this.writeHandshake(socket, step.send);
        if (step.peer !== undefined) {
          decoder.stop();
          this.onAuthenticated(out, socket);
        }
      });
    } catch (e) {
      if (!(e instanceof HandshakeError) && !(e instanceof FrameError)) throw e;
      this.stats.handshakesRefused++;
      const reason = e instanceof HandshakeError ? e.reason : e.kind;
      socket.destroy(new Error(`cannot authenticate to the peer (${reason}): ${e.message}`));
    }
  }

  private onAuthenticated(out: Outbound, socket: Socket): void {
    if (out.socket !== socket || this.closed) return;
    if (out.timer !== null) clearTimeout(out.timer);
    out.timer = null;
    out.handshake = null;
    out.decoder = null;
    if (out.failures > 0)
      this.log.info({ peer: out.node, failures: out.failures }, "authenticated to peer");
    out.failures = 0;
    out.state = "open";
    out.writable = true;
    this.flush(out);
  }

  private writeHandshake(socket: Socket, frame: HandshakeFrame): void {
    const bytes = this.encoder.encode(frame);
    this.stats.framesWritten++;
    this.stats.socketWrites++;
    this.stats.bytesWritten += bytes.length;
    socket.write(bytes);
  }

  private onOutboundClosed(out: Outbound, socket: Socket, error: Error | null): void {
    if (out.socket !== socket) return;
    if (out.timer !== null) clearTimeout(out.timer);
    out.timer = null;
    out.socket = null;
    out.writable = false;
    out.handshake = null;
    out.decoder?.stop();
    out.decoder = null;
    if (this.closed) return;
    const err =
      error ??
      (out.state === "handshaking"
        ? new Error("the peer closed the connection during the handshake (another cluster secret?)")
        : undefined);
    if (out.state === "open") {
      this.stats.connectionsLost++;
      this.log.warn({ peer: out.node, err }, "connection to peer lost");
      if (out.head === out.queue.length) {
        // Nothing waiting: dial again on the next send.
        out.state = "idle";
        return;
      }
    } else {
      this.stats.connectsFailed++;
      out.failures++;
      // The first failure of an episode is worth a warning; the retries are not.
      if (out.failures === 1)
        this.log.warn({ peer: out.node, err }, "cannot connect to peer; will retry");
      else
        this.log.debug({ peer: out.node, err, failures: out.failures }, "cannot connect to peer");
    }
    this.scheduleRedial(out);
  }

  private scheduleRedial(out: Outbound): void {
    out.state = "backoff";
    const l = this.limits;
    const delay = backoffDelayMs(
      out.failures,
      l.reconnectBackoffMsMin,
      l.reconnectBackoffMsMax,
      this.random,
    );
    out.timer = setTimeout(() => {
      out.timer = null;
      if (this.closed) return;
      if (out.head === out.queue.length) out.state = "idle";
      else this.dial(out);
    }, delay);
  }

  private scheduleFlush(out: Outbound): void {
    if (out.flushScheduled || !out.writable) return;
    out.flushScheduled = true;
    setImmediate(() => {
      out.flushScheduled = false;
      this.flush(out);
    });
  }

  /** Writes queued frames in batches until the queue is empty or the socket is full. */
  private flush(out: Outbound): void {
    const socket = out.socket;
    if (out.state !== "open" || !out.writable || socket === null || socket.destroyed) return;
    const q = out.queue;
    const batchMax = this.limits.writeBatchBytesMax;
    while (out.head < q.length) {
      const start = out.head;
      let end = start + 1;
      let bytes = q[start]!.length;
      while (end < q.length && bytes + q[end]!.length <= batchMax) bytes += q[end++]!.length;
      const batch = end - start === 1 ? q[start]! : Buffer.concat(q.slice(start, end), bytes);
      out.head = end;
      out.queueBytes -= bytes;
      this.stats.framesWritten += end - start;
      this.stats.socketWrites++;
      this.stats.bytesWritten += bytes;
      if (!socket.write(batch)) {
        out.writable = false;
        break;
      }
    }
    // Drop written frames; compact lazily so a long queue is not copied on every batch.
    if (out.head === q.length) {
      out.queue = [];
      out.head = 0;
    } else if (out.head >= 1024 && out.head * 2 >= q.length) {
      out.queue = q.slice(out.head);
      out.head = 0;
    }
  }

  // ---- receiving ----

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const conn: Inbound = {
      socket,
      decoder: new FrameDecoder(parseWireFrame, this.limits.frameBytesMax),
      remote: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
      from: null,
      helloTimer: null,
      handshake: new AcceptorHandshake(this.handshakeOptions),
    };
    conn.helloTimer = setTimeout(() => {
      conn.helloTimer = null;
      this.reject(
        conn,
        new FrameError("invalid", `no hello within ${this.limits.helloTimeoutMs} ms`),
      );
    }, this.limits.helloTimeoutMs);
    this.inbound.add(conn);
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    const challenge = conn.handshake.start();
    if (challenge !== null) this.writeHandshake(socket, challenge);
    socket.on("data", (chunk: Buffer) => this.onInboundData(conn, chunk));
    socket.on("error", (err) => {
      this.log.debug({ peer: conn.from, remote: conn.remote, err }, "inbound connection error");
    });
    socket.on("close", () => {
      if (conn.helloTimer !== null) clearTimeout(conn.helloTimer);
      conn.helloTimer = null;
      this.inbound.delete(conn);
      if (conn.from !== null && this.inboundFrom.get(conn.from) === conn)
        this.inboundFrom.delete(conn.from);
    });
  }

  private onInboundData(conn: Inbound, chunk: Buffer): void {
    this.stats.bytesReceived += chunk.length;
    this.stats.socketReads++;
    if (
      conn.from === null &&
      this.handshakeOptions.secret !== null &&
      conn.decoder.bufferedBytes + chunk.length > PRE_AUTH_BYTES_MAX
    ) {
      this.refuse(
        conn,
        new HandshakeError(
          "malformed",
          `more than ${PRE_AUTH_BYTES_MAX} bytes before the handshake was done`,
        ),
      );
      return;
    }
    try {
      conn.decoder.push(chunk, (frame) => this.onFrame(conn, frame));
    } catch (e) {
      // Only the decoder's own failure is the peer's fault; a handler's error propagates.
      if (e instanceof FrameError && e === conn.decoder.failure) this.reject(conn, e);
      else throw e;
    }
  }

  private onFrame(conn: Inbound, frame: WireFrame): void {
    if (conn.from === null) {
      if (frame.t !== "hello") {
        this.reject(
          conn,
          new FrameError("invalid", `first frame is "${frame.t}", expected a hello`),
        );
        return;
      }
      let step: HandshakeStep;
      try {
        step = conn.handshake.receive(frame);
      } catch (e) {
        if (!(e instanceof HandshakeError)) throw e;
        this.refuse(conn, e);
        return;
      }
      if (step.send !== undefined) this.writeHandshake(conn.socket, step.send);
      if (conn.helloTimer !== null) clearTimeout(conn.helloTimer);
      conn.helloTimer = null;
      conn.from = step.peer ?? frame.from;
      const previous = this.inboundFrom.get(frame.from);
      if (previous !== undefined && previous !== conn) {
        // The peer reconnected; its old connection must not deliver after the new one.
        this.log.debug({ peer: frame.from }, "peer reconnected; closing its older connection");
        this.dropInbound(previous);
      }
      this.inboundFrom.set(frame.from, conn);
      return;
    }
    if (frame.t === "hello" || frame.t === "challenge" || frame.t === "welcome") {
      this.reject(conn, new FrameError("invalid", `a ${frame.t} frame after the handshake`));
      return;
    }
    const h = this.handler;
    if (h === null) return;
    this.stats.messagesReceived++;
    h(conn.from, frame);
  }

  private reject(conn: Inbound, error: FrameError): void {
    this.stats.malformedFrames++;
    this.log.error(
      { peer: conn.from, remote: conn.remote, kind: error.kind, err: error },
      "malformed input; closing the connection",
    );
    this.dropInbound(conn);
  }

  /** Closes a connection whose peer failed the handshake; its claims are not believed. */
  private refuse(conn: Inbound, error: HandshakeError): void {
    this.stats.handshakesRefused++;
    this.log.warn(
      { remote: conn.remote, reason: error.reason, err: error.message },
      "peer refused: it failed the cluster handshake",
    );
    this.dropInbound(conn);
  }

  private dropInbound(conn: Inbound): void {
    if (conn.helloTimer !== null) clearTimeout(conn.helloTimer);
    conn.helloTimer = null;
    conn.decoder.stop();
    conn.socket.destroy();
  }
}
