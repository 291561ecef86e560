/**
 * A view: the configuration of one term. Which node is the sequencer of each physical log,
 * which storage nodes replicate each shard, and which engines append and index.
 * A shard is one engine's records in one term; its id encodes both.
 *
 * Shards of earlier terms stay where their term put them (no data moves on a
 * reconfiguration), so a view also carries the placement of every earlier term
 * (`history`): which engine owned each slot and which storage nodes replicate it.
 */
import type { NodeId } from "../transport/transport.js";
import type { ShardId } from "./types.js";
import { InvalidArgumentError } from "./errors.js";
import { PHYSICAL_LOGS_MAX } from "./limits.js";

/** Engine slots per term; a shard id is `term * SLOTS_PER_TERM + slot`. */
export const SLOTS_PER_TERM = 65_536;

export interface ViewConfig {
  readonly term: number;
  readonly physicalLogs: number;
  /** Per physical log: sequencer node ids, the primary first. */
  readonly sequencers: readonly (readonly NodeId[])[];
  readonly storages: readonly NodeId[];
  /** Engines in slot order. */
  readonly engines: readonly NodeId[];
  /** Storage replicas per shard. */
  readonly replication: number;
  /** Engines that keep an index of each physical log (default: every engine). */
  readonly indexReplicas?: number;
  /**
   * Per physical log, the metalog position where this term begins: the length of the final
   * metalog of the term before, fixed when it was sealed. Absent (all 0) for a first term.
   */
  readonly starts?: readonly number[];
}

/** Where an earlier term put its shards: enough to find their records. */
export interface TermPlacement {
  readonly term: number;
  readonly storages: readonly NodeId[];
  readonly engines: readonly NodeId[];
  readonly replication: number;
  /** The term's sequencers of each physical log: they hold its metalog entries. */
  readonly sequencers?: readonly (readonly NodeId[])[];
  /** Where the term began in each physical log's metalog. */
  readonly starts?: readonly number[];
}

/** Most earlier terms a view remembers the placement of (sequence numbers keep 16 bits of term). */
export const VIEW_HISTORY_MAX = 65_535;

/** Nodes of a view, each once: sequencers, storage nodes and engines. */
export function nodesOfView(v: ViewConfig): Set<NodeId> {
  return new Set<NodeId>([...v.sequencers.flat(), ...v.storages, ...v.engines]);
}

export function placementOf(c: ViewConfig): TermPlacement {
  return {
    term: c.term,
    storages: c.storages,
    engines: c.engines,
    replication: c.replication,
    sequencers: c.sequencers,
    ...(c.starts === undefined ? {} : { starts: c.starts }),
  };
}

export class View {
  private readonly placements = new Map<number, TermPlacement>();

  /** `history`: the placements of earlier terms (any order; later terms override). */
  constructor(
    readonly config: ViewConfig,
    readonly history: readonly TermPlacement[] = [],
  ) {
    const c = config;
    if (history.length > VIEW_HISTORY_MAX)
      throw new InvalidArgumentError(`a view remembers at most ${VIEW_HISTORY_MAX} earlier terms`);
    for (const h of history) {
      if (!Number.isSafeInteger(h.term) || h.term < 1 || h.term >= c.term)
        throw new InvalidArgumentError(`history term ${h.term} is not before term ${c.term}`);
      if (
        !Number.isInteger(h.replication) ||
        h.replication < 1 ||
        h.replication > h.storages.length
      )
        throw new InvalidArgumentError(`history term ${h.term} has an impossible replication`);
      this.placements.set(h.term, h);
    }
    this.placements.set(c.term, placementOf(c));
    if (
      c.starts !== undefined &&
      (c.starts.length !== c.physicalLogs ||
        c.starts.some((x) => !Number.isSafeInteger(x) || x < 0))
    ) {
      throw new InvalidArgumentError(
        "starts must give a non-negative position for every physical log",
      );
    }
    if (!Number.isSafeInteger(c.term) || c.term < 1)
      throw new InvalidArgumentError(`term must be a positive integer, got ${c.term}`);
    if (
      !Number.isInteger(c.physicalLogs) ||
      c.physicalLogs < 1 ||
      c.physicalLogs > PHYSICAL_LOGS_MAX
    ) {
      throw new InvalidArgumentError(
        `physicalLogs must be an integer in [1, ${PHYSICAL_LOGS_MAX}], got ${c.physicalLogs}`,
      );
    }
    if (c.sequencers.length !== c.physicalLogs || c.sequencers.some((s) => s.length === 0)) {
      throw new InvalidArgumentError("every physical log needs at least one sequencer");
    }
    if (c.engines.length === 0 || c.engines.length > SLOTS_PER_TERM)
      throw new InvalidArgumentError("a view needs between 1 and 65536 engines");
    if (
      c.indexReplicas !== undefined &&
      (!Number.isInteger(c.indexReplicas) || c.indexReplicas < 1)
    ) {
      throw new InvalidArgumentError(
        `indexReplicas must be a positive integer, got ${c.indexReplicas}`,
      );
    }
    if (
      !Number.isInteger(c.replication) ||
      c.replication < 1 ||
      c.replication > c.storages.length
    ) {
      throw new InvalidArgumentError(
        `replication must be in [1, ${c.storages.length}] (the number of storage nodes), got ${c.replication}`,
      );
    }
  }

