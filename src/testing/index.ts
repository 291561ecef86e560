/**
 * `boki-ts/testing`: the whole runtime in the test's own process, for tests of a project's
 * functions. `startDevServer` runs what `boki dev` runs (the embedded log on disk, worker
 * threads, the HTTP gateway on a free loopback port) on a fresh temporary data directory,
 * and `close()` stops it and removes the directory.
 *
 * ```ts
 * import { startDevServer } from "boki-ts/testing";
 * const dev = await startDevServer({ functions: "functions" });
 * try {
 *   expect(await dev.client.invoke("hello", { name: "Ada" })).toEqual(...);
 * } finally {
 *   await dev.close();
 * }
 * ```
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BokiClient } from "../client/client.js";
import { DevServer } from "../embedded/dev-server.js";
import type { FunctionInfo } from "../runtime/dispatcher.js";

export interface TestServerOptions {
  /** A function module, or a directory of them (relative to the working directory). */
  readonly functions: string;
  /** Data directory; default a fresh temporary one, removed by `close()`. */
  readonly dataDir?: string;
  /** Worker threads (default 1). */
  readonly workers?: number;
  /** Time limit of functions that set none, in ms (default 30 s). */
  readonly timeoutMs?: number;
  /** Whether appends wait for fsync (default true, as in production). */
  readonly sync?: boolean;
}

export interface TestServer {
  /** The gateway's base URL. */
  readonly url: string;
  /** A client of the gateway. */
  readonly client: BokiClient;
  /** The data directory in use. */
  readonly dataDir: string;
  /** The functions loaded. */
  functions(): readonly FunctionInfo[];
  /** Stops the runtime; removes the data directory if it was a temporary one. */
  close(): Promise<void>;
}

export async function startDevServer(options: TestServerOptions): Promise<TestServer> {
  const temporary = options.dataDir === undefined;
  const dataDir =
    options.dataDir === undefined
      ? mkdtempSync(join(tmpdir(), "boki-test-"))
      : resolve(options.dataDir);
  let server: DevServer;
  try {
    server = await DevServer.start({
      functions: resolve(options.functions),
      dataDir,
      port: 0,
      workers: options.workers ?? 1,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.sync === undefined ? {} : { sync: options.sync }),
    });
  } catch (err) {
    if (temporary) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const client = new BokiClient({ url: server.url });
  return {
    url: server.url,
    client,
    dataDir,
    functions: () => server.functions(),
    async close() {
      await server.close();
      if (temporary) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
