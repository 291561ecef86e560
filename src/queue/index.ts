/**
 * boki-ts/queue: message queues on the shared log (after BokiQueue and vCorfu). A queue is
 * opened over a LogBook; pushes and pops are records, and every reader computes the same
 * assignment of messages to pops from the log, so consumers never lock. See docs/queue.md.
 */
export { openQueue } from "./queue.js";
export type {
  Queue,
  QueueOptions,
  PushOptions,
  PushResult,
  PopOptions,
  PopResult,
  Message,
  PeekedMessage,
  ReceiptResult,
  QueueLength,
} from "./api.js";
export { QueueCache, type QueueCacheOptions, type QueueCacheStats } from "./cache.js";
export { QueueError, type QueueErrorCode } from "./errors.js";
export {
  parseReceipt,
  receiptToString,
  type MessageId,
  type Receipt,
  type ReceiptString,
} from "./ids.js";
export type { DeadLetterOrigin } from "./records.js";
export { queueShardTag } from "./tags.js";
export * as queueLimits from "./limits.js";
export {
  defineConsumer,
  defineQueueFunctions,
  popInWorkflow,
  ackInWorkflow,
  ConsumerRunner,
  QUEUE_FUNCTIONS,
  CONSUMER_KIND,
  type ConsumerOptions,
  type ConsumerMeta,
} from "./runtime.js";
