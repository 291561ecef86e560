/** The applications `npm run bench -- apps` runs, in order. */
import type { BenchApp } from "./app.js";
import { movieApp } from "./movie.js";
import { retwisApp } from "./retwis.js";
import { travelApp } from "./travel.js";

export const BENCH_APPS: readonly BenchApp[] = [travelApp, movieApp, retwisApp];
