import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EmbeddedLog, tagOf, limits, type LogBook, type BokiError } from "../src/index.js";
import { tempDir } from "./helpers/tmp.js";

const text = (d: Uint8Array | null | undefined): string | null =>
  d == null ? null : Buffer.from(d).toString("utf8");

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as BokiError).code ?? String(e);
  }
  return "resolved";
}

describe("EmbeddedLog", () => {
  let t: ReturnType<typeof tempDir>;
  let log: EmbeddedLog;
  let book: LogBook;

  beforeEach(async () => {
    t = tempDir();
    log = await EmbeddedLog.open({ dir: t.dir });
    book = log.book(7);
  });
  afterEach(async () => {
    await log.close();
    t.remove();
  });

  it("orders appends and reads them back by tag with readNext, readPrev and checkTail", async () => {
    const a = tagOf("a");
    const b = tagOf("b");
    const s0 = await book.append([a], "r0");
    const s1 = await book.append([b], "r1");
    const s2 = await book.append([a, b], "r2");
    expect(s0).toBeLessThan(s1);
    expect(s1).toBeLessThan(s2);
    expect(text((await book.readNext(0, 0))?.data)).toBe("r0");
    expect((await book.readNext(b, 0))?.seqnum).toBe(s1);
    expect((await book.readNext(a, s0 + 1))?.seqnum).toBe(s2);
    expect(await book.readNext(a, s2 + 1)).toBeNull();
    expect((await book.readPrev(a, s2 - 1))?.seqnum).toBe(s0);
    expect(await book.readPrev(b, s1 - 1)).toBeNull();
    expect((await book.checkTail(0))?.seqnum).toBe(s2);
    expect((await book.checkTail(b))?.tags).toEqual([a, b]);
  });

  it("never returns another book's records", async () => {
    const other = log.book(8);
    await other.append([tagOf("x")], "book8");
    await book.append([], "book7");
    const r = await book.readNext(0, 0);
    expect(text(r?.data)).toBe("book7");
    expect(await book.readNext(tagOf("x"), 0)).toBeNull();
    expect(r?.book).toBe(7);
  });

  it("readNextBlocking waits for a later append and returns it", async () => {
    const tag = tagOf("later");
    const reader = log.book(7);
    const waiting = reader.readNextBlocking(tag, 0, 5000);
    await new Promise((r) => setTimeout(r, 20));
    const s = await book.append([tag], "arrived");
    const r = await waiting;
    expect(r?.seqnum).toBe(s);
    expect(text(r?.data)).toBe("arrived");
  });

  it("readNextBlocking returns null when nothing arrives within the timeout", async () => {
    const started = performance.now();
    expect(await book.readNextBlocking(tagOf("never"), 0, 50)).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  it("attaches aux data to a record and returns it with later reads", async () => {
    const s = await book.append([], "with aux");
    await book.setAuxData(s, "checkpoint");
    expect(text((await book.readNext(0, s))?.auxData)).toBe("checkpoint");
    expect(await code(book.setAuxData(s + 100, "x"))).toBe("NOT_FOUND");
    expect(await code(log.book(9).setAuxData(s, "x"))).toBe("NOT_FOUND");
  });

  it("trim of a tag hides that sub-stream's older records but leaves the book's", async () => {
    const tag = tagOf("t");
    const s0 = await book.append([tag], "a");
    const s1 = await book.append([tag], "b");
    await book.trim(tag, s1);
    expect((await book.readNext(tag, 0))?.seqnum).toBe(s1);
    expect(await book.readPrev(tag, s0)).toBeNull();
    expect((await book.readNext(0, 0))?.seqnum).toBe(s0);
  });

  it("trim of tag 0 hides the book's older records from every sub-stream", async () => {
    const tag = tagOf("t");
    await book.append([tag], "a");
    const s1 = await book.append([tag], "b");
    await book.trim(0, s1);
    expect((await book.readNext(0, 0))?.seqnum).toBe(s1);
    expect((await book.readNext(tag, 0))?.seqnum).toBe(s1);
  });

  it("trim of an empty book fails with BOOK_EMPTY", async () => {
    expect(await code(log.book(99).trim(0, 5))).toBe("BOOK_EMPTY");
  });

  it("condAppend succeeds at the expected position and fails, invisibly, at any other", async () => {
    const c = tagOf("cond");
    const s0 = await book.condAppend([c], "first", c, 0);
    expect(await code(book.condAppend([c], "stale", c, 0))).toBe("COND_APPEND_FAILED");
    const s1 = await book.condAppend([c], "second", c, 1);
    expect(s1).toBeGreaterThan(s0);
    const all: string[] = [];
    for (let r = await book.readNext(0, 0); r !== null; r = await book.readNext(0, r.seqnum + 1))
      all.push(text(r.data)!);
    expect(all).toEqual(["first", "second"]);
  });

  it("of two concurrent condAppends at one position exactly one succeeds", async () => {
    const c = tagOf("race");
    const results = await Promise.allSettled([
      log.book(7).condAppend([c], "x", c, 0),
      log.book(7).condAppend([c], "y", c, 0),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(
      results.filter(
        (r) => r.status === "rejected" && (r.reason as BokiError).code === "COND_APPEND_FAILED",
      ),
    ).toHaveLength(1);
  });

  it("rejects bad arguments of every operation with INVALID_ARGUMENT or RECORD_TOO_LARGE", async () => {
    const bad = (p: Promise<unknown>) => code(p);
    expect(await bad(book.append("x" as never, "d"))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.append([-1], "d"))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.append([1n << 64n], "d"))).toBe("INVALID_ARGUMENT");
    expect(
      await bad(
        book.append(
          Array.from({ length: limits.TAGS_PER_RECORD_MAX + 1 }, (_, i) => i + 1),
          "d",
        ),
      ),
    ).toBe("INVALID_ARGUMENT");
    expect(await bad(book.append([], 42 as never))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.append([], new Uint8Array(limits.RECORD_BYTES_MAX + 1)))).toBe(
      "RECORD_TOO_LARGE",
    );
    expect(await bad(book.readNext("abc", 0))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readNext(0, -1))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readNext(0, 1.5))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readPrev(0, "nope"))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readNextBlocking(0, 0, -5))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readNextBlocking(0, 0, Number.NaN))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.readNextBlocking(0, 0, limits.BLOCKING_READ_TIMEOUT_MS_MAX + 1))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(await bad(book.checkTail({} as never))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.setAuxData(0, new Uint8Array(limits.AUX_DATA_BYTES_MAX + 1)))).toBe(
      "RECORD_TOO_LARGE",
    );
    expect(await bad(book.setAuxData("x", "d"))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.trim(0, -3))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.condAppend([], "d", 0, -1))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.condAppend([], "d", 0, 0.5))).toBe("INVALID_ARGUMENT");
    expect(await bad(book.condAppend([], "d", "bad", 0))).toBe("INVALID_ARGUMENT");
    expect(() => log.book(-1)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => log.book(2 ** 32)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    // Nothing above was written.
    expect(await book.checkTail(0)).toBeNull();
  });

  it("a second open of the same directory fails while the first is open", async () => {
    await expect(EmbeddedLog.open({ dir: t.dir })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("operations on a closed log fail with LOG_CLOSED", async () => {
    const b = log.book(1);
    const blocked = b.readNextBlocking(0, 0, 10_000);
    await log.close();
    expect(await code(blocked)).toBe("LOG_CLOSED");
    expect(await code(b.append([], "x"))).toBe("LOG_CLOSED");
    expect(await code(b.readNext(0, 0))).toBe("LOG_CLOSED");
    expect(() => log.book(1)).toThrow(expect.objectContaining({ code: "LOG_CLOSED" }));
  });
});

describe("EmbeddedLog across reopen", () => {
  it("keeps aux data, trims and failed conditional appends as they were", async () => {
    const t = tempDir();
    try {
      let log = await EmbeddedLog.open({ dir: t.dir });
      let b = log.book(3);
      const tag = tagOf("k");
      const s0 = await b.append([tag], "old");
      const s1 = await b.append([tag], "kept");
      await b.setAuxData(s1, "aux");
      await b.trim(tag, s1);
      await b.condAppend([tag], "ok", tag, 2);
      await expect(b.condAppend([tag], "lost", tag, 2)).rejects.toMatchObject({
        code: "COND_APPEND_FAILED",
      });
      await log.close();

      log = await EmbeddedLog.open({ dir: t.dir });
      b = log.book(3);
      expect(log.term).toBe(2);
      expect((await b.readNext(tag, 0))?.seqnum).toBe(s1);
      expect(text((await b.readNext(tag, 0))?.auxData)).toBe("aux");
      expect((await b.readNext(0, 0))?.seqnum).toBe(s0);
      const tail = await b.checkTail(tag);
      expect(text(tail?.data)).toBe("ok");
      // The position counts only accepted records: the next conditional append is at 3.
      await b.condAppend([tag], "next", tag, 3);
      await log.close();
    } finally {
      t.remove();
    }
  });

  it("a book trimmed at tag 0 replays after reopen with the trimmed records still gone", async () => {
    const t = tempDir();
    try {
      let log = await EmbeddedLog.open({ dir: t.dir });
      let b = log.book(4);
      const seqnums: number[] = [];
      for (let i = 0; i < 10; i++) seqnums.push(await b.append([tagOf("x")], `r${i}`));
      await b.trim(0, seqnums[6]!);
      await log.close();

      log = await EmbeddedLog.open({ dir: t.dir });
      b = log.book(4);
      expect((await b.readNext(0, 0))?.seqnum).toBe(seqnums[6]);
      expect((await b.readNext(tagOf("x"), 0))?.seqnum).toBe(seqnums[6]);
      expect(await b.readPrev(0, seqnums[5]!)).toBeNull();
      expect(text((await b.checkTail(0))?.data)).toBe("r9");
      await b.append([], "after");
      await log.close();
    } finally {
      t.remove();
    }
  });

  it("refuses to reopen a directory with a different number of physical logs", async () => {
    const t = tempDir();
    try {
      const log = await EmbeddedLog.open({ dir: t.dir, physicalLogs: 2 });
      await log.close();
      await expect(EmbeddedLog.open({ dir: t.dir, physicalLogs: 3 })).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
    } finally {
      t.remove();
    }
  });
});
