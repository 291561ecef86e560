/** Every benchmark suite, by name. */
import type { Suite } from "../lib/suite.js";
import { logSuite } from "./log.js";

export const SUITES: ReadonlyMap<string, Suite> = new Map([[logSuite.name, logSuite]]);
