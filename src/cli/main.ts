#!/usr/bin/env node
/**
 * The `boki` command line: `init` (a new project), `dev` (functions, gateway and log in one
 * process), `invoke` (call a function over HTTP), `demo` (the embedded log), `start` (one
 * node of a cluster) and `cluster up` (every node of a cluster as its own process).
 */
import { Command, InvalidArgumentError as CliArgumentError } from "commander";
import { checkListenAuth, gatherTokens, type GatewayAuthOptions } from "../gateway/auth.js";
import { loadTls, type GatewayTls } from "../gateway/tls.js";
import { startTracing, tracesUrlFrom, type Tracing } from "../tracing/tracing.js";
import { resolve } from "node:path";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EmbeddedLog, tagOf } from "../index.js";
import { reportCliError } from "./errors.js";
import { initCommand } from "./init.js";
import { workflowCommand } from "./workflow.js";
import { loadClusterConfig, ROLES, type Role } from "../cluster/config.js";
import { startNode } from "../cluster/node.js";
import { superviseCluster } from "../cluster/supervisor.js";
import { createLogger, type LogLevel } from "../util/logger.js";
import { closeOnSignals } from "./signals.js";
import { DevServer } from "../embedded/dev-server.js";
import { FUNCTION_TIMEOUT_MS_MAX, WORKERS_MAX } from "../runtime/limits.js";
import { invokeCommand, DEFAULT_URL } from "./invoke.js";
import {
  controllerCommand,
  requestCommand,
  statusCommand,
  STORE_SPEC_DEFAULT,
} from "./controller-commands.js";

const DEFAULT_CLUSTER_CONFIG = "config/local-cluster.json";
const DEV_PORT_DEFAULT = 8080;

/** The flags of a command that runs a gateway: tokens, TLS, tracing. */
interface OperationsFlags {
  authToken?: string;
  authTokenFile?: string;
  adminToken?: string;
  adminTokenFile?: string;
  insecureNoAuth?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  otlpEndpoint?: string;
}

function withOperationsFlags(cmd: Command, what: string): Command {
  return cmd
    .option(
      "--auth-token <token>",
      `a bearer token ${what} requires (visible to other users in ps: prefer --auth-token-file or BOKI_AUTH_TOKEN)`,
    )
    .option("--auth-token-file <file>", "a file of tokens, one per line")
    .option("--admin-token <token>", "a token that may also cancel workflows (or BOKI_ADMIN_TOKEN)")
    .option("--admin-token-file <file>", "a file of admin tokens, one per line")
    .option(
      "--insecure-no-auth",
      "listen beyond loopback without any token (anyone who reaches the port may call everything)",
    )
    .option("--tls-cert <file>", "serve HTTPS: the PEM certificate chain")
    .option("--tls-key <file>", "serve HTTPS: the PEM private key")
    .option(
      "--otlp-endpoint <url>",
      "export OpenTelemetry spans over OTLP/HTTP to this collector (or OTEL_EXPORTER_OTLP_ENDPOINT)",
    );
}

/** The gateway's tokens and TLS from the flags and BOKI_AUTH_TOKEN / BOKI_ADMIN_TOKEN. */
function gatewaySecurity(o: OperationsFlags): { auth: GatewayAuthOptions; tls?: GatewayTls } {
  if (o.authToken !== undefined || o.adminToken !== undefined)
    console.error(
      "warning: a token given on the command line is visible to other users of this machine (ps); prefer a token file or BOKI_AUTH_TOKEN",
    );
  const auth: GatewayAuthOptions = {
    tokens: gatherTokens({
      token: o.authToken,
      file: o.authTokenFile,
      env: process.env["BOKI_AUTH_TOKEN"],
      what: "an auth token",
    }),
    adminTokens: gatherTokens({
      token: o.adminToken,
      file: o.adminTokenFile,
      env: process.env["BOKI_ADMIN_TOKEN"],
      what: "an admin token",
    }),
    ...(o.insecureNoAuth === true ? { allowUnauthenticated: true } : {}),
  };
  const tls = loadTls(o.tlsCert, o.tlsKey);
  return tls === undefined ? { auth } : { auth, tls };
}

