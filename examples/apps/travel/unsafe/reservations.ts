/**
 * Reservations without the libraries' logging (the unsafe variant, the baseline that prices
 * exactly-once): rooms and seats are plain store objects, and a reservation reads a hotel's
 * rooms, checks them and writes the new count, then does the same for the flight's seats (and
 * gives the room back if the flight is full). Nothing makes the two writes atomic or the
 * check still true when the write lands, so concurrent reservations can overbook, a crash
 * between the writes leaves a reservation half-made, and an order whose run is repeated (a
 * restart re-runs an unfinished asynchronous invocation) is placed twice.
 *
 *   travel/rooms/<hotelId>   { hotelId, capacity, booked: { night: n }, reservations }
 *   travel/seats/<flightId>  the same for seats
 *   travel/order/<id>        { booking, placed }
 *   travel-order             places an order: read, add one, write
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import type { Store } from "boki-ts/store";
import type { Reservations, TakeAnswer } from "../lib/app.js";
import { roomOf, seatOf, takeRoom, takeSeat, type Rooms, type Seats } from "../lib/booking.js";
import { storeOf } from "../lib/catalog.js";
import { FN, name, type Booking } from "../lib/model.js";

export const UNSAFE = {
  rooms: (hotelId: string) => `travel/rooms/${hotelId}`,
  seats: (flightId: string) => `travel/seats/${flightId}`,
  order: (reservationId: string) => `travel/order/${reservationId}`,
} as const;

export interface OrderRecord {
  readonly booking: Booking;
  readonly placed: number;
}

async function read<T>(store: Store, object: string, what: string): Promise<T> {
  const v = (await store.get(object)) as T | undefined;
  if (v === undefined) throw new Error(`${what} has no rooms or seats (was the dataset loaded?)`);
  return v;
}

async function take(store: Store, b: Booking): Promise<TakeAnswer> {
  const rooms = await read<Rooms>(store, UNSAFE.rooms(b.hotelId), `hotel ${b.hotelId}`);
  const room = takeRoom(rooms, b);
  if (!room.ok) return { ...room, retryable: false };
  if (!room.already) {
    await store.update(UNSAFE.rooms(b.hotelId), (w) => {
      for (const night of room.dates) w.add(["booked", night], 1);
      w.set(["reservations", b.reservationId], roomOf(b));
    });
  }
  const seats = await read<Seats>(store, UNSAFE.seats(b.flightId), `flight ${b.flightId}`);
  const seat = takeSeat(seats, b);
  if (!seat.ok) {
    if (!room.already) {
      await store.update(UNSAFE.rooms(b.hotelId), (w) => {
        for (const night of room.dates) w.add(["booked", night], -1);
        w.delete(["reservations", b.reservationId]);
      });
    }
    return { ...seat, retryable: false };
  }
  if (!seat.already) {
    await store.update(UNSAFE.seats(b.flightId), (w) => {
      for (const day of seat.dates) w.add(["booked", day], 1);
      w.set(["reservations", b.reservationId], seatOf(b));
    });
  }
  return { ok: true, already: room.already && seat.already };
}

/** Plain reads and writes, and a plain asynchronous invocation of the order. */
export function plainReservations(ctx: FunctionContext): Reservations {
  return {
    take: (b) => take(storeOf(ctx), b),
    order: async (b) => {
      await ctx.invokeAsync(FN.order, b);
    },
  };
}

export const order = defineFunction({
  name: FN.order,
  async handler(ctx, b: Booking) {
    const id = name(b?.reservationId, "reservationId");
    const store = storeOf(ctx);
    const placed = (((await store.get(UNSAFE.order(id), "placed")) as number | undefined) ?? 0) + 1;
    await store.set(UNSAFE.order(id), "", { booking: b, placed });
    return placed;
  },
});
