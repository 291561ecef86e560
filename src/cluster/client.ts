/**
 * A client of a cluster in another process: LogBook operations are sent to an engine over
 * TCP and answered there. The client listens too (engines dial back to answer), and its
 * node id carries its address. Each `book()` handle is a session with its own metalog
 * position, which travels with every request, so it may switch engines and still read its
 * own writes.
 */
import { createServer } from "node:net";
import { TcpTransport, type PeerAddress } from "../transport/tcp.js";
import type { ClusterSecret } from "../transport/handshake.js";
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
  /** The cluster's shared secret, when its links are authenticated (see handshake.ts). */
  readonly secret?: ClusterSecret;
}

/**
 * Fewest slots of the deadline queue before it is compacted (its answered entries dropped),
 * and most it keeps allocated once idle: small enough to hold nothing much, large enough that
 * compaction stays rare.
 */
const DEADLINE_QUEUE_SLOTS_MIN = 1024;
/** Longest delay `setTimeout` takes; Node fires a longer one after 1 ms. */
const TIMER_DELAY_MS_MAX = 2 ** 31 - 1;

/**
 * A request waiting for its answer. Kept small, as there is one per request in flight: the
 * engine and operation are references to strings the caller holds anyway, for the timeout's
 * message, and only a request that waits longer than the rest has a timer of its own.
 */
interface Waiting {
  resolve: (m: ClientReplyMsg | InvokeReplyMsg) => void;
  reject: (e: Error) => void;
  readonly engine: string;
  readonly what: string;
  /** The request's own timer; null when its deadline is in the client's deadline queue. */
  timer: NodeJS.Timeout | null;
}

function timeoutError(engine: string, what: string, ms: number): TimeoutError {
  return new TimeoutError(`engine ${engine} did not answer a ${what} within ${ms} ms`);
}

const NO_DATA = new Uint8Array(0);

export class ClusterClient {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private closed = false;

