/**
 * A throwaway PostgreSQL 15 server for benchmark peers: Debian's postgresql-15 (installed with
 * apt-get when missing), `initdb` into a fresh temp dir, one `postgres` process listening on
 * 127.0.0.1 at a free port (no Unix socket outside that dir), fsync and synchronous_commit on,
 * trust authentication for the loopback only. `stop()` shuts it down (fast shutdown, then
 * SIGTERM/SIGKILL) and removes the dir.
 *
 * PostgreSQL refuses to run as root; when this process is root, initdb and postgres run as the
 * `postgres` user that Debian's package creates (through setpriv, which execs in place, so the
 * managed process is the postmaster itself).
 */
import {
  accessSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { progress as defaultProgress } from "../progress.js";
import {
  findExecutable,
  freePorts,
  lastLines,
  ManagedProcess,
  runCommand,
  type CommandResult,
  type StopInfo,
  waitHealthy,
} from "./proc.js";

export const POSTGRES_MAJOR = 15;
const DEBIAN_PACKAGE = `postgresql-${POSTGRES_MAJOR}`;
/** Debian's layout: the server binaries of one major version. */
export const POSTGRES_BIN_DIR = `/usr/lib/postgresql/${POSTGRES_MAJOR}/bin`;
/** Set to a directory holding initdb and postgres to use those instead (no install then). */
export const POSTGRES_BIN_DIR_ENV = "POSTGRES_BIN_DIR";
/** The OS user the server runs as when this process is root (Debian's package creates it). */
const RUN_AS_USER = "postgres";
/** The database superuser initdb creates; trusted on 127.0.0.1 only. */
export const POSTGRES_SUPERUSER = "postgres";

const CREATECLUSTER_DIR = "/etc/postgresql-common/createcluster.d";
const APT_ENV: NodeJS.ProcessEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
const APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=120"];
const APT_TIMEOUT_MS = 10 * 60_000;
const INITDB_TIMEOUT_MS = 120_000;
const VERSION_TIMEOUT_MS = 15_000;
/** Longest the server may take from spawn to answering a query. */
const READY_TIMEOUT_MS = 60_000;
const READY_POLL_MS = 100;
const CONNECT_TIMEOUT_MS = 2_000;
/** After SIGINT (fast shutdown), how long to wait before SIGTERM, then SIGKILL. */
const FAST_SHUTDOWN_WAIT_MS = 15_000;
const KILL_GRACE_MS = 5_000;
const START_ATTEMPTS_MAX = 3;

/**
 * Settings every server gets. Durability: fsync and synchronous_commit on (a commit returns
 * after its WAL is flushed with fdatasync), full_page_writes on: PostgreSQL's defaults, set
 * explicitly so a changed default cannot weaken them. The rest sizes the server for a
 * benchmark on this machine: more connections than a pool per peer needs, a shared_buffers
 * the working set fits in.
 */
export const DEFAULT_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  wal_sync_method: "fdatasync",
  max_connections: "300",
  shared_buffers: "256MB",
  // Checkpoints every 5 min or 1 GB of WAL, so a short run is not interrupted by one.
  max_wal_size: "1GB",
  log_min_messages: "warning",
  log_checkpoints: "off",
};

export interface PostgresBinaries {
  readonly ok: true;
  readonly binDir: string;
  /** e.g. "15.18" */
  readonly version: string;
  readonly source: "installed" | "env" | "apt-get";
  readonly notes: readonly string[];
}

export interface PostgresMissing {
  readonly ok: false;
  readonly reason: string;
  readonly notes: readonly string[];
}

