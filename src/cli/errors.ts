/**
 * How the `boki` command reports a failure: one line saying what is wrong and, where it
 * helps, a second saying what to type, then exit status 1. The stack and the causes are
 * printed only with `--verbose`; a user's mistake is not a crash.
 */
import { CommanderError } from "commander";
import { BokiError } from "../log/errors.js";
import { FunctionLoadError, InvocationError } from "../runtime/errors.js";

/** A failure the CLI has already put into words (the message is printed as it is). */
export class CliFailure extends Error {
  /** A second line: what to do about it. */
  readonly hint: string | undefined;

  constructor(message: string, hint?: string) {
    super(message);
    this.name = "CliFailure";
    this.hint = hint;
  }
}

/** Whether `--verbose` is on the command line (it may follow the subcommand). */
export function verboseRequested(argv: readonly string[] = process.argv): boolean {
  return argv.includes("--verbose");
}

function systemErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code) ? code : undefined;
}

/** The one or two lines that describe `err` to the person who typed the command. */
export function describeCliError(err: unknown): { message: string; hint?: string } {
  if (err instanceof CliFailure) {
    return err.hint === undefined
      ? { message: err.message }
      : { message: err.message, hint: err.hint };
  }
  if (err instanceof FunctionLoadError) {
    return {
      message: err.message,
      hint: "Point --functions at a module or a directory of them; `npx boki init <dir>` creates a project with one.",
    };
  }
  if (err instanceof BokiError || err instanceof InvocationError) {
    return { message: `error ${err.code}: ${err.message}` };
  }
  if (err instanceof CommanderError) return { message: err.message };
  const code = systemErrorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === "EADDRINUSE") {
    return {
      message: `cannot listen: ${message}`,
      hint: "Another process uses that port: stop it, or pass --port <n> (0 picks a free one).",
    };
  }
  if (code === "EACCES" || code === "EPERM") {
    return { message: `not permitted: ${message}` };
  }
  if (code !== undefined) return { message };
  return {
    message: `unexpected error: ${message}`,
    hint: "Run the command again with --verbose to see where it came from.",
  };
}

/** Prints `err` as describeCliError says (with its stack and causes when verbose). */
export function reportCliError(err: unknown, verbose: boolean = verboseRequested()): void {
  const { message, hint } = describeCliError(err);
  console.error(`boki: ${message}`);
  if (hint !== undefined) console.error(hint);
  if (verbose) console.error(err);
}
