/**
 * Delivery of one watch's events to its listener, shared by the backends: one event at a
 * time, in the order the backend pushed them, waiting for a listener's promise before the
 * next event, holding at most `WATCH_QUEUE_EVENTS_MAX` events meanwhile.
 */
import {
  WATCH_QUEUE_EVENTS_MAX,
  type Watch,
  type WatchEnd,
  type WatchEvent,
  type WatchListener,
} from "./store.js";

export class WatchQueue implements Watch {
  readonly prefix: string;
  readonly done: Promise<WatchEnd>;
  private readonly listener: WatchListener;
  private readonly onEnd: (end: WatchEnd) => void;
  private readonly capacity: number;
  private queue: WatchEvent[] = [];
  private head = 0;
  private draining = false;
  private ended = false;
  private resolveDone!: (end: WatchEnd) => void;

  /** `onEnd` releases the backend's resources; it runs once, when the watch ends. */
  constructor(
    prefix: string,
    listener: WatchListener,
    onEnd: (end: WatchEnd) => void,
    capacity = WATCH_QUEUE_EVENTS_MAX,
  ) {
    this.prefix = prefix;
    this.listener = listener;
    this.onEnd = onEnd;
    this.capacity = capacity;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get isEnded(): boolean {
    return this.ended;
  }

  cancel(): void {
    this.end({ reason: "cancelled" });
  }

  /** Queues events for delivery; past the capacity the watch ends with `overflow`. */
  push(events: readonly WatchEvent[]): void {
    if (this.ended || events.length === 0) return;
    if (this.queue.length - this.head + events.length > this.capacity) {
      this.end({ reason: "overflow" });
      return;
    }
    for (const e of events) this.queue.push(e);
    if (!this.draining) {
      this.draining = true;
      void this.drain();
    }
  }

  end(end: WatchEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.queue = [];
    this.head = 0;
    this.onEnd(end);
    this.resolveDone(end);
  }

  private async drain(): Promise<void> {
    // Listeners never run inside the backend's call that produced the events.
    await Promise.resolve();
    try {
      while (!this.ended && this.head < this.queue.length) {
        const event = this.queue[this.head++]!;
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        const r = this.listener(event);
        if (r !== undefined) await r;
      }
    } catch (error) {
      this.end({ reason: "listener-failed", error });
    } finally {
      this.draining = false;
    }
  }
}
