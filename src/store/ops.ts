/**
 * Operations on JSON documents, pure and immutable: applying an operation never changes
 * its input value; it copies the containers along the path and shares the rest. So a
 * cached view can be handed to many readers and a transaction can apply its buffered
 * writes to a snapshot without copying whole documents.
 *
 * A document is a JSON value, or `undefined` when the object does not exist. Paths are
 * lists of segments: keys of objects, or indexes (non-negative integers) of arrays.
 */
import { InvalidArgumentError, type JsonValue } from "../index.js";
import type { OpFailure } from "./errors.js";
import { PATH_SEGMENTS_MAX, VALUE_DEPTH_MAX } from "./limits.js";

/** A path as callers write it: "a.b.0" (dot-separated; "" is the whole document) or segments. */
export type PathLike = string | readonly (string | number)[];
/** A path as stored: segments as strings. */
export type Path = readonly string[];

type JsonObject = { [key: string]: JsonValue };

/** One write, as it travels in a record. */
export type Op =
  | { readonly t: "set"; readonly p: Path; readonly v: JsonValue }
  | { readonly t: "delete"; readonly p: Path }
  | { readonly t: "add"; readonly p: Path; readonly n: number }
  | { readonly t: "push"; readonly p: Path; readonly v: JsonValue; readonly max?: number }
  | { readonly t: "pop"; readonly p: Path };

/** What an operation returns to its caller. */
export type OpResult = JsonValue | undefined;

export type ApplyResult =
  | { readonly ok: true; readonly doc: JsonValue | undefined; readonly result: OpResult }
  | { readonly ok: false; readonly reason: OpFailure; readonly detail: string };

export function parsePath(path: PathLike | undefined, what = "path"): Path {
  if (path === undefined || path === "") return [];
  let segs: (string | number)[];
  if (typeof path === "string") segs = path.split(".");
  else if (Array.isArray(path)) segs = path as (string | number)[];
  else throw new InvalidArgumentError(`${what} must be a string or an array of segments`);
  if (segs.length > PATH_SEGMENTS_MAX) {
    throw new InvalidArgumentError(
      `${what} has ${segs.length} segments; the limit is ${PATH_SEGMENTS_MAX}`,
    );
  }
  const out: string[] = [];
  for (const s of segs) {
    if (typeof s === "number") {
      if (!Number.isSafeInteger(s) || s < 0) {
        throw new InvalidArgumentError(
          `${what}: an index must be a non-negative integer, got ${s}`,
        );
      }
      out.push(String(s));
    } else if (typeof s === "string") {
      if (s === "") throw new InvalidArgumentError(`${what} has an empty segment`);
      out.push(s);
    } else {
      throw new InvalidArgumentError(`${what}: segments are strings or numbers`);
    }
  }
  return out;
}

export function pathText(p: Path): string {
  return p.length === 0 ? "(root)" : p.join(".");
}

/**
 * A deep copy of `value` that is certainly JSON: refuses undefined, functions, symbols,
 * bigints, non-finite numbers, class instances other than plain objects and arrays, and
 * nesting deeper than `VALUE_DEPTH_MAX` (which also catches cycles).
 */
export function toJson(value: unknown, what = "value", depth = 0): JsonValue {
  if (depth > VALUE_DEPTH_MAX) {
    throw new InvalidArgumentError(`${what} is nested deeper than ${VALUE_DEPTH_MAX} levels`);
  }
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new InvalidArgumentError(`${what} is not finite: ${value}`);
    return value;
  }
  if (Array.isArray(value)) {
    const out: JsonValue[] = new Array<JsonValue>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = toJson(value[i], what, depth + 1);
    return out;
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new InvalidArgumentError(`${what} is not JSON: an instance of ${describeClass(value)}`);
    }
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v, what, depth + 1);
    return out;
  }
  throw new InvalidArgumentError(`${what} is not JSON: ${typeof value}`);
}

function describeClass(value: object): string {
  const c = (value as { constructor?: { name?: unknown } }).constructor;
  return typeof c?.name === "string" ? c.name : "a class";
}

/** A deep copy of a JSON value (views are shared; callers get their own copies). */
export function cloneJson<T extends JsonValue | undefined>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => cloneJson(v)) as T;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) out[k] = cloneJson(v);
  return out as T;
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function arrayIndex(seg: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(seg)) return undefined;
  const n = Number(seg);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The value at `path`, or undefined. */
export function getIn(doc: JsonValue | undefined, path: Path): JsonValue | undefined {
  let cur: JsonValue | undefined = doc;
  for (const seg of path) {
    if (isObject(cur)) cur = Object.hasOwn(cur, seg) ? cur[seg] : undefined;
    else if (Array.isArray(cur)) {
      const i = arrayIndex(seg);
      cur = i === undefined ? undefined : cur[i];
    } else return undefined;
  }
  return cur;
}

