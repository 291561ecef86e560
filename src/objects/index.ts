/**
 * `boki-ts/objects`: keyed stateful functions on the log, with transactions and sagas
 * across them (coordinator functions). See docs/objects.md.
 */
export {
  defineObject,
  OBJECT_FUNCTIONS,
  OBJECT_KIND,
  type ObjectOptions,
  type ObjectCall,
  type HandlerSpec,
} from "./object.js";
export type { ObjectContext } from "./executor.js";
export {
  defineTransaction,
  defineSaga,
  runTransaction,
  runSaga,
  PREPARE_TIMEOUT_MS,
  TXN_RETRIES_DEFAULT,
  type Call,
  type TransactionPlan,
  type TransactionOutcome,
  type TransactionOptions,
  type SagaStep,
  type SagaOutcome,
  type SagaOptions,
} from "./coordinator.js";
export { ObjectError, HandlerError, RequestFailedError, type ObjectErrorCode } from "./errors.js";
export type { Outcome } from "./records.js";
export * as objectLimits from "./limits.js";
