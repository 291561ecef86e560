/**
 * `boki dev` as a real child process (bin/boki.js, run from source), for end-to-end tests.
 * Every wait is bounded; `stop()` always ends the process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BOKI_BIN = fileURLToPath(new URL("../../bin/boki.js", import.meta.url));
/** Longest a dev process may take to print its URL (tsx compiles the sources on start). */
const START_TIMEOUT_MS = 60_000;
/** Longest a dev process may take to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 20_000;

export interface DevProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit (SIGKILL after a timeout). */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: string | null }>;
}

/** Runs a boki command to completion; resolves to its exit code and output. */
export function runBoki(
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BOKI_BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BOKI_FROM_SOURCE: "1" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface DevProcessOptions {
  /** The boki script to run (default this checkout's bin/boki.js, from source). */
  readonly bin?: string;
  /** Working directory (default this process's). */
  readonly cwd?: string;
}

export function startDevProcess(
  args: readonly string[],
  options: DevProcessOptions = {},
): Promise<DevProcess> {
  const child = spawn(
    process.execPath,
    [options.bin ?? BOKI_BIN, "dev", "--port", "0", "--log-level", "warn", ...args],
    {
      stdio: ["ignore", "pipe", "pipe"],
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, BOKI_FROM_SOURCE: options.bin === undefined ? "1" : "0" },
    },
  );
  let out = "";
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop("SIGKILL");
      reject(new Error(`boki dev did not start within ${START_TIMEOUT_MS} ms:\n${out}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      // The banner ends with this line; by then it has printed everything about its start.
      const m = /Boki dev server at (http:\/\/\S+)[^]*Press Ctrl-C to stop\./.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child, output: () => out, stop });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`boki dev exited (code ${code}, signal ${signal}) before serving:\n${out}`));
    });
  });
}
