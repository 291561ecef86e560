/**
 * Retwis, the unsafe variant: the same requests (../lib/retwis.ts) on boki-ts/store without
 * transactions. Every read and write is a plain one, atomic on its own object only: a
 * login or a timeline may read objects as of different moments, and a post writes its
 * object and its followers' entries one by one, so a crash in between leaves it half made.
 * The baseline that prices the transactions.
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import { openStore, StoreCache } from "boki-ts/store";
import * as retwis from "../lib/retwis.js";

const cache = new StoreCache();
const newPostId = retwis.postIdSource();

function envOf(ctx: FunctionContext): retwis.RetwisEnv {
  const store = openStore(ctx.log, { cache });
  return {
    store,
    readOnly: (fn) => fn(store),
    readWrite: async (fn) => ({ ok: true, value: await fn(store), attempts: 1 }),
    newPostId,
  };
}

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

export const check = defineFunction({
  name: "retwis-check",
  timeoutMs: 120_000,
  handler: (ctx, input: unknown) => retwis.check(envOf(ctx), input),
});
