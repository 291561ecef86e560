/**
 * Named limits of the log. Every queue, batch, cache and payload has one; exceeding a
 * limit is a typed error, never unbounded memory or a hang. Units come last in each name.
 */

/** Largest record payload an append accepts. */
export const RECORD_BYTES_MAX = 1024 * 1024;
/** Most tags one record may carry (tag 0 is implicit and not counted). */
export const TAGS_PER_RECORD_MAX = 16;
/** Largest aux data attached to one record. */
export const AUX_DATA_BYTES_MAX = 64 * 1024;
/** Default byte budget of an engine's record cache. */
export const CACHE_BYTES_DEFAULT = 256 * 1024 * 1024;
/** Most records an engine sends to storage in one replicate message. */
export const REPLICATE_BATCH_RECORDS_MAX = 4096;
/** Most payload bytes an engine sends to storage in one replicate message. */
export const REPLICATE_BATCH_BYTES_MAX = 4 * 1024 * 1024;
/**
 * Replicate batches an engine has sent per log whose records are not all ordered yet;
 * further appends wait and then leave in one batch.
 */
export const REPLICATE_BATCHES_IN_FLIGHT_MAX = 2;
/** Most appends an engine keeps in flight (sent but not yet ordered) before refusing new ones. */
export const APPENDS_IN_FLIGHT_MAX = 65_536;
/** Most reads an engine keeps waiting (for its index to catch up, or blocking reads). */
export const READS_WAITING_MAX = 65_536;
/** Most records described in one index-data message from storage to an engine. */
export const INDEX_DATA_BATCH_RECORDS_MAX = 8192;
/** Longest a read waits for the index to reach the reader's metalog position. */
export const READ_CATCH_UP_TIMEOUT_MS = 10_000;
/** Longest an append waits to be ordered before it fails with a timeout. */
export const APPEND_TIMEOUT_MS = 10_000;
/** Longest timeout a blocking read may ask for. */
export const BLOCKING_READ_TIMEOUT_MS_MAX = 10 * 60_000;
/** Longest a storage read (a cache miss) may take before it fails with a timeout. */
export const STORAGE_READ_TIMEOUT_MS = 10_000;
/**
 * Default least interval between two metalog cuts of one log. 0: cuts are paced only by
 * commits (a primary has at most a fixed number of uncommitted cuts).
 */
export const CUT_INTERVAL_MS_DEFAULT = 0;
/** Default number of physical logs books are spread over. */
export const PHYSICAL_LOGS_DEFAULT = 1;
/** Most physical logs a cluster may have. */
export const PHYSICAL_LOGS_MAX = 1024;
/** Most shards (appending engines) one metalog cut may cover. */
export const SHARDS_PER_CUT_MAX = 4096;
