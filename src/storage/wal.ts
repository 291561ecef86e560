/**
 * A write-ahead log: the low-latency durable path of a storage backend. Frames are appended
 * to preallocated segment files opened with O_DSYNC, so one write system call per group of
 * frames makes the group durable (group commit). Overwriting preallocated space syncs about
 * twice as fast as growing a file, since no block allocation has to reach the disk.
 *
 * A group is every frame appended while the previous group's write was in flight (at least
 * one turn of the event loop). By default ("async") the group is written through libuv's
 * thread pool, one write in flight at a time: the event loop goes on serving requests while
 * the disk syncs, and the group that gathers meanwhile is written next, so groups grow with
 * the load. "sync" writes each turn's group on the event loop thread instead, blocking it
 * for the synced write but saving the two thread hand-offs: cheaper for one client alone,
 * slower under load (YCSB-T transfers through `boki dev`, c=64: 451 and 549/s sync against
 * 626 and 614/s async, alternating runs of `npx tsx bench/profile/txn-boki.ts`).
 * `BOKI_WAL_WRITES=sync|async` in the environment sets the default.
 *
 * Segments are recycled once their frames have been checkpointed elsewhere (lmdb), so
 * steady state creates no files.
 *
 * Frame: u32 length | u32 crc32(segment id, payload) | u32 segment id | payload.
 * Recovery reads each segment until a frame is empty, torn (crc mismatch) or left over from
 * the segment's previous life (other segment id), so it returns a prefix of what was written.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { constants, writev, writevSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { invariant } from "../log/assert.js";

/** Default size of one segment file. */
export const WAL_SEGMENT_BYTES_DEFAULT = 32 * 1024 * 1024;
/** Most spare (checkpointed) segments kept for reuse. */
export const WAL_SPARE_SEGMENTS_MAX = 2;
const FRAME_HEADER_BYTES = 12;
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export interface WalOptions {
  readonly dir: string;
  readonly segmentBytes?: number;
  /** When false, frames are written but not fdatasync'ed. */
  readonly sync?: boolean;
  /** How groups are written (see above); default `BOKI_WAL_WRITES`, else "async". */
  readonly writes?: WalWrites;
}

export type WalWrites = "async" | "sync";

/** The default of `WalOptions.writes`: `BOKI_WAL_WRITES`, else "async". */
export function walWritesDefault(): WalWrites {
  const v = process.env.BOKI_WAL_WRITES;
  if (v === undefined || v === "") return "async";
  if (v !== "async" && v !== "sync")
    throw new Error(`BOKI_WAL_WRITES must be "async" or "sync", got ${JSON.stringify(v)}`);
  return v;
}

interface Segment {
  readonly id: number;
  readonly fd: number;
  offset: number;
  /** Frames not yet checkpointed. */
  pending: number;
  sealed: boolean;
}

interface Group {
  readonly segment: Segment;
  readonly offset: number;
  /** Frame headers and payloads, alternating, in write order. */
  readonly parts: Uint8Array[];
  bytes: number;
  readonly waiters: Array<{ resolve: () => void; reject: (e: Error) => void }>;
}

function segmentName(id: number): string {
  return `${String(id).padStart(12, "0")}.wal`;
}

/** A frame's header; the payload is written after it from its own buffer, without a copy. */
function frameHeader(segmentId: number, payload: Uint8Array): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt32LE(segmentId, 8);
  h.writeUInt32LE(crc32(payload, crc32(h.subarray(8))), 4);
  return h;
}

function preallocate(path: string, bytes: number): number {
  const fd = openSync(path, "w+");
  for (let off = 0; off < bytes; off += ZERO_CHUNK.length) {
    writeSync(fd, ZERO_CHUNK, 0, Math.min(ZERO_CHUNK.length, bytes - off), off);
  }
  fsyncSync(fd);
  return fd;
}

