/**
 * The coordination store: a small, strongly consistent key-value store with revisions,
 * compare-and-set, watches, leases and leader election. The controller keeps the cluster's
 * configuration in it, nodes register in it with leases, and controllers elect the active
 * one through it. Two backends implement it: etcd (`EtcdStore`, for clusters) and a file in
 * the data directory (`FileStore`, for one process on one machine). docs/coordination.md
 * describes the guarantees and limits.
 *
 * Every key change gets the next store revision: a positive integer, one store-wide counter,
 * so revisions order all changes. A watch delivers changes in revision order.
 */
import { InvalidArgumentError, RecordTooLargeError } from "../log/errors.js";
import type { LeaseLostError } from "./errors.js";

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/** Longest key, in UTF-8 bytes. */
export const KEY_BYTES_MAX = 1024;
/** Largest value. etcd refuses requests over 1.5 MiB by default; this stays below that. */
export const VALUE_BYTES_MAX = 1024 * 1024;
/** Most entries one `list` returns; a prefix holding more is an error, never a silent cut. */
export const LIST_ENTRIES_MAX = 10_000;
/** Shortest lease TTL. etcd counts TTLs in whole seconds and grants at least one. */
export const LEASE_TTL_MS_MIN = 1_000;
/** Longest lease TTL. */
export const LEASE_TTL_MS_MAX = 3_600_000;
/** A lease is kept alive this many times per TTL. */
export const LEASE_KEEPALIVES_PER_TTL = 3;
/** Events a watch holds for a listener that has not taken them yet; beyond, it ends. */
export const WATCH_QUEUE_EVENTS_MAX = 10_000;
/** Longest candidate id, in characters. */
export const CANDIDATE_ID_CHARS_MAX = 256;
/** Default TTL of the lease an election candidacy rests on. */
export const ELECTION_TTL_MS_DEFAULT = 5_000;
/** Default longest wait of `campaign` for leadership. */
export const CAMPAIGN_TIMEOUT_MS_DEFAULT = 30_000;
/** Longest wait `campaign` accepts (a standby campaigns again after it). */
export const CAMPAIGN_TIMEOUT_MS_MAX = 24 * 3_600_000;
/** Default longest time one store operation may take, retries included. */
export const OP_TIMEOUT_MS_DEFAULT = 5_000;
/** Longest `close` waits for leases to be revoked before it lets them expire instead. */
export const CLOSE_TIMEOUT_MS = 2_000;

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/** A store revision: positive, store-wide, strictly increasing with every change. */
export type Revision = number & { readonly __brand: "Revision" };
/** A lease id, as lowercase hexadecimal. */
export type LeaseId = string & { readonly __brand: "LeaseId" };

/** A value to store; strings are stored as UTF-8. */
export type CoordValue = Uint8Array | string;

export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  /** The revision of the key's last change (etcd's mod_revision). */
  readonly revision: Revision;
  /** The revision that created the key (since its last deletion). */
  readonly createRevision: Revision;
  /** Changes since creation: 1 after the first put. */
  readonly version: number;
  /** The lease the key is attached to, if any. */
  readonly leaseId: LeaseId | null;
}

export interface ListResult {
  /** Entries in key order (byte order of the UTF-8 keys). */
  readonly entries: readonly KeyValue[];
  /** The store revision the list was read at: watch from `revision + 1` to miss nothing. */
  readonly revision: Revision;
}

export interface PutOptions {
  /** Attach the key to this lease: it is deleted when the lease ends. */
  readonly lease?: Lease;
}

export type WatchEvent =
  | {
      readonly type: "put";
      readonly key: string;
      readonly revision: Revision;
      readonly kv: KeyValue;
    }
  | { readonly type: "delete"; readonly key: string; readonly revision: Revision };

/**
 * Receives a watch's events one at a time, in revision order. When it returns a promise, the
 * next event waits for it (up to `WATCH_QUEUE_EVENTS_MAX` events are held meanwhile).
 */
export type WatchListener = (event: WatchEvent) => void | Promise<void>;

/**
 * Why a watch ended. After `compacted`, `overflow` and `unavailable` some changes were not
 * delivered: read the prefix again (`list`) and watch from the list's revision + 1.
 */
