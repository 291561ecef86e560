/** `boki status` and `boki controller`: the operator's side of the coordination store. */
import { hostname } from "node:os";
import { loadClusterConfig } from "../cluster/config.js";
import { Controller, REQUESTS_PREFIX } from "../controller/controller.js";
import { storeSealer } from "../controller/sealer.js";
import { formatClusterStatus, openStoreSpec, readClusterStatus } from "../controller/status.js";
import { createLogger, type LogLevel } from "../util/logger.js";
import { closeOnSignals } from "./signals.js";

/** Where the store is when `--store` is not given: the local cluster's data directory. */
export const STORE_SPEC_DEFAULT = "file:data/cluster/coord";

export async function statusCommand(options: { store: string }): Promise<void> {
  const store = await openStoreSpec(options.store);
  try {
    console.log(formatClusterStatus(await readClusterStatus(store)));
  } finally {
    await store.close();
  }
}

export async function controllerCommand(options: {
  config: string;
  store: string;
  id?: string;
  logLevel: string;
}): Promise<void> {
  const config = loadClusterConfig(options.config);
  const store = await openStoreSpec(options.store);
  const logger = createLogger(options.logLevel as LogLevel);
  const controller = new Controller({
    store,
    id: options.id ?? `controller@${hostname()}:${process.pid}`,
    config,
    logger,
    sealer: storeSealer(store, { logger }),
    onEvent: (e) => {
      if (e.type === "leading") console.log(`leading (term ${e.term})`);
      if (e.type === "leadership-lost") console.log("leadership lost; standing by");
      if (e.type === "view-published") console.log(`published term ${e.view.term}: ${e.cause}`);
    },
  });
  await controller.start();
  console.log(`controller started with store ${options.store}; campaigning for leadership`);
  closeOnSignals(async () => {
    await controller.close();
    await store.close();
  });
}

/** `boki reconfigure` and `boki drain <node>`: a request the leading controller acts on. */
export async function requestCommand(
  kind: "reconfigure" | "drain",
  options: { store: string; node?: string },
): Promise<void> {
  const store = await openStoreSpec(options.store);
  try {
    const key = `${REQUESTS_PREFIX}${Date.now()}-${process.pid}`;
    await store.put(
      key,
      JSON.stringify(kind === "drain" ? { kind, node: options.node } : { kind }),
    );
    console.log(
      kind === "drain"
        ? `asked the controller to drain ${options.node}; \`boki status\` shows the new term`
        : "asked the controller for a new term; `boki status` shows it",
    );
  } finally {
    await store.close();
  }
}
