/**
 * A bench-only HTTP server for the `queue` suite's "direct" variant: the queue library over
 * an EmbeddedLog on the server's one thread, behind node:http, without the function runtime
 * (no worker threads, no invocation records). It shows what push/pop endpoints in the
 * runtime itself could reach. The function loader skips this file (its name starts with _).
 *
 *   node --import tsx _direct-server.ts <dataDir> <port>
 * Routes: POST /push {q, shards, m}, POST /pop {q, shards, consumer, max, waitMs, shard?, ack}
 * with the same bodies and answers as the bench-queue-push / bench-queue-pop functions.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import process from "node:process";
import { EmbeddedLog } from "../../../src/index.js";
import { openQueue, QueueCache, type Queue } from "../../../src/queue/index.js";

const [dataDir, portArg] = process.argv.slice(2);
if (dataDir === undefined || portArg === undefined) {
  throw new Error("usage: _direct-server.ts <dataDir> <port>");
}
/** Largest request body accepted. */
const BODY_BYTES_MAX = 1024 * 1024;

const log = await EmbeddedLog.open({ dir: dataDir });
const book = log.book(0);
const cache = new QueueCache();
const queues = new Map<string, Promise<Queue>>();
const queue = (name: string, shards: number): Promise<Queue> => {
  let q = queues.get(name);
  if (q === undefined) {
    q = openQueue(book, name, { cache, shards });
    queues.set(name, q);
  }
  return q;
};

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n > BODY_BYTES_MAX) req.destroy(new Error("body too large"));
      else parts.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    return;
  }
  const input = JSON.parse(await body(req)) as Record<string, unknown>;
  const q = await queue(String(input["q"]), Number(input["shards"] ?? 1));
  let out: unknown;
  if (req.url === "/push") {
    await q.push(String(input["m"]));
    out = null;
  } else if (req.url === "/pop") {
    const shard = input["shard"];
    const r = await q.pop({
      consumer: String(input["consumer"]),
      max: Number(input["max"]),
      waitMs: Number(input["waitMs"]),
      ack: input["ack"] as string[],
      ...(typeof shard === "number" ? { shard } : {}),
    });
    out = { r: r.messages.map((m) => m.receipt), m: r.messages.map((m) => m.value as string) };
  } else {
    res.writeHead(404).end();
    return;
  }
  const text = JSON.stringify(out);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err: unknown) => {
    const text = JSON.stringify({ error: { message: String(err) } });
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(text);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(portArg), "127.0.0.1", () => {
  process.stdout.write(`direct queue server at http://127.0.0.1:${portArg}\n`);
});
const stop = (): void => {
  server.close();
  void log.close().then(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