  /*
   * Timeouts of requests without extra time. A timer per request (armed, then cleared on the
   * answer) costs a timer-list insertion, a closure and a Timeout object each time, which at
   * tens of thousands of requests per second is a visible share of the client's CPU and
   * garbage. These requests all wait `timeoutMs`, so their deadlines come in the order they
   * were sent: a FIFO of (id, deadline), in two number arrays so an entry allocates nothing,
   * with one timer armed for its head. An answer leaves its entry in place (the id is simply
   * no longer in `waiting`); the timer, when it fires, skips such entries, rejects the
   * expired ones still waiting, and re-arms for the next live head. Under steady load it thus
   * fires about once per timeout rather than once per request. Entries live in
   * `[deadlineHead, deadlineTail)`; answered ones behind a live head are dropped by
   * compaction once the queue has doubled since the last one, so memory follows the requests
   * in flight, at constant amortized cost per request.
   */
  private readonly deadlineIds: number[] = [];
  private readonly deadlineAt: number[] = [];
  private deadlineHead = 0;
  private deadlineTail = 0;
  /** Queue length (`deadlineTail`) at which to compact next. */
  private deadlineCompactAt = DEADLINE_QUEUE_SLOTS_MIN;
  /** Requests in the queue still waiting for their answer. */
  private deadlineWaiting = 0;
  /**
   * The queue's timer, armed for a deadline no later than the head's. While requests are
   * waiting it keeps the process alive, as their own timers did. When the last one is
   * answered it is unref'd rather than cleared, so that a client sending one request at a
   * time does not arm a timer per request after all; it then fires once, harmlessly, or is
   * ref'd again by the next request (its deadline is earlier than any later request's).
   */
  private deadlineTimer: NodeJS.Timeout | null = null;
  private deadlineTimerRefed = false;

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
      ...(o.secret === undefined ? {} : { secret: o.secret }),
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
      const w: Waiting = { resolve, reject, engine, what, timer: null };
      if (extraTimeoutMs === 0) {
        this.enqueueDeadline(id);
      } else {
        // Blocking reads and invocations wait their own time on top: their deadlines do not
        // keep the queue's order, and they are few, so each keeps a timer.
        const ms = this.timeoutMs + extraTimeoutMs;
        w.timer = setTimeout(() => {
          this.waiting.delete(id);
          reject(timeoutError(engine, what, ms));
        }, ms);
      }
      this.waiting.set(id, w);
      this.transport.send(engine, message(id));
    });
  }

  private onMessage(m: Message): void {
    if (m.t !== "client-reply" && m.t !== "invoke-reply") return;
    const w = this.waiting.get(m.id);
    if (w === undefined) return;
    this.waiting.delete(m.id);
    if (w.timer !== null) clearTimeout(w.timer);
    else if (--this.deadlineWaiting === 0) this.deadlineQueueIdle();
    w.resolve(m);
  }

  /** Puts request `id` (waiting `timeoutMs`, not yet in `waiting`) in the deadline queue. */
  private enqueueDeadline(id: number): void {
    if (this.deadlineTail >= this.deadlineCompactAt) this.compactDeadlines();
    // Writing at the tail appends while the arrays are full, and reuses their slots after
    // an idle reset or a compaction.
    this.deadlineIds[this.deadlineTail] = id;
    this.deadlineAt[this.deadlineTail] = performance.now() + this.timeoutMs;
    this.deadlineTail++;
    this.deadlineWaiting++;
    if (this.deadlineTimer === null) {
      this.deadlineTimer = setTimeout(
        this.onDeadline,
        Math.min(this.timeoutMs, TIMER_DELAY_MS_MAX),
      );
      this.deadlineTimerRefed = true;
    } else if (!this.deadlineTimerRefed) {
      this.deadlineTimer.ref();
      this.deadlineTimerRefed = true;
    }
  }

  /**
   * The queue's timer: rejects the expired requests still waiting, drops answered entries
   * from the head, and re-arms for the first live one. Deadlines are read on
   * `performance.now()`, so a timer that fires a little early (timers run on the event loop's
   * cached time) only re-arms, and no request is rejected before its time.
   */
  private readonly onDeadline = (): void => {
    this.deadlineTimer = null;
    const now = performance.now();
    let head = this.deadlineHead;
    while (head < this.deadlineTail) {
      const id = this.deadlineIds[head]!;
      const w = this.waiting.get(id);
      if (w !== undefined) {
        if (this.deadlineAt[head]! > now) break;
        this.waiting.delete(id);
        this.deadlineWaiting--;
        w.reject(timeoutError(w.engine, w.what, this.timeoutMs));
      }
      head++;
    }
    this.deadlineHead = head;
    if (head === this.deadlineTail) {
      this.deadlineQueueIdle();
      return;
    }
    const delay = Math.min(
      TIMER_DELAY_MS_MAX,
      Math.max(1, Math.ceil(this.deadlineAt[head]! - now)),
    );
    this.deadlineTimer = setTimeout(this.onDeadline, delay);
    this.deadlineTimerRefed = true;
  };

  /**
   * No request in the queue is waiting any more: empties it, and lets the timer, if armed,
   * stop keeping the process alive (see `deadlineTimer`).
   */
  private deadlineQueueIdle(): void {
    this.deadlineHead = 0;
    this.deadlineTail = 0;
    this.deadlineCompactAt = DEADLINE_QUEUE_SLOTS_MIN;
    if (this.deadlineIds.length > DEADLINE_QUEUE_SLOTS_MIN) {
      // After a burst, give back what it grew.
      this.deadlineIds.length = 0;
      this.deadlineAt.length = 0;
    }
    if (this.deadlineTimer !== null && this.deadlineTimerRefed) {
      this.deadlineTimer.unref();
      this.deadlineTimerRefed = false;
    }
  }

  /**
   * Moves the entries still waiting to the front of the queue, in order, and sets the next
   * compaction at twice their number (or the minimum): until then at least half as many
   * requests are sent as it will have to look at, so each request costs a constant share.
   */
  private compactDeadlines(): void {
    let n = 0;
    for (let i = this.deadlineHead; i < this.deadlineTail; i++) {
      const id = this.deadlineIds[i]!;
      if (!this.waiting.has(id)) continue;
      this.deadlineIds[n] = id;
      this.deadlineAt[n] = this.deadlineAt[i]!;
      n++;
    }
    this.deadlineHead = 0;
    this.deadlineTail = n;
    this.deadlineCompactAt = Math.max(DEADLINE_QUEUE_SLOTS_MIN, 2 * n);
    if (this.deadlineIds.length > 2 * this.deadlineCompactAt) {
      this.deadlineIds.length = n;
      this.deadlineAt.length = n;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    this.deadlineTimerRefed = false;
    this.deadlineHead = 0;
    this.deadlineTail = 0;
    this.deadlineWaiting = 0;
    for (const w of this.waiting.values()) {
      if (w.timer !== null) clearTimeout(w.timer);
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
