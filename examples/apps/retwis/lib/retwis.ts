/**
 * Retwis, a Twitter clone (the workload of Boki's store evaluation), written once against
 * `RetwisEnv`: the few operations in which the safe variant (functions/, store transactions)
 * and the unsafe one (unsafe/, plain reads and writes) differ.
 *
 * Objects:
 *   user:<id>        { username, password, auth, followers: {id: 1}, followees: {id: 1}, posts: [postId] }
 *   username:<name>  { id }
 *   post:<id>        { id, userId, userName, body }
 *   timeline         { posts: [postId] }   (the newest TIMELINE_POSTS_MAX posts of everyone)
 *
 * A user's `posts` is what that user reads: the posts of those they follow that notified
 * them (a post notifies up to NOTIFIED_FOLLOWERS_MAX of its author's followers).
 *
 * Requests: login and timeline read through a consistent view (a read-only transaction),
 * profile is a plain read, and post is a read-write transaction (the post, and its id
 * pushed onto up to 4 followers' lists) with a plain push of the id onto the global
 * timeline made just before the transaction commits, once. A post is therefore made whole
 * or not at all: its object and its followers' entries commit together, and its id is on
 * the global timeline before that. An id on the global timeline whose transaction never
 * committed (it lost every retry, or the process died) names no post; readers skip it.
 */
import { randomBytes } from "node:crypto";
import { InvocationError, type JsonValue } from "boki-ts";

/** The newest post ids a user's list keeps. */
export const USER_POSTS_MAX = 24;
/** The newest post ids the global timeline keeps. */
export const TIMELINE_POSTS_MAX = 96;
/** Followers a post is pushed to (a random few of the author's). */
export const NOTIFIED_FOLLOWERS_MAX = 4;
/** Posts a timeline request returns (the newest of the list). */
export const TIMELINE_READ_MAX = 8;
/** Longest post body, in characters. */
export const POST_BODY_CHARS_MAX = 1024;
/** Longest user id, username or password, in characters. */
export const NAME_CHARS_MAX = 128;
/** Followers (or followees) one loaded user may have. */
export const FOLLOWS_PER_USER_MAX = 100_000;
/** Users one load request may carry. */
export const LOAD_USERS_MAX = 1000;
/** Posts one load request may carry. */
export const LOAD_POSTS_MAX = 5000;
/** Post ids one check request may name. */
export const CHECK_POSTS_MAX = 1000;
/** Users whose lists one check request may examine. */
export const CHECK_USERS_MAX = 1000;
/** Ids with a problem a check report lists (the counts cover all). */
const CHECK_BAD_LISTED_MAX = 20;

/** A request that does not fit the API: the function refuses it (HTTP 400 INVALID_ARGUMENT). */
function refuse(message: string): InvocationError {
  return new InvocationError("INVALID_ARGUMENT", message);
}

/** What a request reads and writes through: a transaction, or the store itself. */
export interface RetwisView {
  get(name: string, path?: string): Promise<JsonValue | undefined>;
  set(name: string, path: string, value: JsonValue): Promise<unknown>;
  push(name: string, path: string, value: JsonValue, options: { max: number }): Promise<number>;
}

export type ReadWriteOutcome<T> =
  | { readonly ok: true; readonly value: T; readonly attempts: number }
  /** The transaction lost to others on every attempt (`object`: the last conflict's, if known). */
  | { readonly ok: false; readonly attempts: number; readonly object: string | null };

