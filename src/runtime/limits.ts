/**
 * Named limits of the function runtime and the gateway. Each queue, pool and payload has
 * one; exceeding it is a typed error (`InvocationError`), never a hang. Units come last.
 */

/** Worker threads an engine runs functions in, unless configured otherwise. */
export const WORKERS_DEFAULT = 2;
/** Most worker threads one pool may have. */
export const WORKERS_MAX = 64;
/** Invocations one worker runs at once (they interleave at their awaits), by default. */
export const WORKER_INVOCATIONS_MAX_DEFAULT = 64;
/** Invocations waiting for a worker slot, by default; beyond it new ones fail OVERLOADED. */
export const INVOCATIONS_QUEUED_MAX_DEFAULT = 1024;
/**
 * Nested invocations (`ctx.invoke` children) running at once in one pool. Children skip the
 * queue and the per-worker limit, so a pool full of parents waiting for their children
 * cannot deadlock; this bounds them instead.
 */
export const NESTED_INVOCATIONS_MAX = 4096;
/** Deepest chain of nested invocations (a function calling a function calling ...). */
export const INVOCATION_DEPTH_MAX = 16;
/** A function's time limit unless it or the host sets another. */
export const FUNCTION_TIMEOUT_MS_DEFAULT = 30_000;
/** Longest time limit a function may ask for. */
export const FUNCTION_TIMEOUT_MS_MAX = 15 * 60_000;
/** Longest a new worker may take to load the function modules. */
export const WORKER_START_TIMEOUT_MS = 60_000;
/**
 * After an invocation times out, its worker must answer a ping within this long; a worker
 * that does not (a function stuck in CPU) is terminated and replaced.
 */
export const WORKER_PING_TIMEOUT_MS = 1000;
/** Pause before replacing a worker that died, doubled after each failed start up to the max. */
export const WORKER_RESPAWN_DELAY_MS = 100;
export const WORKER_RESPAWN_DELAY_MS_MAX = 5000;
/**
 * Largest input or output of an invocation, as JSON text (UTF-8 bytes). It leaves room
 * within one log record (`RECORD_BYTES_MAX`, 1 MiB) for the invocation record around it.
 */
export const PAYLOAD_BYTES_MAX = 1024 * 1024 - 8 * 1024;
/** Longest error message kept in an invocation's result. */
export const ERROR_MESSAGE_CHARS_MAX = 4096;
/** Longest function name. */
export const FUNCTION_NAME_CHARS_MAX = 128;
/** Longest `Idempotency-Key`. */
export const IDEMPOTENCY_KEY_CHARS_MAX = 256;
/** Longest line a function may write through `ctx.logger` (longer ones are cut). */
export const LOG_LINE_CHARS_MAX = 8192;
/** Asynchronous invocations the gateway runs at once, by default. */
export const ASYNC_RUNNING_MAX_DEFAULT = 64;
/** Asynchronous invocations accepted but not yet running, by default; beyond it 503. */
export const ASYNC_QUEUED_MAX_DEFAULT = 10_000;
/** Unfinished invocations one recovery pass collects before running them. */
export const RECOVERY_BATCH_MAX = 10_000;
/** How long a recorded invocation that cannot get a worker keeps retrying (OVERLOADED). */
export const OVERLOADED_RETRY_MS_MAX = 60_000;
/** How long shutting down waits for running invocations to finish. */
export const SHUTDOWN_GRACE_MS = 10_000;