export type WatchEnd =
  | { readonly reason: "cancelled" }
  | { readonly reason: "closed" }
  /** The store no longer holds the changes from the requested revision. */
  | { readonly reason: "compacted"; readonly compactRevision: Revision }
  /** The listener fell `WATCH_QUEUE_EVENTS_MAX` events behind. */
  | { readonly reason: "overflow" }
  /** The store stayed unreachable for longer than the store's reconnect bound. */
  | { readonly reason: "unavailable"; readonly error: Error }
  /** The listener threw or rejected; no more events were delivered to it. */
  | { readonly reason: "listener-failed"; readonly error: unknown };

/** Whether a watch that ended so may have missed changes (re-list, then watch again). */
export function mustRelist(end: WatchEnd): boolean {
  return end.reason === "compacted" || end.reason === "overflow" || end.reason === "unavailable";
}

export interface WatchOptions {
  /**
   * Deliver changes from this revision on (a past revision replays history the store still
   * holds). Without it, the watch starts after the store's revision when it was created.
   */
  readonly fromRevision?: Revision;
}

export interface Watch {
  readonly prefix: string;
  /** Settles once, when the watch ends; never rejects. */
  readonly done: Promise<WatchEnd>;
  /** Stops delivery; `done` resolves with `cancelled`. Safe to call more than once. */
  cancel(): void;
}

export type LeaseState = "alive" | "lost" | "revoked";

/**
 * A lease: kept alive automatically every `ttlMs / LEASE_KEEPALIVES_PER_TTL` until revoked.
 * Keys put with it are deleted when it ends. If keep-alives stop reaching the store for
 * `ttlMs`, or the store reports it expired, it is lost: `lost` resolves and the owner must
 * assume its keys are gone (locally, the loss is declared no later than the store's expiry).
 */
export interface Lease {
  readonly id: LeaseId;
  /** The TTL granted (etcd rounds up to whole seconds). */
  readonly ttlMs: number;
  readonly state: LeaseState;
  /** Resolves when the lease is lost (expired or keep-alives failed); not on `revoke`. */
  readonly lost: Promise<LeaseLostError>;
  /** Ends the lease now and deletes its keys. Safe to call more than once. */
  revoke(): Promise<void>;
  /**
   * Stops keep-alives without revoking, as if this process had died: the store expires the
   * lease after its TTL, and `lost` resolves when it does.
   */
  stopKeepAlive(): void;
}

export interface CampaignOptions {
  /** TTL of the lease the candidacy rests on (default `ELECTION_TTL_MS_DEFAULT`). */
  readonly ttlMs?: number;
  /** Longest wait for leadership (default `CAMPAIGN_TIMEOUT_MS_DEFAULT`). */
  readonly timeoutMs?: number;
  /** Aborting withdraws the candidacy; `campaign` rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Who leads an election. */
export interface LeaderInfo {
  readonly candidateId: string;
  /** The leader's election key. */
  readonly key: string;
  /** The creation revision of that key: grows with every new leader, a fencing token. */
  readonly revision: Revision;
  readonly leaseId: LeaseId;
}

/**
 * Leadership of an election, held while its lease lives and its election key exists.
 * A leader that learns of the loss (`lost`) must stop acting as leader at once; guard the
 * writes that matter with `putIf` so that a deposed leader's late writes fail.
 */
export interface Leadership extends LeaderInfo {
  readonly election: string;
  readonly lease: Lease;
  /** Resolves when leadership ends for any reason but `resign`. */
  readonly lost: Promise<LeaseLostError>;
  isLeader(): boolean;
  /** Gives leadership up: the next candidate takes over at once. Safe to call more than once. */
  resign(): Promise<void>;
}

export interface CoordStore {
  readonly backend: "etcd" | "file" | "memory";

