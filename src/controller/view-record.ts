/**
 * How a view is kept in the coordination store: `/boki/view` holds one JSON document,
 *
 *   { "version": 1, "term": 2, "physicalLogs": 1, "sequencers": [["s1","s2","s0"]],
 *     "storages": [...], "engines": [...], "replication": 3, "indexReplicas": 2,
 *     "starts": [1234], "history": [{ "term": 1, "storages": [...], "engines": [...],
 *     "replication": 3 }], "cause": "node engine-1 failed", "publishedAtMs": 1700000000000 }
 *
 * `starts` is where the term begins in each physical log's metalog (the sealed end of the
 * term before); `history` is where earlier terms put their shards, which stay readable.
 *
 * `version` names the format; a reader refuses a version it does not know rather than guess.
 * `cause` and `publishedAtMs` are for operators; the view is the rest. Every change of the
 * key is a compare-and-set on the revision of the view it replaces, so views follow each
 * other term by term and a deposed controller's late write fails.
 */
import { View, type TermPlacement, type ViewConfig } from "../log/view.js";
import { DataLostError, InvalidArgumentError } from "../log/errors.js";

export const VIEW_KEY = "/boki/view";
export const VIEW_RECORD_VERSION = 1;

export interface ViewRecord {
  readonly view: ViewConfig;
  /** Placements of earlier terms. */
  readonly history: readonly TermPlacement[];
  readonly cause: string;
  readonly publishedAtMs: number;
}

export function encodeViewRecord(r: ViewRecord): string {
  const v = r.view;
  return JSON.stringify({
    version: VIEW_RECORD_VERSION,
    term: v.term,
    physicalLogs: v.physicalLogs,
    sequencers: v.sequencers,
    storages: v.storages,
    engines: v.engines,
    replication: v.replication,
    ...(v.indexReplicas === undefined ? {} : { indexReplicas: v.indexReplicas }),
    ...(v.starts === undefined ? {} : { starts: v.starts }),
    history: r.history.map(normalPlacement),
    cause: r.cause,
    publishedAtMs: r.publishedAtMs,
  });
}

/** Only the placement's own fields, in one order. */
function normalPlacement(h: TermPlacement): TermPlacement {
  return {
    term: h.term,
    storages: h.storages,
    engines: h.engines,
    replication: h.replication,
    ...(h.sequencers === undefined ? {} : { sequencers: h.sequencers }),
    ...(h.starts === undefined ? {} : { starts: h.starts }),
  };
}

const isStringArray = (x: unknown): x is string[] =>
  Array.isArray(x) && x.every((s) => typeof s === "string");

/** Parses and checks a stored view; a malformed one is `DataLostError` (the store is bad). */
export function decodeViewRecord(text: string): ViewRecord {
  let o: Record<string, unknown>;
  try {
    const raw: unknown = JSON.parse(text);
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new Error("not an object");
    o = raw as Record<string, unknown>;
  } catch (e) {
    throw new DataLostError(`the stored view is not JSON: ${(e as Error).message}`);
  }
  if (o["version"] !== VIEW_RECORD_VERSION) {
    throw new DataLostError(
      `the stored view has version ${JSON.stringify(o["version"])}; this build reads version ${VIEW_RECORD_VERSION}`,
    );
  }
  const { term, physicalLogs, sequencers, storages, engines, replication, indexReplicas, starts } =
    o;
  const history = o["history"] ?? [];
  if (
    typeof term !== "number" ||
    typeof physicalLogs !== "number" ||
    typeof replication !== "number" ||
    !Array.isArray(sequencers) ||
    !sequencers.every(isStringArray) ||
    !isStringArray(storages) ||
    !isStringArray(engines) ||
    (indexReplicas !== undefined && typeof indexReplicas !== "number") ||
    (starts !== undefined &&
      !(Array.isArray(starts) && starts.every((x) => typeof x === "number"))) ||
    !Array.isArray(history) ||
    !history.every(
      (h: unknown) =>
        typeof h === "object" &&
        h !== null &&
        typeof (h as TermPlacement).term === "number" &&
        typeof (h as TermPlacement).replication === "number" &&
        isStringArray((h as TermPlacement).storages) &&
        isStringArray((h as TermPlacement).engines) &&
        ((h as TermPlacement).sequencers === undefined ||
          (Array.isArray((h as TermPlacement).sequencers) &&
            (h as TermPlacement).sequencers!.every(isStringArray))) &&
        ((h as TermPlacement).starts === undefined ||
          (Array.isArray((h as TermPlacement).starts) &&
            (h as TermPlacement).starts!.every((x) => typeof x === "number"))),
    )
  ) {
    throw new DataLostError("the stored view lacks a field or has one of the wrong type");
  }
  const view: ViewConfig = {
    term,
    physicalLogs,
    sequencers,
    storages,
    engines,
    replication,
    ...(indexReplicas === undefined ? {} : { indexReplicas }),
    ...(starts === undefined ? {} : { starts }),
  };
  const placements = (history as TermPlacement[]).map(normalPlacement);
  try {
    new View(view, placements);
  } catch (e) {
    if (e instanceof InvalidArgumentError)
      throw new DataLostError(`the stored view is invalid: ${e.message}`);
    throw e;
  }
  return {
    view,
    history: placements,
    cause: typeof o["cause"] === "string" ? o["cause"] : "",
    publishedAtMs: typeof o["publishedAtMs"] === "number" ? o["publishedAtMs"] : 0,
  };
}

/** The `View` a record describes, with its history. */
export function viewOfRecord(r: ViewRecord): View {
  return new View(r.view, r.history);
}
