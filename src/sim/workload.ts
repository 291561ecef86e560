/**
 * Clients of a simulated cluster: sessions that run LogBook operations through an engine,
 * the way a function does, and check what each answer may be given what the session saw
 * before. A session carries its metalog position; when its engine crashes, the operation in
 * flight has an unknown outcome and the session moves to another engine with its position
 * (as a workflow re-run elsewhere would).
 *
 * Every session appends to its own tag and to a shared tag, contends with the others on
 * conditional appends to one counter tag, trims a tag of its own, and reads. Payloads are
 * unique (`<session>:<n>`), so the final check can tell every record's origin.
 */
import { BokiError } from "../log/errors.js";
import { EngineLogBook } from "../engine/logbook.js";
import type { LogRecord } from "../log/record.js";
import { parseBookId, SEQNUM_MAX, type MetalogPosition } from "../log/types.js";
import type { Checker } from "./checker.js";
import type { SimCluster, SimNode } from "./cluster.js";
import type { SimRandom } from "./random.js";
import type { Trace } from "./trace.js";

/** The books sessions use (they hash onto the physical logs). */
export const SIM_BOOKS = [1, 2, 3, 4];
/**
 * A book whose sessions trim the whole book (tag 0): storage drops the payloads of what
 * they trim, and the final check expects exactly the records above the trims.
 */
export const TRIM_BOOK = 5;
/** Sessions that append to and trim `TRIM_BOOK`, besides the others. */
export const TRIMMER_SESSIONS = 2;
export const SHARED_TAG = 7;
export const COND_TAG = 9;
const OWN_TAG_BASE = 1000;
const TRIM_TAG_BASE = 2000;
/** An operation on a live engine that takes longer than this (simulated) hangs: a violation. */
export const SIM_OP_HANG_MS = 60_000;

export type Outcome = "ok" | "unknown" | "failed";

export interface AppendRecord {
  readonly session: number;
  readonly book: number;
  readonly data: string;
  readonly tags: readonly number[];
  outcome: Outcome;
  seqnum: number | null;
  /** For conditional appends: the position it asked for. */
  readonly condPosition?: number;
}

const decoder = new TextDecoder();
const text = (r: LogRecord): string => decoder.decode(r.data);

interface Session {
  readonly id: number;
  readonly book: number;
  readonly ownTag: number;
  readonly trimTag: number;
  /** Appends to and trims the whole of `TRIM_BOOK`. */
  readonly trimmer: boolean;
  node: SimNode | null;
  incarnation: number;
  position: number;
  n: number;
  /** Own acknowledged appends by tag: seqnums ascending. */
  readonly acked: Map<number, number[]>;
  /** Highest shared-tag tail seen (monotonic reads). */
  sharedTail: number;
  /** Records of `trimTag` below this are trimmed (as of `trimmedAt`). */
  trimmedBelow: number;
  condGuess: number;
}

export interface WorkloadOptions {
  readonly sessions: number;
  /** Mean pause between a session's operations, ms. */
  readonly thinkMs: number;
}

