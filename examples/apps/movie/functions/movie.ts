/**
 * Movie review, the safe variant: one boki-ts/flow workflow per review (movie-compose-review).
 * Its calls of the four services are `wf.invoke`s of plain functions, whose answers are
 * logged on the workflow's stream: a re-executed workflow finds them there, and asks a
 * service again only if it died between the call and the log. The services only read, and
 * answer the same for the same request, so asking again changes nothing. The workflow then
 * writes to flow's durable tables, whose writes are exactly once: the components under the
 * request's id with a compare-and-set on a key never written (`condWrite` at version 0, its
 * outcome logged: the one review of the request id), the review, and each list with a
 * read-modify-write (`condWrite`). The recovery task resumes a workflow a crash left
 * unfinished. The application itself is ../lib/movie.ts.
 */
import { defineFunction, type FunctionContext, type JsonValue } from "boki-ts";
import { defineWorkflow, readTable, type WorkflowContext } from "boki-ts/flow";
import * as movie from "../lib/movie.js";

/**
 * Time limit of one execution of the workflows, ms. After a crash, the recovery task resumes
 * an instance started synchronously once this has passed since its last logged operation.
 */
const WORKFLOW_TIMEOUT_MS = 10_000;
/** Time limit of a seed request (its writes are logged one after the other) and of a check, ms. */
const SEED_TIMEOUT_MS = 120_000;
/** Attempts of a read-modify-write of one table key that keeps losing to other writers. */
const KEY_UPDATE_ATTEMPTS_MAX = 64;

/** Reads `key`, changes it, and writes it back if no one wrote it meanwhile; else again. */
async function update(
  wf: WorkflowContext,
  table: string,
  key: string,
  change: (old: JsonValue | undefined) => JsonValue,
): Promise<JsonValue> {
  for (let attempt = 1; attempt <= KEY_UPDATE_ATTEMPTS_MAX; attempt++) {
    const e = await wf.readEntry(table, key);
    const next = change(e.value);
    if (await wf.condWrite(table, key, next, e.version)) return next;
  }
  throw new movie.MovieError(
    "BUSY",
    `${table}/${key} changed under ${KEY_UPDATE_ATTEMPTS_MAX} attempts (KEY_UPDATE_ATTEMPTS_MAX)`,
  );
}

function envOf(wf: WorkflowContext): movie.MovieEnv {
  return {
    call: (fn, input) => wf.invoke(fn, input),
    now: () => wf.now(),
    read: (table, key) => wf.read(table, key),
    write: (table, key, value) => wf.write(table, key, value),
    create: (table, key, value) => wf.condWrite(table, key, value, 0),
    async append(table, key, item) {
      await update(wf, table, key, (old) => movie.withItem(old, item) as unknown as JsonValue);
    },
  };
}

/** The plain functions' environment: table reads from outside a workflow, plain calls. */
function frontOf(ctx: FunctionContext): movie.MovieFrontEnv {
  return {
    read: async (table, key) => (await readTable(ctx.log, table, key)).value,
    call: (fn, input) => ctx.invoke(fn, input),
  };
}

/** A plain function reading the tables (a service behind the frontend). */
function reader<O>(
  name: string,
  handler: (env: movie.MovieFrontEnv, input: unknown) => Promise<O>,
) {
  return defineFunction({ name, handler: (ctx, input: unknown) => handler(frontOf(ctx), input) });
}

function entry<O>(
  name: string,
  handler: (env: movie.MovieFrontEnv, input: unknown) => Promise<O>,
  timeoutMs?: number,
) {
  return defineFunction({
    name,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    handler: (ctx, input: unknown) => movie.refusingBadInput(() => handler(frontOf(ctx), input)),
  });
}

function service<O extends JsonValue>(
  name: string,
  handler: (env: movie.MovieEnv, input: unknown) => Promise<O>,
  timeoutMs = WORKFLOW_TIMEOUT_MS,
) {
  return defineWorkflow({
    name,
    timeoutMs,
    handler: (wf, input: JsonValue) => handler(envOf(wf), input),
  });
}

export const compose = entry(movie.FN.compose, movie.compose);
export const composeReview = service(movie.FN.composeReview, async (env, input) => {
  const r = await movie.composeReview(env, input);
  return { ...r };
});
export const uniqueId = reader(movie.FN.uniqueId, movie.uniqueId);
export const user = reader(movie.FN.user, movie.user);
export const movieId = reader(movie.FN.movieId, movie.movieId);
export const rating = reader(movie.FN.rating, movie.ratingService);
export const text = reader(movie.FN.text, movie.textService);
export const seed = entry(movie.FN.seed, movie.seed, SEED_TIMEOUT_MS);
export const seedWrite = service(movie.FN.seedWrite, movie.seedWrite, SEED_TIMEOUT_MS);
export const reviews = entry(movie.FN.reviews, movie.reviews);
export const check = entry(movie.FN.check, movie.check, SEED_TIMEOUT_MS);
