/* global process, console, setTimeout */
/**
 * The Restate peer's deployment: a Restate workflow `BenchFlow` whose `run` handler takes
 * `{ v }` and runs three durable steps (`ctx.run`), step k returning `{ k, v: v + k }`; the
 * workflow returns the last step's value. Served over HTTP/2 (h2c) on 127.0.0.1:$PORT for
 * restate-server to call; prints "ready <port>" once listening.
 *
 * Runs from the peer's package cache (bench/peers/flow/npm-cache.ts copies it there), so that
 * "@restatedev/restate-sdk" resolves to the cached package.
 */
import http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";

const STEPS = 3;

const benchFlow = restate.workflow({
  name: "BenchFlow",
  handlers: {
    run: async (ctx, input) => {
      const v = Number(input?.v ?? 0);
      let last = null;
      for (let k = 1; k <= STEPS; k++) {
        last = await ctx.run(`step-${k}`, () => ({ k, v: v + k }));
      }
      return last;
    },
  },
});

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error(`PORT must be a port number, got ${process.env.PORT}`);
  process.exit(2);
}
const server = http2.createServer(restate.createEndpointHandler({ services: [benchFlow] }));
server.on("error", (err) => {
  console.error(`deployment server: ${err.message}`);
  process.exit(1);
});
server.listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
const stop = () => {
  server.close();
  setTimeout(() => process.exit(0), 1000).unref();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
