/**
 * How a running node follows reconfigurations through the coordination store.
 *
 * - `/boki/view` holds the view in force (see `controller/view-record.ts`). A node reads it
 *   at start and watches it; a later term is handed to the node's role (`setView`).
 * - `/boki/seal/request` holds `{ "term": N }` while the controller seals term N. A
 *   sequencer that sees it seals its logs of term N (no more cuts, no more entries of the
 *   term accepted) and answers under `/boki/seal/<N>/<log>/<node id>` with
 *   `{ "length": <entries it holds durably> }`. The controller fixes each log's final
 *   metalog from a majority of the answers (`controller/sealer.ts`).
 *
 * The watch restarts (after a fresh read) when the store says changes may have been missed;
 * attempts are bounded per outage and spaced by a backoff.
 */
import type { Clock } from "../clock/clock.js";
import { systemClock } from "../clock/clock.js";
import {
  valueText,
  mustRelist,
  type CoordStore,
  type Revision,
  type Watch,
} from "../coord/store.js";
import { asRevision } from "../coord/store.js";
import { decodeViewRecord, viewOfRecord, VIEW_KEY } from "../controller/view-record.js";
import type { View } from "../log/view.js";
import type { Logger } from "../util/logger.js";
import type { NodeId } from "../transport/transport.js";

export const SEAL_REQUEST_KEY = "/boki/seal/request";
export const SEAL_REPLIES_PREFIX = "/boki/seal/";

/** Key of one sequencer's answer to the sealing of `term` for `log`. */
export function sealReplyKey(term: number, log: number, node: NodeId): string {
  return `${SEAL_REPLIES_PREFIX}${term}/${log}/${node}`;
}

/**
 * `/boki/logs/<log>`: `{ "position", "term", "node", "atMs" }`, the committed metalog length
 * of the log as its primary last reported it (for `boki status`).
 */
export const LOG_POSITIONS_PREFIX = "/boki/logs/";
/** How often a primary sequencer reports its logs' committed positions (when they moved). */
export const POSITION_REPORT_MS = 1_000;

/** Attempts to re-read and re-watch after a watch ended, before the follower gives up. */
export const REWATCH_ATTEMPTS_MAX = 20;
/** Pause before re-watching; doubles per attempt up to `REWATCH_BACKOFF_MS_MAX`. */
export const REWATCH_BACKOFF_MS = 100;
export const REWATCH_BACKOFF_MS_MAX = 2_000;

/** What a role offers the follower. */
export interface FollowingRole {
  readonly term: number;
  setView(view: View): void | Promise<void>;
  /** Sequencers only: seal `term`, reporting each log's durable length. */
  seal?(term: number): Promise<ReadonlyArray<{ log: number; length: number }>>;
  /** Sequencers only: committed metalog lengths of the logs this node is the primary of. */
  committedPositions?(): ReadonlyArray<{ log: number; position: number }>;
}

/** Reads the published view, or null when none is published yet. */
export async function readPublishedView(
  store: CoordStore,
): Promise<{ view: View; revision: Revision } | null> {
  const kv = await store.get(VIEW_KEY);
  if (kv === null) return null;
  return { view: viewOfRecord(decodeViewRecord(valueText(kv))), revision: kv.revision };
}

export interface ViewFollowerOptions {
  readonly store: CoordStore;
  readonly node: NodeId;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Called with every later view seen (after the role has been given it, if there is one). */
  readonly onView?: (view: View) => void;
}

export class ViewFollower {
  private role: FollowingRole | null = null;
  private watches: Watch[] = [];
  private closed = false;
  private chain: Promise<void> = Promise.resolve();
  private latest: View | null = null;
  private readonly sealedTerms = new Set<number>();
  private readonly clock: Clock;

  private constructor(private readonly o: ViewFollowerOptions) {
    this.clock = o.clock ?? systemClock;
  }

  /** Starts watching; resolves once the watches are in place. */
  static async start(o: ViewFollowerOptions): Promise<ViewFollower> {
    const f = new ViewFollower(o);
    await f.watchFromNow();
    return f;
  }

  /** The latest view seen since the follower started, if any. */
  get view(): View | null {
    return this.latest;
  }

