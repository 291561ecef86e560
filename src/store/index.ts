/**
 * boki-ts/store: durable JSON objects on the shared log, with transactions.
 *
 * ```ts
 * import { defineFunction } from "boki-ts";
 * import { openStore, StoreCache } from "boki-ts/store";
 *
 * const cache = new StoreCache(); // shared by this module's invocations in one worker
 *
 * export const visit = defineFunction({
 *   name: "visit",
 *   async handler(ctx, input: { page: string }) {
 *     const store = openStore(ctx.log, { cache });
 *     return store.add(`page:${input.page}`, "visits", 1);
 *   },
 * });
 * ```
 *
 * See docs/store.md for the record formats, isolation levels, limits and errors.
 */
export {
  openStore,
  Store,
  StoreObject,
  Transaction,
  TransactionObject,
  Batch,
  type StoreOptions,
  type TransactionOptions,
  type RunTransactionOptions,
  type PushOptions,
  type CommitResult,
  type StoreStats,
} from "./store.js";
export { StoreCache, type StoreCacheOptions } from "./cache.js";
export {
  StoreError,
  TransactionConflictError,
  ReadLimitError,
  OpFailedError,
  TransactionClosedError,
  ReadOnlyTransactionError,
  TransactionTooLargeError,
  type StoreErrorCode,
  type ReadLimit,
  type OpFailure,
} from "./errors.js";
export type { PathLike, OpResult } from "./ops.js";
export { TAG_NAMESPACE, type Isolation } from "./records.js";
export * as storeLimits from "./limits.js";