/** One line saying who may call the gateway. */
function describeAuth(auth: GatewayAuthOptions): string {
  const users = auth.tokens?.length ?? 0;
  const admins = auth.adminTokens?.length ?? 0;
  if (users + admins === 0) return "no token required (loopback only)";
  return `tokens required (${users} user, ${admins} admin)`;
}

/** Tracing as the flag and the environment ask (off without an endpoint). */
async function tracingFor(
  o: OperationsFlags,
  serviceName: string,
  attributes: Record<string, string>,
): Promise<{ tracing: Tracing; url: string | null }> {
  const url = tracesUrlFrom(process.env, o.otlpEndpoint);
  if (url === null) {
    return {
      tracing: { flush: () => Promise.resolve(), shutdown: () => Promise.resolve() },
      url: null,
    };
  }
  const tracing = await startTracing({
    url,
    serviceName: process.env["OTEL_SERVICE_NAME"] ?? serviceName,
    attributes,
  });
  return { tracing, url };
}

function positiveInt(value: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new CliArgumentError("must be a positive integer");
  return Number(value);
}

async function start(
  options: {
    config: string;
    id?: string;
    role?: string;
    term?: number;
    logLevel: string;
    functions?: string;
    workers?: number;
    timeout?: number;
    store?: string;
  } & OperationsFlags,
): Promise<void> {
  const config = loadClusterConfig(options.config);
  if (options.role !== undefined && !(ROLES as readonly string[]).includes(options.role)) {
    throw new CliArgumentError(`--role must be one of ${ROLES.join(", ")}`);
  }
  let id = options.id;
  if (id === undefined) {
    const candidates = config.nodes.filter(
      (n) => options.role === undefined || n.role === (options.role as Role),
    );
    if (candidates.length !== 1) {
      throw new CliArgumentError(
        `--id is needed: the config has ${candidates.length} nodes${options.role === undefined ? "" : ` with role ${options.role}`}`,
      );
    }
    id = candidates[0]!.id;
  }
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) throw new CliArgumentError(`node ${id} is not in ${options.config}`);
  if (options.role !== undefined && node.role !== options.role)
    throw new CliArgumentError(`node ${id} has role ${node.role}, not ${options.role}`);
  let term = options.term;
  if (term === undefined) {
    try {
      term = Number(readFileSync(join(config.dataDir, "TERM"), "utf8").trim()) || 1;
    } catch {
      term = 1;
    }
  }
  const logger = createLogger(options.logLevel as LogLevel);
  const security = node.role === "gateway" ? gatewaySecurity(options) : undefined;
  // Spans are made where invocations run and arrive: engines and gateways.
  const traced = node.role === "engine" || node.role === "gateway";
  const { tracing } = traced
    ? await tracingFor(options, `boki-${node.role}`, {
        "boki.node.id": node.id,
        "boki.node.role": node.role,
      })
    : { tracing: null };
  const running = await startNode(config, id, term, logger, {
    ...(options.functions === undefined ? {} : { functions: resolve(options.functions) }),
    ...(options.workers === undefined ? {} : { workers: options.workers }),
    ...(options.timeout === undefined ? {} : { timeoutMs: options.timeout }),
    ...(options.store === undefined ? {} : { store: options.store }),
    ...(security === undefined ? {} : security),
  });
  console.log(
    `${running.role} ${running.id} listening on ${running.address.host}:${running.address.port} (term ${term})`,
  );
  if (security !== undefined) {
    const scheme = security.tls === undefined ? "http" : "https";
    console.log(
      `  dashboard at ${scheme}://${running.address.host}:${running.address.port}/ui; ${describeAuth(security.auth)}`,
    );
  }
  closeOnSignals(async () => {
    await running.close();
    await tracing?.shutdown();
  });
}

