/**
 * A client of a cluster in another process: LogBook operations are sent to an engine over
 * TCP and answered there. The client listens too (engines dial back to answer), and its
 * node id carries its address. Each `book()` handle is a session with its own metalog
 * position, which travels with every request, so it may switch engines and still read its
 * own writes.
 */
import { createServer } from "node:net";
import { TcpTransport, type PeerAddress } from "../transport/tcp.js";
import type {
  ClientOp,
  ClientReplyMsg,
  InvokeReplyMsg,
  InvokeRequestMsg,
  ClientRequestMsg,
  Message,
  WireRecord,
} from "../protocol/messages.js";
import type { DataLike, LogBook, SeqNumLike, TagLike } from "../log/api.js";
import type { LogRecord } from "../log/record.js";
import {
  errorFromWire,
  InvalidArgumentError,
  LogClosedError,
  TimeoutError,
} from "../log/errors.js";
import {
  parseBookId,
  parseSeqNum,
  parseTag,
  SEQNUM_MAX,
  type BookId,
  type MetalogPosition,
  type SeqNum,
  type Tag,
} from "../log/types.js";
import { toBytes, toTags } from "../engine/logbook.js";
import { AUX_DATA_BYTES_MAX, RECORD_BYTES_MAX } from "../log/limits.js";
import { silentLogger, type Logger } from "../util/logger.js";
import { clientId } from "./config.js";

/** Longest a request waits for its answer (blocking reads add their own timeout). */
export const CLIENT_REQUEST_TIMEOUT_MS = 30_000;
/** Most requests a client keeps in flight. */
export const CLIENT_REQUESTS_IN_FLIGHT_MAX = 65_536;

/** A free TCP port on `host`, found by binding port 0 (another process may take it first). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ClusterClientOptions {
  /** Engines to send requests to: id and address. */
  readonly engines: ReadonlyArray<{ id: string } & PeerAddress>;
  readonly host?: string;
  readonly requestTimeoutMs?: number;
  readonly logger?: Logger;
}

interface Waiting {
  resolve: (m: ClientReplyMsg | InvokeReplyMsg) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const NO_DATA = new Uint8Array(0);

export class ClusterClient {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private closed = false;

  private constructor(
    private readonly transport: TcpTransport,
    readonly engines: readonly string[],
    private readonly timeoutMs: number,
  ) {
    transport.onMessage((_from, m) => this.onMessage(m));
  }

  static async connect(o: ClusterClientOptions): Promise<ClusterClient> {
    if (o.engines.length === 0)
      throw new InvalidArgumentError("a cluster client needs at least one engine");
    const host = o.host ?? "127.0.0.1";
    const port = await freePort(host);
    const peers = new Map<string, PeerAddress>(
      o.engines.map((e) => [e.id, { host: e.host, port: e.port }]),
    );
    const transport = await TcpTransport.listen({
      self: clientId({ host, port }),
      host,
      port,
      peers,
      logger: o.logger ?? silentLogger,
    });
    return new ClusterClient(
      transport,
      o.engines.map((e) => e.id),
      o.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS,
    );
  }

  /** A session on `book`, sending to engine number `engine` (default: by book id). */
  book(book: number, options: { engine?: number; position?: number } = {}): RemoteLogBook {
    if (this.closed) throw new LogClosedError();
    const id = parseBookId(book);
    const engine = this.engines[(options.engine ?? id) % this.engines.length]!;
    return new RemoteLogBook(this, engine, id, options.position ?? 0);
  }

  /**
   * Runs function `name` on engine `engine` (an id of this client's engines) and returns its
   * reply: the output as JSON text, or the error, and the metalog position after the run.
   * The engine enforces `timeoutMs`; this client waits that long plus its request timeout.
   */
  invoke(engine: string, req: Omit<InvokeRequestMsg, "t" | "id">): Promise<InvokeReplyMsg> {
    return this.call(
      engine,
      "invoke",
      (id) => ({ t: "invoke-request", id, ...req }),
      req.timeoutMs,
    ) as Promise<InvokeReplyMsg>;
  }

  /** @internal */
  request(
    engine: string,
    req: Omit<ClientRequestMsg, "t" | "id">,
    extraTimeoutMs = 0,
  ): Promise<ClientReplyMsg> {
    return this.call(
      engine,
      req.op,
      (id) => ({ t: "client-request", id, ...req }),
      extraTimeoutMs,
    ) as Promise<ClientReplyMsg>;
  }

