/**
 * A real etcd server as a child process, for tests: its own loopback ports and a temporary
 * data directory. Every wait is bounded; `stop()` always ends the process.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { tempDir } from "./tmp.js";

/** Longest an etcd process may take to answer /health after it starts. */
export const ETCD_START_TIMEOUT_MS = 20_000;
/** Longest an etcd process may take to exit after a signal before it is killed. */
const ETCD_STOP_TIMEOUT_MS = 5_000;
/** Output kept for error messages. */
const OUTPUT_CHARS_MAX = 8_000;

/** The etcd binary: `$ETCD_BIN`, else `etcd` on the PATH. */
export function etcdBinary(): string {
  return process.env["ETCD_BIN"] ?? "etcd";
}

/**
 * Throws a clear error if the etcd binary cannot run. The etcd tests fail rather than skip:
 * CI installs etcd, and a developer should know what is missing.
 */
export function requireEtcd(bin = etcdBinary()): string {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(
      `the etcd tests need the etcd server binary, and "${bin} --version" failed ` +
        `(${r.error?.message ?? `exit ${r.status}`}). Run .ci/run (which installs it), or ` +
        "apt-get install etcd-server (Debian), or set ETCD_BIN to an etcd binary.",
    );
  }
  return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
}

/** A free TCP port on 127.0.0.1 (free when asked; etcd binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface EtcdProcess {
  /** The client URL. */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly pid: number | undefined;
  /** Everything it printed, up to the last `OUTPUT_CHARS_MAX` characters. */
  output(): string;
  /** Kills the process with `signal` (default SIGKILL) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same ports and data directory; waits until it is healthy. */
  restart(): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
}

async function waitHealthy(
  endpoint: string,
  child: ChildProcess,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + ETCD_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `etcd exited during start (${child.exitCode ?? child.signalCode}):\n${output()}`,
      );
    }
    try {
      const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
      const body = (await res.json()) as { health?: string };
      if (body.health === "true") return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`etcd did not become healthy within ${ETCD_START_TIMEOUT_MS} ms:\n${output()}`);
}

/** Starts etcd on free loopback ports with a fresh data directory; resolves once healthy. */
export async function startEtcd(): Promise<EtcdProcess> {
  const bin = etcdBinary();
  requireEtcd(bin);
  const clientPort = await freePort();
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const { dir, remove } = tempDir("boki-etcd-");
  const args = [
    "--name",
    "default",
    "--data-dir",
    dir,
    "--listen-client-urls",
    endpoint,
    "--advertise-client-urls",
    endpoint,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `default=${peer}`,
    "--initial-cluster-state",
    "new",
    // Short raft timers make etcd's least lease TTL one second (1.5 election timeouts).
    "--heartbeat-interval",
    "50",
    "--election-timeout",
    "500",
    "--logger",
    "zap",
    "--log-level",
    "warn",
  ];
  let out = "";
  let child: ChildProcess;
  const launch = (): ChildProcess => {
    const c = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.length > OUTPUT_CHARS_MAX) out = out.slice(-OUTPUT_CHARS_MAX);
    };
    c.stdout?.on("data", keep);
    c.stderr?.on("data", keep);
    return c;
  };
  const output = () => out;
  const stop = async (signal: NodeJS.Signals = "SIGKILL") => {
    const c = child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    c.kill(signal);
    const timer = setTimeout(() => c.kill("SIGKILL"), ETCD_STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  child = launch();
  try {
    await waitHealthy(endpoint, child, output);
  } catch (e) {
    await stop();
    remove();
    throw e;
  }
  return {
    endpoint,
    dataDir: dir,
    get pid() {
      return child.pid;
    },
    output,
    stop,
    async restart() {
      await stop();
      child = launch();
      await waitHealthy(endpoint, child, output);
    },
    async destroy() {
      await stop();
      remove();
    },
  };
}