/** Thrown inside `applyOp` only, and turned into a failure result there. */
class Failure extends Error {
  constructor(
    readonly reason: OpFailure,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * Replaces the value at `path` (from segment `i` on) with `leaf(old)`, copying containers
 * on the way. Missing objects on the way are created (when `create`); a missing array
 * element is not.
 */
function updateIn(
  cur: JsonValue | undefined,
  path: Path,
  i: number,
  leaf: (old: JsonValue | undefined) => JsonValue | undefined,
  create: boolean,
): JsonValue | undefined {
  if (i === path.length) return leaf(cur);
  const seg = path[i]!;
  if (cur === undefined && create) cur = {};
  if (isObject(cur)) {
    const old = Object.hasOwn(cur, seg) ? cur[seg] : undefined;
    const next = updateIn(old, path, i + 1, leaf, create);
    if (next === old && old !== undefined) return cur;
    const copy: JsonObject = { ...cur };
    if (next === undefined) delete copy[seg];
    else copy[seg] = next;
    return copy;
  }
  if (Array.isArray(cur)) {
    const idx = arrayIndex(seg);
    if (idx === undefined) {
      throw new Failure(
        "TYPE_MISMATCH",
        `${pathText(path.slice(0, i + 1))}: ${JSON.stringify(seg)} is not an array index`,
      );
    }
    const last = i === path.length - 1;
    if (idx > cur.length || (idx === cur.length && !last)) {
      throw new Failure(
        "OUT_OF_RANGE",
        `${pathText(path.slice(0, i + 1))}: index ${idx} is beyond the array's length ${cur.length}`,
      );
    }
    const old = cur[idx];
    const next = updateIn(old, path, i + 1, leaf, create);
    if (next === old) return cur;
    const copy = cur.slice();
    if (next === undefined) copy.splice(idx, 1);
    else copy[idx] = next;
    return copy;
  }
  throw new Failure(
    "TYPE_MISMATCH",
    `${pathText(path.slice(0, i))} is ${cur === null ? "null" : typeof cur}, not an object or array`,
  );
}

/** Applies one operation to a document. Never throws for a bad fit: it reports a failure. */
export function applyOp(doc: JsonValue | undefined, op: Op): ApplyResult {
  let result: OpResult;
  try {
    let next: JsonValue | undefined;
    switch (op.t) {
      case "set":
        next = updateIn(
          doc,
          op.p,
          0,
          (old) => {
            result = old;
            return op.v;
          },
          true,
        );
        break;
      case "delete":
        // Deleting what is not there changes nothing (and is not a failure).
        if (getIn(doc, op.p) === undefined) return { ok: true, doc, result: undefined };
        next = updateIn(
          doc,
          op.p,
          0,
          (old) => {
            result = old;
            return undefined;
          },
          false,
        );
        break;
      case "add":
        next = updateIn(
          doc,
          op.p,
          0,
          (old) => {
            if (old === undefined) old = 0;
            if (typeof old !== "number") {
              throw new Failure("TYPE_MISMATCH", `${pathText(op.p)} is not a number`);
            }
            const sum = old + op.n;
            if (!Number.isFinite(sum)) {
              throw new Failure("NOT_FINITE", `${pathText(op.p)}: ${old} + ${op.n} is not finite`);
            }
            result = old;
            return sum;
          },
          true,
        );
        break;
      case "push":
        next = updateIn(
          doc,
          op.p,
          0,
          (old) => {
            if (old === undefined) old = [];
            if (!Array.isArray(old)) {
              throw new Failure("TYPE_MISMATCH", `${pathText(op.p)} is not an array`);
            }
            const arr = old.concat([op.v]);
            if (op.max !== undefined && arr.length > op.max) arr.splice(0, arr.length - op.max);
            result = arr.length;
            return arr;
          },
          true,
        );
        break;
      case "pop": {
        const cur = getIn(doc, op.p);
        if (cur === undefined) return { ok: true, doc, result: undefined };
        if (!Array.isArray(cur)) {
          return {
            ok: false,
            reason: "TYPE_MISMATCH",
            detail: `${pathText(op.p)} is not an array`,
          };
        }
        if (cur.length === 0) return { ok: true, doc, result: undefined };
        result = cur[cur.length - 1];
        next = updateIn(doc, op.p, 0, () => cur.slice(0, -1), false);
        break;
      }
    }
    return { ok: true, doc: next, result };
  } catch (err) {
    if (err instanceof Failure) return { ok: false, reason: err.reason, detail: err.detail };
    throw err;
  }
}

export type ApplyManyResult =
  | { readonly ok: true; readonly doc: JsonValue | undefined; readonly results: OpResult[] }
  | {
      readonly ok: false;
      readonly index: number;
      readonly reason: OpFailure;
      readonly detail: string;
    };

/** Applies a record's operations on one object: all of them, or (on a failure) none. */
export function applyOps(doc: JsonValue | undefined, ops: readonly Op[]): ApplyManyResult {
  const results: OpResult[] = [];
  let cur = doc;
  for (let i = 0; i < ops.length; i++) {
    const r = applyOp(cur, ops[i]!);
    if (!r.ok) return { ok: false, index: i, reason: r.reason, detail: r.detail };
    cur = r.doc;
    results.push(r.result);
  }
  return { ok: true, doc: cur, results };
}

/** Checks an operation decoded from a record (records come from the log, so they are input). */
export function isOp(x: unknown): x is Op {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  if (!Array.isArray(o["p"]) || !o["p"].every((s) => typeof s === "string")) return false;
  switch (o["t"]) {
    case "set":
      return "v" in o;
    case "delete":
    case "pop":
      return true;
    case "add":
      return typeof o["n"] === "number";
    case "push":
      return (
        "v" in o &&
        (o["max"] === undefined || (Number.isSafeInteger(o["max"]) && (o["max"] as number) >= 1))
      );
    default:
      return false;
  }
}
