/**
 * The wire codec of the TCP transport: a frame is a 4-byte big-endian payload length
 * followed by one msgpack value. The decoder accepts bytes as TCP delivers them, split and
 * merged at arbitrary points, and yields whole values in order.
 *
 * Malformed input is an operating error of the peer, not a bug here: the decoder throws a
 * `FrameError` and refuses further input, and the connection that fed it is closed.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from "msgpackr";
import { BokiError } from "../log/errors.js";

/** Largest payload of one frame (the length prefix excluded). A larger prefix is malformed. */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;
/** Size of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/**
 * Why a frame was rejected:
 * - `too-large`: the length prefix exceeds the limit (detected before the payload arrives);
 * - `empty`: the length prefix is 0, which no msgpack value encodes to;
 * - `undecodable`: the payload is not exactly one msgpack value;
 * - `invalid`: the value decodes but is not an allowed frame (for example, not a message).
 */
export type FrameErrorKind = "too-large" | "empty" | "undecodable" | "invalid";

/** A peer sent bytes that are not a valid frame. Never retryable: the stream is unusable. */
export class FrameError extends BokiError {
  readonly kind: FrameErrorKind;
  constructor(kind: FrameErrorKind, message: string, cause?: unknown) {
    super("INVALID_ARGUMENT", message, { cause });
    this.kind = kind;
  }
}

/** Encodes values into frames. One encoder per sender; `encode` is synchronous. */
export class FrameEncoder {
  // Plain msgpack maps, no msgpackr record extension: every frame decodes on its own, and
  // any msgpack implementation can read it.
  private readonly packr = new Packr({ useRecords: false });

  /**
   * Returns one buffer holding the length prefix and the payload. msgpackr reserves the
   * prefix in its own output buffer, so framing costs no copy. The caller checks the payload
   * size (`frame.length - FRAME_HEADER_BYTES`) against its limit.
   */
  encode(value: unknown): Buffer {
    const frame = this.packr.pack(value, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
    const payloadBytes = frame.length - FRAME_HEADER_BYTES;
    // A payload beyond u32 cannot be framed; the limit check of every caller is far below.
    if (payloadBytes > 0xffff_ffff) throw new RangeError(`frame payload is ${payloadBytes} bytes`);
    frame.writeUInt32BE(payloadBytes, 0);
    return frame;
  }
}

/**
 * Turns a byte stream into frames. `parse` checks each decoded value and returns the typed
 * frame, throwing when the value is not acceptable (its error becomes a `FrameError` of kind
 * `invalid`).
 *
 * Memory: at most one partial frame is buffered, so at most `frameBytesMax` plus one read
 * chunk. Each payload is copied into its own buffer unless it already owns one, so values
 * decoded from it (byte fields are views, not copies) never keep a whole socket chunk with
 * other frames alive.
 */
export class FrameDecoder<T> {
  // One unpacker per stream: msgpackr keeps record definitions between calls, and one peer's
  // stream must not be able to change how another's is read.
  private readonly unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
  private readonly chunks: Uint8Array[] = [];
  /** Bytes of `chunks[0]` already consumed. */
  private offset = 0;
  private buffered = 0;
  /** Payload length of the frame being read, or -1 while reading a length prefix. */
  private payloadBytes = -1;
  private failedWith: FrameError | null = null;
  private stopped = false;

  constructor(
    private readonly parse: (value: unknown) => T,
    private readonly frameBytesMax: number = FRAME_BYTES_MAX,
  ) {}

  /** Bytes received but not yet decoded (part of a frame). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The error that ended this stream, if it ended that way. */
  get failure(): FrameError | null {
    return this.failedWith;
  }

  /**
   * Feeds bytes; calls `onFrame` for each complete frame, in order. Throws a `FrameError` on
   * the first malformed frame (frames before it were delivered), and again on any later call.
   * After `stop()` (which `onFrame` may call) no more frames are delivered.
   */
  push(chunk: Uint8Array, onFrame: (frame: T) => void): void {
    if (this.failedWith !== null) throw this.failedWith;
    if (this.stopped || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (!this.stopped) {
      if (this.payloadBytes < 0) {
        if (this.buffered < FRAME_HEADER_BYTES) return;
        const n = this.takeHeader();
        if (n > this.frameBytesMax)
          throw this.fail(
            new FrameError(
              "too-large",
              `frame payload of ${n} bytes exceeds the limit of ${this.frameBytesMax} bytes`,
            ),
          );
        if (n === 0) throw this.fail(new FrameError("empty", "frame with an empty payload"));
        this.payloadBytes = n;
      }
      if (this.buffered < this.payloadBytes) return;
      const payload = this.take(this.payloadBytes);
      this.payloadBytes = -1;
      let value: unknown;
      try {
        value = this.unpackr.unpack(payload);
      } catch (e) {
        throw this.fail(new FrameError("undecodable", "frame payload is not one msgpack value", e));
      }
      let frame: T;
      try {
        frame = this.parse(value);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        throw this.fail(new FrameError("invalid", `frame rejected: ${why}`, e));
      }
      onFrame(frame);
    }
  }

  /** Discards buffered bytes; later pushes are ignored. */
  stop(): void {
    this.stopped = true;
    this.chunks.length = 0;
    this.offset = 0;
    this.buffered = 0;
  }

  private fail(error: FrameError): FrameError {
    this.stop();
    this.failedWith = error;
    return error;
  }

  /** Removes the length prefix from the front (`buffered >= FRAME_HEADER_BYTES`). */
  private takeHeader(): number {
    const first = this.chunks[0]!;
    let h: Uint8Array;
    let at: number;
    if (first.length - this.offset >= FRAME_HEADER_BYTES) {
      // The common case: read in place, no allocation.
      h = first;
      at = this.offset;
      this.offset += FRAME_HEADER_BYTES;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      this.buffered -= FRAME_HEADER_BYTES;
    } else {
      h = this.take(FRAME_HEADER_BYTES);
      at = 0;
    }
    return ((h[at]! << 24) >>> 0) + (h[at + 1]! << 16) + (h[at + 2]! << 8) + h[at + 3]!;
  }

  /** Removes `n <= buffered` bytes from the front, as a buffer that owns its memory. */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    const available = first.length - this.offset;
    let out: Uint8Array;
    if (available >= n) {
      out = first.subarray(this.offset, this.offset + n);
      if (available === n) {
        this.chunks.shift();
        this.offset = 0;
      } else {
        this.offset += n;
      }
      if (out.byteLength !== out.buffer.byteLength) out = new Uint8Array(out);
    } else {
      out = new Uint8Array(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length - this.offset, n - filled);
        out.set(c.subarray(this.offset, this.offset + k), filled);
        filled += k;
        if (this.offset + k === c.length) {
          this.chunks.shift();
          this.offset = 0;
        } else {
          this.offset += k;
        }
      }
    }
    this.buffered -= n;
    return out;
  }
}
