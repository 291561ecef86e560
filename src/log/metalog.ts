/**
 * The metalog of one physical log: an ordered list of cuts. A cut is a vector of shard
 * positions (how many records of each shard are ordered). Laid end to end, the cuts give
 * every record its sequence number: entry k orders, shard after shard in ascending shard
 * order, the records between entry k-1's position and entry k's position of that shard.
 * Every node applying the same entries computes the same sequence numbers.
 */
import type { LogId, MetalogPosition, SeqNum, ShardId } from "./types.js";
import { invariant } from "./assert.js";
import { flaws } from "./flaws.js";

export interface MetalogEntry {
  readonly log: LogId;
  /** The term (configuration) the entry was cut in. */
  readonly term: number;
  /** This entry's index in the metalog; applying it raises the metalog position to `position + 1`. */
  readonly position: number;
  /** Sequence number of the first record this entry orders. */
  readonly startSeqnum: number;
  /** Shard ends, ascending by shard. Shards of the entry's term only. */
  readonly cut: ReadonlyArray<readonly [shard: number, end: number]>;
}

/** A contiguous run of one shard's records ordered by one entry. */
export interface Span {
  readonly shard: ShardId;
  readonly fromLocal: number;
  readonly toLocal: number;
  readonly startSeqnum: SeqNum;
}

export interface AppliedEntry {
  readonly entry: MetalogEntry;
  readonly spans: readonly Span[];
  readonly endSeqnum: SeqNum;
}

/** Where a sequence number's record lives. */
export interface RecordLocation {
  readonly shard: ShardId;
  readonly localId: number;
}

/**
 * The deterministic state of a metalog: the shard positions reached, the next sequence
 * number, and an index from sequence numbers back to (shard, local id).
 */
export class MetalogState {
  private readonly shardEnds = new Map<number, number>();
  private term = 0;
  private next = 0;
  private seqnumNext = 0;
  /** Start sequence numbers of non-empty entries, ascending, for `locate`. */
  private readonly starts: number[] = [];
  private readonly spansOf: Span[][] = [];
  /** Metalog positions of the non-empty entries (parallel to `starts`). */
  private readonly positions: number[] = [];

  /** `log`: the physical log this state belongs to; entries of other logs are rejected. */
  constructor(readonly log?: number) {}

  get position(): MetalogPosition {
    return this.next as MetalogPosition;
  }
  get nextSeqnum(): SeqNum {
    return this.seqnumNext as SeqNum;
  }
  get currentTerm(): number {
    return this.term;
  }
  shardEnd(shard: ShardId): number {
    return this.shardEnds.get(shard) ?? 0;
  }

  /**
   * Checks that `entry` follows the entries applied so far. Returns a reason when it
   * does not, so that callers receiving entries from the network can reject bad input.
   */
  check(entry: MetalogEntry): string | null {
    if (this.log !== undefined && entry.log !== this.log)
      return `entry of log ${entry.log} applied to log ${this.log}`;
    if (entry.position !== this.next)
      return `expected metalog position ${this.next}, got ${entry.position}`;
    if (entry.startSeqnum !== this.seqnumNext)
      return `expected start seqnum ${this.seqnumNext}, got ${entry.startSeqnum}`;
    if (entry.term < this.term) return `term ${entry.term} is older than ${this.term}`;
    let prevShard = -1;
    for (const [shard, end] of entry.cut) {
      if (shard <= prevShard) return "cut shards must be strictly ascending";
      prevShard = shard;
      if (!Number.isSafeInteger(end) || end < (this.shardEnds.get(shard) ?? 0))
        return `shard ${shard} moved backwards`;
    }
    return null;
  }

  apply(entry: MetalogEntry): AppliedEntry {
    const problem = this.check(entry);
    invariant(problem === null, () => `metalog entry does not follow: ${problem}`);
    if (entry.term > this.term) this.term = entry.term;
    const spans: Span[] = [];
    let cursor = this.seqnumNext;
    for (const [shard, end] of entry.cut) {
      const from = this.shardEnds.get(shard) ?? 0;
      if (end > from) {
        spans.push({
          shard: shard as ShardId,
          fromLocal: from,
          toLocal: end,
          startSeqnum: cursor as SeqNum,
        });
        cursor += end - from;
        this.shardEnds.set(shard, end);
      }
    }
    if (spans.length > 0) {
      this.starts.push(this.seqnumNext);
      this.spansOf.push(spans);
      this.positions.push(entry.position);
    }
    this.next = entry.position + 1;
    this.seqnumNext = cursor;
    return { entry, spans, endSeqnum: cursor as SeqNum };
  }