function clusterUp(
  options: { config: string; functions?: string; store?: string } & OperationsFlags,
): void {
  const config = loadClusterConfig(options.config);
  const functions = options.functions === undefined ? undefined : resolve(options.functions);
  // Checked here, so that a gateway that could not start is said at once; the gateways get
  // the files' paths as flags and the tokens given as values in their environment.
  const { auth } = gatewaySecurity(options);
  for (const n of config.nodes)
    if (n.role === "gateway" && functions !== undefined) checkListenAuth(n.host, auth);
  const gatewayArgs = [
    ...(options.authTokenFile === undefined
      ? []
      : ["--auth-token-file", resolve(options.authTokenFile)]),
    ...(options.adminTokenFile === undefined
      ? []
      : ["--admin-token-file", resolve(options.adminTokenFile)]),
    ...(options.insecureNoAuth === true ? ["--insecure-no-auth"] : []),
    ...(options.tlsCert === undefined ? [] : ["--tls-cert", resolve(options.tlsCert)]),
    ...(options.tlsKey === undefined ? [] : ["--tls-key", resolve(options.tlsKey)]),
  ];
  const gatewayEnv: Record<string, string> = {
    ...(options.authToken === undefined ? {} : { BOKI_AUTH_TOKEN: options.authToken }),
    ...(options.adminToken === undefined ? {} : { BOKI_ADMIN_TOKEN: options.adminToken }),
  };
  if (options.otlpEndpoint !== undefined)
    process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = options.otlpEndpoint;
  // The handlers stop `sup` only when a signal arrives, after it has been created below.
  const signals = closeOnSignals(() => sup.stop(), { announce: "Stopping the cluster..." });
  const sup = superviseCluster(
    options.config,
    config,
    (id, code) => {
      if (!signals.stopping) console.error(`node ${id} exited with code ${code}`);
    },
    "info",
    functions === undefined ? undefined : { path: functions },
    options.store,
    { args: gatewayArgs, env: gatewayEnv },
  );
  console.log(`Cluster from ${options.config}, term ${sup.term}, data in ${config.dataDir}:`);
  for (const n of config.nodes) {
    const pid = sup.children.get(n.id)?.pid;
    const where = n.role === "gateway" ? `http://${n.host}:${n.port}` : `${n.host}:${n.port}`;
    console.log(
      `  ${n.role.padEnd(9)} ${n.id.padEnd(14)} ${where}  ${pid !== undefined ? `pid ${pid}` : n.spare === true ? "spare, not started (no --store)" : "not started (no --functions)"}`,
    );
  }
  if (functions !== undefined) console.log(`Functions from ${functions}.`);
  console.log("Press Ctrl-C to stop every node.");
}

function bookArg(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 0xffff_ffff)
    throw new CliArgumentError("a book id is an integer in [0, 4294967295]");
  return n;
}

function portArg(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535)
    throw new CliArgumentError("a port is an integer in [0, 65535]");
  return n;
}

function intIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || n < min || n > max)
      throw new CliArgumentError(`must be an integer in [${min}, ${max}]`);
    return n;
  };
}

