/**
 * The dashboard's view of a cluster, from a gateway node. Nodes come from the cluster
 * configuration; their health and term from the coordination store when the gateway has one
 * (registered with a living lease, or missing), else from each node's `/healthz` on its
 * metrics port, else unknown. Each physical log's position comes from the store (reported by
 * its primary) or, without one, from a read through an engine (the position the engine has
 * applied). Appends are the sum of the engines' `boki_log_appends_total` where they serve
 * metrics. Every probe has a time limit; a node that does not answer is shown unreachable.
 */
import type { ClusterClient } from "../../cluster/client.js";
import type { ClusterConfig } from "../../cluster/config.js";
import type { CoordStore } from "../../coord/store.js";
import { readClusterStatus } from "../../controller/status.js";
import { tagOf } from "../../log/types.js";
import {
  booksForLogs,
  type ClusterSnapshot,
  type ClusterSource,
  type LogView,
  type NodeView,
} from "./sources.js";

/** Longest a node's `/healthz` or `/metrics` may take to answer the dashboard. */
export const NODE_PROBE_TIMEOUT_MS = 800;
/** Longest the read that tells a log's position may take. */
export const POSITION_PROBE_TIMEOUT_MS = 1_000;
/** Most nodes probed over HTTP for one snapshot. */
export const NODES_PROBED_MAX = 256;
/** Largest metrics text read from a node. */
const METRICS_TEXT_CHARS_MAX = 4 * 1024 * 1024;
/** The tag the position probe reads (nothing carries it: the read finds nothing, cheaply). */
const PROBE_TAG = tagOf("boki/dashboard/position-probe");

export interface ClusterSourceOptions {
  readonly config: ClusterConfig;
  /** This gateway's id in the config. */
  readonly self: string;
  readonly client: ClusterClient;
  readonly store?: CoordStore;
}

async function getText(url: string): Promise<string | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(NODE_PROBE_TIMEOUT_MS) });
    if (!res.ok) return null;
    const text = await res.text();
    return text.length > METRICS_TEXT_CHARS_MAX ? null : text;
  } catch {
    return null;
  }
}

/** The value of an unlabelled-or-labelled counter in Prometheus text, or null. */
export function counterValue(text: string, name: string): number | null {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)\\s*$`, "m");
  const m = re.exec(text);
  if (m === null) return null;
  const v = Number(m[1]);
  return Number.isFinite(v) ? v : null;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
    );
  });
}

export function clusterSource(o: ClusterSourceOptions): ClusterSource {
  const books = booksForLogs(o.config.physicalLogs);
  const address = (host: string, port: number): string => `${host}:${port}`;

  const probeNodes = async (): Promise<{ nodes: NodeView[]; appends: number | null }> => {
    let appends: number | null = null;
    const probed = o.config.nodes.slice(0, NODES_PROBED_MAX);
    const nodes = await Promise.all(
      probed.map(async (n): Promise<NodeView> => {
        const base = { id: n.id, role: n.role, address: address(n.host, n.port) };
        if (n.id === o.self) return { ...base, health: "ok", term: null };
        if (n.metricsPort === undefined) {
          return { ...base, health: "unknown", term: null, detail: "no metricsPort in the config" };
        }
        const url = `http://${n.host}:${n.metricsPort}`;
        const health = await getText(`${url}/healthz`);
        if (health === null) return { ...base, health: "unreachable", term: null };
        let term: number | null = null;
        try {
          const t = (JSON.parse(health) as { term?: unknown }).term;
          if (typeof t === "number") term = t;
        } catch {
          // A node whose health is not JSON is still up.
        }
        if (n.role === "engine") {
          const metrics = await getText(`${url}/metrics`);
          const v = metrics === null ? null : counterValue(metrics, "boki_log_appends_total");
          if (v !== null) appends = (appends ?? 0) + v;
        }
        return { ...base, health: "ok", term };
      }),
    );
    return { nodes, appends };
  };

  const probePositions = (): Promise<Array<number | null>> =>
    Promise.all(
      books.map(async (b) => {
        if (b === null) return null;
        const session = o.client.book(b);
        const read = await withTimeout(session.readPrev(PROBE_TAG, 0), POSITION_PROBE_TIMEOUT_MS);
        return read === null && session.position === 0 ? null : session.position;
      }),
    );

  return {
    async snapshot(): Promise<ClusterSnapshot> {
      const notes: string[] = [];
      const probed = await probeNodes();
      let nodes = probed.nodes;
      let term: number | null = null;
      let logs: LogView[];
      if (o.store !== undefined) {
        const s = await readClusterStatus(o.store);
        term = s.view?.term ?? null;
        const byId = new Map(s.nodes.map((n) => [n.id, n]));
        nodes = nodes.map((n) => {
          const st = byId.get(n.id);
          if (st === undefined || n.id === o.self) return n;
          return {
            ...n,
            health: st.health,
            term: st.member?.term ?? n.term,
            ...(st.inView ? {} : { detail: "not in the view" }),
          };
        });
        logs = s.logs.map((l) => ({
          log: l.log,
          position: l.position?.position ?? null,
          primary: l.primary,
          appends: o.config.physicalLogs === 1 ? probed.appends : null,
        }));
        notes.push("Health and positions from the coordination store.");
      } else {
        const positions = await probePositions();
        logs = positions.map((position, log) => ({
          log,
          position,
          primary: null,
          appends: o.config.physicalLogs === 1 ? probed.appends : null,
        }));
        const terms = nodes.map((n) => n.term).filter((t): t is number => t !== null);
        term = terms.length === 0 ? null : Math.max(...terms);
        notes.push(
          "Health from the nodes' /healthz (nodes need a metricsPort); positions as an engine has applied them. Start the gateway with --store for the controller's view.",
        );
      }
      if (probed.appends === null)
        notes.push("Append rates need engines with a metricsPort in the config.");
      else if (o.config.physicalLogs > 1)
        notes.push("Appends are counted per engine, so they are shown for all logs together.");
      return { mode: "cluster", term, nodes, logs, appends: probed.appends, notes };
    },
  };
}
