/**
 * nats-server for the NATS JetStream peer: finding (or installing, from Debian) the binary,
 * checking a configuration, and running a JetStream cluster of child processes on 127.0.0.1.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { progress as defaultProgress } from "../progress.js";
import {
  findExecutable,
  freePorts,
  lastLines,
  ManagedProcess,
  runCommand,
  type StopInfo,
} from "./proc.js";

/** Set to a nats-server binary to use it instead of the one on PATH (no install then). */
export const NATS_SERVER_BIN_ENV = "NATS_SERVER_BIN";

export interface NatsServerBinary {
  readonly ok: true;
  readonly bin: string;
  /** e.g. "2.9.10" */
  readonly version: string;
  /** How the binary was found: on PATH, from $NATS_SERVER_BIN, or installed by this call. */
  readonly source: "path" | "env" | "apt-get";
  /** What was done to get it, for the results file. */
  readonly notes: readonly string[];
}

export interface NatsServerMissing {
  readonly ok: false;
  /** Why there is no usable nats-server; print it and skip the peer. */
  readonly reason: string;
  readonly notes: readonly string[];
}

const APT_ENV: NodeJS.ProcessEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
/** Wait this long for another apt/dpkg to release its lock rather than failing at once. */
const APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=120"];
const APT_TIMEOUT_MS = 10 * 60_000;

