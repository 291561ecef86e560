/**
 * Movie review: the compose-review path of DeathStarBench's media service (the workload of
 * Beldi and BokiFlow), written once against `MovieEnv`, the few operations in which the
 * safe variant (functions/, one boki-ts/flow workflow per review over durable tables) and
 * the unsafe one (unsafe/, plain invocations and plain store writes) differ.
 *
 *   movie-compose (the frontend: checks the request, refuses bad input with a 400)
 *   movie-compose-review  asks the four services at once, then counts and stores the review
 *     ├─ movie-unique-id   the review id (from the request's id and time)  ─┐ each answers
 *     ├─ movie-user        username → user id                              │ its component(s);
 *     ├─ movie-movie-id    title → movie id                                ├ none writes:
 *     │    └─ movie-rating the rating                                      │ asked again, each
 *     └─ movie-text        the text                                        ─┘ answers the same
 *   then, by movie-compose-review itself:
 *     the five components under the request's id (only if the id has none: one review a request)
 *     the review, by id
 *     its id appended to the user's list and to the movie's list
 *
 * Tables (a key's value is JSON):
 *   movie-users          username → { userId, username }
 *   movie-titles         title → { movieId, title }
 *   movie-compose        request id → its components { reqId, createdAt, count, components }
 *   movie-reviews        review id → the review
 *   movie-user-reviews   user id → { ids: [review id, ...] }   (the newest REVIEWS_PER_LIST_MAX)
 *   movie-movie-reviews  movie id → { ids: [review id, ...] }
 *
 * A compose request names its own id (`reqId`); its components are created under it only if
 * it has none yet, so a request id composes one review, once.
 *
 * The entry points (movie-compose, movie-seed, movie-reviews, movie-check) are plain
 * functions in both variants; they refuse bad input with InvocationError INVALID_ARGUMENT
 * (HTTP 400), naming the MovieError code. The services behind them check their input too
 * and fail with a MovieError.
 */
import { createHash } from "node:crypto";
import { InvocationError, type JsonValue } from "boki-ts";

export const FN = {
  compose: "movie-compose",
  composeReview: "movie-compose-review",
  uniqueId: "movie-unique-id",
  user: "movie-user",
  movieId: "movie-movie-id",
  rating: "movie-rating",
  text: "movie-text",
  seed: "movie-seed",
  seedWrite: "movie-seed-write",
  reviews: "movie-reviews",
  check: "movie-check",
} as const;

export const TABLES = {
  users: "movie-users",
  titles: "movie-titles",
  compose: "movie-compose",
  reviews: "movie-reviews",
  userReviews: "movie-user-reviews",
  movieReviews: "movie-movie-reviews",
} as const;

/** What a review is made of; it is complete when all five are there. */
export const COMPONENTS = ["reviewId", "userId", "movieId", "rating", "text"] as const;
export type Component = (typeof COMPONENTS)[number];

/** Longest request id, username, title, user id or movie id, in characters. */
export const NAME_CHARS_MAX = 256;
/** Longest review text, in characters. */
export const REVIEW_TEXT_CHARS_MAX = 4096;
/** Ratings are integers from 0 to this. */
export const RATING_MAX = 10;
/** Review ids a user's or a movie's list keeps (the newest; older ones are dropped). */
export const REVIEWS_PER_LIST_MAX = 1000;
/** Users plus movies one seed request may carry. */
export const SEED_ENTRIES_MAX = 500;
/** Reviews one read returns (the newest). */
export const REVIEWS_READ_MAX = 10;
/** Request ids one check may name. */
export const CHECK_REQUESTS_MAX = 500;
/** User ids plus movie ids whose lists one check may count. */
export const CHECK_LISTS_MAX = 2000;
/** Problems a check report lists (the counts cover all). */
const CHECK_BAD_LISTED_MAX = 20;

export type MovieErrorCode =
  | "INVALID_ARGUMENT"
  | "UNKNOWN_USER"
  | "UNKNOWN_MOVIE"
  /** The request id composed a review before. */
  | "DUPLICATE_REQUEST"
  /** A service answered without a component the review needs. */
  | "MISSING_COMPONENT"
  /** A key changed under every attempt of a read-modify-write. */
  | "BUSY";

