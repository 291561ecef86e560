/**
 * The operator's view of a cluster, read from the coordination store: the published term,
 * every node (registered, or in the view without a living lease), the controller leader, and
 * each physical log's primary sequencer. `boki status` prints it.
 */
import { resolve } from "node:path";
import { FileStore } from "../coord/file-store.js";
import { EtcdStore } from "../coord/etcd-store.js";
import { valueText, type CoordStore } from "../coord/store.js";
import { InvalidArgumentError } from "../log/errors.js";
import type { ViewConfig } from "../log/view.js";
import { CONTROLLER_ELECTION } from "./controller.js";
import { NODES_PREFIX, parseMemberRecord, type MemberRecord } from "./membership.js";
import { roleInView } from "./planner.js";
import { decodeViewRecord, VIEW_KEY } from "./view-record.js";
import { LOG_POSITIONS_PREFIX } from "../cluster/view-follower.js";

/**
 * Opens a store from `file:<dir>` or `etcd:<host:port>[,<host:port>...]`. The file store
 * serves one process: it fails with `STORE_LOCKED` while another process has it open.
 */
export async function openStoreSpec(spec: string): Promise<CoordStore> {
  if (spec.startsWith("file:") && spec.length > 5) {
    return FileStore.open({ dir: resolve(spec.slice(5)) });
  }
  if (spec.startsWith("etcd:") && spec.length > 5) {
    const endpoints = spec
      .slice(5)
      .split(",")
      .map((e) => (e.includes("://") ? e : `http://${e}`));
    return EtcdStore.open({ endpoints });
  }
  throw new InvalidArgumentError(
    `store must be file:<dir> or etcd:<host:port>[,<host:port>...], got ${JSON.stringify(spec)}`,
  );
}

export type Health = "live" | "missing";

export interface NodeStatus {
  readonly id: string;
  readonly role: string;
  /** live: registered with a living lease; missing: in the view but not registered. */
  readonly health: Health;
  readonly inView: boolean;
  readonly member: MemberRecord | null;
}

export interface ClusterStatus {
  readonly view: ViewConfig | null;
  readonly viewCause: string;
  readonly controllerLeader: string | null;
  readonly nodes: readonly NodeStatus[];
  /** Per physical log: its primary sequencer and whether that one is live. */
  readonly logs: readonly {
    readonly log: number;
    readonly primary: string;
    readonly health: Health;
    /** Committed metalog length as a primary last reported it, and when. */
    readonly position: {
      readonly position: number;
      readonly term: number;
      readonly atMs: number;
    } | null;
  }[];
}

export async function readClusterStatus(store: CoordStore): Promise<ClusterStatus> {
  const kv = await store.get(VIEW_KEY);
  const rec = kv === null ? null : decodeViewRecord(valueText(kv));
  const view = rec?.view ?? null;
  const leader = await store.leader(CONTROLLER_ELECTION);
  const members = new Map<string, MemberRecord>();
  for (const e of (await store.list(NODES_PREFIX)).entries) {
    const m = parseMemberRecord(e);
    if (m !== null) members.set(m.id, m);
  }
  const positions = new Map<number, { position: number; term: number; atMs: number }>();
  for (const e of (await store.list(LOG_POSITIONS_PREFIX)).entries) {
    try {
      const o = JSON.parse(valueText(e)) as Record<string, unknown>;
      const log = Number(e.key.slice(LOG_POSITIONS_PREFIX.length));
      const { position, term, atMs } = o;
      if (typeof position === "number" && typeof term === "number" && typeof atMs === "number")
        positions.set(log, { position, term, atMs });
    } catch {
      // A malformed report is shown as none.
    }
  }
  const ids = new Set<string>(members.keys());
  if (view !== null)
    for (const id of [...view.sequencers.flat(), ...view.storages, ...view.engines]) ids.add(id);
  const nodes: NodeStatus[] = [...ids].sort().map((id) => {
    const m = members.get(id) ?? null;
    const viewRole = view === null ? undefined : roleInView(view, id);
    return {
      id,
      role: m?.role ?? viewRole ?? "unknown",
      health: m === null ? "missing" : "live",
      inView: viewRole !== undefined,
      member: m,
    };
  });
  return {
    view,
    viewCause: rec?.cause ?? "",
    controllerLeader: leader?.candidateId ?? null,
    nodes,
    logs:
      view?.sequencers.map((s, log) => ({
        log,
        primary: s[0]!,
        health: members.has(s[0]!) ? "live" : "missing",
        position: positions.get(log) ?? null,
      })) ?? [],
  };
}

export function formatClusterStatus(s: ClusterStatus): string {
  const lines: string[] = [];
  lines.push(
    s.view === null
      ? "term: none (no view is published yet)"
      : `term: ${s.view.term}${s.viewCause === "" ? "" : ` (${s.viewCause})`}`,
  );
  lines.push(`controller leader: ${s.controllerLeader ?? "none"}`);
  lines.push("nodes:");
  if (s.nodes.length === 0) lines.push("  (none)");
  for (const n of s.nodes) {
    const where =
      n.member === null
        ? ""
        : ` ${n.member.host}:${n.member.port} pid ${n.member.pid} term ${n.member.term}`;
    const note = n.inView ? "" : " (not in the view)";
    lines.push(`  ${n.id.padEnd(16)} ${n.role.padEnd(10)} ${n.health}${where}${note}`);
  }
  lines.push("physical logs:");
  if (s.logs.length === 0) lines.push("  (none)");
  for (const l of s.logs) {
    lines.push(
      `  log ${l.log}: primary ${l.primary} (${l.health}), term ${s.view?.term ?? "?"} began at metalog position ${s.view?.starts?.[l.log] ?? 0}, ` +
        (l.position === null
          ? "no position reported yet"
          : `committed position ${l.position.position} (term ${l.position.term}, reported ${new Date(l.position.atMs).toISOString()})`),
    );
  }
  return lines.join("\n");
}
