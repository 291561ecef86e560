/**
 * Movie review: the compose-review path of DeathStarBench's media service (the workload of
 * Beldi and BokiFlow), written once against `MovieEnv`, the few operations in which the
 * safe variant (functions/, boki-ts/flow workflows and durable tables) and the unsafe one
 * (unsafe/, plain invocations and plain store writes) differ.
 *
 *   movie-compose (the frontend: checks the request, refuses bad input with a 400)
 *   movie-compose-review  creates the review under construction under the request's id
 *     ├─ movie-unique-id   draws the review id                 ─┐
 *     ├─ movie-user        username → user id                   │ each uploads its
 *     ├─ movie-movie-id    title → movie id                     ├ component(s) to
 *     │    └─ movie-rating the rating                           │ movie-compose-upload
 *     └─ movie-text        the text                            ─┘
 *   movie-compose-upload   counts the component into the review under construction; the
 *                          one that brings the count to 5 stores the review:
 *     ├─ movie-review-storage  the review, by id
 *     ├─ movie-user-review     appended to the user's list
 *     └─ movie-movie-review    appended to the movie's list
 *
 * Tables (a key's value is JSON):
 *   movie-users          username → { userId, username }
 *   movie-titles         title → { movieId, title }
 *   movie-compose        request id → the review under construction { reqId, createdAt, count, components }
 *   movie-reviews        review id → the review
 *   movie-user-reviews   user id → { ids: [review id, ...] }   (the newest REVIEWS_PER_LIST_MAX)
 *   movie-movie-reviews  movie id → { ids: [review id, ...] }
 *
 * A compose request names its own id (`reqId`); the review under construction is created
 * under it first, so a request id composes one review, once.
 *
 * The entry points (movie-compose, movie-seed, movie-reviews, movie-check) are plain
 * functions in both variants; they refuse bad input with InvocationError INVALID_ARGUMENT
 * (HTTP 400), naming the MovieError code. The services behind them check their input too
 * and fail with a MovieError.
 */
import { InvocationError, type JsonValue } from "boki-ts";

export const FN = {
  compose: "movie-compose",
  composeReview: "movie-compose-review",
  uniqueId: "movie-unique-id",
  user: "movie-user",
  movieId: "movie-movie-id",
  rating: "movie-rating",
  text: "movie-text",
  upload: "movie-compose-upload",
  storeReview: "movie-review-storage",
  userReview: "movie-user-review",
  movieReview: "movie-movie-review",
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

/** What a review is made of; it is complete when all five are counted. */
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
  /** An upload for a request id with no review under construction. */
  | "NO_SUCH_REQUEST"
  /** An upload of a component the review has already. */
  | "DUPLICATE_COMPONENT"
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
 * What the entry points use: table reads (safe: flow's `readTable`; unsafe: plain store
 * reads) and calls (`ctx.invoke` in both).
 */
export interface MovieFrontEnv {
  read(table: string, key: string): Promise<JsonValue | undefined>;
  /** Calls another function and waits for its output (safe services: `wf.invoke`, exactly once). */
  call(fn: string, input: JsonValue): Promise<JsonValue>;
}

export interface MovieEnv extends MovieFrontEnv {
  /** The time in ms (safe: logged, the same in every execution). */
  now(): Promise<number>;
  /** A number in [0, 1) (safe: the same sequence in every execution). */
  random(): number;
  write(table: string, key: string, value: JsonValue): Promise<void>;
  /** Writes `value` only if `key` has no value yet; whether it wrote. */
  create(table: string, key: string, value: JsonValue): Promise<boolean>;
  /**
   * Counts `component` into the review under construction of `reqId`, atomically: the
   * count after it, and the whole review when this was the last component.
   */
  addComponent(
    reqId: string,
    component: Component,
    value: JsonValue,
  ): Promise<{ count: number; complete?: UnderConstruction }>;
  /** Appends `item` to the list at `key`, atomically (keeping the newest REVIEWS_PER_LIST_MAX). */
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

function names(value: unknown, what: string, max: number): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > max) {
    throw new MovieError("INVALID_ARGUMENT", `${what} must be an array of at most ${max}`);
  }
  return value.map((v, i) => name(v, `${what}[${i}]`));
}

// ---- pure steps of the protocol ------------------------------------------------------------

/** The review under construction with one more component (for a read-modify-write). */
export function withComponent(
  old: JsonValue | undefined,
  reqId: string,
  component: Component,
  value: JsonValue,
): UnderConstruction {
  if (old === undefined) {
    throw new MovieError("NO_SUCH_REQUEST", `no review under construction for request ${reqId}`);
  }
  const r = old as unknown as UnderConstruction;
  if (r.components[component] !== undefined) {
    throw new MovieError("DUPLICATE_COMPONENT", `request ${reqId} has its ${component} already`);
  }
  return { ...r, count: r.count + 1, components: { ...r.components, [component]: value } };
}

/** A list with one more item, the oldest dropped beyond REVIEWS_PER_LIST_MAX. */
export function withItem(old: JsonValue | undefined, item: string): ReviewList {
  const ids = old === undefined ? [] : (old as unknown as ReviewList).ids;
  return { ids: [...ids, item].slice(-REVIEWS_PER_LIST_MAX) };
}

/** The review a complete review under construction makes. */
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

async function upload(env: MovieEnv, reqId: string, component: Component, value: JsonValue) {
  await env.call(FN.upload, { reqId, component, value });
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
  const out = (await env.call(FN.composeReview, { ...req })) as unknown as
    ComposeResult | DuplicateRequest;
  if ("duplicate" in out) {
    throw new MovieError("DUPLICATE_REQUEST", `request ${req.reqId} composed a review before`);
  }
  return out;
}

