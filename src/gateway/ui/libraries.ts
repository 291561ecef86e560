/**
 * The dashboard's library sections, computed by the gateway with bounded work:
 *
 * - **Objects** (`boki-ts/objects`): the object types among the loaded functions, and the
 *   instances this gateway's `/object` routes reached lately (at most `RECENT_OBJECTS_MAX`),
 *   each read from its newest result record, as `GET /object/<name>/<key>` reads it.
 * - **Queues** (`boki-ts/queue`): the queues with a consumer bound in the loaded functions
 *   and those this gateway's `/queue` routes used lately (at most `RECENT_QUEUES_MAX`), each
 *   with its lengths, as `GET /queue/<name>` computes them, and its dead letters.
 *
 * Reads run on the gateway's own thread over its log (no worker slot, no invocation counted
 * in the figures), at most `LIBRARY_READS_CONCURRENT` at once per section and at most
 * `LIBRARY_READS_IN_FLIGHT_MAX` outstanding however many overviews ask; a row not read by
 * the section's deadline says so instead of holding up the page.
 */
import type { LogBook } from "../../log/api.js";
import { latestResult } from "../../objects/executor.js";
import { OBJECT_KIND } from "../../objects/object.js";
import { CONSUMER_KIND, type ConsumerMeta } from "../../queue/runtime.js";
import type { Dispatcher, FunctionInfo } from "../../runtime/dispatcher.js";
import type { GatewayQueues } from "../queues.js";
import type { DashboardLibrary, LibraryListing, LibraryTable } from "./routes.js";

/** Object instances the dashboard remembers (the least recently reached leaves first). */
export const RECENT_OBJECTS_MAX = 100;
/** Queues used through the routes that the dashboard remembers (the least recently used leaves first). */
export const RECENT_QUEUES_MAX = 100;
/** Reads one section makes at once. */
export const LIBRARY_READS_CONCURRENT = 8;
/** Reads of one section still running (from this overview or earlier ones) before it starts no more. */
export const LIBRARY_READS_IN_FLIGHT_MAX = 16;

/**
 * A bounded set of what was seen lately: seeing an entry again makes it the newest; past
 * `limit` entries the one seen longest ago leaves.
 */
export class RecentSet<V> {
  private readonly items = new Map<string, { value: V; seenAtMs: number }>();

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`a RecentSet's limit must be an integer ≥ 1, got ${limit}`);
  }

  get size(): number {
    return this.items.size;
  }

  see(key: string, value: V, nowMs = Date.now()): void {
    this.items.delete(key);
    this.items.set(key, { value, seenAtMs: nowMs });
    if (this.items.size > this.limit) this.items.delete(this.items.keys().next().value!);
  }

  /** Up to `n` entries, the most recently seen first. */
  newest(n: number): Array<{ key: string; value: V; seenAtMs: number }> {
    const out: Array<{ key: string; value: V; seenAtMs: number }> = [];
    const all = [...this.items];
    for (let i = all.length - 1; i >= 0 && out.length < n; i--) {
      const [key, e] = all[i]!;
      out.push({ key, ...e });
    }
    return out;
  }
}

export interface ObjectRef {
  readonly object: string;
  readonly key: string;
  readonly book: number;
}

export interface QueueRef {
  readonly queue: string;
  readonly book: number;
}

/** What the gateway's routes tell the dashboard about. */
export class RecentlySeen {
  readonly objects = new RecentSet<ObjectRef>(RECENT_OBJECTS_MAX);
  readonly queues = new RecentSet<QueueRef>(RECENT_QUEUES_MAX);

  object(object: string, key: string, book: number): void {
    this.objects.see(`${book}/${object.length}:${object}/${key}`, { object, key, book });
  }

  queue(queue: string, book: number): void {
    this.queues.see(`${book}/${queue}`, { queue, book });
  }
}

/**
 * How an object's function may describe its handlers (`FunctionInfo.meta`), and how a
 * workflow may say it coordinates objects. Shown when present.
 */
