/**
 * Authentication of cluster links: a challenge-response handshake over a shared secret,
 * run when a TCP connection opens and before any message crosses it.
 *
 *   acceptor → dialer   challenge { nonce: Na }
 *   dialer → acceptor   hello     { from, nonce: Nd, proof: HMAC(secret, "hello", Na, Nd, from, to) }
 *   acceptor → dialer   welcome   { proof: HMAC(secret, "welcome", Na, Nd, from, to) }
 *
 * The acceptor learns that the dialer holds the secret (its proof covers the acceptor's fresh
 * nonce, so a recorded hello cannot be replayed), and the dialer learns the same of the
 * acceptor before it sends anything (the welcome covers the dialer's nonce), so neither a
 * stranger nor a node squatting on a peer's port is told a message. Proofs are compared in
 * constant time. The secret is never sent and never logged.
 *
 * Without a secret the link runs as before: the dialer's first frame is a plain hello and
 * the acceptor sends nothing. A node with a secret refuses a plain hello, and a node without
 * one refuses a hello with a proof (the two are configured differently; saying so is better
 * than guessing).
 *
 * The handshake authenticates who opens a connection; it does not encrypt or sign the frames
 * that follow (see docs/operations.md).
 *
 * These classes are I/O-free state machines: frames in, frames out; nonces come from a
 * source passed in. The TCP transport drives them.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { BokiError, InvalidArgumentError } from "../log/errors.js";
import type { NodeId } from "./transport.js";

/** Bytes of each side's nonce. */
export const HANDSHAKE_NONCE_BYTES = 32;
/** Bytes of an HMAC-SHA256 proof. */
export const HANDSHAKE_PROOF_BYTES = 32;
/** Fewest characters a cluster secret may have (`openssl rand -hex 32` gives 64). */
export const CLUSTER_SECRET_CHARS_MIN = 32;
/** Most characters a cluster secret may have. */
export const CLUSTER_SECRET_CHARS_MAX = 4096;
/** Longest node id a hello may carry. */
export const HELLO_NODE_ID_CHARS_MAX = 256;

/** Why a handshake failed. */
export type HandshakeFailure =
  /** The peer sent a plain hello to a node that requires a proof. */
  | "no-proof"
  /** The peer's proof does not match: it holds another secret (or none). */
  | "bad-proof"
  /** The peer sent a proof to a node that has no secret configured. */
  | "unexpected-proof"
  /** A frame that does not belong at this point of the handshake. */
  | "out-of-order"
  /** A handshake frame with wrong fields. */
  | "malformed";

/** A handshake was refused. Never retryable with the same configuration. */
export class HandshakeError extends BokiError {
  readonly reason: HandshakeFailure;
  constructor(reason: HandshakeFailure, message: string) {
    super("INVALID_ARGUMENT", message);
    this.reason = reason;
  }
}

/** The shared secret of a cluster; `toString` and `toJSON` never show it. */
export class ClusterSecret {
  readonly #key: Buffer;

  private constructor(key: Buffer) {
    this.#key = key;
  }

  /** A secret from its text: `CLUSTER_SECRET_CHARS_MIN`..`MAX` visible ASCII characters. */
  static fromText(text: string, what = "the cluster secret"): ClusterSecret {
    const s = text.trim();
    if (s.length < CLUSTER_SECRET_CHARS_MIN || s.length > CLUSTER_SECRET_CHARS_MAX) {
      throw new InvalidArgumentError(
        `${what} must be ${CLUSTER_SECRET_CHARS_MIN} to ${CLUSTER_SECRET_CHARS_MAX} characters, got ${s.length} (make one with: openssl rand -hex 32)`,
      );
    }
    if (!/^[\x21-\x7e]+$/.test(s)) {
      throw new InvalidArgumentError(`${what} must be visible ASCII characters without spaces`);
    }
    return new ClusterSecret(Buffer.from(s, "utf8"));
  }

