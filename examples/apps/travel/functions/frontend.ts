/**
 * The frontends (safe variant). Searches, recommendations and logins only read, so they are
 * plain functions, the same as in the unsafe variant. A reservation is checked and priced
 * here, then made by the `travel-reservation` workflow (reservations.ts), which runs it to
 * completion exactly once even if the process dies on the way.
 */
import { defineFunction } from "boki-ts";
import { RESERVE_TIMEOUT_MS, reserve, servicesOf } from "../lib/app.js";
import { FN, type ReserveAnswer } from "../lib/model.js";
import { RESERVATION_WORKFLOW } from "./reservations.js";

export { searchFunction, recommendFunction, loginFunction } from "../lib/app.js";

export const reserveFunction = defineFunction({
  name: FN.reserve,
  timeoutMs: RESERVE_TIMEOUT_MS,
  handler: (ctx, input: unknown) =>
    reserve(servicesOf(ctx), input, (b) => ctx.invoke<ReserveAnswer>(RESERVATION_WORKFLOW, b)),
});
