/**
 * Runs one node of a cluster in this process: its role over the TCP transport, with its
 * data in `<dataDir>/<node id>`.
 */
import { join } from "node:path";
import { systemClock } from "../clock/clock.js";
import { TcpTransport, type PeerAddress } from "../transport/tcp.js";
import { LmdbBackend } from "../storage/lmdb-backend.js";
import { StorageNode } from "../storage/storage-node.js";
import { Sequencer } from "../sequencer/sequencer.js";
import { Engine } from "../engine/engine.js";
import { attachClientService } from "../engine/client-service.js";
import { InvalidArgumentError } from "../log/errors.js";
import type { Logger } from "../util/logger.js";
import {
  checkLinkAuth,
  clusterSecretOf,
  peerResolver,
  viewOf,
  type ClusterConfig,
  type NodeConfig,
  type Role,
} from "./config.js";
import type { ClusterSecret } from "../transport/handshake.js";
import type { GatewayAuthOptions } from "../gateway/auth.js";
import type { GatewayTls } from "../gateway/tls.js";
import { FunctionStats, ObservedDispatcher } from "../gateway/ui/stats.js";
import { clusterSource } from "../gateway/ui/cluster-source.js";
import type { View } from "../log/view.js";
import type { CoordStore } from "../coord/store.js";
import { ViewFollower, type FollowingRole } from "./view-follower.js";
import { TimeoutError } from "../log/errors.js";
import { openStoreSpec } from "../controller/status.js";
import { registerNode } from "../controller/membership.js";
import type { Server } from "node:http";
import { ClusterClient } from "./client.js";
import { NodeMetrics } from "./node-metrics.js";
import { EngineDispatcher, engineLogProvider, serveFunctions } from "./functions.js";
import { InvocationService } from "../gateway/invocations.js";
import { Gateway } from "../gateway/server.js";
import { RuntimeMetrics } from "../runtime/metrics.js";
import type { FunctionHost } from "../runtime/function-host.js";
import type { LogProvider } from "../runtime/dispatcher.js";

export interface NodeOptions {
  /**
   * Function modules (a file or a directory): engines run them, gateways serve them.
   * Required for a gateway; an engine without them runs no functions.
   */
  readonly functions?: string;
  /** Worker threads of an engine's function host (default 2). */
  readonly workers?: number;
  /** Time limit of functions that set none, in ms (default 30 s). */
  readonly timeoutMs?: number;
  /**
   * The coordination store to register in (`file:<dir>` or `etcd:<host:port>,...`): the node
   * keeps `/boki/nodes/<id>` alive with a lease while it runs, so a controller sees it live
   * and notices when it dies.
   */
  readonly store?: string;
  /** A gateway's bearer tokens (required when it listens beyond loopback). */
  readonly auth?: GatewayAuthOptions;
  /** A gateway's TLS certificate and key: it then serves HTTPS. */
  readonly tls?: GatewayTls;
}

/** Registers the node in the coordination store; returns what undoes it. */
async function register(
  store: CoordStore,
  node: NodeConfig,
  term: number,
  logger: Logger,
): Promise<() => Promise<void>> {
  const registration = await registerNode(
    store,
    {
      id: node.id,
      role: node.role,
      host: node.host,
      port: node.port,
      ...(node.metricsPort === undefined ? {} : { metricsPort: node.metricsPort }),
      pid: process.pid,
      startedAt: Date.now(),
      term,
    },
    { logger },
  );
  return () => registration.close();
}

/** Exit code of a node process that stopped because its disk failed. */
export const NODE_DISK_FAILED_EXIT_CODE = 74;

/** Longest an engine that has no place in the published view waits for a view that gives it one. */
export const PLACEMENT_WAIT_MS = 120_000;

export interface RunningNode {
  readonly id: string;
  readonly role: Role;
  readonly address: PeerAddress;
  close(): Promise<void>;
}

