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
import { peerResolver, viewOf, type ClusterConfig, type Role } from "./config.js";

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
): Promise<RunningNode> {
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) throw new InvalidArgumentError(`node ${id} is not in the cluster config`);
  const view = viewOf(config, term);
  const log = logger.child({ node: id, role: node.role, term });
  const transport = await TcpTransport.listen({
    self: id,
    host: node.host,
    port: node.port,
    peers: peerResolver(config),
    logger: log,
  });
  const clock = systemClock;
  let closeRole: () => Promise<void>;
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
      });
      s.start();
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
      });
      s.start();
      closeRole = async () => {
        await s.close();
        await backend.close();
      };
      break;
    }
    case "engine": {
      const e = new Engine({ transport, clock, view, logger: log });
      attachClientService(e);
      // Reads wait until the engine has caught up; a slow start is logged, not fatal.
      e.start().then(
        () => log.info({}, "engine caught up with the metalog"),
        (err: unknown) => log.warn({ err }, "engine is still catching up with the metalog"),
      );
      closeRole = () => {
        e.close();
        return Promise.resolve();
      };
      break;
    }
  }
  return {
    id,
    role: node.role,
    address: transport.address,
    close: async () => {
      await closeRole();
      transport.close();
      await transport.whenClosed();
    },
  };
}