  get(key: string): Promise<KeyValue | null>;
  /** Keys starting with `prefix`, in key order; more than `LIST_ENTRIES_MAX` is an error. */
  list(prefix: string): Promise<ListResult>;
  /** Sets the key; resolves with the new revision. */
  put(key: string, value: CoordValue, options?: PutOptions): Promise<Revision>;
  /**
   * Sets the key only if its revision is `expected` (or, with `"absent"`, only if it does
   * not exist). Resolves with the new revision, or null when the condition did not hold.
   */
  putIf(
    key: string,
    value: CoordValue,
    expected: Revision | "absent",
    options?: PutOptions,
  ): Promise<Revision | null>;
  /** Deletes the key; resolves with whether it existed. */
  delete(key: string): Promise<boolean>;
  /** Watches every key starting with `prefix`; resolves once the watch is in place. */
  watch(prefix: string, listener: WatchListener, options?: WatchOptions): Promise<Watch>;
  /** Grants a lease of `ttlMs` (within `LEASE_TTL_MS_MIN`..`LEASE_TTL_MS_MAX`). */
  grantLease(ttlMs: number): Promise<Lease>;
  /**
   * Stands `candidateId` for leadership of `election` (a key prefix: candidates are the
   * keys `<election>/<lease id>`); resolves once it leads. The earliest living candidate
   * leads; the others wait in line. On timeout or abort the candidacy is withdrawn.
   */
  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership>;
  /** Who leads `election` now, or null when no candidate is alive. */
  leader(election: string): Promise<LeaderInfo | null>;
  /**
   * Closes this client: watches end with `closed`, pending campaigns and calls fail with
   * `STORE_CLOSED`, and leases granted through it are revoked (within `CLOSE_TIMEOUT_MS`,
   * else they expire on their own).
   */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the backends
// ---------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A value's text (UTF-8). */
export function valueText(kv: { readonly value: Uint8Array }): string {
  return decoder.decode(kv.value);
}

export function encodeValue(value: CoordValue): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

export function asRevision(n: number): Revision {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidArgumentError(`revision must be a non-negative safe integer, got ${n}`);
  }
  return n as Revision;
}

export function checkKey(key: unknown, what = "key"): asserts key is string {
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty string`);
  }
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > KEY_BYTES_MAX) throw new RecordTooLargeError(what, bytes, KEY_BYTES_MAX);
}

export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== "string") throw new InvalidArgumentError("prefix must be a string");
  const bytes = Buffer.byteLength(prefix, "utf8");
  if (bytes > KEY_BYTES_MAX) throw new RecordTooLargeError("prefix", bytes, KEY_BYTES_MAX);
}

export function checkValue(value: unknown): Uint8Array {
  if (typeof value !== "string" && !(value instanceof Uint8Array)) {
    throw new InvalidArgumentError("value must be a string or a Uint8Array");
  }
  const bytes = encodeValue(value);
  if (bytes.length > VALUE_BYTES_MAX) {
    throw new RecordTooLargeError("value", bytes.length, VALUE_BYTES_MAX);
  }
  return bytes;
}

export function checkExpected(expected: unknown): Revision | "absent" {
  if (expected === "absent") return expected;
  if (typeof expected !== "number" || !Number.isSafeInteger(expected) || expected < 1) {
    throw new InvalidArgumentError(`expected revision must be "absent" or a positive integer`);
  }
  return expected as Revision;
}

export function checkTtlMs(ttlMs: unknown): number {
  if (
    typeof ttlMs !== "number" ||
    !Number.isInteger(ttlMs) ||
    ttlMs < LEASE_TTL_MS_MIN ||
    ttlMs > LEASE_TTL_MS_MAX
  ) {
    throw new InvalidArgumentError(
      `lease TTL must be an integer number of ms in [${LEASE_TTL_MS_MIN}, ${LEASE_TTL_MS_MAX}]`,
    );
  }
  return ttlMs;
}

export function checkTimeoutMs(ms: unknown, what: string, max: number): number {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0 || ms > max) {
    throw new InvalidArgumentError(`${what} must be a number of ms in (0, ${max}]`);
  }
  return ms;
}

export function checkElection(election: unknown): asserts election is string {
  checkKey(election, "election name");
  if (election.endsWith("/")) {
    throw new InvalidArgumentError(`election name must not end with "/": ${election}`);
  }
}

export function checkCandidateId(id: unknown): asserts id is string {
  if (typeof id !== "string" || id.length === 0 || id.length > CANDIDATE_ID_CHARS_MAX) {
    throw new InvalidArgumentError(
      `candidate id must be a string of 1 to ${CANDIDATE_ID_CHARS_MAX} characters`,
    );
  }
}

/** Compares keys by the byte order of their UTF-8 encoding, as etcd orders them. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
