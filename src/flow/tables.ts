/** Durable tables of `boki-ts/flow`, read from outside a workflow (any function). */
import type { JsonValue, LogBook } from "../index.js";
import type { TableEntry } from "./context.js";
import { decodeFlowRecord, tableTag, type TableVersionRecord } from "./records.js";

/** The newest value and version of `key` in `table` (version 0: never written). */
export async function readTable<T = JsonValue>(
  log: LogBook,
  table: string,
  key: string,
): Promise<TableEntry<T>> {
  const r = await log.checkTail(tableTag(table, key));
  if (r === null) return { value: undefined, version: 0 };
  const w = decodeFlowRecord(r).rec as TableVersionRecord;
  return { value: w.value as T | undefined, version: w.ver + 1 };
}
