/** Cluster configurations for tests: nodes on free loopback ports, written to a file. */
import { writeFileSync } from "node:fs";
import { freePort } from "../../src/cluster/client.js";
import { loadClusterConfig, type ClusterConfig } from "../../src/cluster/config.js";

/**
 * Writes a config with one node per entry of `roles` (ids `<role>-<i>`, counted per role;
 * `{ role, spare: true }` for a spare), each on a free port of 127.0.0.1, plus `settings`;
 * returns it as loaded.
 */
export async function writeClusterConfig(
  path: string,
  roles: ReadonlyArray<string | { readonly role: string; readonly spare: true }>,
  settings: Record<string, unknown>,
): Promise<ClusterConfig> {
  const counters: Record<string, number> = {};
  const nodes = [];
  for (const entry of roles) {
    const role = typeof entry === "string" ? entry : entry.role;
    const i = (counters[role] = (counters[role] ?? -1) + 1);
    const spare = typeof entry === "string" ? {} : { spare: true };
    nodes.push({ id: `${role}-${i}`, role, host: "127.0.0.1", port: await freePort(), ...spare });
  }
  writeFileSync(path, JSON.stringify({ ...settings, nodes }));
  return loadClusterConfig(path);
}

/** 3 sequencers, 3 storage nodes and 2 engines. */
export const LOG_ROLES = [
  "sequencer",
  "sequencer",
  "sequencer",
  "storage",
  "storage",
  "storage",
  "engine",
  "engine",
] as const;
