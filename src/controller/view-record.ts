/**
 * How a view is kept in the coordination store: `/boki/view` holds one JSON document,
 *
 *   { "version": 1, "term": 2, "physicalLogs": 1, "sequencers": [["s1","s2","s0"]],
 *     "storages": [...], "engines": [...], "replication": 3, "indexReplicas": 2,
 *     "cause": "node engine-1 failed", "publishedAtMs": 1700000000000 }
 *
 * `version` names the format; a reader refuses a version it does not know rather than guess.
 * `cause` and `publishedAtMs` are for operators; the view is the rest. Every change of the
 * key is a compare-and-set on the revision of the view it replaces, so views follow each
 * other term by term and a deposed controller's late write fails.
 */
import { View, type ViewConfig } from "../log/view.js";
import { DataLostError, InvalidArgumentError } from "../log/errors.js";

export const VIEW_KEY = "/boki/view";
export const VIEW_RECORD_VERSION = 1;

export interface ViewRecord {
  readonly view: ViewConfig;
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
    cause: r.cause,
    publishedAtMs: r.publishedAtMs,
  });
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
  const { term, physicalLogs, sequencers, storages, engines, replication, indexReplicas } = o;
  if (
    typeof term !== "number" ||
    typeof physicalLogs !== "number" ||
    typeof replication !== "number" ||
    !Array.isArray(sequencers) ||
    !sequencers.every(isStringArray) ||
    !isStringArray(storages) ||
    !isStringArray(engines) ||
    (indexReplicas !== undefined && typeof indexReplicas !== "number")
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
  };
  try {
    new View(view);
  } catch (e) {
    if (e instanceof InvalidArgumentError)
      throw new DataLostError(`the stored view is invalid: ${e.message}`);
    throw e;
  }
  return {
    view,
    cause: typeof o["cause"] === "string" ? o["cause"] : "",
    publishedAtMs: typeof o["publishedAtMs"] === "number" ? o["publishedAtMs"] : 0,
  };
}
