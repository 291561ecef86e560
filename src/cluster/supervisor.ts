/**
 * `boki cluster up`: starts every node of a configuration as its own OS process, each term
 * one higher than the last run's (kept in `<dataDir>/TERM`), so that a restarted cluster
 * seals what the previous run left unordered. Stops them all on SIGINT or SIGTERM.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ClusterConfig } from "./config.js";

/** How long a node gets to stop after SIGTERM before it is killed. */
export const NODE_STOP_TIMEOUT_MS = 5_000;

const BIN = fileURLToPath(new URL("../../bin/boki.js", import.meta.url));

/**
 * What the gateway nodes get beyond the functions: arguments (token and TLS file paths) and
 * environment variables (tokens given as values travel this way, never in a command line
 * that every user of the machine can read).
 */
export interface GatewayLaunch {
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/** What engines run and gateways serve. */
export interface FunctionsOption {
  /** Function modules: a file or a directory. */
  readonly path: string;
  /** Time limit of functions that set none, in ms. */
  readonly timeoutMs?: number;
}

/**
 * The arguments (after the node executable) that run node `id` of a cluster in `term`;
 * give `functions` to engines and gateways.
 */
export function nodeCommand(
  configPath: string,
  id: string,
  term: number,
  logLevel: string,
  functions?: FunctionsOption,
  store?: string,
): string[] {
  return [
    BIN,
    "start",
    "--config",
    configPath,
    "--id",
    id,
    "--term",
    String(term),
    "--log-level",
    logLevel,
    ...(functions === undefined ? [] : ["--functions", functions.path]),
    ...(functions?.timeoutMs === undefined ? [] : ["--timeout", String(functions.timeoutMs)]),
    ...(store === undefined ? [] : ["--store", store]),
  ];
}

export function nextTerm(config: ClusterConfig): number {
  mkdirSync(config.dataDir, { recursive: true });
  const file = join(config.dataDir, "TERM");
  let last = 0;
  try {
    last = Number(readFileSync(file, "utf8").trim()) || 0;
  } catch {
    last = 0;
  }
  const term = last + 1;
  writeFileSync(file, `${term}\n`);
  return term;
}

export interface Supervisor {
  readonly term: number;
  readonly children: ReadonlyMap<string, ChildProcess>;
  /** Stops every node (SIGTERM, then SIGKILL after a timeout) and waits for them. */
  stop(): Promise<void>;
}

export function superviseCluster(
  configPath: string,
  config: ClusterConfig,
  onExit: (id: string, code: number | null) => void,
  logLevel = "info",
  functions?: FunctionsOption,
  store?: string,
  gateway: GatewayLaunch = {},
): Supervisor {
  const term = nextTerm(config);
  const children = new Map<string, ChildProcess>();
  const order = ["sequencer", "storage", "engine", "gateway"];
  const nodes = [...config.nodes].sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role));
  for (const n of nodes) {
    // A gateway serves functions; without function modules there is nothing to serve.
    if (n.role === "gateway" && functions === undefined) continue;
    // A spare joins through the coordination store; without one it has no place to take.
    if (n.spare === true && store === undefined) continue;
    const withFunctions = n.role === "engine" || n.role === "gateway" ? functions : undefined;
    const isGateway = n.role === "gateway";
    const args = [
      ...nodeCommand(configPath, n.id, term, logLevel, withFunctions, store),
      ...(isGateway ? (gateway.args ?? []) : []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "inherit", "inherit"],
      ...(isGateway && gateway.env !== undefined
        ? { env: { ...process.env, ...gateway.env } }
        : {}),
    });
    child.on("exit", (code) => onExit(n.id, code));
    children.set(n.id, child);
  }
  return {
    term,
    children,
    stop: async () => {
      await Promise.all(
        [...children.values()].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const kill = setTimeout(() => c.kill("SIGKILL"), NODE_STOP_TIMEOUT_MS);
              c.once("exit", () => {
                clearTimeout(kill);
                resolve();
              });
              c.kill("SIGTERM");
            }),
        ),
      );
    },
  };
}
