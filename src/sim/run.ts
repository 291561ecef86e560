/**
 * One simulated run: a seed, a cluster, clients and faults; then the final checks. The run
 * has three phases in simulated time: faults (`faultMs`), a quiet phase after every fault
 * has ended (`quietMs`) in which clients go on, and the end, in which clients stop, every
 * engine must serve an append within `SIM_LIVENESS_MS`, and every engine's reading of the
 * whole log is compared with what clients were told.
 */
import { EngineLogBook } from "../engine/logbook.js";
import { BokiError } from "../log/errors.js";
import { flaws, type FlawName } from "../log/flaws.js";
import { parseBookId, type MetalogPosition } from "../log/types.js";
import { Checker, type Violation } from "./checker.js";
import { SimScheduler } from "./clock.js";
import { SimCluster, SIM_TOPOLOGY, type SimNode, type SimTopology } from "./cluster.js";
import { ALL_FAULTS, FaultInjector, type FaultOptions } from "./faults.js";
import { SimNetwork } from "./network.js";
import { checkSeed, SimRandom } from "./random.js";
import { Trace } from "./trace.js";
import { COND_TAG, SIM_BOOKS, TRIM_BOOK, Workload, type AppendRecord } from "./workload.js";
import { FlowWorkload } from "./flow-workload.js";

/**
 * After the quiet phase (which follows the end of the faults), every engine must serve an
 * append within this, ms.
 */
export const SIM_LIVENESS_MS = 5_000;
/** Time for the nodes to start and the first view to be published before clients begin. */
export const SIM_STARTUP_MS = 1_000;
/** Mean pause between a workflow client's instances, ms (simulated). */
export const FLOW_THINK_MS = 200;
/** Longest the final reads of one engine may take, ms (simulated). */
export const SIM_FINAL_READ_MS = 60_000;

export interface RunOptions {
  readonly seed: number;
  readonly faultMs: number;
  readonly quietMs: number;
  readonly sessions: number;
  readonly thinkMs: number;
  /** Workflow clients (boki-ts/flow executions over the engines), beside the sessions. */
  readonly flowClients: number;
  readonly faults: FaultOptions;
  readonly topology: SimTopology;
  /** A protocol flaw to switch on for this run (to show the checks catch it). */
  readonly flaw?: FlawName;
  /** Receives every trace line as it is written. */
  readonly echo?: (line: string) => void;
}

export const RUN_DEFAULTS: Omit<RunOptions, "seed"> = {
  faultMs: 20_000,
  quietMs: 10_000,
  sessions: 8,
  thinkMs: 10,
  flowClients: 3,
  faults: ALL_FAULTS,
  topology: SIM_TOPOLOGY,
};

export interface RunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly Violation[];
  /** Simulated time the run covered, ms. */
  readonly simMs: number;
  readonly events: number;
  /** Hash of the whole trace: equal for two runs of one seed. */
  readonly fingerprint: string;
  readonly trace: readonly string[];
  readonly stats: {
    readonly appendsAcked: number;
    readonly appendsUnknown: number;
    readonly ops: number;
    readonly opsFailed: number;
    readonly terms: number;
    readonly entries: number;
    readonly faults: FaultInjector["counts"];
    readonly messages: SimNetwork["stats"];
  };
}

