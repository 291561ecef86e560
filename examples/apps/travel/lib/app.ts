/**
 * The travel application's frontends, written once for both variants against two small
 * interfaces: `Services` (calling the read services) and `Reservations` (what differs: how a
 * reservation's room and seat are taken, and how its order is started).
 *
 *   travel-search     { lat, lon, inDate, outDate }     the nearest hotels, with the stay's price
 *   travel-recommend  { lat, lon, require }             the best hotels by distance, rate or rating
 *   travel-login      { username, password }            { loggedIn }
 *   travel-reserve    { reservationId, username, password, hotelId, flightId, inDate, outDate }
 *                     a room for the nights and a seat on the flight of inDate, then an order
 *
 * Bad input is refused with INVALID_ARGUMENT (HTTP 400); a reservation that cannot be made is
 * answered `{ reserved: false, error: { code, message, retryable } }` with a code of
 * `RefusalCode` (a definite answer), or BUSY (retryable: the reservation did not finish in
 * time, e.g. its hotel or flight stayed locked by other reservations; ask again, same id).
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import type { FlightInfo, Profile, Quote } from "./catalog.js";
import {
  FN,
  parseLogin,
  parseRecommend,
  parseReserve,
  parseSearch,
  refuse,
  type Booking,
  type LoginAnswer,
  type RefusalCode,
  type ReserveAnswer,
} from "./model.js";

/** Calls the application's other functions. */
export interface Services {
  call<O>(name: string, input: unknown): Promise<O>;
}

/** What taking a reservation's room and seat answered. */
export type TakeAnswer =
  /** `already`: the reservation held its room and its seat before (a repeated request). */
  | { readonly ok: true; readonly already: boolean }
  | {
      readonly ok: false;
      readonly code: RefusalCode | "BUSY";
      readonly message: string;
      readonly retryable: boolean;
    };

/** The operations that differ between the safe and the unsafe variant. */
export interface Reservations {
  /** Takes the booking's room and seat (the safe variant: both or neither, atomically). */
  take(b: Booking): Promise<TakeAnswer>;
  /** Starts the booking's order, which runs later. */
  order(b: Booking): Promise<void>;
}

export function servicesOf(ctx: FunctionContext): Services {
  return { call: (name, input) => ctx.invoke(name, input) };
}

export interface SearchHit {
  readonly hotelId: string;
  readonly name: string;
  readonly distanceKm: number;
  readonly nights: number;
  readonly total: number;
}

export async function search(s: Services, input: unknown): Promise<{ hotels: SearchHit[] }> {
  const q = parseSearch(input);
  const { hotelIds, distancesKm } = await s.call<{ hotelIds: string[]; distancesKm: number[] }>(
    FN.geo,
    { lat: q.lat, lon: q.lon },
  );
  const [{ rates }, { profiles }] = await Promise.all([
    s.call<{ rates: Quote[] }>(FN.rate, { hotelIds, inDate: q.inDate, outDate: q.outDate }),
    s.call<{ profiles: Profile[] }>(FN.profile, { hotelIds }),
  ]);
  const names = new Map(profiles.map((p) => [p.id, p.name]));
  const hotels: SearchHit[] = [];
  for (const r of rates) {
    const i = hotelIds.indexOf(r.hotelId);
    hotels.push({
      hotelId: r.hotelId,
      name: names.get(r.hotelId) ?? r.hotelId,
      distanceKm: distancesKm[i] ?? 0,
      nights: r.nights,
      total: r.total,
    });
  }
  hotels.sort((a, b) => a.total - b.total || (a.hotelId < b.hotelId ? -1 : 1));
  return { hotels };
}

export async function recommend(s: Services, input: unknown): Promise<{ hotels: Profile[] }> {
  const q = parseRecommend(input);
  const { hotelIds } = await s.call<{ hotelIds: string[] }>(FN.recommendation, q);
  const { profiles } = await s.call<{ profiles: Profile[] }>(FN.profile, { hotelIds });
  const byId = new Map(profiles.map((p) => [p.id, p]));
  return { hotels: hotelIds.flatMap((id) => byId.get(id) ?? []) };
}

export async function login(s: Services, input: unknown): Promise<LoginAnswer> {
  const l = parseLogin(input);
  const { ok } = await s.call<{ ok: boolean }>(FN.user, l);
  if (ok) return { loggedIn: true, username: l.username };
  return { loggedIn: false, error: { code: "BAD_LOGIN", message: "wrong username or password" } };
}

/**
 * Checks a reservation request (the user's password; the hotel and the flight exist) and
 * prices it, then has `make` make it.
 */
export async function reserve(
  s: Services,
  input: unknown,
  make: (b: Booking) => Promise<ReserveAnswer>,
): Promise<ReserveAnswer> {
  const r = parseReserve(input);
  const [user, { rates }, { flight }] = await Promise.all([
    s.call<{ ok: boolean }>(FN.user, { username: r.username, password: r.password }),
    s.call<{ rates: Quote[] }>(FN.rate, {
      hotelIds: [r.hotelId],
      inDate: r.inDate,
      outDate: r.outDate,
    }),
    s.call<{ flight: FlightInfo | null }>(FN.flight, { flightId: r.flightId }),
  ]);
  const stay = rates[0];
  if (stay === undefined) refuse(`no hotel ${r.hotelId}`);
  if (flight === null) refuse(`no flight ${r.flightId}`);
  if (!user.ok) {
    return {
      reserved: false,
      reservationId: r.reservationId,
      error: { code: "BAD_LOGIN", message: "wrong username or password", retryable: false },
    };
  }
  return make({
    reservationId: r.reservationId,
    username: r.username,
    hotelId: r.hotelId,
    flightId: r.flightId,
    inDate: r.inDate,
    outDate: r.outDate,
    price: stay.total + flight.price,
  });
}

/**
 * Takes the room and the seat, then starts the order: the reservation itself. A repeated
 * request finds both taken and answers as the first did; the first one places the order.
 */
export async function makeReservation(ops: Reservations, b: Booking): Promise<ReserveAnswer> {
  const t = await ops.take(b);
  if (!t.ok) {
    return {
      reserved: false,
      reservationId: b.reservationId,
      error: { code: t.code, message: t.message, retryable: t.retryable },
    };
  }
  if (!t.already) await ops.order(b);
  return { reserved: true, ...b };
}

/** Time limit of a reservation's frontend, ms: above the reservation's own (see the variants). */
export const RESERVE_TIMEOUT_MS = 15_000;

export const searchFunction = defineFunction({
  name: FN.search,
  handler: (ctx, input: unknown) => search(servicesOf(ctx), input),
});

export const recommendFunction = defineFunction({
  name: FN.recommend,
  handler: (ctx, input: unknown) => recommend(servicesOf(ctx), input),
});

export const loginFunction = defineFunction({
  name: FN.login,
  handler: (ctx, input: unknown) => login(servicesOf(ctx), input),
});
