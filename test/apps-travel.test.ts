/**
 * The travel example's safe variant across kill -9: `boki dev` serves
 * examples/apps/travel/functions, the dataset is loaded, and clients send reservations for a
 * few hotels and flights on one night (so rooms and seats run out and reservations race for
 * them), a quarter of them asynchronously. `boki dev` is killed at random points and
 * restarted on the same data directory, several times; clients ask again, with the same
 * reservation id, about every reservation whose answer they did not get. Once recovery has
 * finished: no hotel or flight is over its capacity, every reservation holds both its room
 * and its seat, each reservation that was accepted is held exactly once and each refused one
 * not at all, every order was placed exactly once, and no lock is left.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { eventually, sleep } from "./helpers/async.js";
import { startDevProcess, type DevProcess } from "./helpers/dev-process.js";
import { http } from "./helpers/http.js";
import { tempDir } from "./helpers/tmp.js";
import type { AuditReport } from "../examples/apps/travel/lib/audit.js";
import {
  dataset,
  flightId,
  hotelId,
  passwordOf,
  username,
} from "../examples/apps/travel/lib/data.js";
import type { ReserveAnswer } from "../examples/apps/travel/lib/model.js";

/**
 * The variant under test. `TRAVEL_CRASH_VARIANT=unsafe` runs the same against the unsafe
 * variant, to see what breaks without the libraries (the test then fails, as it should).
 */
const VARIANT = process.env["TRAVEL_CRASH_VARIANT"] === "unsafe" ? "unsafe" : "functions";
const FUNCTIONS = fileURLToPath(new URL(`../examples/apps/travel/${VARIANT}`, import.meta.url));
const KILLS = 4;
/** Hotels and flights the reservations go to (10 rooms a night, 10 seats a day each). */
const HOT = 3;
/**
 * The night reservations are for, one per round between two kills: 3 × 10 rooms and as many
 * seats, so that they run out while the round goes on and the last ones are raced for.
 */
const NIGHTS = ["2027-01-11", "2027-01-12", "2027-01-13", "2027-01-14", "2027-01-15"] as const;
const CLIENTS = 6;
/** Reservations each client makes at most, while the kills go on. */
const PER_CLIENT_MAX = 150;
/** A client's pause between two reservations, ms (so the load lasts through the kills). */
const PACE_MS = 30;
/** Load between a start and the next kill, ms: this, plus up to as much again. */
const LOAD_MS_MIN = 1_000;
/** Looks at an asynchronous reservation's invocation before asking for it again synchronously. */
const ATTEMPTS_MAX = 60;
/** Pause before asking again, ms. */
const RETRY_PAUSE_MS = 250;
/**
 * How long a client asks again for one reservation, ms: a reservation cut off by a kill
 * holds its room and seat until the recovery task resumes it (its workflow's 10 s time
 * limit after its last record, then the task's next scan), slower on a loaded machine.
 */
const ASK_MS_MAX = 60_000;
/** Longest the clients may take to get every answer after the last restart, ms. */
const DRAIN_MS_MAX = 75_000;

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

type Final = { readonly reserved: true } | { readonly reserved: false; readonly code: string };