  /** Reads a secret file (its text, surrounding whitespace ignored). */
  static fromFile(path: string): ClusterSecret {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new InvalidArgumentError(
        `cannot read the cluster secret file ${path}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    return ClusterSecret.fromText(text, `the cluster secret in ${path}`);
  }

  /** HMAC-SHA256 over a label and fields, each length-prefixed so no two inputs collide. */
  proof(label: string, parts: ReadonlyArray<Uint8Array | string>): Buffer {
    const h = createHmac("sha256", this.#key);
    for (const p of [label, ...parts]) {
      const b = typeof p === "string" ? Buffer.from(p, "utf8") : p;
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(b.length, 0);
      h.update(len);
      h.update(b);
    }
    return h.digest();
  }

  toString(): string {
    return "[cluster secret]";
  }

  toJSON(): string {
    return "[cluster secret]";
  }
}

export interface ChallengeFrame {
  t: "challenge";
  v: number;
  nonce: Uint8Array;
}

export interface HelloFrame {
  t: "hello";
  v: number;
  from: NodeId;
  /** With a secret: the dialer's nonce and its proof. */
  nonce?: Uint8Array;
  proof?: Uint8Array;
}

export interface WelcomeFrame {
  t: "welcome";
  proof: Uint8Array;
}

export type HandshakeFrame = ChallengeFrame | HelloFrame | WelcomeFrame;

const HANDSHAKE_TYPES: ReadonlySet<string> = new Set(["challenge", "hello", "welcome"]);

/** Whether a decoded value claims to be a handshake frame (by its `t`). */
export function isHandshakeFrame(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    HANDSHAKE_TYPES.has((value as { t?: unknown }).t as string)
  );
}

function bytesField(o: Record<string, unknown>, key: string, n: number, t: string): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array) || v.length !== n) {
    throw new HandshakeError("malformed", `${t}: ${key} must be ${n} bytes`);
  }
  return v;
}

/**
 * Checks a decoded handshake frame and returns a fresh copy with only its declared fields.
 * Throws `HandshakeError` ("malformed") or `InvalidArgumentError` (another wire version).
 */
export function parseHandshakeFrame(value: unknown, wireVersion: number): HandshakeFrame {
  if (!isHandshakeFrame(value)) throw new HandshakeError("malformed", "not a handshake frame");
  const o = value as Record<string, unknown>;
  const t = o["t"] as HandshakeFrame["t"];
  if (t === "welcome") return { t, proof: bytesField(o, "proof", HANDSHAKE_PROOF_BYTES, t) };
  if (o["v"] !== wireVersion) {
    throw new InvalidArgumentError(
      `${t} with wire version ${String(o["v"])}, expected ${wireVersion}`,
    );
  }
  if (t === "challenge") {
    return { t, v: wireVersion, nonce: bytesField(o, "nonce", HANDSHAKE_NONCE_BYTES, t) };
  }
  const from = o["from"];
  if (typeof from !== "string" || from.length === 0 || from.length > HELLO_NODE_ID_CHARS_MAX) {
    throw new HandshakeError(
      "malformed",
      `hello must name the sender in 1..${HELLO_NODE_ID_CHARS_MAX} characters`,
    );
  }
  if (o["proof"] === undefined && o["nonce"] === undefined) return { t, v: wireVersion, from };
  return {
    t,
    v: wireVersion,
    from,
    nonce: bytesField(o, "nonce", HANDSHAKE_NONCE_BYTES, t),
    proof: bytesField(o, "proof", HANDSHAKE_PROOF_BYTES, t),
  };
}

function sameProof(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface HandshakeOptions {
  readonly self: NodeId;
  /** Null: the link is not authenticated. */
  readonly secret: ClusterSecret | null;
  /** A source of `HANDSHAKE_NONCE_BYTES` random bytes (crypto.randomBytes in production). */
  readonly nonce: () => Uint8Array;
  readonly wireVersion: number;
}

/** What a handshake step asks the driver to do. */
export interface HandshakeStep {
  /** A frame to send to the peer, if any. */
  readonly send?: HandshakeFrame;
  /** Set once the peer is authenticated (or, without a secret, named): who it is. */
  readonly peer?: NodeId;
}

/** The accepting side: challenges (with a secret), then checks the dialer's hello. */
export class AcceptorHandshake {
  private readonly nonce: Uint8Array | null;
  private state: "waiting-hello" | "done" = "waiting-hello";

  constructor(private readonly o: HandshakeOptions) {
    this.nonce = o.secret === null ? null : o.nonce();
    if (this.nonce !== null && this.nonce.length !== HANDSHAKE_NONCE_BYTES) {
      throw new InvalidArgumentError(`a nonce must be ${HANDSHAKE_NONCE_BYTES} bytes`);
    }
  }

  /** The first frame to send when the connection opens: the challenge, or none. */
  start(): HandshakeFrame | null {
    return this.nonce === null
      ? null
      : { t: "challenge", v: this.o.wireVersion, nonce: this.nonce };
  }

  get done(): boolean {
    return this.state === "done";
  }

  /** Takes the dialer's frame; throws `HandshakeError` when the dialer is refused. */
  receive(frame: HandshakeFrame): HandshakeStep {
    if (this.state !== "waiting-hello" || frame.t !== "hello") {
      throw new HandshakeError(
        "out-of-order",
        `a ${frame.t} frame where the dialer's hello was expected`,
      );
    }
    const secret = this.o.secret;
    if (secret === null || this.nonce === null) {
      if (frame.proof !== undefined) {
        throw new HandshakeError(
          "unexpected-proof",
          `${frame.from} authenticates with a cluster secret, but this node has none configured`,
        );
      }
      this.state = "done";
      return { peer: frame.from };
    }
    if (frame.proof === undefined || frame.nonce === undefined) {
      throw new HandshakeError(
        "no-proof",
        `${frame.from} did not authenticate (no cluster secret configured there?)`,
      );
    }
    const parts = [this.nonce, frame.nonce, frame.from, this.o.self];
    if (!sameProof(secret.proof("boki-hello", parts), frame.proof)) {
      throw new HandshakeError(
        "bad-proof",
        `${frame.from} failed to authenticate: its proof does not match this node's cluster secret`,
      );
    }
    this.state = "done";
    return {
      send: { t: "welcome", proof: secret.proof("boki-welcome", parts) },
      peer: frame.from,
    };
  }
}

