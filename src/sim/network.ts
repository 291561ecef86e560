/**
 * The simulated network. Every message is encoded and decoded as on TCP (msgpack, then the
 * wire validation of `protocol/validate.ts`), so a receiver never shares an object with its
 * sender, and a message that would not pass the wire is caught. Delays, loss, duplication,
 * reordering and partitions are drawn from the run's random source:
 *
 * - By default a pair's messages arrive in order (as over one TCP connection) after a delay
 *   in `delayMs`, occasionally a spike of `spikeMs`.
 * - With `reorder` on, each message's delay is independent, so later messages may overtake.
 * - `lossRate` drops messages; `duplicateRate` delivers a message twice.
 * - A partition drops every message between its sides, sent or arriving while it holds.
 * - A message to a node that crashed, or that was restarted since the message was sent, is
 *   dropped (its connection broke).
 */
import { Packr, Unpackr } from "msgpackr";
import type { Message } from "../protocol/messages.js";
import { parseMessage } from "../protocol/validate.js";
import type { MessageHandler, NodeId, Transport } from "../transport/transport.js";
import { InvalidArgumentError } from "../log/errors.js";
import type { SimScheduler } from "./clock.js";
import type { SimRandom } from "./random.js";

export interface NetworkFaults {
  /** Usual one-way delay, uniform in [min, max] ms. */
  delayMs: readonly [number, number];
  /** Probability that a message is delayed by a spike instead. */
  spikeRate: number;
  spikeMs: readonly [number, number];
  lossRate: number;
  duplicateRate: number;
  /** Messages of one pair may overtake each other. */
  reorder: boolean;
}

export const CALM_NETWORK: NetworkFaults = {
  delayMs: [0.05, 0.5],
  spikeRate: 0,
  spikeMs: [5, 50],
  lossRate: 0,
  duplicateRate: 0,
  reorder: false,
};

/** What the network shows the invariant checks. */
export interface NetworkObserver {
  /** A message as it leaves `from` (before any fault). */
  sent?(from: NodeId, to: NodeId, m: Message): void;
}

interface Endpoint {
  readonly incarnation: number;
  handler: MessageHandler | null;
}

export interface NetworkStats {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  partitioned: number;
}

export class SimNetwork {
  faults: NetworkFaults = CALM_NETWORK;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, lost: 0, duplicated: 0, partitioned: 0 };
  private readonly endpoints = new Map<NodeId, Endpoint>();
  private incarnations = 0;
  /** Per ordered pair, when its last message arrives (keeps pairs in order). */
  private readonly lastArrival = new Map<string, number>();
  /** Blocked ordered pairs "a>b". */
  private readonly blocked = new Set<string>();
  private readonly packr = new Packr({ useRecords: false });
  private readonly unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

  constructor(
    private readonly scheduler: SimScheduler,
    private readonly random: SimRandom,
    private readonly observer: NetworkObserver = {},
  ) {}

  /** Attaches node `self` (a new incarnation: messages sent to an earlier one are dropped). */
  connect(self: NodeId): Transport {
    if (this.endpoints.has(self))
      throw new InvalidArgumentError(`node ${self} is already on the simulated network`);
    const ep: Endpoint = { incarnation: ++this.incarnations, handler: null };
    this.endpoints.set(self, ep);
    const gone = (): boolean => this.endpoints.get(self) !== ep;
    return {
      self,
      send: (to, m) => {
        if (!gone()) this.send(self, to, m);
      },
      onMessage: (h) => {
        ep.handler = h;
      },
      close: () => {
        if (!gone()) this.endpoints.delete(self);
      },
    };
  }

  /** Node `id` crashed: it sends and receives nothing until it connects again. */
  disconnect(id: NodeId): void {
    this.endpoints.delete(id);
  }

  /** Cuts every link between a node of `a` and a node of `b`, both ways. */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a)
      for (const y of b) {
        this.blocked.add(`${x}>${y}`);
        this.blocked.add(`${y}>${x}`);
      }
  }

  heal(): void {
    this.blocked.clear();
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }

  private send(from: NodeId, to: NodeId, m: Message): void {
    this.stats.sent++;
    this.observer.sent?.(from, to, m);
    const dst = this.endpoints.get(to);
    if (dst === undefined) return;
    if (this.blocked.has(`${from}>${to}`)) {
      this.stats.partitioned++;
      return;
    }
    const f = this.faults;
    if (this.random.chance(f.lossRate)) {
      this.stats.lost++;
      return;
    }
    // Encoded now, as the sender's transport would: later changes by the sender do not show.
    const bytes = this.packr.pack(m);
    const copies = this.random.chance(f.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      const delay = this.random.chance(f.spikeRate)
        ? this.random.between(f.spikeMs[0], f.spikeMs[1])
        : this.random.between(f.delayMs[0], f.delayMs[1]);
      let at = this.scheduler.now() + delay;
      if (!f.reorder) {
        const key = `${from}>${to}`;
        at = Math.max(at, this.lastArrival.get(key) ?? 0);
        this.lastArrival.set(key, at);
      }
      this.scheduler.setTimer(at - this.scheduler.now(), () => this.deliver(from, to, dst, bytes));
    }
  }

  private deliver(from: NodeId, to: NodeId, dst: Endpoint, bytes: Uint8Array): void {
    if (this.endpoints.get(to) !== dst || dst.handler === null) return;
    if (this.blocked.has(`${from}>${to}`)) {
      this.stats.partitioned++;
      return;
    }
    const m = parseMessage(this.unpackr.unpack(bytes));
    this.stats.delivered++;
    dst.handler(from, m);
  }
}
