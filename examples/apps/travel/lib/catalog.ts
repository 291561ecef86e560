/**
 * The read side of the travel application, the same in both variants: the catalogue (hotels'
 * coordinates, rate plans and profiles, flights, users) lives in the store (`boki-ts/store`),
 * written once by the seed, and the services below read it. Reads need no logging: the
 * catalogue does not change after the seed, and each service is a plain function.
 *
 *   travel-geo             { lat, lon }                      → { hotelIds, distancesKm }  the nearest
 *   travel-rate            { hotelIds, inDate, outDate }     → { rates }     price of the stay at each
 *   travel-profile         { hotelIds }                      → { profiles }
 *   travel-recommendation  { lat, lon, require }             → { hotelIds }  best by distance, rate or rating
 *   travel-user            { username, password }            → { ok }        checks the password
 *   travel-flight          { flightId }                      → { flight }    or null
 */
import { createHash } from "node:crypto";
import { defineFunction, type FunctionContext } from "boki-ts";
import { openStore, StoreCache, type Store } from "boki-ts/store";
import {
  isWeekendNight,
  nightsOf,
  type FlightSeed,
  type HotelSeed,
  type UserSeed,
} from "./data.js";
import {
  FN,
  RESULTS_MAX,
  SEED_ITEMS_MAX,
  name,
  parseLogin,
  parseRecommend,
  parseStay,
  refuse,
  type Ranking,
} from "./model.js";

/** One cache per module, so per worker: its invocations read the same log. */
const cache = new StoreCache();

export function storeOf(ctx: FunctionContext): Store {
  return openStore(ctx.log, { cache });
}

/** Store objects of the catalogue. */
export const CATALOG = {
  hotels: "travel/hotels",
  /** { [flightId]: true }: the flights there are. */
  flights: "travel/flights",
  rates: (id: string) => `travel/rates/${id}`,
  profile: (id: string) => `travel/profile/${id}`,
  user: (username: string) => `travel/user/${username}`,
  flight: (id: string) => `travel/flight/${id}`,
} as const;

/** An entry of the hotel index: what geo search and recommendations rank by. */
export interface HotelIndexEntry {
  readonly lat: number;
  readonly lon: number;
  readonly rate: number;
  readonly rating: number;
}

export interface Rates {
  readonly weekday: number;
  readonly weekend: number;
}

export interface Profile {
  readonly id: string;
  readonly name: string;
  readonly rating: number;
  readonly phone: string;
  readonly address: string;
  readonly description: string;
}

export type FlightInfo = Omit<FlightSeed, "seats">;

export interface Quote {
  readonly hotelId: string;
  readonly nights: number;
  readonly total: number;
}

interface StoredUser {
  readonly salt: string;
  readonly hash: string;
}

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");
/** Salts are derived from the username, so seeding twice writes the same record. */
const saltOf = (username: string): string => sha256(`travel-salt:${username}`).slice(0, 16);
const hashOf = (salt: string, password: string): string => sha256(`${salt}:${password}`);

