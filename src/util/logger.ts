import { pino } from "pino";

/** The logging surface roles use; pino's logger satisfies it. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export function createLogger(
  level: LogLevel = (process.env["BOKI_LOG_LEVEL"] as LogLevel | undefined) ?? "warn",
): Logger {
  return pino({ level, base: null }, pino.destination(2));
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
