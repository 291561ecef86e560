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

/**
 * An object's remembered versions, newest first. `used`: read since it last moved to the
 * back of the eviction order (a hit only marks it; eviction moves marked ones back, clearing
 * the mark, and drops the first unmarked one: a second-chance LRU, so that a hit does not
 * reorder the map).
 */
interface Versions {
  readonly list: Version[];
  used: boolean;
}

/** A book's follower and the queue its catch-ups run in, one at a time. */
export interface BookFollower {
  readonly state: FollowerState;
  queue: Promise<void>;
}

/**
 * A map with a bound: the least recently used entries go first (second chance: a hit marks
 * its entry, and eviction moves marked entries back, clearing the mark, instead of every hit
 * reordering the map).
 */
class Lru<K, V> {
  private readonly m = new Map<K, { v: V; used: boolean }>();
  constructor(private readonly max: number) {}
  get(k: K): V | undefined {
    const e = this.m.get(k);
    if (e === undefined) return undefined;
    e.used = true;
    return e.v;
  }
  set(k: K, v: V): void {
    const e = this.m.get(k);
    if (e !== undefined) {
      e.v = v;
      e.used = true;
      return;
    }
    this.m.set(k, { v, used: false });
    while (this.m.size > this.max) {
      const [ok, oe] = this.m.entries().next().value as [K, { v: V; used: boolean }];
      this.m.delete(ok);
      if (oe.used) {
        oe.used = false;
        this.m.set(ok, oe);
      }
    }
  }
}

export class StoreCache {
  private readonly views = new Map<string, Versions>();
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
    const e = this.views.get(`${book}/${object}`);
    if (e !== undefined) {
      for (const v of e.list) {
        if (v.seqnum === seqnum) {
          this.stats.viewHits++;
          e.used = true;
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
    const e = this.views.get(`${book}/${object}`);
    if (e === undefined) return undefined;
    for (const v of e.list) {
      if (v.seqnum > at) continue;
      if (!f.state.vouches(object, v.seqnum, v.confirmedAt, at)) return undefined;
      this.stats.vouchedHits++;
      e.used = true;
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
    let e = this.views.get(key);
    if (e === undefined) {
      e = { list: [], used: false };
      this.views.set(key, e);
    } else e.used = true;
    const list = e.list;
    const same = list.find((v) => v.seqnum === seqnum);
    if (same !== undefined) {
      if (confirmedAt > same.confirmedAt) same.confirmedAt = confirmedAt;
      return;
    }
    list.push({ seqnum, value, bytes, confirmedAt: Math.max(seqnum, confirmedAt) });
    list.sort((a, b) => b.seqnum - a.seqnum);
    while (list.length > VIEW_VERSIONS_PER_OBJECT_MAX) this.viewBytes -= list.pop()!.bytes;
    this.viewBytes += bytes;
    this.evictViews();
  }

  /** Drops views, least recently used first (second chance for the marked), until within budget. */
  private evictViews(): void {
    // Each marked entry moves back once with its mark cleared, so this ends within two passes.
    while (this.viewBytes > this.viewBytesMax) {
      const oldest = this.views.entries().next();
      if (oldest.done === true) break;
      const [k, e] = oldest.value;
      this.views.delete(k);
      if (e.used) {
        e.used = false;
        this.views.set(k, e);
        continue;
      }
      for (const v of e.list) this.viewBytes -= v.bytes;
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