/** The dialing side: answers the challenge (with a secret) and checks the welcome. */
export class DialerHandshake {
  private readonly nonce: Uint8Array | null;
  private challenge: Uint8Array | null = null;
  private state: "waiting-challenge" | "waiting-welcome" | "done";

  constructor(
    private readonly o: HandshakeOptions,
    /** The node this connection is meant to reach. */
    private readonly peer: NodeId,
  ) {
    this.nonce = o.secret === null ? null : o.nonce();
    if (this.nonce !== null && this.nonce.length !== HANDSHAKE_NONCE_BYTES) {
      throw new InvalidArgumentError(`a nonce must be ${HANDSHAKE_NONCE_BYTES} bytes`);
    }
    this.state = o.secret === null ? "done" : "waiting-challenge";
  }

  /** The first frame to send once connected: without a secret the plain hello, else none. */
  start(): HandshakeFrame | null {
    return this.o.secret === null ? { t: "hello", v: this.o.wireVersion, from: this.o.self } : null;
  }

  get done(): boolean {
    return this.state === "done";
  }

  /** Takes the acceptor's frame; throws `HandshakeError` when the acceptor is refused. */
  receive(frame: HandshakeFrame): HandshakeStep {
    const secret = this.o.secret;
    if (secret === null || this.nonce === null || this.state === "done") {
      throw new HandshakeError(
        "out-of-order",
        `${this.peer} sent a ${frame.t} frame on a connection that needs none (a cluster secret configured there, none here?)`,
      );
    }
    if (this.state === "waiting-challenge") {
      if (frame.t !== "challenge") {
        throw new HandshakeError(
          "out-of-order",
          `${this.peer} sent a ${frame.t} frame where its challenge was expected`,
        );
      }
      this.challenge = frame.nonce;
      this.state = "waiting-welcome";
      const proof = secret.proof("boki-hello", [frame.nonce, this.nonce, this.o.self, this.peer]);
      return {
        send: { t: "hello", v: this.o.wireVersion, from: this.o.self, nonce: this.nonce, proof },
      };
    }
    if (frame.t !== "welcome" || this.challenge === null) {
      throw new HandshakeError(
        "out-of-order",
        `${this.peer} sent a ${frame.t} frame where its welcome was expected`,
      );
    }
    const expected = secret.proof("boki-welcome", [
      this.challenge,
      this.nonce,
      this.o.self,
      this.peer,
    ]);
    if (!sameProof(expected, frame.proof)) {
      throw new HandshakeError(
        "bad-proof",
        `${this.peer} failed to authenticate: its proof does not match this node's cluster secret`,
      );
    }
    this.state = "done";
    return { peer: this.peer };
  }
}

/**
 * Whether `host` (an address to listen on, or a name) is loopback-only: `localhost`,
 * 127.0.0.0/8 or ::1. Wildcards (0.0.0.0, ::) and every other address reach beyond it.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return v4 !== null && v4[1] === "127" && v4.slice(1).every((x) => Number(x) <= 255);
}
