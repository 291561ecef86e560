/** Named limits of `boki-ts/objects`. Units come last. */

/** Longest object name, key, handler name or request id. */
export const NAME_CHARS_MAX = 512;
/** Largest state of one instance (its JSON), bytes: every result carries it. */
export const STATE_BYTES_MAX = 256 * 1024;
/** Requests an instance may hold deferred behind a transaction's lock. */
export const DEFERRED_MAX = 1_000;
/** Inbox records an executor reads per step. */
export const INBOX_SCAN_MAX = 1_000;
/** Inbox requests an executor thread keeps decoded, to look at an instance again without reading them. */
export const REQUESTS_CACHED_MAX = 20_000;
/** Bytes of records those requests came from, at most (the cache's memory bound). */
export const REQUESTS_CACHED_BYTES_MAX = 32 * 1024 * 1024;
/** Messages one request may send. */
export const MESSAGES_PER_REQUEST_MAX = 256;
/** Nested calls one handler execution may make. */
export const CALLS_PER_REQUEST_MAX = 256;
/**
 * How long an executor leaves another caller's request to that caller before applying it
 * itself (the caller may have died): ms since the request was appended.
 */
export const EXECUTOR_GRACE_MS = 200;
/** Longest one wait on the results stream, ms (the executor then looks again). */
export const RESULT_WAIT_MS_MAX = 1_000;
/** What an executor keeps free of its invocation's deadline, ms. */
export const DEADLINE_MARGIN_MS = 200;
/** Default time limit of an object's function, ms. */
export const OBJECT_TIMEOUT_MS_DEFAULT = 30_000;