function commandFailure(what: string, r: CommandResult): string {
  const out = lastLines(`${r.stdout}\n${r.stderr}`, 4).replace(/\n/g, " | ");
  const status = r.error ?? (r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`);
  return `${what} failed (${status})${out === "" ? "" : `: ${out}`}`;
}

function hasServerBinaries(binDir: string): boolean {
  for (const name of ["initdb", "postgres"]) {
    try {
      if (!statSync(join(binDir, name)).isFile()) return false;
      accessSync(join(binDir, name), constants.X_OK);
    } catch {
      return false;
    }
  }
  return true;
}

async function aptInstall(
  say: (msg: string) => void,
  notes: string[],
): Promise<string | undefined> {
  if (process.platform !== "linux") return `not on Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return `not root, so cannot apt-get install ${DEBIAN_PACKAGE}`;
  const apt = findExecutable("apt-get");
  if (apt === undefined) return `no apt-get on this machine; install ${DEBIAN_PACKAGE} by hand`;
  const install = (): Promise<CommandResult> =>
    runCommand(
      apt,
      [...APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE],
      {
        timeoutMs: APT_TIMEOUT_MS,
        env: APT_ENV,
      },
    );
  say(`postgres: ${POSTGRES_BIN_DIR} missing; installing (apt-get install -y ${DEBIAN_PACKAGE})`);
  // Debian's package would create and start a system cluster (15/main, port 5432) that nothing
  // here uses or stops; postgresql-common reads this drop-in and skips it.
  if (!existsSync(`/etc/postgresql/${POSTGRES_MAJOR}/main`)) {
    mkdirSync(CREATECLUSTER_DIR, { recursive: true });
    writeFileSync(join(CREATECLUSTER_DIR, "boki-bench.conf"), "create_main_cluster = false\n");
    notes.push(`no system cluster created (${CREATECLUSTER_DIR}/boki-bench.conf)`);
  }
  let r = await install();
  if (r.code === 0) {
    notes.push(`installed with apt-get install -y ${DEBIAN_PACKAGE}`);
    return undefined;
  }
  const first = commandFailure(`apt-get install ${DEBIAN_PACKAGE}`, r);
  say(`postgres: ${first}; running apt-get update and trying again`);
  const u = await runCommand(apt, [...APT_LOCK_WAIT, "update"], {
    timeoutMs: APT_TIMEOUT_MS,
    env: APT_ENV,
  });
  if (u.code !== 0) return `${first}; then ${commandFailure("apt-get update", u)}`;
  r = await install();
  if (r.code !== 0) return commandFailure(`apt-get install ${DEBIAN_PACKAGE} (after update)`, r);
  notes.push(`installed with apt-get update && apt-get install -y ${DEBIAN_PACKAGE}`);
  return undefined;
}

/**
 * PostgreSQL 15's server binaries: $POSTGRES_BIN_DIR, else Debian's /usr/lib/postgresql/15/bin,
 * installed with apt-get when missing. Never throws: the result says why there are none.
 */
export async function ensurePostgres(
  say: (msg: string) => void = defaultProgress,
): Promise<PostgresBinaries | PostgresMissing> {
  const notes: string[] = [];
  try {
    let binDir = POSTGRES_BIN_DIR;
    let source: PostgresBinaries["source"] = "installed";
    const fromEnv = process.env[POSTGRES_BIN_DIR_ENV];
    if (fromEnv !== undefined && fromEnv !== "") {
      binDir = fromEnv;
      source = "env";
      notes.push(`${POSTGRES_BIN_DIR_ENV}=${fromEnv}`);
      if (!hasServerBinaries(binDir))
        return { ok: false, reason: `no executable initdb in ${binDir}`, notes };
    } else if (!hasServerBinaries(binDir)) {
      const why = await aptInstall(say, notes);
      if (why !== undefined) return { ok: false, reason: why, notes };
      if (!hasServerBinaries(binDir))
        return { ok: false, reason: `${DEBIAN_PACKAGE} installed but no ${binDir}/initdb`, notes };
      source = "apt-get";
    }
    const v = await runCommand(join(binDir, "postgres"), ["--version"], {
      timeoutMs: VERSION_TIMEOUT_MS,
    });
    if (v.code !== 0) return { ok: false, reason: commandFailure("postgres --version", v), notes };
    const m = /\(PostgreSQL\)\s+(\d+)\.(\d+)/.exec(v.stdout);
    if (m === null)
      return { ok: false, reason: `cannot read a version from '${v.stdout.trim()}'`, notes };
    if (Number(m[1]) !== POSTGRES_MAJOR) {
      return {
        ok: false,
        reason: `${binDir}/postgres is ${m[1]}.${m[2]}, not ${POSTGRES_MAJOR}`,
        notes,
      };
    }
    return { ok: true, binDir, version: `${m[1]}.${m[2]}`, source, notes };
  } catch (err) {
    return { ok: false, reason: `unexpected error: ${String(err)}`, notes };
  }
}

// ---- the server ---------------------------------------------------------------------------

export interface PostgresServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: string;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  /** e.g. "15.18" */
  readonly version: string;
  /** What a commit waits for, e.g. "fsync=on, synchronous_commit=on (...)". */
  readonly durability: string;
  /** The settings the server runs with (as read back from it). */
  readonly settings: Readonly<Record<string, string>>;
  readonly dataDir: string;
  readonly notes: readonly string[];
  readonly proc: ManagedProcess;
  /** A connection string for another database on this server. */
  urlFor(database: string): string;
  /** Fast shutdown, then SIGTERM/SIGKILL; removes the data dir. Never rejects; idempotent. */
  stop(): Promise<StopInfo>;
}

export interface PostgresOptions {
  /** Added to (or replacing) DEFAULT_SETTINGS. */
  readonly settings?: Readonly<Record<string, string>>;
  readonly readyTimeoutMs?: number;
  readonly progress?: (line: string) => void;
}