export async function runSimulation(
  options: Partial<RunOptions> & { seed: number },
): Promise<RunResult> {
  const o: RunOptions = { ...RUN_DEFAULTS, ...options };
  checkSeed(o.seed);
  const scheduler = new SimScheduler();
  const random = new SimRandom(o.seed);
  const trace = new Trace(() => scheduler.now());
  if (o.echo !== undefined) trace.echo = o.echo;
  let cluster: SimCluster | null = null;
  const checker = new Checker(
    () => cluster,
    trace,
    () => scheduler.now(),
  );
  const network = new SimNetwork(scheduler, random, { sent: (f, t, m) => checker.sent(f, t, m) });
  cluster = new SimCluster(scheduler, random, network, trace, o.topology);
  const c = cluster;
  const workload = new Workload(c, random, checker, trace, {
    sessions: o.sessions,
    thinkMs: o.thinkMs,
  });
  const flows = new FlowWorkload(c, random, checker, trace, {
    clients: o.flowClients,
    thinkMs: FLOW_THINK_MS,
  });
  const faults = new FaultInjector(c, random, trace, o.faults);
  const unhandled = (err: unknown): void =>
    checker.fail("no unhandled rejection", describeError(err));
  process.on("unhandledRejection", unhandled);
  if (o.flaw !== undefined) flaws[o.flaw] = true;
  try {
    trace.add("sim", `seed ${o.seed}`, {
      faultMs: o.faultMs,
      quietMs: o.quietMs,
      flaw: o.flaw ?? null,
    });
    await c.start();
    await scheduler.run(SIM_STARTUP_MS);
    workload.start();
    flows.start();
    faults.start();
    await scheduler.run(SIM_STARTUP_MS + o.faultMs, () => !checker.ok);
    faults.stop();
    if (checker.ok) await scheduler.run(scheduler.now() + o.quietMs, () => !checker.ok);
    await until(scheduler, workload.stop(), 120_000, "clients stop", checker);
    await until(scheduler, flows.stop(), 120_000, "workflow clients stop", checker);
    if (checker.ok) await liveness(c, workload, checker, scheduler);
    if (checker.ok) await finalChecks(c, workload, checker, scheduler);
    if (checker.ok)
      await until(scheduler, flows.finish(), 600_000, "every workflow instance ends", checker);
  } catch (err) {
    checker.fail("the run completes", describeError(err));
  } finally {
    if (o.flaw !== undefined) flaws[o.flaw] = false;
    trace.echo = null;
    const disposed = c.dispose().catch(() => undefined);
    let done = false;
    void disposed.then(() => (done = true));
    await scheduler.run(scheduler.now() + 10_000, () => done).catch(() => undefined);
    process.off("unhandledRejection", unhandled);
  }
  const acked = workload.appends.filter((a) => a.outcome === "ok").length;
  trace.add("sim", checker.ok ? "PASS" : `FAIL (${checker.violations.length} violations)`, {
    acked,
    events: scheduler.executed,
  });
  return {
    seed: o.seed,
    ok: checker.ok,
    violations: checker.violations,
    simMs: scheduler.now(),
    events: scheduler.executed,
    fingerprint: trace.fingerprint(),
    trace: trace.lines,
    stats: {
      appendsAcked: acked,
      appendsUnknown: workload.appends.filter((a) => a.outcome === "unknown").length,
      ops: workload.ops,
      opsFailed: workload.opsFailed,
      terms: c.view.term,
      entries: checker.entriesSeen,
      faults: faults.counts,
      messages: network.stats,
    },
  };
}

/**
 * An error with its stack, paths relative to the working directory, so that the trace (and
 * its fingerprint) is the same in every checkout.
 */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return `${err.message}\n${err.stack ?? ""}`.replaceAll(`${process.cwd()}/`, "");
}

/** Runs simulated time until `p` settles; a violation if it takes more than `maxMs`. */
async function until<T>(
  scheduler: SimScheduler,
  p: Promise<T>,
  maxMs: number,
  what: string,
  checker: Checker,
): Promise<T | undefined> {
  let done = false;
  let value: T | undefined;
  let error: unknown = null;
  p.then(
    (v) => {
      done = true;
      value = v;
    },
    (e: unknown) => {
      done = true;
      error = e;
    },
  );
  await scheduler.run(scheduler.now() + maxMs, () => done);
  if (!done) {
    checker.fail("liveness", `${what}: not within ${maxMs} ms of simulated time`);
    return undefined;
  }
  if (error !== null) {
    const message = error instanceof Error ? error.message : JSON.stringify(error);
    checker.fail("operations succeed once faults end", `${what}: ${message}`);
    return undefined;
  }
  return value;
}

/** Every engine of the latest view serves an append to every book, within `SIM_LIVENESS_MS`. */
async function liveness(
  c: SimCluster,
  w: Workload,
  checker: Checker,
  scheduler: SimScheduler,
): Promise<void> {
  const started = scheduler.now();
  let attempt = 0;
  const probe = async (): Promise<void> => {
    for (;;) {
      const engines = c.view.config.engines.map((id) => c.nodes.get(id)!);
      const ready = engines.filter((n) => n.up && n.ready && n.engine !== null);
      if (ready.length === engines.length) {
        const results = await Promise.allSettled(
          ready.flatMap((n) => SIM_BOOKS.map((b) => probeAppend(c, w, n, b, attempt))),
        );
        if (results.every((r) => r.status === "fulfilled")) return;
        attempt++;
      }
      await new Promise<void>((r) => scheduler.setTimer(100, r));
    }
  };
  await until(
    scheduler,
    probe(),
    SIM_LIVENESS_MS,
    "every engine serves appends after the faults end",
    checker,
  );
  c.trace.add(
    "sim",
    `liveness: every engine served appends ${(scheduler.now() - started).toFixed(0)} ms after the quiet phase`,
  );
}

/** An append through engine `n`, recorded with the clients' appends for the final checks. */
async function probeAppend(
  c: SimCluster,
  w: Workload,
  n: SimNode,
  book: number,
  attempt: number,
): Promise<number> {
  const a: AppendRecord = {
    session: -1,
    book,
    data: `probe:${n.id}:${book}:${attempt}`,
    tags: [],
    outcome: "unknown",
    seqnum: null,
  };
  w.appends.push(a);
  try {
    a.seqnum = await new EngineLogBook(n.engine!, parseBookId(book)).append([], a.data);
    a.outcome = "ok";
    return a.seqnum;
  } catch (err) {
    if (err instanceof BokiError && err.code === "APPEND_DISCARDED") a.outcome = "failed";
    c.trace.add("sim", `probe ${a.data} failed`, { err });
    throw err;
  }
}

