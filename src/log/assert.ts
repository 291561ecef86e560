/** A broken invariant: a bug, not an operating error. Crashes loudly by design. */
export class InvariantViolation extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = "InvariantViolation";
  }
}

export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new InvariantViolation(typeof message === "function" ? message() : message);
  }
}
