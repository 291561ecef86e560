/** Named limits of `boki-ts/flow`. Units come last in each name. */

/** Longest workflow instance id. */
export const INSTANCE_ID_CHARS_MAX = 512;
/** Most operations (positions) one execution may log: a handler looping without end fails. */
export const OPERATIONS_PER_EXECUTION_MAX = 100_000;
/**
 * Own appends of one execution that may be in flight below a new one (operations started
 * together logging their records without waiting for each other's acknowledgement).
 */
export const PIPELINED_APPENDS_MAX = 64;
/** Longest sleep an execution waits out in its own process; longer ones end it and resume it later. */
export const SLEEP_IN_PROCESS_MS_MAX = 60_000;
/** What an execution keeps free of its invocation's deadline when it sleeps or waits. */
export const SLEEP_DEADLINE_MARGIN_MS = 500;
/** Attempts of a table write that loses to other writers of the key before it fails. */
export const TABLE_WRITE_ATTEMPTS_MAX = 64;
/** Appends of a cancelled instance's end that may lose to other records before it gives up. */
export const END_ATTEMPTS_MAX = 16;
/** Versions of one key a table write looks back over for its own (writes of the key during one operation). */
export const TABLE_WALK_RECORDS_MAX = 10_000;
/** Default time limit of a workflow's function, ms. */
export const WORKFLOW_TIMEOUT_MS_DEFAULT = 60_000;
/** Default time an ended instance's stream is kept before it is trimmed, ms (one day). */
export const RETENTION_MS_DEFAULT = 24 * 3600_000;
/** Longest retention a workflow may ask for, ms (one year). */
export const RETENTION_MS_MAX = 366 * 24 * 3600_000;
/** How often the runtime runs the recovery task, ms. */
export const RECOVERY_INTERVAL_MS = 1_000;
/** Intents records the recovery task reads per book per run. */
export const SCAN_RECORDS_MAX = 10_000;
/** Unfinished instances the recovery task tracks per book (more wait their turn). */
export const PENDING_TRACKED_MAX = 10_000;
/** Instances whose tails the recovery task checks per book per run. */
export const TAILS_CHECKED_MAX = 1_000;
/** Instances the recovery task resumes per book per run. */
export const RESUMES_PER_RUN_MAX = 256;
/** Streams the garbage collector trims per book per run. */
export const TRIMS_PER_RUN_MAX = 1_000;
/** Books the recovery task visits per run (the rest in later runs, round robin). */
export const BOOKS_PER_RUN_MAX = 64;
/** Step records `GET /workflows/<id>` returns at most. */
export const STATUS_STEPS_MAX = 1_000;
/** Instances one list request returns at most. */
export const LIST_LIMIT_MAX = 1_000;
/** Intents records one list request reads at most. */
export const LIST_RECORDS_MAX = 20_000;
/** Longest cancel reason kept. */
export const CANCEL_REASON_CHARS_MAX = 1_000;
