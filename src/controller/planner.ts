/**
 * Reconfiguration planning: the view of term N+1 from the view of term N, the nodes that
 * are alive, and the nodes to drain. I/O-free and deterministic: the same inputs always give
 * the same plan, so a controller, a standby and a simulator agree on it.
 *
 * Rules (docs/controller.md):
 * - The term rises by exactly one; the number of physical logs stays, so the book → physical
 *   log mapping (a hash onto the log count) is unchanged.
 * - Sequencers of a log: its live members stay, in their old order. A live primary stays
 *   primary. When the primary is gone, the new primary is the member a sealing step recovers
 *   from: the live member with the longest reported metalog tail when tails are given, else
 *   the first live backup in the old order. Sealing fixes the final metalog from a majority
 *   of the log's old sequencers, so a plan needs a majority of them alive. Empty places are
 *   filled from live sequencers that serve the fewest logs (then old order, then id).
 * - Storage nodes and engines: the old lists without the failed and drained nodes, in their
 *   old order, followed by live nodes new to the view (by id). Term N+1 has new shards, one
 *   per engine, placed by the View's rule: `replication` consecutive storage nodes from the
 *   engine's slot, so shards spread evenly over the storage nodes that remain. No data moves:
 *   the shards of older terms stay where they are.
 * - Index replicas: the View's rule over the remaining engines, as many as before (at most
 *   the engine count) or the configured target.
 */
import type { NodeId } from "../transport/transport.js";
import type { Role } from "../cluster/config.js";
import { nodesOfView, View, type ViewConfig } from "../log/view.js";
import { BokiError } from "../log/errors.js";

/** Why a plan was refused. */
export type PlanRefusal =
  "too-few-storage" | "no-sequencer-majority" | "no-sequencer" | "no-engine" | "term-exhausted";

/**
 * Too few nodes remain for the next view. Retrying helps once nodes come back or join,
 * so the error is retryable; the current view stays in force meanwhile.
 */
export class PlanRefusedError extends BokiError {
  readonly reason: PlanRefusal;
  constructor(reason: PlanRefusal, message: string) {
    super("UNAVAILABLE", `cannot plan the next view: ${message}`, { retryable: true });
    this.reason = reason;
  }
}

/** Highest term a plan produces: sequence numbers keep the term in 16 bits. */
export const TERM_MAX = 65_535;

export interface LiveNode {
  readonly id: NodeId;
  readonly role: Role;
}

export interface PlanInput {
  /** The view in force (term N). */
  readonly current: ViewConfig;
  /** Nodes alive now (registered with a living lease), with their roles. */
  readonly live: readonly LiveNode[];
  /** Nodes to take out even though they are alive. */
  readonly drain?: ReadonlySet<NodeId> | readonly NodeId[];
  /** Sequencers per log wanted (default: the longest sequencer list of the current view). */
  readonly sequencersPerLog?: number;
  /** Index replicas wanted (default: the current view's). */
  readonly indexReplicas?: number;
  /**
   * Metalog tails reported by sealing, per physical log: sequencer → entries it holds.
   * Used only to choose a new primary when the old one is gone.
   */
  readonly metalogTails?: readonly (ReadonlyMap<NodeId, number> | undefined)[];
}

export interface Plan {
  readonly view: ViewConfig;
  /** Nodes of the current view that the plan leaves out (failed or drained), sorted. */
  readonly removed: readonly NodeId[];
  /** Nodes the plan adds to the view, sorted. */
  readonly added: readonly NodeId[];
}

export { nodesOfView } from "../log/view.js";

