/**
 * Suite "nats": the NATS JetStream peer alone (bench/lib/peers/nats.ts): a 3-node JetStream
 * cluster on 127.0.0.1, `js.publish` awaiting the PubAck to an R3 file stream, in each
 * durability mode this nats-server supports. The cluster suites call `runNatsPeer` in the
 * same run as Boki's own cluster figures; this suite is for running the peer by itself.
 */
import { NATS_SYSTEM, runNatsPeer } from "../lib/peers/nats.js";
import { progress } from "../lib/progress.js";
import type { Suite, SuiteOptions, SuiteOutput } from "../lib/suite.js";

async function run(options: SuiteOptions): Promise<SuiteOutput> {
  if (!options.peers) {
    const reason = "--no-peers given";
    progress(`nats: ${reason}; skipping the NATS JetStream peer (this suite has nothing else)`);
    return { rows: [], skipped: [{ system: NATS_SYSTEM, mode: "*", reason }] };
  }
  const r = await runNatsPeer({ quick: options.quick, progress });
  return { rows: r.rows, skipped: r.skippedModes, extra: { peers: { [NATS_SYSTEM]: r.peer } } };
}

export const natsSuite: Suite = {
  name: "nats",
  description:
    "peer only: NATS JetStream, 3-node cluster on 127.0.0.1, R3 file stream, js.publish awaiting the PubAck",
  run,
};