/** Great-circle distance, km. */
export function distanceKm(aLat: number, aLon: number, bLat: number, bLon: number): number {
  const rad = Math.PI / 180;
  const dLat = (bLat - aLat) * rad;
  const dLon = (bLon - aLon) * rad;
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(aLat * rad) * Math.cos(bLat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The price of a stay under a rate plan: weekday and weekend nights at their rates. */
export function quote(hotelId: string, rates: Rates, inDay: number, outDay: number): Quote {
  const nights = nightsOf(inDay, outDay);
  let total = 0;
  for (const night of nights) total += isWeekendNight(night) ? rates.weekend : rates.weekday;
  return { hotelId, nights: nights.length, total };
}

/** The ids of the `limit` hotels ranked first (ties broken by id, so answers are stable). */
export function rank(
  index: Readonly<Record<string, HotelIndexEntry>>,
  by: Ranking,
  lat: number,
  lon: number,
  limit = RESULTS_MAX,
): string[] {
  const scored = Object.entries(index).map(([id, h]) => ({
    id,
    score:
      by === "distance" ? distanceKm(lat, lon, h.lat, h.lon) : by === "rate" ? h.rate : -h.rating,
  }));
  scored.sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return scored.slice(0, limit).map((s) => s.id);
}

function hotelIdsOf(input: unknown): string[] {
  const ids = (input as { hotelIds?: unknown } | null)?.hotelIds;
  if (!Array.isArray(ids) || ids.length > RESULTS_MAX)
    refuse(`hotelIds must be an array of at most ${RESULTS_MAX} hotel ids`);
  return ids.map((id) => name(id, "a hotel id"));
}

async function hotelIndex(store: Store): Promise<Record<string, HotelIndexEntry>> {
  return ((await store.get(CATALOG.hotels)) ?? {}) as unknown as Record<string, HotelIndexEntry>;
}

export const geo = defineFunction({
  name: FN.geo,
  async handler(ctx, input: unknown) {
    const { lat, lon } = parseRecommend({ ...(input as object), require: "distance" });
    const index = await hotelIndex(storeOf(ctx));
    const hotelIds = rank(index, "distance", lat, lon);
    const distancesKm = hotelIds.map((id) =>
      Number(distanceKm(lat, lon, index[id]!.lat, index[id]!.lon).toFixed(3)),
    );
    return { hotelIds, distancesKm };
  },
});

export const recommendation = defineFunction({
  name: FN.recommendation,
  async handler(ctx, input: unknown) {
    const r = parseRecommend(input);
    return { hotelIds: rank(await hotelIndex(storeOf(ctx)), r.require, r.lat, r.lon) };
  },
});

export const rate = defineFunction({
  name: FN.rate,
  async handler(ctx, input: unknown) {
    const ids = hotelIdsOf(input);
    const { inDay, outDay } = parseStay(input as Record<string, unknown>);
    const plans = await storeOf(ctx).transaction(
      (tx) => Promise.all(ids.map((id) => tx.get(CATALOG.rates(id)))),
      { readOnly: true },
    );
    const rates: Quote[] = [];
    plans.forEach((plan, i) => {
      if (plan !== undefined) rates.push(quote(ids[i]!, plan as unknown as Rates, inDay, outDay));
    });
    return { rates };
  },
});

export const profile = defineFunction({
  name: FN.profile,
  async handler(ctx, input: unknown) {
    const ids = hotelIdsOf(input);
    const profiles = await storeOf(ctx).transaction(
      (tx) => Promise.all(ids.map((id) => tx.get(CATALOG.profile(id)))),
      { readOnly: true },
    );
    return { profiles: profiles.filter((p) => p !== undefined) as unknown as Profile[] };
  },
});

export const user = defineFunction({
  name: FN.user,
  async handler(ctx, input: unknown) {
    const login = parseLogin(input);
    const stored = (await storeOf(ctx).get(CATALOG.user(login.username))) as StoredUser | undefined;
    return { ok: stored !== undefined && hashOf(stored.salt, login.password) === stored.hash };
  },
});

export const flight = defineFunction({
  name: FN.flight,
  async handler(ctx, input: unknown) {
    const id = name((input as { flightId?: unknown } | null)?.flightId, "flightId");
    const info = (await storeOf(ctx).get(CATALOG.flight(id))) as FlightInfo | undefined;
    return { flight: info ?? null };
  },
});

/** What one seed request carries. */
export interface SeedBatch {
  readonly hotels?: readonly HotelSeed[];
  readonly flights?: readonly FlightSeed[];
  readonly users?: readonly UserSeed[];
}

function finite(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) refuse(`${what} must be a finite number`);
  return v;
}

/** Longest text of a hotel's profile (phone, address, description), in characters. */
const PROFILE_TEXT_CHARS_MAX = 1_000;

function text(v: unknown, what: string): string {
  if (typeof v !== "string" || v.length > PROFILE_TEXT_CHARS_MAX)
    refuse(`${what} must be a string of at most ${PROFILE_TEXT_CHARS_MAX} characters`);
  return v;
}

function list<T>(v: unknown, what: string, check: (x: Record<string, unknown>) => T): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > SEED_ITEMS_MAX)
    refuse(`${what} must be an array of at most ${SEED_ITEMS_MAX}`);
  return v.map((x: unknown) => {
    if (typeof x !== "object" || x === null) refuse(`each of ${what} is an object`);
    return check(x as Record<string, unknown>);
  });
}

