/**
 * The invariants a simulated run must keep. Some are checked as the run goes (what the
 * network carries, what clients are told); the rest at the end, once faults have stopped.
 *
 * While running:
 * - Metalog agreement: a committed metalog entry (as sent to engines and storage) is the
 *   same whoever sends it, for each (log, position).
 * - Durability of what is ordered: when an entry is committed, every storage replica of
 *   each shard it cuts holds the shard's records up to the cut on its disk ("disk"
 *   durability; this is what lets an append be acknowledged).
 * - One record per sequence number: two reads or acknowledgements never disagree on what
 *   is at a sequence number.
 * - Per client session: read-your-writes and monotonic reads; a trimmed record is never
 *   read again; a conditional append wins at most once per position.
 *
 * At the end (`finalChecks` in run.ts): every engine reads the same records in the same
 * order; every acknowledged append is there exactly once, at its sequence number; no
 * record appears twice or comes from nowhere; conditional appends that won are where they
 * said; and the cluster serves every engine within a bounded time after the faults end.
 */
import type { MetalogEntry } from "../log/metalog.js";
import type { Message } from "../protocol/messages.js";
import type { NodeId } from "../transport/transport.js";
import type { SimCluster } from "./cluster.js";
import type { Trace } from "./trace.js";

/** Violations a run records before it stops recording (the first ones matter). */
export const VIOLATIONS_MAX = 50;

export interface Violation {
  readonly atMs: number;
  readonly invariant: string;
  readonly message: string;
}

export class Checker {
  readonly violations: Violation[] = [];
  private readonly metalog = new Map<string, string>();
  /** `${book}/${seqnum}` → the record's data, from acknowledgements and reads. */
  private readonly records = new Map<string, string>();
  /** Committed entries seen, and cuts the durability check could not place. */
  entriesSeen = 0;
  cutsUnchecked = 0;

  constructor(
    private readonly cluster: () => SimCluster | null,
    private readonly trace: Trace,
    private readonly now: () => number,
  ) {}

  get ok(): boolean {
    return this.violations.length === 0;
  }

  fail(invariant: string, message: string): void {
    if (this.violations.length >= VIOLATIONS_MAX) return;
    this.violations.push({ atMs: this.now(), invariant, message });
    this.trace.add("checker", `VIOLATION ${invariant}: ${message}`);
  }

  /** Sees every message the network carries. */
  sent(from: NodeId, to: NodeId, m: Message): void {
    if (m.t !== "metalog") return;
    const c = this.cluster();
    if (c === null) return;
    const kind = c.nodes.get(to)?.kind;
    // Sequencers also exchange entries that were never committed, while recovering.
    if (kind !== "engine" && kind !== "storage") return;
    for (const e of m.entries) this.committed(from, e);
  }

  private committed(from: NodeId, e: MetalogEntry): void {
    const key = `${e.log}/${e.position}`;
    const text = JSON.stringify([e.term, e.startSeqnum, e.cut]);
    const known = this.metalog.get(key);
    if (known !== undefined) {
      if (known !== text)
        this.fail(
          "metalog agreement",
          `${from} sent entry ${key} as ${text}; it was committed as ${known}`,
        );
      return;
    }
    this.metalog.set(key, text);
    this.entriesSeen++;
    this.checkDurable(e);
  }

  private checkDurable(e: MetalogEntry): void {
    const c = this.cluster()!;
    if (c.config.durability !== "disk") return;
    const view = c.view;
    for (const [shard, end] of e.cut) {
      let replicas: NodeId[];
      try {
        replicas = view.replicasOf(shard as never);
      } catch {
        this.cutsUnchecked++;
        continue;
      }
      for (const r of replicas) {
        const held = c.nodes.get(r)?.disk?.durableShardEnd(e.log, shard) ?? 0;
        if (held < end)
          this.fail(
            "ordered records are durable on every replica",
            `entry ${e.log}/${e.position} orders shard ${shard} up to ${end}, but ${r} holds ${held} on disk`,
          );
      }
    }
  }

  /** A record `data` is at `seqnum` of `book`, as an acknowledgement or a read said. */
  record(book: number, seqnum: number, data: string, source: string): void {
    const key = `${book}/${seqnum}`;
    const known = this.records.get(key);
    if (known === undefined) this.records.set(key, data);
    else if (known !== data)
      this.fail(
        "one record per sequence number",
        `${source}: book ${book} seqnum ${seqnum} holds "${data}", earlier "${known}"`,
      );
  }
}