  /** Hands views and seal requests to `role` from now on (the latest view at once, if newer). */
  attach(role: FollowingRole): void {
    this.role = role;
    if (role.committedPositions !== undefined) this.reportPositions();
    const v = this.latest;
    if (v !== null) this.enqueue(() => this.giveView(v));
    this.enqueue(() => this.checkSealRequest());
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => {
      this.o.logger.error({ err }, "applying a reconfiguration failed");
    });
  }

  private async watchFromNow(): Promise<void> {
    const list = await this.o.store.list(VIEW_KEY);
    const from = asRevision(list.revision + 1);
    for (const e of list.entries) {
      if (e.key === VIEW_KEY) this.onViewValue(valueText(e));
    }
    this.enqueue(() => this.checkSealRequest());
    const viewWatch = await this.o.store.watch(
      VIEW_KEY,
      (ev) => {
        if (ev.type === "put" && ev.key === VIEW_KEY) this.onViewValue(valueText(ev.kv));
      },
      { fromRevision: from },
    );
    const sealWatch = await this.o.store.watch(
      SEAL_REQUEST_KEY,
      (ev) => {
        if (ev.type === "put" && ev.key === SEAL_REQUEST_KEY) {
          this.enqueue(() => this.checkSealRequest());
        }
      },
      { fromRevision: from },
    );
    this.watches = [viewWatch, sealWatch];
    void Promise.race([viewWatch.done, sealWatch.done]).then((end) => {
      for (const w of this.watches) w.cancel();
      if (this.closed) return;
      this.o.logger.warn({ reason: end.reason }, "view watch ended; watching again");
      if (mustRelist(end) || end.reason === "listener-failed") void this.rewatch();
    });
  }

  private async rewatch(): Promise<void> {
    let backoff = REWATCH_BACKOFF_MS;
    for (let attempt = 1; attempt <= REWATCH_ATTEMPTS_MAX && !this.closed; attempt++) {
      try {
        await this.watchFromNow();
        return;
      } catch (err) {
        this.o.logger.warn({ err, attempt }, "could not watch the view again");
        await new Promise<void>((r) => this.clock.setTimer(backoff, r));
        backoff = Math.min(backoff * 2, REWATCH_BACKOFF_MS_MAX);
      }
    }
    if (!this.closed)
      this.o.logger.error(
        {},
        "gave up watching the view; this node no longer follows reconfigurations",
      );
  }

  private onViewValue(text: string): void {
    let view: View;
    try {
      view = viewOfRecord(decodeViewRecord(text));
    } catch (err) {
      this.o.logger.error({ err }, "ignored a malformed view in the store");
      return;
    }
    if (this.latest !== null && view.term <= this.latest.term) return;
    this.latest = view;
    this.enqueue(() => this.giveView(view));
  }

  private async giveView(view: View): Promise<void> {
    if (this.closed) return;
    const role = this.role;
    if (role !== null && view.term > role.term) {
      this.o.logger.info({ term: view.term }, "moving to a new term");
      await role.setView(view);
    }
    this.o.onView?.(view);
  }

  private async checkSealRequest(): Promise<void> {
    const role = this.role;
    if (this.closed || role?.seal === undefined) return;
    const kv = await this.o.store.get(SEAL_REQUEST_KEY);
    if (kv === null) return;
    let term: number;
    try {
      const o = JSON.parse(valueText(kv)) as { term?: unknown };
      if (typeof o.term !== "number") throw new Error("no term");
      term = o.term;
    } catch (err) {
      this.o.logger.error({ err }, "ignored a malformed seal request");
      return;
    }
    if (term !== role.term || this.sealedTerms.has(term)) return;
    const reports = await role.seal(term);
    if (reports.length === 0) return;
    this.sealedTerms.add(term);
    for (const r of reports) {
      await this.o.store.put(
        sealReplyKey(term, r.log, this.o.node),
        JSON.stringify({ length: r.length }),
      );
    }
    this.o.logger.info({ term, reports }, "answered the seal request");
  }

  private positionTimer: ReturnType<Clock["setTimer"]> | null = null;
  private readonly reported = new Map<number, number>();

  /** Puts the role's committed positions that moved since the last report; again later. */
  private reportPositions(): void {
    this.positionTimer = this.clock.setTimer(POSITION_REPORT_MS, () => {
      this.positionTimer = null;
      if (this.closed) return;
      const role = this.role;
      const moved = (role?.committedPositions?.() ?? []).filter(
        (p) => this.reported.get(p.log) !== p.position,
      );
      void Promise.all(
        moved.map(async (p) => {
          await this.o.store.put(
            `${LOG_POSITIONS_PREFIX}${p.log}`,
            JSON.stringify({
              position: p.position,
              term: role!.term,
              node: this.o.node,
              atMs: Date.now(),
            }),
          );
          this.reported.set(p.log, p.position);
        }),
      )
        .catch((err: unknown) => this.o.logger.warn({ err }, "could not report log positions"))
        .finally(() => {
          if (!this.closed) this.reportPositions();
        });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.positionTimer !== null) this.clock.clearTimer(this.positionTimer);
    for (const w of this.watches) w.cancel();
    await this.chain;
  }
}
