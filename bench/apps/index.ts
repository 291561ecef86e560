/** The applications `npm run bench -- apps` runs, in order. */
import type { BenchApp } from "./app.js";

export const BENCH_APPS: readonly BenchApp[] = [];
