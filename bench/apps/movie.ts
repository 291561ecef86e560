/**
 * The movie review application (examples/apps/movie/) for `npm run bench -- apps`:
 * DeathStarBench's compose-review path, as Beldi and BokiFlow evaluated it.
 *
 * Dataset: 1,000 users and 1,000 titles, loaded through `movie-seed` in batches. The mix,
 * as in the papers, is compose only: a review by a random user of a random title, a random
 * rating and a 256-character text, each with a request id of its own.
 *
 * The safe variant (functions/) composes each review in one boki-ts/flow workflow (its four
 * service calls logged, its writes in durable tables); the unsafe one (unsafe/) runs the same
 * code as plain functions over plain store writes. check() asks `movie-check` about the
 * request ids this module drew since the variant's seed (every one sent must have made one
 * complete review, listed once in its user's and its movie's list) and counts the lists'
 * entries, waiting (bounded) for reviews still being composed or recovered.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { postFunction } from "./app.js";
import type { AppRequest, AppTarget, BenchApp, InvariantReport, Variant } from "./app.js";
import {
  CHECK_LISTS_MAX,
  CHECK_REQUESTS_MAX,
  SEED_ENTRIES_MAX,
  type MovieCheckReport,
} from "../../examples/apps/movie/lib/movie.js";

const APP = fileURLToPath(new URL("../../examples/apps/movie/", import.meta.url));
const USERS = 1000;
const MOVIES = 1000;
const TEXT_CHARS = 256;
/** Requests of the seed in flight at once. */
const SEED_IN_FLIGHT = 4;
/** Check requests in flight at once. */
const CHECK_IN_FLIGHT = 4;
/** Request ids remembered per variant for the check; beyond, requests are not followed. */
const TRACKED_MAX = 50_000;
/**
 * Longest wait for the reviews still being composed after a run, ms: after an overload the
 * safe variant's recovery task resumes the timed-out workflows 12 s after their last record,
 * 256 a second.
 */
const SETTLE_TIMEOUT_MS = 180_000;
/** The wait ends sooner when nothing moved for this long (the unsafe variant's partial reviews stay), ms. */
const SETTLE_STALL_MS = 20_000;
/** Pause between two checks while reviews are still being composed, ms. */
const SETTLE_POLL_MS = 2000;
const ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,";

const username = (i: number): string => `user_${i}`;
const userId = (i: number): string => String(i + 1);
const title = (i: number): string => `title_${i}`;
const movieId = (i: number): string => `tt${String(i + 1).padStart(7, "0")}`;

/** A prefix that keeps request ids apart across runs of the benchmark on one machine. */
const RUN = randomBytes(6).toString("base64url");
let nextRequestNumber = 0;
/** The request ids drawn for each variant since its seed (the first TRACKED_MAX). */
const drawn: Record<Variant, string[]> = { safe: [], unsafe: [] };
const untracked: Record<Variant, number> = { safe: 0, unsafe: 0 };

/** Runs `jobs` with at most `inFlight` at once. */
async function inTurns<T>(jobs: Array<() => Promise<T>>, inFlight: number): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < jobs.length) {
        const k = next++;
        out[k] = await jobs[k]!();
      }
    }),
  );
  return out;
}

async function seed(target: AppTarget, variant: Variant): Promise<void> {
  drawn[variant] = [];
  untracked[variant] = 0;
  // One request carries SEED_ENTRIES_MAX users and movies: users first, then movies.
  const batches: Array<() => Promise<unknown>> = [];
  for (let k = 0; k < USERS + MOVIES; k += SEED_ENTRIES_MAX) {
    const indices = Array.from(
      { length: Math.min(SEED_ENTRIES_MAX, USERS + MOVIES - k) },
      (_, j) => k + j,
    );
    const users = indices
      .filter((i) => i < USERS)
      .map((i) => ({ username: username(i), userId: userId(i) }));
    const movies = indices
      .filter((i) => i >= USERS)
      .map((i) => ({ title: title(i - USERS), movieId: movieId(i - USERS) }));
    batches.push(() => postFunction(target, "movie-seed", { users, movies }));
  }
  await inTurns(batches, SEED_IN_FLIGHT);
}

