/**
 * What `npm run bench -- apps` needs of one example application (examples/apps/<app>/): where
 * its functions are (the safe variant on the libraries, the unsafe one the same code without
 * their logging), how to load its dataset, its request mix, and how to check its invariants
 * after a run. One module per application in bench/apps/, listed in bench/apps/index.ts.
 */

/** One HTTP request of the application's mix, sent to the gateway. */
export interface AppRequest {
  /** A label for the per-kind figures, e.g. "search", "reserve". */
  readonly kind: string;
  readonly method: "GET" | "POST";
  /** Path on the gateway, e.g. "/invoke/travel-search". */
  readonly path: string;
  /** JSON body (POST). */
  readonly body?: unknown;
}

/** A gateway to talk to: its base URL (`http://127.0.0.1:<port>`). */
export interface AppTarget {
  readonly url: string;
}

export type Variant = "safe" | "unsafe";

export interface InvariantReport {
  readonly ok: boolean;
  /** What was checked and what was found, e.g. { overbooked: 0, halfMade: 0 }. */
  readonly details: Readonly<Record<string, unknown>>;
}

export interface BenchApp {
  /** "travel", "movie", "retwis". */
  readonly name: string;
  readonly description: string;
  /** Absolute paths of the functions folders `boki dev --functions` / `cluster up` load. */
  readonly functions: Readonly<Record<Variant, string>>;
  /** Loads the dataset through the gateway (idempotent for one fresh data directory). */
  seed(target: AppTarget, variant: Variant): Promise<void>;
  /** The next request of the mix; `random` is seeded, so runs are repeatable. */
  nextRequest(random: () => number, variant: Variant): AppRequest;
  /** Checks the application's invariants after a run (waits, bounded, for async work). */
  check(target: AppTarget, variant: Variant): Promise<InvariantReport>;
}

/** Longest wait for one gateway request of a seed or a check, ms. */
export const APP_REQUEST_TIMEOUT_MS = 120_000;

/** Calls function `fn` through the gateway with a JSON body; its output, or an error naming the status. */
export async function postFunction(target: AppTarget, fn: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${target.url}/function/${fn}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(APP_REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${fn}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as unknown;
}
