/**
 * What the flow suite sees of a workflow peer (Restate, DBOS), and the parts the peers share:
 * the workload's expected result, fresh workflow ids, and the HTTP client (an undici Pool of
 * keep-alive connections, as the invoke suite uses).
 *
 * The workload: a workflow of 3 durable steps; step k returns `{ k, v: input.v + k }`; the
 * workflow returns the last step's value. The input is `{ v: seq }`.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { Pool } from "undici";

export interface WorkflowPeer {
  /** "restate" | "dbos" */
  readonly system: string;
  /** e.g. "single-node, fsync" / "postgres-15, sync commit" */
  readonly mode: string;
  readonly version: string;
  /** What a step's result and the workflow's completion are on (disk, fsync) when acknowledged. */
  readonly durability: string;
  readonly notes: readonly string[];
  /** Runs one 3-step workflow with a fresh id; resolves with its output once done. */
  runWorkflow(worker: number, seq: number): Promise<unknown>;
  stop(): Promise<void>;
}

export const STEPS = 3;

export interface StepValue {
  readonly k: number;
  readonly v: number;
}

/** The workflow's result for input `{ v }`: the last step's value. */
export function expectedOutput(v: number): StepValue {
  return { k: STEPS, v: v + STEPS };
}

/**
 * Workflow ids unique across peers' runs (a random run tag) and within one (a counter), so a
 * caller that repeats (worker, seq) still starts a new workflow rather than meeting a finished
 * one.
 */
export function workflowIds(prefix: string): (worker: number, seq: number) => string {
  const tag = randomBytes(6).toString("hex");
  let n = 0;
  return (worker, seq) => `${prefix}-${tag}-${worker}-${seq}-${n++}`;
}

/** Longest one workflow request may take before it fails. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Keep-alive connections to a peer's front at most (one per request in flight). */
export const CONNECTIONS_MAX = 256;
/** Bytes of a failed response's body quoted in the error. */
const ERROR_BODY_CHARS_MAX = 300;

/** A keep-alive client for one peer's HTTP front. */
export class PeerClient {
  private readonly pool: Pool;

  constructor(readonly origin: string) {
    this.pool = new Pool(origin, { connections: CONNECTIONS_MAX, pipelining: 1 });
  }

  /** POSTs a JSON body; resolves with the parsed JSON answer of a 200, else rejects. */
  async postJson(path: string, body: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<unknown> {
    const r = await this.pool.request({
      path,
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await r.body.text();
    if (r.statusCode !== 200) {
      throw new Error(
        `HTTP ${r.statusCode} from ${this.origin}${path}: ${text.slice(0, ERROR_BODY_CHARS_MAX)}`,
      );
    }
    return JSON.parse(text) as unknown;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Throws unless `out` is the workflow's result for input `{ v }`. */
export function checkOutput(system: string, id: string, v: number, out: unknown): StepValue {
  const want = expectedOutput(v);
  const o = out as Partial<StepValue> | null;
  if (o === null || typeof o !== "object" || o.k !== want.k || o.v !== want.v) {
    throw new Error(
      `${system}: workflow ${id} returned ${JSON.stringify(out)}, expected ${JSON.stringify(want)}`,
    );
  }
  return want;
}

const exitDirs = new Set<string>();
let exitHooked = false;

/**
 * Removes `dir` when the process exits, if it is still there (an interrupted run). Call it
 * after the first peer process has started, so that proc.ts's exit hook (which SIGKILLs the
 * children) runs first. Returns a function that forgets the dir (after a normal removal).
 */
export function removeOnExit(dir: string): () => void {
  exitDirs.add(dir);
  if (!exitHooked) {
    exitHooked = true;
    process.once("exit", () => {
      for (const d of exitDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return () => exitDirs.delete(dir);
}