function nextRequest(random: () => number, variant: Variant): AppRequest {
  const reqId = `${RUN}-${variant}-${(nextRequestNumber++).toString(36)}`;
  if (drawn[variant].length < TRACKED_MAX) drawn[variant].push(reqId);
  else untracked[variant]++;
  let text = "";
  for (let i = 0; i < TEXT_CHARS; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return {
    kind: "compose",
    method: "POST",
    path: "/function/movie-compose",
    body: {
      reqId,
      username: username(Math.floor(random() * USERS)),
      title: title(Math.floor(random() * MOVIES)),
      rating: Math.floor(random() * 11),
      text,
    },
  };
}

type Counts = Omit<MovieCheckReport, "bad">;

function add(into: Record<string, number>, r: MovieCheckReport): void {
  for (const [k, v] of Object.entries(r)) if (typeof v === "number") into[k] = (into[k] ?? 0) + v;
}

async function checkOnce(
  target: AppTarget,
  variant: Variant,
): Promise<{ counts: Counts; bad: string[] }> {
  const ids = drawn[variant];
  const jobs: Array<() => Promise<MovieCheckReport>> = [];
  for (let k = 0; k < ids.length; k += CHECK_REQUESTS_MAX) {
    const reqIds = ids.slice(k, k + CHECK_REQUESTS_MAX);
    jobs.push(() => postFunction(target, "movie-check", { reqIds }) as Promise<MovieCheckReport>);
  }
  const lists = {
    userIds: Array.from({ length: USERS }, (_, i) => userId(i)),
    movieIds: Array.from({ length: MOVIES }, (_, i) => movieId(i)),
  };
  if (USERS + MOVIES > CHECK_LISTS_MAX) throw new Error("the lists do not fit one check request");
  jobs.push(
    () =>
      postFunction(target, "movie-check", { reqIds: [], ...lists }) as Promise<MovieCheckReport>,
  );
  const reports = await inTurns(jobs, CHECK_IN_FLIGHT);
  const counts: Record<string, number> = {};
  const bad: string[] = [];
  for (const r of reports) {
    add(counts, r);
    bad.push(...r.bad);
  }
  return { counts: counts as unknown as Counts, bad: bad.slice(0, 20) };
}

async function check(target: AppTarget, variant: Variant): Promise<InvariantReport> {
  const until = Date.now() + SETTLE_TIMEOUT_MS;
  const unfinished = (c: Counts): number =>
    c.partial + c.unstored + c.userListMissing + c.movieListMissing;
  let r = await checkOnce(target, variant);
  let movedAt = Date.now();
  // Reviews still being composed (the safe variant's recovery may be finishing some).
  while (unfinished(r.counts) > 0 && Date.now() < until && Date.now() - movedAt < SETTLE_STALL_MS) {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
    const before = unfinished(r.counts);
    r = await checkOnce(target, variant);
    if (unfinished(r.counts) !== before) movedAt = Date.now();
  }
  const c = r.counts;
  const broken =
    c.partial +
    c.overCounted +
    c.unstored +
    c.userListMissing +
    c.userListDuplicated +
    c.movieListMissing +
    c.movieListDuplicated;
  // With every request followed, the lists hold exactly the reviews of those that completed.
  const listsMatch =
    untracked[variant] > 0 ||
    (c.userListEntries === c.complete + c.agedOut && c.movieListEntries === c.complete + c.agedOut);
  return {
    ok: broken === 0 && listsMatch,
    details: {
      ...c,
      untracked: untracked[variant],
      listsMatch,
      ...(r.bad.length > 0 ? { bad: r.bad } : {}),
    },
  };
}

export const movieApp: BenchApp = {
  name: "movie",
  description:
    "movie review (DeathStarBench's compose-review path): 4 services at once build a review of 5 components, then stored and listed",
  functions: { safe: `${APP}functions`, unsafe: `${APP}unsafe` },
  seed,
  nextRequest,
  check,
};
