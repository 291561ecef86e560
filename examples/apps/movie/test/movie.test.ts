import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "boki-ts/testing";
import {
  REVIEW_TEXT_CHARS_MAX,
  type ComposeResult,
  type MovieCheckReport,
  type Review,
} from "../lib/movie.js";

const VARIANTS = {
  safe: fileURLToPath(new URL("../functions", import.meta.url)),
  unsafe: fileURLToPath(new URL("../unsafe", import.meta.url)),
};

const USERS = ["ada", "bob", "cy", "dee"].map((u, i) => ({ username: u, userId: `${i + 1}` }));
const MOVIES = ["Alien", "Brazil", "Casablanca"].map((title, i) => ({
  title,
  movieId: `tt000000${i + 1}`,
}));
const ALL_LISTS = {
  userIds: USERS.map((u) => u.userId),
  movieIds: MOVIES.map((m) => m.movieId),
};

describe.each(Object.entries(VARIANTS))("movie review (%s variant)", (variant, functions) => {
  let dev: TestServer;
  beforeAll(async () => {
    dev = await startDevServer({ functions, workers: 2 });
    await dev.client.invoke("movie-seed", { users: USERS, movies: MOVIES });
  });
  afterAll(async () => {
    await dev?.close();
  });
  const call = <T>(fn: string, input: unknown): Promise<T> =>
    dev.client.invoke(fn, input as never) as Promise<T>;
  const failure = (fn: string, input: unknown) =>
    call(fn, input).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message?: string },
    );
  let composed = 0;

  test("a composed review has its five components and is in its user's and its movie's list", async () => {
    const r = await call<ComposeResult>("movie-compose", {
      reqId: `${variant}-one`,
      username: "ada",
      title: "Brazil",
      rating: 9,
      text: "A bureaucratic nightmare, beautifully shot.",
    });
    composed++;
    expect(r.reqId).toBe(`${variant}-one`);
    const expected = {
      reviewId: r.reviewId,
      reqId: `${variant}-one`,
      userId: "1",
      movieId: "tt0000002",
      rating: 9,
      text: "A bureaucratic nightmare, beautifully shot.",
    };
    expect(await call<Review[]>("movie-reviews", { username: "ada" })).toEqual([
      expect.objectContaining(expected),
    ]);
    expect(await call<Review[]>("movie-reviews", { title: "Brazil" })).toEqual([
      expect.objectContaining(expected),
    ]);
    expect(await call("movie-reviews", { title: "Alien" })).toEqual([]);
    const report = await call<MovieCheckReport>("movie-check", {
      reqIds: [`${variant}-one`],
      ...ALL_LISTS,
    });
    expect(report).toMatchObject({ requests: 1, complete: 1, userListEntries: 1 });
    expect(report.bad).toEqual([]);
  });

  test("concurrent composes each make one complete review", async () => {
    const reqIds = Array.from({ length: 12 }, (_, i) => `${variant}-many-${i}`);
    const results = await Promise.all(
      reqIds.map((reqId, i) =>
        call<ComposeResult>("movie-compose", {
          reqId,
          username: USERS[i % USERS.length]!.username,
          title: MOVIES[i % MOVIES.length]!.title,
          rating: i % 11,
          text: `review ${i} `.repeat(20),
        }),
      ),
    );
    composed += reqIds.length;
    expect(new Set(results.map((r) => r.reviewId)).size).toBe(reqIds.length);
    const report = await call<MovieCheckReport>("movie-check", { reqIds, ...ALL_LISTS });
    expect(report.bad).toEqual([]);
    expect(report).toMatchObject({
      requests: reqIds.length,
      complete: reqIds.length,
      userListEntries: composed,
      movieListEntries: composed,
    });
  });

  test("a request id composes one review: a second request with it is refused", async () => {
    const input = {
      reqId: `${variant}-one`,
      username: "bob",
      title: "Alien",
      rating: 3,
      text: "x",
    };
    const err = await failure("movie-compose", input);
    expect(err?.code).toBe("INVALID_ARGUMENT");
    expect(err?.message).toMatch(/DUPLICATE_REQUEST: request \w+-one composed a review before/);
    expect(await call("movie-reviews", { username: "bob" })).not.toContainEqual(
      expect.objectContaining({ reqId: `${variant}-one` }),
    );
  });

  test("bad input is refused with a 400 naming what is wrong, and leaves no review under construction", async () => {
    const good = { username: "ada", title: "Alien", rating: 5, text: "fine" };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...good, username: "zed" }, /UNKNOWN_USER: no user named zed/],
      [{ ...good, title: "Zardoz" }, /UNKNOWN_MOVIE: no movie titled Zardoz/],
      [{ ...good, rating: 11 }, /rating must be an integer from 0 to 10/],
      [{ ...good, rating: 2.5 }, /rating must be an integer/],
      [{ ...good, text: "" }, /text must be a string of 1 to 4096/],
      [{ ...good, text: "x".repeat(REVIEW_TEXT_CHARS_MAX + 1) }, /text must be a string/],
      [{ ...good, username: 7 }, /username must be a string/],
    ];
    const reqIds: string[] = [];
    for (const [k, [input, why]] of cases.entries()) {
      const reqId = `${variant}-bad-${k}`;
      reqIds.push(reqId);
      const err = await failure("movie-compose", { reqId, ...input });
      expect(err?.code, JSON.stringify(input)).toBe("INVALID_ARGUMENT");
      expect(err?.message).toMatch(/^function movie-compose refused its input: /);
      expect(err?.message).toMatch(why);
    }
    const refusals: Array<[string, unknown, RegExp]> = [
      ["movie-compose", { ...good }, /INVALID_ARGUMENT: reqId must be/],
      ["movie-compose", "ada", /movie-compose takes a JSON object/],
      ["movie-reviews", { username: "zed" }, /UNKNOWN_USER: no user named zed/],
      ["movie-seed", { users: [{ username: "x" }] }, /users\[0\]\.userId must be a string/],
      ["movie-check", { reqIds: "r1" }, /reqIds must be an array/],
    ];
    for (const [fn, input, why] of refusals) {
      const err = await failure(fn, input);
      expect(err?.code, `${fn} ${JSON.stringify(input)}`).toBe("INVALID_ARGUMENT");
      expect(err?.message).toMatch(why);
    }
    const report = await call<MovieCheckReport>("movie-check", { reqIds });
    expect(report).toMatchObject({ requests: cases.length, notStarted: cases.length });
  });

  test("the services behind the frontend answer the same when asked again for one request, and write nothing", async () => {
    // ComposeReview asks a service again only if it died before logging the answer: the
    // answer must not change, and asking must leave nothing behind.
    const reqId = `${variant}-asked-twice`;
    const ask = () =>
      Promise.all([
        call<string>("movie-unique-id", { reqId, createdAt: 1_700_000_000_000 }),
        call<string>("movie-user", { reqId, username: "cy" }),
        call<unknown>("movie-movie-id", { reqId, title: "Casablanca", rating: 7 }),
        call<string>("movie-text", { reqId, text: "Of all the gin joints." }),
      ]);
    const first = await ask();
    expect(first).toEqual([
      expect.stringMatching(/^[0-9a-z]+-[0-9a-z]{12}$/),
      "3",
      { movieId: "tt0000003", rating: 7 },
      "Of all the gin joints.",
    ]);
    expect(await ask()).toEqual(first);
    const other = await call<string>("movie-unique-id", {
      reqId: `${reqId}-2`,
      createdAt: 1_700_000_000_000,
    });
    expect(other).not.toBe(first[0]);
    const report = await call<MovieCheckReport>("movie-check", { reqIds: [reqId], ...ALL_LISTS });
    expect(report).toMatchObject({ notStarted: 1, userListEntries: composed });
  });
});
