/**
 * What happened in a run, as readable lines stamped with simulated time: the simulator's own
 * events (faults, client operations that failed, checks) and what the roles log at info and
 * above. The trace's fingerprint (a hash of every line) shows that two runs of a seed were
 * the same.
 */
import { createHash } from "node:crypto";
import type { Logger } from "../util/logger.js";

/** Lines a trace keeps; later lines still count in the fingerprint. */
export const TRACE_LINES_MAX = 200_000;

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === "bigint") return x.toString();
    if (x instanceof Error) return x.message;
    if (x instanceof Uint8Array) return `<${x.length} bytes>`;
    return x;
  });
}

export class Trace {
  readonly lines: string[] = [];
  private readonly hash = createHash("sha256");
  private count = 0;
  /** Echo every line to this sink as it is written (the CLI prints a seed's trace live). */
  echo: ((line: string) => void) | null = null;

  constructor(private readonly now: () => number) {}

  add(who: string, what: string, details?: object): void {
    const t = (this.now() / 1000).toFixed(4).padStart(9);
    const line = `${t}s ${who.padEnd(12)} ${what}${details === undefined ? "" : ` ${show(details)}`}`;
    this.hash.update(line).update("\n");
    this.count++;
    if (this.lines.length < TRACE_LINES_MAX) this.lines.push(line);
    this.echo?.(line);
  }

  get size(): number {
    return this.count;
  }

  /** Hash of every line so far (finishes the trace: call once, at the end). */
  fingerprint(): string {
    return this.hash.digest("hex").slice(0, 16);
  }

  /**
   * A logger for node `who`: info and above go into the trace, while `alive()` holds (a
   * crashed node's leftover continuations log nothing).
   */
  logger(
    who: string,
    bindings: Record<string, unknown> = {},
    alive: () => boolean = () => true,
  ): Logger {
    const line =
      (level: string) =>
      (obj: object, msg?: string): void => {
        if (!alive()) return;
        const details = { ...bindings, ...obj };
        this.add(
          who,
          `${level} ${msg ?? ""}`.trimEnd(),
          Object.keys(details).length > 0 ? details : undefined,
        );
      };
    return {
      debug: () => {},
      info: line("info"),
      warn: line("warn"),
      error: line("error"),
      child: (b) => this.logger(who, { ...bindings, ...b }, alive),
    };
  }
}
