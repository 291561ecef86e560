/**
 * The configuration file of a cluster with static membership: every node, where it
 * listens, and the log's shape. `viewOf` turns it into the view of a term.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { NodeId } from "../transport/transport.js";
import type { PeerAddress } from "../transport/tcp.js";
import { View } from "../log/view.js";
import { InvalidArgumentError } from "../log/errors.js";
import { CUT_INTERVAL_MS_DEFAULT, PHYSICAL_LOGS_MAX } from "../log/limits.js";
import type { Durability } from "../storage/storage-node.js";
import { ClusterSecret, isLoopbackHost } from "../transport/handshake.js";

export type Role = "sequencer" | "storage" | "engine" | "gateway";
export const ROLES: readonly Role[] = ["sequencer", "storage", "engine", "gateway"];
/** Roles a cluster cannot run without; gateways are optional. */
export const REQUIRED_ROLES: readonly Role[] = ["sequencer", "storage", "engine"];

export interface NodeConfig {
  readonly id: NodeId;
  readonly role: Role;
  readonly host: string;
  /** The node's TCP port; a gateway's HTTP port. */
  readonly port: number;
  /**
   * Port of the node's HTTP endpoint with `/metrics` and `/healthz` (a gateway serves them
   * on `port`). Absent: the node serves no metrics.
   */
  readonly metricsPort?: number;
  /**
   * A spare has an address but no place in the first view. Started with a coordination
   * store, it registers and the controller gives it a place in a new term (a new empty
   * node joining). Without a store it is not started.
   */
  readonly spare?: boolean;
}

export interface ClusterConfig {
  readonly physicalLogs: number;
  /** Storage replicas per shard. */
  readonly replication: number;
  /** Sequencers per physical log (primary and backups); at most the number of sequencer nodes. */
  readonly sequencersPerLog: number;
  /** When storage counts a record as held: "memory" (Boki's choice) or "disk" (after its WAL write). */
  readonly durability: Durability;
  readonly cutIntervalMs: number;
  /** Engines that index each physical log; the others ask them (default: every engine). */
  readonly indexReplicas: number;
  /** Root of the nodes' data directories (`<dataDir>/<node id>`), relative to the config file. */
  readonly dataDir: string;
  readonly nodes: readonly NodeConfig[];
  /**
   * A file holding the cluster's shared secret (resolved against the config file's folder):
   * every link between nodes (and clients) is then authenticated with it. See
   * `clusterSecretOf` for the environment variable that may give it instead.
   */
  readonly clusterSecretFile?: string;
  /** Let nodes listen beyond loopback with unauthenticated links (default false). */
  readonly allowUnauthenticatedLinks?: boolean;
}

/** The environment variable that gives the cluster secret itself (it wins over the file). */
export const CLUSTER_SECRET_ENV = "BOKI_CLUSTER_SECRET";

/** The cluster's secret: `BOKI_CLUSTER_SECRET`, else the config's file, else none. */
export function clusterSecretOf(
  config: ClusterConfig,
  env: Readonly<Record<string, string | undefined>> = process.env,
): ClusterSecret | null {
  const text = env[CLUSTER_SECRET_ENV];
  if (text !== undefined && text.trim() !== "")
    return ClusterSecret.fromText(text, `${CLUSTER_SECRET_ENV}`);
  if (config.clusterSecretFile !== undefined)
    return ClusterSecret.fromFile(config.clusterSecretFile);
  return null;
}

/**
 * Refuses to run `node` beyond loopback with unauthenticated links, unless the config allows
 * it: anyone who could reach its port could otherwise append, trim or read the log.
 */
export function checkLinkAuth(
  config: ClusterConfig,
  node: NodeConfig,
  secret: ClusterSecret | null,
): void {
  if (secret !== null || config.allowUnauthenticatedLinks === true || isLoopbackHost(node.host))
    return;
  throw new InvalidArgumentError(
    `node ${node.id} would listen on ${node.host}, beyond loopback, with unauthenticated links: ` +
      `give the cluster a secret ("clusterSecretFile" in the config, or ${CLUSTER_SECRET_ENV}; ` +
      'make one with `openssl rand -hex 32`), or set "allowUnauthenticatedLinks": true on a trusted network',
  );
}

