/**
 * Deliberate protocol flaws, each behind a switch that is off unless a test turns it on. They
 * exist to show that the deterministic simulator (`src/sim/`) notices when the protocol is
 * broken; nothing in a running system sets them.
 */
export const flaws = {
  /**
   * The primary sequencer cuts a shard up to the furthest replica's progress instead of the
   * nearest one's: records count as ordered (and their appends as acknowledged) while fewer
   * than R replicas hold them.
   */
  cutWithoutAllReplicas: false,
  /**
   * The simulator's workflow clients log steps with plain appends: the conditions that make
   * racing executions of one instance agree are dropped.
   */
  flowWithoutConditions: false,
};

export type FlawName = keyof typeof flaws;
