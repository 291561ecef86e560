/* global process, console, setTimeout, Buffer */
/**
 * The DBOS peer's app: a DBOS workflow `benchFlow` of three steps (functional API:
 * DBOS.registerStep / DBOS.registerWorkflow), step k returning `{ k, v: input.v + k }`; the
 * workflow returns the last step's value. The system database is PostgreSQL at
 * $DBOS_SYSTEM_DATABASE_URL (DBOS creates and migrates it at launch).
 *
 * In the same process, a small HTTP/1.1 server on 127.0.0.1:$PORT: `POST /run/<workflow id>`
 * with `{ v }` starts the workflow under that id, waits for it, and answers with its result as
 * JSON. Prints "ready <port>" once DBOS is launched and the server listens.
 *
 * Runs from the peer's package cache (bench/peers/flow/npm-cache.ts copies it there), so that
 * "@dbos-inc/dbos-sdk" resolves to the cached package.
 */
import http from "node:http";
import { DBOS } from "@dbos-inc/dbos-sdk";

const STEPS = 3;
/** Largest request body read (the input is a few bytes of JSON). */
const BODY_BYTES_MAX = 64 * 1024;

const port = Number(process.env.PORT);
const databaseUrl = process.env.DBOS_SYSTEM_DATABASE_URL;
const poolSize = Number(process.env.DBOS_POOL_SIZE ?? "10");
if (!Number.isInteger(port) || port <= 0 || databaseUrl === undefined) {
  console.error("PORT and DBOS_SYSTEM_DATABASE_URL must be set");
  process.exit(2);
}

DBOS.setConfig({
  name: "boki-bench-flow",
  systemDatabaseUrl: databaseUrl,
  systemDatabasePoolSize: poolSize,
  logLevel: process.env.DBOS_LOG_LEVEL ?? "warn",
});

const steps = Array.from({ length: STEPS }, (_, i) => {
  const k = i + 1;
  return DBOS.registerStep(async (v) => ({ k, v: v + k }), { name: `step${k}` });
});

const benchFlow = DBOS.registerWorkflow(
  async (input) => {
    const v = Number(input?.v ?? 0);
    let last = null;
    for (const step of steps) last = await step(v);
    return last;
  },
  { name: "benchFlow" },
);

await DBOS.launch();

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const m = /^\/run\/([^/?]+)$/.exec(req.url ?? "");
  if (req.method !== "POST" || m === null) {
    reply(res, 404, { error: "POST /run/<workflow id> only" });
    return;
  }
  const id = decodeURIComponent(m[1]);
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > BODY_BYTES_MAX) {
      reply(res, 413, { error: `body over ${BODY_BYTES_MAX} bytes` });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on("end", () => {
    let input;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (err) {
      reply(res, 400, { error: `body is not JSON: ${err.message}` });
      return;
    }
    DBOS.startWorkflow(benchFlow, { workflowID: id })(input)
      .then((handle) => handle.getResult())
      .then(
        (out) => reply(res, 200, out),
        (err) => reply(res, 500, { error: String(err?.message ?? err) }),
      );
  });
});
server.keepAliveTimeout = 60_000;
server.on("error", (err) => {
  console.error(`http server: ${err.message}`);
  process.exit(1);
});
server.listen(port, "127.0.0.1", () => console.log(`ready ${port}`));

const stop = () => {
  server.close();
  server.closeAllConnections();
  DBOS.shutdown().then(
    () => process.exit(0),
    () => process.exit(1),
  );
  setTimeout(() => process.exit(0), 5000).unref();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