  /**
   * The entries applied below metalog position `end`, as the index needs them (their spans;
   * an entry's cut is left empty), for an index built after the fact. Entries that ordered
   * nothing are left out, except that the last one returned is always at `end - 1`.
   */
  appliedBelow(end: number): AppliedEntry[] {
    const out: AppliedEntry[] = [];
    const log = (this.log ?? 0) as LogId;
    for (let k = 0; k < this.positions.length && this.positions[k]! < end; k++) {
      const spans = this.spansOf[k]!;
      const last = spans[spans.length - 1]!;
      out.push({
        entry: {
          log,
          term: 0,
          position: this.positions[k]!,
          startSeqnum: this.starts[k]!,
          cut: [],
        },
        spans,
        endSeqnum: (last.startSeqnum + (last.toLocal - last.fromLocal)) as SeqNum,
      });
    }
    const tail = out[out.length - 1];
    if (end > 0 && tail?.entry.position !== end - 1) {
      const seqnum = tail?.endSeqnum ?? (0 as SeqNum);
      out.push({
        entry: { log, term: 0, position: end - 1, startSeqnum: seqnum, cut: [] },
        spans: [],
        endSeqnum: seqnum,
      });
    }
    return out;
  }

  /** The shard and local id of an ordered sequence number, or null if none was given out. */
  locate(seqnum: SeqNum): RecordLocation | null {
    if (seqnum >= this.seqnumNext) return null;
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= seqnum) lo = mid;
      else hi = mid - 1;
    }
    const spans = this.spansOf[lo];
    if (spans === undefined) return null;
    for (const s of spans) {
      const n = s.toLocal - s.fromLocal;
      if (seqnum < s.startSeqnum + n) {
        if (seqnum < s.startSeqnum) return null;
        return { shard: s.shard, localId: s.fromLocal + (seqnum - s.startSeqnum) };
      }
    }
    return null;
  }
}

/**
 * The primary sequencer's cut rule: a shard's position in the next cut is the minimum of
 * what its replicas report as held, so an ordered record is on every replica of its shard.
 */
export class CutBuilder {
  private readonly replicasOf = new Map<number, readonly string[]>();
  private readonly progress = new Map<string, Map<number, number>>();
  private readonly cutEnds = new Map<number, number>();

  constructor(
    readonly log: LogId,
    readonly term: number,
    shards: ReadonlyMap<number, readonly string[]>,
    private nextPosition: number,
    private nextSeqnum: number,
    /** How far each shard is ordered already (a primary taking over mid-term). */
    ordered: (shard: number) => number = () => 0,
  ) {
    for (const [shard, replicas] of shards) {
      invariant(replicas.length > 0, `shard ${shard} has no replicas`);
      this.replicasOf.set(shard, replicas);
      const end = ordered(shard);
      if (end > 0) this.cutEnds.set(shard, end);
    }
  }

  /** Records what a storage node holds. Reports may repeat or arrive late; positions never move back. */
  report(storage: string, shard: number, held: number): void {
    if (!this.replicasOf.get(shard)?.includes(storage)) return;
    let p = this.progress.get(storage);
    if (p === undefined) {
      p = new Map();
      this.progress.set(storage, p);
    }
    if (held > (p.get(shard) ?? 0)) p.set(shard, held);
  }

  /** The next metalog entry, or null when no shard advanced since the last one. */
  cut(): MetalogEntry | null {
    const cut: Array<[number, number]> = [];
    let advanced = false;
    let count = 0;
    for (const shard of [...this.replicasOf.keys()].sort((a, b) => a - b)) {
      // Ordered: what every replica holds (the flaw switch, for tests only, breaks this).
      const broken = flaws.cutWithoutAllReplicas;
      let min = broken ? 0 : Infinity;
      for (const r of this.replicasOf.get(shard)!) {
        const held = this.progress.get(r)?.get(shard) ?? 0;
        min = broken ? Math.max(min, held) : Math.min(min, held);
      }
      const prev = this.cutEnds.get(shard) ?? 0;
      const end = Math.max(prev, min);
      if (end > prev) {
        advanced = true;
        count += end - prev;
        this.cutEnds.set(shard, end);
      }
      cut.push([shard, end]);
    }
    if (!advanced) return null;
    const entry: MetalogEntry = {
      log: this.log,
      term: this.term,
      position: this.nextPosition,
      startSeqnum: this.nextSeqnum,
      cut,
    };
    this.nextPosition += 1;
    this.nextSeqnum += count;
    return entry;
  }
}