/** A request the application refuses: a clear failure of the function, not retried. */
export class MovieError extends Error {
  readonly code: MovieErrorCode;
  readonly retryable = false;
  constructor(code: MovieErrorCode, message: string) {
    super(message);
    this.name = "MovieError";
    this.code = code;
  }
}

/** The codes an entry point answers as a refusal of its input (HTTP 400). */
const REFUSALS: ReadonlySet<MovieErrorCode> = new Set([
  "INVALID_ARGUMENT",
  "UNKNOWN_USER",
  "UNKNOWN_MOVIE",
  "DUPLICATE_REQUEST",
]);

/**
 * Runs an entry point: a MovieError refusing the input becomes InvocationError
 * INVALID_ARGUMENT (HTTP 400) with the code in the message; anything else passes through.
 */
export async function refusingBadInput<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof MovieError && REFUSALS.has(err.code)) {
      throw new InvocationError("INVALID_ARGUMENT", `${err.code}: ${err.message}`);
    }
    throw err;
  }
}

/** A review's components, under its request's id: written once, with all five. */
export interface UnderConstruction {
  readonly reqId: string;
  readonly createdAt: number;
  readonly count: number;
  readonly components: { readonly [C in Component]?: JsonValue };
}

export interface Review {
  readonly reviewId: string;
  readonly reqId: string;
  readonly userId: string;
  readonly movieId: string;
  readonly rating: number;
  readonly text: string;
  readonly timestamp: number;
}

export interface ReviewList {
  readonly ids: readonly string[];
}

/**
 * What the entry points and the four services use: table reads (safe: flow's `readTable`;
 * unsafe: plain store reads) and calls (`ctx.invoke` in both). None of them writes.
 */
export interface MovieFrontEnv {
  read(table: string, key: string): Promise<JsonValue | undefined>;
  call(fn: string, input: JsonValue): Promise<JsonValue>;
}

/** What ComposeReview (and the seed's writes) use. */
export interface MovieEnv extends MovieFrontEnv {
  /** Calls a service (safe: `wf.invoke`, its answer logged: a re-execution does not ask again). */
  call(fn: string, input: JsonValue): Promise<JsonValue>;
  /** The time in ms (safe: logged, the same in every execution). */
  now(): Promise<number>;
  /** Writes `value` (safe: exactly once). */
  write(table: string, key: string, value: JsonValue): Promise<void>;
  /** Writes `value` only if `key` has no value yet; whether it wrote (safe: the outcome logged). */
  create(table: string, key: string, value: JsonValue): Promise<boolean>;
  /**
   * Appends `item` to the list at `key`, atomically (keeping the newest REVIEWS_PER_LIST_MAX;
   * safe: exactly once).
   */
  append(table: string, key: string, item: string): Promise<void>;
}

// ---- input checks ------------------------------------------------------------------------

function fields(input: unknown, what: string): Record<string, unknown> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new MovieError("INVALID_ARGUMENT", `${what} takes a JSON object`);
  }
  return input as Record<string, unknown>;
}

function name(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > NAME_CHARS_MAX) {
    throw new MovieError(
      "INVALID_ARGUMENT",
      `${what} must be a string of 1 to ${NAME_CHARS_MAX} characters`,
    );
  }
  return value;
}

function rating(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > RATING_MAX) {
    throw new MovieError("INVALID_ARGUMENT", `rating must be an integer from 0 to ${RATING_MAX}`);
  }
  return value;
}

function text(value: unknown): string {
  if (typeof value !== "string" || value.length === 0 || value.length > REVIEW_TEXT_CHARS_MAX) {
    throw new MovieError(
      "INVALID_ARGUMENT",
      `text must be a string of 1 to ${REVIEW_TEXT_CHARS_MAX} characters`,
    );
  }
  return value;
}

function time(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new MovieError("INVALID_ARGUMENT", `${what} must be a time in ms`);
  }
  return value;
}