/**
 * ComposeReview: creates the review under construction under the request's id (or answers
 * that the id was used before), then asks the four services at once; each contributes its
 * component(s).
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
  const createdAt = await env.now();
  const fresh: UnderConstruction = { reqId, createdAt, count: 0, components: {} };
  if (!(await env.create(TABLES.compose, reqId, fresh as unknown as JsonValue))) {
    return { reqId, duplicate: true };
  }
  const [reviewId] = await Promise.all([
    env.call(FN.uniqueId, { reqId, createdAt }),
    env.call(FN.user, { reqId, username }),
    env.call(FN.movieId, { reqId, title, rating: stars }),
    env.call(FN.text, { reqId, text: body }),
  ]);
  return { reqId, reviewId: reviewId as string };
}

/** A review id: the request's time and a random part, as a snowflake id would. */
export async function uniqueId(env: MovieEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.uniqueId);
  const reqId = name(i["reqId"], "reqId");
  const at = i["createdAt"];
  if (typeof at !== "number" || !Number.isSafeInteger(at) || at < 0) {
    throw new MovieError("INVALID_ARGUMENT", "createdAt must be a time in ms");
  }
  const random = Math.floor(env.random() * 36 ** 8)
    .toString(36)
    .padStart(8, "0");
  const reviewId = `${at.toString(36)}-${random}`;
  await upload(env, reqId, "reviewId", reviewId);
  return reviewId;
}

export async function user(env: MovieEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.user);
  const reqId = name(i["reqId"], "reqId");
  const username = name(i["username"], "username");
  const u = (await env.read(TABLES.users, username)) as { userId: string } | undefined;
  if (u === undefined) throw new MovieError("UNKNOWN_USER", `no user named ${username}`);
  await upload(env, reqId, "userId", u.userId);
  return u.userId;
}

export async function movieId(env: MovieEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.movieId);
  const reqId = name(i["reqId"], "reqId");
  const title = name(i["title"], "title");
  const stars = rating(i["rating"]);
  const m = (await env.read(TABLES.titles, title)) as { movieId: string } | undefined;
  if (m === undefined) throw new MovieError("UNKNOWN_MOVIE", `no movie titled ${title}`);
  await Promise.all([
    upload(env, reqId, "movieId", m.movieId),
    env.call(FN.rating, { reqId, rating: stars }),
  ]);
  return m.movieId;
}

export async function ratingService(env: MovieEnv, input: unknown): Promise<number> {
  const i = fields(input, FN.rating);
  const reqId = name(i["reqId"], "reqId");
  const stars = rating(i["rating"]);
  await upload(env, reqId, "rating", stars);
  return stars;
}

export async function textService(env: MovieEnv, input: unknown): Promise<number> {
  const i = fields(input, FN.text);
  const reqId = name(i["reqId"], "reqId");
  const body = text(i["text"]);
  await upload(env, reqId, "text", body);
  return body.length;
}

/**
 * Counts one component; the upload that completes the review stores it and appends it to
 * its user's and its movie's lists.
 */
export async function composeUpload(
  env: MovieEnv,
  input: unknown,
): Promise<{ count: number; stored: boolean }> {
  const i = fields(input, FN.upload);
  const reqId = name(i["reqId"], "reqId");
  const component = i["component"];
  if (typeof component !== "string" || !(COMPONENTS as readonly string[]).includes(component)) {
    throw new MovieError("INVALID_ARGUMENT", `component must be one of ${COMPONENTS.join(", ")}`);
  }
  const value = i["value"];
  if (value === undefined || value === null) {
    throw new MovieError("INVALID_ARGUMENT", "value must be given");
  }
  const { count, complete } = await env.addComponent(
    reqId,
    component as Component,
    value as JsonValue,
  );
  if (complete === undefined) return { count, stored: false };
  const review = reviewOf(complete);
  await Promise.all([
    env.call(FN.storeReview, { review: review as unknown as JsonValue }),
    env.call(FN.userReview, { userId: review.userId, reviewId: review.reviewId }),
    env.call(FN.movieReview, { movieId: review.movieId, reviewId: review.reviewId }),
  ]);
  return { count, stored: true };
}

export async function storeReview(env: MovieEnv, input: unknown): Promise<string> {
  const r = fields(fields(input, FN.storeReview)["review"], "review");
  const review: Review = {
    reviewId: name(r["reviewId"], "review.reviewId"),
    reqId: name(r["reqId"], "review.reqId"),
    userId: name(r["userId"], "review.userId"),
    movieId: name(r["movieId"], "review.movieId"),
    rating: rating(r["rating"]),
    text: text(r["text"]),
    timestamp: typeof r["timestamp"] === "number" ? r["timestamp"] : 0,
  };
  await env.write(TABLES.reviews, review.reviewId, review as unknown as JsonValue);
  return review.reviewId;
}

export async function userReview(env: MovieEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.userReview);
  const reviewId = name(i["reviewId"], "reviewId");
  await env.append(TABLES.userReviews, name(i["userId"], "userId"), reviewId);
  return reviewId;
}

export async function movieReview(env: MovieEnv, input: unknown): Promise<string> {
  const i = fields(input, FN.movieReview);
  const reviewId = name(i["reviewId"], "reviewId");
  await env.append(TABLES.movieReviews, name(i["movieId"], "movieId"), reviewId);
  return reviewId;
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
