/**
 * The frontends (safe variant). Searches, recommendations and logins only read, so they are
 * plain functions, the same as in the unsafe variant. A reservation is checked and priced
 * here, then made by the `travel-reservation` workflow (reservations.ts), which runs it to
 * completion exactly once even if the process dies on the way.
 */
import { defineFunction, type FunctionContext } from "boki-ts";
import { RESERVE_TIMEOUT_MS, reserve, servicesOf } from "../lib/app.js";
import { FN, type Booking, type ReserveAnswer } from "../lib/model.js";
import { RESERVATION_WORKFLOW } from "./reservations.js";

export { searchFunction, recommendFunction, loginFunction } from "../lib/app.js";

/** Failures of the workflow's invocation that asking again can fix (its outcome is not known). */
const RETRYABLE: ReadonlySet<string> = new Set([
  "TIMEOUT",
  "OVERLOADED",
  "UNAVAILABLE",
  "WORKER_LOST",
]);

/** Makes the reservation through its workflow; a cut-off call answers BUSY (ask again). */
async function make(ctx: FunctionContext, b: Booking): Promise<ReserveAnswer> {
  try {
    return await ctx.invoke<ReserveAnswer>(RESERVATION_WORKFLOW, b);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== "string" || !RETRYABLE.has(code)) throw err;
    return {
      reserved: false,
      reservationId: b.reservationId,
      error: {
        code: "BUSY",
        message: `the reservation did not finish in time (${code}); it goes on, ask again`,
        retryable: true,
      },
    };
  }
}

export const reserveFunction = defineFunction({
  name: FN.reserve,
  timeoutMs: RESERVE_TIMEOUT_MS,
  handler: (ctx, input: unknown) => reserve(servicesOf(ctx), input, (b) => make(ctx, b)),
});