/** A seed request, checked: the hotels, flights and users it carries. */
export function parseSeed(input: unknown): {
  hotels: HotelSeed[];
  flights: FlightSeed[];
  users: UserSeed[];
} {
  const o = (input ?? {}) as Record<string, unknown>;
  const positive = (v: unknown, what: string) => {
    const n = finite(v, what);
    if (!Number.isInteger(n) || n < 1) refuse(`${what} must be a positive integer`);
    return n;
  };
  const hotels = list(o["hotels"], "hotels", (h) => {
    const rates = (h["rates"] ?? {}) as Record<string, unknown>;
    return {
      id: name(h["id"], "a hotel's id"),
      name: name(h["name"], "a hotel's name"),
      lat: finite(h["lat"], "lat"),
      lon: finite(h["lon"], "lon"),
      rating: finite(h["rating"], "rating"),
      rates: {
        weekday: finite(rates["weekday"], "rates"),
        weekend: finite(rates["weekend"], "rates"),
      },
      rooms: positive(h["rooms"], "rooms"),
      phone: text(h["phone"], "phone"),
      address: text(h["address"], "address"),
      description: text(h["description"], "description"),
    };
  });
  const flights = list(o["flights"], "flights", (f) => ({
    id: name(f["id"], "a flight's id"),
    from: name(f["from"], "from"),
    to: name(f["to"], "to"),
    departs: name(f["departs"], "departs"),
    price: finite(f["price"], "price"),
    seats: positive(f["seats"], "seats"),
  }));
  const users = list(o["users"], "users", (u) => parseLogin(u));
  return { hotels, flights, users };
}

/** Writes a seed batch's catalogue entries (the same values every time: seeding is idempotent). */
export async function writeCatalog(
  store: Store,
  batch: ReturnType<typeof parseSeed>,
): Promise<void> {
  const writes: Promise<unknown>[] = [];
  if (batch.hotels.length > 0) {
    writes.push(
      store.update(CATALOG.hotels, (b) => {
        for (const h of batch.hotels)
          b.set([h.id], { lat: h.lat, lon: h.lon, rate: h.rates.weekday, rating: h.rating });
      }),
    );
  }
  for (const h of batch.hotels) {
    writes.push(store.set(CATALOG.rates(h.id), "", h.rates));
    writes.push(
      store.set(CATALOG.profile(h.id), "", {
        id: h.id,
        name: h.name,
        rating: h.rating,
        phone: h.phone,
        address: h.address,
        description: h.description,
      }),
    );
  }
  if (batch.flights.length > 0) {
    writes.push(
      store.update(CATALOG.flights, (b) => {
        for (const f of batch.flights) b.set([f.id], true);
      }),
    );
  }
  for (const f of batch.flights) {
    const { seats: _seats, ...info } = f;
    writes.push(store.set(CATALOG.flight(f.id), "", info));
  }
  for (const u of batch.users) {
    const salt = saltOf(u.username);
    writes.push(store.set(CATALOG.user(u.username), "", { salt, hash: hashOf(salt, u.password) }));
  }
  await Promise.all(writes);
}

/** The ids of every hotel and every flight in the catalogue. */
export async function inventory(store: Store): Promise<{ hotels: string[]; flights: string[] }> {
  const [hotels, flights] = await Promise.all([
    hotelIndex(store),
    store.get(CATALOG.flights) as Promise<Record<string, true> | undefined>,
  ]);
  return { hotels: Object.keys(hotels).sort(), flights: Object.keys(flights ?? {}).sort() };
}
