/**
 * What a store remembers between operations: object values as of a record (views), commit
 * decisions, object tags, and per book a follower of the store's records. Every entry is a
 * fact of the log (the value of an object as of a seqnum, the decision of a commit record),
 * so a cache never makes a read wrong; it only saves log reads. One `StoreCache` may serve
 * many stores, e.g. every invocation of a function module in one worker, as long as they
 * all read the same log: keys carry the book, not the log.
 */
import { tagOf, type JsonValue, type Tag } from "../index.js";
import { FollowerState } from "./follower.js";
import {
  DECISIONS_CACHED_MAX_DEFAULT,
  FOLLOWER_OBJECTS_MAX,
  TAGS_CACHED_MAX,
  VIEW_CACHE_BYTES_DEFAULT,
  VIEW_VERSIONS_PER_OBJECT_MAX,
} from "./limits.js";
import { objectTagName } from "./records.js";

export interface StoreCacheOptions {
  /** Byte budget of the views (measured as JSON length, roughly). */
  readonly viewBytesMax?: number;
  /** Most commit decisions remembered. */
  readonly decisionsMax?: number;
}

interface Version {
  /** The record the value is as of (the newest record of the object at or before it). */
  readonly seqnum: number;
  readonly value: JsonValue | undefined;
  readonly bytes: number;
  /** A seqnum at which this was known to be the object's value (≥ seqnum). */
  confirmedAt: number;
}

/** A decision remembered: whether it committed, and for an abort, what caused it. */
export interface CachedDecision {
  readonly committed: boolean;
  readonly conflict?: { readonly object: string; readonly seqnum: number };
}

/** A book's follower and the queue its catch-ups run in, one at a time. */
export interface BookFollower {
  readonly state: FollowerState;
  queue: Promise<void>;
}

/** A map with a bound: the least recently used entries go first. */
class Lru<K, V> {
  private readonly m = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(k: K): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: K, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    while (this.m.size > this.max) this.m.delete(this.m.keys().next().value as K);
  }
}

export class StoreCache {
  private readonly views = new Map<string, Version[]>();
  private viewBytes = 0;
  private readonly viewBytesMax: number;
  private readonly decisions: Lru<string, CachedDecision>;
  private readonly tags = new Lru<string, Tag>(TAGS_CACHED_MAX);
  private readonly followers = new Map<number, BookFollower>();
  /** Counters, for tests and profiles. */
  readonly stats = {
    viewHits: 0,
    viewMisses: 0,
    vouchedHits: 0,
    decisionHits: 0,
    followerResets: 0,
    /** Log reads by the stores using this cache: tail checks, follower, walks, decisions. */
    logReads: { tail: 0, follow: 0, walk: 0, decide: 0 },
  };

  constructor(options: StoreCacheOptions = {}) {
    this.viewBytesMax = options.viewBytesMax ?? VIEW_CACHE_BYTES_DEFAULT;
    this.decisions = new Lru(options.decisionsMax ?? DECISIONS_CACHED_MAX_DEFAULT);
  }

  tag(name: string): Tag {
    let t = this.tags.get(name);
    if (t === undefined) {
      t = tagOf(objectTagName(name));
      this.tags.set(name, t);
    }
    return t;
  }

  /** The value of `object` in `book` as of record `seqnum`, if remembered. */
  view(book: number, object: string, seqnum: number): { value: JsonValue | undefined } | undefined {
    const key = `${book}/${object}`;
    const list = this.views.get(key);
    if (list !== undefined) {
      for (const v of list) {
        if (v.seqnum === seqnum) {
          this.stats.viewHits++;
          // Recently used objects go to the back of the eviction order.
          this.views.delete(key);
          this.views.set(key, list);
          return { value: v.value };
        }
      }
    }
    this.stats.viewMisses++;
    return undefined;
  }

  /**
   * The value of `object` at seqnum `at`, when a remembered version is vouched for by the
   * book's follower (no committed write to the object since that version's record).
   */
  vouchedView(
    book: number,
    object: string,
    at: number,
  ): { seqnum: number; value: JsonValue | undefined } | undefined {
    const f = this.followers.get(book);
    if (f === undefined) return undefined;
    const key = `${book}/${object}`;
    const list = this.views.get(key);
    if (list === undefined) return undefined;
    for (const v of list) {
      if (v.seqnum > at) continue;
      if (!f.state.vouches(object, v.seqnum, v.confirmedAt, at)) return undefined;
      this.stats.vouchedHits++;
      this.views.delete(key);
      this.views.set(key, list);
      return { seqnum: v.seqnum, value: v.value };
    }
    return undefined;
  }

  /** Remembers the value of `object` as of record `seqnum`, known current at `confirmedAt`. */
  putView(
    book: number,
    object: string,
    seqnum: number,
    value: JsonValue | undefined,
    bytes: number,
    confirmedAt: number = seqnum,
  ): void {
    if (bytes > this.viewBytesMax / 4) return;
    const key = `${book}/${object}`;
    let list = this.views.get(key);
    if (list === undefined) list = [];
    else this.views.delete(key);
    const same = list.find((v) => v.seqnum === seqnum);
    if (same !== undefined) {
      if (confirmedAt > same.confirmedAt) same.confirmedAt = confirmedAt;
      this.views.set(key, list);
      return;
    }
    list.push({ seqnum, value, bytes, confirmedAt: Math.max(seqnum, confirmedAt) });
    list.sort((a, b) => b.seqnum - a.seqnum);
    while (list.length > VIEW_VERSIONS_PER_OBJECT_MAX) this.viewBytes -= list.pop()!.bytes;
    this.viewBytes += bytes;
    this.views.set(key, list);
    while (this.viewBytes > this.viewBytesMax) {
      const oldest = this.views.keys().next();
      if (oldest.done === true) break;
      for (const v of this.views.get(oldest.value)!) this.viewBytes -= v.bytes;
      this.views.delete(oldest.value);
    }
  }

  /** The follower of `book`, made at `position` the first time. */
  follower(book: number, position: number): BookFollower {
    let f = this.followers.get(book);
    if (f === undefined) {
      f = { state: new FollowerState(position, FOLLOWER_OBJECTS_MAX), queue: Promise.resolve() };
      this.followers.set(book, f);
    }
    return f;
  }

  decision(book: number, seqnum: number): boolean | undefined {
    return this.decisionInfo(book, seqnum)?.committed;
  }

  decisionInfo(book: number, seqnum: number): CachedDecision | undefined {
    const d = this.decisions.get(`${book}/${seqnum}`);
    if (d !== undefined) this.stats.decisionHits++;
    return d;
  }

  putDecision(book: number, seqnum: number, d: CachedDecision): void {
    this.decisions.set(`${book}/${seqnum}`, d);
  }
}
