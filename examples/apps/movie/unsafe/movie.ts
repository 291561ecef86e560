/**
 * Movie review, the unsafe variant: the same code (../lib/movie.ts) as plain functions
 * calling each other with `ctx.invoke`, the state as plain boki-ts/store objects (a table
 * key is the object `<table>/<key>`), no workflow steps and no transactions. Each write is
 * atomic on its own (a list append is one `push`), so the variant is correct while nothing
 * fails; a crash loses what was in flight (a review whose components are written but which
 * is not stored or not listed stays so for good), and the check that a request id has no
 * components yet is a read before a write (two requests with one id may both pass it). The
 * baseline that prices exactly-once.
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import { openStore, StoreCache } from "boki-ts/store";
import * as movie from "../lib/movie.js";

const cache = new StoreCache();
const objectOf = (table: string, key: string): string => `${table}/${key}`;

function envOf(ctx: FunctionContext): movie.MovieEnv {
  const store = openStore(ctx.log, { cache });
  return {
    call: (fn, input) => ctx.invoke(fn, input),
    now: () => Promise.resolve(Date.now()),
    read: (table, key) => store.get(objectOf(table, key)),
    async write(table, key, value) {
      await store.set(objectOf(table, key), "", value);
    },
    async create(table, key, value) {
      if ((await store.get(objectOf(table, key))) !== undefined) return false;
      await store.set(objectOf(table, key), "", value);
      return true;
    },
    async append(table, key, item) {
      await store.push(objectOf(table, key), "ids", item, { max: movie.REVIEWS_PER_LIST_MAX });
    },
  };
}

function service<O>(
  name: string,
  handler: (env: movie.MovieEnv, input: unknown) => Promise<O>,
  timeoutMs?: number,
) {
  return defineFunction({
    name,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    handler: (ctx, input: unknown) => handler(envOf(ctx), input),
  });
}

/** An entry point: as a service, refusing bad input with a 400. */
function entry<O>(
  name: string,
  handler: (env: movie.MovieEnv, input: unknown) => Promise<O>,
  timeoutMs?: number,
) {
  return service(
    name,
    (env, input) => movie.refusingBadInput(() => handler(env, input)),
    timeoutMs,
  );
}

/** Time limit of a seed request and of a check, ms. */
const SEED_TIMEOUT_MS = 120_000;

export const compose = entry(movie.FN.compose, movie.compose);
export const composeReview = service(movie.FN.composeReview, movie.composeReview);
export const uniqueId = service(movie.FN.uniqueId, movie.uniqueId);
export const user = service(movie.FN.user, movie.user);
export const movieId = service(movie.FN.movieId, movie.movieId);
export const rating = service(movie.FN.rating, movie.ratingService);
export const text = service(movie.FN.text, movie.textService);
export const seed = entry(movie.FN.seed, movie.seed, SEED_TIMEOUT_MS);
export const seedWrite = service(movie.FN.seedWrite, movie.seedWrite, SEED_TIMEOUT_MS);
export const reviews = entry(movie.FN.reviews, movie.reviews);
export const check = entry(movie.FN.check, movie.check, SEED_TIMEOUT_MS);
