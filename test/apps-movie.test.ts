/**
 * The movie review example (examples/apps/movie, the safe variant) across kill -9: `boki dev`
 * as a real process composes reviews for concurrent clients and is killed at random points,
 * then restarted on the same data directory, several times. The clients send compose
 * requests three ways: asynchronously (recorded, run again at the restart), synchronously
 * with an Idempotency-Key (recorded too), and plainly (a cut one's workflows are resumed by
 * flow's recovery task); after the last restart they send each request whose answer the
 * kill cut again, as a client would. Once the recovery has run, every compose request
 * produced exactly one complete review: five components each counted once, the review
 * stored, and its id once in its user's list and once in its movie's list; the lists hold
 * nothing else, and no review is left partial.
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
const CLIENTS = 8;
/** Compose requests per round at most (each client stops at its share). */
const PER_ROUND = 96;
/** Longest pause of a client between two requests, ms: the requests last through the round. */
const PAUSE_MS_MAX = 150;
/** How long each round's load runs at most before the kill, ms. */
const KILL_AFTER_MS_MAX = 2000;
/** Bound on the recovery after the last restart (workflows time out after 10 s, plus 2 s). */
const RECOVERY_MS_MAX = 40_000;
const REQUEST_TIMEOUT_MS = 15_000;

/** A seeded generator (mulberry32): a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
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

    type Way = "async" | "keyed" | "plain";
    const requests = new Map<string, { input: string; way: Way; answered: boolean }>();
    const counts = { async: 0, keyed: 0, plain: 0, answered: 0, cut: 0 };
    const send = (url: string, reqId: string, r: { input: string; way: Way }) =>
      http(url, "POST", `/${r.way === "async" ? "async/" : ""}function/movie-compose`, {
        body: r.input,
        headers: r.way === "keyed" ? { "idempotency-key": reqId } : {},
        timeoutMs: REQUEST_TIMEOUT_MS,
      });
    for (let round = 0; round < ROUNDS; round++) {
      dev ??= await start();
      const url = dev.url;
      let stop = false;
      const client = async (c: number): Promise<void> => {
        const r = prng(seed * 31 + round * 997 + c);
        for (let n = 0; !stop && n < PER_ROUND / CLIENTS; n++) {
          const reqId = `r${round}-c${c}-${n}`;
          const x = r();
          const way: Way = x < 0.4 ? "async" : x < 0.7 ? "keyed" : "plain";
          const req = {
            input: JSON.stringify({
              reqId,
              username: `user_${Math.floor(r() * USERS)}`,
              title: `title_${Math.floor(r() * MOVIES)}`,
              rating: Math.floor(r() * 11),
              text: `${reqId} `.padEnd(256, "abcdefghij"),
            }),
            way,
            answered: false,
          };
          requests.set(reqId, req);
          counts[req.way]++;
          try {
            const reply = await send(url, reqId, req);
            if (stop && reply.status >= 500) counts.cut++;
            else {
              expect(reply.status, reply.text).toBe(req.way === "async" ? 202 : 200);
              req.answered = true;
              counts.answered++;
            }
          } catch {
            counts.cut++;
          }
          await sleep(Math.floor(r() * PAUSE_MS_MAX));
        }
      };
      const clients = Array.from({ length: CLIENTS }, (_, c) => client(c));
      await sleep(300 + Math.floor(random() * (KILL_AFTER_MS_MAX - 300)));
      stop = true;
      await dev.stop("SIGKILL");
      dev = undefined;
      await Promise.all(clients);
    }

    dev = await start();
    const url = dev.url;
    const restarted = Date.now();
    // What a client does with a request whose answer the kill cut: it sends it again, the
    // same way. A keyed one gets the recorded answer (or runs, if it was never recorded); a
    // repeat of one that was accepted is refused as a duplicate (its review is made once).
    let resent = 0;
    const resends: Array<Promise<void>> = [];
    for (const [reqId, req] of requests) {
      if (req.answered) continue;
      resent++;
      resends.push(
        send(url, reqId, req).then((reply) => {
          const ok = reply.status === (req.way === "async" ? 202 : 200);
          const duplicate = reply.status === 400 && reply.text.includes("DUPLICATE_REQUEST");
          expect(ok || duplicate, `${reqId} (${req.way}) sent again: ${reply.text}`).toBe(true);
        }),
      );
    }
    await Promise.all(resends);
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
    console.log(
      `movie crash test: ${ROUNDS} kills, ${reqIds.length} compose requests (${counts.async} asynchronous, ` +
        `${counts.keyed} with an idempotency key, ${counts.plain} plain; ${counts.answered} answered, ${counts.cut} cut by a kill, ${resent} sent again), ` +
        `all complete ${(recoveredMs / 1000).toFixed(1)} s after the last restart; ${((Date.now() - began) / 1000).toFixed(1)} s in all`,
    );
  }, 150_000);
});
