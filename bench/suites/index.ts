/** Every benchmark suite, by name. */
import type { Suite } from "../lib/suite.js";
import { appsSuite } from "./apps.js";
import { flowSuite } from "./flow.js";
import { invokeSuite } from "./invoke.js";
import { logSuite } from "./log.js";
import { natsSuite } from "./nats.js";
import { queueSuite } from "./queue.js";
import { storeSuite } from "./store.js";
import { txnSuite } from "./txn.js";

export const SUITES: ReadonlyMap<string, Suite> = new Map([
  [logSuite.name, logSuite],
  [natsSuite.name, natsSuite],
  [invokeSuite.name, invokeSuite],
  [queueSuite.name, queueSuite],
  [storeSuite.name, storeSuite],
  [flowSuite.name, flowSuite],
  [txnSuite.name, txnSuite],
  [appsSuite.name, appsSuite],
]);
