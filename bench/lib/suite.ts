/** What a benchmark suite is, as the dispatcher in bench/main.ts sees it. */
import type { ResultRow } from "./results.js";

export interface SuiteOptions {
  /** Short windows, one run each; the whole suite within 60 s. */
  readonly quick: boolean;
  /** Whether peer systems may be started (`--no-peers` turns this off). */
  readonly peers: boolean;
  /** `--cluster`: measure the local multi-process cluster instead of the embedded system. */
  readonly cluster: boolean;
}

/** Something a suite did not measure (a peer, or one of its modes, "*" for all), and why. */
export interface Skipped {
  readonly system: string;
  readonly mode: string;
  readonly reason: string;
}

/** A suite's rows plus what it skipped and any other top-level fields for the results file. */
export interface SuiteOutput {
  readonly rows: ResultRow[];
  /** Written to the results file as `skipped` and printed under the table. */
  readonly skipped?: readonly Skipped[];
  /** Extra top-level fields for the results file (e.g. peer versions). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** Lines printed under the table (and written to the results file as `notes`). */
  readonly notes?: readonly string[];
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  /** Whether the suite has a `--cluster` mode. */
  readonly hasClusterMode?: boolean;
  run(options: SuiteOptions): Promise<ResultRow[] | SuiteOutput>;
}
