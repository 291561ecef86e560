/** What a benchmark suite is, as the dispatcher in bench/main.ts sees it. */
import type { ResultRow } from "./results.js";

export interface SuiteOptions {
  /** Short windows, one run each; the whole suite within 60 s. */
  readonly quick: boolean;
  /** Whether peer systems may be started (`--no-peers` turns this off). */
  readonly peers: boolean;
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  run(options: SuiteOptions): Promise<ResultRow[]>;
}