function names(value: unknown, what: string, max: number): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > max) {
    throw new MovieError("INVALID_ARGUMENT", `${what} must be an array of at most ${max}`);
  }
  return value.map((v, i) => name(v, `${what}[${i}]`));
}

// ---- pure steps of the protocol ------------------------------------------------------------

/** A list with one more item, the oldest dropped beyond REVIEWS_PER_LIST_MAX. */
export function withItem(old: JsonValue | undefined, item: string): ReviewList {
  const ids = old === undefined ? [] : (old as unknown as ReviewList).ids;
  return { ids: [...ids, item].slice(-REVIEWS_PER_LIST_MAX) };
}

/** The review its five components make. */
function reviewOf(r: UnderConstruction): Review {
  const c = r.components;
  return {
    reviewId: c.reviewId as string,
    reqId: r.reqId,
    userId: c.userId as string,
    movieId: c.movieId as string,
    rating: c.rating as number,
    text: c.text as string,
    timestamp: r.createdAt,
  };
}

// ---- the services ------------------------------------------------------------------------

export interface ComposeResult {
  readonly reqId: string;
  readonly reviewId: string;
}

interface ComposeRequest {
  readonly reqId: string;
  readonly username: string;
  readonly title: string;
  readonly rating: number;
  readonly text: string;
}

function composeRequest(input: unknown, what: string): ComposeRequest {
  const i = fields(input, what);
  return {
    reqId: name(i["reqId"], "reqId"),
    username: name(i["username"], "username"),
    title: name(i["title"], "title"),
    rating: rating(i["rating"]),
    text: text(i["text"]),
  };
}

/** What ComposeReview answers when the request's id composed a review before. */
export interface DuplicateRequest {
  readonly reqId: string;
  readonly duplicate: true;
}

/**
 * The frontend: checks the request (its fields, that the user and the movie exist) and has
 * it composed. A request whose id composed a review before is refused (DUPLICATE_REQUEST).
 */
export async function compose(env: MovieFrontEnv, input: unknown): Promise<ComposeResult> {
  const req = composeRequest(input, FN.compose);
  const [user, movie] = await Promise.all([
    env.read(TABLES.users, req.username),
    env.read(TABLES.titles, req.title),
  ]);
  if (user === undefined) throw new MovieError("UNKNOWN_USER", `no user named ${req.username}`);
  if (movie === undefined) throw new MovieError("UNKNOWN_MOVIE", `no movie titled ${req.title}`);
  // The request's time: the review's timestamp and part of its id. It goes in the input of
  // ComposeReview, which the safe variant logs with the workflow's start.
  const out = (await env.call(FN.composeReview, { ...req, createdAt: Date.now() })) as unknown as
    ComposeResult | DuplicateRequest;
  if ("duplicate" in out) {
    throw new MovieError("DUPLICATE_REQUEST", `request ${req.reqId} composed a review before`);
  }
  return out;
}

/** Characters of the request id's hash in a review id. */
const REVIEW_ID_HASH_CHARS = 12;

/**
 * ComposeReview (`{ reqId, username, title, rating, text, createdAt? }`; without `createdAt`,
 * the time it starts): asks the four services at once for the review's components, counts them,
 * and stores the review: first its five components under the request's id, written only if
 * the id has none (else the request is a duplicate and nothing more is written), then the
 * review by id, then its id in its user's and its movie's list.
 */
