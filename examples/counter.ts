/**
 * A counter kept in the log: each increment is a record, and the value is the replay of
 * the counter's records. Call it with `{ "name": "visits" }` (adds 1) or
 * `{ "name": "visits", "by": 5 }`; `{ "name": "visits", "by": 0 }` only reads.
 */
import { defineFunction, tagOf, type FunctionContext } from "boki-ts";

/** The counter's value: the sum of every increment recorded under its tag, oldest first. */
async function replay(ctx: FunctionContext, name: string): Promise<number> {
  const tag = tagOf(`counter:${name}`);
  let value = 0;
  for (
    let r = await ctx.log.readNext(tag, 0);
    r !== null;
    r = await ctx.log.readNext(tag, r.seqnum + 1)
  ) {
    value += (JSON.parse(Buffer.from(r.data).toString("utf8")) as { by: number }).by;
  }
  return value;
}

export default defineFunction({
  name: "counter",
  async handler(ctx, input: { name: string; by?: number }) {
    if (typeof input?.name !== "string" || input.name === "")
      throw new Error("input.name is required");
    const by = input.by ?? 1;
    if (!Number.isSafeInteger(by)) throw new Error("input.by must be an integer");
    if (by !== 0) await ctx.log.append([tagOf(`counter:${input.name}`)], JSON.stringify({ by }));
    // ctx.log carries this invocation's position, so the replay includes the append above.
    return { name: input.name, value: await replay(ctx, input.name) };
  },
});
