/**
 * Aux data on the lmdb backend with a write-ahead log: gathered into the next checkpoint
 * transaction, readable at once, on disk after it, and never put back by a gathered write
 * once deleted.
 */
import { describe, expect, it } from "vitest";
import { AUX_GATHERED_BYTES_MAX, LmdbBackend } from "../src/storage/lmdb-backend.js";
import { tempDir } from "./helpers/tmp.js";

const bytes = (n: number, size = 16): Buffer => Buffer.alloc(size, n % 251);
/** Aux data as a Buffer (lmdb returns Buffers, gathered data is what was written). */
const got = (v: Uint8Array | undefined): Buffer | undefined =>
  v === undefined ? undefined : Buffer.from(v);

describe("lmdb backend aux data (with a WAL)", () => {
  it("reads aux data back before its transaction commits, and after a reopen", async () => {
    const t = tempDir();
    try {
      const b = await LmdbBackend.open(t.dir, { wal: true });
      const written = b.writeAux(0, 7, bytes(7));
      expect(got(b.readAux(0, 7))).toEqual(bytes(7));
      await written;
      expect(got(b.readAux(0, 7))).toEqual(bytes(7));
      await b.close();
      const again = await LmdbBackend.open(t.dir, { wal: true });
      expect(got(again.readAux(0, 7))).toEqual(bytes(7));
      expect(again.readAux(0, 8)).toBeUndefined();
      await again.close();
    } finally {
      t.remove();
    }
  });

  it("keeps the newest of two writes of one record's aux data", async () => {
    const t = tempDir();
    try {
      const b = await LmdbBackend.open(t.dir, { wal: true });
      const first = b.writeAux(0, 3, bytes(1));
      const second = b.writeAux(0, 3, bytes(2));
      expect(got(b.readAux(0, 3))).toEqual(bytes(2));
      await Promise.all([first, second]);
      expect(got(b.readAux(0, 3))).toEqual(bytes(2));
      await b.close();
    } finally {
      t.remove();
    }
  });

  it("a delete issued after a gathered write leaves no aux data, before and after the commit", async () => {
    const t = tempDir();
    try {
      const b = await LmdbBackend.open(t.dir, { wal: true });
      const w = b.writeAux(0, 5, bytes(5));
      const d = b.deleteAux(0, [5]);
      expect(b.readAux(0, 5)).toBeUndefined();
      await Promise.all([w, d]);
      expect(b.readAux(0, 5)).toBeUndefined();
      await b.close();
      const again = await LmdbBackend.open(t.dir, { wal: true });
      expect(again.readAux(0, 5)).toBeUndefined();
      await again.close();
    } finally {
      t.remove();
    }
  });

  it("commits at once when the gathered aux data passes AUX_GATHERED_BYTES_MAX", async () => {
    const t = tempDir();
    try {
      const b = await LmdbBackend.open(t.dir, { wal: true });
      const size = 64 * 1024;
      const n = Math.ceil(AUX_GATHERED_BYTES_MAX / size) + 1;
      const started = performance.now();
      await Promise.all(Array.from({ length: n }, (_, i) => b.writeAux(0, i, bytes(i, size))));
      // Without the bound the writes would wait for the 50 ms timer; with it, the first
      // commit starts as soon as the bound is passed. Every one is readable either way.
      for (let i = 0; i < n; i++) expect(b.readAux(0, i)?.[0]).toBe(i % 251);
      expect(performance.now() - started).toBeLessThan(30_000);
      await b.close();
    } finally {
      t.remove();
    }
  });
});