export interface RetwisEnv {
  /** Plain reads and writes, each atomic on its own. */
  readonly store: RetwisView;
  /** Runs `fn` over one consistent view of the store (safe: a read-only transaction). */
  readOnly<T>(fn: (view: RetwisView) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` and makes its writes atomically (safe: a serializable transaction, run again
   * on conflict; unsafe: `fn` writes plainly, one write at a time, and runs once).
   */
  readWrite<T>(fn: (view: RetwisView) => Promise<T>): Promise<ReadWriteOutcome<T>>;
  /** A new post id, unique across workers and restarts. */
  newPostId(): string;
}

/**
 * A source of post ids: a random prefix of 48 bits, drawn once per module instance (each
 * worker of each start has its own), then a counter; short, as a database sequence's.
 */
export function postIdSource(): () => string {
  const prefix = randomBytes(6).toString("base64url");
  let n = 0;
  return () => `${prefix}${(++n).toString(36)}`;
}

export interface RetwisUser {
  readonly id: string;
  readonly username: string;
  readonly password: string;
  readonly auth: string;
  readonly followers: readonly string[];
  readonly followees: readonly string[];
  readonly posts: readonly string[];
}

export interface RetwisPost {
  readonly id: string;
  readonly userId: string;
  readonly userName: string;
  readonly body: string;
}

interface UserObject {
  readonly username: string;
  readonly password: string;
  readonly auth: string;
  readonly followers: Readonly<Record<string, number>>;
  readonly followees: Readonly<Record<string, number>>;
  readonly posts: readonly string[];
}

// ---- input checks ------------------------------------------------------------------------

function record(input: unknown, what: string): Record<string, unknown> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw refuse(`${what} takes a JSON object, got ${JSON.stringify(input)}`);
  }
  return input as Record<string, unknown>;
}

function name(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > NAME_CHARS_MAX) {
    throw refuse(`${what} must be a string of 1 to ${NAME_CHARS_MAX} characters`);
  }
  return value;
}

function names(value: unknown, what: string, max: number): string[] {
  if (!Array.isArray(value) || value.length > max) {
    throw refuse(`${what} must be an array of at most ${max} strings`);
  }
  return value.map((v, i) => name(v, `${what}[${i}]`));
}

function optionalNames(input: Record<string, unknown>, key: string, max: number): string[] {
  return input[key] === undefined ? [] : names(input[key], key, max);
}

// ---- loading -------------------------------------------------------------------------------

const setOf = (list: readonly string[]): Record<string, number> =>
  Object.fromEntries(list.map((id) => [id, 1]));

function checkUser(value: unknown, i: number): RetwisUser {
  const u = record(value, `users[${i}]`);
  return {
    id: name(u["id"], `users[${i}].id`),
    username: name(u["username"], `users[${i}].username`),
    password: name(u["password"], `users[${i}].password`),
    auth: name(u["auth"], `users[${i}].auth`),
    followers: names(u["followers"], `users[${i}].followers`, FOLLOWS_PER_USER_MAX),
    followees: names(u["followees"], `users[${i}].followees`, FOLLOWS_PER_USER_MAX),
    posts: names(u["posts"], `users[${i}].posts`, USER_POSTS_MAX),
  };
}

function checkPost(value: unknown, i: number): RetwisPost {
  const p = record(value, `posts[${i}]`);
  const body = p["body"];
  if (typeof body !== "string" || body.length > POST_BODY_CHARS_MAX) {
    throw refuse(`posts[${i}].body must be a string of at most ${POST_BODY_CHARS_MAX}`);
  }
  return {
    id: name(p["id"], `posts[${i}].id`),
    userId: name(p["userId"], `posts[${i}].userId`),
    userName: name(p["userName"], `posts[${i}].userName`),
    body,
  };
}

/** Loads a batch of users, posts, and (optionally) the global timeline: one write per object. */
export async function load(env: RetwisEnv, input: unknown): Promise<{ objects: number }> {
  const i = record(input, "retwis-load");
  const users = i["users"] === undefined ? [] : i["users"];
  const posts = i["posts"] === undefined ? [] : i["posts"];
  if (!Array.isArray(users) || users.length > LOAD_USERS_MAX)
    throw refuse(`users must be an array of at most ${LOAD_USERS_MAX}`);
  if (!Array.isArray(posts) || posts.length > LOAD_POSTS_MAX)
    throw refuse(`posts must be an array of at most ${LOAD_POSTS_MAX}`);
  const timeline =
    i["timeline"] === undefined ? undefined : names(i["timeline"], "timeline", TIMELINE_POSTS_MAX);
  const checkedUsers = users.map(checkUser);
  const checkedPosts = posts.map(checkPost);
  const writes: Promise<unknown>[] = [];
  for (const u of checkedUsers) {
    writes.push(
      env.store.set(`user:${u.id}`, "", {
        username: u.username,
        password: u.password,
        auth: u.auth,
        followers: setOf(u.followers),
        followees: setOf(u.followees),
        posts: [...u.posts],
      }),
      env.store.set(`username:${u.username}`, "", { id: u.id }),
    );
  }
  for (const p of checkedPosts) writes.push(env.store.set(`post:${p.id}`, "", { ...p }));
  if (timeline !== undefined) writes.push(env.store.set("timeline", "", { posts: timeline }));
  await Promise.all(writes);
  return { objects: writes.length };
}

// ---- the requests --------------------------------------------------------------------------

export type LoginResult =
  { ok: true; userId: string; auth: string } | { ok: false; message: string };

export async function login(env: RetwisEnv, input: unknown): Promise<LoginResult> {
  const i = record(input, "retwis-login");
  const username = name(i["username"], "username");
  const password = name(i["password"], "password");
  return env.readOnly(async (v): Promise<LoginResult> => {
    const id = (await v.get(`username:${username}`, "id")) as string | undefined;
    if (id === undefined) return { ok: false, message: "no such user" };
    const user = (await v.get(`user:${id}`)) as UserObject | undefined;
    if (user === undefined) return { ok: false, message: `no user ${id}` };
    if (user.password !== password) return { ok: false, message: "wrong password" };
    return { ok: true, userId: id, auth: user.auth };
  });
}

export type ProfileResult =
  | { ok: true; username: string; numFollowers: number; numFollowees: number; numPosts: number }
  | { ok: false; message: string };

export async function profile(env: RetwisEnv, input: unknown): Promise<ProfileResult> {
  const userId = name(record(input, "retwis-profile")["userId"], "userId");
  const user = (await env.store.get(`user:${userId}`)) as UserObject | undefined;
  if (user === undefined) return { ok: false, message: `no user ${userId}` };
  return {
    ok: true,
    username: user.username,
    numFollowers: Object.keys(user.followers).length,
    numFollowees: Object.keys(user.followees).length,
    numPosts: user.posts.length,
  };
}

export type TimelineResult =
  { ok: true; posts: Array<{ body: string; user: string }> } | { ok: false; message: string };

/** A user's list (`userId`), or the global timeline (no `userId`): its newest posts. */
export async function timeline(env: RetwisEnv, input: unknown): Promise<TimelineResult> {
  const i = record(input ?? {}, "retwis-timeline");
  const userId = i["userId"] === undefined ? undefined : name(i["userId"], "userId");
  return env.readOnly(async (v): Promise<TimelineResult> => {
    const list = (
      userId === undefined
        ? await v.get("timeline", "posts")
        : await v.get(`user:${userId}`, "posts")
    ) as string[] | undefined;
    if (list === undefined) return { ok: false, message: "no such list" };
    const newest = list.slice(-TIMELINE_READ_MAX).reverse();
    const posts = (await Promise.all(newest.map((id) => v.get(`post:${id}`)))) as Array<
      RetwisPost | undefined
    >;
    return {
      ok: true,
      // An id whose post is not there never became a post (see the module's comment).
      posts: posts
        .filter((p): p is RetwisPost => p !== undefined)
        .map((p) => ({ body: p.body, user: p.userName })),
    };
  });
}

export type PostResult =
  | { ok: true; postId: string; attempts: number }
  | { ok: false; message: string; attempts: number }
  | { ok: false; conflict: true; attempts: number; object: string | null };

/** Shuffles in place (Fisher-Yates). */
function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export async function post(env: RetwisEnv, input: unknown): Promise<PostResult> {
  const i = record(input, "retwis-post");
  const userId = name(i["userId"], "userId");
  const body = i["body"];
  if (typeof body !== "string" || body.length > POST_BODY_CHARS_MAX) {
    throw refuse(`body must be a string of at most ${POST_BODY_CHARS_MAX} characters`);
  }
  const postId = env.newPostId();
  let published = false;
  const out = await env.readWrite(async (v) => {
    const user = (await v.get(`user:${userId}`)) as UserObject | undefined;
    if (user === undefined) return { ok: false as const, message: `no user ${userId}` };
    // Onto the global timeline before the post exists (once, whatever the retries): a reader
    // skips an id without its post, so a transaction that never commits leaves nothing
    // visible, and one that commits has its id there already.
    if (!published) {
      published = true;
      await env.store.push("timeline", "posts", postId, { max: TIMELINE_POSTS_MAX });
    }
    await v.set(`post:${postId}`, "", { id: postId, userId, userName: user.username, body });
    const notified = shuffle(Object.keys(user.followers)).slice(0, NOTIFIED_FOLLOWERS_MAX);
    await Promise.all(
      notified.map((f) => v.push(`user:${f}`, "posts", postId, { max: USER_POSTS_MAX })),
    );
    return { ok: true as const };
  });
  if (!out.ok) return { ok: false, conflict: true, attempts: out.attempts, object: out.object };
  if (!out.value.ok) return { ...out.value, attempts: out.attempts };
  return { ok: true, postId, attempts: out.attempts };
}

// ---- the invariants ------------------------------------------------------------------------

export interface CheckReport {
  /** Distinct post ids examined: those named, on the global timeline, in the users' lists. */
  readonly examined: number;
  /**
   * Posts named or on the global timeline that are whole: the object, an entry in as many of
   * its author's followers' lists as a post notifies, and on the global timeline.
   */
  readonly made: number;
  /** Other posts found in the lists examined: the object exists, and it is on the global timeline (or that is full). */
  readonly listed: number;
  /** Named (acknowledged to a client) but without a post object. */
  readonly lost: number;
  /** On the global timeline only, with no post object: a post that never committed (invisible). */
  readonly unpublished: number;
  /** A post with some of its entries missing, or a list entry without its post. */
  readonly halfMade: number;
  /** A post in more of its author's followers' lists than a post notifies. */
  readonly overNotified: number;
  /** Entries of one id twice in one list. */
  readonly duplicated: number;
  /** Missing only from lists that are full: their oldest entries are dropped, as designed. */
  readonly agedOut: number;
  readonly globalLength: number;
  /** Examined users whose list is full. */
  readonly fullLists: number;
  /** Up to CHECK_BAD_LISTED_MAX ids with what is wrong with them. */
  readonly bad: readonly string[];
}

/**
 * Checks the posts named in `postIds` (acknowledged ones) and those on the global timeline
 * in full, and the entries of the lists of `userIds`: each names an existing post, on the
 * global timeline unless that is full. Reads plainly: run it while no posts are being made.
 */
export async function check(env: RetwisEnv, input: unknown): Promise<CheckReport> {
  const i = record(input ?? {}, "retwis-check");
  const named = new Set(optionalNames(i, "postIds", CHECK_POSTS_MAX));
  const userIds = optionalNames(i, "userIds", CHECK_USERS_MAX);
  const s = env.store;
  const lists = new Map<string, Promise<readonly string[]>>();
  const listOf = (userId: string): Promise<readonly string[]> => {
    let l = lists.get(userId);
    if (l === undefined) {
      l = s.get(`user:${userId}`, "posts").then((v) => (v ?? []) as string[]);
      lists.set(userId, l);
    }
    return l;
  };
  const global = ((await s.get("timeline", "posts")) ?? []) as string[];
  const inLists = new Set<string>();
  let duplicated = 0;
  let fullLists = 0;
  const bad: string[] = [];
  const note = (what: string): void => {
    if (bad.length < CHECK_BAD_LISTED_MAX) bad.push(what);
  };
  const countDuplicates = (where: string, list: readonly string[]): void => {
    const seen = new Set<string>();
    for (const id of list) {
      if (seen.has(id)) {
        duplicated++;
        note(`${id}: twice in ${where}`);
      }
      seen.add(id);
    }
  };
  countDuplicates("the global timeline", global);
  for (const u of userIds) {
    const list = await listOf(u);
    if (list.length >= USER_POSTS_MAX) fullLists++;
    countDuplicates(`user ${u}'s list`, list);
    for (const id of list) inLists.add(id);
  }
  const candidates = new Set([...named, ...global, ...inLists]);
  const globalSet = new Set(global);
  let made = 0;
  let lost = 0;
  let unpublished = 0;
  let halfMade = 0;
  let overNotified = 0;
  let agedOut = 0;
  let listed = 0;
  for (const id of candidates) {
    const p = (await s.get(`post:${id}`)) as RetwisPost | undefined;
    if (p === undefined) {
      if (inLists.has(id)) {
        halfMade++;
        note(`${id}: in a follower's list without its post`);
      } else if (named.has(id)) {
        lost++;
        note(`${id}: acknowledged, but there is no post`);
      } else unpublished++;
      continue;
    }
    if (!named.has(id) && !globalSet.has(id)) {
      // Only in the lists examined: its post exists; it must be on the global timeline too,
      // unless that is full. (Its author's other followers' lists are not read.)
      if (global.length < TIMELINE_POSTS_MAX) {
        halfMade++;
        note(`${id}: in a follower's list, not on the global timeline`);
      } else listed++;
      continue;
    }
    const followers = Object.keys(
      ((await s.get(`user:${p.userId}`, "followers")) ?? {}) as Record<string, number>,
    );
    const expected = Math.min(NOTIFIED_FOLLOWERS_MAX, followers.length);
    let notified = 0;
    let missingFromFull = 0;
    for (const f of followers) {
      const list = await listOf(f);
      if (list.includes(id)) notified++;
      else if (list.length >= USER_POSTS_MAX) missingFromFull++;
    }
    let whole = true;
    let aged = false;
    if (notified > expected) {
      overNotified++;
      whole = false;
      note(`${id}: in ${notified} followers' lists, more than ${expected}`);
    } else if (notified < expected) {
      if (expected - notified <= missingFromFull) aged = true;
      else {
        halfMade++;
        whole = false;
        note(`${id}: in ${notified} of the ${expected} followers' lists it notifies`);
      }
    }
    if (!globalSet.has(id)) {
      if (global.length >= TIMELINE_POSTS_MAX) aged = true;
      else if (whole) {
        halfMade++;
        whole = false;
        note(`${id}: not on the global timeline`);
      }
    }
    if (!whole) continue;
    if (aged) agedOut++;
    else made++;
  }
  return {
    examined: candidates.size,
    made,
    listed,
    lost,
    unpublished,
    halfMade,
    overNotified,
    duplicated,
    agedOut,
    globalLength: global.length,
    fullLists,
    bad,
  };
}