async function dev(
  options: {
    functions: string;
    data: string;
    port: number;
    host: string;
    workers?: number;
    timeout?: number;
    logLevel: string;
  } & OperationsFlags,
): Promise<void> {
  const functions = resolve(options.functions);
  const dataDir = resolve(options.data);
  const logger = createLogger(options.logLevel as LogLevel);
  const security = gatewaySecurity(options);
  checkListenAuth(options.host, security.auth);
  const { tracing, url: tracesUrl } = await tracingFor(options, "boki-dev", {
    "boki.node.role": "dev",
  });
  const server = await DevServer.start({
    functions,
    dataDir,
    host: options.host,
    port: options.port,
    logger,
    ...(options.workers === undefined ? {} : { workers: options.workers }),
    ...(options.timeout === undefined ? {} : { timeoutMs: options.timeout }),
    ...security,
  });
  // The libraries' own functions (boki-flow.status, ...) are summed up, not listed.
  const all = server.functions();
  const fns = all.filter((f) => !f.name.startsWith("boki-"));
  const library = all.length - fns.length;
  console.log(`Boki dev server at ${server.url}`);
  console.log(`  dashboard at ${server.url}/ui; ${describeAuth(security.auth)}`);
  if (tracesUrl !== null) console.log(`  spans go to ${tracesUrl}`);
  console.log(`  data in ${dataDir} (term ${server.log.term})`);
  console.log(`  ${fns.length} function${fns.length === 1 ? "" : "s"} from ${functions}:`);
  const width = Math.max(...fns.map((f) => f.name.length));
  for (const f of fns) {
    const kind = f.kind === undefined ? "" : `${f.kind}, `;
    console.log(
      `    ${f.name.padEnd(width)}  ${kind}book ${f.book ?? 0}, timeout ${f.timeoutMs} ms`,
    );
  }
  if (library > 0) console.log(`  and ${library} functions of the libraries they use (boki-*)`);
  if (server.recovered > 0) {
    console.log(`  re-running ${server.recovered} recorded invocation(s) that had not finished`);
  }
  const example = fns[0]?.name ?? "<name>";
  const authHeader =
    (security.auth.tokens?.length ?? 0) + (security.auth.adminTokens?.length ?? 0) > 0
      ? ` -H "Authorization: Bearer $BOKI_AUTH_TOKEN"`
      : "";
  console.log(
    `Call one: curl -X POST ${server.url}/function/${example}${authHeader} -d '{}'  (or: boki invoke ${example} '{}')`,
  );
  console.log("Press Ctrl-C to stop.");
  closeOnSignals(
    async () => {
      await server.close();
      await tracing.shutdown();
    },
    {
      announce:
        "Stopping (running invocations get a few seconds to finish; Ctrl-C again to stop at once)...",
      again: () => {
        console.log("Stopping now.");
        process.exit(130);
      },
    },
  );
}

async function demo(options: { data: string; book: number }): Promise<void> {
  const dir = resolve(options.data);
  const log = await EmbeddedLog.open({ dir });
  try {
    const book = log.book(options.book);
    console.log(`Embedded log open at ${dir} (term ${log.term}), book ${book.book}`);
    const greetings = tagOf("greetings");
    for (const text of ["hello", "shared", "log"]) {
      const seqnum = await book.append([greetings], `${text} @ ${new Date().toISOString()}`);
      console.log(`  appended seqnum ${seqnum}: ${text}`);
    }
    console.log(`Every record of book ${book.book} tagged "greetings", oldest first:`);
    let count = 0;
    for (
      let r = await book.readNext(greetings, 0);
      r !== null;
      r = await book.readNext(greetings, r.seqnum + 1)
    ) {
      count++;
      console.log(`  ${String(r.seqnum).padStart(6)}  ${Buffer.from(r.data).toString("utf8")}`);
    }
    console.log(`${count} records; run it again and the earlier ones are still there.`);
  } finally {
    await log.close();
  }
}

const program = new Command()
  .name("boki")
  .description("Boki.ts: stateful serverless functions on a durable shared log")
  .option("--verbose", "print the stack and causes of an error")
  .showHelpAfterError("(add --help for usage)");

withOperationsFlags(program.command("dev"), "the gateway")
  .description(
    "run functions, the HTTP gateway and the embedded log in this process (Ctrl-C stops it)",
  )
  .option(
    "--functions <path>",
    "a function module, or a directory of them (not searched recursively)",
    "functions",
  )
  .option("--data <dir>", "data directory of the embedded log", "data/dev")
  .option("--port <n>", "HTTP port (0: any free port)", portArg, DEV_PORT_DEFAULT)
  .option("--host <address>", "address to listen on", "127.0.0.1")
  .option("--workers <n>", "worker threads that run functions (default 2)", intIn(1, WORKERS_MAX))
  .option(
    "--timeout <ms>",
    "time limit of functions that set none (default 30000)",
    intIn(1, FUNCTION_TIMEOUT_MS_MAX),
  )
  .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
  .action(dev);

program
  .command("init")
  .description(
    "create a project that uses Boki.ts: package.json, tsconfig, a function and its test",
  )
  .argument("[dir]", "where (created if missing; files that exist are kept)", ".")
  .option(
    "--boki-ts <spec>",
    "the boki-ts dependency to write (an npm spec: a version, file:<path>, a tarball); default: this copy",
  )
  .action(initCommand);

