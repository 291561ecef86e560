/** Every benchmark suite, by name. */
import type { Suite } from "../lib/suite.js";
import { logSuite } from "./log.js";
import { natsSuite } from "./nats.js";

export const SUITES: ReadonlyMap<string, Suite> = new Map([
  [logSuite.name, logSuite],
  [natsSuite.name, natsSuite],
]);
