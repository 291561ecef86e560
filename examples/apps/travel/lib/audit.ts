/**
 * The travel application's invariants, computed from every hotel's rooms, every flight's
 * seats and the orders (each variant's `travel-audit` collects them its own way):
 *
 * - no hotel has more rooms booked on a night, and no flight more seats on a day, than it has;
 * - each night's and day's count is the number of reservations holding it (nothing counted
 *   twice or lost);
 * - every reservation holds both its room and its seat, or neither (none half-made), and no
 *   reservation id is held by two hotels or two flights;
 * - every reservation's order was placed exactly once;
 * - (safe variant) no hotel or flight is still locked by a transaction.
 */
import { nightsOf, dayOf } from "./data.js";
import type { Rooms, Seats } from "./booking.js";

/** Examples of violations an audit lists (the counts are complete). */
export const AUDIT_EXAMPLES_MAX = 20;
/** Reservation ids an audit lists when asked to (`{ list: true }`). */
export const AUDIT_LIST_MAX = 10_000;

export interface AuditInput {
  readonly rooms: readonly Rooms[];
  readonly seats: readonly Seats[];
  /** How many times each reservation's order was placed (0 or absent: not placed). */
  readonly orders: Readonly<Record<string, number>>;
  /** Hotels and flights still locked by a transaction (ids). */
  readonly locked?: readonly string[];
}

export interface AuditReport {
  readonly ok: boolean;
  /** Reservations held by a room or a seat. */
  readonly reservations: number;
  readonly roomsBooked: number;
  readonly seatsBooked: number;
  /** Nights or days booked over capacity. */
  readonly overbooked: number;
  /** Nights or days whose count is not the number of reservations holding them. */
  readonly miscounted: number;
  /** Reservations holding a room and no seat, or a seat and no room, or not agreeing on them. */
  readonly halfMade: number;
  /** Reservation ids held by more than one hotel or more than one flight. */
  readonly duplicated: number;
  readonly ordersMissing: number;
  readonly ordersDuplicated: number;
  readonly locked: number;
  /** Up to AUDIT_EXAMPLES_MAX violations, described. */
  readonly examples: readonly string[];
  /** The reservation ids, when asked for (at most AUDIT_LIST_MAX). */
  readonly reservationIds?: readonly string[];
}

/** The reservation ids held by the rooms and seats. */
export function reservationIdsOf(input: Pick<AuditInput, "rooms" | "seats">): string[] {
  const ids = new Set<string>();
  for (const r of input.rooms) for (const id of Object.keys(r.reservations)) ids.add(id);
  for (const s of input.seats) for (const id of Object.keys(s.reservations)) ids.add(id);
  return [...ids].sort();
}

export function audit(input: AuditInput, list = false): AuditReport {
  const examples: string[] = [];
  const note = (what: string) => {
    if (examples.length < AUDIT_EXAMPLES_MAX) examples.push(what);
  };
  let overbooked = 0;
  let miscounted = 0;
  let duplicated = 0;
  let halfMade = 0;
  let roomsBooked = 0;
  let seatsBooked = 0;

  const roomHolders = new Map<string, { hotelId: string; flightId: string; inDate: string }>();
  for (const r of input.rooms) {
    const held: Record<string, number> = {};
    for (const [id, res] of Object.entries(r.reservations)) {
      if (roomHolders.has(id)) {
        duplicated++;
        note(`reservation ${id} holds rooms in ${roomHolders.get(id)!.hotelId} and ${r.hotelId}`);
      }
      roomHolders.set(id, { hotelId: r.hotelId, flightId: res.flightId, inDate: res.inDate });
      for (const night of nightsOf(dayOf(res.inDate)!, dayOf(res.outDate)!))
        held[night] = (held[night] ?? 0) + 1;
    }
    for (const night of new Set([...Object.keys(r.booked), ...Object.keys(held)])) {
      const n = r.booked[night] ?? 0;
      roomsBooked += n;
      if (n > r.capacity) {
        overbooked++;
        note(`hotel ${r.hotelId} has ${n} of ${r.capacity} rooms booked on ${night}`);
      }
      if (n !== (held[night] ?? 0)) {
        miscounted++;
        note(`hotel ${r.hotelId} counts ${n} rooms on ${night}, held by ${held[night] ?? 0}`);
      }
    }
  }

  const seatHolders = new Map<string, { flightId: string; hotelId: string; date: string }>();
  for (const s of input.seats) {
    const held: Record<string, number> = {};
    for (const [id, res] of Object.entries(s.reservations)) {
      if (seatHolders.has(id)) {
        duplicated++;
        note(`reservation ${id} holds seats on ${seatHolders.get(id)!.flightId} and ${s.flightId}`);
      }
      seatHolders.set(id, { flightId: s.flightId, hotelId: res.hotelId, date: res.date });
      held[res.date] = (held[res.date] ?? 0) + 1;
    }
    for (const day of new Set([...Object.keys(s.booked), ...Object.keys(held)])) {
      const n = s.booked[day] ?? 0;
      seatsBooked += n;
      if (n > s.capacity) {
        overbooked++;
        note(`flight ${s.flightId} has ${n} of ${s.capacity} seats booked on ${day}`);
      }
      if (n !== (held[day] ?? 0)) {
        miscounted++;
        note(`flight ${s.flightId} counts ${n} seats on ${day}, held by ${held[day] ?? 0}`);
      }
    }
  }

  const ids = reservationIdsOf(input);
  let ordersMissing = 0;
  let ordersDuplicated = 0;
  for (const id of ids) {
    const room = roomHolders.get(id);
    const seat = seatHolders.get(id);
    if (
      room === undefined ||
      seat === undefined ||
      room.flightId !== seat.flightId ||
      seat.hotelId !== room.hotelId ||
      seat.date !== room.inDate
    ) {
      halfMade++;
      note(
        `reservation ${id}: room ${room === undefined ? "none" : room.hotelId}, seat ${seat === undefined ? "none" : `${seat.flightId} ${seat.date}`}`,
      );
    }
    const placed = input.orders[id] ?? 0;
    if (placed === 0) {
      ordersMissing++;
      note(`reservation ${id} has no order`);
    } else if (placed > 1) {
      ordersDuplicated++;
      note(`reservation ${id}'s order was placed ${placed} times`);
    }
  }
  const locked = input.locked?.length ?? 0;
  if (locked > 0) note(`still locked: ${input.locked!.slice(0, 5).join(", ")}`);
  const ok =
    overbooked + miscounted + halfMade + duplicated + ordersMissing + ordersDuplicated + locked ===
    0;
  return {
    ok,
    reservations: ids.length,
    roomsBooked,
    seatsBooked,
    overbooked,
    miscounted,
    halfMade,
    duplicated,
    ordersMissing,
    ordersDuplicated,
    locked,
    examples,
    ...(list ? { reservationIds: ids.slice(0, AUDIT_LIST_MAX) } : {}),
  };
}

/** Nested invocations an audit runs at once. */
export const AUDIT_PARALLEL_MAX = 32;

/** `fn` over `items`, at most AUDIT_PARALLEL_MAX at once, in order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(AUDIT_PARALLEL_MAX, items.length) }, worker));
  return out;
}