  /** Engines indexing `log`: `indexReplicas` consecutive engines starting at the log's number. */
  indexEnginesOf(log: number): NodeId[] {
    const e = this.config.engines;
    const n = Math.min(this.config.indexReplicas ?? e.length, e.length);
    return Array.from({ length: n }, (_, k) => e[(log + k) % e.length]!);
  }

  get term(): number {
    return this.config.term;
  }

  primarySequencer(log: number): NodeId {
    return this.config.sequencers[log]![0]!;
  }

  shardOf(engine: NodeId): ShardId {
    const slot = this.config.engines.indexOf(engine);
    if (slot < 0) throw new InvalidArgumentError(`engine ${engine} is not in term ${this.term}`);
    return (this.term * SLOTS_PER_TERM + slot) as ShardId;
  }

  /** Metalog position where this term begins in `log`. */
  startOf(log: number): number {
    return this.config.starts?.[log] ?? 0;
  }

  /** The placement of the term a shard belongs to (the current one when it is not known). */
  private placementOfShard(shard: number): TermPlacement {
    return (
      this.placements.get(termOfShard(shard as ShardId)) ?? this.placements.get(this.config.term)!
    );
  }

  /**
   * Storage replicas of a shard: `replication` consecutive storage nodes starting at the
   * slot, in the placement of the shard's own term.
   */
  replicasOf(shard: ShardId): NodeId[] {
    const p = this.placementOfShard(shard);
    const slot = shard % SLOTS_PER_TERM;
    const s = p.storages;
    const out: NodeId[] = [];
    for (let i = 0; i < p.replication; i++) out.push(s[(slot + i) % s.length]!);
    return out;
  }

  /** The engine that appended a shard's records. */
  ownerOf(shard: ShardId): NodeId | undefined {
    return this.placementOfShard(shard).engines[shard % SLOTS_PER_TERM];
  }

  /** Sequencers of `log` in this term and the earlier terms it remembers (they hold its metalog). */
  sequencersEver(log: number): NodeId[] {
    const out = new Set<NodeId>();
    for (const p of this.placements.values()) for (const s of p.sequencers?.[log] ?? []) out.add(s);
    return [...out];
  }

  /**
   * Whether a metalog entry a node holds is part of the log's final metalog: an entry of
   * term t at position p is void when a later term began at or before p (the entry was cut
   * but never committed before term t was sealed).
   */
  isFinalEntry(log: number, entry: { readonly term: number; readonly position: number }): boolean {
    for (const p of this.placements.values()) {
      if (p.term <= entry.term) continue;
      const start = p.starts?.[log];
      if (start !== undefined && entry.position >= start) return false;
    }
    return true;
  }

  /** Every storage node of this term and of the earlier terms it remembers. */
  allStorages(): NodeId[] {
    const out = new Set<NodeId>();
    for (const p of this.placements.values()) for (const s of p.storages) out.add(s);
    return [...out];
  }

  /** The view of the next term: `next`, remembering this term and the ones before. */
  successor(next: ViewConfig): View {
    return new View(
      next,
      [...this.placements.values()].filter((p) => p.term < next.term),
    );
  }

  /** Shards of this term with their replicas, for the sequencer's cut rule. */
  shards(): Map<number, NodeId[]> {
    const m = new Map<number, NodeId[]>();
    this.config.engines.forEach((_, slot) => {
      const shard = (this.term * SLOTS_PER_TERM + slot) as ShardId;
      m.set(shard, this.replicasOf(shard));
    });
    return m;
  }
}

export function termOfShard(shard: ShardId): number {
  return Math.floor(shard / SLOTS_PER_TERM);
}
