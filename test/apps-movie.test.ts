/**
 * The movie review example (examples/apps/movie, the safe variant) across kill -9: `boki dev`
 * as a real process composes reviews for concurrent clients (started synchronously and
 * asynchronously, each with its request id as the workflow id) and is killed at random
 * points, then restarted on the same data directory, several times. After a last restart
 * and the recovery of the unfinished workflows, every compose request produced exactly one
 * complete review: five components each counted once, the review stored, and its id once in
 * its user's list and once in its movie's list; the lists hold nothing else, and no review is
 * left partial.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import type { MovieCheckReport } from "../examples/apps/movie/lib/movie.js";
import { CHECK_REQUESTS_MAX } from "../examples/apps/movie/lib/movie.js";
import { eventually, sleep } from "./helpers/async.js";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";

const FUNCTIONS = fileURLToPath(new URL("../examples/apps/movie/functions", import.meta.url));
const USERS = 100;
const MOVIES = 100;
const ROUNDS = 4;
const CLIENTS = 6;
/** Compose requests per round at most (each client stops at its share). */
const PER_ROUND = 18;
/** How long each round's load runs at most before the kill, ms. */
const KILL_AFTER_MS_MAX = 900;
/** Bound on the recovery after the last restart (workflows time out after 10 s, plus 2 s). */
const RECOVERY_MS_MAX = 40_000;
const REQUEST_TIMEOUT_MS = 15_000;

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const userId = (i: number): string => `${i + 1}`;
const movieId = (i: number): string => `tt${String(i + 1).padStart(7, "0")}`;

describe("the movie review example across kill -9 of boki dev", () => {
  const tmp = tempDir("boki-apps-movie-");
  let dev: DevProcess | undefined;
  const data = join(tmp.dir, "data");
  const start = () => startDevProcess(["--functions", FUNCTIONS, "--data", data, "--workers", "2"]);
  afterAll(async () => {
    await dev?.stop("SIGKILL");
    tmp.remove();
  });

  test("every compose request makes exactly one complete review, in its user's and its movie's list once", async () => {
    const seed = Number(process.env["APPS_MOVIE_SEED"] ?? Date.now() % 100_000);
    console.log(`movie crash test: seed ${seed} (APPS_MOVIE_SEED=${seed} replays the kill times)`);
    const random = prng(seed);
    const began = Date.now();
    dev = await start();
    const seeded = await http(dev.url, "POST", "/function/movie-seed", {
      body: JSON.stringify({
        users: Array.from({ length: USERS }, (_, i) => ({
          username: `user_${i}`,
          userId: userId(i),
        })),
        movies: Array.from({ length: MOVIES }, (_, i) => ({
          title: `title_${i}`,
          movieId: movieId(i),
        })),
      }),
    });
    expect(seeded.status, seeded.text).toBe(200);

    const requests = new Map<string, string>(); // reqId → its input as JSON
    const counts = { sync: 0, async: 0, answered: 0, cut: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      dev ??= await start();
      const url = dev.url;
      let stop = false;
      const client = async (c: number): Promise<void> => {
        const r = prng(seed * 31 + round * 997 + c);
        for (let n = 0; !stop && n < PER_ROUND / CLIENTS; n++) {
          const reqId = `r${round}-c${c}-${n}`;
          const input = JSON.stringify({
            reqId,
            username: `user_${Math.floor(r() * USERS)}`,
            title: `title_${Math.floor(r() * MOVIES)}`,
            rating: Math.floor(r() * 11),
            text: `${reqId} `.padEnd(256, "abcdefghij"),
          });
          requests.set(reqId, input);
          // Asynchronous starts are recorded before the 202 and run again at the restart;
          // synchronous ones cut by the kill are resumed by the recovery task.
          const async = r() < 0.5;
          if (async) counts.async++;
          else counts.sync++;
          try {
            const reply = await http(
              url,
              "POST",
              `/${async ? "async/" : ""}workflow/movie-compose`,
              {
                body: input,
                headers: { "x-boki-workflow-id": reqId },
                timeoutMs: REQUEST_TIMEOUT_MS,
              },
            );
            if (stop && reply.status >= 500) counts.cut++;
            else {
              expect(reply.status, reply.text).toBe(async ? 202 : 200);
              counts.answered++;
            }
          } catch {
            counts.cut++;
          }
        }
      };
      const clients = Array.from({ length: CLIENTS }, (_, c) => client(c));
      await sleep(100 + Math.floor(random() * (KILL_AFTER_MS_MAX - 100)));
      stop = true;
      await dev.stop("SIGKILL");
      dev = undefined;
      await Promise.all(clients);
    }

    dev = await start();
    const url = dev.url;
    const restarted = Date.now();
    // A synchronous start cut before its start record never began; its client would send
    // it again, as this does (joining the instance where it did begin).
    let resent = 0;
    for (const [reqId, input] of requests) {
      if ((await http(url, "GET", `/workflows/${reqId}`)).status === 404) {
        resent++;
        void http(url, "POST", "/workflow/movie-compose", {
          body: input,
          headers: { "x-boki-workflow-id": reqId },
          timeoutMs: REQUEST_TIMEOUT_MS,
        }).catch(() => undefined);
      }
    }
    const reqIds = [...requests.keys()];
    expect(reqIds.length).toBeLessThanOrEqual(CHECK_REQUESTS_MAX);
    const lists = {
      userIds: Array.from({ length: USERS }, (_, i) => userId(i)),
      movieIds: Array.from({ length: MOVIES }, (_, i) => movieId(i)),
    };
    const check = async (): Promise<MovieCheckReport> => {
      const r = await http(url, "POST", "/function/movie-check", {
        body: JSON.stringify({ reqIds, ...lists }),
      });
      expect(r.status, r.text).toBe(200);
      return r.json as MovieCheckReport;
    };
    let report: MovieCheckReport | undefined;
    await eventually(
      "every compose request's review",
      async () => {
        report = await check();
        if (report.complete === reqIds.length) return true;
        await sleep(500); // the recovery task runs about once a second
        return false;
      },
      RECOVERY_MS_MAX,
      async () => JSON.stringify(await check()),
    );
    const recoveredMs = Date.now() - restarted;
    report = await check();
    expect(report.bad).toEqual([]);
    expect(report).toMatchObject({
      requests: reqIds.length,
      complete: reqIds.length,
      userListEntries: reqIds.length,
      movieListEntries: reqIds.length,
    });
    for (const reqId of reqIds) {
      const s = (await http(url, "GET", `/workflows/${reqId}`)).json as { status?: string };
      expect(s.status, reqId).toBe("succeeded");
    }
    console.log(
      `movie crash test: ${ROUNDS} kills, ${reqIds.length} compose requests (${counts.sync} synchronous, ` +
        `${counts.async} asynchronous; ${counts.answered} answered, ${counts.cut} cut by a kill, ${resent} sent again), ` +
        `all complete ${(recoveredMs / 1000).toFixed(1)} s after the last restart; ${((Date.now() - began) / 1000).toFixed(1)} s in all`,
    );
  }, 150_000);
});
