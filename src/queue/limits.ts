/**
 * The queue library's limits. Every size, count, wait and retry of the library is one of
 * these (exported as `queueLimits`); exceeding one is a clear error, never a hang.
 */
import { limits } from "../index.js";

/** Characters of a queue name. */
export const QUEUE_NAME_CHARS_MAX = 128;
/** Characters of a consumer id. */
export const CONSUMER_ID_CHARS_MAX = 128;
/** Sub-queues (shards) of one queue. */
export const SHARDS_MAX = 256;
/** One message's payload (JSON text or bytes). */
export const MESSAGE_BYTES_MAX = 512 * 1024;
/** Messages in one push record (`pushMany`). */
export const PUSH_BATCH_MESSAGES_MAX = 1024;
/** One push record, header included: what one log record can hold. */
export const PUSH_RECORD_BYTES_MAX = limits.RECORD_BYTES_MAX;
/** Messages one pop may receive. */
export const POP_MESSAGES_MAX = 256;
/** Receipts in one ack, nack or extend (or acknowledged by one pop). */
export const RECEIPTS_PER_RECORD_MAX = 1024;
/** Visibility timeout of a pop unless it gives one. */
export const VISIBILITY_MS_DEFAULT = 30_000;
/** Longest visibility timeout (and longest `extend`). */
export const VISIBILITY_MS_MAX = 12 * 3600_000;
/** Longest a pop may wait for a message: the log's longest blocking read. */
export const POP_WAIT_MS_MAX = limits.BLOCKING_READ_TIMEOUT_MS_MAX;
/** Longest delay of a nack before the message is visible again. */
export const NACK_DELAY_MS_MAX = 12 * 3600_000;
/** Deliveries of one message before it is dead-lettered, unless the queue sets another. */
export const MAX_DELIVERIES_DEFAULT = 5;
/** Largest `maxDeliveries` a queue may set. */
export const MAX_DELIVERIES_MAX = 1000;
/**
 * Pops waiting for a message in one shard. A pop that would wait beyond it is answered
 * empty at once, in log order, so every reader agrees.
 */
export const WAITING_POPS_MAX = 65_536;
/**
 * Unfinished messages (available, in flight or delayed) one shard may hold, as a producer
 * sees it: a push fails with QUEUE_FULL when the producer's latest view of the shard is at
 * or over it. A soft limit: producers racing each other can overshoot it by their pushes in
 * flight; the state machine never drops a push.
 */
export const SHARD_MESSAGES_SOFT_MAX = 1_000_000;
/** How often a producer refreshes its view of a shard's length for the soft limit. */
export const LENGTH_CHECK_INTERVAL_MS = 1000;
/** Records one catch-up may read before it fails with CATCH_UP_LIMIT (retryable). */
export const CATCH_UP_RECORDS_MAX = 200_000;
/**
 * Records a catch-up reads past its own target for other calls of the process waiting on the
 * shard, so that one reader serves them all without chasing a tail that keeps growing.
 */
export const EXTRA_RECORDS_MAX = 256;
/** Reads of consecutive seqnums a catch-up sends together (see ShardReader.readChain). */
export const READ_AHEAD_MAX = 64;
/**
 * Times a catch-up starts over from a checkpoint after it found that records it had not yet
 * applied were trimmed under it.
 */
export const CATCH_UP_RESTARTS_MAX = 3;
/** Records between durable checkpoints (checkpoint record, then trim), unless the queue sets another. */
export const CHECKPOINT_INTERVAL_RECORDS_DEFAULT = 4096;
/** Records between aux-data checkpoints, unless the queue sets another. */
export const AUX_CHECKPOINT_INTERVAL_RECORDS_DEFAULT = 128;
/** Bounds of both intervals a queue may set. */
export const CHECKPOINT_INTERVAL_RECORDS_MIN = 8;
export const CHECKPOINT_INTERVAL_RECORDS_MAX = 1_000_000;
/** Records a reader without state walks back from the tail looking for an aux-data checkpoint. */
export const AUX_WALK_BACK_RECORDS_MAX = 256;
/** A durable checkpoint record's state; a larger state is not checkpointed (nor trimmed) this time. */
export const CHECKPOINT_BYTES_MAX = 768 * 1024;
/** An aux-data checkpoint: what aux data can hold. */
export const AUX_CHECKPOINT_BYTES_MAX = limits.AUX_DATA_BYTES_MAX;
/**
 * Log time a dead-lettered message may wait for the consumer whose pop found it to copy it
 * to the dead-letter queue, before any reader does.
 */
export const DEAD_LETTER_GRACE_MS = 30_000;
/** Dead letters one catch-up copies to the dead-letter queue (the rest wait for the next). */
export const DEAD_LETTERS_PER_CATCH_UP_MAX = 64;
/** Pop outcomes (and ack outcomes) a shard's reader remembers for the pops waiting on it. */
export const OUTCOMES_KEPT_MAX = 4096;
/** Payload bytes a `QueueCache` keeps of pushed messages not yet delivered. */
export const PAYLOAD_CACHE_BYTES_DEFAULT = 64 * 2 ** 20;
/** Shards an unpinned pop tries before it waits on one. */
export const UNPINNED_POP_SHARDS_TRIED_MAX = 4;
/** Longest one blocking read of a waiting pop, so it re-checks its state at least this often. */
export const BLOCKING_SLICE_MS_MAX = 5_000;
/** Longest a call waits for another call of this process that is reading the same shard. */
export const LOCK_WAIT_MS_MAX = 30_000;
/** Shards whose state one `QueueCache` keeps (least recently used ones are dropped). */
export const CACHE_SHARDS_MAX = 1024;
