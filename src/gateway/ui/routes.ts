/**
 * The dashboard: a plain page (static HTML, CSS and one script, no build step) at `/ui`
 * that polls JSON from `/ui/api/overview` and the gateway's own workflow routes.
 *
 *   GET /ui, /ui/               the page (public: it holds no data)
 *   GET /ui/assets/<file>       its script and style sheet (public)
 *   GET /ui/api/overview        the cluster, its logs, the functions with their figures,
 *                               whether workflows are loaded, the libraries' sections
 *                               (objects and queues: see libraries.ts)
 *
 * The overview is computed at most once per `OVERVIEW_CACHE_MS` whoever asks, so any number
 * of open dashboards cost the cluster one probe round per interval; a source that does not
 * answer within `SOURCE_TIMEOUT_MS` shows as an error line, not a hung page; a library
 * section answers with what it read by then.
 */
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply } from "fastify";
import { FLOW_FUNCTIONS } from "../../flow/protocol.js";
import type { Dispatcher } from "../../runtime/dispatcher.js";
import type { ClusterSnapshot, ClusterSource } from "./sources.js";
import type { FunctionStats } from "./stats.js";
import { RateWindow, type FunctionFigures } from "./stats.js";

/** Longest one overview is reused for. */
export const OVERVIEW_CACHE_MS = 500;
/** Longest the cluster source may take before the overview answers without it. */
export const SOURCE_TIMEOUT_MS = 3_000;
/** Most functions an overview lists. */
export const OVERVIEW_FUNCTIONS_MAX = 1_000;

/** One table of a library section: short values, one row per item. */
export interface LibraryTable {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: ReadonlyArray<ReadonlyArray<string | number | null>>;
  /** A stable key per row (the page marks rows with it). */
  readonly rowKeys?: readonly string[];
  /** Items left out to stay within the section's limit. */
  readonly omitted?: number;
}

/** What a library lists: its tables, and lines shown under them. */
export interface LibraryListing {
  readonly tables: readonly LibraryTable[];
  readonly notes?: readonly string[];
}

/** A library section of the dashboard: what a library holds, if it can list it. */
export interface DashboardLibrary {
  readonly name: string;
  /**
   * Lists up to `limit` items per table, answering by `untilMs` (ms since the epoch) with
   * what it could read by then; absent: the library has no listing.
   */
  readonly list?: (limit: number, untilMs: number) => Promise<LibraryListing>;
  /** Shown when there is no listing, or under it. */
  readonly note?: string;
}

/** Rows a library section's table shows. */
export const LIBRARY_ROWS_MAX = 100;
/** How long before `SOURCE_TIMEOUT_MS` a library is asked to answer with what it has. */
export const LIBRARY_ANSWER_MARGIN_MS = 250;

export interface DashboardOptions {
  /** The cluster view; absent: the page shows only the gateway. */
  readonly source?: ClusterSource;
  /** Figures of the invocations this gateway dispatched (see ObservedDispatcher). */
  readonly stats?: FunctionStats;
  /** Library sections (default: the gateway's Objects and Queues, see libraries.ts). */
  readonly libraries?: readonly DashboardLibrary[];
  /** Lines shown under the Queues section (e.g. where this deployment runs the consumers). */
  readonly queueNotes?: readonly string[];
}

export interface DashboardDeps {
  readonly dispatcher: Dispatcher;
  readonly options: DashboardOptions;
  readonly gatewayUrl: () => string;
  readonly auth: boolean;
  readonly tls: boolean;
}

/** The files the page is made of, by the name it asks for them with. */
const ASSETS: ReadonlyMap<string, { file: string; type: string }> = new Map([
  ["app.mjs", { file: "app.mjs", type: "text/javascript; charset=utf-8" }],
  ["style.css", { file: "style.css", type: "text/css; charset=utf-8" }],
]);
const PAGE_FILE = "index.html";
const STATIC_DIR = new URL("./static/", import.meta.url);