function commandFailure(what: string, r: Awaited<ReturnType<typeof runCommand>>): string {
  const out = lastLines(`${r.stdout}\n${r.stderr}`, 4).replace(/\n/g, " | ");
  const status = r.error ?? (r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`);
  return `${what} failed (${status})${out === "" ? "" : `: ${out}`}`;
}

async function aptInstall(
  say: (msg: string) => void,
  notes: string[],
): Promise<string | undefined> {
  if (process.platform !== "linux")
    return `not on Linux (${process.platform}); install nats-server by hand`;
  if (process.getuid?.() !== 0) {
    return "not root, so cannot apt-get install nats-server; install it or set NATS_SERVER_BIN";
  }
  const apt = findExecutable("apt-get");
  if (apt === undefined) return "no apt-get on this machine; install nats-server by hand";
  const install = (): ReturnType<typeof runCommand> =>
    runCommand(apt, [...APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", "nats-server"], {
      timeoutMs: APT_TIMEOUT_MS,
      env: APT_ENV,
    });
  say("nats: nats-server not found; installing Debian's package (apt-get install -y nats-server)");
  let r = await install();
  if (r.code === 0) {
    notes.push("installed with apt-get install -y nats-server");
    return undefined;
  }
  const first = commandFailure("apt-get install nats-server", r);
  say(`nats: ${first}; running apt-get update and trying again`);
  const u = await runCommand(apt, [...APT_LOCK_WAIT, "update"], {
    timeoutMs: APT_TIMEOUT_MS,
    env: APT_ENV,
  });
  if (u.code !== 0) return `${first}; then ${commandFailure("apt-get update", u)}`;
  r = await install();
  if (r.code !== 0) return commandFailure("apt-get install nats-server (after apt-get update)", r);
  notes.push("installed with apt-get update && apt-get install -y nats-server");
  return undefined;
}

/**
 * A runnable nats-server: $NATS_SERVER_BIN, else `nats-server` on PATH, else Debian's package
 * installed with apt-get (running `apt-get update` first only if the install fails). Idempotent:
 * nothing is installed when the binary is already there. Never throws: when there is no usable
 * binary the result says why.
 */
export async function ensureNatsServer(
  say: (msg: string) => void = defaultProgress,
): Promise<NatsServerBinary | NatsServerMissing> {
  const notes: string[] = [];
  try {
    let bin: string | undefined;
    let source: NatsServerBinary["source"];
    const fromEnv = process.env[NATS_SERVER_BIN_ENV];
    if (fromEnv !== undefined && fromEnv !== "") {
      bin = fromEnv;
      source = "env";
      notes.push(`${NATS_SERVER_BIN_ENV}=${fromEnv}`);
    } else {
      bin = findExecutable("nats-server");
      source = "path";
      if (bin === undefined) {
        const why = await aptInstall(say, notes);
        if (why !== undefined) return { ok: false, reason: why, notes };
        bin = findExecutable("nats-server");
        if (bin === undefined) {
          return {
            ok: false,
            reason: "apt-get installed nats-server but it is not on PATH",
            notes,
          };
        }
        source = "apt-get";
      } else {
        notes.push(`found on PATH: ${bin}`);
      }
    }
    const v = await runCommand(bin, ["--version"], { timeoutMs: 15_000 });
    if (v.code !== 0) return { ok: false, reason: commandFailure(`${bin} --version`, v), notes };
    const m = /v?(\d+\.\d+\.\d+\S*)/.exec(v.stdout + v.stderr);
    if (m === null) {
      return {
        ok: false,
        reason: `cannot read a version from '${bin} --version': ${v.stdout}`,
        notes,
      };
    }
    return { ok: true, bin, version: m[1]!, source, notes };
  } catch (err) {
    return { ok: false, reason: `unexpected error: ${String(err)}`, notes };
  }
}

// ---- configuration ------------------------------------------------------------------------

/** When a node fsyncs: on its own schedule (the default), or every write. */
export type NatsFsync = "server-schedule" | "always";

interface NodeConfigInput {
  readonly name: string;
  readonly clientPort: number;
  readonly httpPort: number;
  readonly storeDir: string;
  readonly fsync: NatsFsync;
  readonly cluster?: {
    readonly name: string;
    readonly port: number;
    readonly routePorts: readonly number[];
  };
}

const q = (s: string): string => JSON.stringify(s);

export function natsConfig(c: NodeConfigInput): string {
  const lines = [
    `server_name: ${q(c.name)}`,
    `listen: ${q(`127.0.0.1:${c.clientPort}`)}`,
    `http: ${q(`127.0.0.1:${c.httpPort}`)}`,
    "jetstream {",
    `  store_dir: ${q(c.storeDir)}`,
    ...(c.fsync === "always" ? ["  sync_interval: always"] : []),
    "}",
  ];
  if (c.cluster !== undefined) {
    lines.push(
      "cluster {",
      `  name: ${q(c.cluster.name)}`,
      `  listen: ${q(`127.0.0.1:${c.cluster.port}`)}`,
      `  routes: [${c.cluster.routePorts.map((p) => q(`nats-route://127.0.0.1:${p}`)).join(", ")}]`,
      "}",
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * Whether this nats-server accepts the configuration for `fsync` (`nats-server -t`). Returns
 * undefined when it does, else the server's complaint. Writes its files under `dir`.
 */
export async function checkNatsConfig(
  bin: string,
  dir: string,
  fsync: NatsFsync,
): Promise<string | undefined> {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, `check-${fsync}.conf`);
  writeFileSync(
    conf,
    natsConfig({
      name: "check",
      clientPort: 4222,
      httpPort: 8222,
      storeDir: join(dir, "store"),
      fsync,
    }),
  );
  const r = await runCommand(bin, ["-t", "-c", conf], { timeoutMs: 15_000 });
  if (r.code === 0) return undefined;
  return (
    lastLines(`${r.stdout}\n${r.stderr}`, 3).replace(/\n/g, " | ") ||
    commandFailure("nats-server -t", r)
  );
}

// ---- cluster --------------------------------------------------------------------------------

export interface NatsNode {
  readonly name: string;
  readonly clientUrl: string;
  readonly clientPort: number;
  readonly clusterPort: number;
  readonly httpPort: number;
  readonly storeDir: string;
  readonly confPath: string;
  readonly proc: ManagedProcess;
}

export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  readonly clientUrls: readonly string[];
  /** Milliseconds from spawning to every node healthy. */
  readonly readyMs: number;
  /** Stops every node (SIGTERM, then SIGKILL). Never rejects; safe to call twice. */
  stop(): Promise<StopInfo[]>;
}

export interface NatsClusterOptions {
  readonly bin: string;
  /** Configs and store directories go here (the caller removes it afterwards). */
  readonly dir: string;
  readonly fsync: NatsFsync;
  readonly size?: number;
  readonly readyTimeoutMs?: number;
  readonly say?: (msg: string) => void;
}

class StartError extends Error {
  constructor(
    message: string,
    readonly portClash: boolean,
  ) {
    super(message);
  }
}

async function healthy(port: number): Promise<{ ok: boolean; detail: string }> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, {
      signal: AbortSignal.timeout(2000),
    });
    const body = (await res.text()).trim();
    return { ok: res.status === 200, detail: `${res.status} ${body}` };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

async function stopAll(nodes: readonly NatsNode[]): Promise<StopInfo[]> {
  return Promise.all(nodes.map((n) => n.proc.stop(5000)));
}

async function startOnce(o: NatsClusterOptions, attempt: number): Promise<NatsCluster> {
  const size = o.size ?? 3;
  const ports = await freePorts(size * 3);
  const clusterPorts = ports.slice(size, 2 * size);
  const nodes: NatsNode[] = [];
  const t0 = Date.now();
  try {
    for (let i = 0; i < size; i++) {
      const name = `n${i + 1}`;
      const nodeDir = join(o.dir, `try${attempt}`, name);
      const storeDir = join(nodeDir, "store");
      mkdirSync(storeDir, { recursive: true });
      const clientPort = ports[i]!;
      const clusterPort = clusterPorts[i]!;
      const httpPort = ports[2 * size + i]!;
      const confPath = join(nodeDir, `${name}.conf`);
      writeFileSync(
        confPath,
        natsConfig({
          name,
          clientPort,
          httpPort,
          storeDir,
          fsync: o.fsync,
          cluster: {
            name: "boki-bench",
            port: clusterPort,
            routePorts: clusterPorts.filter((p) => p !== clusterPort),
          },
        }),
      );
      const proc = ManagedProcess.start(`nats-server ${name}`, o.bin, ["-c", confPath], {
        cwd: nodeDir,
      });
      nodes.push({
        name,
        clientUrl: `nats://127.0.0.1:${clientPort}`,
        clientPort,
        clusterPort,
        httpPort,
        storeDir,
        confPath,
        proc,
      });
    }

    const timeoutMs = o.readyTimeoutMs ?? 30_000;
    const deadline = t0 + timeoutMs;
    const ok = new Set<string>();
    const last = new Map<string, string>();
    while (true) {
      for (const n of nodes) {
        const exit = n.proc.exit;
        if (exit !== undefined) {
          const out = n.proc.output(15);
          throw new StartError(
            `${n.name} exited during start-up (` +
              (exit.error ?? (exit.code !== null ? `code ${exit.code}` : `signal ${exit.signal}`)) +
              `): ${lastLines(out, 6).replace(/\n/g, " | ")}`,
            /address already in use/i.test(out),
          );
        }
      }
      for (const n of nodes) {
        if (ok.has(n.name)) continue;
        const h = await healthy(n.httpPort);
        last.set(n.name, h.detail);
        if (h.ok) ok.add(n.name);
      }
      if (ok.size === nodes.length) break;
      if (Date.now() > deadline) {
        const detail = nodes
          .filter((n) => !ok.has(n.name))
          .map(
            (n) =>
              `${n.name}: /healthz ${last.get(n.name) ?? "?"}; log: ${lastLines(n.proc.output(5), 3).replace(/\n/g, " | ")}`,
          )
          .join("; ");
        throw new StartError(`cluster not healthy after ${timeoutMs / 1000} s: ${detail}`, false);
      }
      await sleep(100);
    }
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
  let stopped: Promise<StopInfo[]> | undefined;
  return {
    nodes,
    clientUrls: nodes.map((n) => n.clientUrl),
    readyMs: Date.now() - t0,
    stop: () => (stopped ??= stopAll(nodes)),
  };
}

/**
 * Starts a JetStream cluster of `size` (3) nats-server processes on 127.0.0.1, with client,
 * cluster and monitoring ports found free at runtime, each node with its own store_dir under
 * `dir`, and waits (bounded) until every node's /healthz says ok (which on a clustered
 * JetStream server includes having a meta leader). On failure every node is stopped and the
 * error says why; start-up is retried up to twice if a port was taken in the meantime.
 */
export async function startNatsCluster(o: NatsClusterOptions): Promise<NatsCluster> {
  const say = o.say ?? defaultProgress;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(o, attempt);
    } catch (err) {
      if (err instanceof StartError && err.portClash && attempt < 3) {
        say(`nats: a port was taken during start-up (${err.message}); retrying with new ports`);
        continue;
      }
      throw err;
    }
  }
}
