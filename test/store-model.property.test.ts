/**
 * Model-based test of the store: random sequences of object operations and interleaved
 * transactions run against a real store (embedded log, real disk) and against a plain
 * in-memory model, which must agree on every result, every error and every read, including
 * reads by fresh stores that see no checkpoints at all.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmbeddedLog, type JsonValue } from "../src/index.js";
import type { Batch } from "../src/store/index.js";
import {
  OpFailedError,
  TransactionConflictError,
  openStore,
  type Isolation,
  type Store,
  type Transaction,
} from "../src/store/index.js";
import { WrappedLogBook } from "./fixtures/store/logbooks.js";
import { tempDir } from "./helpers/tmp.js";

// ---- the model ----------------------------------------------------------------------------

type Doc = JsonValue | undefined;
type MOp =
  | { t: "set"; p: string[]; v: JsonValue }
  | { t: "delete"; p: string[] }
  | { t: "add"; p: string[]; n: number }
  | { t: "push"; p: string[]; v: JsonValue; max?: number }
  | { t: "pop"; p: string[] };
type MResult = { ok: true; doc: Doc; result: Doc } | { ok: false };

const clone = (d: Doc): Doc =>
  d === undefined ? undefined : (JSON.parse(JSON.stringify(d)) as JsonValue);
const isObj = (v: unknown): v is Record<string, JsonValue> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const index = (seg: string): number => (/^(0|[1-9][0-9]*)$/.test(seg) ? Number(seg) : -1);

function get(doc: Doc, p: readonly string[]): Doc {
  let cur = doc;
  for (const s of p) {
    if (isObj(cur)) cur = Object.hasOwn(cur, s) ? cur[s] : undefined;
    else if (Array.isArray(cur)) cur = index(s) >= 0 ? cur[index(s)] : undefined;
    else return undefined;
  }
  return cur;
}

class Fail extends Error {}

/** Mutates a copy of `doc`: replaces the value at `p` with `leaf(old)`; undefined deletes. */
function modify(doc: Doc, p: readonly string[], leaf: (old: Doc) => Doc, create: boolean): Doc {
  if (p.length === 0) return leaf(doc);
  const root = doc === undefined && create ? {} : clone(doc);
  let cur: Doc = root;
  for (let i = 0; i < p.length; i++) {
    const s = p[i]!;
    const last = i === p.length - 1;
    if (isObj(cur)) {
      if (last) {
        const nv = leaf(cur[s]);
        if (nv === undefined) delete cur[s];
        else cur[s] = nv;
      } else {
        if (cur[s] === undefined && create) cur[s] = {};
        cur = cur[s];
      }
    } else if (Array.isArray(cur)) {
      const ix = index(s);
      if (ix < 0 || ix > cur.length || (ix === cur.length && !last)) throw new Fail();
      if (last) {
        const nv = leaf(cur[ix]);
        if (nv === undefined) cur.splice(ix, 1);
        else cur[ix] = nv;
      } else cur = cur[ix];
    } else throw new Fail();
  }
  return root;
}

function modelApply(doc: Doc, op: MOp): MResult {
  let result: Doc;
  try {
    switch (op.t) {
      case "set":
        return { ok: true, doc: modify(doc, op.p, (old) => ((result = old), op.v), true), result };
      case "delete":
        if (get(doc, op.p) === undefined) return { ok: true, doc, result: undefined };
        return {
          ok: true,
          doc: modify(doc, op.p, (old) => ((result = old), undefined), false),
          result,
        };
      case "add":
        return {
          ok: true,
          doc: modify(
            doc,
            op.p,
            (old) => {
              const o = old === undefined ? 0 : old;
              if (typeof o !== "number") throw new Fail();
              result = o;
              return o + op.n;
            },
            true,
          ),
          result,
        };
      case "push":
        return {
          ok: true,
          doc: modify(
            doc,
            op.p,
            (old) => {
              const a = old === undefined ? [] : old;
              if (!Array.isArray(a)) throw new Fail();
              const out = [...a, op.v];
              while (op.max !== undefined && out.length > op.max) out.shift();
              result = out.length;
              return out;
            },
            true,
          ),
          result,
        };
      case "pop": {
        const a = get(doc, op.p);
        if (a === undefined) return { ok: true, doc, result: undefined };
        if (!Array.isArray(a)) return { ok: false };
        if (a.length === 0) return { ok: true, doc, result: undefined };
        return {
          ok: true,
          doc: modify(
            doc,
            op.p,
            (arr) => ((result = a[a.length - 1]), (arr as JsonValue[]).slice(0, -1)),
            false,
          ),
          result,
        };
      }
    }
  } catch (e) {
    if (e instanceof Fail) return { ok: false };
    throw e;
  }
}

