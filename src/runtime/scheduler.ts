/**
 * Runs the scheduled functions (`defineFunction({ schedule: { everyMs } })`): each with
 * input null in its own book, one run at a time, the next `everyMs` after the last one
 * ended. A run that fails is logged and the schedule goes on. Timers are unref'd, so a
 * schedule never keeps a process alive.
 */
import type { Logger } from "../util/logger.js";
import type { Dispatcher, FunctionInfo } from "./dispatcher.js";
import { describeThrown } from "./errors.js";
import { newInvocationId } from "./ids.js";

export class Scheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly logger: Logger,
  ) {}

  /** The scheduled functions among the dispatcher's. */
  scheduled(): readonly FunctionInfo[] {
    return this.dispatcher.functions().filter((f) => f.scheduleEveryMs !== undefined);
  }

  start(): void {
    for (const f of this.scheduled()) this.arm(f, 0);
  }

  private arm(f: FunctionInfo, delayMs: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(f.name);
      void this.runOnce(f).finally(() => this.arm(f, f.scheduleEveryMs!));
    }, delayMs);
    t.unref();
    this.timers.set(f.name, t);
  }

  private async runOnce(f: FunctionInfo): Promise<void> {
    try {
      await this.dispatcher.invoke({
        name: f.name,
        inputJson: "null",
        book: f.book ?? 0,
        invocationId: newInvocationId(),
        deadline: Date.now() + f.timeoutMs,
      });
    } catch (err) {
      if (this.stopped) return;
      this.logger.warn({ function: f.name, error: describeThrown(err) }, "a scheduled run failed");
    }
  }

  /** Stops arming runs. Runs in progress end with the invocations they are (shutdown ends those). */
  close(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
