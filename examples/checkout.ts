/**
 * A workflow that runs to completion exactly once across crashes: reserve stock, charge,
 * then ship, each a logged step. Start it with an id of your choosing; a repeat with the same
 * id returns the same outcome without running anything again:
 *
 *   curl -X POST localhost:8080/workflow/checkout -H 'X-Boki-Workflow-Id: order-1' \
 *     -d '{"item":"book","qty":2,"card":"4242"}'
 *   curl localhost:8080/workflows/order-1          # status, steps, output
 */
import { defineWorkflow, TerminalError } from "boki-ts/flow";

interface Order {
  item: string;
  qty: number;
  card: string;
}

export const checkout = defineWorkflow({
  name: "checkout",
  async handler(wf, order: Order) {
    if (typeof order?.item !== "string" || !Number.isInteger(order.qty) || order.qty < 1) {
      throw new TerminalError("an order is { item, qty, card }");
    }
    // Stock lives in a durable table; the write is this step's log record (exactly once).
    const stock = await wf.readEntry<number>("stock", order.item);
    const left = (stock.value ?? 100) - order.qty;
    if (left < 0) throw new TerminalError(`only ${stock.value} ${order.item} left`);
    if (!(await wf.condWrite("stock", order.item, left, stock.version))) {
      throw new Error("the stock changed meanwhile; start the order again");
    }
    const payment = await wf.step("charge", (s) => ({
      // A real payment call would pass s.key as its idempotency key.
      paymentId: `pay-${s.key}`,
      amount: order.qty * 12,
    }));
    const at = await wf.now();
    const shipment = await wf.step("ship", () => ({ trackingId: `trk-${wf.id}`, at }));
    return { order: wf.id, left, ...payment, ...shipment };
  },
});