program
  .command("invoke")
  .description("call a function through a gateway and print its output")
  .argument("<name>", "function name")
  .argument("[json]", "input as JSON text (default: null)")
  .option("--url <url>", `gateway URL (default: $BOKI_URL, else ${DEFAULT_URL})`)
  .option("--book <id>", "book to run in (X-Boki-Book)", bookArg)
  .option("--async", "start it asynchronously and print the invocation id", false)
  .option("--wait", "with --async: wait for the result and print it", false)
  .option("--idempotency-key <key>", "Idempotency-Key: repeats return the first result")
  .action(invokeCommand);

program.addCommand(workflowCommand());

program
  .command("demo")
  .description("open the embedded log, append a few records and read them back")
  .option("--data <dir>", "data directory", "data")
  .option("--book <id>", "book to use", bookArg, 1)
  .action(demo);

withOperationsFlags(program.command("start"), "a gateway node")
  .description(
    "start one node of a cluster (sequencer, storage, engine or gateway) in this process",
  )
  .option("--config <file>", "cluster config file", DEFAULT_CLUSTER_CONFIG)
  .option(
    "--role <role>",
    `role of the node: ${ROLES.join(", ")} (with a single node of that role, --id may be left out)`,
  )
  .option("--id <id>", "node id in the config")
  .option("--term <n>", "term to run in (default: <dataDir>/TERM, else 1)", positiveInt)
  .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
  .option(
    "--functions <path>",
    "function modules (a file or a directory): engines run them, gateways serve them",
  )
  .option(
    "--workers <n>",
    "an engine's worker threads for functions (default 2)",
    intIn(1, WORKERS_MAX),
  )
  .option(
    "--timeout <ms>",
    "time limit of functions that set none (default 30000)",
    intIn(1, FUNCTION_TIMEOUT_MS_MAX),
  )
  .option(
    "--store <spec>",
    "register the node in a coordination store (file:<dir> or etcd:<host:port>,...) with a lease",
  )
  .action(start);

const cluster = program.command("cluster").description("run a whole cluster on this machine");
withOperationsFlags(cluster.command("up"), "the gateways")
  .description("start every node of the config as its own process; Ctrl-C stops them all")
  .option("--config <file>", "cluster config file", DEFAULT_CLUSTER_CONFIG)
  .option(
    "--functions <path>",
    "function modules (a file or a directory) for the engines and gateways",
  )
  .option(
    "--store <spec>",
    "every node registers in this coordination store (etcd:<host:port>,...; a file: store serves one process only)",
  )
  .action(clusterUp);

program
  .command("status")
  .description("print the term, the nodes and their health, the controller leader and the logs")
  .option(
    "--store <spec>",
    "coordination store: file:<dir> or etcd:<host:port,...>",
    STORE_SPEC_DEFAULT,
  )
  .action(statusCommand);

program
  .command("controller")
  .description("run a controller: it campaigns for leadership and keeps the cluster's view")
  .option("--config <file>", "cluster config file", DEFAULT_CLUSTER_CONFIG)
  .option(
    "--store <spec>",
    "coordination store: file:<dir> or etcd:<host:port,...>",
    STORE_SPEC_DEFAULT,
  )
  .option("--id <id>", "candidate id in the election (default: controller@<host>:<pid>)")
  .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
  .action(controllerCommand);

program
  .command("reconfigure")
  .description("ask the leading controller to seal the term and publish the next one")
  .option(
    "--store <spec>",
    "coordination store: file:<dir> or etcd:<host:port,...>",
    STORE_SPEC_DEFAULT,
  )
  .action((o: { store: string }) => requestCommand("reconfigure", o));

program
  .command("drain <node>")
  .description("ask the leading controller to take a node out of the cluster with a new term")
  .option(
    "--store <spec>",
    "coordination store: file:<dir> or etcd:<host:port,...>",
    STORE_SPEC_DEFAULT,
  )
  .action((node: string, o: { store: string }) => requestCommand("drain", { ...o, node }));

program.parseAsync(process.argv).catch((err: unknown) => {
  reportCliError(err);
  process.exitCode = 1;
});