describe("the travel example across kill -9 of boki dev", () => {
  const tmp = tempDir("boki-travel-crash-");
  const data = join(tmp.dir, "data");
  let dev: DevProcess | undefined;
  /** The gateway while it is up; clients wait for it while it is not. */
  let up: string | undefined;
  const start = async () => {
    dev = await startDevProcess(["--functions", FUNCTIONS, "--data", data, "--workers", "2"]);
    up = dev.url;
  };
  afterAll(async () => {
    await dev?.stop("SIGKILL");
    tmp.remove();
  });

  test("no hotel or flight overbooked, no reservation half-made, each accepted once and each order placed once, through 4 kills", async () => {
    const seed = Number(process.env["TRAVEL_CRASH_SEED"] ?? Date.now() % 100_000);
    console.log(`travel crash test: seed ${seed} (TRAVEL_CRASH_SEED=${seed} replays the draws)`);
    const random = seeded(seed);
    const began = Date.now();
    await start();
    const d = dataset();
    for (let i = 0; i < d.users.length; i += 100) {
      const r = await http(up!, "POST", "/function/travel-seed", {
        body: JSON.stringify({
          hotels: d.hotels.slice(i, i + 100),
          flights: d.flights.slice(i, i + 100),
          users: d.users.slice(i, i + 100),
        }),
      });
      expect(r.status, r.text).toBe(200);
    }

    const finals = new Map<string, Final>();
    const sent = new Set<string>();
    let askedAgain = 0;
    /** Requests whose connection went with a killed process. */
    let interrupted = 0;
    let sentAsync = 0;
    let loading = true;
    let round = 0;

    /** The gateway's URL, waiting (bounded) while boki dev restarts. */
    const gateway = async (): Promise<string> => {
      for (let i = 0; up === undefined; i++) {
        if (i > 600) throw new Error("boki dev did not come back within 60 s");
        await sleep(100);
      }
      return up;
    };
    /** One answer, or undefined when it must be asked again. */
    const definite = (a: ReserveAnswer | undefined): Final | undefined => {
      if (a === undefined) return undefined;
      if (a.reserved) return { reserved: true };
      return a.error.code === "BUSY" ? undefined : { reserved: false, code: a.error.code };
    };
    const askAsync = async (body: string): Promise<Final | undefined> => {
      const url = await gateway();
      const r = await http(url, "POST", "/async/function/travel-reserve", { body });
      if (r.status !== 202) return undefined;
      const id = (r.json as { invocationId: string }).invocationId;
      // The invocation is recorded: it runs (again, after a kill) until it has a result.
      for (let i = 0; i < ATTEMPTS_MAX; i++) {
        const at = await gateway();
        const s = await http(at, "GET", `/invocations/${id}`).catch(() => undefined);
        const status = (s?.json as { status?: string } | undefined)?.status;
        if (status === "succeeded") return definite((s!.json as { output: ReserveAnswer }).output);
        if (status === "failed") return undefined;
        await sleep(RETRY_PAUSE_MS);
      }
      return undefined;
    };
    const askSync = async (body: string): Promise<Final | undefined> => {
      const url = await gateway();
      const r = await http(url, "POST", "/function/travel-reserve", { body });
      return r.status === 200 ? definite(r.json as ReserveAnswer) : undefined;
    };
    const reserve = async (rid: string, body: string, viaAsync: boolean): Promise<void> => {
      const giveUpAt = Date.now() + ASK_MS_MAX;
      for (let attempt = 0; attempt === 0 || Date.now() < giveUpAt; attempt++) {
        if (attempt > 0) {
          askedAgain++;
          await sleep(RETRY_PAUSE_MS);
        }
        const f = await (viaAsync && attempt === 0 ? askAsync(body) : askSync(body)).catch(() => {
          interrupted++; // the connection went with the process
          return undefined;
        });
        if (f !== undefined) {
          finals.set(rid, f);
          return;
        }
      }
    };
    const client = async (c: number): Promise<void> => {
      for (let n = 0; n < PER_CLIENT_MAX && loading; n++) {
        const u = Math.floor(random() * d.users.length);
        const rid = `c${c}-${n}`;
        const night = round;
        const body = JSON.stringify({
          reservationId: rid,
          username: username(u),
          password: passwordOf(u),
          hotelId: hotelId(Math.floor(random() * HOT)),
          flightId: flightId(Math.floor(random() * HOT)),
          inDate: NIGHTS[night]!,
          outDate: NIGHTS[night + 1]!,
        });
        const viaAsync = random() < 0.25;
        if (viaAsync) sentAsync++;
        sent.add(rid);
        await reserve(rid, body, viaAsync);
        await sleep(PACE_MS);
      }
    };

    const clients = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    for (let kill = 0; kill < KILLS; kill++) {
      await sleep(LOAD_MS_MIN + Math.floor(random() * LOAD_MS_MIN));
      up = undefined;
      await dev!.stop("SIGKILL");
      round++;
      await start();
    }
    const killedAt = Date.now();
    loading = false;
    const drained = await Promise.race([
      clients.then(() => true),
      sleep(DRAIN_MS_MAX).then(() => false),
    ]);
    expect(drained, `the clients' answers after ${DRAIN_MS_MAX} ms`).toBe(true);
    const unanswered = [...sent].filter((rid) => !finals.has(rid));
    expect(unanswered, "reservations never answered").toEqual([]);

    const report = await eventually(
      "the orders placed and the locks released",
      async () => {
        const r = await http(up!, "POST", "/function/travel-audit", {
          body: JSON.stringify({ list: true }),
        });
        const a = r.json as AuditReport;
        return r.status === 200 && a.ordersMissing === 0 && a.locked === 0 ? a : undefined;
      },
      20_000,
      async () => (await http(up!, "POST", "/function/travel-audit", { body: "{}" })).text,
    );
    expect(report, JSON.stringify(report.examples)).toMatchObject({
      ok: true,
      overbooked: 0,
      miscounted: 0,
      halfMade: 0,
      duplicated: 0,
      ordersMissing: 0,
      ordersDuplicated: 0,
      locked: 0,
    });
    const held = new Set(report.reservationIds);
    const accepted = [...finals].filter(([, f]) => f.reserved).map(([rid]) => rid);
    const refused = [...finals].filter(([, f]) => !f.reserved);
    for (const rid of accepted) expect(held.has(rid), `accepted ${rid} is held`).toBe(true);
    for (const [rid, f] of refused) {
      expect(held.has(rid), `refused ${rid} is not held`).toBe(false);
      expect(["HOTEL_FULL", "FLIGHT_FULL"]).toContain((f as { code: string }).code);
    }
    for (const rid of held) expect(sent.has(rid), `${rid} was asked for`).toBe(true);
    expect(interrupted, "requests cut off by a kill").toBeGreaterThan(0);
    expect(held.size).toBe(accepted.length);
    expect(report.roomsBooked).toBe(accepted.length);
    expect(report.seatsBooked).toBe(accepted.length);
    console.log(
      `travel crash test: ${sent.size} reservations (${sentAsync} asynchronous) through ${KILLS} kills: ` +
        `${accepted.length} accepted, ${refused.length} refused, ${interrupted} cut off by a kill, ` +
        `${askedAgain} asked again; ` +
        `recovered ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the last restart, ` +
        `${((Date.now() - began) / 1000).toFixed(1)} s in all`,
    );
  }, 150_000);
});
