/** Public entry of Boki.ts: the LogBook API, its types and errors, and the embedded log. */
export type { LogBook, TagLike, SeqNumLike, DataLike } from "./log/api.js";
export type { LogRecord } from "./log/record.js";
export type { SeqNum, Tag, BookId, MetalogPosition } from "./log/types.js";
export {
  tagOf,
  parseTag,
  parseSeqNum,
  parseBookId,
  seqnumToJSON,
  SEQNUM_MAX,
  TAG_ALL,
} from "./log/types.js";
export {
  BokiError,
  InvalidArgumentError,
  RecordTooLargeError,
  BookEmptyError,
  NotFoundError,
  TimeoutError,
  LogClosedError,
  CondAppendFailedError,
  AppendDiscardedError,
  DataLostError,
  OverloadedError,
  type ErrorCode,
} from "./log/errors.js";
export * as limits from "./log/limits.js";
export { EmbeddedLog, type EmbeddedLogOptions } from "./embedded/embedded-log.js";

// Functions: what users write, and the errors their callers see.
export {
  defineFunction,
  type BokiFunction,
  type FunctionContext,
  type FunctionLogger,
  type FunctionOptions,
  type FunctionSchedule,
  type Handler,
  type InvokeOptions,
} from "./runtime/function.js";
export { toJsonText, type JsonValue } from "./runtime/json.js";
export type { InvocationId } from "./runtime/ids.js";
export { InvocationError, type InvocationErrorCode } from "./runtime/errors.js";
