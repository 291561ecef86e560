/**
 * The travel application's requests and answers, and their validation: a request that does
 * not fit is refused with INVALID_ARGUMENT (HTTP 400) before anything is read or written.
 */
import { InvocationError } from "boki-ts";
import { CALENDAR_DAYS, NIGHTS_MAX, dateOf, dayOf } from "./data.js";

/** Function names, the same in both variants (the same load runs against either). */
export const FN = {
  search: "travel-search",
  recommend: "travel-recommend",
  login: "travel-login",
  reserve: "travel-reserve",
  geo: "travel-geo",
  rate: "travel-rate",
  profile: "travel-profile",
  recommendation: "travel-recommendation",
  user: "travel-user",
  flight: "travel-flight",
  order: "travel-order",
  seed: "travel-seed",
  audit: "travel-audit",
} as const;

/** Hotels a search or a recommendation answers with. */
export const RESULTS_MAX = 5;
/** Longest username, password, hotel or flight id, in characters. */
export const NAME_CHARS_MAX = 64;
/** A reservation id: 1 to 64 letters, digits and `._:-`, chosen by the client. */
const RESERVATION_ID = /^[A-Za-z0-9._:-]{1,64}$/;
/** Hotels, flights or users one seed request may carry. */
export const SEED_ITEMS_MAX = 200;

export type Ranking = "distance" | "rate" | "rating";
const RANKINGS: readonly Ranking[] = ["distance", "rate", "rating"];

export interface Stay {
  readonly inDate: string;
  readonly outDate: string;
  /** Calendar days of inDate and outDate. */
  readonly inDay: number;
  readonly outDay: number;
}

export interface SearchRequest extends Stay {
  readonly lat: number;
  readonly lon: number;
}

export interface RecommendRequest {
  readonly lat: number;
  readonly lon: number;
  readonly require: Ranking;
}

export interface LoginRequest {
  readonly username: string;
  readonly password: string;
}

export interface ReserveRequest extends LoginRequest, Stay {
  readonly reservationId: string;
  readonly hotelId: string;
  readonly flightId: string;
}

/** A reservation to make: a room in a hotel for the nights, and a seat on the flight of inDate. */
export interface Booking {
  readonly reservationId: string;
  readonly username: string;
  readonly hotelId: string;
  readonly flightId: string;
  readonly inDate: string;
  readonly outDate: string;
  /** Room for the nights plus the seat, whole dollars. */
  readonly price: number;
}

/** Why a reservation was refused (a definite answer: asking again gives the same one). */
export type RefusalCode =
  | "HOTEL_FULL"
  | "FLIGHT_FULL"
  | "BAD_LOGIN"
  /** The reservation id was used before for another stay, hotel, flight or user. */
  | "RESERVATION_CONFLICT";

export type ReserveAnswer =
  | ({ readonly reserved: true } & Booking)
  | {
      readonly reserved: false;
      readonly reservationId: string;
      readonly error: {
        readonly code: RefusalCode | "BUSY";
        readonly message: string;
        /** BUSY only: the reservation did not finish in time; ask again with the same id. */
        readonly retryable: boolean;
      };
    };

export type LoginAnswer =
  | { readonly loggedIn: true; readonly username: string }
  | {
      readonly loggedIn: false;
      readonly error: { readonly code: "BAD_LOGIN"; readonly message: string };
    };

export function refuse(message: string): never {
  throw new InvocationError("INVALID_ARGUMENT", message);
}

function record(input: unknown, what: string): Record<string, unknown> {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    refuse(`${what} is a JSON object`);
  return input as Record<string, unknown>;
}

function coordinate(v: unknown, what: string, limit: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || Math.abs(v) > limit)
    refuse(`${what} must be a number in [-${limit}, ${limit}]`);
  return v;
}

export function name(v: unknown, what: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > NAME_CHARS_MAX)
    refuse(`${what} must be a string of 1 to ${NAME_CHARS_MAX} characters`);
  return v;
}

/** The stay of a request: inDate and outDate within the calendar, 1 to NIGHTS_MAX nights. */
export function parseStay(o: Record<string, unknown>): Stay {
  const inDate = o["inDate"];
  const outDate = o["outDate"];
  const inDay = typeof inDate === "string" ? dayOf(inDate) : undefined;
  const outDay = typeof outDate === "string" ? dayOf(outDate) : undefined;
  if (inDay === undefined || outDay === undefined)
    refuse('inDate and outDate must be dates "YYYY-MM-DD"');
  if (inDay < 0 || outDay > CALENDAR_DAYS) {
    refuse(`stays must be within ${dateOf(0)} to ${dateOf(CALENDAR_DAYS)} (the bookable calendar)`);
  }
  if (outDay <= inDay || outDay - inDay > NIGHTS_MAX)
    refuse(`outDate must be 1 to ${NIGHTS_MAX} nights after inDate`);
  return { inDate: inDate as string, outDate: outDate as string, inDay, outDay };
}

export function parseSearch(input: unknown): SearchRequest {
  const o = record(input, "a search");
  return {
    lat: coordinate(o["lat"], "lat", 90),
    lon: coordinate(o["lon"], "lon", 180),
    ...parseStay(o),
  };
}

export function parseRecommend(input: unknown): RecommendRequest {
  const o = record(input, "a recommendation request");
  const require = o["require"];
  if (!RANKINGS.includes(require as Ranking))
    refuse(`require must be one of ${RANKINGS.join(", ")}`);
  return {
    lat: coordinate(o["lat"], "lat", 90),
    lon: coordinate(o["lon"], "lon", 180),
    require: require as Ranking,
  };
}

export function parseLogin(input: unknown): LoginRequest {
  const o = record(input, "a login");
  return { username: name(o["username"], "username"), password: name(o["password"], "password") };
}

export function parseReserve(input: unknown): ReserveRequest {
  const o = record(input, "a reservation");
  const reservationId = o["reservationId"];
  if (typeof reservationId !== "string" || !RESERVATION_ID.test(reservationId))
    refuse("reservationId must be 1 to 64 letters, digits or ._:-");
  return {
    reservationId,
    ...parseLogin(o),
    hotelId: name(o["hotelId"], "hotelId"),
    flightId: name(o["flightId"], "flightId"),
    ...parseStay(o),
  };
}
