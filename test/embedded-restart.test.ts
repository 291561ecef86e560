import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { EmbeddedLog, type LogBook } from "../src/index.js";
import { tempDir } from "./helpers/tmp.js";

interface Acked {
  book: number;
  seqnum: number;
  payload: string;
}

async function readAll(b: LogBook): Promise<Array<{ seqnum: number; payload: string }>> {
  const out: Array<{ seqnum: number; payload: string }> = [];
  for (let r = await b.readNext(0, 0); r !== null; r = await b.readNext(0, r.seqnum + 1)) {
    out.push({ seqnum: r.seqnum, payload: Buffer.from(r.data).toString() });
  }
  return out;
}

/** Every acknowledged append is in its book exactly once, at its sequence number; books are ordered. */
async function verify(log: EmbeddedLog, acked: Acked[], books: number[]): Promise<number> {
  let total = 0;
  for (const id of books) {
    const records = await readAll(log.book(id));
    total += records.length;
    for (let i = 1; i < records.length; i++)
      expect(records[i]!.seqnum).toBeGreaterThan(records[i - 1]!.seqnum);
    const byPayload = new Map<string, number[]>();
    for (const r of records)
      byPayload.set(r.payload, [...(byPayload.get(r.payload) ?? []), r.seqnum]);
    for (const a of acked.filter((x) => x.book === id))
      expect(byPayload.get(a.payload)).toEqual([a.seqnum]);
    for (const seqnums of byPayload.values()) expect(seqnums).toHaveLength(1);
  }
  return total;
}

describe("EmbeddedLog restart", () => {
  it("gives back every acknowledged record once, in order, at its sequence number after close and reopen", async () => {
    const t = tempDir();
    try {
      let log = await EmbeddedLog.open({ dir: t.dir });
      const acked: Acked[] = [];
      let n = 0;
      await Promise.all(
        Array.from({ length: 32 }, async (_, i) => {
          const b = log.book(1 + (i % 3));
          for (let k = 0; k < 100; k++) {
            const payload = `c${i}-${n++}`;
            acked.push({ book: b.book, seqnum: await b.append([], payload), payload });
          }
        }),
      );
      await log.close();
      log = await EmbeddedLog.open({ dir: t.dir });
      expect(await verify(log, acked, [1, 2, 3])).toBe(3200);
      // New appends continue after the old ones.
      const s = await log.book(1).append([], "after-reopen");
      expect(s).toBeGreaterThan(Math.max(...acked.map((a) => a.seqnum)));
      await log.close();
    } finally {
      t.remove();
    }
  });

  it("keeps every acknowledged record when the process is killed with SIGKILL mid-load", async () => {
    const t = tempDir();
    try {
      const acked: Acked[] = [];
      for (let round = 0; round < 2; round++) {
        const child = spawn(
          process.execPath,
          [
            "--import",
            "tsx",
            fileURLToPath(new URL("./fixtures/append-child.ts", import.meta.url)),
            t.dir,
            "32",
          ],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
        const lines = createInterface({ input: child.stdout });
        let inRound = 0;
        await new Promise<void>((resolve, reject) => {
          const guard = setTimeout(
            () => reject(new Error("child made no progress within 20 s")),
            20_000,
          );
          lines.on("line", (line) => {
            const [kind, book, seqnum, payload] = line.split(" ");
            if (kind !== "ack") return;
            acked.push({ book: Number(book), seqnum: Number(seqnum), payload: payload! });
            if (++inRound === 2000) {
              clearTimeout(guard);
              child.kill("SIGKILL");
              resolve();
            }
          });
        });
        await exited;
      }
      const log = await EmbeddedLog.open({ dir: t.dir });
      const total = await verify(log, acked, [1, 2, 3, 4]);
      expect(total).toBeGreaterThanOrEqual(acked.length);
      expect(log.term).toBe(3);
      await log.close();
    } finally {
      t.remove();
    }
  });
});
