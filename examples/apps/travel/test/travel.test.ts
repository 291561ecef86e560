/**
 * The travel application through the runtime, as a user's project tests it: each variant's
 * functions in `startDevServer`, the dataset loaded through `travel-seed`, then requests
 * over HTTP. Both variants answer searches, recommendations, logins and sequential
 * reservations alike; the safe one also keeps a hotel's last rooms to their number under
 * concurrent reservations.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "boki-ts/testing";
import type { AuditReport } from "../lib/audit.js";
import { distanceKm, quote } from "../lib/catalog.js";
import { ROOMS_PER_NIGHT, SEATS_PER_FLIGHT, dataset, dayOf, passwordOf } from "../lib/data.js";
import type { ReserveAnswer } from "../lib/model.js";

const VARIANTS = ["functions", "unsafe"] as const;
/** Longest wait for the asynchronous orders to be placed, ms. */
const ORDERS_WAIT_MS = 10_000;

const data = dataset();
/** A hotel the tests add with few rooms, so that a race for its last rooms is short. */
const SMALL_HOTEL = "h-small";
const SMALL_ROOMS = 3;
const hotel = (i: number) => data.hotels[i]!;
const user = { username: "user7", password: passwordOf(7) };

async function post(dev: TestServer, fn: string, body: unknown) {
  const res = await fetch(`${dev.url}/function/${fn}`, {
    method: "POST",
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const json: unknown = await res.json();
  return { status: res.status, json };
}

async function ok<T>(dev: TestServer, fn: string, body: unknown): Promise<T> {
  const r = await post(dev, fn, body);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as T;
}

/** The audit once every order of the reservations made so far is placed (bounded wait). */
async function settledAudit(dev: TestServer): Promise<AuditReport> {
  const deadline = Date.now() + ORDERS_WAIT_MS;
  for (;;) {
    const a = await ok<AuditReport>(dev, "travel-audit", { list: true });
    if ((a.ordersMissing === 0 && a.locked === 0) || Date.now() > deadline) return a;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Loads the whole dataset, 100 hotels, flights and users per request. */
async function seedAll(dev: TestServer): Promise<void> {
  for (let i = 0; i < data.users.length; i += 100) {
    await ok(dev, "travel-seed", {
      hotels: data.hotels.slice(i, i + 100),
      flights: data.flights.slice(i, i + 100),
      users: data.users.slice(i, i + 100),
    });
  }
}

function reservation(
  id: string,
  hotelId: string,
  flightId: string,
  inDate: string,
  outDate: string,
) {
  return { reservationId: id, ...user, hotelId, flightId, inDate, outDate };
}

describe.each(VARIANTS)("travel (%s)", (variant) => {
  let dev: TestServer;
  beforeAll(async () => {
    dev = await startDevServer({
      functions: fileURLToPath(new URL(`../${variant}`, import.meta.url)),
      workers: 2,
    });
    await seedAll(dev);
    await ok(dev, "travel-seed", {
      hotels: [{ ...hotel(0), id: SMALL_HOTEL, rooms: SMALL_ROOMS }],
    });
  }, 60_000);
  afterAll(async () => {
    await dev?.close();
  });

  test("search answers the nearest hotels with the price of the stay, cheapest first", async () => {
    const h = hotel(12);
    const out = await ok<{ hotels: { hotelId: string; distanceKm: number; total: number }[] }>(
      dev,
      "travel-search",
      { lat: h.lat, lon: h.lon, inDate: "2027-01-07", outDate: "2027-01-10" },
    );
    expect(out.hotels).toHaveLength(5);
    const nearest = [...data.hotels]
      .sort(
        (a, b) => distanceKm(h.lat, h.lon, a.lat, a.lon) - distanceKm(h.lat, h.lon, b.lat, b.lon),
      )
      .slice(0, 5)
      .map((x) => x.id);
    expect(out.hotels.map((x) => x.hotelId).sort()).toEqual([...nearest].sort());
    const self = out.hotels.find((x) => x.hotelId === h.id)!;
    expect(self.distanceKm).toBe(0);
    // Thursday, Friday and Saturday nights: one weekday rate and two weekend rates.
    expect(self.total).toBe(quote(h.id, h.rates, dayOf("2027-01-07")!, dayOf("2027-01-10")!).total);
    expect(self.total).toBe(h.rates.weekday + 2 * h.rates.weekend);
    const totals = out.hotels.map((x) => x.total);
    expect(totals).toEqual([...totals].sort((a, b) => a - b));
  });

  test("recommend ranks hotels by rating, by rate and by distance", async () => {
    const at = { lat: 37.78, lon: -122.41 };
    const by = async (require: string) =>
      (
        await ok<{ hotels: { id: string }[] }>(dev, "travel-recommend", { ...at, require })
      ).hotels.map((x) => x.id);
    const ratings = (await by("rating")).map((id) => data.hotels.find((x) => x.id === id)!.rating);
    expect(ratings).toHaveLength(5);
    expect(ratings[0]).toBe(Math.max(...data.hotels.map((x) => x.rating)));
    expect(ratings).toEqual([...ratings].sort((a, b) => b - a));
    const rates = (await by("rate")).map(
      (id) => data.hotels.find((x) => x.id === id)!.rates.weekday,
    );
    expect(rates[0]).toBe(Math.min(...data.hotels.map((x) => x.rates.weekday)));
    expect(rates).toEqual([...rates].sort((a, b) => a - b));
    const nearest = [...data.hotels].sort(
      (a, b) => distanceKm(at.lat, at.lon, a.lat, a.lon) - distanceKm(at.lat, at.lon, b.lat, b.lon),
    )[0]!.id;
    expect((await by("distance"))[0]).toBe(nearest);
  });

  test("login accepts the right password and refuses a wrong one or an unknown user", async () => {
    expect(await ok(dev, "travel-login", user)).toEqual({ loggedIn: true, username: "user7" });
    for (const wrong of [
      { ...user, password: passwordOf(8) },
      { username: "nobody", password: "x" },
    ]) {
      expect(await ok(dev, "travel-login", wrong)).toMatchObject({
        loggedIn: false,
        error: { code: "BAD_LOGIN" },
      });
    }
  });

  test("a reservation takes a room every night and a seat, its order is placed once, and asking again answers the same", async () => {
    const r = reservation("trip-1", "h3", "f4", "2027-02-01", "2027-02-03");
    const first = await ok<ReserveAnswer>(dev, "travel-reserve", r);
    const price =
      quote("h3", hotel(3).rates, dayOf("2027-02-01")!, dayOf("2027-02-03")!).total +
      data.flights[4]!.price;
    expect(first).toEqual({
      reserved: true,
      reservationId: "trip-1",
      username: "user7",
      hotelId: "h3",
      flightId: "f4",
      inDate: "2027-02-01",
      outDate: "2027-02-03",
      price,
    });
    expect(await ok(dev, "travel-reserve", r)).toEqual(first);
    const a = await settledAudit(dev);
    expect(a).toMatchObject({ ok: true, roomsBooked: 2, seatsBooked: 1, ordersMissing: 0 });
    expect(a.reservationIds).toContain("trip-1");
  });

  test("a reservation id used again for another stay is refused with RESERVATION_CONFLICT", async () => {
    await ok(dev, "travel-reserve", reservation("trip-2", "h5", "f5", "2027-02-10", "2027-02-11"));
    const again = await ok<ReserveAnswer>(
      dev,
      "travel-reserve",
      reservation("trip-2", "h5", "f5", "2027-02-10", "2027-02-12"),
    );
    expect(again).toMatchObject({ reserved: false, error: { code: "RESERVATION_CONFLICT" } });
  });

  test("a full hotel refuses with HOTEL_FULL and a full flight with FLIGHT_FULL, taking neither room nor seat", async () => {
    const night = ["2027-03-05", "2027-03-06"] as const;
    for (let i = 0; i < ROOMS_PER_NIGHT; i++) {
      const a = await ok<ReserveAnswer>(
        dev,
        "travel-reserve",
        reservation(`fill-h-${i}`, "h20", `f${40 + i}`, ...night),
      );
      expect(a.reserved).toBe(true);
    }
    const hotelFull = await ok<ReserveAnswer>(
      dev,
      "travel-reserve",
      reservation("one-too-many-h", "h20", "f60", ...night),
    );
    expect(hotelFull).toMatchObject({
      reserved: false,
      reservationId: "one-too-many-h",
      error: { code: "HOTEL_FULL", retryable: false },
    });
    for (let i = 0; i < SEATS_PER_FLIGHT; i++) {
      const a = await ok<ReserveAnswer>(
        dev,
        "travel-reserve",
        reservation(`fill-f-${i}`, `h${40 + i}`, "f21", "2027-03-10", "2027-03-11"),
      );
      expect(a.reserved).toBe(true);
    }
    const flightFull = await ok<ReserveAnswer>(
      dev,
      "travel-reserve",
      reservation("one-too-many-f", "h61", "f21", "2027-03-10", "2027-03-12"),
    );
    expect(flightFull).toMatchObject({ reserved: false, error: { code: "FLIGHT_FULL" } });
    const a = await settledAudit(dev);
    expect(a.ok, JSON.stringify(a.examples)).toBe(true);
    expect(a.reservationIds).not.toContain("one-too-many-h");
    expect(a.reservationIds).not.toContain("one-too-many-f");
  });

  test("a reservation with a wrong password is refused with BAD_LOGIN and takes nothing", async () => {
    const r = { ...reservation("trip-bad", "h8", "f8", "2027-04-01", "2027-04-02"), password: "x" };
    expect(await ok(dev, "travel-reserve", r)).toMatchObject({
      reserved: false,
      error: { code: "BAD_LOGIN" },
    });
    expect((await settledAudit(dev)).reservationIds).not.toContain("trip-bad");
  });

  test("bad input is refused with 400 INVALID_ARGUMENT", async () => {
    const good = reservation("trip-x", "h1", "f1", "2027-01-05", "2027-01-06");
    const bad: Array<[string, unknown]> = [
      ["travel-search", null],
      ["travel-search", { lat: 91, lon: 0, inDate: "2027-01-01", outDate: "2027-01-02" }],
      ["travel-search", { lat: 37.7, lon: -122.4, inDate: "2027-02-30", outDate: "2027-03-01" }],
      ["travel-search", { lat: 37.7, lon: -122.4, inDate: "2027-01-05", outDate: "2027-01-05" }],
      ["travel-search", { lat: 37.7, lon: -122.4, inDate: "2026-12-31", outDate: "2027-01-02" }],
      ["travel-search", { lat: 37.7, lon: -122.4, inDate: "2027-01-01", outDate: "2027-01-20" }],
      ["travel-recommend", { lat: 37.7, lon: -122.4, require: "price" }],
      ["travel-login", { username: "", password: "x" }],
      ["travel-login", [1, 2]],
      ["travel-reserve", { ...good, reservationId: "has space" }],
      ["travel-reserve", { ...good, hotelId: "h1000" }],
      ["travel-reserve", { ...good, flightId: "f-none" }],
      ["travel-reserve", { ...good, inDate: 20270105 }],
      ["travel-seed", { hotels: "all" }],
    ];
    for (const [fn, body] of bad) {
      const r = await post(dev, fn, body);
      expect(
        [r.status, (r.json as { error?: { code?: string } }).error?.code],
        `${fn} ${JSON.stringify(body)}`,
      ).toEqual([400, "INVALID_ARGUMENT"]);
    }
    expect((await settledAudit(dev)).reservationIds).not.toContain("trip-x");
  });

  // Only the safe variant promises this: the unsafe one's read-check-write may overbook.
  (variant === "functions" ? test : test.skip)(
    "twice as many concurrent reservations as a hotel has rooms take exactly its rooms, each with its seat and order",
    async () => {
      const answers = await Promise.all(
        Array.from({ length: 2 * SMALL_ROOMS }, async (_, i) => {
          const r = reservation(`race-${i}`, SMALL_HOTEL, `f${i}`, "2027-04-20", "2027-04-21");
          // BUSY (the hotel stayed locked by the others) is retryable: ask again, bounded.
          for (let attempt = 0; attempt < 20; attempt++) {
            const a = await ok<ReserveAnswer>(dev, "travel-reserve", r);
            if (a.reserved || a.error.code !== "BUSY") return a;
          }
          throw new Error(`race-${i} stayed BUSY`);
        }),
      );
      const reserved = answers.filter((a) => a.reserved);
      expect(reserved).toHaveLength(SMALL_ROOMS);
      for (const a of answers) if (!a.reserved) expect(a.error.code).toBe("HOTEL_FULL");
      const audit = await settledAudit(dev);
      expect(audit.ok, JSON.stringify(audit.examples)).toBe(true);
      expect(audit.reservationIds!.filter((id) => id.startsWith("race-")).sort()).toEqual(
        reserved.map((a) => a.reservationId).sort(),
      );
    },
  );
});
