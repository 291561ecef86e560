/**
 * rabbitmq-server for the queue benchmark's RabbitMQ peer: Debian's package (installed with
 * apt-get when missing), one node run as a child process of the benchmark with everything
 * on 127.0.0.1 and on ports found free (AMQP, Erlang distribution, and its own epmd), its
 * configuration, data, logs and Erlang cookie in a directory the caller removes. The node is
 * stopped afterwards, and so is the epmd it started.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import { progress as defaultProgress } from "../progress.js";
import { aptInstall } from "./redis.js";
import {
  findExecutable,
  freePorts,
  lastLines,
  ManagedProcess,
  runCommand,
  type StopInfo,
} from "./proc.js";

/** Where Debian's package puts the server script (the /usr/sbin wrapper switches users). */
const SERVER_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/** Longest a node may take to accept an AMQP connection after it starts. */
const START_TIMEOUT_MS = 60_000;

export type RabbitBinary =
  | {
      readonly ok: true;
      readonly script: string;
      readonly version: string;
      readonly notes: string[];
    }
  | { readonly ok: false; readonly reason: string; readonly notes: string[] };

/** Debian's rabbitmq-server, installed if missing. Never throws. */
export async function ensureRabbitMq(
  say: (msg: string) => void = defaultProgress,
): Promise<RabbitBinary> {
  const notes: string[] = [];
  try {
    const installed = async (): Promise<boolean> =>
      (await runCommand("test", ["-x", SERVER_SCRIPT], { timeoutMs: 5000 })).code === 0;
    if (!(await installed())) {
      const why = await aptInstall("rabbitmq-server", say, notes);
      if (why !== undefined) return { ok: false, reason: why, notes };
      if (!(await installed())) {
        return {
          ok: false,
          reason: `apt-get installed rabbitmq-server but ${SERVER_SCRIPT} is missing`,
          notes,
        };
      }
    } else {
      notes.push(`found ${SERVER_SCRIPT}`);
    }
    const dpkg = findExecutable("dpkg-query");
    let version = "unknown";
    if (dpkg !== undefined) {
      const v = await runCommand(dpkg, ["-W", "-f=${Version}", "rabbitmq-server"], {
        timeoutMs: 10_000,
      });
      if (v.code === 0) version = v.stdout.trim();
    }
    return { ok: true, script: SERVER_SCRIPT, version, notes };
  } catch (err) {
    return { ok: false, reason: `unexpected error: ${String(err)}`, notes };
  }
}

export interface RabbitNode {
  readonly url: string;
  readonly readyMs: number;
  /** Stops the node and its epmd. Never rejects; safe to call twice. */
  stop(): Promise<StopInfo>;
}

export async function startRabbitMq(script: string, dir: string): Promise<RabbitNode> {
  const [amqpPort, distPort, epmdPort] = await freePorts(3);
  const base = join(dir, "rabbitmq");
  for (const d of ["mnesia", "log", "home"]) mkdirSync(join(base, d), { recursive: true });
  writeFileSync(
    join(base, "rabbitmq.conf"),
    [
      `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
      "loopback_users = none",
      "log.console = true",
      "log.console.level = warning",
      "log.file = false",
      "",
    ].join("\n"),
  );
  writeFileSync(join(base, "enabled_plugins"), "[].\n");
  writeFileSync(join(base, "rabbitmq-env.conf"), "\n");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: join(base, "home"),
    RABBITMQ_NODENAME: `bench${amqpPort}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: join(base, "rabbitmq"),
    RABBITMQ_CONF_ENV_FILE: join(base, "rabbitmq-env.conf"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(base, "enabled_plugins"),
    RABBITMQ_MNESIA_BASE: join(base, "mnesia"),
    RABBITMQ_LOG_BASE: join(base, "log"),
    RABBITMQ_PID_FILE: join(base, "rabbitmq.pid"),
    ERL_EPMD_ADDRESS: "127.0.0.1",
    ERL_EPMD_PORT: String(epmdPort),
  };
  const t0 = Date.now();
  const proc = ManagedProcess.start("rabbitmq-server", script, [], { cwd: base, env });
  const stopEpmd = async (): Promise<void> => {
    const epmd = findExecutable("epmd");
    if (epmd !== undefined) {
      await runCommand(epmd, ["-port", String(epmdPort), "-kill"], { timeoutMs: 10_000, env });
    }
  };
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  let last = "";
  for (;;) {
    if (!proc.running) {
      await stopEpmd();
      throw new Error(`rabbitmq-server exited while starting: ${lastLines(proc.output(20), 6)}`);
    }
    try {
      const c = await amqp.connect(url);
      await c.close();
      break;
    } catch (err) {
      last = String(err);
    }
    if (Date.now() - t0 > START_TIMEOUT_MS) {
      await proc.stop();
      await stopEpmd();
      throw new Error(
        `rabbitmq-server did not accept AMQP within ${START_TIMEOUT_MS / 1000} s: ${last}\n${proc.output(10)}`,
      );
    }
    await sleep(250);
  }
  const readyMs = Date.now() - t0;
  let stopped: Promise<StopInfo> | undefined;
  return {
    url,
    readyMs,
    stop: () =>
      (stopped ??= (async () => {
        const info = await proc.stop(15_000);
        await stopEpmd();
        return info;
      })()),
  };
}