interface RunAs {
  /** Command prefix that drops to the server's user (empty when not root). */
  readonly prefix: readonly string[];
  readonly uid?: number;
  readonly gid?: number;
}

async function runAs(): Promise<RunAs | string> {
  if (process.getuid?.() !== 0) return { prefix: [] };
  const setpriv = findExecutable("setpriv");
  if (setpriv === undefined) return "running as root and no setpriv to drop to the postgres user";
  const id = await runCommand("id", ["-u", RUN_AS_USER], { timeoutMs: VERSION_TIMEOUT_MS });
  const gid = await runCommand("id", ["-g", RUN_AS_USER], { timeoutMs: VERSION_TIMEOUT_MS });
  if (id.code !== 0 || gid.code !== 0)
    return `running as root and there is no '${RUN_AS_USER}' user to run PostgreSQL as`;
  const uid = Number(id.stdout.trim());
  const g = Number(gid.stdout.trim());
  return {
    prefix: [setpriv, `--reuid=${uid}`, `--regid=${g}`, "--clear-groups", "--"],
    uid,
    gid: g,
  };
}

const liveDirs = new Set<string>();
let exitHooked = false;
function removeOnExit(dir: string): void {
  liveDirs.add(dir);
  if (exitHooked) return;
  exitHooked = true;
  // Called after the server's ManagedProcess.start, so this listener comes after proc.ts's
  // exit hook and runs once the server has been SIGKILLed.
  process.once("exit", () => {
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: CONNECT_TIMEOUT_MS * 5,
  });
  try {
    await c.connect();
    return await c.query(sql);
  } finally {
    await c.end().catch(() => undefined);
  }
}

class PortClash extends Error {}

/** Waits up to `ms` for `proc` to exit, without leaving a timer behind. */
async function exitedWithin(proc: ManagedProcess, ms: number): Promise<boolean> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      proc.exited.then(() => true),
      sleep(ms, false, { signal: ac.signal }).catch(() => false),
    ]);
  } finally {
    ac.abort();
  }
}

