/**
 * Workflow clients of a simulated cluster: they run `boki-ts/flow` executions over engines'
 * LogBooks, as a workflow function does, through crashes, restarts, partitions and
 * reconfigurations. A client starts instances of a 3-step workflow; an execution whose
 * engine crashes is abandoned (as a killed process's would be) and the instance is run
 * again elsewhere, sometimes while an earlier execution still runs (a race). Each step's
 * effect is counted here, outside the log, keyed by the step's key.
 *
 * At the end every instance is run until it has ended, and the same exactly-once check as
 * the kill -9 test applies: every instance succeeded with the output a lone execution
 * gives; its stream holds one start, its three steps in order and one end; and the effects
 * asked for are exactly its three step keys.
 */
import { EngineLogBook } from "../engine/logbook.js";
import { Execution, type ExecutionDefinition, type ExecutionEnv } from "../flow/execution.js";
import type { FlowOutcome } from "../flow/protocol.js";
import { decodeFlowRecord, stepsTag } from "../flow/records.js";
import type { LogBook } from "../index.js";
import { flaws } from "../log/flaws.js";
import { parseBookId, type MetalogPosition } from "../log/types.js";
import type { Checker } from "./checker.js";
import type { SimCluster, SimNode } from "./cluster.js";
import type { SimRandom } from "./random.js";
import type { Trace } from "./trace.js";

/** The book workflow instances live in (apart from the books the log checks read whole). */
export const FLOW_BOOK = 6;
export const FLOW_STEPS = 3;
/** Executions of one instance a client runs at most before it gives up (a liveness failure). */
const EXECUTIONS_PER_INSTANCE_MAX = 40;
/** An execution's time limit, simulated ms. */
const EXECUTION_TIMEOUT_MS = 20_000;

const silent = { debug() {}, info() {}, warn() {}, error() {} };

function expectedOutput(input: number): number {
  let acc = input;
  for (let i = 0; i < FLOW_STEPS; i++) acc = acc * 3 + i;
  return acc;
}

export interface FlowWorkloadOptions {
  readonly clients: number;
  /** Mean pause between a client's instances, ms. */
  readonly thinkMs: number;
}

interface Instance {
  readonly id: string;
  readonly input: number;
  outcome: FlowOutcome | undefined;
  executions: number;
}

