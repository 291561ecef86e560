/**
 * Retwis (a Twitter clone, as in Boki's evaluation) on the store, for `npm run bench -- store`.
 *
 * Objects:
 *   user:<id>        { username, password, auth, followers: {id: 1}, followees: {id: 1}, posts: [postId] }
 *   username:<name>  { id }
 *   post:<id>        { id, userId, userName, body }
 *   timeline         { posts: [postId] }   (the newest TIMELINE_POSTS_MAX posts of everyone)
 *
 * Requests: login and timeline are read-only transactions, profile a plain read, post a
 * serializable read-write transaction (the post, and its id pushed onto up to 4 followers'
 * lists) followed by a plain push onto the global timeline, as Boki's Retwis does.
 */
import { defineFunction } from "../../../src/index.js";
import {
  StoreCache,
  TransactionConflictError,
  openStore,
  type Transaction,
} from "boki-ts/store";

/** Shared by this module's invocations in one worker: they all read the same log. */
const cache = new StoreCache();

export const USER_POSTS_MAX = 24;
export const TIMELINE_POSTS_MAX = 96;
export const NOTIFIED_FOLLOWERS_MAX = 4;
export const TIMELINE_READ_MAX = 8;
const POST_RETRIES = 8;
/** `RETWIS_SNAPSHOT=tail` in boki dev's environment: posts take tail snapshots (no begin record). */
const SNAPSHOT =
  process.env["RETWIS_SNAPSHOT"] === "tail" ? ("tail" as const) : ("begin-record" as const);

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

const set = (list: readonly string[]): Record<string, number> =>
  Object.fromEntries(list.map((id) => [id, 1]));

/** Loads a batch of users, posts, and (optionally) the timeline: one record per object. */
export const load = defineFunction({
  name: "retwis-load",
  timeoutMs: 120_000,
  async handler(ctx, input: { users?: RetwisUser[]; posts?: RetwisPost[]; timeline?: string[] }) {
    const store = openStore(ctx.log, { cache });
    const writes: Promise<unknown>[] = [];
    for (const u of input.users ?? []) {
      writes.push(
        store.set(`user:${u.id}`, "", {
          username: u.username,
          password: u.password,
          auth: u.auth,
          followers: set(u.followers),
          followees: set(u.followees),
          posts: [...u.posts],
        }),
        store.set(`username:${u.username}`, "", { id: u.id }),
      );
    }
    for (const p of input.posts ?? []) writes.push(store.set(`post:${p.id}`, "", { ...p }));
    if (input.timeline !== undefined)
      writes.push(store.set("timeline", "", { posts: input.timeline }));
    await Promise.all(writes);
    return { objects: writes.length };
  },
});

export const login = defineFunction({
  name: "retwis-login",
  async handler(ctx, input: { username: string; password: string }) {
    const store = openStore(ctx.log, { cache });
    return store.transaction(
      async (tx) => {
        const id = (await tx.get(`username:${input.username}`, "id")) as string | undefined;
        if (id === undefined) return { ok: false, message: "no such user" };
        const user = (await tx.get(`user:${id}`)) as { password: string; auth: string } | undefined;
        if (user === undefined) return { ok: false, message: `no user ${id}` };
        if (user.password !== input.password) return { ok: false, message: "wrong password" };
        return { ok: true, userId: id, auth: user.auth };
      },
      { readOnly: true },
    );
  },
});

export const profile = defineFunction({
  name: "retwis-profile",
  async handler(ctx, input: { userId: string }) {
    const store = openStore(ctx.log, { cache });
    const user = (await store.get(`user:${input.userId}`)) as
      { username: string; followers: object; followees: object; posts: unknown[] } | undefined;
    if (user === undefined) return { ok: false, message: `no user ${input.userId}` };
    return {
      ok: true,
      username: user.username,
      numFollowers: Object.keys(user.followers).length,
      numFollowees: Object.keys(user.followees).length,
      numPosts: user.posts.length,
    };
  },
});

async function readPosts(tx: Transaction, ids: readonly string[]): Promise<object[]> {
  const newest = ids.slice(-TIMELINE_READ_MAX).reverse();
  const posts = await Promise.all(newest.map((id) => tx.get(`post:${id}`)));
  return posts
    .filter((p): p is { body: string; userName: string } => p !== undefined)
    .map((p) => ({ body: p.body, user: p.userName }));
}

export const timeline = defineFunction({
  name: "retwis-timeline",
  async handler(ctx, input: { userId?: string }) {
    const store = openStore(ctx.log, { cache });
    return store.transaction(
      async (tx) => {
        const list =
          input.userId === undefined
            ? ((await tx.get("timeline", "posts")) as string[] | undefined)
            : ((await tx.get(`user:${input.userId}`, "posts")) as string[] | undefined);
        if (list === undefined) return { ok: false, message: "no such list" };
        return { ok: true, posts: await readPosts(tx, list) };
      },
      { readOnly: true },
    );
  },
});

export const post = defineFunction({
  name: "retwis-post",
  async handler(ctx, input: { userId: string; body: string }) {
    const store = openStore(ctx.log, { cache });
    let postId = "";
    let attempts = 0;
    let out: { ok: boolean; message?: string };
    try {
      out = await store.transaction(
        async (tx) => {
          attempts++;
          // The begin record's seqnum is unique: a short post id (as short as the peer's).
          postId = SNAPSHOT === "tail" ? ctx.newId() : tx.snapshot.toString(36);
          const user = (await tx.get(`user:${input.userId}`)) as
            { username: string; followers: Record<string, number> } | undefined;
          if (user === undefined) return { ok: false, message: `no user ${input.userId}` };
          await tx.set(`post:${postId}`, "", {
            id: postId,
            userId: input.userId,
            userName: user.username,
            body: input.body,
          });
          const followers = Object.keys(user.followers);
          // A random few of the followers get the post in their lists.
          for (let i = followers.length - 1; i > 0; i--) {
            const j = Math.floor(Math.random() * (i + 1));
            [followers[i], followers[j]] = [followers[j]!, followers[i]!];
          }
          await Promise.all(
            followers
              .slice(0, NOTIFIED_FOLLOWERS_MAX)
              .map((f) => tx.push(`user:${f}`, "posts", postId, { max: USER_POSTS_MAX })),
          );
          return { ok: true };
        },
        { retries: POST_RETRIES, snapshot: SNAPSHOT },
      );
    } catch (err) {
      if (err instanceof TransactionConflictError) {
        return { ok: false, conflict: true, attempts, object: err.object ?? null };
      }
      throw err;
    }
    if (out.ok) await store.push("timeline", "posts", postId, { max: TIMELINE_POSTS_MAX });
    return { ...out, attempts };
  },
});

/** This worker's cache counters (log reads by kind, hits): for profiling the benchmark. */
export const stats = defineFunction({
  name: "retwis-cache-stats",
  handler: () => JSON.parse(JSON.stringify(cache.stats)) as object,
});
