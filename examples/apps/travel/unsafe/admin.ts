/**
 * Loading the dataset and checking the invariants (unsafe variant): the same answers as the
 * safe variant's, over the plain store objects.
 */
import { defineFunction } from "boki-ts";
import { audit, mapLimited, reservationIdsOf } from "../lib/audit.js";
import { emptyRooms, emptySeats, type Rooms, type Seats } from "../lib/booking.js";
import { inventory, parseSeed, storeOf, writeCatalog } from "../lib/catalog.js";
import { FN } from "../lib/model.js";
import { UNSAFE } from "./reservations.js";

/** Time limit of a seed batch or an audit, ms. */
const ADMIN_TIMEOUT_MS = 120_000;

export const seed = defineFunction({
  name: FN.seed,
  timeoutMs: ADMIN_TIMEOUT_MS,
  async handler(ctx, input: unknown) {
    const batch = parseSeed(input);
    const store = storeOf(ctx);
    await writeCatalog(store, batch);
    // Opened only if missing, so that seeding again keeps what was booked.
    const open = async (object: string, value: Rooms | Seats) => {
      if ((await store.get(object)) === undefined) await store.set(object, "", value);
    };
    await mapLimited(
      [
        ...batch.hotels.map((h) => () => open(UNSAFE.rooms(h.id), emptyRooms(h.id, h.rooms))),
        ...batch.flights.map((f) => () => open(UNSAFE.seats(f.id), emptySeats(f.id, f.seats))),
      ],
      (f) => f(),
    );
    return {
      hotels: batch.hotels.length,
      flights: batch.flights.length,
      users: batch.users.length,
    };
  },
});

export const auditFunction = defineFunction({
  name: FN.audit,
  timeoutMs: ADMIN_TIMEOUT_MS,
  async handler(ctx, input: { list?: unknown } | null) {
    const store = storeOf(ctx);
    const inv = await inventory(store);
    const [hotels, flights] = await Promise.all([
      mapLimited(inv.hotels, (id) => store.get(UNSAFE.rooms(id)) as Promise<Rooms | undefined>),
      mapLimited(inv.flights, (id) => store.get(UNSAFE.seats(id)) as Promise<Seats | undefined>),
    ]);
    const rooms = hotels.filter((h): h is Rooms => h !== undefined);
    const seats = flights.filter((f): f is Seats => f !== undefined);
    const ids = reservationIdsOf({ rooms, seats });
    const placed = await mapLimited(
      ids,
      async (id) => ((await store.get(UNSAFE.order(id), "placed")) as number | undefined) ?? 0,
    );
    const orders = Object.fromEntries(ids.map((id, i) => [id, placed[i]!]));
    return audit({ rooms, seats, orders }, input?.list === true);
  },
});
