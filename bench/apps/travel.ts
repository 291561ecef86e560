/**
 * The travel reservation application (examples/apps/travel/) for `npm run bench -- apps`:
 * DeathStarBench's hotel reservation as Beldi and BokiFlow extended it, hotels and flights.
 *
 * Dataset: 100 hotels around San Francisco (10 rooms a night), 100 flights flying every day
 * (10 seats a day), 500 users, loaded through `travel-seed` in batches. The mix, as in the
 * papers: search 60 %, recommend 39 %, login 0.5 %, reserve 0.5 %. Searches and reservations
 * draw stays over the 120-day calendar (1 to 3 nights), and reservations draw any hotel and
 * any flight, so a night or a day is rarely full: at 500 requests/s a hotel's night holds on
 * average 0.25 reservations after 10 minutes, against 10 rooms.
 *
 * The safe variant (functions/) makes reservations with `boki-ts/objects` transactions and a
 * `boki-ts/flow` workflow; the unsafe one (unsafe/) with plain reads and writes. check() asks
 * `travel-audit` for the invariants (none overbooked, none half-made, every order placed
 * once), waiting (bounded) for the asynchronous orders to be placed.
 */
import { fileURLToPath } from "node:url";
import { postFunction } from "./app.js";
import type { AppRequest, AppTarget, BenchApp, InvariantReport, Variant } from "./app.js";
import {
  AREA,
  CALENDAR_DAYS,
  FLIGHTS,
  HOTELS,
  USERS,
  dataset,
  dateOf,
  flightId,
  hotelId,
  passwordOf,
  username,
} from "../../examples/apps/travel/lib/data.js";
import type { AuditReport } from "../../examples/apps/travel/lib/audit.js";

const APP = fileURLToPath(new URL("../../examples/apps/travel/", import.meta.url));
/** Hotels, flights or users per seed request (the function takes at most 200 of each). */
const SEED_BATCH = 100;
/** Longest wait for the asynchronous orders of a run to be placed, ms. */
const SETTLE_TIMEOUT_MS = 30_000;
/** Pause between two audits while orders are still being placed, ms. */
const SETTLE_POLL_MS = 500;
/** Nights of a drawn stay: 1 to this. */
const DRAWN_NIGHTS_MAX = 3;
const RANKINGS = ["distance", "rate", "rating"] as const;

function pick(random: () => number, n: number): number {
  return Math.min(n - 1, Math.floor(random() * n));
}

function point(random: () => number): { lat: number; lon: number } {
  return {
    lat: Number((AREA.latMin + (AREA.latMax - AREA.latMin) * random()).toFixed(5)),
    lon: Number((AREA.lonMin + (AREA.lonMax - AREA.lonMin) * random()).toFixed(5)),
  };
}

function stay(random: () => number): { inDate: string; outDate: string } {
  const nights = 1 + pick(random, DRAWN_NIGHTS_MAX);
  const inDay = pick(random, CALENDAR_DAYS - nights + 1);
  return { inDate: dateOf(inDay), outDate: dateOf(inDay + nights) };
}

function reservationId(random: () => number, variant: Variant): string {
  const part = () => Math.floor(random() * 2 ** 32).toString(36);
  return `${variant}-${part()}${part()}`;
}

const call = (fn: string, body: unknown, kind: string): AppRequest => ({
  kind,
  method: "POST",
  path: `/function/${fn}`,
  body,
});

export const travelApp: BenchApp = {
  name: "travel",
  description:
    "hotel and flight reservations (DeathStarBench's hotel reservation as Beldi/BokiFlow extended it): search 60 %, recommend 39 %, login 0.5 %, reserve 0.5 %",
  functions: { safe: `${APP}functions`, unsafe: `${APP}unsafe` },

  async seed(target: AppTarget): Promise<void> {
    const d = dataset();
    const batches = Math.ceil(Math.max(HOTELS, FLIGHTS, USERS) / SEED_BATCH);
    for (let i = 0; i < batches; i++) {
      const slice = <T>(xs: readonly T[]) => xs.slice(i * SEED_BATCH, (i + 1) * SEED_BATCH);
      await postFunction(target, "travel-seed", {
        hotels: slice(d.hotels),
        flights: slice(d.flights),
        users: slice(d.users),
      });
    }
  },

  nextRequest(random: () => number, variant: Variant): AppRequest {
    const r = random();
    if (r < 0.6) return call("travel-search", { ...point(random), ...stay(random) }, "search");
    if (r < 0.99) {
      const require = RANKINGS[pick(random, RANKINGS.length)]!;
      return call("travel-recommend", { ...point(random), require }, "recommend");
    }
    const u = pick(random, USERS);
    if (r < 0.995)
      return call("travel-login", { username: username(u), password: passwordOf(u) }, "login");
    return call(
      "travel-reserve",
      {
        reservationId: reservationId(random, variant),
        username: username(u),
        password: passwordOf(u),
        hotelId: hotelId(pick(random, HOTELS)),
        flightId: flightId(pick(random, FLIGHTS)),
        ...stay(random),
      },
      "reserve",
    );
  },

  async check(target: AppTarget): Promise<InvariantReport> {
    // Orders are placed asynchronously, and a transaction may still be committing: wait
    // (bounded) until no order is missing and no lock is held.
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    let report = (await postFunction(target, "travel-audit", {})) as AuditReport;
    while ((report.ordersMissing > 0 || report.locked > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
      report = (await postFunction(target, "travel-audit", {})) as AuditReport;
    }
    const { ok, ...details } = report;
    return { ok, details };
  },
};
