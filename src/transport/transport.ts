/**
 * The one interface roles talk through. Delivery is in order per (sender, receiver) pair
 * and best-effort: a message to a node that is gone is dropped, and protocols recover by
 * asking again. The in-process implementation is here; TCP and simulated networks
 * implement the same interface.
 */
import type { Message } from "../protocol/messages.js";

export type NodeId = string;

export type MessageHandler = (from: NodeId, message: Message) => void;

export interface Transport {
  readonly self: NodeId;
  send(to: NodeId, message: Message): void;
  onMessage(handler: MessageHandler): void;
  close(): void;
}