/** The role a view gives a node, or undefined. */
export function roleInView(v: ViewConfig, id: NodeId): Role | undefined {
  if (v.engines.includes(id)) return "engine";
  if (v.storages.includes(id)) return "storage";
  if (v.sequencers.some((s) => s.includes(id))) return "sequencer";
  return undefined;
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The view of term N+1. Throws `PlanRefusedError` when too few nodes remain. */
export function planNextView(input: PlanInput): Plan {
  const cur = input.current;
  if (cur.term >= TERM_MAX) {
    throw new PlanRefusedError("term-exhausted", `term ${cur.term} is the last one`);
  }
  const drain = new Set(input.drain ?? []);
  const usable = (role: Role): Set<NodeId> =>
    new Set(input.live.filter((n) => n.role === role && !drain.has(n.id)).map((n) => n.id));
  const liveSeq = usable("sequencer");
  const liveSto = usable("storage");
  const liveEng = usable("engine");

  const keepThenAdd = (old: readonly NodeId[], live: Set<NodeId>): NodeId[] => {
    const kept = old.filter((id) => live.has(id));
    const known = new Set(old);
    const fresh = [...live].filter((id) => !known.has(id)).sort(byId);
    return [...kept, ...fresh];
  };

  // Storage and engines.
  const storages = keepThenAdd(cur.storages, liveSto);
  if (storages.length < cur.replication) {
    throw new PlanRefusedError(
      "too-few-storage",
      `${storages.length} live storage node(s) remain, fewer than replication ${cur.replication}`,
    );
  }
  const engines = keepThenAdd(cur.engines, liveEng);
  if (engines.length === 0) throw new PlanRefusedError("no-engine", "no live engine remains");

  // Sequencers.
  if (liveSeq.size === 0) throw new PlanRefusedError("no-sequencer", "no live sequencer remains");
  const target = input.sequencersPerLog ?? Math.max(...cur.sequencers.map((s) => s.length));
  const perLog = Math.min(target, liveSeq.size);
  const seqOrder = new Map<NodeId, number>();
  for (const s of cur.sequencers)
    for (const id of s) if (!seqOrder.has(id)) seqOrder.set(id, seqOrder.size);
  const rank = (id: NodeId): number => seqOrder.get(id) ?? Number.MAX_SAFE_INTEGER;
  const sequencers: NodeId[][] = cur.sequencers.map((old, log) => {
    const majority = Math.floor(old.length / 2) + 1;
    const kept = old.filter((id) => liveSeq.has(id));
    if (kept.length < majority) {
      throw new PlanRefusedError(
        "no-sequencer-majority",
        `physical log ${log}: ${kept.length} of its ${old.length} sequencers are alive; sealing needs ${majority}`,
      );
    }
    if (kept[0] !== old[0]) {
      // The primary is gone: the member sealing recovers from leads.
      const tails = input.metalogTails?.[log];
      let best = 0;
      if (tails !== undefined) {
        kept.forEach((id, i) => {
          if ((tails.get(id) ?? -1) > (tails.get(kept[best]!) ?? -1)) best = i;
        });
      }
      kept.unshift(...kept.splice(best, 1));
    }
    return kept.slice(0, Math.max(perLog, 1));
  });
  // Fill empty places, one log at a time, from the least loaded live sequencers.
  const load = new Map<NodeId, number>([...liveSeq].map((id) => [id, 0]));
  for (const s of sequencers) for (const id of s) load.set(id, (load.get(id) ?? 0) + 1);
  sequencers.forEach((s) => {
    while (s.length < perLog) {
      const pick = [...liveSeq]
        .filter((id) => !s.includes(id))
        .sort((a, b) => load.get(a)! - load.get(b)! || rank(a) - rank(b) || byId(a, b))[0];
      if (pick === undefined) break;
      s.push(pick);
      load.set(pick, load.get(pick)! + 1);
    }
  });

  const indexTarget = input.indexReplicas ?? cur.indexReplicas;
  const view: ViewConfig = {
    term: cur.term + 1,
    physicalLogs: cur.physicalLogs,
    sequencers,
    storages,
    engines,
    replication: cur.replication,
    ...(indexTarget === undefined ? {} : { indexReplicas: Math.min(indexTarget, engines.length) }),
  };
  new View(view); // checks the result with the View's own rules
  const before = nodesOfView(cur);
  const after = nodesOfView(view);
  return {
    view,
    removed: [...before].filter((id) => !after.has(id)).sort(byId),
    added: [...after].filter((id) => !before.has(id)).sort(byId),
  };
}