function modelApplyAll(
  doc: Doc,
  ops: readonly MOp[],
): { ok: true; doc: Doc; results: Doc[] } | { ok: false } {
  const results: Doc[] = [];
  let cur = doc;
  for (const op of ops) {
    const r = modelApply(cur, op);
    if (!r.ok) return { ok: false };
    cur = r.doc;
    results.push(r.result);
  }
  return { ok: true, doc: cur, results };
}

interface ModelTx {
  readonly isolation: Isolation;
  readonly readOnly: boolean;
  readonly snapshot: number;
  readonly views: Map<string, Doc>;
  readonly ops: Map<string, MOp[]>;
}

class Model {
  /** Log positions: every append takes one, as seqnums do (strictly increasing). */
  pos = -1;
  /** Per object: committed versions (position, value after), oldest first. */
  readonly versions = new Map<string, Array<{ pos: number; value: Doc }>>();
  readonly txs: Array<ModelTx | undefined> = [undefined, undefined, undefined];

  valueAt(name: string, at: number): Doc {
    let v: Doc;
    for (const x of this.versions.get(name) ?? []) if (x.pos <= at) v = x.value;
    return v;
  }
  latest(name: string): Doc {
    return this.valueAt(name, Infinity);
  }
  commitWrite(name: string, value: Doc): void {
    const list = this.versions.get(name) ?? [];
    list.push({ pos: this.pos, value });
    this.versions.set(name, list);
  }
  changedIn(name: string, after: number, before: number): boolean {
    return (this.versions.get(name) ?? []).some((x) => x.pos > after && x.pos < before);
  }
}

// ---- commands -------------------------------------------------------------------------------

const NAMES = ["o1", "o2", "o3"];
const PATHS: string[][] = [["a"], ["b"], ["a", "x"], ["l"], ["m", "l"], ["l", "0"], []];
const valueArb: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom("s", "t"),
  fc.constant(null),
  fc.constant([] as JsonValue[]),
  fc.constant({}),
  fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
);
const pathArb = fc.constantFrom(...PATHS);
const opArb: fc.Arbitrary<MOp> = fc.oneof(
  fc.record({ t: fc.constant("set" as const), p: pathArb, v: valueArb }),
  fc.record({ t: fc.constant("delete" as const), p: pathArb }),
  fc.record({ t: fc.constant("add" as const), p: pathArb, n: fc.integer({ min: -3, max: 3 }) }),
  fc.record(
    {
      t: fc.constant("push" as const),
      p: pathArb,
      v: valueArb,
      max: fc.integer({ min: 1, max: 3 }),
    },
    { requiredKeys: ["t", "p", "v"] },
  ),
  fc.record({ t: fc.constant("pop" as const), p: pathArb }),
);

interface Real {
  store: Store;
  book: WrappedLogBook;
  txs: Array<Transaction | undefined>;
}

function toBatch(b: Batch, op: MOp): void {
  switch (op.t) {
    case "set":
      b.set(op.p, op.v);
      break;
    case "delete":
      b.delete(op.p);
      break;
    case "add":
      b.add(op.p, op.n);
      break;
    case "push":
      b.push(op.p, op.v, op.max === undefined ? {} : { max: op.max });
      break;
    case "pop":
      b.pop(op.p);
      break;
  }
}

async function outcome<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, err };
  }
}

/** What the runs exercised, so that a generator that stopped producing a case is noticed. */
const seen = { writes: 0, gets: 0, commits: 0, conflicts: 0, opFailures: 0 };

class WriteCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly name: string,
    readonly ops: MOp[],
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    m.pos++;
    const expected = modelApplyAll(m.latest(this.name), this.ops);
    const got = await outcome(
      r.store.update(this.name, (b) => this.ops.forEach((op) => toBatch(b, op))),
    );
    seen.writes++;
    if (!expected.ok) seen.opFailures++;
    if (expected.ok) {
      expect(got).toEqual({ ok: true, value: expected.results });
      m.commitWrite(this.name, expected.doc);
    } else {
      expect(got.ok).toBe(false);
      expect((got as { err: unknown }).err).toBeInstanceOf(OpFailedError);
      // The record is in the log and counts as a write for conflicts, though it changed nothing.
      m.commitWrite(this.name, m.latest(this.name));
    }
  }
  toString = (): string => `write(${this.name}, ${JSON.stringify(this.ops)})`;
}

class GetCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly name: string,
    readonly cold: "warm" | "cold" | "no-aux",
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const store =
      this.cold === "warm"
        ? r.store
        : openStore(
            this.cold === "cold"
              ? r.book
              : new WrappedLogBook(
                  r.book,
                  () => true,
                  () => true,
                ),
          );
    expect(await store.get(this.name)).toEqual(m.latest(this.name));
    seen.gets++;
  }
  toString = (): string => `get(${this.name}, ${this.cold})`;
}

class BeginCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly slot: number,
    readonly isolation: Isolation,
    readonly readOnly: boolean,
    /** A read-write transaction with a tail snapshot (no begin record). */
    readonly tail = false,
  ) {}
  check = (m: Readonly<Model>): boolean => m.txs[this.slot] === undefined;
  async run(m: Model, r: Real): Promise<void> {
    if (!this.readOnly && !this.tail) m.pos++;
    const snapshot = m.pos;
    m.txs[this.slot] = {
      isolation: this.isolation,
      readOnly: this.readOnly,
      snapshot,
      views: new Map(),
      ops: new Map(),
    };
    r.txs[this.slot] = await r.store.begin({
      isolation: this.isolation,
      readOnly: this.readOnly,
      ...(this.tail ? { snapshot: "tail" as const } : {}),
    });
  }
  toString = (): string => `begin(${this.slot}, ${this.isolation}${this.readOnly ? ", ro" : ""})`;
}

function txView(tx: ModelTx, m: Model, name: string): Doc {
  if (!tx.views.has(name)) tx.views.set(name, m.valueAt(name, tx.snapshot));
  return tx.views.get(name);
}

class TxGetCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly slot: number,
    readonly name: string,
  ) {}
  check = (m: Readonly<Model>): boolean => m.txs[this.slot] !== undefined;
  async run(m: Model, r: Real): Promise<void> {
    const expected = txView(m.txs[this.slot]!, m, this.name);
    expect(await r.txs[this.slot]!.get(this.name)).toEqual(expected);
  }
  toString = (): string => `txGet(${this.slot}, ${this.name})`;
}

class TxWriteCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly slot: number,
    readonly name: string,
    readonly op: MOp,
  ) {}
  check = (m: Readonly<Model>): boolean =>
    m.txs[this.slot] !== undefined && !m.txs[this.slot]!.readOnly;
  async run(m: Model, r: Real): Promise<void> {
    const tx = m.txs[this.slot]!;
    const before = txView(tx, m, this.name);
    const expected = modelApply(before, this.op);
    const got = await outcome(r.txs[this.slot]!.update(this.name, (b) => toBatch(b, this.op)));
    if (expected.ok) {
      expect(got).toEqual({ ok: true, value: [expected.result] });
      tx.views.set(this.name, expected.doc);
      tx.ops.set(this.name, [...(tx.ops.get(this.name) ?? []), this.op]);
    } else {
      expect((got as { err: unknown }).err).toBeInstanceOf(OpFailedError);
    }
  }
  toString = (): string => `txWrite(${this.slot}, ${this.name}, ${JSON.stringify(this.op)})`;
}

class CommitCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly slot: number) {}
  check = (m: Readonly<Model>): boolean => m.txs[this.slot] !== undefined;
  async run(m: Model, r: Real): Promise<void> {
    const tx = m.txs[this.slot]!;
    m.txs[this.slot] = undefined;
    const real = r.txs[this.slot]!;
    r.txs[this.slot] = undefined;
    const got = await outcome(real.commit());
    if (tx.readOnly || tx.ops.size === 0) {
      expect(got.ok).toBe(true);
      return;
    }
    m.pos++;
    const checks = tx.isolation === "serializable" ? [...tx.views.keys()] : [...tx.ops.keys()];
    const ok = checks.every((n) => !m.changedIn(n, tx.snapshot, m.pos));
    if (ok) seen.commits++;
    else seen.conflicts++;
    if (ok) {
      expect(got.ok).toBe(true);
      for (const name of tx.ops.keys()) m.commitWrite(name, tx.views.get(name));
    } else {
      expect(got.ok).toBe(false);
      expect((got as { err: unknown }).err).toBeInstanceOf(TransactionConflictError);
    }
  }
  toString = (): string => `commit(${this.slot})`;
}

class AbortCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly slot: number) {}
  check = (m: Readonly<Model>): boolean => m.txs[this.slot] !== undefined;
  run(m: Model, r: Real): Promise<void> {
    m.txs[this.slot] = undefined;
    r.txs[this.slot]!.abort();
    r.txs[this.slot] = undefined;
    return Promise.resolve();
  }
  toString = (): string => `abort(${this.slot})`;
}

const nameArb = fc.constantFrom(...NAMES);
const slotArb = fc.integer({ min: 0, max: 1 });
const commands = [
  fc
    .tuple(nameArb, fc.array(opArb, { minLength: 1, maxLength: 3 }))
    .map(([n, ops]) => new WriteCmd(n, ops)),
  fc
    .tuple(nameArb, fc.constantFrom("warm" as const, "cold" as const, "no-aux" as const))
    .map(([n, c]) => new GetCmd(n, c)),
  fc
    .tuple(slotArb, fc.constantFrom("serializable" as const, "snapshot" as const), fc.boolean())
    .map(([s, i, ro]) => new BeginCmd(s, i, ro)),
  fc
    .tuple(slotArb, fc.constantFrom("serializable" as const, "snapshot" as const))
    .map(([s, i]) => new BeginCmd(s, i, false)),
  fc
    .tuple(slotArb, fc.constantFrom("serializable" as const, "snapshot" as const))
    .map(([s, i]) => new BeginCmd(s, i, false, true)),
  fc.tuple(slotArb, nameArb).map(([s, n]) => new TxGetCmd(s, n)),
  fc.tuple(slotArb, nameArb, opArb).map(([s, n, op]) => new TxWriteCmd(s, n, op)),
  fc.tuple(slotArb, nameArb, opArb).map(([s, n, op]) => new TxWriteCmd(s, n, op)),
  slotArb.map((s) => new CommitCmd(s)),
  slotArb.map((s) => new CommitCmd(s)),
  slotArb.map((s) => new AbortCmd(s)),
];

let t: ReturnType<typeof tempDir>;
let log: EmbeddedLog;
let nextBook = 1000;

beforeAll(async () => {
  t = tempDir("boki-store-model-");
  log = await EmbeddedLog.open({ dir: t.dir });
});
afterAll(async () => {
  await log.close();
  t.remove();
});

describe("store against an in-memory model", () => {
  it("agrees on every result, error, commit decision and read (cold and checkpoint-less readers too)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: "max" }), async (cmds) => {
        const book = new WrappedLogBook(log.book(nextBook++));
        const real: Real = { store: openStore(book), book, txs: [undefined, undefined, undefined] };
        await fc.asyncModelRun(() => ({ model: new Model(), real }), cmds);
        // At the end, every object reads the same from scratch.
        for (const n of NAMES) {
          const fresh = openStore(
            new WrappedLogBook(
              book,
              () => true,
              () => true,
            ),
          );
          expect(await fresh.get(n)).toEqual(await real.store.get(n));
        }
      }),
      { numRuns: 120 },
    );
    expect(seen.writes).toBeGreaterThan(100);
    expect(seen.gets).toBeGreaterThan(100);
    expect(seen.commits).toBeGreaterThan(10);
    expect(seen.conflicts).toBeGreaterThan(0);
    expect(seen.opFailures).toBeGreaterThan(0);
  });

  it("the model's operations match the store's on documents alone (no log)", async () => {
    const { applyOps } = await import("../src/store/ops.js");
    fc.assert(
      fc.property(
        fc.option(valueArb, { nil: undefined }),
        fc.array(opArb, { minLength: 1, maxLength: 6 }),
        (doc, ops) => {
          const expected = modelApplyAll(doc, ops);
          const before = clone(doc);
          const got = applyOps(doc, ops);
          expect(doc).toEqual(before); // immutable: the input is unchanged
          expect(got.ok).toBe(expected.ok);
          if (got.ok && expected.ok) {
            expect(got.doc).toEqual(expected.doc);
            expect(got.results).toEqual(expected.results);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
