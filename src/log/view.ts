/**
 * A view: the configuration of one term. Which node is the sequencer of each physical log,
 * which storage nodes replicate each shard, and which engines append and index.
 * A shard is one engine's records in one term; its id encodes both.
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
}

export class View {
  constructor(readonly config: ViewConfig) {
    const c = config;
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

  /** Storage replicas of a shard: `replication` consecutive storage nodes starting at the slot. */
  replicasOf(shard: ShardId): NodeId[] {
    const slot = shard % SLOTS_PER_TERM;
    const s = this.config.storages;
    const out: NodeId[] = [];
    for (let i = 0; i < this.config.replication; i++) out.push(s[(slot + i) % s.length]!);
    return out;
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
