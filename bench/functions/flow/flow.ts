/**
 * Functions the `flow` benchmark calls through the gateway of `boki dev`: the same three
 * computations (step k of input `{ v }` returns `{ k, v: v + k }`; the result is the last
 * step's value) as a durable workflow and as two plain baselines without any logging.
 *
 *  - bench-flow3 (workflow): three `wf.step` calls, each result a logged record, as are the
 *    instance's start and end.
 *  - bench-plain3-inline: a plain function doing the three computations in its handler.
 *  - bench-plain3-invoke: a plain function calling bench-flow-step three times with
 *    `ctx.invoke` (one invocation per step, as the workflow has one logged step each).
 */
import { defineFunction } from "boki-ts";
import { defineWorkflow, type WorkflowContext } from "boki-ts/flow";

/** Steps of each workflow (and computations of each baseline). */
export const STEPS = 3;

interface Input {
  readonly v: number;
}

interface StepValue {
  readonly k: number;
  readonly v: number;
}

function inputValue(input: Input | null): number {
  const v = input?.v;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new Error(`the input must be { "v": <number> }, got ${JSON.stringify(input)}`);
  }
  return v;
}

function compute(v: number, k: number): StepValue {
  return { k, v: v + k };
}

/** The workflow's handler: three logged steps, the last one's value as the output. */
async function threeSteps(wf: WorkflowContext, input: Input | null): Promise<StepValue> {
  const v = inputValue(input);
  let last: StepValue | undefined;
  for (let k = 1; k <= STEPS; k++) last = await wf.step(`step-${k}`, () => compute(v, k));
  return last!;
}

export const flow3 = defineWorkflow({ name: "bench-flow3", handler: threeSteps });

/**
 * The same workflow with instances trimmed a second after they end (the default retention is
 * a day), for the flow-boki probe's `--path`: it shows what the recovery task's scan of the
 * instances kept in the log costs the workflows beside it. The suite does not call it.
 */
export const flow3ShortRetention = defineWorkflow({
  name: "bench-flow3-short-retention",
  retentionMs: 1000,
  handler: threeSteps,
});

export const plain3Inline = defineFunction({
  name: "bench-plain3-inline",
  handler(_ctx, input: Input | null) {
    const v = inputValue(input);
    let last: StepValue | undefined;
    for (let k = 1; k <= STEPS; k++) last = compute(v, k);
    return last!;
  },
});

/** One step as a function of its own: `{ k, v }` in, `{ k, v: v + k }` out. */
export const flowStep = defineFunction({
  name: "bench-flow-step",
  handler(_ctx, input: StepValue | null) {
    const k = input?.k;
    if (typeof k !== "number" || !Number.isInteger(k)) {
      throw new Error(`the input must be { "k": <integer>, "v": <number> }`);
    }
    return compute(inputValue(input), k);
  },
});

export const plain3Invoke = defineFunction({
  name: "bench-plain3-invoke",
  async handler(ctx, input: Input | null) {
    const v = inputValue(input);
    let last: StepValue | undefined;
    for (let k = 1; k <= STEPS; k++) {
      last = await ctx.invoke<StepValue>("bench-flow-step", { k, v });
    }
    return last!;
  },
});