  private call(
    engine: string,
    what: string,
    message: (id: number) => ClientRequestMsg | InvokeRequestMsg,
    extraTimeoutMs: number,
  ): Promise<ClientReplyMsg | InvokeReplyMsg> {
    if (this.closed) return Promise.reject(new LogClosedError());
    if (this.waiting.size >= CLIENT_REQUESTS_IN_FLIGHT_MAX) {
      return Promise.reject(
        new InvalidArgumentError(`more than ${CLIENT_REQUESTS_IN_FLIGHT_MAX} requests in flight`),
      );
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new TimeoutError(
            `engine ${engine} did not answer a ${what} within ${this.timeoutMs + extraTimeoutMs} ms`,
          ),
        );
      }, this.timeoutMs + extraTimeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.transport.send(engine, message(id));
    });
  }

  private onMessage(m: Message): void {
    if (m.t !== "client-reply" && m.t !== "invoke-reply") return;
    const w = this.waiting.get(m.id);
    if (w === undefined) return;
    this.waiting.delete(m.id);
    clearTimeout(w.timer);
    w.resolve(m);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new LogClosedError("the cluster client is closed"));
    }
    this.waiting.clear();
    this.transport.close();
    await this.transport.whenClosed();
  }
}

function toRecord(r: WireRecord | null): LogRecord | null {
  if (r === null) return null;
  return {
    seqnum: r.seqnum as SeqNum,
    book: r.book as BookId,
    tags: r.tags.map((t) => BigInt(t) as Tag),
    data: r.data,
    auxData: r.auxData,
  };
}

export class RemoteLogBook implements LogBook {
  private pos: number;

  constructor(
    private readonly client: ClusterClient,
    readonly engine: string,
    readonly book: BookId,
    position: number,
  ) {
    this.pos = position;
  }

  get position(): MetalogPosition {
    return this.pos as MetalogPosition;
  }

  private async call(
    op: ClientOp,
    fields: Partial<Omit<ClientRequestMsg, "t" | "id" | "op" | "book" | "position">>,
    extraTimeoutMs = 0,
  ): Promise<ClientReplyMsg> {
    const reply = await this.client.request(
      this.engine,
      {
        op,
        book: this.book,
        position: this.pos,
        tags: fields.tags ?? [],
        data: fields.data ?? NO_DATA,
        tag: fields.tag ?? "0",
        seqnum: fields.seqnum ?? 0,
        timeoutMs: fields.timeoutMs ?? 0,
        condTag: fields.condTag ?? "0",
        condPosition: fields.condPosition ?? 0,
      },
      extraTimeoutMs,
    );
    if (reply.position > this.pos) this.pos = reply.position;
    if (reply.error !== null) throw errorFromWire(reply.error);
    return reply;
  }

  async append(tags: readonly TagLike[], data: DataLike): Promise<SeqNum> {
    const r = await this.call("append", {
      tags: toTags(tags).map(String),
      data: toBytes(data, "record data", RECORD_BYTES_MAX),
    });
    return r.seqnum as SeqNum;
  }

  async condAppend(
    tags: readonly TagLike[],
    data: DataLike,
    condTag: TagLike,
    condPosition: number,
  ): Promise<SeqNum> {
    if (
      typeof condPosition !== "number" ||
      !Number.isSafeInteger(condPosition) ||
      condPosition < 0
    ) {
      throw new InvalidArgumentError(
        `condPosition must be a non-negative safe integer, got ${String(condPosition)}`,
      );
    }
    const r = await this.call("condAppend", {
      tags: toTags(tags).map(String),
      data: toBytes(data, "record data", RECORD_BYTES_MAX),
      condTag: String(parseTag(condTag, "condTag")),
      condPosition,
    });
    return r.seqnum as SeqNum;
  }

  async readNext(tag: TagLike, minSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return toRecord(
      (await this.call("readNext", { tag: String(parseTag(tag)), seqnum: parseSeqNum(minSeqnum) }))
        .record,
    );
  }

  async readNextBlocking(
    tag: TagLike,
    minSeqnum: SeqNumLike,
    timeoutMs: number,
  ): Promise<LogRecord | null> {
    const t =
      typeof timeoutMs === "number" && Number.isFinite(timeoutMs) && timeoutMs >= 0
        ? Math.ceil(timeoutMs)
        : -1;
    if (t < 0)
      throw new InvalidArgumentError(
        `timeoutMs must be a non-negative number, got ${String(timeoutMs)}`,
      );
    return toRecord(
      (
        await this.call(
          "readNextBlocking",
          { tag: String(parseTag(tag)), seqnum: parseSeqNum(minSeqnum), timeoutMs: t },
          t,
        )
      ).record,
    );
  }

  async readPrev(tag: TagLike, maxSeqnum: SeqNumLike): Promise<LogRecord | null> {
    return toRecord(
      (await this.call("readPrev", { tag: String(parseTag(tag)), seqnum: parseSeqNum(maxSeqnum) }))
        .record,
    );
  }

  checkTail(tag: TagLike): Promise<LogRecord | null> {
    return this.readPrev(tag, SEQNUM_MAX);
  }

  async setAuxData(seqnum: SeqNumLike, data: DataLike): Promise<void> {
    await this.call("setAuxData", {
      seqnum: parseSeqNum(seqnum),
      data: toBytes(data, "aux data", AUX_DATA_BYTES_MAX),
    });
  }

  async trim(tag: TagLike, seqnum: SeqNumLike): Promise<void> {
    await this.call("trim", { tag: String(parseTag(tag)), seqnum: parseSeqNum(seqnum) });
  }
}
