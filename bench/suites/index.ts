/** Every benchmark suite, by name. */
import type { Suite } from "../lib/suite.js";
import { invokeSuite } from "./invoke.js";
import { logSuite } from "./log.js";
import { natsSuite } from "./nats.js";
import { storeSuite } from "./store.js";

export const SUITES: ReadonlyMap<string, Suite> = new Map([
  [logSuite.name, logSuite],
  [natsSuite.name, natsSuite],
  [invokeSuite.name, invokeSuite],
  [storeSuite.name, storeSuite],
]);
