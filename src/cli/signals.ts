/** How the long-running commands stop on Ctrl-C (SIGINT) or SIGTERM. */

export interface Stopping {
  /** Whether a signal has arrived and the command is closing. */
  readonly stopping: boolean;
}

/**
 * On the first SIGINT or SIGTERM prints `announce` (if any) and runs `close`, then exits: 0
 * once it resolved, 1 (printing the error) if it failed. A later signal runs `again` (if
 * given: e.g. to exit at once) and is otherwise ignored.
 */
export function closeOnSignals(
  close: () => Promise<unknown>,
  options: { announce?: string; again?: () => void } = {},
): Stopping {
  const state = { stopping: false };
  const stop = (): void => {
    if (state.stopping) {
      options.again?.();
      return;
    }
    state.stopping = true;
    if (options.announce !== undefined) console.log(options.announce);
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return state;
}
