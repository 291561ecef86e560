/**
 * JSON values: what functions take and return. Inputs and outputs travel as JSON text
 * between the gateway, the engines' threads and the log, and are parsed only where a
 * function needs the value.
 */
import { InvocationError } from "./errors.js";
import { PAYLOAD_BYTES_MAX } from "./limits.js";

export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function kindOf(v: unknown): string {
  if (typeof v === "function") return "a function";
  if (typeof v === "bigint") return "a bigint";
  if (typeof v === "symbol") return "a symbol";
  if (v === undefined) return "undefined";
  if (typeof v === "number") return String(v);
  if (v instanceof Map) return "a Map";
  if (v instanceof Set) return "a Set";
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return `a ${v.constructor.name}`;
  if (v instanceof Promise) return "a Promise (missing await?)";
  return typeof v;
}

/**
 * Serialises `value` as JSON text, refusing what `JSON.stringify` would silently lose or
 * mangle: functions, symbols, undefined array items, non-finite numbers, Maps, Sets, binary
 * arrays and promises (and, as JSON.stringify does, bigints and cycles). `undefined` at the
 * top becomes `null` (a function that returns nothing returns null). Fails with
 * `errorCode` (INVALID_OUTPUT for outputs, INVALID_ARGUMENT for inputs) or
 * PAYLOAD_TOO_LARGE beyond `PAYLOAD_BYTES_MAX`.
 */
export function toJsonText(
  value: unknown,
  what: string,
  errorCode: "INVALID_OUTPUT" | "INVALID_ARGUMENT",
): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, function (this: unknown, key: string, v: unknown): unknown {
      const bad =
        typeof v === "function" ||
        typeof v === "symbol" ||
        typeof v === "bigint" ||
        (typeof v === "number" && !Number.isFinite(v)) ||
        (v === undefined && Array.isArray(this)) ||
        v instanceof Map ||
        v instanceof Set ||
        v instanceof Promise ||
        ArrayBuffer.isView(v) ||
        v instanceof ArrayBuffer;
      if (bad) {
        const at = key === "" ? "" : ` at ${JSON.stringify(key)}`;
        throw new InvocationError(errorCode, `${what} is not JSON: ${kindOf(v)}${at}`);
      }
      return v;
    });
  } catch (err) {
    if (err instanceof InvocationError) throw err;
    throw new InvocationError(
      errorCode,
      `${what} is not JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  text ??= "null";
  checkPayloadSize(text, what);
  return text;
}

/** Fails with PAYLOAD_TOO_LARGE when `text` is over `PAYLOAD_BYTES_MAX` bytes of UTF-8. */
export function checkPayloadSize(text: string, what: string): void {
  // A UTF-8 byte count is at most 3 per UTF-16 unit; count exactly only when it may matter.
  if (text.length * 3 <= PAYLOAD_BYTES_MAX) return;
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > PAYLOAD_BYTES_MAX) {
    throw new InvocationError(
      "PAYLOAD_TOO_LARGE",
      `${what} is ${bytes} bytes of JSON; the limit is ${PAYLOAD_BYTES_MAX} bytes`,
    );
  }
}

/**
 * Checks that `text` is one JSON value and returns it compacted (an empty text is `null`).
 * Fails with INVALID_ARGUMENT naming `what`.
 */
export function normalizeJsonText(text: string, what: string): string {
  if (text.trim() === "") return "null";
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvocationError(
      "INVALID_ARGUMENT",
      `${what} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const compact = JSON.stringify(value);
  checkPayloadSize(compact, what);
  return compact;
}
