/**
 * Retwis, the safe variant: login and timeline are read-only transactions of boki-ts/store,
 * post a serializable read-write transaction (retried on conflict), profile a plain read.
 * The application itself is ../lib/retwis.ts.
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import { openStore, StoreCache, TransactionConflictError } from "boki-ts/store";
import * as retwis from "../lib/retwis.js";

export {
  NOTIFIED_FOLLOWERS_MAX,
  TIMELINE_POSTS_MAX,
  TIMELINE_READ_MAX,
  USER_POSTS_MAX,
  type RetwisPost,
  type RetwisUser,
} from "../lib/retwis.js";

/** Shared by this module's invocations in one worker: they all read the same log. */
const cache = new StoreCache();
/** Attempts of a post's transaction beyond the first, on conflict. */
const POST_RETRIES = 8;
/** `RETWIS_SNAPSHOT=tail` in boki dev's environment: posts take tail snapshots (no begin record). */
const SNAPSHOT =
  process.env["RETWIS_SNAPSHOT"] === "tail" ? ("tail" as const) : ("begin-record" as const);
const newPostId = retwis.postIdSource();

function envOf(ctx: FunctionContext): retwis.RetwisEnv {
  const store = openStore(ctx.log, { cache });
  return {
    store,
    readOnly: (fn) => store.transaction((tx) => fn(tx), { readOnly: true }),
    async readWrite(fn) {
      let attempts = 0;
      try {
        const value = await store.transaction(
          (tx) => {
            attempts++;
            return fn(tx);
          },
          { retries: POST_RETRIES, snapshot: SNAPSHOT },
        );
        return { ok: true, value, attempts };
      } catch (err) {
        if (err instanceof TransactionConflictError)
          return { ok: false, attempts, object: err.object ?? null };
        throw err;
      }
    },
    newPostId,
  };
}

/** Loads a batch of users, posts, and (optionally) the global timeline. */
export const load = defineFunction({
  name: "retwis-load",
  timeoutMs: 120_000,
  handler: (ctx, input: unknown) => retwis.load(envOf(ctx), input),
});

export const login = defineFunction({
  name: "retwis-login",
  handler: (ctx, input: unknown) => retwis.login(envOf(ctx), input),
});

export const profile = defineFunction({
  name: "retwis-profile",
  handler: (ctx, input: unknown) => retwis.profile(envOf(ctx), input),
});

export const timeline = defineFunction({
  name: "retwis-timeline",
  handler: (ctx, input: unknown) => retwis.timeline(envOf(ctx), input),
});

export const post = defineFunction({
  name: "retwis-post",
  handler: (ctx, input: unknown) => retwis.post(envOf(ctx), input),
});

/** Checks the invariants over the posts named, the global timeline and the users' lists. */
export const check = defineFunction({
  name: "retwis-check",
  timeoutMs: 120_000,
  handler: (ctx, input: unknown) => retwis.check(envOf(ctx), input),
});

/** This worker's cache counters (log reads by kind, hits): for profiling the benchmark. */
export const stats = defineFunction({
  name: "retwis-cache-stats",
  handler: () => JSON.parse(JSON.stringify(cache.stats)) as object,
});
