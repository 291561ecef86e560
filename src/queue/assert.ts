/** A broken invariant of the queue library: a bug, not an operating error. Crashes loudly. */
export class QueueInvariantViolation extends Error {
  constructor(message: string) {
    super(`queue invariant violated: ${message}`);
    this.name = "QueueInvariantViolation";
  }
}

export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new QueueInvariantViolation(typeof message === "function" ? message() : message);
  }
}
