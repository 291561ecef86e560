/**
 * A function that calls another: `greet` counts greetings per name with the `counter`
 * function (examples/counter.ts) through `ctx.invoke`. The child runs in the same book,
 * sees everything the caller wrote, and the caller sees what the child wrote once it
 * returns.
 *
 *   greet { "name": "Ada" }   ->  "Hello, Ada! You have been greeted 3 times."
 */
import { defineFunction } from "boki-ts";

export default defineFunction({
  name: "greet",
  async handler(ctx, input: { name: string }) {
    const name = typeof input?.name === "string" && input.name !== "" ? input.name : "world";
    const { value } = await ctx.invoke<{ value: number }>("counter", { name: `greetings:${name}` });
    ctx.logger.info("greeted", { name, times: value });
    return `Hello, ${name}! You have been greeted ${value} time${value === 1 ? "" : "s"}.`;
  },
});
