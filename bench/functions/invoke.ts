/** Functions the `invoke` benchmark calls. */
import { defineFunction, tagOf } from "boki-ts";

const BENCH_TAG = tagOf("bench:invoke");

/** Returns its input. */
export const echo = defineFunction({
  name: "bench-echo",
  handler: (_ctx, input) => input,
});

/** Appends its input (a string) as one record and reads that record back; returns its size. */
export const appendRead = defineFunction({
  name: "bench-append-read",
  handler: async (ctx, input: string) => {
    const seqnum = await ctx.log.append([BENCH_TAG], input);
    const r = await ctx.log.readNext(BENCH_TAG, seqnum);
    if (r === null || r.seqnum !== seqnum) throw new Error(`record ${seqnum} was not read back`);
    return r.data.byteLength;
  },
});