export async function composeReview(
  env: MovieEnv,
  input: unknown,
): Promise<ComposeResult | DuplicateRequest> {
  const {
    reqId,
    username,
    title,
    rating: stars,
    text: body,
  } = composeRequest(input, FN.composeReview);
  const at = fields(input, FN.composeReview)["createdAt"];
  const createdAt = at === undefined ? await env.now() : time(at, "createdAt");
  const [reviewId, userId, movie, checkedText] = await Promise.all([
    env.call(FN.uniqueId, { reqId, createdAt }),
    env.call(FN.user, { reqId, username }),
    env.call(FN.movieId, { reqId, title, rating: stars }),
    env.call(FN.text, { reqId, text: body }),
  ]);
  const m = (movie ?? {}) as { movieId?: JsonValue; rating?: JsonValue };
  const answers: Record<Component, JsonValue | undefined> = {
    reviewId,
    userId,
    movieId: m.movieId,
    rating: m.rating,
    text: checkedText,
  };
  const components: { [C in Component]?: JsonValue } = {};
  for (const c of COMPONENTS) {
    const v = answers[c];
    if (v !== undefined && v !== null) components[c] = v;
  }
  const count = COMPONENTS.filter((c) => components[c] !== undefined).length;
  if (count !== COMPONENTS.length) {
    const missing = COMPONENTS.filter((c) => components[c] === undefined);
    throw new MovieError("MISSING_COMPONENT", `request ${reqId} lacks ${missing.join(", ")}`);
  }
  const composed: UnderConstruction = { reqId, createdAt, count, components };
  if (!(await env.create(TABLES.compose, reqId, composed as unknown as JsonValue))) {
    return { reqId, duplicate: true };
  }
  const review = reviewOf(composed);
  await env.write(TABLES.reviews, review.reviewId, review as unknown as JsonValue);
  // One list after the other: an append reads before it writes, so two at once would ask for
  // their writes in the order their reads came back, which a re-execution may not repeat.
  await env.append(TABLES.userReviews, review.userId, review.reviewId);
  await env.append(TABLES.movieReviews, review.movieId, review.reviewId);
  return { reqId, reviewId: review.reviewId };
}

/**
 * A review id: the request's time and a hash of its id, as a snowflake id would carry a
 * time and a sequence number. The same request asks the same id (the service may be asked
 * again after a crash).
 */
export async function uniqueId(_env: MovieFrontEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.uniqueId);
  const reqId = name(i["reqId"], "reqId");
  const at = time(i["createdAt"], "createdAt");
  const hash = BigInt(`0x${createHash("sha256").update(reqId, "utf8").digest("hex").slice(0, 16)}`)
    .toString(36)
    .padStart(REVIEW_ID_HASH_CHARS, "0")
    .slice(-REVIEW_ID_HASH_CHARS);
  return Promise.resolve(`${at.toString(36)}-${hash}`);
}

/** Username → user id (a read). */
export async function user(env: MovieFrontEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.user);
  name(i["reqId"], "reqId");
  const username = name(i["username"], "username");
  const u = (await env.read(TABLES.users, username)) as { userId: string } | undefined;
  if (u === undefined) throw new MovieError("UNKNOWN_USER", `no user named ${username}`);
  return u.userId;
}

/** Title → movie id (a read), with the rating from the rating service. */
export async function movieId(
  env: MovieFrontEnv,
  input: unknown,
): Promise<{ movieId: string; rating: number }> {
  const i = fields(input, FN.movieId);
  const reqId = name(i["reqId"], "reqId");
  const title = name(i["title"], "title");
  const stars = rating(i["rating"]);
  const [m, r] = await Promise.all([
    env.read(TABLES.titles, title) as Promise<{ movieId: string } | undefined>,
    env.call(FN.rating, { reqId, rating: stars }),
  ]);
  if (m === undefined) throw new MovieError("UNKNOWN_MOVIE", `no movie titled ${title}`);
  return { movieId: m.movieId, rating: rating(r) };
}

export async function ratingService(_env: MovieFrontEnv, input: unknown): Promise<number> {
  const i = fields(input, FN.rating);
  name(i["reqId"], "reqId");
  return Promise.resolve(rating(i["rating"]));
}

/** The text, checked. */
export async function textService(_env: MovieFrontEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.text);
  name(i["reqId"], "reqId");
  return Promise.resolve(text(i["text"]));
}

// ---- data and reads ------------------------------------------------------------------------

export interface SeedInput {
  readonly users?: ReadonlyArray<{ readonly username: string; readonly userId: string }>;
  readonly movies?: ReadonlyArray<{ readonly title: string; readonly movieId: string }>;
}

