/** A broken invariant of the store: a bug, not an operating error. Crashes loudly by design. */
export class StoreInvariantViolation extends Error {
  constructor(message: string) {
    super(`store invariant violated: ${message}`);
    this.name = "StoreInvariantViolation";
  }
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new StoreInvariantViolation(message);
}