/** Headers of every dashboard response: nothing runs but its own script, nothing frames it. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function loadStatic(): Map<string, Buffer> | Error {
  try {
    const out = new Map<string, Buffer>();
    for (const f of [PAGE_FILE, ...[...ASSETS.values()].map((a) => a.file)])
      out.set(f, readFileSync(new URL(f, STATIC_DIR)));
    return out;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

interface LibrarySection {
  readonly name: string;
  readonly available: boolean;
  readonly note: string | null;
  readonly tables?: readonly LibraryTable[];
  readonly notes?: readonly string[];
  readonly error?: string;
}

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export function registerDashboard(app: FastifyInstance, d: DashboardDeps): void {
  const files = loadStatic();
  const startedAtMs = Date.now();
  const rates = new RateWindow();
  const stats = d.options.stats;
  const libraries = d.options.libraries ?? [];
  let cached: { at: number; body: Promise<unknown> } | null = null;

  const sendFile = (reply: FastifyReply, name: string, type: string): FastifyReply => {
    void reply.headers(SECURITY_HEADERS);
    if (files instanceof Error) {
      return reply.code(503).send({
        error: {
          code: "UNAVAILABLE",
          message: `the dashboard's files are missing from ${STATIC_DIR.pathname} (${files.message}); rebuild with npm run build`,
        },
      });
    }
    return reply.type(type).send(files.get(name));
  };

  const page = (_req: unknown, reply: FastifyReply): FastifyReply =>
    sendFile(reply, PAGE_FILE, "text/html; charset=utf-8");
  app.get("/ui", page);
  app.get("/ui/", page);
  app.get<{ Params: { file: string } }>("/ui/assets/:file", (req, reply) => {
    const a = ASSETS.get(req.params.file);
    if (a === undefined) {
      return reply
        .code(404)
        .headers(SECURITY_HEADERS)
        .send({ error: { code: "NOT_FOUND", message: "no such dashboard file" } });
    }
    return sendFile(reply, a.file, a.type);
  });

  const clusterView = async (now: number): Promise<unknown> => {
    const source = d.options.source;
    if (source === undefined) return null;
    let snap: ClusterSnapshot;
    try {
      snap = await timeout(source.snapshot(), SOURCE_TIMEOUT_MS, "the cluster view");
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
    return {
      ...snap,
      logs: snap.logs.map((l) => ({
        ...l,
        positionPerSec: rates.sample(`log/${l.log}/position`, l.position, now),
        appendsPerSec: rates.sample(`log/${l.log}/appends`, l.appends, now),
      })),
      appendsPerSec: rates.sample("appends", snap.appends, now),
    };
  };

  const libraryView = (): Promise<LibrarySection[]> =>
    Promise.all(
      libraries.map(async (lib): Promise<LibrarySection> => {
        if (lib.list === undefined)
          return { name: lib.name, available: false, note: lib.note ?? null };
        try {
          const untilMs = Date.now() + SOURCE_TIMEOUT_MS - LIBRARY_ANSWER_MARGIN_MS;
          const l = await timeout(lib.list(LIBRARY_ROWS_MAX, untilMs), SOURCE_TIMEOUT_MS, lib.name);
          return {
            name: lib.name,
            available: true,
            note: lib.note ?? null,
            tables: l.tables.map((t) => {
              const more = Math.max(0, t.rows.length - LIBRARY_ROWS_MAX);
              return {
                ...t,
                rows: t.rows.slice(0, LIBRARY_ROWS_MAX),
                ...(t.rowKeys === undefined
                  ? {}
                  : { rowKeys: t.rowKeys.slice(0, LIBRARY_ROWS_MAX) }),
                ...(more + (t.omitted ?? 0) > 0 ? { omitted: more + (t.omitted ?? 0) } : {}),
              };
            }),
            notes: l.notes ?? [],
          };
        } catch (err) {
          return {
            name: lib.name,
            available: true,
            note: lib.note ?? null,
            error: err instanceof Error ? err.message : String(err),
          };
        }
      }),
    );

  const overview = async (): Promise<unknown> => {
    const now = Date.now();
    const fns = d.dispatcher.functions().slice(0, OVERVIEW_FUNCTIONS_MAX);
    const [cluster, libs] = await Promise.all([clusterView(now), libraryView()]);
    return {
      generatedAt: new Date(now).toISOString(),
      gateway: {
        url: d.gatewayUrl(),
        startedAt: new Date(startedAtMs).toISOString(),
        uptimeSec: Math.round((now - startedAtMs) / 1000),
        auth: d.auth,
        tls: d.tls,
        statsAvailable: stats !== undefined,
      },
      cluster,
      functions: fns.map((f) => {
        const figures: FunctionFigures | null = stats?.figures(f.name, now) ?? null;
        return {
          name: f.name,
          kind: f.kind ?? "function",
          book: f.book ?? 0,
          timeoutMs: f.timeoutMs,
          scheduleEveryMs: f.scheduleEveryMs ?? null,
          library: f.name.startsWith("boki-"),
          ...(figures ?? {}),
        };
      }),
      workflows: { available: fns.some((f) => f.name === FLOW_FUNCTIONS.list) },
      libraries: libs,
    };
  };

  app.get("/ui/api/overview", (_req, reply) => {
    const now = Date.now();
    if (cached === null || now - cached.at >= OVERVIEW_CACHE_MS) {
      cached = { at: now, body: overview() };
    }
    return cached.body.then((body) => reply.headers(SECURITY_HEADERS).send(body));
  });
}
