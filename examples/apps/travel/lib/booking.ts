/**
 * Rooms and seats: a hotel's and a flight's booking state, and the rule that takes a room for
 * some nights or a seat on a day. The rule is a pure function of the state, shared by both
 * variants: the safe one runs it in an object's handler inside a transaction, the unsafe one
 * on a plain read of the store followed by a plain write.
 *
 * A reservation id is taken once: taking it again for the same stay (a client asking again)
 * changes nothing and answers as the first time did; for another stay it is refused.
 */
import type { Booking, RefusalCode } from "./model.js";
import { dayOf, nightsOf } from "./data.js";

/** A hotel's rooms: how many are booked each night, and the reservations holding them. */
export interface Rooms {
  readonly hotelId: string;
  readonly capacity: number;
  readonly booked: Record<string, number>;
  readonly reservations: Record<string, RoomReservation>;
}

export interface RoomReservation {
  readonly username: string;
  readonly flightId: string;
  readonly inDate: string;
  readonly outDate: string;
}

/** A flight's seats: how many are booked each day, and the reservations holding them. */
export interface Seats {
  readonly flightId: string;
  readonly capacity: number;
  readonly booked: Record<string, number>;
  readonly reservations: Record<string, SeatReservation>;
}

export interface SeatReservation {
  readonly username: string;
  readonly hotelId: string;
  readonly date: string;
}

/** What taking a room or a seat decided. */
export type Take =
  /** Take `dates` (nothing to do if `already`: this reservation holds them). */
  | { readonly ok: true; readonly already: boolean; readonly dates: readonly string[] }
  | {
      readonly ok: false;
      readonly code: Exclude<RefusalCode, "BAD_LOGIN">;
      readonly message: string;
    };

export function roomOf(b: Booking): RoomReservation {
  return { username: b.username, flightId: b.flightId, inDate: b.inDate, outDate: b.outDate };
}

export function seatOf(b: Booking): SeatReservation {
  return { username: b.username, hotelId: b.hotelId, date: b.inDate };
}

function same(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function take(
  s: Rooms | Seats,
  rid: string,
  held: object | undefined,
  mine: object,
  dates: readonly string[],
  full: "HOTEL_FULL" | "FLIGHT_FULL",
  what: string,
): Take {
  if (held !== undefined) {
    if (same(held, mine)) return { ok: true, already: true, dates };
    return {
      ok: false,
      code: "RESERVATION_CONFLICT",
      message: `reservation ${rid} was made for another stay`,
    };
  }
  for (const d of dates) {
    if ((s.booked[d] ?? 0) >= s.capacity)
      return { ok: false, code: full, message: `${what} is full on ${d}` };
  }
  return { ok: true, already: false, dates };
}

/** Whether the hotel has a room every night of the booking. */
export function takeRoom(s: Rooms, b: Booking): Take {
  const nights = nightsOf(dayOf(b.inDate)!, dayOf(b.outDate)!);
  const held = s.reservations[b.reservationId];
  return take(s, b.reservationId, held, roomOf(b), nights, "HOTEL_FULL", `hotel ${s.hotelId}`);
}

/** Whether the flight has a seat on the day of the booking. */
export function takeSeat(s: Seats, b: Booking): Take {
  const held = s.reservations[b.reservationId];
  return take(
    s,
    b.reservationId,
    held,
    seatOf(b),
    [b.inDate],
    "FLIGHT_FULL",
    `flight ${s.flightId}`,
  );
}

/** The state after a successful take (a copy). */
export function applyRoom(s: Rooms, b: Booking, t: Take & { ok: true }): Rooms {
  if (t.already) return s;
  const booked = { ...s.booked };
  for (const d of t.dates) booked[d] = (booked[d] ?? 0) + 1;
  return { ...s, booked, reservations: { ...s.reservations, [b.reservationId]: roomOf(b) } };
}

export function applySeat(s: Seats, b: Booking, t: Take & { ok: true }): Seats {
  if (t.already) return s;
  const booked = { ...s.booked };
  for (const d of t.dates) booked[d] = (booked[d] ?? 0) + 1;
  return { ...s, booked, reservations: { ...s.reservations, [b.reservationId]: seatOf(b) } };
}

export function emptyRooms(hotelId: string, capacity: number): Rooms {
  return { hotelId, capacity, booked: {}, reservations: {} };
}

export function emptySeats(flightId: string, capacity: number): Seats {
  return { flightId, capacity, booked: {}, reservations: {} };
}
