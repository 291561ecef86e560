/**
 * Named limits of the store. Every walk, cache, batch and retry has one; exceeding a limit
 * is a typed error (or, for caches, an eviction), never unbounded memory or a hang. Units
 * come last in each name. The `*_DEFAULT` ones can be changed per store (`StoreOptions`).
 */
import { limits as logLimits } from "../index.js";

/** Most log records one read (or one commit decision) may walk before it fails. */
export const RECORDS_WALKED_MAX_DEFAULT = 10_000;
/** Most record bytes one read may hold while it walks back to a checkpoint. */
export const REPLAY_BYTES_MAX_DEFAULT = 32 * 1024 * 1024;
/** Most transactions one commit decision may have to decide on the way (its own included). */
export const DECISIONS_PENDING_MAX = 4096;
/**
 * Most objects one transaction may write: its commit record carries one tag per object,
 * plus the store's stream tag.
 */
export const OBJECTS_WRITTEN_PER_TRANSACTION_MAX = logLimits.TAGS_PER_RECORD_MAX - 1;
/** Most objects one transaction may read (its read set travels in the commit record). */
export const OBJECTS_READ_PER_TRANSACTION_MAX = 4096;
/** Most operations one record (an `update` batch, or one object in a commit) may carry. */
export const OPS_PER_RECORD_MAX = 1024;
/** Longest object name. */
export const OBJECT_NAME_CHARS_MAX = 1024;
/** Most segments in a path. */
export const PATH_SEGMENTS_MAX = 64;
/** Deepest nesting of a stored value. */
export const VALUE_DEPTH_MAX = 64;
/**
 * A record of several objects (a commit) gets a view in its aux data only when a read had
 * to walk at least this many records: views there travel with every read of the record.
 */
export const CHECKPOINT_WALK_MIN = 8;
/** Largest aux data (one checkpoint record), from the log's own limit. */
export const CHECKPOINT_BYTES_MAX = logLimits.AUX_DATA_BYTES_MAX;
/** Default and highest number of retries of `store.transaction` after a conflict. */
export const TRANSACTION_RETRIES_DEFAULT = 8;
export const TRANSACTION_RETRIES_MAX = 100;
/** Backoff between retries: base, doubled per attempt, capped, with jitter. */
export const RETRY_BACKOFF_BASE_MS = 2;
export const RETRY_BACKOFF_CAP_MS = 200;
/** Default byte budget (JSON length, roughly) of a `StoreCache`'s object views. */
export const VIEW_CACHE_BYTES_DEFAULT = 32 * 1024 * 1024;
/** Most versions of one object a `StoreCache` keeps (for reads at older snapshots). */
export const VIEW_VERSIONS_PER_OBJECT_MAX = 4;
/** Default number of commit decisions a `StoreCache` remembers. */
export const DECISIONS_CACHED_MAX_DEFAULT = 100_000;
/** Most object tags a `StoreCache` remembers (a tag is a SHA-256 of the name). */
export const TAGS_CACHED_MAX = 100_000;
/**
 * Most store records one catch-up of a `StoreCache`'s follower reads; further behind than
 * that, it starts afresh at the target (what it knew is dropped: a cost, never an error).
 */
export const FOLLOW_READS_PER_SYNC_MAX = 256;
/** Most objects whose last committed write a follower remembers. */
export const FOLLOWER_OBJECTS_MAX = 100_000;