/** Reads every valid frame of a segment file, in order. */
function readSegment(path: string, id: number, segmentBytes: number): Buffer[] {
  const fd = openSync(path, "r");
  const out: Buffer[] = [];
  try {
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    let off = 0;
    while (off + FRAME_HEADER_BYTES <= segmentBytes) {
      if (readSync(fd, head, 0, FRAME_HEADER_BYTES, off) < FRAME_HEADER_BYTES) break;
      const len = head.readUInt32LE(0);
      if (len === 0 || head.readUInt32LE(8) !== id || off + FRAME_HEADER_BYTES + len > segmentBytes)
        break;
      const body = Buffer.allocUnsafe(FRAME_HEADER_BYTES + len);
      if (readSync(fd, body, 0, body.length, off) < body.length) break;
      if (crc32(body.subarray(8)) !== head.readUInt32LE(4)) break;
      out.push(body.subarray(FRAME_HEADER_BYTES));
      off += body.length;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

export class Wal {
  private current: Segment;
  private readonly segments = new Map<number, Segment>();
  private spares: string[] = [];
  /** Groups waiting to be written, oldest first; appends join the last one. */
  private queue: Group[] = [];
  private scheduled = false;
  /** The group whose asynchronous write is in flight (async writes only). */
  private writing: Group | null = null;
  private readonly asyncWrites: boolean;
  private closed = false;
  private failed: Error | null = null;
  private readonly segmentBytes: number;
  private readonly sync: boolean;

  private constructor(
    private readonly dir: string,
    options: WalOptions,
    nextId: number,
    spares: string[],
  ) {
    this.segmentBytes = options.segmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT;
    this.sync = options.sync ?? true;
    this.asyncWrites = (options.writes ?? walWritesDefault()) === "async";
    this.spares = spares;
    this.current = this.openSegment(nextId);
  }

  /**
   * Opens the log in `dir` and returns the frames of every segment left by the previous
   * run, oldest first. The caller must checkpoint them and then call `recovered()`.
   */
  static open(options: WalOptions): { wal: Wal; frames: Buffer[]; recovered: () => void } {
    const segmentBytes = options.segmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT;
    invariant(segmentBytes >= 1024 * 1024, "WAL segments must be at least 1 MiB");
    mkdirSync(options.dir, { recursive: true });
    const files = readdirSync(options.dir)
      .filter((f) => /^[0-9]{12}\.wal$/.test(f))
      .sort();
    const frames: Buffer[] = [];
    let maxId = 0;
    for (const f of files) {
      const id = Number(f.slice(0, 12));
      maxId = Math.max(maxId, id);
      for (const fr of readSegment(join(options.dir, f), id, segmentBytes)) frames.push(fr);
    }
    const wal = new Wal(options.dir, options, maxId + 1, []);
    const old = files.map((f) => join(options.dir, f));
    return {
      wal,
      frames,
      // Once the caller has checkpointed the old frames, their segments become spares.
      recovered: () => {
        for (const path of old) wal.recycle(path);
      },
    };
  }

  private openSegment(id: number): Segment {
    const path = join(this.dir, segmentName(id));
    const spare = this.spares.shift();
    if (spare !== undefined) renameSync(spare, path);
    else closeSync(preallocate(path, this.segmentBytes));
    const fd = openSync(path, constants.O_RDWR | (this.sync ? constants.O_DSYNC : 0));
    const dirFd = openSync(this.dir, "r");
    fsyncSync(dirFd);
    closeSync(dirFd);
    const s: Segment = { id, fd, offset: 0, pending: 0, sealed: false };
    this.segments.set(id, s);
    return s;
  }

  private recycle(path: string): void {
    if (this.spares.length < WAL_SPARE_SEGMENTS_MAX && !this.closed) this.spares.push(path);
    else rmSync(path, { force: true });
  }

  /** Largest payload one frame may carry. */
  get framePayloadBytesMax(): number {
    return this.segmentBytes - FRAME_HEADER_BYTES;
  }

  /**
   * Appends a frame. Returns the segment it went to (to report its checkpoint with
   * `checkpointed`) and a promise that resolves once the frame is durable.
   */
  append(payload: Uint8Array): { segment: number; durable: Promise<void> } {
    if (this.failed !== null) return { segment: -1, durable: Promise.reject(this.failed) };
    invariant(!this.closed, "append to a closed WAL");
    invariant(payload.length <= this.framePayloadBytesMax, "WAL frame larger than a segment");
    const size = FRAME_HEADER_BYTES + payload.length;
    if (this.current.offset + size > this.segmentBytes) {
      this.current.sealed = true;
      const old = this.current;
      this.current = this.openSegment(old.id + 1);
      this.maybeRelease(old);
    }
    const seg = this.current;
    let g = this.queue[this.queue.length - 1];
    if (g === undefined || g.segment !== seg) {
      g = { segment: seg, offset: seg.offset, parts: [], bytes: 0, waiters: [] };
      this.queue.push(g);
    }
    g.parts.push(frameHeader(seg.id, payload), payload);
    g.bytes += size;
    seg.offset += size;
    seg.pending++;
    const durable = new Promise<void>((resolve, reject) => g.waiters.push({ resolve, reject }));
    if (!this.scheduled) {
      // Let every append of this turn of the event loop, microtasks included, join the group.
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    return { segment: seg.id, durable };
  }

  /**
   * Writes the queued groups, in order; each is durable when its write returns. Async: the
   * oldest group, and the next one when it is done.
   */
  private flush(): void {
    this.scheduled = false;
    if (this.asyncWrites) {
      if (this.writing !== null || this.failed !== null) return;
      const g = this.queue.shift();
      if (g === undefined) return;
      this.writing = g;
      writev(g.segment.fd, g.parts, g.offset, (err, written) => {
        this.writing = null;
        if (err !== null) return this.fail(err, g);
        if (written !== g.bytes)
          return this.fail(new Error(`short WAL write: ${written} of ${g.bytes} bytes`), g);
        for (const w of g.waiters) w.resolve();
        this.flush();
      });
      return;
    }
    for (
      let g = this.queue.shift();
      g !== undefined && this.failed === null;
      g = this.queue.shift()
    ) {
      let written: number;
      try {
        written = writevSync(g.segment.fd, g.parts, g.offset);
      } catch (err) {
        this.fail(err as Error, g);
        return;
      }
      if (written !== g.bytes) {
        this.fail(new Error(`short WAL write: ${written} of ${g.bytes} bytes`), g);
        return;
      }
      for (const w of g.waiters) w.resolve();
    }
  }

  private fail(err: Error, current: Group): void {
    // A WAL that cannot write must not acknowledge anything more.
    this.failed = err;
    for (const g of [current, ...this.queue]) for (const w of g.waiters) w.reject(err);
    this.queue = [];
  }

  /** Reports that one frame of `segment` is checkpointed; a sealed segment with none left is recycled. */
  checkpointed(segment: number): void {
    const s = this.segments.get(segment);
    if (s === undefined) return;
    s.pending--;
    this.maybeRelease(s);
  }

  private maybeRelease(s: Segment): void {
    if (!s.sealed || s.pending > 0) return;
    this.segments.delete(s.id);
    closeSync(s.fd);
    this.recycle(join(this.dir, segmentName(s.id)));
  }

  /** Waits for queued frames to be durable, then closes every segment file. */
  async close(): Promise<void> {
    if (this.closed) return;
    const last = this.queue[this.queue.length - 1] ?? this.writing ?? undefined;
    if (last !== undefined)
      await new Promise<void>((resolve) => last.waiters.push({ resolve, reject: () => resolve() }));
    this.closed = true;
    for (const s of this.segments.values()) closeSync(s.fd);
    this.segments.clear();
  }
}
