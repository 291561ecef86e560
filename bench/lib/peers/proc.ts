/**
 * Process plumbing for peer systems: finding and running commands, free loopback ports, and
 * child processes that are always stopped (SIGTERM, then SIGKILL after a timeout; and SIGKILL
 * from an exit hook if the benchmark itself goes away first).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeEmergencyRemoval } from "../tmpdir.js";

/** Directories searched after PATH: a non-login root shell may lack the sbin ones. */
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The first executable file called `name` on PATH (then the usual system directories). */
export function findExecutable(name: string): string | undefined {
  const dirs = [
    ...(process.env["PATH"] ?? "").split(delimiter).filter((d) => d !== ""),
    ...EXTRA_DIRS,
  ];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface CommandResult {
  /** Exit code; null when killed by a signal or not started. */
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the command could not be started or timed out. */
  readonly error?: string;
}

/** Runs a command to completion; never rejects (failures are in the result). */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv } = { timeoutMs: 60_000 },
): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        timeout: opts.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 2 ** 20,
        env: opts.env ?? process.env,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ code: 0, signal: null, stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & {
          code?: number | string;
          signal?: string | null;
          killed?: boolean;
        };
        const code = typeof e.code === "number" ? e.code : null;
        const signal = e.signal ?? null;
        let error: string | undefined;
        if (typeof e.code === "string") error = `${cmd}: ${e.code}`;
        else if (e.killed === true && signal !== null) {
          error = `${cmd}: killed after ${opts.timeoutMs / 1000} s (${signal})`;
        }
        resolve(
          error === undefined
            ? { code, signal, stdout, stderr }
            : { code, signal, stdout, stderr, error },
        );
      },
    );
  });
}

/** The last `n` non-empty lines of some output, for error messages. */
export function lastLines(text: string, n: number): string {
  return text
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l !== "")
    .slice(-n)
    .join("\n");
}

/**
 * `n` distinct free TCP ports on `host`: all are held open at once (so no duplicates), then
 * released. Another process can still take one before it is used; callers retry on EADDRINUSE.
 */
export async function freePorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, host, () => resolve());
      });
      const addr = srv.address();
      if (addr === null || typeof addr === "string") throw new Error("no port from listen(0)");
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

// ---- child processes that are always stopped ------------------------------------------

const live = new Set<ChildProcess>();
let hooked = false;

/** Whether process `pid` is gone or a zombie (Linux /proc; elsewhere: assume gone). */
function deadOrZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/**
 * Synchronous last resort when the benchmark exits or is interrupted: SIGKILL every live
 * child and wait (up to 3 s) until they are dead, so that their data directories can be
 * removed without them writing into them.
 */
function killAllSync(): void {
  const pids: number[] = [];
  for (const c of live) {
    try {
      if (c.kill("SIGKILL") && c.pid !== undefined) pids.push(c.pid);
    } catch {
      // already gone
    }
  }
  live.clear();
  const deadline = Date.now() + 3000;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (pids.some((p) => !deadOrZombie(p)) && Date.now() < deadline) Atomics.wait(cell, 0, 0, 10);
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Runs before bench/lib/tmpdir.ts removes its directories on SIGINT/SIGTERM or exit.
  beforeEmergencyRemoval(killAllSync);
  process.once("exit", killAllSync);
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
  /** Set when the process could not be started at all. */
  readonly error?: string;
}

export interface StopInfo extends ExitInfo {
  /** How it ended: it had already exited, SIGTERM was enough, or SIGKILL was needed. */
  readonly how: "already-exited" | "sigterm" | "sigkill" | "still-running";
  readonly waitedMs: number;
}

/** A child process whose output is kept (the last lines) and that `stop()` always ends. */
export class ManagedProcess {
  private readonly lines: string[] = [];
  private partial = "";
  private exitInfo: ExitInfo | undefined;
  /** Resolves when the process has exited (or failed to start); never rejects. */
  readonly exited: Promise<ExitInfo>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    private readonly keepLines: number,
  ) {
    live.add(child);
    this.exited = new Promise<ExitInfo>((resolve) => {
      const done = (info: ExitInfo): void => {
        if (this.exitInfo !== undefined) return;
        this.exitInfo = info;
        live.delete(child);
        if (this.partial !== "") this.push(this.partial);
        this.partial = "";
        resolve(info);
      };
      child.once("exit", (code, signal) => done({ code, signal }));
      child.once("error", (err) => done({ code: null, signal: null, error: err.message }));
    });
    const onData = (chunk: Buffer): void => {
      const text = this.partial + chunk.toString("utf8");
      const parts = text.split("\n");
      this.partial = parts.pop() ?? "";
      for (const p of parts) this.push(p);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
  }

  static start(
    name: string,
    cmd: string,
    args: readonly string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv; keepLines?: number } = {},
  ): ManagedProcess {
    hookExit();
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      env: opts.env ?? process.env,
    });
    return new ManagedProcess(name, child, opts.keepLines ?? 200);
  }

  private push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.keepLines)
      this.lines.splice(0, this.lines.length - this.keepLines);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Exit status once it has exited, else undefined. */
  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The last `n` lines it printed (stdout and stderr interleaved). */
  output(n = 20): string {
    return this.lines.slice(-n).join("\n");
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. Never rejects. */
  async stop(graceMs = 5000): Promise<StopInfo> {
    const started = Date.now();
    const waited = (): number => Date.now() - started;
    if (this.exitInfo !== undefined)
      return { ...this.exitInfo, how: "already-exited", waitedMs: 0 };
    const within = async (ms: number): Promise<ExitInfo | undefined> => {
      const ac = new AbortController();
      try {
        return await Promise.race([
          this.exited,
          sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined),
        ]);
      } finally {
        ac.abort();
      }
    };
    this.signal("SIGTERM");
    const termed = await within(graceMs);
    if (termed !== undefined) return { ...termed, how: "sigterm", waitedMs: waited() };
    this.signal("SIGKILL");
    const killed = await within(5000);
    if (killed !== undefined) return { ...killed, how: "sigkill", waitedMs: waited() };
    return { code: null, signal: null, how: "still-running", waitedMs: waited() };
  }

  private signal(sig: NodeJS.Signals): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }
}

/**
 * Waits until the HTTP server `proc` runs answers `GET <url>/healthz` with 2xx, polling every
 * 100 ms; fails (and stops it) if it exits first or `timeoutMs` passes, with its last output.
 */
export async function waitHealthy(
  name: string,
  proc: ManagedProcess,
  url: string,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!proc.running) {
      throw new Error(
        `${name} exited while starting: ${JSON.stringify(proc.exit)}\n${lastLines(proc.output(40), 40)}`,
      );
    }
    try {
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await proc.stop();
  throw new Error(`${name} did not answer /healthz within ${timeoutMs} ms\n${proc.output(40)}`);
}