/** Registers users and movies (writing the same entries again changes nothing). */
export async function seed(env: MovieFrontEnv, input: unknown): Promise<{ entries: number }> {
  const i = fields(input, FN.seed);
  const users = i["users"] ?? [];
  const movies = i["movies"] ?? [];
  if (!Array.isArray(users) || !Array.isArray(movies)) {
    throw new MovieError("INVALID_ARGUMENT", "users and movies must be arrays");
  }
  if (users.length + movies.length > SEED_ENTRIES_MAX) {
    throw new MovieError(
      "INVALID_ARGUMENT",
      `a seed request carries at most ${SEED_ENTRIES_MAX} users and movies`,
    );
  }
  const entries: Array<[string, string, JsonValue]> = [];
  users.forEach((u: unknown, k) => {
    const f = fields(u, `users[${k}]`);
    const username = name(f["username"], `users[${k}].username`);
    entries.push([
      TABLES.users,
      username,
      { username, userId: name(f["userId"], `users[${k}].userId`) },
    ]);
  });
  movies.forEach((m: unknown, k) => {
    const f = fields(m, `movies[${k}]`);
    const title = name(f["title"], `movies[${k}].title`);
    entries.push([
      TABLES.titles,
      title,
      { title, movieId: name(f["movieId"], `movies[${k}].movieId`) },
    ]);
  });
  await env.call(FN.seedWrite, { entries });
  return { entries: entries.length };
}

/** Writes the table entries a seed request checked: `[table, key, value]`. */
export async function seedWrite(env: MovieEnv, input: unknown): Promise<number> {
  const entries = fields(input, FN.seedWrite)["entries"];
  if (!Array.isArray(entries) || entries.length > SEED_ENTRIES_MAX) {
    throw new MovieError(
      "INVALID_ARGUMENT",
      `entries must be an array of at most ${SEED_ENTRIES_MAX}`,
    );
  }
  const tables = new Set<string>([TABLES.users, TABLES.titles]);
  const writes = entries.map((e: unknown) => {
    if (!Array.isArray(e) || e.length !== 3 || !tables.has(e[0] as string)) {
      throw new MovieError(
        "INVALID_ARGUMENT",
        "an entry is [table, key, value] of the users or titles",
      );
    }
    return e as [string, string, JsonValue];
  });
  await Promise.all(writes.map(([t, k, v]) => env.write(t, name(k, "a key"), v)));
  return writes.length;
}

/** The newest reviews of a user (`username`) or of a movie (`title`). */
export async function reviews(env: MovieFrontEnv, input: unknown): Promise<Review[]> {
  const i = fields(input, FN.reviews);
  let list: JsonValue | undefined;
  if (i["username"] !== undefined) {
    const username = name(i["username"], "username");
    const u = (await env.read(TABLES.users, username)) as { userId: string } | undefined;
    if (u === undefined) throw new MovieError("UNKNOWN_USER", `no user named ${username}`);
    list = await env.read(TABLES.userReviews, u.userId);
  } else {
    const title = name(i["title"], "title (or username)");
    const m = (await env.read(TABLES.titles, title)) as { movieId: string } | undefined;
    if (m === undefined) throw new MovieError("UNKNOWN_MOVIE", `no movie titled ${title}`);
    list = await env.read(TABLES.movieReviews, m.movieId);
  }
  const ids = list === undefined ? [] : (list as unknown as ReviewList).ids;
  const newest = ids.slice(-REVIEWS_READ_MAX).reverse();
  return (await Promise.all(newest.map((id) => env.read(TABLES.reviews, id)))).filter(
    (r) => r !== undefined,
  ) as unknown as Review[];
}

// ---- the invariants ------------------------------------------------------------------------

