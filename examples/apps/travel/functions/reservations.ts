/**
 * Reservations, the safe way: hotels' rooms and flights' seats are objects of
 * `boki-ts/objects`, a reservation takes a room and a seat in one transaction (two-phase
 * commit over two-phase locking: both or neither, and never more than there are), and the
 * order that follows is started from the workflow's log, so it is placed exactly once.
 *
 *   travel-rooms        object per hotel: { hotelId, capacity, booked: { night: n }, reservations }
 *     open    (exclusive)  { capacity }: the hotel's rooms, once (the seed)
 *     take    (exclusive)  a Booking: a room every night of it, or HOTEL_FULL
 *     inspect (shared)     the state as committed
 *   travel-seats        object per flight: the same for seats on the day of the booking
 *   travel-orders       object per reservation: { booking, placed } (placed counts applications)
 *   travel-reservation  workflow: the transaction, then the order (asynchronously)
 *   travel-order        places a reservation's order (request id order/<reservationId>)
 */
import { defineFunction } from "boki-ts";
import { defineWorkflow } from "boki-ts/flow";
import { defineObject, HandlerError, runTransaction } from "boki-ts/objects";
import { makeReservation, type TakeAnswer } from "../lib/app.js";
import {
  applyRoom,
  applySeat,
  emptyRooms,
  emptySeats,
  takeRoom,
  takeSeat,
  type Rooms,
  type Seats,
} from "../lib/booking.js";
import { FN, name, type Booking, type RefusalCode } from "../lib/model.js";

export const ROOMS_OBJECT = "travel-rooms";
export const SEATS_OBJECT = "travel-seats";
export const ORDERS_OBJECT = "travel-orders";
export const RESERVATION_WORKFLOW = "travel-reservation";
/**
 * A reservation's time limit, ms: above a prepare's 5 s deadline and the transaction's
 * retries. A reservation cut off by a crash is resumed by flow's recovery this long (plus 2 s)
 * after its last step.
 */
export const RESERVATION_TIMEOUT_MS = 10_000;

const REFUSALS: ReadonlySet<string> = new Set<RefusalCode>([
  "HOTEL_FULL",
  "FLIGHT_FULL",
  "RESERVATION_CONFLICT",
]);

function capacityOf(input: { capacity?: unknown } | null): number {
  const c = input?.capacity;
  if (typeof c !== "number" || !Number.isInteger(c) || c < 1)
    throw new HandlerError("BAD_CAPACITY", "capacity must be a positive integer");
  return c;
}

export const rooms = defineObject<Rooms>({
  name: ROOMS_OBJECT,
  handlers: {
    open: (ctx, input: { capacity: number }) => {
      const capacity = capacityOf(input);
      if (ctx.state.get() === undefined) ctx.state.set(emptyRooms(ctx.key, capacity));
      return null;
    },
    take: (ctx, b: Booking) => {
      const s = ctx.state.get();
      if (s === undefined) throw new HandlerError("NOT_OPEN", `hotel ${ctx.key} has no rooms`);
      const t = takeRoom(s, b);
      if (!t.ok) throw new HandlerError(t.code, t.message);
      ctx.state.set(applyRoom(s, b, t));
      return { already: t.already };
    },
    inspect: { shared: true, handler: (ctx) => ctx.state.get() ?? null },
  },
});

export const seats = defineObject<Seats>({
  name: SEATS_OBJECT,
  handlers: {
    open: (ctx, input: { capacity: number }) => {
      const capacity = capacityOf(input);
      if (ctx.state.get() === undefined) ctx.state.set(emptySeats(ctx.key, capacity));
      return null;
    },
    take: (ctx, b: Booking) => {
      const s = ctx.state.get();
      if (s === undefined) throw new HandlerError("NOT_OPEN", `flight ${ctx.key} has no seats`);
      const t = takeSeat(s, b);
      if (!t.ok) throw new HandlerError(t.code, t.message);
      ctx.state.set(applySeat(s, b, t));
      return { already: t.already };
    },
    inspect: { shared: true, handler: (ctx) => ctx.state.get() ?? null },
  },
});

export interface OrderState {
  readonly booking: Booking;
  /** How many times `place` applied: exactly once is 1. */
  readonly placed: number;
}

export const orders = defineObject<OrderState>({
  name: ORDERS_OBJECT,
  handlers: {
    // Counts, rather than ignoring a repeat, so that an order placed twice would show.
    place: (ctx, b: Booking) => {
      const placed = (ctx.state.get()?.placed ?? 0) + 1;
      ctx.state.set({ booking: b, placed });
      return placed;
    },
  },
});

/** Places a reservation's order, exactly once by its request id. */
export const order = defineFunction({
  name: FN.order,
  handler: (ctx, b: Booking) => {
    const id = name(b?.reservationId, "reservationId");
    return ctx.invoke(ORDERS_OBJECT, { key: id, handler: "place", input: b, id: `order/${id}` });
  },
});

/** The room and the seat in one transaction; what it answered. */
async function takeBoth(wf: Parameters<typeof runTransaction>[0], b: Booking): Promise<TakeAnswer> {
  const out = await runTransaction(wf, {
    calls: [
      { object: ROOMS_OBJECT, key: b.hotelId, handler: "take", input: b },
      { object: SEATS_OBJECT, key: b.flightId, handler: "take", input: b },
    ],
  });
  if (out.status === "committed") {
    const already = out.outputs.every((o) => (o as { already?: unknown } | null)?.already === true);
    return { ok: true, already };
  }
  if (out.retryable) {
    return {
      ok: false,
      code: "BUSY",
      message: `the hotel or the flight stayed locked by other reservations (${out.error.message})`,
      retryable: true,
    };
  }
  const code = out.error.code ?? "";
  // Anything but a refusal is a broken seed or a bug: fail loudly rather than answer it.
  if (!REFUSALS.has(code)) throw new Error(`reservation ${b.reservationId}: ${out.error.message}`);
  return { ok: false, code: code as RefusalCode, message: out.error.message, retryable: false };
}

export const reservation = defineWorkflow({
  name: RESERVATION_WORKFLOW,
  timeoutMs: RESERVATION_TIMEOUT_MS,
  handler: (wf, b: Booking) =>
    makeReservation(
      {
        take: (booking) => takeBoth(wf, booking),
        order: async (booking) => {
          await wf.invokeAsync(FN.order, booking);
        },
      },
      b,
    ),
});