/**
 * Defaults of the optional settings. `physicalLogs` defaults to as many logs as there are
 * whole sequencer groups (sequencers / sequencersPerLog, at least 1): a further log on the
 * same sequencers adds their work without adding capacity. `cutIntervalMs` 0 lets cuts be
 * paced by commits alone (see the sequencer).
 */
export const CLUSTER_DEFAULTS = {
  replication: 3,
  sequencersPerLog: 3,
  durability: "memory" as Durability,
  cutIntervalMs: CUT_INTERVAL_MS_DEFAULT,
} as const;

function fail(file: string, what: string): never {
  throw new InvalidArgumentError(`${file}: ${what}`);
}

/** Parses and checks a configuration object; `file` names it in error messages. */
export function parseClusterConfig(
  raw: unknown,
  file = "cluster config",
  baseDir = ".",
): ClusterConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    fail(file, "must be a JSON object");
  const o = raw as Record<string, unknown>;
  const int = (key: string, def: number, min: number, max: number): number => {
    const v = o[key] ?? def;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
      fail(file, `${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return v;
  };
  const secretFile = o["clusterSecretFile"];
  if (secretFile !== undefined && (typeof secretFile !== "string" || secretFile.length === 0))
    fail(file, "clusterSecretFile must be a non-empty string (a path)");
  const allowUnauth = o["allowUnauthenticatedLinks"] ?? false;
  if (typeof allowUnauth !== "boolean")
    fail(file, "allowUnauthenticatedLinks must be true or false");
  const durability = o["durability"] ?? CLUSTER_DEFAULTS.durability;
  if (durability !== "memory" && durability !== "disk")
    fail(file, `durability must be "memory" or "disk", got ${JSON.stringify(durability)}`);
  const dataDir = o["dataDir"] ?? "data/cluster";
  if (typeof dataDir !== "string" || dataDir.length === 0)
    fail(file, "dataDir must be a non-empty string");
  if (!Array.isArray(o["nodes"])) fail(file, "nodes must be an array");
  const ids = new Set<string>();
  const ports = new Set<string>();
  const nodes = (o["nodes"] as unknown[]).map((n, i): NodeConfig => {
    if (typeof n !== "object" || n === null) fail(file, `nodes[${i}] must be an object`);
    const x = n as Record<string, unknown>;
    const id = x["id"];
    if (typeof id !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(id))
      fail(file, `nodes[${i}].id must be 1-64 characters of letters, digits, '.', '_' or '-'`);
    if (ids.has(id)) fail(file, `node id ${id} appears twice`);
    ids.add(id);
    const role = x["role"];
    if (typeof role !== "string" || !(ROLES as readonly string[]).includes(role))
      fail(file, `nodes[${i}].role must be one of ${ROLES.join(", ")}`);
    const host = x["host"] ?? "127.0.0.1";
    if (typeof host !== "string" || host.length === 0)
      fail(file, `nodes[${i}].host must be a non-empty string`);
    const port = x["port"];
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
      fail(file, `nodes[${i}].port must be an integer in [1, 65535]`);
    if (ports.has(`${host}:${port}`)) fail(file, `${host}:${port} is used by two nodes`);
    ports.add(`${host}:${port}`);
    const spare = x["spare"] ?? false;
    if (typeof spare !== "boolean") fail(file, `nodes[${i}].spare must be true or false`);
    if (spare && role === "gateway") fail(file, `nodes[${i}]: a gateway cannot be a spare`);
    const base = { id, role: role as Role, host, port, ...(spare ? { spare } : {}) };
    const metricsPort = x["metricsPort"];
    if (metricsPort === undefined) return base;
    if (
      typeof metricsPort !== "number" ||
      !Number.isInteger(metricsPort) ||
      metricsPort < 1 ||
      metricsPort > 65535
    )
      fail(file, `nodes[${i}].metricsPort must be an integer in [1, 65535]`);
    if (ports.has(`${host}:${metricsPort}`))
      fail(file, `${host}:${metricsPort} is used by two nodes`);
    ports.add(`${host}:${metricsPort}`);
    return { ...base, metricsPort };
  });
  // The first view is made of the nodes that are not spares.
  const count = (r: Role): number => nodes.filter((n) => n.role === r && n.spare !== true).length;
  for (const r of REQUIRED_ROLES) if (count(r) === 0) fail(file, `needs at least one ${r} node`);
  const replication = int(
    "replication",
    Math.min(CLUSTER_DEFAULTS.replication, count("storage")),
    1,
    count("storage"),
  );
  const sequencersPerLog = int(
    "sequencersPerLog",
    Math.min(CLUSTER_DEFAULTS.sequencersPerLog, count("sequencer")),
    1,
    count("sequencer"),
  );
  return {
    physicalLogs: int(
      "physicalLogs",
      Math.max(1, Math.floor(count("sequencer") / sequencersPerLog)),
      1,
      PHYSICAL_LOGS_MAX,
    ),
    replication,
    sequencersPerLog,
    durability,
    cutIntervalMs: int("cutIntervalMs", CLUSTER_DEFAULTS.cutIntervalMs, 0, 1000),
    indexReplicas: int("indexReplicas", count("engine"), 1, count("engine")),
    dataDir: resolve(baseDir, dataDir),
    nodes,
    ...(secretFile === undefined ? {} : { clusterSecretFile: resolve(baseDir, secretFile) }),
    ...(allowUnauth ? { allowUnauthenticatedLinks: true } : {}),
  };
}

export function loadClusterConfig(path: string): ClusterConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidArgumentError(
      `cannot read cluster config ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return parseClusterConfig(raw, path, dirname(resolve(path)));
}

export function nodesOf(config: ClusterConfig, role: Role): NodeId[] {
  return config.nodes.filter((n) => n.role === role).map((n) => n.id);
}

/** Nodes of `role` in the first view: all but the spares. */
function firstViewNodes(config: ClusterConfig, role: Role): NodeId[] {
  return config.nodes.filter((n) => n.role === role && n.spare !== true).map((n) => n.id);
}

/**
 * The view of `term`. Physical log L is sequenced by `sequencersPerLog` consecutive
 * sequencer nodes starting at L, so primaries spread over the sequencer nodes.
 */
export function viewOf(config: ClusterConfig, term: number): View {
  const seqs = firstViewNodes(config, "sequencer");
  const sequencers = Array.from({ length: config.physicalLogs }, (_, log) =>
    Array.from({ length: config.sequencersPerLog }, (_, k) => seqs[(log + k) % seqs.length]!),
  );
  return new View({
    term,
    physicalLogs: config.physicalLogs,
    sequencers,
    storages: firstViewNodes(config, "storage"),
    engines: firstViewNodes(config, "engine"),
    replication: config.replication,
    indexReplicas: config.indexReplicas,
  });
}

/** Client node ids carry their own address: `client@<host>:<port>`. */
export function clientId(address: PeerAddress): NodeId {
  return `client@${address.host}:${address.port}`;
}

/** Resolves node ids of the configuration and client ids to addresses. */
export function peerResolver(config: ClusterConfig): (node: NodeId) => PeerAddress | undefined {
  const known = new Map(config.nodes.map((n) => [n.id, { host: n.host, port: n.port }]));
  return (node) => {
    const k = known.get(node);
    if (k !== undefined) return k;
    const m = /^client@([0-9.]+|localhost):([0-9]{1,5})$/.exec(node);
    return m === null ? undefined : { host: m[1]!, port: Number(m[2]) };
  };
}