export async function startNode(
  config: ClusterConfig,
  id: string,
  term: number,
  logger: Logger,
  options: NodeOptions = {},
): Promise<RunningNode> {
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) throw new InvalidArgumentError(`node ${id} is not in the cluster config`);
  // Links are authenticated with the cluster's secret when it has one; a node beyond
  // loopback without one is refused unless the config allows it.
  const secret = clusterSecretOf(config);
  checkLinkAuth(config, node, secret);
  if (options.store === undefined) {
    const log = logger.child({ node: id, role: node.role, term });
    if (node.role === "gateway") return startGateway(config, node.id, log, options, secret);
    return (await startRoleNode(config, node, viewOf(config, term), log, options, secret)).running;
  }
  // With a coordination store the view in force comes from the store (the configuration's
  // term `term` until a controller has published one), and the node follows later ones.
  const store = await openStoreSpec(options.store);
  const cleanups: Array<() => Promise<void>> = [() => store.close()];
  const undo = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const follower = await ViewFollower.start({ store, node: id, logger });
    cleanups.push(() => follower.close());
    let view = follower.view ?? viewOf(config, term);
    const log = logger.child({ node: id, role: node.role });
    cleanups.push(await register(store, node, view.term, log));
    let running: RunningNode;
    if (node.role === "gateway") {
      running = await startGateway(config, node.id, log, options, secret, store);
    } else {
      if (node.role === "engine" && !view.config.engines.includes(id)) {
        log.warn({ term: view.term }, "engine has no place in the view yet; waiting for one");
        view = await waitForPlacement(follower, id, PLACEMENT_WAIT_MS);
      }
      const started = await startRoleNode(config, node, view, log, options, secret);
      running = started.running;
      follower.attach(started.role);
    }
    cleanups.push(() => running.close());
    return { ...running, close: undo };
  } catch (err) {
    await undo();
    throw err;
  }
}

/** Resolves with the first view that gives engine `id` a place; rejects after `timeoutMs`. */
function waitForPlacement(follower: ViewFollower, id: string, timeoutMs: number): Promise<View> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      const v = follower.view;
      if (v !== null && v.config.engines.includes(id)) {
        resolve(v);
        return;
      }
      if (Date.now() - started >= timeoutMs) {
        reject(
          new TimeoutError(`engine ${id} was given no place in a view within ${timeoutMs} ms`),
        );
        return;
      }
      setTimeout(check, 100);
    };
    check();
  });
}

/** A sequencer, storage or engine node over TCP. */
async function startRoleNode(
  config: ClusterConfig,
  node: NodeConfig,
  view: View,
  log: Logger,
  options: NodeOptions,
  secret: ClusterSecret | null,
): Promise<{ running: RunningNode; role: FollowingRole }> {
  const term = view.term;
  const id = node.id;
  const transport = await TcpTransport.listen({
    self: id,
    host: node.host,
    port: node.port,
    peers: peerResolver(config),
    logger: log,
    ...(secret === null ? {} : { secret }),
  });
  const clock = systemClock;
  // A role whose disk failed stops; the process exits so that its lease lapses and the
  // controller replaces the node (a supervisor may start it again).
  const onFatal = (err: unknown): void => {
    log.error({ err }, "the node's disk failed; exiting");
    process.exit(NODE_DISK_FAILED_EXIT_CODE);
  };
  let closeRole: () => Promise<void>;
  let role: FollowingRole;
  let engineStats: (() => { appends: number; cacheHits: number; cacheMisses: number }) | undefined;
  let stages: ((heldMs: number, orderingMs: number) => void) | undefined;
  const extraRegistries: RuntimeMetrics["registry"][] = [];
  switch (node.role) {
    case "sequencer": {
      // The metalog is held like the records: in memory on a majority of the log's sequencers
      // with "memory" durability, on their disks (synced) with "disk".
      const store = await LmdbBackend.open(join(config.dataDir, id), {
        wal: true,
        sync: config.durability === "disk",
      });
      const s = new Sequencer({
        transport,
        clock,
        store,
        view,
        logger: log,
        cutIntervalMs: config.cutIntervalMs,
        // Runs of a node start at later times: a restart's acknowledgements are told apart.
        boot: Date.now(),
        onFatal,
      });
      s.start();
      role = s;
      closeRole = async () => {
        await s.close();
        await store.close();
      };
      break;
    }
    case "storage": {
      // With "memory" durability a record counts as held once in memory (on R nodes), so its
      // disk write need not be synced before anything else happens.
      const backend = await LmdbBackend.open(join(config.dataDir, id), {
        wal: true,
        sync: config.durability === "disk",
      });
      const s = new StorageNode({
        transport,
        clock,
        backend,
        view,
        logger: log,
        durability: config.durability,
        onFatal,
      });
      s.start();
      role = s;
      closeRole = async () => {
        await s.close();
        await backend.close();
      };
      break;
    }
    case "engine": {
      const e = new Engine({
        transport,
        clock,
        view,
        logger: log,
        // Stage times feed the metrics endpoint, once it exists (below).
        ...(node.metricsPort === undefined
          ? {}
          : { onAppendStages: (held: number, ordering: number) => stages?.(held, ordering) }),
      });
      role = e;
      attachClientService(e);
      // Reads wait until the engine has caught up; a slow start is logged, not fatal.
      e.start().then(
        () => log.info({}, "engine caught up with the metalog"),
        (err: unknown) => log.warn({ err }, "engine is still catching up with the metalog"),
      );
      engineStats = () => e.stats();
      let host: FunctionHost | undefined;
      let invocations: InvocationService | undefined;
      if (options.functions !== undefined) {
        try {
          const metrics = new RuntimeMetrics({ processMetrics: false });
          extraRegistries.push(metrics.registry);
          host = await serveFunctions(e, {
            functions: options.functions,
            logger: log,
            metrics,
            ...(options.workers === undefined ? {} : { workers: options.workers }),
            ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
          });
          // ctx.invokeAsync records the request in the log and runs it on this engine.
          // Recovering unfinished recorded invocations is the gateways' job.
          invocations = new InvocationService({
            log: engineLogProvider(e),
            dispatcher: host,
            logger: log,
          });
          host.setAsyncInvoker(invocations);
        } catch (err) {
          e.close();
          transport.close();
          throw err;
        }
      }
      closeRole = async () => {
        await invocations?.close();
        await host?.close();
        e.close();
      };
      break;
    }
    case "gateway":
      transport.close();
      throw new InvalidArgumentError(`node ${id} is a gateway; gateways have no log role`);
  }
  let metricsServer: Server | undefined;
  if (node.metricsPort !== undefined) {
    const metrics = new NodeMetrics({
      id,
      role: node.role,
      term,
      transport: () => transport.stats,
      ...(engineStats === undefined ? {} : { engine: engineStats }),
      extra: extraRegistries,
    });
    if (engineStats !== undefined) stages = (h, o) => metrics.observeAppendStages(h, o);
    try {
      metricsServer = await metrics.listen(node.host, node.metricsPort);
    } catch (err) {
      await closeRole();
      transport.close();
      throw err;
    }
  }
  const running: RunningNode = {
    id,
    role: node.role,
    address: transport.address,
    close: async () => {
      const server = metricsServer;
      if (server !== undefined) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      await closeRole();
      transport.close();
      await transport.whenClosed();
    },
  };
  return { running, role };
}

