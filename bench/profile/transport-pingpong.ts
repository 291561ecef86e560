/**
 * What one message costs: ping-pong round trips between two peers in this process, over raw
 * `node:net` sockets and over the cluster's TCP transport (framing, msgpack, validation,
 * per-turn write coalescing), and between two processes over raw sockets (adding the
 * wake-up of another process, which dominates on small VMs).
 *
 *   npx tsx bench/profile/transport-pingpong.ts [-n 20000]
 */
import { Command } from "commander";
import { fork } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { TcpTransport } from "../../src/transport/tcp.js";
import { freePort } from "../../src/cluster/client.js";
import { silentLogger } from "../../src/util/logger.js";

const SELF = fileURLToPath(import.meta.url);

function report(what: string, n: number, ms: number, cpu: NodeJS.CpuUsage, sides: string): void {
  console.log(
    `${what.padEnd(34)} rtt ${((ms * 1000) / n).toFixed(1).padStart(6)} µs, CPU per round trip ${((cpu.user + cpu.system) / n).toFixed(1).padStart(6)} µs (${sides})`,
  );
}

/** A TCP server that writes back whatever it reads. */
function echoServer(): net.Server {
  return net.createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d) => s.write(d));
  });
}

/** `n` round trips of 24 bytes to the echo server at `port`, reported as `what`. */
async function rawPingPong(port: number, n: number, what: string, sides: string): Promise<void> {
  const s = net.connect(port, "127.0.0.1");
  s.setNoDelay(true);
  await new Promise((r) => s.once("connect", r));
  let i = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    s.on("data", () => (++i === n ? resolve() : s.write("x".repeat(24))));
    s.write("x".repeat(24));
  });
  report(what, n, performance.now() - t0, process.cpuUsage(c0), sides);
  s.destroy();
}

async function rawInProcess(n: number): Promise<void> {
  const srv = echoServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  await rawPingPong(
    (srv.address() as net.AddressInfo).port,
    n,
    "raw node:net, one process",
    "both sides",
  );
  srv.close();
}

async function transportInProcess(n: number): Promise<void> {
  const [pa, pb] = [await freePort(), await freePort()];
  const peers = new Map([
    ["a", { host: "127.0.0.1", port: pa }],
    ["b", { host: "127.0.0.1", port: pb }],
  ]);
  const a = await TcpTransport.listen({
    self: "a",
    host: "127.0.0.1",
    port: pa,
    peers,
    logger: silentLogger,
  });
  const b = await TcpTransport.listen({
    self: "b",
    host: "127.0.0.1",
    port: pb,
    peers,
    logger: silentLogger,
  });
  b.onMessage((from, m) => b.send(from, m));
  let i = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    a.onMessage(() => {
      if (++i === n) resolve();
      else a.send("b", { t: "read", id: i, log: 0, seqnum: 5 });
    });
    a.send("b", { t: "read", id: 0, log: 0, seqnum: 5 });
  });
  report(
    "cluster transport, one process",
    n,
    performance.now() - t0,
    process.cpuUsage(c0),
    "both sides",
  );
  a.close();
  b.close();
}

async function rawTwoProcesses(n: number): Promise<void> {
  const child = fork(SELF, ["--echo-server"], { execArgv: process.execArgv });
  const port = await new Promise<number>((r) => child.once("message", (m) => r(Number(m))));
  await rawPingPong(port, n, "raw node:net, two processes", "this side only");
  child.kill();
}

if (process.argv.includes("--echo-server")) {
  const srv = echoServer();
  srv.listen(0, "127.0.0.1", () => process.send?.((srv.address() as net.AddressInfo).port));
} else {
  const { n } = new Command()
    .option("-n <count>", "round trips per measurement", "20000")
    .parse()
    .opts<{ n: string }>();
  const count = Number(n);
  const only = process.env.PINGPONG_ONLY;
  if (only === undefined || only === "raw") await rawInProcess(count);
  if (only === undefined || only === "transport") await transportInProcess(count);
  if (only === undefined || only === "processes") await rawTwoProcesses(count);
  process.exit(0);
}