export interface ObjectFunctionMeta {
  readonly handlers?: Readonly<Record<string, "exclusive" | "shared">>;
}
export interface CoordinatorMeta {
  readonly coordinator?: "transaction" | "saga";
}

type Cell = string | number | null;
const NOT_READ_IN_TIME = "not read in time (the section's limit)";
type Read<R> = { ok: true; value: R } | { ok: false; why: string };

/**
 * Reads `items` with at most `LIBRARY_READS_CONCURRENT` reads at once and at most
 * `LIBRARY_READS_IN_FLIGHT_MAX` of `gate` outstanding; what is not read by `untilMs` says so.
 */
async function readBounded<I, R>(
  items: readonly I[],
  read: (item: I) => Promise<R>,
  untilMs: number,
  gate: { inFlight: number },
): Promise<Array<Read<R>>> {
  const waitMs = Math.max(0, untilMs - Date.now());
  const out: Array<Read<R>> = items.map(() => ({ ok: false, why: NOT_READ_IN_TIME }));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), waitMs);
  });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && Date.now() < untilMs) {
      if (gate.inFlight >= LIBRARY_READS_IN_FLIGHT_MAX) {
        for (let i = next; i < items.length; i++)
          out[i] = { ok: false, why: "not read: earlier reads are still running" };
        next = items.length;
        return;
      }
      const i = next++;
      gate.inFlight++;
      const p = read(items[i]!).then(
        (value): Read<R> => ({ ok: true, value }),
        (err: unknown): Read<R> => ({
          ok: false,
          why: err instanceof Error ? err.message : String(err),
        }),
      );
      void p.finally(() => gate.inFlight--);
      const r = await Promise.race([p, late]);
      if (r === "late") return;
      out[i] = r;
    }
  };
  try {
    await Promise.all(Array.from({ length: LIBRARY_READS_CONCURRENT }, worker));
  } finally {
    clearTimeout(timer);
  }
  return out;
}