/**
 * A gateway node: the HTTP API on the node's host and port, invocations balanced over the
 * engines, invocation records in the cluster's log. The first gateway of the configuration
 * re-runs recorded invocations left unfinished (by any gateway or engine) when it starts.
 */
async function startGateway(
  config: ClusterConfig,
  id: string,
  logger: Logger,
  options: NodeOptions,
  secret: ClusterSecret | null,
  store?: CoordStore,
): Promise<RunningNode> {
  const node = config.nodes.find((n) => n.id === id)!;
  if (options.functions === undefined) {
    throw new InvalidArgumentError(
      `gateway ${id} needs the function modules (--functions <path>) to know what it serves`,
    );
  }
  const client = await ClusterClient.connect({
    // Spares are left out: a gateway balances over the engines of the first view.
    engines: config.nodes
      .filter((n) => n.role === "engine" && n.spare !== true)
      .map((n) => ({ id: n.id, host: n.host, port: n.port })),
    host: node.host,
    logger,
    ...(secret === null ? {} : { secret }),
  });
  let invocations: InvocationService | undefined;
  try {
    const stats = new FunctionStats();
    // The dashboard's figures: every invocation this gateway dispatches.
    const dispatcher = new ObservedDispatcher(
      await EngineDispatcher.create(client, options.functions, options.timeoutMs),
      stats,
    );
    const metrics = new RuntimeMetrics();
    const log: LogProvider = {
      book: (book, o = {}) =>
        client.book(book, o.position === undefined ? {} : { position: o.position }),
    };
    invocations = new InvocationService({ log, dispatcher, logger, metrics });
    const firstGatewayId = config.nodes.find((n) => n.role === "gateway")!.id;
    const firstGateway = firstGatewayId === id;
    if (firstGateway) await invocations.start();
    const gateway = await Gateway.start({
      invocations,
      dispatcher,
      metrics,
      logger,
      host: node.host,
      port: node.port,
      ...(options.auth === undefined ? {} : { auth: options.auth }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      dashboard: {
        stats,
        // Queue consumers run where recovery runs: the configuration's first gateway.
        queueNotes: [
          firstGateway
            ? "Consumers run on this gateway (the configuration's first). Each gateway lists the queues and instances it saw itself."
            : `Consumers run on ${firstGatewayId}, the configuration's first gateway; this one serves the queue routes only. Each gateway lists the queues and instances it saw itself.`,
        ],
        source: clusterSource({
          config,
          self: id,
          client,
          ...(store === undefined ? {} : { store }),
        }),
      },
    });
    const service = invocations;
    return {
      id,
      role: "gateway",
      address: { host: node.host, port: node.port },
      close: async () => {
        const closed = gateway.close();
        await service.close();
        await closed;
        await client.close();
      },
    };
  } catch (err) {
    await invocations?.close();
    await client.close();
    throw err;
  }
}
