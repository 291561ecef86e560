/**
 * Where the dashboard's cluster view comes from: a `ClusterSource` answers with the nodes,
 * their roles and health, the term, and per physical log its metalog position, plus
 * cumulative counters (appends) that the dashboard turns into rates. `embeddedSource` is
 * `boki dev`'s (every role in this process); a cluster gateway's is in cluster-source.ts.
 */
import { logOfBook } from "../../log/mapping.js";
import type { BookId } from "../../log/types.js";
import type { EmbeddedLog } from "../../embedded/embedded-log.js";
import { SYSTEM_BOOK } from "../../runtime/ids.js";

export type NodeHealth = "ok" | "live" | "missing" | "unreachable" | "unknown";

export interface NodeView {
  readonly id: string;
  /** A role, or several joined with "+" when one process holds them all. */
  readonly role: string;
  readonly address: string | null;
  readonly health: NodeHealth;
  readonly term: number | null;
  /** Why the health is what it is, when there is more to say. */
  readonly detail?: string;
}

export interface LogView {
  readonly log: number;
  /** The committed metalog length (entries), as far as this gateway can tell. */
  readonly position: number | null;
  readonly primary: string | null;
  /** Cumulative appends ordered in this log, when known (turned into a rate). */
  readonly appends: number | null;
}

export interface ClusterSnapshot {
  readonly mode: "embedded" | "cluster";
  readonly term: number | null;
  readonly nodes: readonly NodeView[];
  readonly logs: readonly LogView[];
  /** Cumulative appends of every log, when known. */
  readonly appends: number | null;
  /** Lines the dashboard shows under the cluster view (what is unknown, and why). */
  readonly notes: readonly string[];
}

export interface ClusterSource {
  snapshot(): Promise<ClusterSnapshot>;
}

/** Books tried when looking for one that maps onto each physical log. */
const BOOK_SEARCH_MAX = 1 << 16;

/**
 * For each physical log, a book that maps onto it (null where none of the first
 * `BOOK_SEARCH_MAX` books does): a session on it tells the log's position.
 */
export function booksForLogs(physicalLogs: number): Array<BookId | null> {
  const out: Array<BookId | null> = Array.from({ length: physicalLogs }, () => null);
  let missing = physicalLogs;
  for (let b = 0; b < BOOK_SEARCH_MAX && missing > 0; b++) {
    if (b === SYSTEM_BOOK) continue;
    const l = logOfBook(b as BookId, physicalLogs);
    if (out[l] === null) {
      out[l] = b as BookId;
      missing--;
    }
  }
  return out;
}

export interface EmbeddedSourceOptions {
  readonly log: EmbeddedLog;
  /** The gateway's address, shown for the node. */
  readonly address: () => string | null;
  /** Cumulative appends made by functions (the runtime's counters), if known. */
  readonly appends?: () => number;
}

/** The dashboard's view of `boki dev`: one node holding every role. */
export function embeddedSource(o: EmbeddedSourceOptions): ClusterSource {
  const physicalLogs = o.log.view.config.physicalLogs;
  const books = booksForLogs(physicalLogs);
  return {
    snapshot() {
      const term = o.log.term;
      const appends = o.appends?.() ?? null;
      const logs: LogView[] = books.map((b, log) => ({
        log,
        position: b === null ? null : o.log.book(b).position,
        primary: "sequencer-0",
        // Appends are counted per process; with one log they are that log's.
        appends: physicalLogs === 1 ? appends : null,
      }));
      return Promise.resolve({
        mode: "embedded",
        term,
        nodes: [
          {
            id: "dev",
            role: "sequencer+storage+engine+gateway",
            address: o.address(),
            health: "ok",
            term,
          },
        ],
        logs,
        appends,
        notes: [
          "boki dev: every role runs in this process over the embedded log.",
          ...(appends === null ? [] : ["Appends count the appends made by functions."]),
        ],
      });
    },
  };
}