/** Reads tag `tag` of `book` on `n` from the start, as of `position`. */
async function readAll(
  n: SimNode,
  book: number,
  tag: number,
  position: number,
): Promise<Array<[number, string]>> {
  const b = new EngineLogBook(n.engine!, parseBookId(book), position as MetalogPosition);
  const out: Array<[number, string]> = [];
  let next = 0;
  for (;;) {
    const r = await b.readNext(tag, next);
    if (r === null) return out;
    out.push([r.seqnum, new TextDecoder().decode(r.data)]);
    next = r.seqnum + 1;
  }
}

async function finalChecks(
  c: SimCluster,
  w: Workload,
  checker: Checker,
  scheduler: SimScheduler,
): Promise<void> {
  const engines = c.view.config.engines.map((id) => c.nodes.get(id)!);
  const byData = new Map<string, AppendRecord>();
  for (const a of w.appends) byData.set(a.data, a);
  for (const book of [...SIM_BOOKS, TRIM_BOOK]) {
    const position = Math.max(
      w.positions.get(book) ?? 0,
      ...engines.map((n) => n.engine!.positionOf(parseBookId(book))),
    );
    const reads: Array<Array<[number, string]>> = [];
    for (const n of engines) {
      const r = await until(
        scheduler,
        readAll(n, book, 0, position),
        SIM_FINAL_READ_MS,
        `reading book ${book} on ${n.id}`,
        checker,
      );
      if (r === undefined) return;
      reads.push(r);
    }
    const first = reads[0]!;
    reads.forEach((r, i) => {
      if (JSON.stringify(r) !== JSON.stringify(first))
        checker.fail(
          "every engine reads the same log",
          `book ${book}: ${engines[i]!.id} reads ${r.length} records, ${engines[0]!.id} ${first.length}; first difference at index ${r.findIndex((x, k) => first[k]?.[0] !== x[0] || first[k]?.[1] !== x[1])}`,
        );
    });
    const at = new Map<string, number>();
    let prev = -1;
    for (const [seqnum, data] of first) {
      if (seqnum <= prev)
        checker.fail(
          "sequence numbers are unique and ordered",
          `book ${book}: ${seqnum} after ${prev}`,
        );
      prev = seqnum;
      if (at.has(data))
        checker.fail(
          "a record appears once",
          `book ${book}: "${data}" at ${at.get(data)} and ${seqnum}`,
        );
      at.set(data, seqnum);
      checker.record(book, seqnum, data, "final read");
      const a = byData.get(data);
      if (a === undefined || a.book !== book)
        checker.fail(
          "no record from nowhere",
          `book ${book}: "${data}" at ${seqnum} was never appended to it`,
        );
      else if (a.outcome === "failed")
        checker.fail("a failed append is never visible", `book ${book}: "${data}" at ${seqnum}`);
    }
    if (book === TRIM_BOOK) {
      // Everything below an acknowledged trim of the whole book is gone for good.
      for (const [seqnum, data] of first) {
        if (seqnum < w.trimAcked)
          checker.fail(
            "trimmed records never come back",
            `book ${book}: "${data}" at ${seqnum}, below a trim at ${w.trimAcked}`,
          );
      }
    }
    for (const a of w.appends) {
      if (a.book !== book || a.outcome !== "ok") continue;
      // A trim may have hidden it.
      if (book === TRIM_BOOK && a.seqnum! < w.trimIssued) continue;
      const s = at.get(a.data);
      if (s !== a.seqnum)
        checker.fail(
          "acknowledged appends are readable at their sequence number",
          `book ${book}: "${a.data}" acknowledged at ${a.seqnum}, read at ${s ?? "nowhere"}`,
        );
    }
    // Conditional appends: the k-th record of the counter tag asked for position k.
    const cond = await until(
      scheduler,
      readAll(engines[0]!, book, COND_TAG, position),
      SIM_FINAL_READ_MS,
      `reading the counter tag of book ${book}`,
      checker,
    );
    if (cond === undefined) return;
    cond.forEach(([seqnum, data], k) => {
      const a = byData.get(data);
      if (a?.condPosition !== k)
        checker.fail(
          "a conditional append wins only at its position",
          `book ${book}: record ${k} of the counter tag (seqnum ${seqnum}, "${data}") asked for position ${a?.condPosition ?? "none"}`,
        );
    });
    const winners = new Map<number, string>();
    for (const a of w.appends) {
      if (a.book !== book || a.condPosition === undefined || a.outcome !== "ok") continue;
      const other = winners.get(a.condPosition);
      if (other !== undefined)
        checker.fail(
          "a conditional append wins once per position",
          `book ${book}: "${other}" and "${a.data}" both won position ${a.condPosition}`,
        );
      winners.set(a.condPosition, a.data);
    }
  }
  if (checker.ok) c.trace.add("checker", "final checks passed");
}