export interface MovieCheckReport {
  /** Request ids examined. */
  readonly requests: number;
  /** Five components counted once, the review stored, once in its user's and its movie's list. */
  readonly complete: number;
  /** No review under construction: the request was never accepted. */
  readonly notStarted: number;
  /** Fewer than five components. */
  readonly partial: number;
  /** A count above five, or one that disagrees with the components. */
  readonly overCounted: number;
  /** Complete, but the review is missing or differs from its components. */
  readonly unstored: number;
  readonly userListMissing: number;
  readonly userListDuplicated: number;
  readonly movieListMissing: number;
  readonly movieListDuplicated: number;
  /** Missing from a full list only (its oldest entries are dropped, as designed). */
  readonly agedOut: number;
  /** Entries in the lists of the `userIds` and `movieIds` named. */
  readonly userListEntries: number;
  readonly movieListEntries: number;
  /** Up to CHECK_BAD_LISTED_MAX problems, described. */
  readonly bad: readonly string[];
}

/**
 * Examines the requests `reqIds` and counts the entries of the lists of `userIds` and
 * `movieIds`. Reads plainly: run it once the requests have finished.
 */
export async function check(env: MovieFrontEnv, input: unknown): Promise<MovieCheckReport> {
  const i = fields(input, FN.check);
  const reqIds = names(i["reqIds"], "reqIds", CHECK_REQUESTS_MAX);
  const userIds = names(i["userIds"], "userIds", CHECK_LISTS_MAX);
  const movieIds = names(i["movieIds"], "movieIds", CHECK_LISTS_MAX - userIds.length);
  const lists = new Map<string, Promise<readonly string[]>>();
  const listOf = (table: string, key: string): Promise<readonly string[]> => {
    const k = `${table}/${key}`;
    let l = lists.get(k);
    if (l === undefined) {
      l = env
        .read(table, key)
        .then((v) => (v === undefined ? [] : (v as unknown as ReviewList).ids));
      lists.set(k, l);
    }
    return l;
  };
  const c = {
    complete: 0,
    notStarted: 0,
    partial: 0,
    overCounted: 0,
    unstored: 0,
    userListMissing: 0,
    userListDuplicated: 0,
    movieListMissing: 0,
    movieListDuplicated: 0,
    agedOut: 0,
  };
  const bad: string[] = [];
  const note = (what: string): void => {
    if (bad.length < CHECK_BAD_LISTED_MAX) bad.push(what);
  };
  for (const reqId of reqIds) {
    const r = (await env.read(TABLES.compose, reqId)) as UnderConstruction | undefined;
    if (r === undefined) {
      c.notStarted++;
      continue;
    }
    const have = COMPONENTS.filter((k) => r.components[k] !== undefined).length;
    if (r.count !== have || r.count > COMPONENTS.length) {
      c.overCounted++;
      note(`${reqId}: count ${r.count} with ${have} components`);
      continue;
    }
    if (have < COMPONENTS.length) {
      c.partial++;
      note(`${reqId}: ${have} of ${COMPONENTS.length} components`);
      continue;
    }
    const expected = reviewOf(r);
    const stored = await env.read(TABLES.reviews, expected.reviewId);
    if (JSON.stringify(stored) !== JSON.stringify(expected)) {
      c.unstored++;
      note(`${reqId}: review ${expected.reviewId} stored as ${JSON.stringify(stored)}`);
      continue;
    }
    let whole = true;
    let aged = false;
    for (const [table, key, missing, duplicated] of [
      [TABLES.userReviews, expected.userId, "userListMissing", "userListDuplicated"],
      [TABLES.movieReviews, expected.movieId, "movieListMissing", "movieListDuplicated"],
    ] as const) {
      const list = await listOf(table, key);
      const n = list.filter((id) => id === expected.reviewId).length;
      if (n === 0 && list.length >= REVIEWS_PER_LIST_MAX) aged = true;
      else if (n !== 1) {
        c[n === 0 ? missing : duplicated]++;
        whole = false;
        note(`${reqId}: review ${expected.reviewId} ${n} times in ${table}/${key}`);
      }
    }
    if (!whole) continue;
    if (aged) c.agedOut++;
    else c.complete++;
  }
  let userListEntries = 0;
  let movieListEntries = 0;
  for (const u of userIds) userListEntries += (await listOf(TABLES.userReviews, u)).length;
  for (const m of movieIds) movieListEntries += (await listOf(TABLES.movieReviews, m)).length;
  return { requests: reqIds.length, ...c, userListEntries, movieListEntries, bad };
}
