/**
 * The travel application's dataset and calendar: hotels around San Francisco with rate plans
 * and profiles, flights that depart every day, and users with passwords. Everything is
 * generated from a fixed seed, so the load generator, the tests and the functions agree on
 * ids, coordinates and passwords without sharing files.
 *
 * This module is plain data and arithmetic (no Boki.ts imports): the benchmark's load
 * generator imports it too.
 */

/** Hotels in the dataset (ids h0 … h99). */
export const HOTELS = 100;
/** Flights in the dataset (ids f0 … f99), each flying every day of the calendar. */
export const FLIGHTS = 100;
/** Users in the dataset (user0 … user499). */
export const USERS = 500;
/** Rooms a hotel has for each night. */
export const ROOMS_PER_NIGHT = 10;
/** Seats a flight has on each day. */
export const SEATS_PER_FLIGHT = 10;

/** The first day that can be searched or booked. */
export const CALENDAR_FIRST = "2027-01-01";
/**
 * Days that can be searched or booked, from CALENDAR_FIRST. It bounds a hotel's or a flight's
 * state: at most ROOMS_PER_NIGHT × CALENDAR_DAYS reservations (1,200, about 100 KB of JSON).
 */
export const CALENDAR_DAYS = 120;
/** Longest stay, in nights. */
export const NIGHTS_MAX = 7;

/** The area the hotels are in, and searches look around: a box around downtown San Francisco. */
export const AREA = { latMin: 37.7, latMax: 37.82, lonMin: -122.52, lonMax: -122.36 } as const;

export interface HotelSeed {
  readonly id: string;
  readonly name: string;
  readonly lat: number;
  readonly lon: number;
  /** Guests' rating, 1.0 to 5.0. */
  readonly rating: number;
  /** Price of a night, in whole dollars: Sunday to Thursday nights, and Friday and Saturday nights. */
  readonly rates: { readonly weekday: number; readonly weekend: number };
  readonly rooms: number;
  readonly phone: string;
  readonly address: string;
  readonly description: string;
}

export interface FlightSeed {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** Departure time of day, "HH:MM". */
  readonly departs: string;
  /** Price of a seat, whole dollars. */
  readonly price: number;
  readonly seats: number;
}

export interface UserSeed {
  readonly username: string;
  readonly password: string;
}

export interface Dataset {
  readonly hotels: readonly HotelSeed[];
  readonly flights: readonly FlightSeed[];
  readonly users: readonly UserSeed[];
}

/** A small deterministic generator (xorshift32): the same seed gives the same dataset. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const DATASET_SEED = 20_270_101;
const AIRPORTS = ["SFO", "LAX", "SEA", "JFK", "ORD", "BOS", "DEN", "AUS"] as const;
const STREETS = ["Market St", "Mission St", "Geary Blvd", "Lombard St", "Valencia St"] as const;

export const hotelId = (i: number): string => `h${i}`;
export const flightId = (i: number): string => `f${i}`;
export const username = (i: number): string => `user${i}`;
/** The password of user i (the load generator logs in with it). */
export const passwordOf = (i: number): string => `pass-${i}-${(i * 7919) % 10007}`;

let cached: Dataset | undefined;

/** The dataset: HOTELS hotels, FLIGHTS flights, USERS users. */
export function dataset(): Dataset {
  if (cached !== undefined) return cached;
  const random = seededRandom(DATASET_SEED);
  const between = (lo: number, hi: number) => lo + (hi - lo) * random();
  const hotels: HotelSeed[] = [];
  for (let i = 0; i < HOTELS; i++) {
    const weekday = Math.round(between(89, 329));
    hotels.push({
      id: hotelId(i),
      name: `Hotel ${i}`,
      lat: Number(between(AREA.latMin, AREA.latMax).toFixed(6)),
      lon: Number(between(AREA.lonMin, AREA.lonMax).toFixed(6)),
      rating: Number(between(1, 5).toFixed(1)),
      rates: { weekday, weekend: Math.round(weekday * between(1.05, 1.4)) },
      rooms: ROOMS_PER_NIGHT,
      phone: `(415) 555-${String(1000 + i).padStart(4, "0")}`,
      address: `${100 + i * 17} ${STREETS[i % STREETS.length]!}, San Francisco, CA`,
      description: `A ${i % 3 === 0 ? "quiet" : i % 3 === 1 ? "lively" : "historic"} hotel with ${ROOMS_PER_NIGHT} rooms.`,
    });
  }
  const flights: FlightSeed[] = [];
  for (let i = 0; i < FLIGHTS; i++) {
    const to = AIRPORTS[1 + (i % (AIRPORTS.length - 1))]!;
    const hour = 6 + Math.floor(random() * 16);
    flights.push({
      id: flightId(i),
      from: i % 2 === 0 ? "SFO" : to,
      to: i % 2 === 0 ? to : "SFO",
      departs: `${String(hour).padStart(2, "0")}:${String(Math.floor(random() * 12) * 5).padStart(2, "0")}`,
      price: Math.round(between(79, 459)),
      seats: SEATS_PER_FLIGHT,
    });
  }
  const users: UserSeed[] = [];
  for (let i = 0; i < USERS; i++) users.push({ username: username(i), password: passwordOf(i) });
  cached = { hotels, flights, users };
  return cached;
}

// The calendar. Days are numbered from CALENDAR_FIRST (day 0); dates are ISO "YYYY-MM-DD".

const DAY_MS = 86_400_000;
const FIRST_MS = Date.parse(`${CALENDAR_FIRST}T00:00:00Z`);
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

/** The date of day `n` of the calendar. */
export function dateOf(day: number): string {
  return new Date(FIRST_MS + day * DAY_MS).toISOString().slice(0, 10);
}

/** The calendar day of an ISO date, or undefined if it is not a real date. */
export function dayOf(date: string): number | undefined {
  if (!ISO_DATE.test(date)) return undefined;
  const ms = Date.parse(`${date}T00:00:00Z`);
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== date) return undefined;
  return Math.round((ms - FIRST_MS) / DAY_MS);
}

/** The nights of a stay: the dates from inDate up to, not including, outDate. */
export function nightsOf(inDay: number, outDay: number): string[] {
  const nights: string[] = [];
  for (let d = inDay; d < outDay; d++) nights.push(dateOf(d));
  return nights;
}

/** Whether a night is a weekend night (Friday or Saturday). */
export function isWeekendNight(date: string): boolean {
  const weekday = new Date(`${date}T00:00:00Z`).getUTCDay();
  return weekday === 5 || weekday === 6;
}