export class Workload {
  readonly appends: AppendRecord[] = [];
  private readonly sessions: Session[] = [];
  private stopping = false;
  private running = 0;
  ops = 0;
  opsFailed = 0;
  /** Highest tag-0 trim of `TRIM_BOOK` issued, and acknowledged. */
  trimIssued = 0;
  trimAcked = 0;
  /** Highest metalog position any session reached, per book. */
  readonly positions = new Map<number, number>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SimRandom,
    private readonly checker: Checker,
    private readonly trace: Trace,
    private readonly o: WorkloadOptions,
  ) {}

  start(): void {
    for (let i = 0; i < this.o.sessions + TRIMMER_SESSIONS; i++) {
      const trimmer = i >= this.o.sessions;
      const s: Session = {
        id: i,
        book: trimmer ? TRIM_BOOK : SIM_BOOKS[i % SIM_BOOKS.length]!,
        ownTag: OWN_TAG_BASE + i,
        trimTag: TRIM_TAG_BASE + i,
        trimmer,
        node: null,
        incarnation: 0,
        position: 0,
        n: 0,
        acked: new Map(),
        sharedTail: -1,
        trimmedBelow: 0,
        condGuess: 0,
      };
      this.sessions.push(s);
      this.running++;
      void this.loop(s).finally(() => this.running--);
    }
  }

  /** Sessions finish their operation in flight and stop; resolves when all have. */
  async stop(): Promise<void> {
    this.stopping = true;
    while (this.running > 0) await this.sleep(10);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.cluster.scheduler.setTimer(ms, resolve));
  }

  /** A live, ready engine for the session (its own if still up), or null. */
  private engineFor(s: Session): SimNode | null {
    if (s.node !== null && s.node.up && s.node.incarnation === s.incarnation && s.node.ready)
      return s.node;
    const live = this.cluster.engineNodes().filter((n) => n.up && n.ready && n.engine !== null);
    if (live.length === 0) return null;
    const node = this.random.pick(live);
    if (s.node !== null)
      this.trace.add(`client-${s.id}`, `moves to ${node.id} at position ${s.position}`);
    s.node = node;
    s.incarnation = node.incarnation;
    return node;
  }

  private async loop(s: Session): Promise<void> {
    while (!this.stopping) {
      await this.sleep(this.random.exponential(this.o.thinkMs));
      if (this.stopping) return;
      const node = this.engineFor(s);
      if (node === null) continue;
      const book = new EngineLogBook(
        node.engine!,
        parseBookId(s.book),
        s.position as MetalogPosition,
      );
      this.ops++;
      try {
        await this.step(s, node, book);
      } catch (err) {
        this.opsFailed++;
        if (err instanceof BokiError && err.code === "DATA_LOST")
          this.checker.fail("acknowledged records stay readable", `client-${s.id}: ${err.message}`);
      }
      s.position = Math.max(s.position, book.position);
      this.positions.set(s.book, Math.max(this.positions.get(s.book) ?? 0, s.position));
    }
  }

  /**
   * Runs `op` on `node`, giving up (outcome unknown) if the node crashes meanwhile, and
   * reporting a hang if a live node does not answer within `SIM_OP_HANG_MS`.
   */
  private async call<T>(
    s: Session,
    node: SimNode,
    what: string,
    op: Promise<T>,
  ): Promise<T | "crashed"> {
    const incarnation = node.incarnation;
    let settled = false;
    const result = op.finally(() => (settled = true));
    const started = this.cluster.scheduler.now();
    for (;;) {
      const r = await Promise.race([result, this.sleep(50).then(() => "tick" as const)]);
      if (r !== "tick" || settled) return await result;
      if (!node.up || node.incarnation !== incarnation) {
        result.catch(() => undefined);
        return "crashed";
      }
      if (this.cluster.scheduler.now() - started > SIM_OP_HANG_MS) {
        this.checker.fail(
          "nothing hangs",
          `client-${s.id}: ${what} on ${node.id} did not finish in ${SIM_OP_HANG_MS} ms`,
        );
        result.catch(() => undefined);
        return "crashed";
      }
    }
  }

  private async append(
    s: Session,
    node: SimNode,
    book: EngineLogBook,
    tags: number[],
    cond?: number,
  ): Promise<void> {
    const data = `${s.id}:${s.n++}`;
    const a: AppendRecord = {
      session: s.id,
      book: s.book,
      data,
      tags,
      outcome: "unknown",
      seqnum: null,
      ...(cond === undefined ? {} : { condPosition: cond }),
    };
    this.appends.push(a);
    let r: number | "crashed";
    try {
      r = await this.call(
        s,
        node,
        `append ${data}`,
        cond === undefined ? book.append(tags, data) : book.condAppend(tags, data, COND_TAG, cond),
      );
    } catch (err) {
      if (err instanceof BokiError && err.code === "COND_APPEND_FAILED") {
        a.outcome = "failed";
        s.condGuess = (err as BokiError & { actualPosition: number }).actualPosition;
        return;
      }
      if (err instanceof BokiError && err.code === "APPEND_DISCARDED") a.outcome = "failed";
      throw err;
    }
    if (r === "crashed") return;
    a.outcome = "ok";
    a.seqnum = r;
    this.checker.record(s.book, r, data, `client-${s.id} append`);
    for (const t of [0, ...tags]) {
      const list = s.acked.get(t) ?? [];
      const last = list[list.length - 1];
      if (last !== undefined && r <= last)
        this.checker.fail(
          "appends of one session are ordered",
          `client-${s.id}: ${data} got ${r} after ${last}`,
        );
      list.push(r);
      s.acked.set(t, list);
    }
    if (cond !== undefined) s.condGuess = cond + 1;
  }

  private saw(s: Session, r: LogRecord | null, what: string): void {
    if (r === null) return;
    this.checker.record(s.book, r.seqnum, text(r), `client-${s.id} ${what}`);
    // Aux data is best effort, but never another record's.
    const aux = r.auxData === null ? null : decoder.decode(r.auxData);
    if (aux !== null && !aux.startsWith(`aux:${r.seqnum}:`))
      this.checker.fail(
        "aux data belongs to its record",
        `client-${s.id} ${what}: record ${r.seqnum} carries "${aux}"`,
      );
  }

  /** A trimmer's step: appends, trims of the whole book, and reads of it. */
  private async trimmerStep(s: Session, node: SimNode, book: EngineLogBook): Promise<void> {
    const who = `client-${s.id}`;
    const x = this.random.float();
    const mine = s.acked.get(0) ?? [];
    const last = mine[mine.length - 1];
    if (x < 0.6 || last === undefined) return this.append(s, node, book, []);
    if (x < 0.75) {
      if (last <= s.trimmedBelow) return;
      this.trimIssued = Math.max(this.trimIssued, last);
      const r = await this.call(s, node, "trim", book.trim(0, last));
      if (r === "crashed") return;
      s.trimmedBelow = last;
      this.trimAcked = Math.max(this.trimAcked, last);
      this.trace.add(who, `trimmed book ${s.book} below ${last}`);
      return;
    }
    const want = x < 0.88 ? 0 : last;
    const r = await this.call(s, node, "readNext", book.readNext(0, want));
    if (r === "crashed") return;
    this.saw(s, r, "readNext");
    if (r !== null && r.seqnum < Math.max(want, s.trimmedBelow))
      this.checker.fail(
        "trimmed records never come back",
        `${who}: readNext(0, ${want}) gave ${r.seqnum}, trimmed below ${s.trimmedBelow}`,
      );
    // Its own last record is there, unless some session's trim may have hidden it.
    if (want === last && r?.seqnum !== last && last >= this.trimIssued)
      this.checker.fail(
        "read-your-writes",
        `${who}: readNext(0, ${last}) gave ${r === null ? "nothing" : r.seqnum}`,
      );
  }

  private async step(s: Session, node: SimNode, book: EngineLogBook): Promise<void> {
    if (s.trimmer) return this.trimmerStep(s, node, book);
    const who = `client-${s.id}`;
    const x = this.random.float();
    if (x < 0.35) return this.append(s, node, book, [s.ownTag, SHARED_TAG]);
    if (x < 0.45) return this.append(s, node, book, [s.trimTag]);
    if (x < 0.55) return this.append(s, node, book, [COND_TAG], s.condGuess);
    if (x < 0.58) {
      const mine = s.acked.get(s.ownTag) ?? [];
      if (mine.length === 0) return;
      const seqnum = this.random.pick(mine);
      const r = await this.call(
        s,
        node,
        "setAuxData",
        book.setAuxData(seqnum, `aux:${seqnum}:${s.id}:${s.n++}`),
      );
      if (r === "crashed") return;
      return;
    }
    if (x < 0.6) {
      // A blocking read returns a record at or after its start, or nothing when it times out.
      const from = s.sharedTail + 1;
      const r = await this.call(
        s,
        node,
        "readNextBlocking",
        book.readNextBlocking(SHARED_TAG, from, 200),
      );
      if (r === "crashed") return;
      this.saw(s, r, "readNextBlocking");
      if (r !== null && r.seqnum < from)
        this.checker.fail(
          "reads return what they asked for",
          `${who}: readNextBlocking(shared, ${from}) gave ${r.seqnum}`,
        );
      return;
    }
    if (x < 0.67) {
      // Read-your-writes: an own acknowledged record is where it was acknowledged.
      const mine = s.acked.get(s.ownTag) ?? [];
      if (mine.length === 0) return;
      const want = this.random.pick(mine);
      const r = await this.call(s, node, "readNext", book.readNext(s.ownTag, want));
      if (r === "crashed") return;
      this.saw(s, r, "readNext");
      if (r === null || r.seqnum !== want)
        this.checker.fail(
          "read-your-writes",
          `${who}: readNext(own tag, ${want}) gave ${r === null ? "nothing" : r.seqnum}`,
        );
      return;
    }
    if (x < 0.85) {
      const r = await this.call(s, node, "checkTail", book.readPrev(SHARED_TAG, SEQNUM_MAX));
      if (r === "crashed") return;
      this.saw(s, r, "checkTail");
      const tail = r === null ? -1 : r.seqnum;
      const own = s.acked.get(SHARED_TAG) ?? [];
      const lastOwn = own[own.length - 1] ?? -1;
      if (tail < lastOwn)
        this.checker.fail(
          "read-your-writes",
          `${who}: shared tail ${tail} is before its own append at ${lastOwn}`,
        );
      if (tail < s.sharedTail)
        this.checker.fail(
          "monotonic reads",
          `${who}: shared tail went back from ${s.sharedTail} to ${tail}`,
        );
      s.sharedTail = Math.max(s.sharedTail, tail);
      return;
    }
    if (x < 0.92) {
      const mine = s.acked.get(s.trimTag) ?? [];
      const last = mine[mine.length - 1];
      if (last === undefined || last <= s.trimmedBelow) return;
      const r = await this.call(s, node, "trim", book.trim(s.trimTag, last));
      if (r === "crashed") return;
      s.trimmedBelow = last;
      this.trace.add(who, `trimmed tag ${s.trimTag} below ${last}`);
      return;
    }
    // A trimmed record never comes back.
    const r = await this.call(s, node, "readNext", book.readNext(s.trimTag, 0));
    if (r === "crashed") return;
    this.saw(s, r, "readNext");
    if (r !== null && r.seqnum < s.trimmedBelow)
      this.checker.fail(
        "trimmed records never come back",
        `${who}: read ${r.seqnum} of tag ${s.trimTag}, trimmed below ${s.trimmedBelow}`,
      );
  }
}
