/**
 * redis-server for the queue benchmark's Redis Streams peer: finding (or installing, from
 * Debian) the binary, and running one server as a child process on 127.0.0.1 with the
 * append-only file on (`appendfsync everysec` or `always`), no RDB snapshots, its files in a
 * directory the caller removes. Also the generic apt-get installer the RabbitMQ peer uses.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { progress as defaultProgress } from "../progress.js";
import {
  findExecutable,
  freePorts,
  lastLines,
  ManagedProcess,
  runCommand,
  type CommandResult,
  type StopInfo,
} from "./proc.js";

const APT_ENV: NodeJS.ProcessEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
/** Wait this long for another apt/dpkg to release its lock rather than failing at once. */
const APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=120"];
const APT_TIMEOUT_MS = 10 * 60_000;
/** Longest a redis-server may take to answer PING after it starts. */
const START_TIMEOUT_MS = 20_000;

export function commandFailure(what: string, r: CommandResult): string {
  const out = lastLines(`${r.stdout}\n${r.stderr}`, 4).replace(/\n/g, " | ");
  const status = r.error ?? (r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`);
  return `${what} failed (${status})${out === "" ? "" : `: ${out}`}`;
}

/**
 * Installs a Debian package with apt-get (running `apt-get update` first only if the install
 * fails). Returns undefined on success, else why it could not.
 */
export async function aptInstall(
  pkg: string,
  say: (msg: string) => void,
  notes: string[],
): Promise<string | undefined> {
  if (process.platform !== "linux")
    return `not on Linux (${process.platform}); install ${pkg} by hand`;
  if (process.getuid?.() !== 0)
    return `not root, so cannot apt-get install ${pkg}; install it by hand`;
  const apt = findExecutable("apt-get");
  if (apt === undefined) return `no apt-get on this machine; install ${pkg} by hand`;
  const install = (): Promise<CommandResult> =>
    runCommand(apt, [...APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", pkg], {
      timeoutMs: APT_TIMEOUT_MS,
      env: APT_ENV,
    });
  say(`${pkg} not found; installing Debian's package (apt-get install -y ${pkg})`);
  let r = await install();
  if (r.code === 0) {
    notes.push(`installed with apt-get install -y ${pkg}`);
    return undefined;
  }
  const first = commandFailure(`apt-get install ${pkg}`, r);
  say(`${first}; running apt-get update and trying again`);
  const u = await runCommand(apt, [...APT_LOCK_WAIT, "update"], {
    timeoutMs: APT_TIMEOUT_MS,
    env: APT_ENV,
  });
  if (u.code !== 0) return `${first}; then ${commandFailure("apt-get update", u)}`;
  r = await install();
  if (r.code !== 0) return commandFailure(`apt-get install ${pkg} (after apt-get update)`, r);
  notes.push(`installed with apt-get update && apt-get install -y ${pkg}`);
  return undefined;
}

export type RedisBinary =
  | { readonly ok: true; readonly bin: string; readonly version: string; readonly notes: string[] }
  | { readonly ok: false; readonly reason: string; readonly notes: string[] };

/** A runnable redis-server: on PATH, else Debian's `redis-server` installed. Never throws. */
export async function ensureRedisServer(
  say: (msg: string) => void = defaultProgress,
): Promise<RedisBinary> {
  const notes: string[] = [];
  try {
    let bin = findExecutable("redis-server");
    if (bin === undefined) {
      const why = await aptInstall("redis-server", say, notes);
      if (why !== undefined) return { ok: false, reason: why, notes };
      bin = findExecutable("redis-server");
      if (bin === undefined) {
        return { ok: false, reason: "apt-get installed redis-server but it is not on PATH", notes };
      }
    } else {
      notes.push(`found on PATH: ${bin}`);
    }
    const v = await runCommand(bin, ["--version"], { timeoutMs: 15_000 });
    const m = /v=(\d+\.\d+\.\d+)/.exec(v.stdout);
    if (v.code !== 0 || m === null) {
      return { ok: false, reason: commandFailure(`${bin} --version`, v), notes };
    }
    return { ok: true, bin, version: m[1]!, notes };
  } catch (err) {
    return { ok: false, reason: `unexpected error: ${String(err)}`, notes };
  }
}

export type RedisFsync = "everysec" | "always";

export interface RedisServer {
  readonly port: number;
  readonly fsync: RedisFsync;
  /** A new client connection (the caller quits it). */
  connect(): Redis;
  /** Stops the server (SIGTERM, then SIGKILL). Never rejects; safe to call twice. */
  stop(): Promise<StopInfo>;
}

/** Starts redis-server with its AOF in `dir` and waits (bounded) until it answers PING. */
export async function startRedis(
  bin: string,
  dir: string,
  fsync: RedisFsync,
): Promise<RedisServer> {
  mkdirSync(dir, { recursive: true });
  const [port] = await freePorts(1);
  const conf = join(dir, "redis.conf");
  writeFileSync(
    conf,
    [
      "bind 127.0.0.1",
      `port ${port}`,
      `dir ${dir}`,
      "protected-mode no",
      'save ""',
      "appendonly yes",
      `appendfsync ${fsync}`,
      "daemonize no",
      'logfile ""',
      "",
    ].join("\n"),
  );
  const proc = ManagedProcess.start(`redis-server ${fsync}`, bin, [conf], { cwd: dir });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "";
  for (;;) {
    if (!proc.running) {
      throw new Error(`redis-server exited while starting: ${lastLines(proc.output(10), 5)}`);
    }
    const c = new Redis({
      port: port!,
      host: "127.0.0.1",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    c.on("error", () => undefined); // reported by connect() below
    try {
      await c.connect();
      if ((await c.ping()) === "PONG") {
        c.disconnect();
        break;
      }
    } catch (err) {
      last = String(err);
    }
    c.disconnect();
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`redis-server did not answer PING within ${START_TIMEOUT_MS} ms: ${last}`);
    }
    await sleep(100);
  }
  let stopped: Promise<StopInfo> | undefined;
  return {
    port: port!,
    fsync,
    connect: () => new Redis({ port: port!, host: "127.0.0.1", maxRetriesPerRequest: 1 }),
    stop: () => (stopped ??= proc.stop(5000)),
  };
}
