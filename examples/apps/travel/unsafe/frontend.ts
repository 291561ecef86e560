/**
 * The frontends (unsafe variant): the same searches, recommendations and logins as the safe
 * variant, and reservations made by plain calls, reads and writes (reservations.ts).
 */
import { defineFunction } from "boki-ts";
import { RESERVE_TIMEOUT_MS, makeReservation, reserve, servicesOf } from "../lib/app.js";
import { FN } from "../lib/model.js";
import { plainReservations } from "./reservations.js";

export { searchFunction, recommendFunction, loginFunction } from "../lib/app.js";

export const reserveFunction = defineFunction({
  name: FN.reserve,
  timeoutMs: RESERVE_TIMEOUT_MS,
  handler: (ctx, input: unknown) =>
    reserve(servicesOf(ctx), input, (b) => makeReservation(plainReservations(ctx), b)),
});
