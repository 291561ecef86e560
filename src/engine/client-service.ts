/**
 * Serves LogBook operations that clients send to an engine over the transport: benchmarks,
 * tests and tools in other processes. Each request carries the client session's metalog
 * position, so read-your-writes and monotonic reads hold across requests and engines.
 */
import type { ClientReplyMsg, ClientRequestMsg, WireRecord } from "../protocol/messages.js";
import type { LogRecord } from "../log/record.js";
import { BokiError } from "../log/errors.js";
import { parseBookId, type MetalogPosition } from "../log/types.js";
import { EngineLogBook } from "./logbook.js";
import type { Engine } from "./engine.js";

function wireRecord(r: LogRecord | null): WireRecord | null {
  if (r === null) return null;
  return {
    seqnum: r.seqnum,
    book: r.book,
    tags: r.tags.map(String),
    data: r.data,
    auxData: r.auxData,
  };
}

async function run(
  book: EngineLogBook,
  m: ClientRequestMsg,
): Promise<{ seqnum: number | null; record: WireRecord | null }> {
  switch (m.op) {
    case "append":
      return { seqnum: await book.append(m.tags, m.data), record: null };
    case "condAppend":
      return {
        seqnum: await book.condAppend(m.tags, m.data, m.condTag, m.condPosition),
        record: null,
      };
    case "readNext":
      return { seqnum: null, record: wireRecord(await book.readNext(m.tag, m.seqnum)) };
    case "readPrev":
      return { seqnum: null, record: wireRecord(await book.readPrev(m.tag, m.seqnum)) };
    case "readNextBlocking":
      return {
        seqnum: null,
        record: wireRecord(await book.readNextBlocking(m.tag, m.seqnum, m.timeoutMs)),
      };
    case "setAuxData":
      await book.setAuxData(m.seqnum, m.data);
      return { seqnum: null, record: null };
    case "trim":
      await book.trim(m.tag, m.seqnum);
      return { seqnum: null, record: null };
  }
}

export function attachClientService(engine: Engine): void {
  engine.setClientHandler(async (m): Promise<ClientReplyMsg> => {
    let position = m.position;
    try {
      const book = new EngineLogBook(engine, parseBookId(m.book), m.position as MetalogPosition);
      const { seqnum, record } = await run(book, m);
      position = book.position;
      return { t: "client-reply", id: m.id, position, seqnum, record, error: null };
    } catch (err) {
      const error =
        err instanceof BokiError
          ? { code: err.code, message: err.message }
          : { code: "INTERNAL", message: err instanceof Error ? err.message : String(err) };
      return { t: "client-reply", id: m.id, position, seqnum: null, record: null, error };
    }
  });
}
