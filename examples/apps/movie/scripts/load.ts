/**
 * A light closed-loop load against a running `boki dev` of this app: seeds 100 users and 100
 * titles, then `clients` clients each compose reviews back to back (256-character texts) for
 * `seconds`, and prints the latency percentiles and the log operations per review (from the
 * gateway's `/metrics`, so only this load should run against it).
 *
 *   npx tsx scripts/load.ts http://127.0.0.1:8080 [clients=2] [seconds=10]
 */
const [url = "http://127.0.0.1:8080", clientsArg = "2", secondsArg = "10"] = process.argv.slice(2);
const CLIENTS = Number(clientsArg);
const SECONDS = Number(secondsArg);
const USERS = 100;
const MOVIES = 100;
/** Longest wait for one request, ms. */
const REQUEST_TIMEOUT_MS = 30_000;

async function post(fn: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${url}/function/${fn}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${fn}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

async function logOps(): Promise<{ appends: number; reads: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
    return m === null ? 0 : Number(m[1]);
  };
  return { appends: value("boki_log_appends_total"), reads: value("boki_log_reads_total") };
}

const run = Math.random().toString(36).slice(2, 8);
await post("movie-seed", {
  users: Array.from({ length: USERS }, (_, i) => ({ username: `u${i}`, userId: `${i + 1}` })),
  movies: Array.from({ length: MOVIES }, (_, i) => ({ title: `t${i}`, movieId: `m${i + 1}` })),
});
const before = await logOps();
const latencies: number[] = [];
let n = 0;
const until = Date.now() + SECONDS * 1000;
await Promise.all(
  Array.from({ length: CLIENTS }, async () => {
    while (Date.now() < until) {
      const k = n++;
      const t0 = performance.now();
      await post("movie-compose", {
        reqId: `${run}-${k}`,
        username: `u${k % USERS}`,
        title: `t${(k * 7) % MOVIES}`,
        rating: k % 11,
        text: `review ${k} `.padEnd(256, "abcdefghij"),
      });
      latencies.push(performance.now() - t0);
    }
  }),
);
const after = await logOps();
latencies.sort((a, b) => a - b);
const pct = (p: number): string =>
  (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(1);
const count = latencies.length;
console.log(
  JSON.stringify({
    clients: CLIENTS,
    reviews: count,
    perSecond: +(count / SECONDS).toFixed(1),
    p50: +pct(0.5),
    p90: +pct(0.9),
    p99: +pct(0.99),
    appendsPerReview: +((after.appends - before.appends) / count).toFixed(1),
    readsPerReview: +((after.reads - before.reads) / count).toFixed(1),
  }),
);
