import { describe, expect, it } from "vitest";
import { openSync, readdirSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { Wal, type WalWrites } from "../src/storage/wal.js";
import { tempDir } from "./helpers/tmp.js";

const MiB = 1024 * 1024;
const payload = (i: number, size = 100): Buffer => Buffer.alloc(size, i % 251);
const segmentFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".wal"))
    .sort();

describe.each<WalWrites>(["async", "sync"])("write-ahead log, %s writes", (writes) => {
  it("returns every durable frame, in order, when reopened without a clean close", async () => {
    const t = tempDir();
    try {
      const { wal } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => wal.append(payload(i, 10 + i)).durable),
      );
      // No close: the next open reads what is on disk, as after a crash.
      const { frames, wal: again } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(frames).toHaveLength(50);
      frames.forEach((f, i) => expect(f.equals(payload(i, 10 + i))).toBe(true));
      await again.close();
      await wal.close();
    } finally {
      t.remove();
    }
  });

  it("stops at a torn frame and ignores everything after it", async () => {
    const t = tempDir();
    try {
      const { wal } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      await Promise.all([wal.append(payload(1)).durable, wal.append(payload(2)).durable]);
      await wal.close();
      const file = join(t.dir, segmentFiles(t.dir)[0]!);
      // A frame header that promises 100 bytes whose checksum does not match.
      const fd = openSync(file, "r+");
      const bad = Buffer.alloc(112, 7);
      bad.writeUInt32LE(100, 0);
      bad.writeUInt32LE(1, 8);
      writeSync(fd, bad, 0, bad.length, 2 * 112);
      closeSync(fd);
      const { frames, wal: again } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(frames.map((f) => f[0])).toEqual([1, 2]);
      await again.close();
    } finally {
      t.remove();
    }
  });

  it("rotates segments, recovers across them in order, and recycles checkpointed ones", async () => {
    const t = tempDir();
    try {
      const { wal } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      const written: Array<{ segment: number; i: number }> = [];
      for (let i = 0; i < 40; i++) {
        const { segment, durable } = wal.append(payload(i, 100_000));
        await durable;
        written.push({ segment, i });
      }
      const segments = new Set(written.map((w) => w.segment));
      expect(segments.size).toBeGreaterThanOrEqual(4);
      const reopened = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(reopened.frames.map((f) => f[0])).toEqual(written.map((w) => w.i % 251));
      await reopened.wal.close();
      // Checkpoint everything: sealed segments become spares (at most two) or are deleted.
      for (const w of written) wal.checkpointed(w.segment);
      expect(segmentFiles(t.dir).length).toBeLessThanOrEqual(1 + 1 + 2);
      await wal.close();
    } finally {
      t.remove();
    }
  });

  it("does not return a recycled segment's frames from its previous life", async () => {
    const t = tempDir();
    try {
      let opened = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      for (let i = 0; i < 5; i++) await opened.wal.append(payload(i, 1000)).durable;
      await opened.wal.close();
      // Reopen: the old segment is replayed, then recycled as a spare for the next segment.
      opened = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(opened.frames).toHaveLength(5);
      opened.recovered();
      await opened.wal.append(payload(200, 10)).durable;
      // Fill the current segment so the next one reuses the spare file.
      for (let i = 0; i < 12; i++) await opened.wal.append(payload(i, 100_000)).durable;
      await opened.wal.close();
      const again = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(again.frames[0]![0]).toBe(200);
      expect(again.frames).toHaveLength(13);
      await again.wal.close();
    } finally {
      t.remove();
    }
  });
  it("makes frames durable in append order across groups, and close waits for the write in flight", async () => {
    const t = tempDir();
    try {
      const { wal } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      const order: number[] = [];
      const pending: Promise<void>[] = [];
      for (let turn = 0; turn < 20; turn++) {
        for (let j = 0; j < 5; j++) {
          const i = turn * 5 + j;
          pending.push(wal.append(payload(i)).durable.then(() => void order.push(i)));
        }
        // The next appends come a turn later: with async writes, while a write is in flight.
        await new Promise((r) => setImmediate(r));
      }
      const last = wal.append(payload(100)).durable.then(() => void order.push(100));
      await wal.close();
      await Promise.all([...pending, last]);
      expect(order).toEqual(Array.from({ length: 101 }, (_, i) => i));
      const { frames, wal: again } = Wal.open({ writes, dir: t.dir, segmentBytes: MiB });
      expect(frames).toHaveLength(101);
      frames.forEach((f, i) => expect(f.equals(payload(i))).toBe(true));
      await again.close();
    } finally {
      t.remove();
    }
  });
});
