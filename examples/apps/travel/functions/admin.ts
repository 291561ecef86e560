/**
 * Loading the dataset and checking the invariants (safe variant).
 *
 *   travel-seed   { hotels?, flights?, users? } (at most SEED_ITEMS_MAX each): the catalogue in
 *                 the store, and each hotel's rooms and flight's seats opened, exactly once
 *   travel-audit  { list? }: the invariants over every hotel, flight and order (lib/audit.ts),
 *                 and whether a transaction still holds a lock
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import { OBJECT_FUNCTIONS } from "boki-ts/objects";
import { audit, mapLimited, reservationIdsOf } from "../lib/audit.js";
import type { Rooms, Seats } from "../lib/booking.js";
import { inventory, parseSeed, storeOf, writeCatalog } from "../lib/catalog.js";
import { FN } from "../lib/model.js";
import { ORDERS_OBJECT, ROOMS_OBJECT, SEATS_OBJECT, type OrderState } from "./reservations.js";

/** Time limit of a seed batch or an audit, ms: they make hundreds of calls. */
const ADMIN_TIMEOUT_MS = 120_000;

export const seed = defineFunction({
  name: FN.seed,
  timeoutMs: ADMIN_TIMEOUT_MS,
  async handler(ctx, input: unknown) {
    const batch = parseSeed(input);
    await writeCatalog(storeOf(ctx), batch);
    const open = (object: string, key: string, capacity: number) =>
      ctx.invoke(object, { key, handler: "open", input: { capacity }, id: `open/${key}` });
    await mapLimited(
      [
        ...batch.hotels.map((h) => () => open(ROOMS_OBJECT, h.id, h.rooms)),
        ...batch.flights.map((f) => () => open(SEATS_OBJECT, f.id, f.seats)),
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

interface InstanceState<S> {
  readonly state: S | null;
  readonly lockedBy: string | null;
}

function stateOf<S>(ctx: FunctionContext, object: string, key: string): Promise<InstanceState<S>> {
  return ctx.invoke<InstanceState<S>>(OBJECT_FUNCTIONS.state, { object, key });
}

export const auditFunction = defineFunction({
  name: FN.audit,
  timeoutMs: ADMIN_TIMEOUT_MS,
  async handler(ctx, input: { list?: unknown } | null) {
    const inv = await inventory(storeOf(ctx));
    const [hotels, flights] = await Promise.all([
      mapLimited(inv.hotels, (id) => stateOf<Rooms>(ctx, ROOMS_OBJECT, id)),
      mapLimited(inv.flights, (id) => stateOf<Seats>(ctx, SEATS_OBJECT, id)),
    ]);
    const locked = [
      ...inv.hotels.filter((_, i) => hotels[i]!.lockedBy !== null),
      ...inv.flights.filter((_, i) => flights[i]!.lockedBy !== null),
    ];
    const rooms = hotels.flatMap((h) => (h.state === null ? [] : [h.state]));
    const seats = flights.flatMap((f) => (f.state === null ? [] : [f.state]));
    const ids = reservationIdsOf({ rooms, seats });
    const placed = await mapLimited(
      ids,
      async (id) => (await stateOf<OrderState>(ctx, ORDERS_OBJECT, id)).state?.placed ?? 0,
    );
    const orders = Object.fromEntries(ids.map((id, i) => [id, placed[i]!]));
    return audit({ rooms, seats, orders, locked }, input?.list === true);
  },
});