function secondsAgo(ms: number, nowMs: number): number {
  return Math.max(0, Math.round((nowMs - ms) / 1000));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** "open, deposit (exclusive); balance (shared)", or null when the meta does not say. */
function handlersOf(f: FunctionInfo): string | null {
  const h = isRecord(f.meta) ? f.meta["handlers"] : undefined;
  if (!isRecord(h)) return null;
  const parts: string[] = [];
  for (const mode of ["exclusive", "shared"]) {
    const names = Object.keys(h)
      .filter((k) => h[k] === mode)
      .sort();
    if (names.length > 0) parts.push(`${names.join(", ")} (${mode})`);
  }
  return parts.length === 0 ? null : parts.join("; ");
}

function coordinatorOf(f: FunctionInfo): "transaction" | "saga" | null {
  const c = isRecord(f.meta) ? f.meta["coordinator"] : undefined;
  return c === "transaction" || c === "saga" ? c : null;
}

export interface ObjectInstanceFigures {
  readonly requestsApplied: number;
  /** Bytes of the committed state's JSON (null: no state). */
  readonly stateBytes: number | null;
  readonly lockedBy: string | null;
  readonly waiting: number;
}

/** An instance's figures from its newest result record (what `boki-objects.state` answers). */
export async function readObjectInstance(
  log: LogBook,
  object: string,
  key: string,
): Promise<ObjectInstanceFigures> {
  const last = await latestResult(log, object, key);
  const state = last?.state ?? null;
  return {
    requestsApplied: last === undefined ? 0 : last.j + 1,
    stateBytes: state === null ? null : Buffer.byteLength(JSON.stringify(state)),
    lockedBy: last?.lock?.txn ?? null,
    waiting: last?.deferred.length ?? 0,
  };
}

export interface LibrarySectionDeps {
  readonly dispatcher: Dispatcher;
  readonly seen: RecentlySeen;
  /** A LogBook session of a book (the gateway's log). */
  readonly log: (book: number) => LogBook;
  readonly queues: GatewayQueues;
  /** Lines shown under the Queues section (e.g. where the consumers run). */
  readonly queueNotes?: readonly string[];
}

function omitted(total: number, shown: number): Partial<LibraryTable> {
  return total > shown ? { omitted: total - shown } : {};
}

export function objectsLibrary(d: LibrarySectionDeps): DashboardLibrary {
  const gate = { inFlight: 0 };
  return {
    name: "Objects",
    async list(limit, untilMs): Promise<LibraryListing> {
      const nowMs = Date.now();
      const fns = d.dispatcher.functions();
      const objects = fns.filter((f) => f.kind === OBJECT_KIND);
      const coordinators = fns.filter((f) => coordinatorOf(f) !== null);
      const recent = d.seen.objects.newest(limit);
      const perObject = new Map<string, number>();
      for (const r of d.seen.objects.newest(d.seen.objects.size))
        perObject.set(r.value.object, (perObject.get(r.value.object) ?? 0) + 1);
      const reads = await readBounded(
        recent,
        (r) => readObjectInstance(d.log(r.value.book), r.value.object, r.value.key),
        untilMs,
        gate,
      );
      const tables: LibraryTable[] = [
        {
          title: "Object types",
          columns: ["object", "book", "handlers", "time limit ms", "instances seen"],
          rows: objects
            .slice(0, limit)
            .map((f) => [
              f.name,
              f.book ?? 0,
              handlersOf(f),
              f.timeoutMs,
              perObject.get(f.name) ?? 0,
            ]),
          rowKeys: objects.slice(0, limit).map((f) => f.name),
          ...omitted(objects.length, limit),
        },
        {
          title: "Instances seen lately",
          columns: [
            "object",
            "key",
            "book",
            "requests applied",
            "state bytes",
            "locked by",
            "waiting",
            "seen s ago",
            "read",
          ],
          rows: recent.map((r, i): Cell[] => {
            const got = reads[i]!;
            const { object, key, book } = r.value;
            const seen = secondsAgo(r.seenAtMs, nowMs);
            if (!got.ok) return [object, key, book, null, null, null, null, seen, got.why];
            const f = got.value;
            return [
              object,
              key,
              book,
              f.requestsApplied,
              f.stateBytes,
              f.lockedBy,
              f.waiting,
              seen,
              "ok",
            ];
          }),
          rowKeys: recent.map((r) => `${r.value.object}/${r.value.key}@${r.value.book}`),
          ...omitted(d.seen.objects.size, recent.length),
        },
      ];
      if (coordinators.length > 0) {
        tables.push({
          title: "Transactions and sagas",
          columns: ["function", "kind", "book", "time limit ms"],
          rows: coordinators
            .slice(0, limit)
            .map((f) => [f.name, coordinatorOf(f), f.book ?? 0, f.timeoutMs]),
          rowKeys: coordinators.slice(0, limit).map((f) => f.name),
          ...omitted(coordinators.length, limit),
        });
      }
      const notes = [
        `Instances: the last ${RECENT_OBJECTS_MAX} this gateway's /object routes reached since it started, most recent first, each read from its newest result (as GET /object/<name>/<key>). Instances reached only by transactions, sagas or other functions are not listed.`,
      ];
      if (objects.some((f) => handlersOf(f) === null))
        notes.push(
          "Handlers are shown when the object's function info describes them (meta.handlers); where it does not, the column is empty.",
        );
      notes.push(
        "boki-ts/store's JSON objects are found by name, not listed: they are not object instances.",
      );
      if (coordinators.length === 0)
        notes.push(
          "Transactions and sagas (defineTransaction, defineSaga) are workflows whose function info does not say so: they are listed with the workflows and functions.",
        );
      return { tables, notes };
    },
  };
}

interface QueueRow {
  readonly queue: string;
  readonly book: number;
  readonly consumers: Array<{ name: string; meta: ConsumerMeta }>;
  readonly seenAtMs: number | null;
}

interface QueueFigures {
  readonly available: number;
  readonly inFlight: number;
  readonly delayed: number;
  readonly deadPending: number;
  readonly total: number;
  /** Messages in the dead-letter queue; null: dead letters are dropped. */
  readonly deadLetters: number | null;
}

function consumerMetaOf(f: FunctionInfo): ConsumerMeta | null {
  const m = f.meta;
  if (!isRecord(m) || typeof m["queue"] !== "string") return null;
  return m as unknown as ConsumerMeta;
}

export function queuesLibrary(d: LibrarySectionDeps): DashboardLibrary {
  const gate = { inFlight: 0 };
  const read = async (r: QueueRow): Promise<QueueFigures | null> => {
    const q = await d.queues.openExisting(r.book, r.queue);
    if (q === null) return null;
    const len = await q.length();
    let deadLetters: number | null = null;
    if (q.deadLetterQueue !== null) {
      const dlq = await d.queues.openExisting(r.book, q.deadLetterQueue);
      deadLetters = dlq === null ? 0 : (await dlq.length()).total;
    }
    return { ...len, deadLetters };
  };
  return {
    name: "Queues",
    async list(limit, untilMs): Promise<LibraryListing> {
      const nowMs = Date.now();
      const rows = new Map<string, QueueRow>();
      for (const f of d.dispatcher.functions()) {
        if (f.kind !== CONSUMER_KIND) continue;
        const meta = consumerMetaOf(f);
        if (meta === null) continue;
        const id = `${meta.book}/${meta.queue}`;
        const row = rows.get(id) ?? {
          queue: meta.queue,
          book: meta.book,
          consumers: [],
          seenAtMs: null,
        };
        row.consumers.push({ name: f.name, meta });
        rows.set(id, row);
      }
      const recent = d.seen.queues.newest(d.seen.queues.size);
      for (const r of recent) {
        const id = `${r.value.book}/${r.value.queue}`;
        const bound = rows.get(id);
        rows.set(
          id,
          bound === undefined
            ? { ...r.value, consumers: [], seenAtMs: r.seenAtMs }
            : { ...bound, seenAtMs: r.seenAtMs },
        );
      }
      const all = [...rows.values()];
      const shown = all.slice(0, limit);
      const reads = await readBounded(shown, read, untilMs, gate);
      const rate = (m: ConsumerMeta): string | number => m.ratePerSec ?? "no limit";
      const table: LibraryTable = {
        title: "Queues",
        columns: [
          "queue",
          "book",
          "consumers",
          "concurrency",
          "rate /s",
          "available",
          "in flight",
          "delayed",
          "dead pending",
          "dead letters",
          "total",
          "seen s ago",
          "read",
        ],
        rows: shown.map((r, i): Cell[] => {
          const c = r.consumers;
          const head: Cell[] = [
            r.queue,
            r.book,
            c.length === 0 ? null : c.map((x) => x.name).join(", "),
            c.length === 0 ? null : c.reduce((n, x) => n + x.meta.concurrency, 0),
            c.length === 0
              ? null
              : c.length === 1
                ? rate(c[0]!.meta)
                : c.map((x) => rate(x.meta)).join(", "),
          ];
          const seen = r.seenAtMs === null ? null : secondsAgo(r.seenAtMs, nowMs);
          const got = reads[i]!;
          if (!got.ok) return [...head, null, null, null, null, null, null, seen, got.why];
          const f = got.value;
          if (f === null) return [...head, 0, 0, 0, 0, 0, 0, seen, "not created yet"];
          return [
            ...head,
            f.available,
            f.inFlight,
            f.delayed,
            f.deadPending,
            f.deadLetters ?? "dropped",
            f.total,
            seen,
            "ok",
          ];
        }),
        rowKeys: shown.map((r) => `${r.queue}@${r.book}`),
        ...omitted(all.length, shown.length),
      };
      return {
        tables: [table],
        notes: [
          `The queues with a consumer bound in the loaded functions, then up to ${RECENT_QUEUES_MAX} queues this gateway's /queue routes used since it started, most recent first. Lengths as GET /queue/<name> computes them; dead letters are the messages in the queue's dead-letter queue.`,
          ...(d.queueNotes ?? []),
        ],
      };
    },
  };
}

/** The gateway's library sections. */
export function gatewayLibraries(d: LibrarySectionDeps): readonly DashboardLibrary[] {
  return [objectsLibrary(d), queuesLibrary(d)];
}
