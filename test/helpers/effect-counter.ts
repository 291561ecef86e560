/**
 * A service outside the system under test that counts side effects: `POST /effect?key=K`
 * counts one request for K. Tests check that each step's effect was asked for exactly once
 * (or at least once, and how often more).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface EffectCounter {
  readonly url: string;
  /** Requests per key. */
  readonly counts: Map<string, number>;
  close(): Promise<void>;
}

export async function startEffectCounter(): Promise<EffectCounter> {
  const counts = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const key = url.searchParams.get("key");
    if (req.method !== "POST" || url.pathname !== "/effect" || key === null) {
      res.writeHead(404).end();
      return;
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
