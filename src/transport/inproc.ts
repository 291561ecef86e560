/**
 * An in-process network: messages are queued per receiver and delivered together in a
 * microtask, so a burst of sends costs one delivery pass. Messages are passed by
 * reference; senders must not mutate a message after sending it.
 */
import type { Message } from "../protocol/messages.js";
import type { MessageHandler, NodeId, Transport } from "./transport.js";
import { InvalidArgumentError } from "../log/errors.js";

interface Endpoint {
  handler: MessageHandler | null;
  inbox: Array<[NodeId, Message]>;
  scheduled: boolean;
}

export class InProcNetwork {
  private readonly endpoints = new Map<NodeId, Endpoint>();
  /** Messages delivered so far, for tests and metrics. */
  delivered = 0;

  connect(self: NodeId): Transport {
    if (this.endpoints.has(self))
      throw new InvalidArgumentError(`node ${self} is already on this network`);
    const ep: Endpoint = { handler: null, inbox: [], scheduled: false };
    this.endpoints.set(self, ep);
    return {
      self,
      send: (to, message) => {
        const dst = this.endpoints.get(to);
        if (dst === undefined) return;
        dst.inbox.push([self, message]);
        if (!dst.scheduled) {
          dst.scheduled = true;
          queueMicrotask(() => this.flush(to));
        }
      },
      onMessage: (handler) => {
        ep.handler = handler;
      },
      close: () => {
        this.endpoints.delete(self);
        ep.handler = null;
        ep.inbox = [];
      },
    };
  }

  private flush(node: NodeId): void {
    const ep = this.endpoints.get(node);
    if (ep === undefined) return;
    ep.scheduled = false;
    const batch = ep.inbox;
    ep.inbox = [];
    const h = ep.handler;
    if (h === null) return;
    for (const [from, m] of batch) h(from, m);
    this.delivered += batch.length;
  }
}