async function startOnce(
  bins: PostgresBinaries,
  who: RunAs,
  root: string,
  settings: Readonly<Record<string, string>>,
  readyTimeoutMs: number,
  notes: readonly string[],
): Promise<PostgresServer> {
  const port = (await freePorts(1))[0]!;
  const dataDir = join(root, "data");
  const sockDir = join(root, "sock");
  const args = [
    join(bins.binDir, "postgres"),
    "-D",
    dataDir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    `port=${port}`,
    "-c",
    `unix_socket_directories=${sockDir}`,
    ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
  ];
  const [cmd, ...rest] = [...who.prefix, ...args];
  const proc = ManagedProcess.start("postgres", cmd!, rest);
  removeOnExit(root);
  const url = `postgres://${POSTGRES_SUPERUSER}@127.0.0.1:${port}/postgres`;
  const t0 = Date.now();
  let last = "";
  try {
    while (true) {
      const exit = proc.exit;
      if (exit !== undefined) {
        const out = proc.output(20);
        const msg = `postgres exited during start-up (${exit.error ?? (exit.code !== null ? `code ${exit.code}` : `signal ${exit.signal}`)}): ${lastLines(out, 6).replace(/\n/g, " | ")}`;
        throw /could not bind|address already in use/i.test(out)
          ? new PortClash(msg)
          : new Error(msg);
      }
      try {
        await query(url, "SELECT 1");
        break;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() - t0 > readyTimeoutMs) {
        throw new Error(
          `postgres did not accept a connection within ${readyTimeoutMs / 1000} s (${last}); log: ${lastLines(proc.output(10), 5).replace(/\n/g, " | ")}`,
        );
      }
      await sleep(READY_POLL_MS);
    }
    const names = Object.keys(settings);
    const shown = await query(
      url,
      `SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name IN (${names.map((n) => `'${n.replace(/'/g, "''")}'`).join(", ")})`,
    );
    const actual: Record<string, string> = {};
    for (const r of shown.rows as Array<{ name: string; setting: string }>)
      actual[r.name] = r.setting;
    if (actual["fsync"] !== "on" || actual["synchronous_commit"] !== "on") {
      throw new Error(
        `postgres runs with fsync=${actual["fsync"]}, synchronous_commit=${actual["synchronous_commit"]}; expected both on`,
      );
    }
    let stopped: Promise<StopInfo> | undefined;
    const stop = async (): Promise<StopInfo> => {
      if (proc.running && proc.pid !== undefined) {
        try {
          process.kill(proc.pid, "SIGINT"); // fast shutdown: ends sessions, checkpoints
        } catch {
          // already gone
        }
        await exitedWithin(proc, FAST_SHUTDOWN_WAIT_MS);
      }
      const info = await proc.stop(KILL_GRACE_MS);
      rmSync(root, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
      liveDirs.delete(root);
      return info;
    };
    return {
      host: "127.0.0.1",
      port,
      user: POSTGRES_SUPERUSER,
      url,
      version: bins.version,
      durability:
        `PostgreSQL ${bins.version}: fsync=${actual["fsync"]}, synchronous_commit=${actual["synchronous_commit"]}, ` +
        `wal_sync_method=${actual["wal_sync_method"] ?? "?"}, full_page_writes=${actual["full_page_writes"] ?? "?"} ` +
        "(a commit returns after its WAL record is on disk; one node, no replica)",
      settings: actual,
      dataDir,
      notes,
      proc,
      urlFor: (database) =>
        `postgres://${POSTGRES_SUPERUSER}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      stop: () => (stopped ??= stop()),
    };
  } catch (err) {
    await proc.stop(KILL_GRACE_MS);
    throw err;
  }
}

/**
 * Starts a fresh PostgreSQL 15 server on 127.0.0.1 (see the file comment). Resolves with
 * `{ skipped }` and the reason when it cannot run here; never throws.
 */
export async function startPostgres(
  o: PostgresOptions = {},
): Promise<PostgresServer | { skipped: string }> {
  const say = o.progress ?? defaultProgress;
  const bins = await ensurePostgres(say);
  if (!bins.ok) return { skipped: `PostgreSQL ${POSTGRES_MAJOR}: ${bins.reason}` };
  const who = await runAs();
  if (typeof who === "string") return { skipped: `PostgreSQL: ${who}` };
  const root = mkdtempSync(join(tmpdir(), "boki-bench-pg-"));
  const cleanup = (): void => {
    rmSync(root, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    liveDirs.delete(root);
  };
  try {
    const dataDir = join(root, "data");
    mkdirSync(join(root, "sock"));
    if (who.uid !== undefined && who.gid !== undefined) {
      chownSync(root, who.uid, who.gid);
      chownSync(join(root, "sock"), who.uid, who.gid);
    }
    // --no-sync: the empty catalog initdb writes is not fsynced (nothing of the benchmark's is
    // in it; the server itself runs with fsync on).
    const initdb = [
      join(bins.binDir, "initdb"),
      "-D",
      dataDir,
      "-U",
      POSTGRES_SUPERUSER,
      "--auth=trust",
      "--encoding=UTF8",
      "--locale=C",
      "--no-sync",
    ];
    const [cmd, ...rest] = [...who.prefix, ...initdb];
    const r = await runCommand(cmd!, rest, { timeoutMs: INITDB_TIMEOUT_MS });
    if (r.code !== 0) {
      cleanup();
      return { skipped: `PostgreSQL: ${commandFailure("initdb", r)}` };
    }
    const settings = { ...DEFAULT_SETTINGS, ...(o.settings ?? {}) };
    const notes = [
      ...bins.notes,
      `initdb --auth=trust --encoding=UTF8 --locale=C --no-sync${who.prefix.length > 0 ? ` (as OS user ${RUN_AS_USER})` : ""}`,
      `settings: ${Object.entries(settings)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`,
    ];
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOnce(
          bins,
          who,
          root,
          settings,
          o.readyTimeoutMs ?? READY_TIMEOUT_MS,
          notes,
        );
      } catch (err) {
        if (err instanceof PortClash && attempt < START_ATTEMPTS_MAX) {
          say(`postgres: ${err.message}; retrying on another port`);
          continue;
        }
        throw err;
      }
    }
  } catch (err) {
    cleanup();
    return { skipped: `PostgreSQL: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Longest a peer's HTTP server in front of PostgreSQL may take to answer /healthz. */
const PEER_HTTP_START_TIMEOUT_MS = 60_000;

/**
 * Starts a benchmark's HTTP server in front of PostgreSQL (`script`, run with tsx, taking
 * `--url`, `--port` and `--pool`) on a free port; resolves once /healthz answers.
 */
export async function startPostgresHttpPeer(
  name: string,
  script: string,
  server: PostgresServer,
  pool: number,
): Promise<{ url: string; proc: ManagedProcess }> {
  const [port] = await freePorts(1);
  const proc = ManagedProcess.start(name, process.execPath, [
    "--import",
    "tsx",
    script,
    "--url",
    server.url,
    "--port",
    String(port),
    "--pool",
    String(pool),
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(`the ${name} server`, proc, url, PEER_HTTP_START_TIMEOUT_MS);
  return { url, proc };
}