export class FlowWorkload {
  readonly instances: Instance[] = [];
  /** Effects asked for, by step key. */
  readonly effects = new Map<string, number>();
  private stopping = false;
  private running = 0;
  /** Executions that may still be running (abandoned or racing), so the end waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SimRandom,
    private readonly checker: Checker,
    private readonly trace: Trace,
    private readonly o: FlowWorkloadOptions,
  ) {}

  private readonly def: ExecutionDefinition = {
    name: "sim-flow",
    timeoutMs: EXECUTION_TIMEOUT_MS,
    retentionMs: 24 * 3600_000,
    handler: async (wf, input) => {
      let acc = input as number;
      for (let i = 0; i < FLOW_STEPS; i++) {
        acc = await wf.step(`s${i}`, async (s) => {
          // The effect is asked for, then (after a pause in which a crash may come) logged.
          this.effects.set(s.key, (this.effects.get(s.key) ?? 0) + 1);
          await this.sleep(this.random.int(31));
          return acc * 3 + i;
        });
      }
      return acc;
    },
  };

  start(): void {
    for (let c = 0; c < this.o.clients; c++) {
      this.running++;
      void this.loop(c).finally(() => this.running--);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    while (this.running > 0) await this.sleep(10);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.cluster.scheduler.setTimer(ms, resolve));
  }

  private liveEngine(): SimNode | null {
    const live = this.cluster.engineNodes().filter((n) => n.up && n.ready && n.engine !== null);
    return live.length === 0 ? null : this.random.pick(live);
  }

  /**
   * A LogBook on `node` whose operations fail, as a killed process's would, once the node
   * crashes or restarts (the engine's own answer would never come).
   */
  private crashAware(node: SimNode, book: LogBook): LogBook {
    const incarnation = node.incarnation;
    const guard = <T>(op: () => Promise<T>): Promise<T> => {
      const result = op();
      return new Promise<T>((resolve, reject) => {
        let done = false;
        void result.then(
          (v) => {
            done = true;
            resolve(v);
          },
          (err: unknown) => {
            done = true;
            reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
        const check = (): void => {
          if (done) return;
          if (!node.up || node.incarnation !== incarnation) {
            reject(Object.assign(new Error(`${node.id} went down`), { code: "LOG_CLOSED" }));
            return;
          }
          this.cluster.scheduler.setTimer(50, check);
        };
        this.cluster.scheduler.setTimer(50, check);
      });
    };
    return {
      get book() {
        return book.book;
      },
      get position() {
        return book.position;
      },
      append: (t, d) => guard(() => book.append(t, d)),
      readNext: (t, s) => guard(() => book.readNext(t, s)),
      readNextBlocking: (t, s, ms) => guard(() => book.readNextBlocking(t, s, ms)),
      readPrev: (t, s) => guard(() => book.readPrev(t, s)),
      checkTail: (t) => guard(() => book.checkTail(t)),
      setAuxData: (s, d) => guard(() => book.setAuxData(s, d)),
      trim: (t, s) => guard(() => book.trim(t, s)),
      condAppend: (t, d, ct, cp) =>
        guard(() =>
          flaws.flowWithoutConditions ? book.append(t, d) : book.condAppend(t, d, ct, cp),
        ),
    };
  }

  /** One execution of `inst` on a live engine; undefined when none is up or it was cut off. */
  private async execute(inst: Instance): Promise<FlowOutcome | undefined> {
    const node = this.liveEngine();
    if (node === null) return undefined;
    inst.executions++;
    const book = this.crashAware(
      node,
      new EngineLogBook(node.engine!, parseBookId(FLOW_BOOK), 0 as MetalogPosition),
    );
    const now = this.cluster.scheduler.now();
    const env: ExecutionEnv = {
      log: book,
      book: FLOW_BOOK,
      logger: silent,
      deadline: now + EXECUTION_TIMEOUT_MS,
      signal: new AbortController().signal,
      now: () => this.cluster.scheduler.now(),
      sleep: (ms) => this.sleep(ms),
      invoke: () => Promise.reject(new Error("no calls in the simulation")),
      invokeAsync: () => Promise.reject(new Error("no calls in the simulation")),
      isWorkflow: () => false,
    };
    this.trace.add("flow", `${inst.id}: execution ${inst.executions} on ${node.id}`);
    const run = new Execution(this.def, inst.id, env).run({
      $flow: "start",
      id: inst.id,
      input: inst.input,
    });
    this.inFlight.add(run);
    try {
      const out = await run;
      this.trace.add("flow", `${inst.id}: execution on ${node.id} ended ${out.status}`);
      if (out.status !== "running") inst.outcome = out;
      return out;
    } catch (err) {
      this.trace.add(
        "flow",
        `${inst.id}: execution on ${node.id} stopped: ${(err as Error).message}`,
      );
      return undefined;
    } finally {
      this.inFlight.delete(run);
    }
  }

  private async loop(c: number): Promise<void> {
    for (let n = 0; !this.stopping; n++) {
      await this.sleep(this.random.exponential(this.o.thinkMs));
      if (this.stopping) return;
      const inst: Instance = {
        id: `wf-${c}-${n}`,
        input: this.random.int(1001),
        outcome: undefined,
        executions: 0,
      };
      this.instances.push(inst);
      // Sometimes a second execution races the first (a duplicate request, a recovery).
      const racing = this.random.float() < 0.25;
      const first = this.execute(inst);
      if (racing) {
        await this.sleep(this.random.int(41));
        void this.execute(inst);
      }
      await first;
    }
  }

  /** After the faults: runs every instance until it has ended, then checks exactly-once. */
  async finish(): Promise<void> {
    for (const inst of this.instances) {
      while (inst.outcome === undefined && inst.executions < EXECUTIONS_PER_INSTANCE_MAX) {
        const out = await this.execute(inst);
        if (out === undefined) await this.sleep(200);
      }
    }
    while (this.inFlight.size > 0) await Promise.race([...this.inFlight, this.sleep(1000)]);
    const engine = this.liveEngine();
    for (const inst of this.instances) {
      const who = `flow ${inst.id}`;
      if (inst.outcome === undefined) {
        this.checker.fail(
          "every workflow instance completes",
          `${who}: not ended after ${inst.executions} executions`,
        );
        continue;
      }
      if (
        inst.outcome.status !== "succeeded" ||
        inst.outcome.output !== expectedOutput(inst.input)
      ) {
        this.checker.fail(
          "a workflow's outcome is a lone execution's",
          `${who}: ${JSON.stringify(inst.outcome)}`,
        );
      }
      const keys = [...this.effects.keys()].filter((k) => k.startsWith(`${inst.id}:`)).sort();
      const expected = Array.from({ length: FLOW_STEPS }, (_, k) => `${inst.id}:${k + 1}`);
      if (JSON.stringify(keys) !== JSON.stringify(expected)) {
        this.checker.fail(
          "each step's effect is asked for under its own key only",
          `${who}: ${keys.join(", ")}`,
        );
      }
      if (engine !== null) {
        const kinds = await this.streamKinds(engine, inst.id);
        const want = ["start", ...expected.map(() => "step"), "end"];
        if (kinds !== undefined && JSON.stringify(kinds) !== JSON.stringify(want)) {
          this.checker.fail(
            "an instance's stream holds each operation once",
            `${who}: ${kinds.join(", ")}`,
          );
        }
      }
    }
    const repeated = [...this.effects.values()].reduce((a, b) => a + b - 1, 0);
    this.trace.add(
      "flow",
      `${this.instances.length} instances checked; ${repeated} effects asked for again after a crash or a race`,
    );
  }

  private async streamKinds(node: SimNode, id: string): Promise<string[] | undefined> {
    const book = this.crashAware(
      node,
      new EngineLogBook(node.engine!, parseBookId(FLOW_BOOK), 0 as MetalogPosition),
    );
    const kinds: string[] = [];
    try {
      for (
        let r = await book.readNext(stepsTag(id), 0);
        r !== null;
        r = await book.readNext(stepsTag(id), r.seqnum + 1)
      ) {
        kinds.push(decodeFlowRecord(r).rec.k);
      }
    } catch {
      return undefined;
    }
    return kinds;
  }
}
